//! Host tests of the hypercall handlers against the fake machine: the answers Xen 4.17 gives in
//! the conformance suite, and the guest-pointer checks.

use hypercall_abi::errno::Errno;
use hypercall_abi::version::*;
use hypercall_abi::xen::*;
use zerocopy::IntoBytes;

use super::testing::*;
use crate::domain::MachineInfo;
use crate::guest_access::{copy_from_guest, copy_to_guest, GuestMemory};
use crate::regs::Regs;

const EFAULT: i64 = -14;
const EINVAL: i64 = -22;
const ENOSYS: i64 = -38;
const UNMAPPED: u64 = 0x7000_0000_0000;

fn call(m: &mut FakeMachine, d: &mut crate::domain::Domain, nr: u32, a: [u64; 5]) -> i64 {
    let info = MachineInfo {
        max_ram_page: 0x1ffe0,
        pv_cr4_writable: crate::emulate::PV_CR4_GUEST_MASK,
    };
    let mut regs = Regs::default();
    with_ctx(m, d, &info, &mut regs, |ctx| {
        super::testing::call(ctx, nr.into(), a)
    })
}

fn guest_write<T: IntoBytes + zerocopy::Immutable>(
    m: &mut FakeMachine,
    d: &crate::domain::Domain,
    va: u64,
    v: &T,
) {
    let mut g = crate::guest_access::PageTableGuest {
        mem: m,
        l4: d.vcpu().l4,
    };
    copy_to_guest(&mut g, crate::guest_access::GuestPtr::new(va), v).unwrap();
}

fn guest_read<T: zerocopy::FromBytes + IntoBytes>(
    m: &mut FakeMachine,
    d: &crate::domain::Domain,
    va: u64,
) -> T {
    let g = crate::guest_access::PageTableGuest {
        mem: m,
        l4: d.vcpu().l4,
    };
    copy_from_guest(&g, crate::guest_access::GuestPtr::new(va)).unwrap()
}

#[test]
fn xen_version_answers_as_xen_4_17() {
    let (mut m, mut d, _) = setup();
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_xen_version,
            [XENVER_version.into(), 0, 0, 0, 0]
        ),
        0x40011
    );
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_xen_version,
            [XENVER_pagesize.into(), 0, 0, 0, 0]
        ),
        4096
    );
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_xen_version, [9999, 0, 0, 0, 0]),
        ENOSYS
    );
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_xen_version,
            [XENVER_extraversion.into(), UNMAPPED, 0, 0, 0]
        ),
        EFAULT
    );
    // Read-only guest memory cannot receive an answer either.
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_xen_version,
            [XENVER_extraversion.into(), GUEST_RO_VA, 0, 0, 0]
        ),
        EFAULT
    );

    let rc = call(
        &mut m,
        &mut d,
        __HYPERVISOR_xen_version,
        [XENVER_platform_parameters.into(), GUEST_VA, 0, 0, 0],
    );
    assert_eq!(rc, 0);
    let pp: XenPlatformParameters = guest_read(&mut m, &d, GUEST_VA);
    assert_eq!(pp.virt_start, 0xffff_8000_0000_0000);

    guest_write(
        &mut m,
        &d,
        GUEST_VA,
        &XenFeatureInfo {
            submap_idx: 0,
            submap: 0,
        },
    );
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_xen_version,
            [XENVER_get_features.into(), GUEST_VA, 0, 0, 0]
        ),
        0
    );
    let fi: XenFeatureInfo = guest_read(&mut m, &d, GUEST_VA);
    assert_eq!(fi.submap, 0x228e0);
    guest_write(
        &mut m,
        &d,
        GUEST_VA,
        &XenFeatureInfo {
            submap_idx: 1000,
            submap: 0xdead,
        },
    );
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_xen_version,
            [XENVER_get_features.into(), GUEST_VA, 0, 0, 0]
        ),
        EINVAL
    );
    let fi: XenFeatureInfo = guest_read(&mut m, &d, GUEST_VA);
    assert_eq!(fi.submap, 0xdead, "a refused query writes nothing back");
}

