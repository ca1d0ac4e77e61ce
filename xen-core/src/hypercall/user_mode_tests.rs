//! Host tests of the 64-bit PV kernel/user split on dom0 built by the domain builder: `iret` into
//! guest user mode (with and without user page tables), `syscall` from user mode bounced back to
//! the kernel, and the frame-table references of the user L4 through the round trip.

use hypercall_abi::arch_x86_64::{
    IretContext, VGCF_in_syscall, SEGBASE_GS_KERNEL, SEGBASE_GS_USER,
};
use hypercall_abi::callback::{
    CALLBACKF_mask_events, CALLBACKOP_register, CALLBACKTYPE_syscall, CallbackRegister,
};
use hypercall_abi::xen::*;

use super::testing::call;
use crate::bounce;
use crate::ctx::Ctx;
use crate::domain::{Shutdown, NO_USER_PAGE_TABLES};
use crate::guest_access::translate;
use crate::mm::frame_table::testing::{World, SELF};
use crate::mm::frame_table::{pte, PageType};
use crate::mm::Mfn;
use crate::regs::{Regs, ENTRY_RESTORE_ALL, ENTRY_SYSCALL};

const KERNEL_GS: u64 = 0xffff_8880_0000_0000;
const USER_GS: u64 = 0x7f00_0000_1000;
const USER_RIP: u64 = 0x40_1000;
const USER_RSP: u64 = 0x7fff_fff0;
const SYSCALL_CB: u64 = 0x10_5000;

/// Hypercall `nr` as dom0 with the saved registers `regs` (`iret` reads and rewrites them).
fn call_with(w: &mut World, regs: &mut Regs, nr: u32, a: [u64; 5]) -> i64 {
    let mut events = Box::new(crate::evtchn::PortTable::new(1, 4095));
    let mut grants = Box::new(crate::gnttab::GrantTable::new());
    let mut ctx = Ctx {
        m: &mut w.m,
        info: &w.info,
        pool: &mut w.pool,
        dom: &mut w.dom,
        events: &mut events,
        grants: &mut grants,
        others: crate::domain::set::Others::none(),
        regs,
        in_multicall: false,
        fx: &mut Default::default(),
    };
    call(&mut ctx, nr.into(), a)
}

/// dom0 prepared the way a kernel prepares to run a process: a user L4 (an empty page-table
/// page: only the hypervisor's slots, none of the kernel's mappings) installed with
/// `MMUEXT_NEW_USER_BASEPTR`, a kernel stack (`stack_switch`), both GS bases and a syscall
/// callback that masks events. Returns the world, the user L4 and the kernel stack top.
fn kernel_ready_for_user() -> (World, Mfn, u64) {
    let mut w = World::dom0();
    let list = w.scratch_va(0);
    // The user L4's frame must not stay writable: remap its page read-only first.
    let l4_va = w.scratch_va(1);
    let user_l4 = w.mfn_of(l4_va);
    let ro = (user_l4.0 << 12) | pte::PRESENT | pte::ACCESSED;
    assert_eq!(
        w.call(
            __HYPERVISOR_update_va_mapping,
            [l4_va, ro, UVMF_INVLPG, 0, 0]
        ),
        0
    );
    let op = MmuextOp {
        cmd: MMUEXT_NEW_USER_BASEPTR,
        arg1: user_l4.0,
        ..Default::default()
    };
    w.put(list, &op);
    assert_eq!(w.call(__HYPERVISOR_mmuext_op, [list, 1, 0, SELF, 0]), 0);
    assert_eq!(w.dom.vcpu().user_l4, Some(user_l4));

    let stack_top = w.scratch_va(3);
    assert_eq!(
        w.call(__HYPERVISOR_stack_switch, [0xe02b, stack_top, 0, 0, 0]),
        0
    );
    for (which, base) in [(SEGBASE_GS_KERNEL, KERNEL_GS), (SEGBASE_GS_USER, USER_GS)] {
        let writes = w.dom.vcpu().base_writes;
        assert_eq!(
            w.call(__HYPERVISOR_set_segment_base, [which.into(), base, 0, 0, 0]),
            0
        );
        // Counted, so the arch layer rewrites the CPU's bases (a selector load may have changed
        // them since the last write).
        assert_eq!(w.dom.vcpu().base_writes, writes + 1);
    }
    let reg = CallbackRegister {
        r#type: CALLBACKTYPE_syscall,
        flags: CALLBACKF_mask_events,
        address: SYSCALL_CB,
        ..Default::default()
    };
    w.put(list, &reg);
    assert_eq!(
        w.call(
            __HYPERVISOR_callback_op,
            [CALLBACKOP_register.into(), list, 0, 0, 0]
        ),
        0
    );
    w.dom.vcpu_mut().flush.take();
    w.check();
    (w, user_l4, stack_top)
}

