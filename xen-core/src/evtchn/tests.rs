//! Host tests of event channels: each of Xen's rules, the conformance suite's recorded answers,
//! and random operation sequences checked against the table invariants.

use super::*;
use crate::guest_access::GuestFault;
use hypercall_abi::xen::{VIRQ_CONSOLE, VIRQ_DOM_EXC};
use std::collections::BTreeSet;
use zerocopy::FromZeros;

/// A shared_info frame.
type Page = [u8; 4096];
type World = Vec<EvtchnDomain<Page>>;

const DOM0: DomId = 0;
const DOM1: DomId = 1;
const DOM2: DomId = 2;
/// What the conformance suite uses for a domain that does not exist.
const NO_SUCH_DOMAIN: DomId = 77;

fn domain(id: DomId, privileged: bool, vcpus: u32, max_port: u32) -> EvtchnDomain<Page> {
    EvtchnDomain {
        id,
        privileged,
        ports: PortTable::new(vcpus, max_port),
        shared: [0; 4096],
    }
}

/// dom0 (privileged, 1 vCPU, every port), dom1 (2 vCPUs, 1024 ports), dom2 (1 vCPU, 100 ports).
fn world() -> World {
    vec![
        domain(DOM0, true, 1, u32::MAX),
        domain(DOM1, false, 2, 1023),
        domain(DOM2, false, 1, 99),
    ]
}

fn dom(w: &World, id: DomId) -> &EvtchnDomain<Page> {
    w.iter().find(|d| d.id == id).unwrap()
}

fn dom_mut(w: &mut World, id: DomId) -> &mut EvtchnDomain<Page> {
    w.iter_mut().find(|d| d.id == id).unwrap()
}

fn pending(w: &World, id: DomId, port: EvtchnPort) -> bool {
    dom(w, id)
        .shared
        .test_bit(offsets::pending_word(port), port % 64)
}

fn masked(w: &World, id: DomId, port: EvtchnPort) -> bool {
    dom(w, id)
        .shared
        .test_bit(offsets::mask_word(port), port % 64)
}

fn set_mask(w: &mut World, id: DomId, port: EvtchnPort) {
    let _ = dom_mut(w, id)
        .shared
        .test_and_set_bit(offsets::mask_word(port), port % 64);
}

fn selector(w: &World, id: DomId, vcpu: u32, word: u32) -> bool {
    dom(w, id)
        .shared
        .test_bit(offsets::selector_word(vcpu), word)
}

fn upcall_pending(w: &World, id: DomId, vcpu: u32) -> bool {
    dom(w, id).shared.test_bit(offsets::upcall_word(vcpu), 0)
}

/// What a guest's event loop does: clear upcall_pending, then the selector, then pending bits.
fn guest_acknowledges(w: &mut World, id: DomId, vcpu: u32) {
    let d = dom_mut(w, id);
    let _ = d.shared.test_and_clear_bit(offsets::upcall_word(vcpu), 0);
    let sel = offsets::selector_word(vcpu);
    d.shared[sel..sel + 8].fill(0);
    let pend = offsets::pending_word(0);
    d.shared[pend..pend + 512].fill(0);
}

fn state(w: &World, id: DomId, port: EvtchnPort) -> ChannelState {
    dom(w, id).ports.channel(port).unwrap().state
}

fn status_of(w: &mut World, caller: DomId, id: DomId, port: EvtchnPort) -> Result<u32, Errno> {
    status(w.as_mut_slice(), caller, id, port).map(|s| s.status)
}

// ---- Layout and the set-pending order -----------------------------------------------------

#[test]
fn bitmap_offsets_follow_the_shared_info_layout() {
    assert_eq!(offsets::pending_word(0), 2048);
    assert_eq!(offsets::pending_word(65), 2056);
    assert_eq!(offsets::mask_word(4095), 2560 + 63 * 8);
    assert_eq!(offsets::selector_word(0), 8);
    assert_eq!(offsets::selector_word(1), 72);
    assert_eq!(offsets::upcall_word(2), 128);
}

#[test]
fn set_pending_follows_xens_order_and_kicks_once() {
    let mut page: Page = [0; 4096];
    assert_eq!(
        set_pending(DOM0, &mut page, 70, 0),
        Some(Kick { dom: DOM0, vcpu: 0 })
    );
    assert!(page.test_bit(offsets::pending_word(70), 6));
    assert!(page.test_bit(offsets::selector_word(0), 1));
    assert!(page.test_bit(offsets::upcall_word(0), 0));
    // Already pending: nothing more happens.
    assert_eq!(set_pending(DOM0, &mut page, 70, 0), None);
    // Another port in the same word: selector already set, no kick.
    assert_eq!(set_pending(DOM0, &mut page, 71, 0), None);
    // A port in another word sets its selector bit, but the upcall is already pending.
    assert_eq!(set_pending(DOM0, &mut page, 3, 0), None);
    assert!(page.test_bit(offsets::selector_word(0), 0));
}

#[test]
fn a_masked_port_becomes_pending_but_raises_nothing() {
    let mut page: Page = [0; 4096];
    let _ = page.test_and_set_bit(offsets::mask_word(5), 5);
    assert_eq!(set_pending(DOM0, &mut page, 5, 0), None);
    assert!(page.test_bit(offsets::pending_word(5), 5));
    assert!(!page.test_bit(offsets::selector_word(0), 0));
    assert!(!page.test_bit(offsets::upcall_word(0), 0));
}

#[test]
fn a_set_selector_bit_means_the_guest_will_scan_that_word_so_no_kick() {
    let mut page: Page = [0; 4096];
    let _ = page.test_and_set_bit(offsets::selector_word(0), 0);
    assert_eq!(set_pending(DOM0, &mut page, 9, 0), None);
    assert!(!page.test_bit(offsets::upcall_word(0), 0));
}

#[test]
fn an_already_pending_upcall_is_not_kicked_again() {
    let mut page: Page = [0; 4096];
    let _ = page.test_and_set_bit(offsets::upcall_word(0), 0);
    assert_eq!(set_pending(DOM0, &mut page, 9, 0), None);
    assert!(page.test_bit(offsets::selector_word(0), 0));
}

// ---- Port table --------------------------------------------------------------------------

#[test]
fn a_new_table_reserves_port_0_and_has_one_bucket() {
    let t = PortTable::new(1, u32::MAX);
    assert_eq!(t.valid_ports(), PORTS_PER_BUCKET);
    assert_eq!(t.channel(0).unwrap().state, ChannelState::Reserved);
    assert_eq!(t.channel(63).unwrap().state, ChannelState::Free);
    assert!(t.channel(64).is_none());
    assert_eq!(PortTable::new(99, 10).vcpus(), MAX_VCPUS as u32);
}

