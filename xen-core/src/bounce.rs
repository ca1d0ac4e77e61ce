//! Delivering exceptions and events to a PV guest: Xen's bounce frame on the guest kernel stack.
//!
//! When a guest takes an exception (or an event upcall is due, or its user mode executes
//! `syscall`), the hypervisor does not return to the interrupted instruction. It pushes a frame on
//! the guest kernel's stack and enters the handler the guest registered (`set_trap_table`,
//! `callback_op`). The frame (`x86_64/entry.S: create_bounce_frame`), from the new stack pointer
//! upwards:
//!
//! ```text
//!   RCX, R11, [error code], RIP, CS | saved_upcall_mask << 32, RFLAGS, RSP, SS
//! ```
//!
//! In guest kernel mode the frame goes on the interrupted stack (16-byte aligned down) and the
//! saved CS has its RPL cleared ("kernel context"). From guest user mode the vCPU first switches
//! to kernel mode (kernel page tables, kernel GS base: [`Domain::toggle_guest_mode`]) and the
//! frame goes on the kernel stack the guest registered with `stack_switch`; the saved CS keeps
//! RPL 3, which is how the guest kernel tells a user frame from its own. RFLAGS.IF carries the
//! inverse of the saved upcall mask, and the guest later returns with the `iret` hypercall. A
//! handler address of 0, or a stack pointer inside the hypervisor's range, crashes the domain: it
//! could not take the exception.

use hypercall_abi::arch_x86_64::{
    VGCF_syscall_disables_events, FLAT_KERNEL_CS, FLAT_KERNEL_SS, FLAT_USER_CS32,
    HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START,
};

use crate::domain::Domain;
use crate::guest_access::{GuestMemory, MmuGuest, PageTableGuest};
use crate::mm::MachineMemoryMut;
use crate::regs::{rflags, Regs};
use crate::shared_info;

/// Page-fault error-code bit: the access came from user mode.
const PFEC_USER: u32 = 1 << 2;
/// Vector numbers the bounce logic treats specially.
pub const TRAP_PAGE_FAULT: u8 = 14;
/// #UD: what a user-mode `syscall` without a callback raises.
pub const TRAP_INVALID_OP: u8 = 6;

/// What to deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounce {
    /// Guest handler address.
    pub eip: u64,
    /// Error code to push, if the event has one.
    pub error_code: Option<u32>,
    /// Mask events on entry (`TBF_INTERRUPT`).
    pub mask_events: bool,
}

/// Why a bounce could not be delivered: the domain must be crashed.
pub type CrashReason = &'static str;