/// Puts `ic` on the kernel stack below `top` and returns the RSP the `iret` stub leaves.
fn push_iret_context(w: &mut World, top: u64, ic: &IretContext) -> u64 {
    let rsp = top - 0x200;
    w.put(rsp, ic);
    rsp
}

fn to_user(flags: u64) -> IretContext {
    IretContext {
        rax: 0,
        r11: 0x1111,
        rcx: 0x2222,
        flags,
        rip: USER_RIP,
        cs: 0xe033, // RPL 3: user mode
        rflags: 0x202,
        rsp: USER_RSP,
        ss: 0xe02b,
    }
}

#[test]
fn iret_to_user_mode_loads_the_user_table_and_gs_base() {
    let (mut w, user_l4, top) = kernel_ready_for_user();
    let mut regs = Regs {
        vector: ENTRY_SYSCALL,
        rsp: push_iret_context(&mut w, top, &to_user(0)),
        ..Regs::default()
    };
    assert_eq!(call_with(&mut w, &mut regs, __HYPERVISOR_iret, [0; 5]), 0);
    assert!(w.dom.shutdown.is_none());
    assert!(!w.dom.vcpu().kernel_mode);
    assert_eq!(w.dom.current_l4(), user_l4);
    assert_eq!(w.dom.vcpu_mut().flush.take().new_cr3, Some(user_l4));
    assert_eq!(w.dom.vcpu().gs_bases(), (USER_GS, KERNEL_GS));
    assert_eq!(
        (regs.rip, regs.cs, regs.rsp, regs.ss),
        (USER_RIP, 0xe033, USER_RSP, 0xe02b)
    );
    // Not from a syscall: every register restored, left through `iretq`.
    assert_eq!(
        (regs.rcx, regs.r11, regs.vector),
        (0x2222, 0x1111, ENTRY_RESTORE_ALL)
    );
    // User mode sees none of the kernel's mappings.
    let kernel_va = w.scratch_va(3) - 8;
    assert!(translate(&w.m.mem, w.dom.vcpu().l4, kernel_va, false).is_some());
    assert!(translate(&w.m.mem, user_l4, kernel_va, false).is_none());
    // The user L4 holds its reference and type as before.
    let f = w.frame(user_l4);
    assert_eq!((f.page_type(), f.type_count()), (PageType::L4, 1));
    w.check();
}

#[test]
fn iret_to_user_mode_without_user_tables_crashes_the_domain() {
    let mut w = World::dom0();
    let top = w.scratch_va(3);
    let mut regs = Regs {
        rsp: push_iret_context(&mut w, top, &to_user(0)),
        ..Regs::default()
    };
    let before = regs;
    call_with(&mut w, &mut regs, __HYPERVISOR_iret, [0; 5]);
    assert_eq!(w.dom.shutdown, Some(Shutdown::Crashed(NO_USER_PAGE_TABLES)));
    assert!(w.dom.vcpu().kernel_mode);
    assert!(w.dom.vcpu().flush.is_empty());
    assert_eq!(regs, before, "nothing of the context is loaded");
}

#[test]
fn iret_with_rpl_0_stays_in_kernel_mode() {
    let (mut w, _, top) = kernel_ready_for_user();
    let ic = IretContext {
        cs: 0xe030,
        rip: 0x10_2000,
        rsp: top - 0x100,
        ..to_user(0)
    };
    let mut regs = Regs {
        rsp: push_iret_context(&mut w, top, &ic),
        ..Regs::default()
    };
    call_with(&mut w, &mut regs, __HYPERVISOR_iret, [0; 5]);
    assert!(w.dom.vcpu().kernel_mode);
    assert!(w.dom.vcpu().flush.is_empty(), "no mode switch, no CR3 load");
    assert_eq!(w.dom.vcpu().gs_bases(), (KERNEL_GS, USER_GS));
    assert_eq!(
        (regs.rip, regs.cs),
        (0x10_2000, 0xe033),
        "ring 3 either way"
    );
}