#[test]
fn ports_are_allocated_lowest_first_and_buckets_grow_on_demand() {
    let mut w = world();
    for expect in 1..64 {
        assert_eq!(
            alloc_unbound(w.as_mut_slice(), DOM0, DOMID_SELF, DOM1),
            Ok(expect)
        );
    }
    assert_eq!(dom(&w, DOM0).ports.valid_ports(), 64);
    // Port 100 is below the ABI limit but its bucket does not exist yet: -EINVAL, as on Xen.
    assert_eq!(status_of(&mut w, DOM0, DOMID_SELF, 100), Err(Errno::EINVAL));
    assert_eq!(
        alloc_unbound(w.as_mut_slice(), DOM0, DOMID_SELF, DOM1),
        Ok(64)
    );
    assert_eq!(dom(&w, DOM0).ports.valid_ports(), 128);
    assert_eq!(
        status_of(&mut w, DOM0, DOMID_SELF, 100),
        Ok(EVTCHNSTAT_closed)
    );
    // Freed ports are reused first; the bucket stays.
    close(w.as_mut_slice(), DOM0, 5).unwrap();
    assert_eq!(
        alloc_unbound(w.as_mut_slice(), DOM0, DOMID_SELF, DOM1),
        Ok(5)
    );
}

#[test]
fn the_table_is_bounded_by_the_abi_and_the_domains_max_port() {
    let mut w = world();
    // dom2 may use ports up to 99.
    for expect in 1..=99 {
        assert_eq!(
            alloc_unbound(w.as_mut_slice(), DOM2, DOMID_SELF, DOM0),
            Ok(expect)
        );
    }
    assert_eq!(
        alloc_unbound(w.as_mut_slice(), DOM2, DOMID_SELF, DOM0),
        Err(Errno::ENOSPC)
    );
    assert_eq!(bind_ipi(w.as_mut_slice(), DOM2, 0), Err(Errno::ENOSPC));
    assert_eq!(
        bind_virq(w.as_mut_slice(), DOM2, VIRQ_TIMER, 0),
        Err(Errno::ENOSPC)
    );
    // dom0 may use the whole 2-level space, 4095 ports after the reserved one.
    for expect in 1..NR_PORTS as u32 {
        assert_eq!(bind_ipi(w.as_mut_slice(), DOM0, 0), Ok(expect));
    }
    assert_eq!(bind_ipi(w.as_mut_slice(), DOM0, 0), Err(Errno::ENOSPC));
    assert_eq!(dom(&w, DOM0).ports.valid_ports(), NR_PORTS as u32);
    assert_eq!(
        status_of(&mut w, DOM0, DOMID_SELF, 4096),
        Err(Errno::EINVAL)
    );
}

#[test]
fn a_failed_bind_keeps_the_bucket_it_allocated_like_xen() {
    let mut w = world();
    for _ in 1..64 {
        bind_ipi(w.as_mut_slice(), DOM1, 0).unwrap();
    }
    // The local port (64) is allocated before the remote port is checked.
    assert_eq!(
        bind_interdomain(w.as_mut_slice(), DOM1, DOM0, 1).map(|b| b.port),
        Err(Errno::EINVAL)
    );
    assert_eq!(dom(&w, DOM1).ports.valid_ports(), 128);
    assert_eq!(state(&w, DOM1, 64), ChannelState::Free);
}

// ---- alloc_unbound -----------------------------------------------------------------------

#[test]
fn alloc_unbound_records_the_remote_and_resolves_domid_self_to_the_caller() {
    let mut w = world();
    let p = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOMID_SELF).unwrap();
    assert_eq!(
        state(&w, DOM1, p),
        ChannelState::Unbound { remote_dom: DOM1 }
    );
    // A privileged caller allocating in dom2 for "itself": the remote is the caller, dom0.
    let p = alloc_unbound(w.as_mut_slice(), DOM0, DOM2, DOMID_SELF).unwrap();
    assert_eq!(
        state(&w, DOM2, p),
        ChannelState::Unbound { remote_dom: DOM0 }
    );
    let s = status(w.as_mut_slice(), DOM2, DOMID_SELF, p).unwrap();
    assert_eq!(
        (s.status, s.remote_dom(), s.vcpu),
        (EVTCHNSTAT_unbound, DOM0, 0)
    );
}

#[test]
fn alloc_unbound_checks_the_domain_and_the_callers_rights() {
    let mut w = world();
    assert_eq!(
        alloc_unbound(w.as_mut_slice(), DOM0, NO_SUCH_DOMAIN, DOMID_SELF),
        Err(Errno::ESRCH)
    );
    assert_eq!(
        alloc_unbound(w.as_mut_slice(), DOM0, DOMID_IDLE_FOR_TEST, DOMID_SELF),
        Err(Errno::ESRCH)
    );
    // An unprivileged domain cannot allocate in another domain (XSM_TARGET: -EPERM).
    assert_eq!(
        alloc_unbound(w.as_mut_slice(), DOM1, DOM2, DOMID_SELF),
        Err(Errno::EPERM)
    );
    assert_eq!(state(&w, DOM2, 1), ChannelState::Free);
    // It may name any remote, existing or not.
    assert_eq!(
        alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, NO_SUCH_DOMAIN),
        Ok(1)
    );
}

/// A reserved id other than DOMID_SELF (`DOMID_IDLE`).
const DOMID_IDLE_FOR_TEST: DomId = 0x7FFF;

// ---- bind_interdomain --------------------------------------------------------------------

#[test]
fn bind_interdomain_connects_both_ends_and_makes_the_local_end_pending() {
    let mut w = world();
    let rport = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    let bound = bind_interdomain(w.as_mut_slice(), DOM2, DOM1, rport).unwrap();
    assert_eq!(
        state(&w, DOM2, bound.port),
        ChannelState::Interdomain {
            remote_dom: DOM1,
            remote_port: rport
        }
    );
    assert_eq!(
        state(&w, DOM1, rport),
        ChannelState::Interdomain {
            remote_dom: DOM2,
            remote_port: bound.port
        }
    );
    assert_eq!(bound.kick, Some(Kick { dom: DOM2, vcpu: 0 }));
    assert!(pending(&w, DOM2, bound.port));
    assert!(!pending(&w, DOM1, rport));
}

