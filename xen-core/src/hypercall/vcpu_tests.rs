//! Host tests of several vCPUs per domain: `VCPUOP_initialise` against hostile contexts (each
//! of `arch_set_info_guest`'s checks, nothing leaked on refusal), `up`/`down`/`is_up`, the
//! per-vCPU rules of the other `VCPUOP_*`s, `send_nmi`, and teardown of a domain whose second
//! vCPU holds frames.

use hypercall_abi::arch_x86_64::{
    VGCF_in_kernel, VGCF_online, VcpuGuestContext, FLAT_KERNEL_CS, FLAT_KERNEL_SS,
};
use hypercall_abi::sched::SHUTDOWN_poweroff;
use hypercall_abi::vcpu::*;
use hypercall_abi::xen::{__HYPERVISOR_vcpu_op, DOMID_SELF, MMU_NORMAL_PT_UPDATE};

use super::vcpu::{check_context, BadContext};
use crate::domain::Shutdown;
use crate::guest_access::{copy_to_guest, GuestPtr, PageTableGuest};
use crate::mm::frame_table::testing::{base, page_va, Two};
use crate::mm::frame_table::PageType;
use crate::mm::Mfn;

/// A change that makes a context hostile.
type Edit = dyn Fn(&mut VcpuGuestContext);

const EINVAL: i64 = -22;
const ENOENT: i64 = -2;
const EEXIST: i64 = -17;
const EFAULT: i64 = -14;

/// Frame `k` of domain 1.
fn d1(k: u64) -> u64 {
    base(1) + k
}

/// Where the context is written (two data pages, 12 and 13, of domain 1).
const CTX_VA: u64 = page_va(12);

/// The frame used as vCPU 1's GDT (unmapped first, so it can become a descriptor page).
const GDT_FRAME: u64 = 22;

/// Domain 1 with two vCPUs, its frame `GDT_FRAME` no longer mapped.
fn two_vcpus() -> Two {
    let mut t = Two::new();
    t.doms[1].set_max_vcpus(2);
    let slot = Two::slot(d1(3), GDT_FRAME) | MMU_NORMAL_PT_UPDATE;
    assert_eq!(t.mmu(1, &[(slot, 0)], DOMID_SELF.into()), (0, 1));
    t
}

/// A context Linux's `cpu_initialize_context` would give: kernel mode, online, the domain's L4.
fn good_context() -> VcpuGuestContext {
    let mut c = VcpuGuestContext {
        flags: VGCF_in_kernel | VGCF_online,
        gdt_ents: 16,
        kernel_ss: FLAT_KERNEL_SS.into(),
        kernel_sp: 0x7000,
        event_callback_eip: 0x1_0000,
        failsafe_callback_eip: 0x1_0100,
        syscall_callback_eip: 0x1_0200,
        ..Default::default()
    };
    c.gdt_frames[0] = d1(GDT_FRAME);
    c.user_regs.rip = 0x2000;
    c.user_regs.rsp = 0x7000;
    c.user_regs.cs = FLAT_KERNEL_CS;
    c.user_regs.ss = FLAT_KERNEL_SS;
    c.user_regs.rflags = 0x3202; // IF and IOPL 3
    c.ctrlreg[3] = d1(0) << 12;
    c.trap_ctxt[14].vector = 14;
    c.trap_ctxt[14].address = 0x1_0300;
    c.trap_ctxt[14].cs = FLAT_KERNEL_CS;
    c
}

fn vcpu_op(t: &mut Two, cmd: u32, vcpu: u64, arg: u64) -> i64 {
    t.call(1, __HYPERVISOR_vcpu_op, [cmd.into(), vcpu, arg, 0, 0])
}

fn initialise(t: &mut Two, vcpu: u64, c: &VcpuGuestContext) -> i64 {
    let mut g = PageTableGuest {
        mem: &mut t.m.mem,
        l4: t.doms[1].vcpu().l4,
    };
    copy_to_guest(&mut g, GuestPtr::new(CTX_VA), c).unwrap();
    vcpu_op(t, VCPUOP_initialise, vcpu, CTX_VA)
}