#[test]
fn console_io_is_refused_to_unprivileged_domains() {
    let (mut m, mut d, _) = setup();
    d.privileged = false;
    for cmd in [CONSOLEIO_write, CONSOLEIO_read] {
        assert_eq!(
            call(
                &mut m,
                &mut d,
                __HYPERVISOR_console_io,
                [cmd.into(), 4, GUEST_VA, 0, 0]
            ),
            -(Errno::EPERM as i64)
        );
    }
    assert!(m.console.is_empty());
}

#[test]
fn console_write_copies_guest_bytes_and_checks_the_pointer() {
    let (mut m, mut d, _) = setup();
    let text = [b'x'; 300];
    let mut g = crate::guest_access::PageTableGuest {
        mem: &mut m,
        l4: d.vcpu().l4,
    };
    g.write(GUEST_VA, &text).unwrap();
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_console_io,
            [CONSOLEIO_write.into(), 300, GUEST_VA, 0, 0]
        ),
        0
    );
    assert_eq!(m.console.len(), 300);
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_console_io,
            [CONSOLEIO_write.into(), 16, UNMAPPED, 0, 0]
        ),
        EFAULT
    );
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_console_io,
            [99, 16, GUEST_VA, 0, 0]
        ),
        ENOSYS
    );
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_console_io,
            [CONSOLEIO_read.into(), 16, GUEST_VA, 0, 0]
        ),
        0
    );
}

#[test]
fn memory_op_queries() {
    let (mut m, mut d, _) = setup();
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_memory_op, [2, 0, 0, 0, 0]),
        0x1ffe0
    );
    guest_write(&mut m, &d, GUEST_VA, &DOMID_SELF);
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_memory_op,
            [3, GUEST_VA, 0, 0, 0]
        ),
        16384
    );
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_memory_op,
            [4, GUEST_VA, 0, 0, 0]
        ),
        0xffff_ffff
    );
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_memory_op,
            [14, GUEST_VA, 0, 0, 0]
        ),
        0
    );
    guest_write(&mut m, &d, GUEST_VA, &77u16);
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_memory_op,
            [3, GUEST_VA, 0, 0, 0]
        ),
        -3
    );
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_memory_op,
            [3, UNMAPPED, 0, 0, 0]
        ),
        EFAULT
    );
    // 9999 is command 15 with continuation index 156: refused with -EINVAL, as Xen does.
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_memory_op, [9999, 0, 0, 0, 0]),
        EINVAL
    );
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_memory_op,
            [9, GUEST_VA, 0, 0, 0]
        ),
        ENOSYS
    );

    let map = hypercall_abi::memory::XenMemoryMap {
        nr_entries: 8,
        buffer: GUEST_VA + 64,
        ..Default::default()
    };
    guest_write(&mut m, &d, GUEST_VA, &map);
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_memory_op,
            [10, GUEST_VA, 0, 0, 0]
        ),
        0
    );
    let map: hypercall_abi::memory::XenMemoryMap = guest_read(&mut m, &d, GUEST_VA);
    assert_eq!(map.nr_entries, 3);
}

fn entry(op: u32, args: [u64; 6]) -> MulticallEntry {
    MulticallEntry {
        op: op.into(),
        result: 0x5a5a,
        args,
    }
}