#[test]
fn bind_interdomain_refuses_ports_not_waiting_for_the_caller() {
    let mut w = world();
    let for_dom2 = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    // dom0 is not the domain the port waits for, privileged or not.
    assert_eq!(
        bind_interdomain(w.as_mut_slice(), DOM0, DOM1, for_dom2),
        Err(Errno::EINVAL)
    );
    // Free, reserved, out-of-range and already-bound ports.
    for port in [0, 30, 64, 5000] {
        assert_eq!(
            bind_interdomain(w.as_mut_slice(), DOM2, DOM1, port),
            Err(Errno::EINVAL),
            "port {port}"
        );
    }
    bind_interdomain(w.as_mut_slice(), DOM2, DOM1, for_dom2).unwrap();
    assert_eq!(
        bind_interdomain(w.as_mut_slice(), DOM2, DOM1, for_dom2),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        bind_interdomain(w.as_mut_slice(), DOM2, NO_SUCH_DOMAIN, 1),
        Err(Errno::ESRCH)
    );
}

#[test]
fn bind_interdomain_keeps_the_remote_ends_vcpu() {
    let mut w = world();
    let rport = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    bind_vcpu(w.as_mut_slice(), DOM1, rport, 1).unwrap();
    let lport = bind_interdomain(w.as_mut_slice(), DOM2, DOM1, rport)
        .unwrap()
        .port;
    assert_eq!(dom(&w, DOM1).ports.channel(rport).unwrap().notify_vcpu, 1);
    assert_eq!(
        send(w.as_mut_slice(), DOM2, lport),
        Ok(Some(Kick { dom: DOM1, vcpu: 1 }))
    );
    assert!(selector(&w, DOM1, 1, 0));
    assert!(!selector(&w, DOM1, 0, 0));
}

// ---- send --------------------------------------------------------------------------------

#[test]
fn send_notifies_the_remote_end_and_kicks_only_on_a_new_upcall() {
    let mut w = world();
    let rport = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    let lport = bind_interdomain(w.as_mut_slice(), DOM2, DOM1, rport)
        .unwrap()
        .port;
    assert_eq!(
        send(w.as_mut_slice(), DOM2, lport),
        Ok(Some(Kick { dom: DOM1, vcpu: 0 }))
    );
    assert!(pending(&w, DOM1, rport));
    assert!(upcall_pending(&w, DOM1, 0));
    // Still pending: a second send changes nothing.
    assert_eq!(send(w.as_mut_slice(), DOM2, lport), Ok(None));
    guest_acknowledges(&mut w, DOM1, 0);
    assert_eq!(
        send(w.as_mut_slice(), DOM2, lport),
        Ok(Some(Kick { dom: DOM1, vcpu: 0 }))
    );
    // The other direction.
    assert_eq!(
        send(w.as_mut_slice(), DOM1, rport),
        Ok(None),
        "dom2's upcall is pending"
    );
    guest_acknowledges(&mut w, DOM2, 0);
    assert_eq!(
        send(w.as_mut_slice(), DOM1, rport),
        Ok(Some(Kick { dom: DOM2, vcpu: 0 }))
    );
}

#[test]
fn send_on_unbound_is_dropped_and_on_other_states_is_einval() {
    let mut w = world();
    let unbound = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    assert_eq!(send(w.as_mut_slice(), DOM1, unbound), Ok(None));
    assert!(!pending(&w, DOM1, unbound));
    let virq = bind_virq(w.as_mut_slice(), DOM1, VIRQ_TIMER, 0).unwrap();
    assert_eq!(send(w.as_mut_slice(), DOM1, virq), Err(Errno::EINVAL));
    assert_eq!(send(w.as_mut_slice(), DOM1, 0), Err(Errno::EINVAL));
    assert_eq!(send(w.as_mut_slice(), DOM1, 40), Err(Errno::EINVAL));
    assert_eq!(send(w.as_mut_slice(), DOM1, 4095), Err(Errno::EINVAL));
    assert_eq!(send(w.as_mut_slice(), DOM1, u32::MAX), Err(Errno::EINVAL));
}

#[test]
fn an_ipi_notifies_its_vcpu() {
    let mut w = world();
    let p = bind_ipi(w.as_mut_slice(), DOM1, 1).unwrap();
    let s = status(w.as_mut_slice(), DOM1, DOMID_SELF, p).unwrap();
    assert_eq!((s.status, s.vcpu), (EVTCHNSTAT_ipi, 1));
    assert_eq!(
        send(w.as_mut_slice(), DOM1, p),
        Ok(Some(Kick { dom: DOM1, vcpu: 1 }))
    );
    assert!(selector(&w, DOM1, 1, 0) && !selector(&w, DOM1, 0, 0));
    assert_eq!(bind_ipi(w.as_mut_slice(), DOM1, 2), Err(Errno::ENOENT));
    assert_eq!(
        bind_ipi(w.as_mut_slice(), DOM1, u32::MAX),
        Err(Errno::ENOENT)
    );
}

// ---- bind_virq and send_virq -------------------------------------------------------------

#[test]
fn bind_virq_binds_once_per_vcpu() {
    let mut w = world();
    let p = bind_virq(w.as_mut_slice(), DOM1, VIRQ_TIMER, 0).unwrap();
    assert_eq!(
        bind_virq(w.as_mut_slice(), DOM1, VIRQ_TIMER, 0),
        Err(Errno::EEXIST)
    );
    // VIRQ_TIMER is per-vCPU: vCPU 1 gets its own.
    let q = bind_virq(w.as_mut_slice(), DOM1, VIRQ_TIMER, 1).unwrap();
    assert_ne!(p, q);
    let s = status(w.as_mut_slice(), DOM1, DOMID_SELF, q).unwrap();
    assert_eq!(
        (s.status, s.virq(), s.vcpu),
        (EVTCHNSTAT_virq, VIRQ_TIMER, 1)
    );
    // Closing frees the binding for a new one.
    close(w.as_mut_slice(), DOM1, p).unwrap();
    assert_eq!(dom(&w, DOM1).ports.virq_port(0, VIRQ_TIMER), None);
    assert_eq!(bind_virq(w.as_mut_slice(), DOM1, VIRQ_TIMER, 0), Ok(p));
}