/// Builds the bounce frame for `b` on the guest kernel stack and rewrites `regs` to enter the
/// handler in guest kernel mode (switching to it first if the guest was in user mode).
pub fn create_bounce_frame<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    regs: &mut Regs,
    b: Bounce,
) -> Result<(), CrashReason> {
    if b.eip == 0 {
        return Err("no handler registered for a trap or event it had to take");
    }
    let from_user = !dom.vcpu().kernel_mode;
    let (mut sp, cs) = if from_user {
        // "Push new frame at registered guest-OS stack base", on the kernel's page tables.
        dom.toggle_guest_mode()?;
        (dom.vcpu().kernel_sp, regs.cs & 0xffff)
    } else {
        // "In kernel context already: push new frame at existing %rsp"; RPL 0 in the saved CS
        // tells the guest it interrupted itself.
        (regs.rsp, regs.cs & !3 & 0xffff)
    };
    sp &= !0xf;
    if (HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END + 60).contains(&sp) {
        return Err("guest stack pointer inside the hypervisor's range");
    }
    let saved_mask = shared_info::upcall_mask(m, dom);
    if b.mask_events {
        shared_info::set_upcall_mask(m, dom, true);
    }
    let cs = cs | (u64::from(saved_mask) << 32);
    // The frame's IOPL is the virtual one with `VMASST_TYPE_architectural_iopl`, else 0
    // (`create_bounce_frame` folds `VCPU_iopl` in under the assist).
    let iopl = if dom.vm_assist & (1 << hypercall_abi::xen::VMASST_TYPE_architectural_iopl) != 0 {
        u64::from(dom.vcpu().iopl & 3) << 12
    } else {
        0
    };
    let fl = (regs.rflags & !(rflags::IF | rflags::IOPL))
        | iopl
        | if saved_mask { 0 } else { rflags::IF };

    let mut words = [0u64; 8];
    let mut n = 0;
    let mut push = |v: u64| {
        words[n] = v;
        n += 1;
    };
    push(regs.rcx);
    push(regs.r11);
    if let Some(ec) = b.error_code {
        push(u64::from(ec));
    }
    push(regs.rip);
    push(cs);
    push(fl);
    push(regs.rsp);
    push(regs.ss);
    let bytes_len = n * 8;
    sp = sp.wrapping_sub(bytes_len as u64);
    let mut bytes = [0u8; 64];
    for (i, w) in words[..n].iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    // Kernel mode now: the frame is written through the kernel's table; through the MMU when
    // the CPU runs on it (the way out of a switch loads it first: `Arch::context_switch`) and
    // the vCPU owes no TLB work, the condition `MmuGuest` states: every translation the TLB then
    // holds for the guest's part allows only what the guest could do through it itself (its
    // own deferred flushes are in `flush`; a switch to it dropped every other domain's).
    let mut g = MmuGuest {
        walk: PageTableGuest {
            mem: m,
            l4: dom.current_l4(),
        },
        mmu: !dom.vcpu().flush.owes_tlb_work(),
    };
    g.write(sp, &bytes[..bytes_len])
        .map_err(|_| "fault while writing an exception frame to the guest stack")?;

    regs.rflags &= !(rflags::AC | rflags::VM | rflags::RF | rflags::NT | rflags::TF);
    regs.ss = FLAT_KERNEL_SS.into();
    regs.rsp = sp;
    regs.cs = FLAT_KERNEL_CS.into();
    regs.rip = b.eip;
    Ok(())
}

/// `syscall` from guest user mode (Xen's `switch_to_kernel`): not a hypercall. The instruction
/// is bounced to the guest kernel's syscall callback (`CALLBACKTYPE_syscall`, or
/// `CALLBACKTYPE_syscall32` when it came from 32-bit code on `FLAT_USER_CS32`), masking events if
/// the guest registered it with `CALLBACKF_mask_events` (`VGCF_syscall_disables_events`), and
/// with RFLAGS.DF cleared: the PV ABI's fixed stand-in for the SYSCALL_MASK MSR. `regs` is the
/// frame the `syscall` entry built (RIP = RCX = the next instruction, RFLAGS = R11). Without a
/// callback the guest gets #UD at the `syscall` instruction itself, through its trap table, with
/// DF left alone.
pub fn switch_to_kernel<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    regs: &mut Regs,
) -> Result<(), CrashReason> {
    let v = dom.vcpu();
    let eip = if regs.cs == u64::from(FLAT_USER_CS32) {
        v.syscall32_callback
    } else {
        v.syscall_callback
    };
    if eip == 0 {
        // `syscall_no_callback`: `syscall` is two bytes long.
        regs.rip = regs.rip.wrapping_sub(2);
        return inject_exception(m, dom, regs, TRAP_INVALID_OP, None, 0);
    }
    let mask_events = v.callback_flags & VGCF_syscall_disables_events != 0;
    create_bounce_frame(
        m,
        dom,
        regs,
        Bounce {
            eip,
            error_code: None,
            mask_events,
        },
    )?;
    regs.rflags &= !rflags::DF;
    Ok(())
}