#[test]
fn each_context_check_has_its_own_refusal() {
    let good = good_context();
    assert_eq!(check_context(&good), Ok(()));
    let bad = |f: &dyn Fn(&mut VcpuGuestContext)| {
        let mut c = good_context();
        f(&mut c);
        check_context(&c)
    };
    let nc = 0x0000_8000_0000_0000;
    for f in [
        &|c: &mut VcpuGuestContext| c.user_regs.rip = nc,
        &|c: &mut VcpuGuestContext| c.user_regs.rsp = nc,
        &|c: &mut VcpuGuestContext| c.kernel_sp = nc,
        &|c: &mut VcpuGuestContext| c.fs_base = nc,
        &|c: &mut VcpuGuestContext| c.gs_base_kernel = nc,
        &|c: &mut VcpuGuestContext| c.gs_base_user = nc,
        &|c: &mut VcpuGuestContext| c.event_callback_eip = nc,
        &|c: &mut VcpuGuestContext| c.syscall_callback_eip = nc,
        &|c: &mut VcpuGuestContext| c.failsafe_callback_eip = nc,
        &|c: &mut VcpuGuestContext| {
            c.ldt_ents = 1;
            c.ldt_base = nc;
        },
    ] as [&dyn Fn(&mut VcpuGuestContext); 10]
    {
        assert_eq!(bad(f), Err(BadContext::NonCanonical));
    }
    assert_eq!(
        bad(&|c| c.trap_ctxt[200].address = nc),
        Err(BadContext::NonCanonicalTrap)
    );
    // A non-canonical LDT base with no entries passes the first check, not `__addr_ok`.
    assert_eq!(
        bad(&|c| c.ldt_base = 0xffff_8000_0000_0000),
        Err(BadContext::LdtInHypervisor)
    );
    assert_eq!(bad(&|c| c.ldt_base = 0x1234), Err(BadContext::BadLdt));
    assert_eq!(bad(&|c| c.ldt_ents = 8193), Err(BadContext::BadLdt));
    assert_eq!(bad(&|c| c.ldt_ents = 8192), Ok(()));
    assert_eq!(
        bad(&|c| c.flags = VGCF_online),
        Err(BadContext::UserModeWithoutUserTables)
    );
    assert_eq!(
        bad(&|c| {
            c.flags = VGCF_online;
            c.ctrlreg[1] = d1(0) << 12;
        }),
        Ok(())
    );
    assert_eq!(
        bad(&|c| c.gdt_ents = 0xe000 / 8 + 1),
        Err(BadContext::TooManyGdtEntries)
    );
}

#[test]
fn hostile_contexts_are_refused_and_leak_no_reference() {
    let mut t = two_vcpus();
    let l4 = d1(0);
    // References held (a type left behind at type count 0 is free to change, as in Xen).
    let refs = |t: &Two| {
        let (a, b) = (t.frame(l4), t.frame(d1(GDT_FRAME)));
        (a.count(), a.type_count(), b.count(), b.type_count())
    };
    let before = refs(&t);
    let hostile: [(&str, &Edit); 9] = [
        ("non-canonical RIP", &|c| c.user_regs.rip = 1 << 47),
        ("trap handler", &|c| c.trap_ctxt[3].address = 1 << 63),
        ("LDT in Xen", &|c| c.ldt_base = 0xffff_8000_0000_0000),
        ("user mode, no user L4", &|c| c.flags = VGCF_online),
        ("GDT frame of dom0", &|c| c.gdt_frames[0] = base(0) + 20),
        ("GDT frame mapped writable", &|c| c.gdt_frames[0] = d1(12)),
        ("L4 of dom0", &|c| c.ctrlreg[3] = base(0) << 12),
        ("L4 is a writable data page", &|c| {
            c.ctrlreg[3] = d1(12) << 12
        }),
        ("user L4 beyond RAM", &|c| c.ctrlreg[1] = 1 << 52),
    ];
    for (what, f) in hostile {
        let mut c = good_context();
        f(&mut c);
        assert_eq!(initialise(&mut t, 1, &c), EINVAL, "{what}");
        let v = &t.doms[1].vcpus[1];
        assert!(!v.initialised && !v.up, "{what}");
        assert!(v.gdt_frames.is_empty() && v.l4 == Mfn(0), "{what}");
        assert_eq!(refs(&t), before, "{what}");
        t.check();
    }
    // A bad pointer is -EFAULT; a vCPU the domain does not have, -ENOENT (before reading).
    assert_eq!(vcpu_op(&mut t, VCPUOP_initialise, 1, 1 << 46), EFAULT);
    assert_eq!(vcpu_op(&mut t, VCPUOP_initialise, 2, 1 << 46), ENOENT);
    // The id is an `unsigned int`: 2^32 is vCPU 0, which is initialised.
    assert_eq!(vcpu_op(&mut t, VCPUOP_initialise, 1 << 32, CTX_VA), EEXIST);
}