/// A process's system call, end to end: the kernel `iret`s to user mode, user mode executes
/// `syscall`, the kernel's callback gets the Xen frame on its stack, and returns with `iret` and
/// `VGCF_in_syscall` (Linux's `xen_sysret64`).
#[test]
fn a_system_call_round_trip_through_user_mode() {
    let (mut w, user_l4, top) = kernel_ready_for_user();
    let mut regs = Regs {
        vector: ENTRY_SYSCALL,
        rsp: push_iret_context(&mut w, top, &to_user(VGCF_in_syscall)),
        ..Regs::default()
    };
    call_with(&mut w, &mut regs, __HYPERVISOR_iret, [0; 5]);
    assert!(!w.dom.vcpu().kernel_mode);
    // Back from a syscall: left with `sysret`, so RCX and R11 are RIP and RFLAGS.
    assert_eq!(
        (regs.rcx, regs.r11, regs.vector),
        (USER_RIP, 0x202, ENTRY_SYSCALL)
    );
    w.dom.vcpu_mut().flush.take();

    // User mode: `syscall` at USER_RIP + 0x10 with RAX = 39. The entry builds its frame.
    let next = USER_RIP + 0x12;
    let mut regs = Regs {
        vector: ENTRY_SYSCALL,
        rip: next,
        rcx: next,
        rflags: 0x246,
        r11: 0x246,
        cs: 0xe033,
        ss: 0xe02b,
        rsp: USER_RSP - 0x40,
        rax: 39,
        ..Regs::default()
    };
    bounce::switch_to_kernel(&mut w.m, &mut w.dom, &mut regs).unwrap();
    assert!(w.dom.vcpu().kernel_mode);
    assert_eq!(w.dom.vcpu_mut().flush.take().new_cr3, Some(w.dom.vcpu().l4));
    assert_eq!(w.dom.vcpu().gs_bases(), (KERNEL_GS, USER_GS));
    assert_eq!((regs.rip, regs.rsp, regs.rax), (SYSCALL_CB, top - 56, 39));
    let frame: [u64; 7] = w.get(regs.rsp);
    assert_eq!(
        frame,
        [next, 0x246, next, 0xe033, 0x246, USER_RSP - 0x40, 0xe02b]
    );
    assert!(
        crate::shared_info::upcall_mask(&w.m, &w.dom),
        "CALLBACKF_mask_events"
    );

    // The kernel answers 0 and returns: the iret stub pushes RCX, R11, RAX over the frame's
    // RCX/R11 slots and VGCF_in_syscall.
    let ic = IretContext {
        rax: 0,
        r11: frame[1],
        rcx: frame[0],
        flags: VGCF_in_syscall,
        rip: frame[2],
        cs: frame[3],
        rflags: frame[4],
        rsp: frame[5],
        ss: frame[6],
    };
    let mut regs = Regs {
        vector: ENTRY_SYSCALL,
        rsp: push_iret_context(&mut w, top, &ic),
        ..Regs::default()
    };
    assert_eq!(call_with(&mut w, &mut regs, __HYPERVISOR_iret, [0; 5]), 0);
    assert!(!w.dom.vcpu().kernel_mode);
    assert_eq!(w.dom.vcpu_mut().flush.take().new_cr3, Some(user_l4));
    assert_eq!(
        (regs.rip, regs.rsp, regs.cs),
        (next, USER_RSP - 0x40, 0xe033)
    );
    assert!(
        !crate::shared_info::upcall_mask(&w.m, &w.dom),
        "events back on with RFLAGS.IF"
    );
    w.check();
}

#[test]
fn the_user_table_cannot_be_dropped_from_under_user_mode() {
    // Clearing the user base pointer is a kernel-mode hypercall; afterwards, `iret` refuses
    // user mode, and the frame is released.
    let (mut w, user_l4, top) = kernel_ready_for_user();
    let list = w.scratch_va(0);
    let op = MmuextOp {
        cmd: MMUEXT_NEW_USER_BASEPTR,
        arg1: 0,
        ..Default::default()
    };
    w.put(list, &op);
    assert_eq!(w.call(__HYPERVISOR_mmuext_op, [list, 1, 0, SELF, 0]), 0);
    assert_eq!(w.frame(user_l4).type_count(), 0);
    let mut regs = Regs {
        rsp: push_iret_context(&mut w, top, &to_user(0)),
        ..Regs::default()
    };
    call_with(&mut w, &mut regs, __HYPERVISOR_iret, [0; 5]);
    assert_eq!(w.dom.shutdown, Some(Shutdown::Crashed(NO_USER_PAGE_TABLES)));
    w.check();
}

#[test]
fn the_32_bit_syscall_callback_is_kept() {
    let mut w = World::dom0();
    let list = w.scratch_va(0);
    let reg = CallbackRegister {
        r#type: hypercall_abi::callback::CALLBACKTYPE_syscall32,
        address: 0x10_6000,
        ..Default::default()
    };
    w.put(list, &reg);
    assert_eq!(
        w.call(
            __HYPERVISOR_callback_op,
            [CALLBACKOP_register.into(), list, 0, 0, 0]
        ),
        0
    );
    assert_eq!(w.dom.vcpu().syscall32_callback, 0x10_6000);
}