#[test]
fn bind_virq_validates_virq_and_vcpu_in_xens_order() {
    let mut w = world();
    assert_eq!(
        bind_virq(w.as_mut_slice(), DOM1, NR_VIRQS, 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        bind_virq(w.as_mut_slice(), DOM1, 1000, 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        bind_virq(w.as_mut_slice(), DOM1, u32::MAX, 0),
        Err(Errno::EINVAL)
    );
    // Global VIRQs only on vCPU 0 (checked before the vCPU exists).
    for virq in [VIRQ_CONSOLE, VIRQ_DOM_EXC] {
        assert_eq!(
            bind_virq(w.as_mut_slice(), DOM1, virq, 1),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            bind_virq(w.as_mut_slice(), DOM1, virq, 7),
            Err(Errno::EINVAL)
        );
        assert!(bind_virq(w.as_mut_slice(), DOM1, virq, 0).is_ok());
    }
    // Per-vCPU VIRQs on a vCPU that does not exist.
    assert_eq!(
        bind_virq(w.as_mut_slice(), DOM1, VIRQ_TIMER, 2),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        bind_virq(w.as_mut_slice(), DOM1, VIRQ_DEBUG, 9),
        Err(Errno::ENOENT)
    );
}

#[test]
fn send_virq_raises_bound_virqs_on_the_right_vcpu() {
    let mut w = world();
    assert_eq!(
        send_virq(w.as_mut_slice(), DOM1, 0, VIRQ_TIMER),
        None,
        "not bound"
    );
    let t1 = bind_virq(w.as_mut_slice(), DOM1, VIRQ_TIMER, 1).unwrap();
    assert_eq!(
        send_virq(w.as_mut_slice(), DOM1, 1, VIRQ_TIMER),
        Some(Kick { dom: DOM1, vcpu: 1 })
    );
    assert!(pending(&w, DOM1, t1));
    assert_eq!(send_virq(w.as_mut_slice(), DOM1, 0, VIRQ_TIMER), None);
    // A global VIRQ moved to vCPU 1 is looked up on vCPU 0 and delivered to vCPU 1.
    let con = bind_virq(w.as_mut_slice(), DOM1, VIRQ_CONSOLE, 0).unwrap();
    bind_vcpu(w.as_mut_slice(), DOM1, con, 1).unwrap();
    guest_acknowledges(&mut w, DOM1, 1);
    assert_eq!(
        send_virq(w.as_mut_slice(), DOM1, 0, VIRQ_CONSOLE),
        Some(Kick { dom: DOM1, vcpu: 1 })
    );
    // Closing it after the move still clears vCPU 0's binding.
    close(w.as_mut_slice(), DOM1, con).unwrap();
    assert_eq!(dom(&w, DOM1).ports.virq_port(0, VIRQ_CONSOLE), None);
    assert!(bind_virq(w.as_mut_slice(), DOM1, VIRQ_CONSOLE, 0).is_ok());
    assert_eq!(
        send_virq(w.as_mut_slice(), NO_SUCH_DOMAIN, 0, VIRQ_TIMER),
        None
    );
}

// ---- close -------------------------------------------------------------------------------

#[test]
fn closing_one_end_leaves_the_other_waiting_for_the_closer() {
    let mut w = world();
    let rport = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    let lport = bind_interdomain(w.as_mut_slice(), DOM2, DOM1, rport)
        .unwrap()
        .port;
    close(w.as_mut_slice(), DOM1, rport).unwrap();
    assert_eq!(state(&w, DOM1, rport), ChannelState::Free);
    assert_eq!(
        state(&w, DOM2, lport),
        ChannelState::Unbound { remote_dom: DOM1 }
    );
    // dom1 can bind to it again, from any of its ports.
    let again = bind_interdomain(w.as_mut_slice(), DOM1, DOM2, lport)
        .unwrap()
        .port;
    assert_eq!(
        state(&w, DOM2, lport),
        ChannelState::Interdomain {
            remote_dom: DOM1,
            remote_port: again
        }
    );
}

#[test]
fn close_clears_the_pending_bit_of_the_closed_port_only() {
    let mut w = world();
    let rport = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    let lport = bind_interdomain(w.as_mut_slice(), DOM2, DOM1, rport)
        .unwrap()
        .port;
    let _ = send(w.as_mut_slice(), DOM2, lport).unwrap();
    assert!(pending(&w, DOM2, lport) && pending(&w, DOM1, rport));
    close(w.as_mut_slice(), DOM2, lport).unwrap();
    assert!(!pending(&w, DOM2, lport));
    assert!(pending(&w, DOM1, rport));
}

#[test]
fn close_rejects_free_reserved_and_invalid_ports() {
    let mut w = world();
    for port in [0, 1, 63, 64, 4096, u32::MAX] {
        assert_eq!(
            close(w.as_mut_slice(), DOM1, port),
            Err(Errno::EINVAL),
            "{port}"
        );
    }
    let p = bind_ipi(w.as_mut_slice(), DOM1, 0).unwrap();
    assert_eq!(close(w.as_mut_slice(), DOM1, p), Ok(()));
    assert_eq!(close(w.as_mut_slice(), DOM1, p), Err(Errno::EINVAL));
}

#[test]
fn close_resets_the_notified_vcpu() {
    let mut w = world();
    let p = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    bind_vcpu(w.as_mut_slice(), DOM1, p, 1).unwrap();
    close(w.as_mut_slice(), DOM1, p).unwrap();
    assert_eq!(*dom(&w, DOM1).ports.channel(p).unwrap(), Channel::FREE);
}

// ---- status, bind_vcpu, unmask, reset ----------------------------------------------------

#[test]
fn status_reports_each_state_and_checks_rights() {
    let mut w = world();
    let rport = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    let lport = bind_interdomain(w.as_mut_slice(), DOM2, DOM1, rport)
        .unwrap()
        .port;
    let s = status(w.as_mut_slice(), DOM2, DOMID_SELF, lport).unwrap();
    assert_eq!(
        (s.status, s.remote_dom(), s.remote_port(), s.dom, s.port),
        (EVTCHNSTAT_interdomain, DOM1, rport, DOMID_SELF, lport)
    );
    // Another domain's port: only for the control domain.
    assert_eq!(status_of(&mut w, DOM1, DOM2, lport), Err(Errno::EPERM));
    assert_eq!(
        status_of(&mut w, DOM0, DOM2, lport),
        Ok(EVTCHNSTAT_interdomain)
    );
    // ESRCH before EINVAL before EPERM, as in Xen.
    assert_eq!(
        status_of(&mut w, DOM1, NO_SUCH_DOMAIN, 5000),
        Err(Errno::ESRCH)
    );
    assert_eq!(status_of(&mut w, DOM1, DOM2, 5000), Err(Errno::EINVAL));
    assert_eq!(
        status_of(&mut w, DOM1, DOMID_SELF, 0),
        Ok(EVTCHNSTAT_closed)
    );
}

#[test]
fn bind_vcpu_moves_unbound_interdomain_and_global_virq_channels_only() {
    let mut w = world();
    let unbound = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    let timer = bind_virq(w.as_mut_slice(), DOM1, VIRQ_TIMER, 0).unwrap();
    let console = bind_virq(w.as_mut_slice(), DOM1, VIRQ_CONSOLE, 0).unwrap();
    let ipi = bind_ipi(w.as_mut_slice(), DOM1, 0).unwrap();
    assert_eq!(bind_vcpu(w.as_mut_slice(), DOM1, unbound, 1), Ok(()));
    assert_eq!(bind_vcpu(w.as_mut_slice(), DOM1, console, 1), Ok(()));
    assert_eq!(
        bind_vcpu(w.as_mut_slice(), DOM1, timer, 1),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        bind_vcpu(w.as_mut_slice(), DOM1, ipi, 1),
        Err(Errno::EINVAL)
    );
    assert_eq!(bind_vcpu(w.as_mut_slice(), DOM1, 0, 0), Err(Errno::EINVAL));
    assert_eq!(
        bind_vcpu(w.as_mut_slice(), DOM1, 5000, 0),
        Err(Errno::EINVAL)
    );
    // The vCPU is checked first.
    assert_eq!(
        bind_vcpu(w.as_mut_slice(), DOM1, 5000, 2),
        Err(Errno::ENOENT)
    );
    // Single-vCPU domains can only name vCPU 0.
    let p = alloc_unbound(w.as_mut_slice(), DOM2, DOMID_SELF, DOM1).unwrap();
    assert_eq!(bind_vcpu(w.as_mut_slice(), DOM2, p, 0), Ok(()));
    assert_eq!(bind_vcpu(w.as_mut_slice(), DOM2, p, 1), Err(Errno::ENOENT));
}

#[test]
fn unmask_delivers_an_event_that_arrived_while_masked() {
    let mut w = world();
    let rport = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    let lport = bind_interdomain(w.as_mut_slice(), DOM2, DOM1, rport)
        .unwrap()
        .port;
    set_mask(&mut w, DOM1, rport);
    assert_eq!(send(w.as_mut_slice(), DOM2, lport), Ok(None));
    assert!(pending(&w, DOM1, rport) && !upcall_pending(&w, DOM1, 0));
    assert_eq!(
        unmask(w.as_mut_slice(), DOM1, rport),
        Ok(Some(Kick { dom: DOM1, vcpu: 0 }))
    );
    assert!(!masked(&w, DOM1, rport));
    assert!(selector(&w, DOM1, 0, rport / 64) && upcall_pending(&w, DOM1, 0));
    // Unmasking an unmasked port does nothing.
    assert_eq!(unmask(w.as_mut_slice(), DOM1, rport), Ok(None));
}

#[test]
fn unmask_of_a_closed_port_is_accepted_and_changes_nothing() {
    let mut w = world();
    set_mask(&mut w, DOM1, 7);
    assert_eq!(unmask(w.as_mut_slice(), DOM1, 7), Ok(None));
    assert!(masked(&w, DOM1, 7), "Xen leaves unusable ports alone");
    assert_eq!(unmask(w.as_mut_slice(), DOM1, 64), Err(Errno::EINVAL));
}

#[test]
fn reset_closes_every_port_of_the_caller() {
    let mut w = world();
    let rport = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    let lport = bind_interdomain(w.as_mut_slice(), DOM2, DOM1, rport)
        .unwrap()
        .port;
    bind_virq(w.as_mut_slice(), DOM1, VIRQ_TIMER, 0).unwrap();
    bind_ipi(w.as_mut_slice(), DOM1, 1).unwrap();
    assert_eq!(reset(w.as_mut_slice(), DOM1, DOM2), Err(Errno::EPERM));
    assert_eq!(reset(w.as_mut_slice(), DOM0, DOM1), Err(Errno::EINVAL));
    assert_eq!(reset(w.as_mut_slice(), DOM1, DOMID_SELF), Ok(()));
    for port in 1..64 {
        assert_eq!(state(&w, DOM1, port), ChannelState::Free);
    }
    assert_eq!(
        state(&w, DOM2, lport),
        ChannelState::Unbound { remote_dom: DOM1 }
    );
    assert_eq!(dom(&w, DOM1).ports.virq_port(0, VIRQ_TIMER), None);
}

// ---- The hypercall, with arguments in guest memory ----------------------------------------

/// Guest memory: a flat byte array at virtual address 0; anything beyond faults.
struct FlatGuest(Vec<u8>);

impl GuestMemory for FlatGuest {
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        let start = usize::try_from(va).map_err(|_| GuestFault { va })?;
        let src = self
            .0
            .get(start..start + buf.len())
            .ok_or(GuestFault { va })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, va: u64, data: &[u8]) -> Result<(), GuestFault> {
        let start = usize::try_from(va).map_err(|_| GuestFault { va })?;
        self.0
            .get_mut(start..start + data.len())
            .ok_or(GuestFault { va })?
            .copy_from_slice(data);
        Ok(())
    }
}

/// Where the test places argument structures.
const ARG_VA: u64 = 0x100;

/// One hypercall from `caller` with `arg` in guest memory; returns RAX and updates `arg`.
fn hypercall<T: FromBytes + IntoBytes + Immutable>(
    w: &mut World,
    caller: DomId,
    cmd: u32,
    arg: &mut T,
) -> i64 {
    let mut guest = FlatGuest(vec![0; 0x1000]);
    guest.write(ARG_VA, arg.as_bytes()).unwrap();
    let out = do_event_channel_op(w.as_mut_slice(), caller, &mut guest, cmd, ARG_VA);
    guest.read(ARG_VA, arg.as_mut_bytes()).unwrap();
    out.rax()
}

fn status_arg(port: EvtchnPort) -> EvtchnStatus {
    EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    }
}