#[test]
fn a_good_context_initialises_the_vcpu_once_and_its_frames_are_held() {
    let mut t = two_vcpus();
    let l4 = d1(0);
    let before = t.frame(l4);
    assert_eq!(initialise(&mut t, 1, &good_context()), 0);
    let v = &t.doms[1].vcpus[1];
    assert!(v.initialised && v.up && v.kernel_mode);
    assert_eq!(v.l4, Mfn(l4));
    assert_eq!(v.regs.rip, 0x2000);
    assert_eq!(v.regs.cs & 3, 3, "ring 3 selectors");
    assert_eq!(v.regs.rflags & (3 << 12), 0, "IOPL is virtual");
    assert_eq!(v.iopl, 3);
    assert_eq!(v.trap_ctxt.get(14).address, 0x1_0300);
    assert_eq!((v.event_callback, v.kernel_sp), (0x1_0000, 0x7000));
    assert_eq!(v.runstate.state, RUNSTATE_runnable);
    let after = t.frame(l4);
    assert_eq!(after.type_count(), before.type_count() + 1, "vCPU 1's CR3");
    assert_eq!(t.frame(d1(GDT_FRAME)).page_type(), PageType::SegDesc);
    t.check();
    // Once only: -EEXIST, even for vCPU 0 and even with a bad context.
    assert_eq!(initialise(&mut t, 1, &good_context()), EEXIST);
    assert_eq!(initialise(&mut t, 0, &VcpuGuestContext::default()), EEXIST);
    // Teardown gives every frame back, vCPU 1's included.
    let (mm, mem) = crate::ctx::Machine::mm(&mut t.m).unwrap();
    assert_eq!(mm.relinquish_domain(mem, &mut t.doms[1]), 0);
    assert!(t.doms[1].vcpus.iter().all(|v| v.gdt_frames.is_empty()));
}

#[test]
fn up_needs_initialise_and_the_last_vcpu_down_powers_off() {
    let mut t = two_vcpus();
    assert_eq!(vcpu_op(&mut t, VCPUOP_is_up, 0, 0), 1);
    assert_eq!(vcpu_op(&mut t, VCPUOP_is_up, 1, 0), 0);
    assert_eq!(vcpu_op(&mut t, VCPUOP_is_up, 2, 0), ENOENT);
    assert_eq!(vcpu_op(&mut t, VCPUOP_up, 1, 0), EINVAL, "not initialised");
    // Initialised but not online: down until VCPUOP_up.
    let mut c = good_context();
    c.flags = VGCF_in_kernel;
    assert_eq!(initialise(&mut t, 1, &c), 0);
    assert_eq!(vcpu_op(&mut t, VCPUOP_is_up, 1, 0), 0);
    assert_eq!(vcpu_op(&mut t, VCPUOP_up, 1, 0), 0);
    assert_eq!(vcpu_op(&mut t, VCPUOP_up, 1, 0), 0, "already up");
    assert_eq!(vcpu_op(&mut t, VCPUOP_is_up, 1, 0), 1);
    // Down while another is up: just that vCPU.
    assert_eq!(vcpu_op(&mut t, VCPUOP_down, 1, 0), 0);
    assert_eq!(vcpu_op(&mut t, VCPUOP_is_up, 1, 0), 0);
    assert_eq!(t.doms[1].vcpus[1].runstate.state, RUNSTATE_offline);
    assert_eq!(vcpu_op(&mut t, VCPUOP_down, 1, 0), 0, "already down");
    assert_eq!(t.doms[1].shutdown, None);
    // vCPU 0 is the last one up: the domain powers off, vCPU 0 stays up (as in Xen).
    assert_eq!(vcpu_op(&mut t, VCPUOP_down, 0, 0), 0);
    assert_eq!(
        t.doms[1].shutdown,
        Some(Shutdown::Requested(SHUTDOWN_poweroff))
    );
    assert_eq!(vcpu_op(&mut t, VCPUOP_is_up, 0, 0), 1);
}

