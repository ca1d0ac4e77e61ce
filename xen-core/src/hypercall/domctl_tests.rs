//! Host tests of the dom0 control interface over several domains: `domctl`, `sysctl`
//! `getdomaininfolist`, `hvm_op` parameters and `SCHEDOP_remote_shutdown`.

use hypercall_abi::domctl::*;
use hypercall_abi::errno::Errno;
use hypercall_abi::hvm::*;
use hypercall_abi::sched::*;
use hypercall_abi::sysctl::*;
use hypercall_abi::xen::*;

use zerocopy::{FromBytes, IntoBytes};

use super::testing::*;
use super::*;
use crate::domain::set::{BootRings, DomainSet, MAX_PORT_2L};
use crate::domain::{DomainId, Poll, Shutdown};
use crate::mm::MachineMemoryMut;

const ARG: u64 = GUEST_VA;
const BUF: u64 = GUEST_VA + 0x1000;
const UNMAPPED: u64 = 0x7000_0000_0000;

const RINGS: BootRings = BootRings {
    store_mfn: 0x1234,
    store_evtchn: 1,
    console_mfn: 0x1235,
    console_evtchn: 2,
};

/// dom0 in slot 0, then (slot order is not id order) domain 3 with boot rings, domain 1 blocked,
/// domain 5 shut down for a reboot, domain 7 crashed.
fn world() -> (FakeMachine, Box<DomainSet>) {
    let (m, _, _) = setup();
    let mut set = Box::new(DomainSet::new());
    set.install(0, guest(0), MAX_PORT_2L);
    let mut d3 = guest(3);
    d3.rings = Some(RINGS);
    set.install(1, d3, MAX_PORT_2L);
    let mut d1 = guest(1);
    d1.dom.vcpu_mut().blocked = true;
    set.install(2, d1, MAX_PORT_2L);
    let mut d5 = guest(5);
    d5.dom.shutdown = Some(Shutdown::Requested(SHUTDOWN_reboot));
    set.install(3, d5, MAX_PORT_2L);
    let mut d7 = guest(7);
    d7.dom.shutdown = Some(Shutdown::Crashed("test"));
    set.install(4, d7, MAX_PORT_2L);
    (m, set)
}

fn slot_of(set: &DomainSet, id: DomainId) -> usize {
    set.slot_of(id).unwrap()
}

/// Makes hypercall `nr` as the domain with id `caller`.
fn hc(m: &mut FakeMachine, set: &mut DomainSet, caller: DomainId, nr: u32, a: [u64; 5]) -> i64 {
    let slot = slot_of(set, caller);
    with_set_ctx(m, set, slot, |ctx| call(ctx, nr.into(), a))
}

fn err(e: Errno) -> i64 {
    e.neg()
}

// ------------------------------------------------------------------------------------------------
// domctl
// ------------------------------------------------------------------------------------------------

fn domctl_op(cmd: u32, domain: DomId) -> XenDomctl {
    XenDomctl {
        cmd,
        domain,
        ..Default::default()
    }
}

fn domctl(m: &mut FakeMachine, set: &mut DomainSet, caller: DomainId, op: &XenDomctl) -> i64 {
    put(m, ARG, op);
    hc(m, set, caller, __HYPERVISOR_domctl, [ARG, 0, 0, 0, 0])
}

fn info_of(op: &XenDomctl) -> XenDomctlGetdomaininfo {
    XenDomctlGetdomaininfo::read_from_prefix(&op.u).unwrap().0
}

#[test]
fn domctl_and_hvm_op_are_in_the_table() {
    for nr in [__HYPERVISOR_domctl, __HYPERVISOR_hvm_op] {
        assert!(TABLE.iter().any(|h| h.nr == nr), "{nr} missing");
    }
}