#[test]
fn multicall_continues_past_failures_and_refuses_nesting() {
    let (mut m, mut d, _) = setup();
    let list = [
        entry(__HYPERVISOR_xen_version, [0, 0, 0, 0, 0, 0]),
        entry(__HYPERVISOR_xen_version, [9999, 0, 0, 0, 0, 0]),
        entry(60, [0; 6]),
        entry(__HYPERVISOR_xen_version, [1, UNMAPPED, 0, 0, 0, 0]),
    ];
    guest_write(&mut m, &d, GUEST_VA, &list);
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_multicall,
            [GUEST_VA, 4, 0, 0, 0]
        ),
        0
    );
    let out: [MulticallEntry; 4] = guest_read(&mut m, &d, GUEST_VA);
    let results: Vec<i64> = out.iter().map(|e| e.result as i64).collect();
    assert_eq!(results, vec![0x40011, ENOSYS, ENOSYS, EFAULT]);

    let inner = [entry(__HYPERVISOR_xen_version, [0; 6])];
    guest_write(&mut m, &d, GUEST_VA + 0x1000, &inner);
    let outer = [entry(
        __HYPERVISOR_multicall,
        [GUEST_VA + 0x1000, 1, 0, 0, 0, 0],
    )];
    guest_write(&mut m, &d, GUEST_VA, &outer);
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_multicall,
            [GUEST_VA, 1, 0, 0, 0]
        ),
        0
    );
    let out: [MulticallEntry; 1] = guest_read(&mut m, &d, GUEST_VA);
    assert_eq!(out[0].result as i64, EINVAL);
    let inner: [MulticallEntry; 1] = guest_read(&mut m, &d, GUEST_VA + 0x1000);
    assert_eq!(inner[0].result, 0x5a5a, "the nested list never ran");

    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_multicall,
            [UNMAPPED, 2, 0, 0, 0]
        ),
        EFAULT
    );
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_multicall,
            [UNMAPPED, 0, 0, 0, 0]
        ),
        0
    );
}

#[test]
fn unknown_hypercalls_are_enosys() {
    let (mut m, mut d, _) = setup();
    for nr in [1u32, 26, 60, 127] {
        assert_eq!(call(&mut m, &mut d, nr, [0; 5]), ENOSYS, "hypercall {nr}");
    }
    let info = MachineInfo {
        max_ram_page: 1,
        pv_cr4_writable: crate::emulate::PV_CR4_GUEST_MASK,
    };
    let mut regs = Regs::default();
    assert_eq!(
        with_ctx(&mut m, &mut d, &info, &mut regs, |c| super::testing::call(
            c, 1000, [0; 5]
        )),
        ENOSYS
    );
    assert_eq!(
        with_ctx(&mut m, &mut d, &info, &mut regs, |c| super::testing::call(
            c,
            1 << 40,
            [0; 5]
        )),
        ENOSYS
    );
}

#[test]
fn trap_table_install_clear_and_bad_entries() {
    let (mut m, mut d, _) = setup();
    let mut t = [hypercall_abi::arch_x86_64::TrapInfo::default(); 3];
    t[0].vector = 14;
    t[0].address = 0x10_0000;
    t[1].vector = 6;
    t[1].address = 0x10_0100;
    guest_write(&mut m, &d, GUEST_VA, &t);
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_set_trap_table,
            [GUEST_VA, 0, 0, 0, 0]
        ),
        0
    );
    assert_eq!(d.vcpu().trap_ctxt.get(14).address, 0x10_0000);
    assert_eq!(d.vcpu().trap_ctxt.get(6).address, 0x10_0100);
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_set_trap_table,
            [UNMAPPED, 0, 0, 0, 0]
        ),
        EFAULT
    );
    t[0].address = 0x8000_0000_0000;
    guest_write(&mut m, &d, GUEST_VA, &t);
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_set_trap_table,
            [GUEST_VA, 0, 0, 0, 0]
        ),
        EINVAL
    );
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_set_trap_table, [0, 0, 0, 0, 0]),
        0
    );
    assert!(d.vcpu().trap_ctxt.iter().all(|t| t.address == 0));
}