#[test]
fn timers_nmi_and_vcpu_info_follow_xens_per_vcpu_rules() {
    let mut t = two_vcpus();
    // The single-shot timer is the caller's own: -EINVAL for another vCPU, before reading.
    assert_eq!(
        vcpu_op(&mut t, VCPUOP_set_singleshot_timer, 1, 1 << 46),
        EINVAL
    );
    assert_eq!(vcpu_op(&mut t, VCPUOP_stop_singleshot_timer, 1, 0), EINVAL);
    // The periodic timer may be set for any vCPU.
    assert_eq!(vcpu_op(&mut t, VCPUOP_stop_periodic_timer, 1, 0), 0);
    assert_eq!(t.doms[1].vcpus[1].periodic_period, 0);
    assert_ne!(t.doms[1].vcpus[0].periodic_period, 0);
    // Runstate of a vCPU that never ran: offline.
    assert_eq!(vcpu_op(&mut t, VCPUOP_get_runstate_info, 1, CTX_VA), 0);
    // NMIs: a non-null argument is -EINVAL.
    assert_eq!(vcpu_op(&mut t, VCPUOP_send_nmi, 1, CTX_VA), EINVAL);
    assert_eq!(vcpu_op(&mut t, VCPUOP_send_nmi, 1, 0), 0);
    assert!(t.doms[1].vcpus[1].nmi_pending && !t.doms[1].vcpus[0].nmi_pending);
    // vcpu_info of another vCPU only while it is down; once up it is -EINVAL.
    assert_eq!(initialise(&mut t, 1, &good_context()), 0);
    let info = VcpuRegisterVcpuInfo {
        mfn: d1(14),
        offset: 0,
        rsvd: 0,
    };
    let mut g = PageTableGuest {
        mem: &mut t.m.mem,
        l4: t.doms[1].vcpu().l4,
    };
    copy_to_guest(&mut g, GuestPtr::new(CTX_VA), &info).unwrap();
    assert_eq!(
        vcpu_op(&mut t, VCPUOP_register_vcpu_info, 1, CTX_VA),
        EINVAL
    );
    assert_eq!(vcpu_op(&mut t, VCPUOP_down, 1, 0), 0);
    assert_eq!(vcpu_op(&mut t, VCPUOP_register_vcpu_info, 1, CTX_VA), 0);
    assert_eq!(t.doms[1].vcpus[1].vcpu_info, Some((Mfn(d1(14)), 0)));
    assert_eq!(t.doms[1].vcpus[0].vcpu_info, None);
    // vCPU 1's fields now live there; vCPU 0's are still in shared_info.
    assert!(crate::shared_info::upcall_pending_of(
        &t.m.mem, &t.doms[1], 1
    ));
    assert!(!crate::shared_info::upcall_pending_of(
        &t.m.mem, &t.doms[1], 0
    ));
    t.check();
}