/// Delivers hardware exception `vector` (with `error_code` where the CPU pushes one) through the
/// guest's trap table; for a page fault, `cr2` goes to `vcpu_info.arch.cr2`.
pub fn inject_exception<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    regs: &mut Regs,
    vector: u8,
    error_code: Option<u32>,
    cr2: u64,
) -> Result<(), CrashReason> {
    let ti = dom.vcpu().trap_ctxt.get(vector);
    let mut error_code = error_code;
    if vector == TRAP_PAGE_FAULT {
        shared_info::set_cr2(m, dom, cr2);
        // The CPU saw ring 3; the guest wants to know whether its *user* mode faulted.
        error_code = error_code.map(|e| {
            let e = e & !PFEC_USER;
            if dom.vcpu().kernel_mode {
                e
            } else {
                e | PFEC_USER
            }
        });
    }
    create_bounce_frame(
        m,
        dom,
        regs,
        Bounce {
            eip: ti.address,
            error_code,
            mask_events: ti.flags & 4 != 0,
        },
    )
}

/// `int $n` that faulted with #GP(n*8 + 2) (only `int3` and `into` have DPL-3 gates in the
/// IDT): delivered as vector n after the instruction if the guest's trap table allows it from
/// the current mode (`permit_softint`), as Xen's `do_general_protection` does. `None` when the
/// #GP is not such an `int`, or the guest may not raise that vector: the #GP is the guest's.
pub fn software_interrupt<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    regs: &mut Regs,
    error_code: u64,
) -> Option<Result<(), CrashReason>> {
    let n = crate::emulate::soft_int_vector(error_code)?;
    let ti = dom.vcpu().trap_ctxt.get(n);
    if !crate::emulate::permit_softint(ti.dpl(), dom.vcpu().kernel_mode) {
        return None;
    }
    regs.rip = regs.rip.wrapping_add(2);
    let b = Bounce {
        eip: ti.address,
        error_code: None,
        mask_events: ti.flags & 4 != 0,
    };
    Some(create_bounce_frame(m, dom, regs, b))
}

/// Delivers an NMI sent with `VCPUOP_send_nmi` to the running vCPU, if one is pending and none is
/// being handled (Xen's `process_nmi`): the pending flag is cleared, and if the guest has an NMI
/// callback (trap table entry 2, `CALLBACKTYPE_nmi`) it gets an exception frame for vector 2 and
/// further NMIs wait for its `iret`. Without a callback the NMI is dropped, as Xen's null trap
/// bounce does. Returns whether a frame was built.
pub fn deliver_nmi<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    regs: &mut Regs,
) -> Result<bool, CrashReason> {
    let v = dom.vcpu_mut();
    if !v.nmi_pending || v.nmi_masked {
        return Ok(false);
    }
    v.nmi_pending = false;
    if v.trap_ctxt.get(2).address == 0 {
        return Ok(false);
    }
    v.nmi_masked = true;
    inject_exception(m, dom, regs, 2, None, 0)?;
    Ok(true)
}

/// Delivers a pending event upcall if the guest has events pending and unmasked. Returns whether
/// one was delivered.
#[inline]
pub fn deliver_upcall<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    regs: &mut Regs,
) -> Result<bool, CrashReason> {
    let word = shared_info::running_upcall_word(dom);
    deliver_upcall_at(m, dom, regs, word)
}