#[test]
fn iret_restores_the_context_and_the_upcall_mask() {
    let (mut m, mut d, info) = setup();
    let ctx_iret = hypercall_abi::arch_x86_64::IretContext {
        rax: 7,
        r11: 11,
        rcx: 12,
        flags: 0,
        rip: 0x10_2000,
        cs: 0xe030,
        rflags: 0x3202, // IF set, IOPL 3: IOPL must not survive
        rsp: GUEST_VA + 0x800,
        ss: 0xe02b,
    };
    guest_write(&mut m, &d, GUEST_VA + 0x100, &ctx_iret);
    crate::shared_info::set_upcall_mask(&mut m, &d, true);
    let mut regs = Regs {
        rsp: GUEST_VA + 0x100,
        ..Regs::default()
    };
    let rax = with_ctx(&mut m, &mut d, &info, &mut regs, |c| {
        super::testing::call(c, __HYPERVISOR_iret.into(), [0; 5])
    });
    assert_eq!(rax, 7);
    assert_eq!(
        (regs.rip, regs.cs, regs.rsp, regs.ss),
        (0x10_2000, 0xe033, GUEST_VA + 0x800, 0xe02b)
    );
    assert_eq!(regs.rflags & 0x3000, 0);
    assert_eq!((regs.rcx, regs.r11), (12, 11));
    assert!(!crate::shared_info::upcall_mask(&m, &d));
}

#[test]
fn iret_within_kernel_mode_takes_the_fast_way_back_unless_it_toggles_or_an_nmi_waits() {
    let (mut m, mut d, info) = setup();
    let run = |m: &mut FakeMachine, d: &mut crate::domain::Domain, cs: u64| {
        let frame = hypercall_abi::arch_x86_64::IretContext {
            rip: 0x10_2000,
            cs,
            rflags: 0x202,
            rsp: GUEST_VA + 0x800,
            ss: 0xe02b,
            ..Default::default()
        };
        guest_write(m, d, GUEST_VA + 0x100, &frame);
        let mut regs = Regs {
            rsp: GUEST_VA + 0x100,
            ..Regs::default()
        };
        with_ctx(m, d, &info, &mut regs, |c| {
            super::execute(c, __HYPERVISOR_iret.into(), [0; 5]);
            let quiet = c.fx.nothing_to_do();
            core::mem::take(c.fx);
            quiet
        })
    };
    assert!(
        run(&mut m, &mut d, 0xe030),
        "back to kernel mode: nothing left to do"
    );
    d.vcpu_mut().nmi_pending = true;
    assert!(
        !run(&mut m, &mut d, 0xe030),
        "an NMI to deliver, now unmasked"
    );
    d.vcpu_mut().nmi_pending = false;
    d.vcpu_mut().user_l4 = Some(d.vcpu().l4);
    assert!(
        !run(&mut m, &mut d, 0xe033),
        "to user mode: its page tables and GS base to load"
    );
    assert!(!d.vcpu().kernel_mode);
}

#[test]
fn iret_takes_the_virtual_iopl_from_the_frame_only_with_architectural_iopl() {
    let (mut m, mut d, info) = setup();
    let iret = |m: &mut FakeMachine, d: &mut crate::domain::Domain, rflags: u64| {
        let frame = hypercall_abi::arch_x86_64::IretContext {
            rip: 0x10_2000,
            cs: 0xe030,
            rflags,
            rsp: GUEST_VA + 0x800,
            ss: 0xe02b,
            ..Default::default()
        };
        guest_write(m, d, GUEST_VA + 0x100, &frame);
        let mut regs = Regs {
            rsp: GUEST_VA + 0x100,
            ..Regs::default()
        };
        with_ctx(m, d, &info, &mut regs, |c| {
            super::testing::call(c, __HYPERVISOR_iret.into(), [0; 5])
        });
        regs
    };
    // Without the assist the frame's IOPL is dropped and the virtual one stays.
    d.vcpu_mut().iopl = 1;
    let regs = iret(&mut m, &mut d, 0x3202);
    assert_eq!((d.vcpu().iopl, regs.rflags & 0x3000), (1, 0));
    // With it, each iret sets the virtual IOPL, 0 included; the real one stays 0.
    d.vm_assist |= 1 << hypercall_abi::xen::VMASST_TYPE_architectural_iopl;
    let regs = iret(&mut m, &mut d, 0x3202);
    assert_eq!((d.vcpu().iopl, regs.rflags & 0x3000), (3, 0));
    iret(&mut m, &mut d, 0x1202);
    assert_eq!(d.vcpu().iopl, 1);
    iret(&mut m, &mut d, 0x0202);
    assert_eq!(d.vcpu().iopl, 0);
}