#[test]
fn getdomaininfo_describes_a_domain_like_xen() {
    let (mut m, mut set) = world();
    let rc = domctl(&mut m, &mut set, 0, &domctl_op(XEN_DOMCTL_getdomaininfo, 3));
    assert_eq!(rc, 0);
    let op: XenDomctl = get(&mut m, ARG);
    assert_eq!(op.domain, 3);
    let i = info_of(&op);
    assert_eq!(i.domain, 3);
    // Running, no shutdown code yet: Xen's SHUTDOWN_CODE_INVALID (~0U) fills bits 16..31.
    assert_eq!(i.flags, XEN_DOMINF_running | 0xffff_0000);
    assert_eq!((i.tot_pages, i.max_pages), (103, 203));
    assert_eq!(i.shared_info_frame, 13);
    assert_eq!(i.cpu_time, 3000);
    assert_eq!((i.nr_online_vcpus, i.max_vcpu_id), (1, 0));
    assert_eq!((i.ssidref, i.cpupool, i.handle), (0, 0, [0; 16]));
    // A domain's handle is reported as it is.
    let handle = *b"xen-boot\0\0\0\x01\0\0\0\x04";
    set.guest_mut(set.slot_of(3).unwrap()).unwrap().dom.handle = handle;
    assert_eq!(
        domctl(&mut m, &mut set, 0, &domctl_op(XEN_DOMCTL_getdomaininfo, 3)),
        0
    );
    assert_eq!(info_of(&get(&mut m, ARG)).handle, handle);
    assert_eq!(i.arch_config.emulation_flags, 0);
    assert_eq!((i.outstanding_pages, i.shr_pages, i.paged_pages), (0, 0, 0));
}

#[test]
fn getdomaininfo_flags_follow_the_domain_state() {
    let (mut m, mut set) = world();
    let flags = |m: &mut FakeMachine, set: &mut DomainSet, id| {
        assert_eq!(
            domctl(m, set, 0, &domctl_op(XEN_DOMCTL_getdomaininfo, id)),
            0
        );
        info_of(&get(m, ARG)).flags
    };
    assert_eq!(flags(&mut m, &mut set, 1), XEN_DOMINF_blocked | 0xffff_0000);
    assert_eq!(
        flags(&mut m, &mut set, 5),
        XEN_DOMINF_shutdown | SHUTDOWN_reboot << XEN_DOMINF_shutdownshift
    );
    assert_eq!(
        flags(&mut m, &mut set, 7),
        XEN_DOMINF_shutdown | SHUTDOWN_crash << XEN_DOMINF_shutdownshift
    );
    // A code set early with SCHEDOP_shutdown_code shows while running, and wins over a crash.
    let s = slot_of(&set, 3);
    set.guest_mut(s).unwrap().dom.shutdown_code = Some(SHUTDOWN_suspend);
    assert_eq!(
        flags(&mut m, &mut set, 3),
        XEN_DOMINF_running | SHUTDOWN_suspend << XEN_DOMINF_shutdownshift
    );
    set.guest_mut(s).unwrap().dom.shutdown = Some(Shutdown::Crashed("x"));
    assert_eq!(
        flags(&mut m, &mut set, 3),
        XEN_DOMINF_shutdown | SHUTDOWN_suspend << XEN_DOMINF_shutdownshift
    );
    // Polling counts as blocked.
    let s = slot_of(&set, 1);
    let d1 = &mut set.guest_mut(s).unwrap().dom;
    d1.vcpu_mut().blocked = false;
    d1.vcpu_mut().poll = Some(Poll::default());
    assert_eq!(flags(&mut m, &mut set, 1), XEN_DOMINF_blocked | 0xffff_0000);
    // The caller is running; its own run time is not in reach (0).
    assert_eq!(flags(&mut m, &mut set, 0), XEN_DOMINF_running | 0xffff_0000);
    assert_eq!(info_of(&get(&mut m, ARG)).cpu_time, 0);
    assert_eq!(info_of(&get(&mut m, ARG)).shared_info_frame, 10);
}