/// [`deliver_upcall`] with the running vCPU's upcall word placed already
/// ([`shared_info::upcall_word`]).
#[inline]
pub fn deliver_upcall_at<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    regs: &mut Regs,
    word: crate::mm::Maddr,
) -> Result<bool, CrashReason> {
    if !shared_info::upcall_deliverable_at(m, word) {
        return Ok(false);
    }
    let eip = dom.vcpu().event_callback;
    create_bounce_frame(
        m,
        dom,
        regs,
        Bounce {
            eip,
            error_code: None,
            mask_events: true,
        },
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_access::copy_from_guest;
    use crate::hypercall::testing::{setup, GUEST_VA};

    #[test]
    fn exception_frame_layout_matches_xen() {
        let (mut m, mut d, _) = setup();
        d.vcpu_mut()
            .trap_ctxt
            .update(14, |t| t.address = 0x10_1000)
            .unwrap();
        d.vcpu_mut().trap_ctxt.update(14, |t| t.flags = 4).unwrap(); // mask events
        let mut regs = Regs {
            rip: 0x10_2345,
            cs: 0xe033,
            rflags: 0x246,
            rsp: GUEST_VA + 0x808, // not 16-byte aligned: aligned down first
            ss: 0xe02b,
            rcx: 0x1111,
            r11: 0x2222,
            ..Regs::default()
        };
        inject_exception(&mut m, &mut d, &mut regs, 14, Some(0x6), 0xdead_b000).unwrap();
        assert_eq!(regs.rip, 0x10_1000);
        assert_eq!((regs.cs, regs.ss), (0xe033, 0xe02b));
        assert_eq!(regs.rsp, GUEST_VA + 0x800 - 64);
        let g = PageTableGuest {
            mem: &mut m,
            l4: d.vcpu().l4,
        };
        let frame: [u64; 8] =
            copy_from_guest(&g, crate::guest_access::GuestPtr::new(regs.rsp)).unwrap();
        // RCX, R11, error code (user bit cleared: guest kernel mode), RIP, CS (RPL 0, mask 0 saved),
        // RFLAGS (IF = !saved mask), RSP, SS.
        assert_eq!(
            frame,
            [
                0x1111,
                0x2222,
                0x2,
                0x10_2345,
                0xe030,
                0x246,
                GUEST_VA + 0x808,
                0xe02b
            ]
        );
        assert!(shared_info::upcall_mask(&m, &d), "trap flag 4 masks events");
        let cr2 = m
            .mem
            .read_u64(crate::mm::Maddr(d.shared_info.maddr().0 + 16))
            .unwrap();
        assert_eq!(cr2, 0xdead_b000);
    }

    #[test]
    fn no_handler_or_bad_stack_crashes_the_domain() {
        let (mut m, mut d, _) = setup();
        let mut regs = Regs {
            rsp: GUEST_VA + 0x800,
            ..Regs::default()
        };
        assert!(inject_exception(&mut m, &mut d, &mut regs, 6, None, 0).is_err());
        let b = Bounce {
            eip: 0x1000,
            error_code: None,
            mask_events: false,
        };
        let mut regs = Regs {
            rsp: HYPERVISOR_VIRT_START + 0x100,
            ..Regs::default()
        };
        assert!(create_bounce_frame(&mut m, &mut d, &mut regs, b).is_err());
        let mut regs = Regs {
            rsp: 0x7000_0000_0000,
            ..Regs::default()
        };
        assert!(
            create_bounce_frame(&mut m, &mut d, &mut regs, b).is_err(),
            "unmapped stack"
        );
    }

    #[test]
    fn upcall_only_when_pending_and_unmasked() {
        let (mut m, mut d, _) = setup();
        d.vcpu_mut().event_callback = 0x10_3000;
        let mut regs = Regs {
            rsp: GUEST_VA + 0x800,
            rflags: 0x202,
            cs: 0xe033,
            ..Regs::default()
        };
        shared_info::set_upcall_mask(&mut m, &d, true);
        let _ = shared_info::SharedInfoPage::of_mut(&mut m, d.shared_info)
            .test_and_set_upcall_pending(0);
        assert_eq!(deliver_upcall(&mut m, &mut d, &mut regs), Ok(false));
        shared_info::set_upcall_mask(&mut m, &d, false);
        assert_eq!(deliver_upcall(&mut m, &mut d, &mut regs), Ok(true));
        assert_eq!(regs.rip, 0x10_3000);
        assert!(
            shared_info::upcall_mask(&m, &d),
            "an upcall masks further upcalls"
        );
        let g = PageTableGuest {
            mem: &mut m,
            l4: d.vcpu().l4,
        };
        let frame: [u64; 7] =
            copy_from_guest(&g, crate::guest_access::GuestPtr::new(regs.rsp)).unwrap();
        assert_eq!(
            frame[4], 0x202,
            "IF set: upcalls were unmasked when it was taken"
        );
    }

    // ---------------------------------------------------------------------------------------
    // Guest user mode: bounces switch to kernel mode and the kernel stack.

    use crate::mm::Mfn;
    use crate::regs::ENTRY_SYSCALL;

    /// The user-mode table of these tests: an empty frame, so anything written through it
    /// (instead of through the kernel's table) would fail.
    const USER_L4: Mfn = Mfn(20);
    const KERNEL_GS: u64 = 0xffff_8880_0000_0000;
    const USER_GS: u64 = 0x7f00_0000_1000;
    /// A user stack the kernel's table does not map.
    const USER_RSP: u64 = 0x7fff_f008;
    const USER_RIP: u64 = 0x7000_1234;
    const SYSCALL_CB: u64 = 0x10_5000;

    /// A domain running in guest user mode, with a kernel stack registered (`stack_switch`) in
    /// page 2 of the guest region (unaligned: it is aligned down).
    fn in_user_mode() -> (FakeMachine, Domain) {
        let (m, mut d, _) = setup();
        d.vcpu_mut().user_l4 = Some(USER_L4);
        d.vcpu_mut().kernel_mode = false;
        d.vcpu_mut().kernel_ss = 0xe02b;
        d.vcpu_mut().kernel_sp = GUEST_VA + 0x2008;
        d.vcpu_mut().gs_base_kernel = KERNEL_GS;
        d.vcpu_mut().gs_base_user = USER_GS;
        (m, d)
    }

    use crate::hypercall::testing::FakeMachine;

    /// The frame the `syscall` entry builds: RIP = RCX = the next instruction, RFLAGS = R11.
    fn syscall_entry_frame(cs: u64) -> Regs {
        Regs {
            vector: ENTRY_SYSCALL,
            rip: USER_RIP,
            rcx: USER_RIP,
            rflags: 0x646, // IF, DF, ZF, PF
            r11: 0x646,
            cs,
            ss: 0xe02b,
            rsp: USER_RSP,
            rax: 60,
            rdi: 1,
            ..Regs::default()
        }
    }

    fn kernel_frame<const N: usize>(m: &mut FakeMachine, d: &Domain, rsp: u64) -> [u64; N] {
        let g = PageTableGuest {
            mem: m,
            l4: d.vcpu().l4,
        };
        copy_from_guest(&g, crate::guest_access::GuestPtr::new(rsp)).unwrap()
    }

    /// What the guest kernel sees on entry to its syscall callback from user mode.
    #[test]
    fn syscall_from_user_enters_the_callback_on_the_kernel_stack() {
        let (mut m, mut d) = in_user_mode();
        d.vcpu_mut().syscall_callback = SYSCALL_CB;
        d.vcpu_mut().callback_flags = VGCF_syscall_disables_events;
        let mut regs = syscall_entry_frame(0xe033);
        switch_to_kernel(&mut m, &mut d, &mut regs).unwrap();

        // Guest kernel mode, on the kernel's table and GS base.
        assert!(d.vcpu().kernel_mode);
        assert_eq!(d.vcpu().flush.new_cr3, Some(d.vcpu().l4));
        assert_eq!(d.vcpu().gs_bases(), (KERNEL_GS, USER_GS));
        // The callback, on the kernel stack (16-byte aligned, then 7 words), flat kernel selectors,
        // DF cleared, the user's general registers untouched; the exit is still a `sysret` one.
        assert_eq!(regs.rip, SYSCALL_CB);
        assert_eq!((regs.cs, regs.ss), (0xe033, 0xe02b));
        assert_eq!(regs.rsp, GUEST_VA + 0x2000 - 7 * 8);
        assert_eq!(regs.rflags, 0x246);
        assert_eq!((regs.rax, regs.rdi, regs.vector), (60, 1, ENTRY_SYSCALL));
        // RCX, R11, RIP, CS (RPL 3 kept: a user frame; saved mask 0), RFLAGS (IF = events were
        // enabled), the user's RSP and SS.
        let frame: [u64; 7] = kernel_frame(&mut m, &d, regs.rsp);
        assert_eq!(
            frame,
            [USER_RIP, 0x646, USER_RIP, 0xe033, 0x646, USER_RSP, 0xe02b]
        );
        assert!(
            shared_info::upcall_mask(&m, &d),
            "VGCF_syscall_disables_events masks events"
        );
    }

    #[test]
    fn syscall_from_user_with_events_masked_saves_the_mask_and_keeps_it() {
        let (mut m, mut d) = in_user_mode();
        d.vcpu_mut().syscall_callback = SYSCALL_CB;
        shared_info::set_upcall_mask(&mut m, &d, true);
        let mut regs = syscall_entry_frame(0xe033);
        switch_to_kernel(&mut m, &mut d, &mut regs).unwrap();
        let frame: [u64; 7] = kernel_frame(&mut m, &d, regs.rsp);
        assert_eq!(
            frame[3],
            0xe033 | 1 << 32,
            "saved_upcall_mask in bits 32..39"
        );
        assert_eq!(frame[4], 0x446, "IF clear: events were masked");
        assert!(shared_info::upcall_mask(&m, &d));

        // Registered without CALLBACKF_mask_events: events stay as they were.
        let (mut m, mut d) = in_user_mode();
        d.vcpu_mut().syscall_callback = SYSCALL_CB;
        let mut regs = syscall_entry_frame(0xe033);
        switch_to_kernel(&mut m, &mut d, &mut regs).unwrap();
        assert!(!shared_info::upcall_mask(&m, &d));
    }

    #[test]
    fn syscall_from_32_bit_code_takes_the_syscall32_callback() {
        let (mut m, mut d) = in_user_mode();
        d.vcpu_mut().syscall_callback = SYSCALL_CB;
        d.vcpu_mut().syscall32_callback = 0x10_6000;
        let mut regs = syscall_entry_frame(0xe023);
        switch_to_kernel(&mut m, &mut d, &mut regs).unwrap();
        assert_eq!((regs.rip, regs.cs), (0x10_6000, 0xe033));
        let frame: [u64; 7] = kernel_frame(&mut m, &d, regs.rsp);
        assert_eq!(
            frame[3], 0xe023,
            "the 32-bit selector is what the kernel sees"
        );
    }

    #[test]
    fn syscall_from_user_without_a_callback_is_ud_at_the_instruction() {
        let (mut m, mut d) = in_user_mode();
        d.vcpu_mut()
            .trap_ctxt
            .update(6, |t| t.address = 0x10_1600)
            .unwrap();
        let mut regs = syscall_entry_frame(0xe033);
        switch_to_kernel(&mut m, &mut d, &mut regs).unwrap();
        assert_eq!(regs.rip, 0x10_1600);
        assert!(d.vcpu().kernel_mode);
        let frame: [u64; 7] = kernel_frame(&mut m, &d, regs.rsp);
        assert_eq!(frame[2], USER_RIP - 2, "#UD points at the `syscall` itself");
        assert_eq!(regs.rflags & rflags::DF, rflags::DF, "DF is left alone");

        // No #UD handler either: the domain cannot take it.
        let (mut m, mut d) = in_user_mode();
        let mut regs = syscall_entry_frame(0xe033);
        assert!(switch_to_kernel(&mut m, &mut d, &mut regs).is_err());
    }

    #[test]
    fn exception_from_user_mode_goes_on_the_kernel_stack_with_the_user_bit() {
        let (mut m, mut d) = in_user_mode();
        d.vcpu_mut()
            .trap_ctxt
            .update(14, |t| t.address = 0x10_1000)
            .unwrap();
        let mut regs = Regs {
            rip: USER_RIP,
            cs: 0xe033,
            rflags: 0x202,
            rsp: USER_RSP,
            ss: 0xe02b,
            rcx: 0x1111,
            r11: 0x2222,
            ..Regs::default()
        };
        // The CPU reports ring 3 (user bit) for every guest fault; user mode keeps it.
        inject_exception(&mut m, &mut d, &mut regs, 14, Some(0x6), 0x7000_0000).unwrap();
        assert!(d.vcpu().kernel_mode);
        assert_eq!(d.vcpu().flush.new_cr3, Some(d.vcpu().l4));
        assert_eq!(regs.rsp, GUEST_VA + 0x2000 - 8 * 8);
        let frame: [u64; 8] = kernel_frame(&mut m, &d, regs.rsp);
        assert_eq!(
            frame,
            [0x1111, 0x2222, 0x6, USER_RIP, 0xe033, 0x202, USER_RSP, 0xe02b]
        );
        // The same fault in kernel mode: user bit cleared, RPL 0, the interrupted stack.
        let (mut m, mut d, _) = setup();
        d.vcpu_mut()
            .trap_ctxt
            .update(14, |t| t.address = 0x10_1000)
            .unwrap();
        let mut regs = Regs {
            rip: 0x10_2000,
            cs: 0xe033,
            rsp: GUEST_VA + 0x800,
            ss: 0xe02b,
            ..Regs::default()
        };
        inject_exception(&mut m, &mut d, &mut regs, 14, Some(0x6), 0).unwrap();
        assert!(d.vcpu().flush.is_empty(), "no mode switch, no CR3 load");
        let frame: [u64; 8] = kernel_frame(&mut m, &d, regs.rsp);
        assert_eq!((frame[2], frame[4]), (0x2, 0xe030));
    }

    #[test]
    fn an_upcall_in_user_mode_switches_to_the_kernel() {
        let (mut m, mut d) = in_user_mode();
        d.vcpu_mut().event_callback = 0x10_3000;
        let _ = shared_info::SharedInfoPage::of_mut(&mut m, d.shared_info)
            .test_and_set_upcall_pending(0);
        let mut regs = Regs {
            rip: USER_RIP,
            cs: 0xe033,
            rflags: 0x202,
            rsp: USER_RSP,
            ss: 0xe02b,
            ..Regs::default()
        };
        assert_eq!(deliver_upcall(&mut m, &mut d, &mut regs), Ok(true));
        assert!(d.vcpu().kernel_mode);
        assert_eq!((regs.rip, regs.rsp), (0x10_3000, GUEST_VA + 0x2000 - 7 * 8));
        let frame: [u64; 7] = kernel_frame(&mut m, &d, regs.rsp);
        assert_eq!(&frame[2..], &[USER_RIP, 0xe033, 0x202, USER_RSP, 0xe02b]);
    }

    #[test]
    fn a_bad_kernel_stack_crashes_a_bounce_from_user_mode() {
        let b = Bounce {
            eip: 0x10_1000,
            error_code: None,
            mask_events: false,
        };
        // Never registered (0 wraps to the top of the address space, unmapped), inside the
        // hypervisor, or simply unmapped.
        for sp in [0, HYPERVISOR_VIRT_START + 0x1000, 0x6000_0000_0000] {
            let (mut m, mut d) = in_user_mode();
            d.vcpu_mut().kernel_sp = sp;
            let mut regs = Regs {
                rsp: GUEST_VA + 0x800, // mapped, but not the stack to use
                ..Regs::default()
            };
            assert!(
                create_bounce_frame(&mut m, &mut d, &mut regs, b).is_err(),
                "{sp:#x}"
            );
        }
    }

    /// The frame's RFLAGS.IOPL is the virtual IOPL with `VMASST_TYPE_architectural_iopl`, and 0
    /// without it, whatever the real RFLAGS held.
    #[test]
    fn bounce_frame_iopl_follows_the_architectural_iopl_assist() {
        let frame_iopl = |assist: bool, real: u64| {
            let (mut m, mut d, _) = setup();
            d.vcpu_mut()
                .trap_ctxt
                .update(6, |t| t.address = 0x10_1000)
                .unwrap();
            d.vcpu_mut().iopl = 2;
            if assist {
                d.vm_assist |= 1 << hypercall_abi::xen::VMASST_TYPE_architectural_iopl;
            }
            let mut regs = Regs {
                rip: 0x10_2345,
                cs: 0xe033,
                rflags: 0x246 | real,
                rsp: GUEST_VA + 0x800,
                ss: 0xe02b,
                ..Regs::default()
            };
            inject_exception(&mut m, &mut d, &mut regs, 6, None, 0).unwrap();
            let frame: [u64; 7] = kernel_frame(&mut m, &d, regs.rsp);
            (frame[4] >> 12) & 3
        };
        assert_eq!(frame_iopl(false, 0), 0);
        assert_eq!(frame_iopl(false, 0x3000), 0);
        assert_eq!(frame_iopl(true, 0), 2);
        assert_eq!(frame_iopl(true, 0x1000), 2);
    }

    #[test]
    fn software_interrupts_follow_the_dpl_of_the_current_mode() {
        let gp = |n: u64| n * 8 + 2;
        let (mut m, mut d) = in_user_mode();
        d.vcpu_mut()
            .trap_ctxt
            .update(0x80, |t| t.address = 0x10_8000)
            .unwrap();
        d.vcpu_mut()
            .trap_ctxt
            .update(0x80, |t| t.flags = 3)
            .unwrap(); // DPL 3
        d.vcpu_mut()
            .trap_ctxt
            .update(0x81, |t| t.address = 0x10_8100)
            .unwrap();
        d.vcpu_mut()
            .trap_ctxt
            .update(0x81, |t| t.flags = 1 | 4)
            .unwrap(); // DPL 1, mask events
        let user = Regs {
            rip: USER_RIP,
            cs: 0xe033,
            rsp: USER_RSP,
            ss: 0xe02b,
            ..Regs::default()
        };
        // From user mode: DPL 1 is refused (the #GP is the guest's), regs untouched.
        let mut regs = user;
        assert!(software_interrupt(&mut m, &mut d, &mut regs, gp(0x81)).is_none());
        assert_eq!(regs, user);
        assert!(!d.vcpu().kernel_mode);
        // DPL 3 is delivered after the two-byte `int`, on the kernel stack.
        assert_eq!(
            software_interrupt(&mut m, &mut d, &mut regs, gp(0x80)),
            Some(Ok(()))
        );
        assert!(d.vcpu().kernel_mode);
        let frame: [u64; 7] = kernel_frame(&mut m, &d, regs.rsp);
        assert_eq!(
            (regs.rip, frame[2], frame[3]),
            (0x10_8000, USER_RIP + 2, 0xe033)
        );
        // From kernel mode DPL 1 is enough; not an `int` at all is not ours.
        let mut regs = Regs {
            rip: 0x10_2000,
            cs: 0xe033,
            rsp: GUEST_VA + 0x800,
            ..Regs::default()
        };
        assert!(software_interrupt(&mut m, &mut d, &mut regs, 0).is_none());
        assert_eq!(
            software_interrupt(&mut m, &mut d, &mut regs, gp(0x81)),
            Some(Ok(()))
        );
        assert_eq!(regs.rip, 0x10_8100);
        assert!(shared_info::upcall_mask(&m, &d));
    }
}