/// The conformance suite's `event_channel_cases` (guest-kernel `conformance.rs`) on dom0, with the
/// answers recorded from Xen 4.17.
#[test]
fn conformance_cases_match_xen_4_17() {
    let mut w = world();
    let w = &mut w;
    let mut lines = Vec::new();
    let bit = |w: &World, port| u8::from(pending(w, DOM0, port));

    let mut alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    let rc = hypercall(w, DOM0, EVTCHNOP_alloc_unbound, &mut alloc);
    let a = alloc.port;
    lines.push(format!("evtchn.alloc_unbound_self = rc={rc} port={a}"));

    let mut st = status_arg(a);
    let rc = hypercall(w, DOM0, EVTCHNOP_status, &mut st);
    lines.push(format!(
        "evtchn.status_unbound = rc={rc} status={} vcpu={}",
        st.status, st.vcpu
    ));

    let rc = hypercall(w, DOM0, EVTCHNOP_send, &mut EvtchnSend { port: a });
    lines.push(format!(
        "evtchn.send_unbound = rc={rc} pending={}",
        bit(w, a)
    ));

    let mut bind = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: a,
        ..Default::default()
    };
    let rc = hypercall(w, DOM0, EVTCHNOP_bind_interdomain, &mut bind);
    let b = bind.local_port;
    lines.push(format!(
        "evtchn.bind_interdomain_loopback = rc={rc} port={b}"
    ));

    let mut st = status_arg(b);
    let rc = hypercall(w, DOM0, EVTCHNOP_status, &mut st);
    lines.push(format!(
        "evtchn.status_interdomain = rc={rc} status={}",
        st.status
    ));

    let was_masked = u8::from(masked(w, DOM0, a));
    let rc = hypercall(w, DOM0, EVTCHNOP_send, &mut EvtchnSend { port: b });
    lines.push(format!(
        "evtchn.send_loopback = rc={rc} remote_pending={} local_pending={} masked={was_masked} \
         upcall_pending={}",
        bit(w, a),
        bit(w, b),
        u8::from(upcall_pending(w, DOM0, 0))
    ));
    // The guest clears port a's pending bit, then upcall_pending and the selector.
    let _ = dom_mut(w, DOM0)
        .shared
        .test_and_clear_bit(offsets::pending_word(a), a % 64);
    let _ = dom_mut(w, DOM0)
        .shared
        .test_and_clear_bit(offsets::upcall_word(0), 0);
    let sel = offsets::selector_word(0);
    dom_mut(w, DOM0).shared[sel..sel + 8].fill(0);

    let rc = hypercall(w, DOM0, EVTCHNOP_unmask, &mut EvtchnUnmask { port: a });
    lines.push(format!("evtchn.unmask = {rc}"));

    let rc_a = hypercall(w, DOM0, EVTCHNOP_close, &mut EvtchnClose { port: a });
    let mut st = status_arg(b);
    let rc = hypercall(w, DOM0, EVTCHNOP_status, &mut st);
    lines.push(format!(
        "evtchn.close_one_end = rc={rc_a} other_end_status_rc={rc} other_end_status={}",
        st.status
    ));

    let rc_b = hypercall(w, DOM0, EVTCHNOP_close, &mut EvtchnClose { port: b });
    let rc_again = hypercall(w, DOM0, EVTCHNOP_close, &mut EvtchnClose { port: a });
    lines.push(format!(
        "evtchn.close_twice = first={rc_b} second={rc_again}"
    ));

    let mut st = status_arg(a);
    let rc = hypercall(w, DOM0, EVTCHNOP_status, &mut st);
    lines.push(format!(
        "evtchn.status_closed = rc={rc} status={}",
        st.status
    ));

    let mut st = status_arg(0);
    let rc = hypercall(w, DOM0, EVTCHNOP_status, &mut st);
    lines.push(format!(
        "evtchn.status_port_0 = rc={rc} status={}",
        st.status
    ));

    let rc = hypercall(w, DOM0, EVTCHNOP_status, &mut status_arg(5000));
    lines.push(format!("evtchn.status_port_out_of_range = {rc}"));
    let rc = hypercall(w, DOM0, EVTCHNOP_close, &mut EvtchnClose { port: 5000 });
    lines.push(format!("evtchn.close_port_out_of_range = {rc}"));
    let rc = hypercall(w, DOM0, EVTCHNOP_send, &mut EvtchnSend { port: 4095 });
    lines.push(format!("evtchn.send_port_never_allocated = {rc}"));

    let mut alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: NO_SUCH_DOMAIN,
        port: 0,
    };
    let rc = hypercall(w, DOM0, EVTCHNOP_alloc_unbound, &mut alloc);
    let rc_close = hypercall(
        w,
        DOM0,
        EVTCHNOP_close,
        &mut EvtchnClose { port: alloc.port },
    );
    lines.push(format!(
        "evtchn.alloc_unbound_no_such_remote = rc={rc} port={} close={rc_close}",
        alloc.port
    ));

    let mut alloc = EvtchnAllocUnbound {
        dom: NO_SUCH_DOMAIN,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    let rc = hypercall(w, DOM0, EVTCHNOP_alloc_unbound, &mut alloc);
    lines.push(format!("evtchn.alloc_unbound_for_no_such_domain = {rc}"));

    let mut virq = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    let rc = hypercall(w, DOM0, EVTCHNOP_bind_virq, &mut virq);
    let t = virq.port;
    let mut again = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    let rc_again = hypercall(w, DOM0, EVTCHNOP_bind_virq, &mut again);
    let rc_close = hypercall(w, DOM0, EVTCHNOP_close, &mut EvtchnClose { port: t });
    lines.push(format!(
        "evtchn.bind_virq_timer = rc={rc} port={t} rebind={rc_again} close={rc_close}"
    ));

    let mut virq = EvtchnBindVirq {
        virq: 1000,
        vcpu: 0,
        port: 0,
    };
    let rc = hypercall(w, DOM0, EVTCHNOP_bind_virq, &mut virq);
    lines.push(format!("evtchn.bind_virq_bad_virq = {rc}"));

    let rc = hypercall(w, DOM0, 9999, &mut EvtchnClose { port: 0 });
    lines.push(format!("evtchn.unknown_cmd = {rc}"));

    let want = [
        "evtchn.alloc_unbound_self = rc=0 port=1",
        "evtchn.status_unbound = rc=0 status=1 vcpu=0",
        "evtchn.send_unbound = rc=0 pending=0",
        "evtchn.bind_interdomain_loopback = rc=0 port=2",
        "evtchn.status_interdomain = rc=0 status=2",
        "evtchn.send_loopback = rc=0 remote_pending=1 local_pending=1 masked=0 upcall_pending=1",
        "evtchn.unmask = 0",
        "evtchn.close_one_end = rc=0 other_end_status_rc=0 other_end_status=1",
        "evtchn.close_twice = first=0 second=-22",
        "evtchn.status_closed = rc=0 status=0",
        "evtchn.status_port_0 = rc=0 status=0",
        "evtchn.status_port_out_of_range = -22",
        "evtchn.close_port_out_of_range = -22",
        "evtchn.send_port_never_allocated = -22",
        "evtchn.alloc_unbound_no_such_remote = rc=0 port=1 close=0",
        "evtchn.alloc_unbound_for_no_such_domain = -3",
        "evtchn.bind_virq_timer = rc=0 port=1 rebind=-17 close=0",
        "evtchn.bind_virq_bad_virq = -22",
        "evtchn.unknown_cmd = -38",
    ];
    assert_eq!(lines, want);
}