#[test]
fn getdomaininfo_returns_the_next_domain_up_as_xen_4_17() {
    let (mut m, mut set) = world();
    for (ask, found) in [(2, 3), (4, 5), (6, 7)] {
        assert_eq!(
            domctl(
                &mut m,
                &mut set,
                0,
                &domctl_op(XEN_DOMCTL_getdomaininfo, ask)
            ),
            0
        );
        let op: XenDomctl = get(&mut m, ARG);
        assert_eq!(
            (op.domain, info_of(&op).domain),
            (found, found),
            "asked {ask}"
        );
    }
    // Nothing from 8 up; reserved ids (DOMID_SELF included) are refused before the search.
    let op = domctl_op(XEN_DOMCTL_getdomaininfo, 8);
    assert_eq!(domctl(&mut m, &mut set, 0, &op), err(Errno::ESRCH));
    let op = domctl_op(XEN_DOMCTL_getdomaininfo, DOMID_SELF);
    assert_eq!(domctl(&mut m, &mut set, 0, &op), err(Errno::EINVAL));
    let op = domctl_op(XEN_DOMCTL_getdomaininfo, DOMID_FIRST_RESERVED - 1);
    assert_eq!(domctl(&mut m, &mut set, 0, &op), err(Errno::ESRCH));
}

#[test]
fn domctl_checks_version_privilege_and_target_in_xens_order() {
    let (mut m, mut set) = world();
    // The version comes first, even for an unprivileged caller.
    let mut op = domctl_op(XEN_DOMCTL_getdomaininfo, 0);
    op.interface_version = XEN_DOMCTL_INTERFACE_VERSION - 1;
    assert_eq!(domctl(&mut m, &mut set, 3, &op), err(Errno::EACCES));
    assert_eq!(domctl(&mut m, &mut set, 0, &op), err(Errno::EACCES));
    // getdomaininfo: XSM before the search.
    let op = domctl_op(XEN_DOMCTL_getdomaininfo, 0);
    assert_eq!(domctl(&mut m, &mut set, 3, &op), err(Errno::EPERM));
    let op = domctl_op(XEN_DOMCTL_getdomaininfo, 100);
    assert_eq!(domctl(&mut m, &mut set, 3, &op), err(Errno::EPERM));
    // Other commands: the lookup before XSM.
    let op = domctl_op(XEN_DOMCTL_destroydomain, 100);
    assert_eq!(domctl(&mut m, &mut set, 3, &op), err(Errno::ESRCH));
    let op = domctl_op(XEN_DOMCTL_destroydomain, 1);
    assert_eq!(domctl(&mut m, &mut set, 3, &op), err(Errno::EPERM));
    assert!(!set.guest(slot_of(&set, 1)).unwrap().destroy);
    // A bad argument pointer.
    let rc = hc(
        &mut m,
        &mut set,
        0,
        __HYPERVISOR_domctl,
        [UNMAPPED, 0, 0, 0, 0],
    );
    assert_eq!(rc, err(Errno::EFAULT));
    // getdomaininfo cannot write its answer back to a read-only argument.
    let rc = {
        let op = domctl_op(XEN_DOMCTL_getdomaininfo, 0);
        // The read-only page already holds zeroes: write the op through machine memory.
        let ro_frame = 0x8000 + GUEST_PAGES * 0x1000;
        m.mem
            .write(crate::mm::Maddr(ro_frame), op.as_bytes())
            .unwrap();
        hc(
            &mut m,
            &mut set,
            0,
            __HYPERVISOR_domctl,
            [GUEST_RO_VA, 0, 0, 0, 0],
        )
    };
    assert_eq!(rc, err(Errno::EFAULT));
}