#[test]
fn shutdown_code_wins_over_the_final_reason() {
    let (mut m, mut d, _) = setup();
    guest_write(&mut m, &d, GUEST_VA, &1u32);
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_sched_op,
            [5, GUEST_VA, 0, 0, 0]
        ),
        0
    );
    guest_write(&mut m, &d, GUEST_VA, &0u32);
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_sched_op,
            [2, GUEST_VA, 0, 0, 0]
        ),
        0
    );
    assert_eq!(d.shutdown, Some(crate::domain::Shutdown::Requested(1)));
    assert_eq!(
        call(
            &mut m,
            &mut d,
            __HYPERVISOR_sched_op,
            [2, UNMAPPED, 0, 0, 0]
        ),
        EFAULT
    );
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_sched_op, [99, 0, 0, 0, 0]),
        ENOSYS
    );
    let _ = Errno::EINVAL;
}

#[test]
fn sysctl_perfc_reports_and_resets_the_counters() {
    use hypercall_abi::sysctl::*;
    let (mut m, mut d, _) = setup();
    d.vcpu_mut().perf.tlb_flushes = 7;
    let op = XenSysctlPerfcOp {
        cmd: XEN_SYSCTL_PERFCOP_query,
        desc: GUEST_VA + 0x1000,
        val: GUEST_VA + 0x2000,
        ..Default::default()
    };
    let mut sc = XenSysctl {
        cmd: XEN_SYSCTL_perfc_op,
        ..Default::default()
    };
    sc.u[..32].copy_from_slice(op.as_bytes());
    guest_write(&mut m, &d, GUEST_VA, &sc);
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_sysctl, [GUEST_VA, 0, 0, 0, 0]),
        0
    );
    let back: XenSysctl = guest_read(&mut m, &d, GUEST_VA);
    let nr = u32::from_le_bytes(back.u[4..8].try_into().unwrap());
    assert_eq!(nr, 10);
    let descs: [XenSysctlPerfcDesc; 10] = guest_read(&mut m, &d, GUEST_VA + 0x1000);
    let vals: [u32; 10] = guest_read(&mut m, &d, GUEST_VA + 0x2000);
    let i = descs
        .iter()
        .position(|x| x.name.starts_with(b"tlb_flushes\0"))
        .unwrap();
    assert_eq!(vals[i], 7);
    // hypercalls counts this very call
    assert!(vals[0] >= 1);

    // Reset, then a wrong interface version is refused.
    let op = XenSysctlPerfcOp {
        cmd: XEN_SYSCTL_PERFCOP_reset,
        ..Default::default()
    };
    sc.u[..32].copy_from_slice(op.as_bytes());
    guest_write(&mut m, &d, GUEST_VA, &sc);
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_sysctl, [GUEST_VA, 0, 0, 0, 0]),
        0
    );
    assert_eq!(d.vcpu().perf.tlb_flushes, 0);
    sc.interface_version = 0x14;
    guest_write(&mut m, &d, GUEST_VA, &sc);
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_sysctl, [GUEST_VA, 0, 0, 0, 0]),
        -13
    );
    d.privileged = false;
    sc.interface_version = XEN_SYSCTL_INTERFACE_VERSION;
    guest_write(&mut m, &d, GUEST_VA, &sc);
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_sysctl, [GUEST_VA, 0, 0, 0, 0]),
        -1
    );
}