#[test]
fn an_nmi_goes_to_the_nmi_callback_once_until_iret() {
    use crate::bounce::deliver_nmi;
    use crate::regs::Regs;
    let mut t = two_vcpus();
    let mut regs = Regs {
        rip: 0x2000,
        rsp: page_va(10) + 0x800,
        cs: 0xe033,
        ss: 0xe02b,
        rflags: 0x202,
        ..Regs::default()
    };
    let d = &mut t.doms[1];
    // No NMI callback: the NMI is dropped (Xen's null trap bounce).
    d.vcpu_mut().nmi_pending = true;
    assert_eq!(deliver_nmi(&mut t.m.mem, d, &mut regs), Ok(false));
    assert!(!d.vcpu().nmi_pending && !d.vcpu().nmi_masked);
    // With one: a frame for vector 2, and no second NMI until the guest's iret.
    d.vcpu_mut()
        .trap_ctxt
        .update(2, |t| t.address = 0x3000)
        .unwrap();
    d.vcpu_mut()
        .trap_ctxt
        .update(2, |t| t.cs = FLAT_KERNEL_CS)
        .unwrap();
    d.vcpu_mut().nmi_pending = true;
    assert_eq!(deliver_nmi(&mut t.m.mem, d, &mut regs), Ok(true));
    assert_eq!(regs.rip, 0x3000);
    d.vcpu_mut().nmi_pending = true;
    assert_eq!(deliver_nmi(&mut t.m.mem, d, &mut regs), Ok(false));
    assert!(d.vcpu().nmi_pending, "waits for the iret");
}

#[test]
fn initialise_keeps_only_the_cr4_bits_this_cpu_offers() {
    use crate::emulate::{CR4_DE, CR4_FSGSBASE, CR4_OSXSAVE, CR4_TSD};
    let wants = CR4_TSD | CR4_DE | CR4_FSGSBASE | CR4_OSXSAVE | (1 << 5);
    // A CPU that offers none of them (no FSGSBASE, say): CR4 stays 0, so nothing reaches the
    // CPU's CR4 when the vCPU runs.
    let mut t = two_vcpus();
    t.info.pv_cr4_writable = 0;
    let mut c = good_context();
    c.ctrlreg[4] = wants;
    assert_eq!(initialise(&mut t, 1, &c), 0);
    assert_eq!(t.doms[1].vcpus[1].cr4, 0);
    // One that offers DE and FSGSBASE: those, and never a bit outside the guest's mask.
    let mut t = two_vcpus();
    t.info.pv_cr4_writable = CR4_DE | CR4_FSGSBASE;
    assert_eq!(initialise(&mut t, 1, &c), 0);
    assert_eq!(t.doms[1].vcpus[1].cr4, CR4_DE | CR4_FSGSBASE);
}

#[test]
fn initialise_applies_dr0_to_dr3_dr6_and_dr7_only() {
    let mut t = two_vcpus();
    let mut c = good_context();
    // debugreg[4] and [5] would be DR6 and DR7 without CR4.DE; Xen ignores them.
    c.debugreg[4] = 0xff0;
    c.debugreg[5] = 0x401;
    // DR7 with general detect is refused: DR7 keeps its default.
    c.debugreg[7] = 1 << 13;
    c.debugreg[0] = 0x5000;
    c.debugreg[6] = 0x1;
    assert_eq!(initialise(&mut t, 1, &c), 0);
    let v = &t.doms[1].vcpus[1];
    assert_eq!(v.dr7, 0x400, "debugreg[5] is not DR7");
    assert_eq!(v.dr[0], 0x5000);
    assert_eq!(
        v.dr6,
        crate::domain::DR6_DEFAULT | 1,
        "DR6 from debugreg[6] only"
    );
}

/// Machine memory that records every write (to see the order of a runstate update).
struct Logged<'a> {
    mem: &'a mut crate::mm::FakeMemory,
    writes: Vec<(u64, Vec<u8>)>,
}

impl crate::mm::MachineMemory for Logged<'_> {
    fn read(&self, addr: crate::mm::Maddr, len: usize) -> Option<&[u8]> {
        self.mem.read(addr, len)
    }
}