#[test]
fn loopback_local_pending_comes_from_the_bind_not_the_send() {
    // Why `send_loopback` shows both ports pending: bind_interdomain sets the new local port
    // pending (and raises the upcall); the send then sets the remote port.
    let mut w = world();
    let a = alloc_unbound(w.as_mut_slice(), DOM0, DOMID_SELF, DOMID_SELF).unwrap();
    let bound = bind_interdomain(w.as_mut_slice(), DOM0, DOMID_SELF, a).unwrap();
    assert_eq!(bound.kick, Some(Kick { dom: DOM0, vcpu: 0 }));
    assert!(pending(&w, DOM0, bound.port) && !pending(&w, DOM0, a));
    assert!(upcall_pending(&w, DOM0, 0));
    // Upcall already pending: the send raises nothing new.
    assert_eq!(send(w.as_mut_slice(), DOM0, bound.port), Ok(None));
    assert!(pending(&w, DOM0, a));
}

#[test]
fn guest_pointers_that_fault_are_efault() {
    let mut w = world();
    let mut guest = FlatGuest(vec![0; 0x1000]);
    for cmd in [
        EVTCHNOP_alloc_unbound,
        EVTCHNOP_bind_interdomain,
        EVTCHNOP_bind_virq,
        EVTCHNOP_bind_ipi,
        EVTCHNOP_bind_pirq,
        EVTCHNOP_close,
        EVTCHNOP_send,
        EVTCHNOP_status,
        EVTCHNOP_bind_vcpu,
        EVTCHNOP_unmask,
        EVTCHNOP_reset,
        EVTCHNOP_init_control,
        EVTCHNOP_expand_array,
        EVTCHNOP_set_priority,
    ] {
        let out = do_event_channel_op(w.as_mut_slice(), DOM1, &mut guest, cmd, 0x2000);
        assert_eq!(out.result, Err(Errno::EFAULT), "cmd {cmd}");
    }
    // The argument is readable but the result cannot be written back: the port stays allocated
    // and the guest gets -EFAULT, as on Xen.
    let mut guest = FlatGuest(vec![0; 0x1000]);
    let alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOM2,
        port: 0,
    };
    guest.write(ARG_VA, alloc.as_bytes()).unwrap();
    let mut ro = ReadOnlyGuest(guest);
    let out = do_event_channel_op(
        w.as_mut_slice(),
        DOM1,
        &mut ro,
        EVTCHNOP_alloc_unbound,
        ARG_VA,
    );
    assert_eq!(out.result, Err(Errno::EFAULT));
    assert_eq!(
        state(&w, DOM1, 1),
        ChannelState::Unbound { remote_dom: DOM2 }
    );
}