#[test]
fn debug_registers_refuse_what_would_reach_the_hypervisor() {
    let (mut m, mut d, _) = setup();
    let set = |m: &mut FakeMachine, d: &mut crate::domain::Domain, r: u64, v: u64| {
        call(m, d, __HYPERVISOR_set_debugreg, [r, v, 0, 0, 0])
    };
    assert_eq!(set(&mut m, &mut d, 0, GUEST_VA), 0);
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_get_debugreg, [0, 0, 0, 0, 0]),
        GUEST_VA as i64
    );
    // Breakpoints on hypervisor or non-canonical addresses.
    assert_eq!(set(&mut m, &mut d, 1, 0xffff_8000_0000_1000), -1);
    assert_eq!(set(&mut m, &mut d, 1, 0x8000_0000_0000), -1);
    // DR7: general detect and I/O breakpoints are refused; an execute breakpoint is fine.
    assert_eq!(set(&mut m, &mut d, 7, 1 << 13), -1);
    assert_eq!(set(&mut m, &mut d, 7, 0x1 | (2 << 16)), -1);
    assert_eq!(set(&mut m, &mut d, 7, 0x1), 0);
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_get_debugreg, [7, 0, 0, 0, 0]),
        0x401
    );
    // A register that does not exist is -ENODEV both ways (Xen 4.17's `set_debugreg`); the
    // number is an `int`, so only its low 32 bits count.
    assert_eq!(set(&mut m, &mut d, 9, 0), -19);
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_get_debugreg, [9, 0, 0, 0, 0]),
        -19
    );
    assert_eq!(set(&mut m, &mut d, 1 << 32, GUEST_VA + 8), 0);
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_get_debugreg, [0, 0, 0, 0, 0]),
        (GUEST_VA + 8) as i64
    );
    // DR6's upper half is refused; DR4 is DR6 without CR4.DE.
    assert_eq!(set(&mut m, &mut d, 6, 1 << 32), EINVAL);
    assert_eq!(set(&mut m, &mut d, 4, 1), 0);
    assert_eq!(
        call(&mut m, &mut d, __HYPERVISOR_get_debugreg, [6, 0, 0, 0, 0]),
        0xffff_0ff1
    );
}

#[test]
fn physdev_set_iopl_answers_as_xen_4_17() {
    use hypercall_abi::physdev::{PHYSDEVOP_set_iopl, PhysdevSetIopl};
    let (mut m, mut d, _) = setup();
    for iopl in [1u32, 3, 0] {
        guest_write(&mut m, &d, GUEST_VA, &PhysdevSetIopl { iopl });
        let rc = call(
            &mut m,
            &mut d,
            __HYPERVISOR_physdev_op,
            [PHYSDEVOP_set_iopl.into(), GUEST_VA, 0, 0, 0],
        );
        assert_eq!((rc, d.vcpu().iopl), (0, iopl as u8));
    }
    d.vcpu_mut().iopl = 1;
    guest_write(&mut m, &d, GUEST_VA, &PhysdevSetIopl { iopl: 4 });
    let rc = call(
        &mut m,
        &mut d,
        __HYPERVISOR_physdev_op,
        [PHYSDEVOP_set_iopl.into(), GUEST_VA, 0, 0, 0],
    );
    assert_eq!((rc, d.vcpu().iopl), (EINVAL, 1), "out of range: unchanged");
    let rc = call(
        &mut m,
        &mut d,
        __HYPERVISOR_physdev_op,
        [PHYSDEVOP_set_iopl.into(), UNMAPPED, 0, 0, 0],
    );
    assert_eq!(rc, EFAULT);
    // The upper half of the command is ignored; unknown and unimplemented commands are -ENOSYS.
    let rc = call(
        &mut m,
        &mut d,
        __HYPERVISOR_physdev_op,
        [(1 << 32) | u64::from(PHYSDEVOP_set_iopl), GUEST_VA, 0, 0, 0],
    );
    assert_eq!(rc, EINVAL);
    // PHYSDEVOP_eoi of a PIRQ that is not mapped: -EINVAL, as on Xen.
    let rc = call(
        &mut m,
        &mut d,
        __HYPERVISOR_physdev_op,
        [
            hypercall_abi::physdev::PHYSDEVOP_eoi.into(),
            GUEST_VA,
            0,
            0,
            0,
        ],
    );
    assert_eq!(rc, EINVAL);
    for cmd in [hypercall_abi::physdev::PHYSDEVOP_set_iobitmap, 0xffff] {
        let rc = call(
            &mut m,
            &mut d,
            __HYPERVISOR_physdev_op,
            [cmd.into(), GUEST_VA, 0, 0, 0],
        );
        assert_eq!(rc, ENOSYS, "cmd {cmd}");
    }
}