#[test]
fn destroydomain_marks_the_target_and_refuses_the_caller() {
    let (mut m, mut set) = world();
    let op = domctl_op(XEN_DOMCTL_destroydomain, 0);
    assert_eq!(domctl(&mut m, &mut set, 0, &op), err(Errno::EINVAL));
    // DOMID_SELF names nobody for domctl.
    let op = domctl_op(XEN_DOMCTL_destroydomain, DOMID_SELF);
    assert_eq!(domctl(&mut m, &mut set, 0, &op), err(Errno::ESRCH));
    let op = domctl_op(XEN_DOMCTL_destroydomain, 3);
    assert_eq!(domctl(&mut m, &mut set, 0, &op), 0);
    assert!(set.guest(slot_of(&set, 3)).unwrap().destroy);
    // Others untouched; a second destroy of a dying domain succeeds.
    assert!(!set.guest(slot_of(&set, 1)).unwrap().destroy);
    assert_eq!(domctl(&mut m, &mut set, 0, &op), 0);
    // The toolstack sees it dying.
    let op = domctl_op(XEN_DOMCTL_getdomaininfo, 3);
    assert_eq!(domctl(&mut m, &mut set, 0, &op), 0);
    let flags = info_of(&get(&mut m, ARG)).flags;
    assert_eq!(flags & XEN_DOMINF_dying, XEN_DOMINF_dying);
}

#[test]
fn other_domctls_are_enosys_after_the_lookup() {
    let (mut m, mut set) = world();
    for cmd in [XEN_DOMCTL_pausedomain, XEN_DOMCTL_unpausedomain, 1, 999] {
        let op = domctl_op(cmd, 3);
        assert_eq!(
            domctl(&mut m, &mut set, 0, &op),
            err(Errno::ENOSYS),
            "{cmd}"
        );
        let op = domctl_op(cmd, 100);
        assert_eq!(domctl(&mut m, &mut set, 0, &op), err(Errno::ESRCH), "{cmd}");
        let op = domctl_op(cmd, 0);
        assert_eq!(domctl(&mut m, &mut set, 3, &op), err(Errno::EPERM), "{cmd}");
    }
}

// ------------------------------------------------------------------------------------------------
// sysctl getdomaininfolist
// ------------------------------------------------------------------------------------------------

fn list_op(first: DomId, max: u32, buffer: u64) -> XenSysctl {
    let l = XenSysctlGetdomaininfolist {
        first_domain: first,
        max_domains: max,
        buffer,
        num_domains: 0xdead,
        ..Default::default()
    };
    let mut op = XenSysctl {
        cmd: XEN_SYSCTL_getdomaininfolist,
        ..Default::default()
    };
    op.u[..24].copy_from_slice(l.as_bytes());
    op
}

/// Runs the list as `caller`; returns the result, `num_domains` and the ids in the buffer.
fn list(
    m: &mut FakeMachine,
    set: &mut DomainSet,
    caller: DomainId,
    op: &XenSysctl,
) -> (i64, u32, Vec<XenDomctlGetdomaininfo>) {
    put(m, ARG, op);
    // Poison the buffer so that unwritten entries show.
    for i in 0..16 {
        put(m, BUF + i * 112, &[0xa5u8; 112]);
    }
    let rc = hc(m, set, caller, __HYPERVISOR_sysctl, [ARG, 0, 0, 0, 0]);
    let out: XenSysctl = get(m, ARG);
    let l = XenSysctlGetdomaininfolist::read_from_prefix(&out.u)
        .unwrap()
        .0;
    let n = if rc == 0 { l.num_domains } else { 0 };
    let entries = (0..u64::from(n)).map(|i| get(m, BUF + i * 112)).collect();
    (rc, l.num_domains, entries)
}

#[test]
fn getdomaininfolist_lists_every_domain_in_id_order() {
    let (mut m, mut set) = world();
    let (rc, n, e) = list(&mut m, &mut set, 0, &list_op(0, 16, BUF));
    assert_eq!((rc, n), (0, 5));
    let ids: Vec<_> = e.iter().map(|i| i.domain).collect();
    assert_eq!(ids, [0, 1, 3, 5, 7]);
    assert_eq!(
        e.iter().map(|i| i.cpu_time).collect::<Vec<_>>(),
        [0, 1000, 3000, 5000, 7000]
    );
    assert_eq!(e[1].flags & 0xffff, XEN_DOMINF_blocked);
    assert_eq!(e[3].flags, XEN_DOMINF_shutdown | SHUTDOWN_reboot << 16);
    assert_eq!(e[4].flags, XEN_DOMINF_shutdown | SHUTDOWN_crash << 16);
    assert_eq!(e[2].tot_pages, 103);
    // Each entry is what getdomaininfo says about that domain.
    for want in &e {
        let op = domctl_op(XEN_DOMCTL_getdomaininfo, want.domain);
        assert_eq!(domctl(&mut m, &mut set, 0, &op), 0);
        assert_eq!(&info_of(&get(&mut m, ARG)), want);
    }
}