/// A guest whose memory is readable but not writable.
struct ReadOnlyGuest(FlatGuest);

impl GuestMemory for ReadOnlyGuest {
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        self.0.read(va, buf)
    }
    fn write(&mut self, va: u64, _data: &[u8]) -> Result<(), GuestFault> {
        Err(GuestFault { va })
    }
}

#[test]
fn the_remaining_commands_answer_like_xen_without_pirqs_or_fifo() {
    let mut w = world();
    let mut pirq = EvtchnBindPirq::new_zeroed();
    assert_eq!(hypercall(&mut w, DOM0, EVTCHNOP_bind_pirq, &mut pirq), -22);
    let mut prio = EvtchnSetPriority {
        port: 1,
        priority: 0,
    };
    assert_eq!(
        hypercall(&mut w, DOM0, EVTCHNOP_set_priority, &mut prio),
        -38
    );
    prio.port = 5000;
    assert_eq!(
        hypercall(&mut w, DOM0, EVTCHNOP_set_priority, &mut prio),
        -22
    );
    let mut init = EvtchnInitControl::new_zeroed();
    assert_eq!(
        hypercall(&mut w, DOM0, EVTCHNOP_init_control, &mut init),
        -38
    );
    let mut bind_vcpu_arg = EvtchnBindVcpu { port: 0, vcpu: 0 };
    assert_eq!(
        hypercall(&mut w, DOM0, EVTCHNOP_bind_vcpu, &mut bind_vcpu_arg),
        -22
    );
    let mut ipi = EvtchnBindIpi { vcpu: 0, port: 0 };
    assert_eq!(hypercall(&mut w, DOM0, EVTCHNOP_bind_ipi, &mut ipi), 0);
    assert_eq!(ipi.port, 1);
    let mut reset_arg = EvtchnReset { dom: DOMID_SELF };
    assert_eq!(hypercall(&mut w, DOM0, EVTCHNOP_reset, &mut reset_arg), 0);
    assert_eq!(state(&w, DOM0, 1), ChannelState::Free);
}

#[test]
fn hypercall_kicks_are_reported() {
    let mut w = world();
    let mut guest = FlatGuest(vec![0; 0x1000]);
    let rport = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM2).unwrap();
    let bind = EvtchnBindInterdomain {
        remote_dom: DOM1,
        remote_port: rport,
        ..Default::default()
    };
    guest.write(ARG_VA, bind.as_bytes()).unwrap();
    let out = do_event_channel_op(
        w.as_mut_slice(),
        DOM2,
        &mut guest,
        EVTCHNOP_bind_interdomain,
        ARG_VA,
    );
    assert_eq!(out.result, Ok(()));
    assert_eq!(out.kick, Some(Kick { dom: DOM2, vcpu: 0 }));
    let mut back = EvtchnBindInterdomain::new_zeroed();
    guest.read(ARG_VA, back.as_mut_bytes()).unwrap();
    guest
        .write(
            ARG_VA,
            EvtchnSend {
                port: back.local_port,
            }
            .as_bytes(),
        )
        .unwrap();
    let out = do_event_channel_op(w.as_mut_slice(), DOM2, &mut guest, EVTCHNOP_send, ARG_VA);
    assert_eq!(out.kick, Some(Kick { dom: DOM1, vcpu: 0 }));
}

// ---- Random operation sequences ----------------------------------------------------------