impl crate::mm::MachineMemoryMut for Logged<'_> {
    fn write(&mut self, addr: crate::mm::Maddr, data: &[u8]) -> Option<()> {
        self.writes.push((addr.0, data.to_vec()));
        self.mem.write(addr, data)
    }
}

#[test]
fn the_runstate_area_needs_a_guest_address_and_follows_xens_update_protocol() {
    use super::update_runstate_area;
    use hypercall_abi::xen::VMASST_TYPE_runstate_update_flag;
    let mut t = two_vcpus();
    let area = |t: &mut Two, addr: u64| {
        let a = VcpuRegisterRunstateMemoryArea { addr };
        let mut g = PageTableGuest {
            mem: &mut t.m.mem,
            l4: t.doms[1].vcpu().l4,
        };
        copy_to_guest(&mut g, GuestPtr::new(CTX_VA), &a).unwrap();
        vcpu_op(t, VCPUOP_register_runstate_memory_area, 0, CTX_VA)
    };
    // The hypervisor's range and non-canonical addresses: -EFAULT, nothing recorded.
    assert_eq!(area(&mut t, 0xffff_8300_0000_0000), EFAULT);
    assert_eq!(area(&mut t, 0x0000_8000_0000_0000), EFAULT);
    assert_eq!(t.doms[1].vcpus[0].runstate_area, 0);
    // A guest address: recorded and written at once.
    let at = page_va(13) + 0x100;
    assert_eq!(area(&mut t, at), 0);
    assert_eq!(t.doms[1].vcpus[0].runstate_area, at);
    let read = |t: &mut Two| -> VcpuRunstateInfo {
        let g = PageTableGuest {
            mem: &mut t.m.mem,
            l4: t.doms[1].vcpu().l4,
        };
        crate::guest_access::copy_from_guest(&g, GuestPtr::new(at)).unwrap()
    };
    assert_eq!(read(&mut t).state, RUNSTATE_running);
    // Without the VM assist: one plain write of the record.
    t.doms[1].vcpus[0].runstate.set(RUNSTATE_runnable, 5_000);
    let mut log = Logged {
        mem: &mut t.m.mem,
        writes: Vec::new(),
    };
    update_runstate_area(&mut log, &t.doms[1], 0, 6_000);
    assert_eq!(log.writes.len(), 1);
    let got = read(&mut t);
    assert_eq!(
        (got.state, got.state_entry_time),
        (RUNSTATE_runnable, 5_000)
    );
    // With it: the flag byte, the record flagged, the flag byte cleared.
    t.doms[1].vm_assist |= 1 << VMASST_TYPE_runstate_update_flag;
    t.doms[1].vcpus[0].runstate.set(RUNSTATE_blocked, 7_000);
    let mut log = Logged {
        mem: &mut t.m.mem,
        writes: Vec::new(),
    };
    update_runstate_area(&mut log, &t.doms[1], 0, 8_000);
    let w = log.writes;
    assert_eq!(w.len(), 3, "{w:x?}");
    assert_eq!(w[0].1, [0x80], "XEN_RUNSTATE_UPDATE set first");
    assert_eq!(w[1].1.len(), core::mem::size_of::<VcpuRunstateInfo>());
    assert_eq!(w[1].1[15], 0x80, "the record is written flagged");
    assert_eq!((w[2].0, &w[2].1[..]), (w[0].0, &[0u8][..]), "then cleared");
    let got = read(&mut t);
    assert_eq!((got.state, got.state_entry_time), (RUNSTATE_blocked, 7_000));
    assert_eq!(got.time[RUNSTATE_blocked as usize], 1_000);
    // An area that is not mapped: nothing written, nothing breaks.
    t.doms[1].vcpus[0].runstate_area = 0x7fff_0000_0000;
    let mut log = Logged {
        mem: &mut t.m.mem,
        writes: Vec::new(),
    };
    update_runstate_area(&mut log, &t.doms[1], 0, 9_000);
    assert!(log.writes.is_empty());
}