#[test]
fn getdomaininfolist_starts_at_first_domain_and_stops_at_max() {
    let (mut m, mut set) = world();
    let (rc, n, e) = list(&mut m, &mut set, 0, &list_op(2, 2, BUF));
    assert_eq!((rc, n), (0, 2));
    assert_eq!((e[0].domain, e[1].domain), (3, 5));
    // The third slot was not written.
    let third: [u8; 112] = get(&mut m, BUF + 2 * 112);
    assert_eq!(third, [0xa5; 112]);
    let (rc, n, e) = list(&mut m, &mut set, 0, &list_op(7, 16, BUF));
    assert_eq!((rc, n, e[0].domain), (0, 1, 7));
}

#[test]
fn getdomaininfolist_empty_is_success_with_zero() {
    let (mut m, mut set) = world();
    let (rc, n, _) = list(&mut m, &mut set, 0, &list_op(8, 16, BUF));
    assert_eq!((rc, n), (0, 0));
    let untouched: [u8; 112] = get(&mut m, BUF);
    assert_eq!(untouched, [0xa5; 112]);
    // No room: nothing is written, so even a bad buffer is fine.
    let (rc, n, _) = list(&mut m, &mut set, 0, &list_op(0, 0, UNMAPPED));
    assert_eq!((rc, n), (0, 0));
}

#[test]
fn getdomaininfolist_refuses_bad_buffers_unprivileged_callers_and_old_versions() {
    let (mut m, mut set) = world();
    let (rc, _, _) = list(&mut m, &mut set, 0, &list_op(0, 16, UNMAPPED));
    assert_eq!(rc, err(Errno::EFAULT));
    let (rc, _, _) = list(&mut m, &mut set, 0, &list_op(0, 16, GUEST_RO_VA));
    assert_eq!(rc, err(Errno::EFAULT));
    let (rc, _, _) = list(&mut m, &mut set, 3, &list_op(0, 16, BUF));
    assert_eq!(rc, err(Errno::EPERM));
    let mut op = list_op(0, 16, BUF);
    op.interface_version += 1;
    let (rc, _, _) = list(&mut m, &mut set, 0, &op);
    assert_eq!(rc, err(Errno::EACCES));
}

// ------------------------------------------------------------------------------------------------
// hvm_op
// ------------------------------------------------------------------------------------------------

fn hvm(
    m: &mut FakeMachine,
    set: &mut DomainSet,
    caller: DomainId,
    op: u64,
    domid: DomId,
    index: u32,
) -> (i64, u64) {
    let p = XenHvmParam {
        domid,
        index,
        value: 0x5a5a,
        ..Default::default()
    };
    put(m, ARG, &p);
    let rc = hc(m, set, caller, __HYPERVISOR_hvm_op, [op, ARG, 0, 0, 0]);
    (rc, get::<XenHvmParam>(m, ARG).value)
}

#[test]
fn get_param_reports_the_boot_rings_to_dom0() {
    let (mut m, mut set) = world();
    for (index, want) in [
        (HVM_PARAM_STORE_PFN, 0x1234),
        (HVM_PARAM_STORE_EVTCHN, 1),
        (HVM_PARAM_CONSOLE_PFN, 0x1235),
        (HVM_PARAM_CONSOLE_EVTCHN, 2),
    ] {
        let got = hvm(&mut m, &mut set, 0, HVMOP_get_param, 3, index);
        assert_eq!(got, (0, want), "param {index}");
    }
}