/// Marsaglia's xorshift64: reproducible randomness without a crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Checks the invariants of the whole world: over every port of the ABI if `full`, otherwise up to
/// the bucket boundary and a little beyond (cheaper, for use after every step).
fn check_invariants(w: &World, full: bool) {
    for d in w {
        let t = &d.ports;
        assert!(
            t.valid_ports() as usize <= NR_PORTS,
            "dom{}: table too large",
            d.id
        );
        assert_eq!(t.valid_ports() % PORTS_PER_BUCKET, 0);
        assert_eq!(
            t.channels[0].state,
            ChannelState::Reserved,
            "port 0 stays reserved"
        );
        let end = if full {
            NR_PORTS as u32
        } else {
            (t.valid_ports() + PORTS_PER_BUCKET).min(NR_PORTS as u32)
        };
        for port in 0..end {
            let chan = t.channels[port as usize];
            if port >= t.valid_ports() || port > t.max_port() {
                assert_eq!(
                    chan,
                    Channel::FREE,
                    "dom{} port {port} beyond the bound",
                    d.id
                );
            }
            let pend = d.shared.test_bit(offsets::pending_word(port), port % 64);
            match chan.state {
                ChannelState::Free => {
                    assert_eq!(chan.notify_vcpu, 0, "dom{} free port {port}", d.id);
                    assert!(!pend, "dom{} free port {port} is pending", d.id);
                }
                ChannelState::Reserved => assert_eq!(port, 0),
                ChannelState::Pirq { pirq } => {
                    assert_eq!(
                        d.ports.pirqs.port(pirq),
                        Some(port),
                        "dom{} pirq {pirq}",
                        d.id
                    );
                }
                ChannelState::Interdomain {
                    remote_dom,
                    remote_port,
                } => {
                    let r = dom(w, remote_dom);
                    assert_eq!(
                        r.ports.channel(remote_port).map(|c| c.state),
                        Some(ChannelState::Interdomain {
                            remote_dom: d.id,
                            remote_port: port
                        }),
                        "dom{} port {port} and its peer disagree",
                        d.id
                    );
                }
                ChannelState::Virq { virq } => {
                    let vcpu = if virq_is_global(virq) {
                        0
                    } else {
                        chan.notify_vcpu
                    };
                    assert_eq!(t.virq_port(vcpu, virq), Some(port));
                }
                ChannelState::Unbound { .. } | ChannelState::Ipi => {}
            }
            if chan.state != ChannelState::Free {
                assert!(chan.notify_vcpu < t.vcpus());
            }
        }
        for vcpu in 0..t.vcpus() {
            for virq in 0..NR_VIRQS {
                if let Some(port) = t.virq_port(vcpu, virq) {
                    assert_eq!(
                        t.channel(port).map(|c| c.state),
                        Some(ChannelState::Virq { virq }),
                        "dom{} vcpu {vcpu} virq {virq}",
                        d.id
                    );
                }
            }
        }
    }
}

/// The channels a failed operation could have touched (ports below `end`) and the VIRQ bindings.
fn snapshot(d: &EvtchnDomain<Page>, end: usize) -> (Vec<Channel>, VirqTable) {
    (d.ports.channels[..end].to_vec(), d.ports.virq_to_port)
}

type VirqTable = [[EvtchnPort; NR_VIRQS as usize]; MAX_VCPUS];

/// One bucket past the valid ports: as far as one operation can reach.
fn reach(d: &EvtchnDomain<Page>) -> usize {
    (d.ports.valid_ports() + PORTS_PER_BUCKET).min(NR_PORTS as u32) as usize
}

#[test]
fn random_operation_sequences_keep_the_invariants() {
    let ids = [DOM0, DOM1, DOM2];
    for seed in 1..=32u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut w = world();
        for step in 0..1500 {
            let caller = ids[rng.below(3) as usize];
            let other = ids[rng.below(3) as usize];
            // Mostly ports that may exist, sometimes wild ones.
            let port = if rng.below(10) == 0 {
                rng.next() as u32
            } else {
                rng.below(140) as u32
            };
            let vcpu = rng.below(3) as u32;
            let virq = rng.below(NR_VIRQS as u64 + 2) as u32;
            let before = w
                .iter()
                .map(|d| (reach(d), snapshot(d, reach(d))))
                .collect::<Vec<_>>();
            let op = rng.below(11);
            let result: Result<(), Errno> = match op {
                0 | 1 => alloc_unbound(w.as_mut_slice(), caller, DOMID_SELF, other).map(drop),
                2 | 3 => bind_interdomain(w.as_mut_slice(), caller, other, port).map(drop),
                4 => bind_virq(w.as_mut_slice(), caller, virq, vcpu).map(drop),
                5 => bind_ipi(w.as_mut_slice(), caller, vcpu).map(drop),
                6 | 7 => {
                    let r = close(w.as_mut_slice(), caller, port);
                    if r.is_ok() {
                        let c = *dom(&w, caller).ports.channel(port).unwrap();
                        assert_eq!(c, Channel::FREE, "a closed port is free");
                        assert!(!pending(&w, caller, port));
                        assert_eq!(
                            status_of(&mut w, caller, DOMID_SELF, port),
                            Ok(EVTCHNSTAT_closed)
                        );
                    }
                    r
                }
                8 => send(w.as_mut_slice(), caller, port).map(drop),
                9 => bind_vcpu(w.as_mut_slice(), caller, port, vcpu),
                _ => {
                    if rng.below(2) == 0 {
                        set_mask(&mut w, caller, port % NR_PORTS as u32);
                    }
                    unmask(w.as_mut_slice(), caller, port).map(drop)
                }
            };
            if result.is_err() {
                // A failed operation changes no channel (only bucket growth may persist).
                for (d, (end, old)) in w.iter().zip(&before) {
                    assert!(
                        snapshot(d, *end) == *old,
                        "seed {seed} step {step} op {op}: {result:?} changed dom{}",
                        d.id
                    );
                }
            }
            if rng.below(50) == 0 {
                let id = ids[rng.below(3) as usize];
                guest_acknowledges(&mut w, id, rng.below(2) as u32);
            }
            check_invariants(&w, step % 100 == 99);
        }
        // Every domain can always close everything, and then nothing is left open.
        for id in ids {
            reset(w.as_mut_slice(), id, DOMID_SELF).unwrap();
        }
        check_invariants(&w, true);
        let open: BTreeSet<_> = w
            .iter()
            .flat_map(|d| {
                (1..NR_PORTS as u32)
                    .filter(move |&p| d.ports.channels[p as usize].state != ChannelState::Free)
                    .map(move |p| (d.id, p))
            })
            .collect();
        assert!(
            open.is_empty(),
            "seed {seed}: still open after reset: {open:?}"
        );
    }
}