#[test]
fn get_param_refusals() {
    let (mut m, mut set) = world();
    let e = |x: Errno| (err(x), 0x5a5a);
    let g = HVMOP_get_param;
    // Another parameter of a domain with rings; an index past the table.
    assert_eq!(hvm(&mut m, &mut set, 0, g, 3, 3), e(Errno::EINVAL));
    assert_eq!(
        hvm(&mut m, &mut set, 0, g, 100, HVM_NR_PARAMS),
        e(Errno::EINVAL)
    );
    // No such domain; a domain without rings; the caller (a PV domain), by id or DOMID_SELF.
    assert_eq!(
        hvm(&mut m, &mut set, 0, g, 100, HVM_PARAM_STORE_PFN),
        e(Errno::ESRCH)
    );
    assert_eq!(
        hvm(&mut m, &mut set, 0, g, 1, HVM_PARAM_STORE_PFN),
        e(Errno::EINVAL)
    );
    assert_eq!(
        hvm(&mut m, &mut set, 0, g, 0, HVM_PARAM_STORE_PFN),
        e(Errno::EINVAL)
    );
    assert_eq!(
        hvm(&mut m, &mut set, 3, g, DOMID_SELF, HVM_PARAM_STORE_PFN),
        e(Errno::EINVAL)
    );
    // An unprivileged caller asking about a domain with rings.
    assert_eq!(
        hvm(&mut m, &mut set, 1, g, 3, HVM_PARAM_STORE_PFN),
        e(Errno::EPERM)
    );
    // set_param: every domain is PV.
    assert_eq!(
        hvm(&mut m, &mut set, 0, HVMOP_set_param, 3, HVM_PARAM_STORE_PFN),
        e(Errno::EINVAL)
    );
    assert_eq!(
        hvm(
            &mut m,
            &mut set,
            0,
            HVMOP_set_param,
            100,
            HVM_PARAM_STORE_PFN
        ),
        e(Errno::ESRCH)
    );
    // Unknown operations, including one that only matches after truncation.
    assert_eq!(
        hvm(&mut m, &mut set, 0, 2, 3, HVM_PARAM_STORE_PFN),
        e(Errno::ENOSYS)
    );
    assert_eq!(
        hvm(&mut m, &mut set, 0, 1 << 32 | 1, 3, HVM_PARAM_STORE_PFN),
        e(Errno::ENOSYS)
    );
    // Bad argument pointers.
    let rc = hc(
        &mut m,
        &mut set,
        0,
        __HYPERVISOR_hvm_op,
        [g, UNMAPPED, 0, 0, 0],
    );
    assert_eq!(rc, err(Errno::EFAULT));
    let ro_frame = 0x8000 + GUEST_PAGES * 0x1000;
    let p = XenHvmParam {
        domid: 3,
        index: HVM_PARAM_STORE_PFN,
        ..Default::default()
    };
    m.mem
        .write(crate::mm::Maddr(ro_frame), p.as_bytes())
        .unwrap();
    let rc = hc(
        &mut m,
        &mut set,
        0,
        __HYPERVISOR_hvm_op,
        [g, GUEST_RO_VA, 0, 0, 0],
    );
    assert_eq!(rc, err(Errno::EFAULT));
}

// ------------------------------------------------------------------------------------------------
// SCHEDOP_remote_shutdown
// ------------------------------------------------------------------------------------------------

fn remote(m: &mut FakeMachine, set: &mut DomainSet, caller: DomainId, id: DomId, r: u32) -> i64 {
    let s = SchedRemoteShutdown {
        domain_id: id,
        reason: r,
        ..Default::default()
    };
    put(m, ARG, &s);
    let args = [SCHEDOP_remote_shutdown.into(), ARG, 0, 0, 0];
    hc(m, set, caller, __HYPERVISOR_sched_op, args)
}

fn shutdown_of(set: &DomainSet, id: DomainId) -> Option<Shutdown> {
    set.guest(slot_of(set, id)).unwrap().dom.shutdown
}

#[test]
fn remote_shutdown_reaches_other_domains() {
    let (mut m, mut set) = world();
    // The reason is kept as a u8.
    assert_eq!(remote(&mut m, &mut set, 0, 3, 0x100 | SHUTDOWN_poweroff), 0);
    assert_eq!(
        shutdown_of(&set, 3),
        Some(Shutdown::Requested(SHUTDOWN_poweroff))
    );
    assert_eq!(shutdown_of(&set, 1), None);
    assert_eq!(shutdown_of(&set, 0), None);
    // A domain already shut down stays as it was.
    assert_eq!(remote(&mut m, &mut set, 0, 5, SHUTDOWN_poweroff), 0);
    assert_eq!(
        shutdown_of(&set, 5),
        Some(Shutdown::Requested(SHUTDOWN_reboot))
    );
    // A code the target set first wins.
    let s = slot_of(&set, 1);
    set.guest_mut(s).unwrap().dom.shutdown_code = Some(SHUTDOWN_suspend);
    assert_eq!(remote(&mut m, &mut set, 0, 1, SHUTDOWN_poweroff), 0);
    assert_eq!(
        shutdown_of(&set, 1),
        Some(Shutdown::Requested(SHUTDOWN_suspend))
    );
    // On itself, as before.
    assert_eq!(remote(&mut m, &mut set, 0, 0, SHUTDOWN_reboot), 0);
    assert_eq!(
        shutdown_of(&set, 0),
        Some(Shutdown::Requested(SHUTDOWN_reboot))
    );
}

#[test]
fn remote_shutdown_refusals() {
    let (mut m, mut set) = world();
    assert_eq!(remote(&mut m, &mut set, 0, 100, 0), err(Errno::ESRCH));
    // DOMID_SELF names nobody here (`rcu_lock_domain_by_id`).
    assert_eq!(
        remote(&mut m, &mut set, 0, DOMID_SELF, 0),
        err(Errno::ESRCH)
    );
    // Unprivileged: the lookup first, then XSM.
    assert_eq!(remote(&mut m, &mut set, 3, 100, 0), err(Errno::ESRCH));
    assert_eq!(remote(&mut m, &mut set, 3, 1, 0), err(Errno::EPERM));
    assert_eq!(remote(&mut m, &mut set, 3, 3, 0), err(Errno::EPERM));
    assert_eq!(shutdown_of(&set, 1), None);
    assert_eq!(shutdown_of(&set, 3), None);
    let rc = hc(
        &mut m,
        &mut set,
        0,
        __HYPERVISOR_sched_op,
        [SCHEDOP_remote_shutdown.into(), UNMAPPED, 0, 0, 0],
    );
    assert_eq!(rc, err(Errno::EFAULT));
}

// ------------------------------------------------------------------------------------------------
// The table's "who may call" column
// ------------------------------------------------------------------------------------------------

#[test]
fn privileged_rows_refuse_an_unprivileged_caller() {
    for h in TABLE
        .iter()
        .filter(|h| h.caller == table::Caller::Privileged)
    {
        let (mut m, mut set) = world();
        // A request dom0 gets an answer for, as domain 1 (unprivileged) and then as dom0.
        let mut ask = |caller: DomainId| match h.handler {
            table::Handler::Domctl => domctl(
                &mut m,
                &mut set,
                caller,
                &domctl_op(XEN_DOMCTL_getdomaininfo, 0),
            ),
            table::Handler::Sysctl => list(&mut m, &mut set, caller, &list_op(0, 4, BUF)).0,
            table::Handler::HvmOp => {
                hvm(
                    &mut m,
                    &mut set,
                    caller,
                    HVMOP_get_param,
                    3,
                    HVM_PARAM_STORE_PFN,
                )
                .0
            }
            table::Handler::ConsoleIo => {
                put(&mut m, BUF, b"x");
                let args = [CONSOLEIO_write.into(), 1, BUF, 0, 0];
                hc(&mut m, &mut set, caller, __HYPERVISOR_console_io, args)
            }
            other => panic!("no request for privileged row {other:?}: add one"),
        };
        assert_eq!(ask(1), err(Errno::EPERM), "{}", h.name);
        assert!(ask(0) >= 0, "{}", h.name);
    }
}
