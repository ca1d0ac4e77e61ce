//! Each of Xen's event-channel rules, operation by operation, on a world of three domains.

use super::*;

// ---- Layout and the set-pending order -----------------------------------------------------

#[test]
fn set_pending_follows_xens_order_and_kicks_once() {
    let mut page: Page = [0; 4096];
    assert_eq!(
        set_pending(DOM0, &mut page, 70, 0),
        Some(Kick { dom: DOM0, vcpu: 0 })
    );
    assert!(SharedInfoPage(&page).evtchn_pending(70));
    assert!(SharedInfoPage(&page).pending_sel(0, 1));
    assert!(SharedInfoPage(&page).upcall_pending(0));
    // Already pending: nothing more happens.
    assert_eq!(set_pending(DOM0, &mut page, 70, 0), None);
    // Another port in the same word: selector already set, no kick.
    assert_eq!(set_pending(DOM0, &mut page, 71, 0), None);
    // A port in another word sets its selector bit, but the upcall is already pending.
    assert_eq!(set_pending(DOM0, &mut page, 3, 0), None);
    assert!(SharedInfoPage(&page).pending_sel(0, 0));
}

#[test]
fn a_masked_port_becomes_pending_but_raises_nothing() {
    let mut page: Page = [0; 4096];
    let _ = SharedInfoPage(&mut page).test_and_set_evtchn_mask(5);
    assert_eq!(set_pending(DOM0, &mut page, 5, 0), None);
    assert!(SharedInfoPage(&page).evtchn_pending(5));
    assert!(!SharedInfoPage(&page).pending_sel(0, 0));
    assert!(!SharedInfoPage(&page).upcall_pending(0));
}

#[test]
fn a_set_selector_bit_means_the_guest_will_scan_that_word_so_no_kick() {
    let mut page: Page = [0; 4096];
    let _ = SharedInfoPage(&mut page).test_and_set_pending_sel(0, 0);
    assert_eq!(set_pending(DOM0, &mut page, 9, 0), None);
    assert!(!SharedInfoPage(&page).upcall_pending(0));
}

#[test]
fn an_already_pending_upcall_is_not_kicked_again() {
    let mut page: Page = [0; 4096];
    let _ = SharedInfoPage(&mut page).test_and_set_upcall_pending(0);
    assert_eq!(set_pending(DOM0, &mut page, 9, 0), None);
    assert!(SharedInfoPage(&page).pending_sel(0, 0));
}

// ---- Port table --------------------------------------------------------------------------

#[test]
fn a_new_table_reserves_port_0_and_has_one_bucket() {
    let mut t = PortTable::new(1, u32::MAX);
    assert_eq!(t.valid_ports(), 0, "no page before evtchn_init");
    assert_eq!(t.nr_pages(), 0);
    let pages = HeapPages::unlimited();
    t.init(&pages).unwrap();
    assert_eq!(t.valid_ports(), PORTS_PER_BUCKET);
    assert_eq!(t.nr_pages(), 1);
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

// ---- Channel pages taken on demand --------------------------------------------------------

/// A world whose dom0 takes its channel pages from `pages` (its first page already taken).
fn world_with_pages(pages: &'static HeapPages) -> World {
    let mut w = world();
    let d = dom_mut(&mut w, DOM0);
    d.pages = pages;
    let _ = d.ports.take_pages();
    d.ports.reset(1, u32::MAX);
    d.ports.init(pages).unwrap();
    w
}

#[test]
fn a_domain_that_uses_ten_ports_holds_one_page() {
    let pages: &'static HeapPages = Box::leak(Box::new(HeapPages::unlimited()));
    let mut w = world_with_pages(pages);
    for expect in 1..=10 {
        assert_eq!(
            alloc_unbound(w.as_mut_slice(), DOM0, DOMID_SELF, DOM1),
            Ok(expect)
        );
    }
    assert_eq!(dom(&w, DOM0).ports.nr_pages(), 1);
    assert_eq!(pages.taken.get(), 1, "evtchn_init's page, nothing more");
}

#[test]
fn a_page_is_taken_when_the_buckets_grow_past_the_pages_held_and_only_then() {
    let pages: &'static HeapPages = Box::leak(Box::new(HeapPages::unlimited()));
    let mut w = world_with_pages(pages);
    // Ports 1..256: Xen's buckets of 64 grow four times, all in the first page.
    for expect in 1..PORTS_PER_PAGE {
        assert_eq!(
            alloc_unbound(w.as_mut_slice(), DOM0, DOMID_SELF, DOM1),
            Ok(expect)
        );
    }
    assert_eq!(dom(&w, DOM0).ports.valid_ports(), PORTS_PER_PAGE);
    assert_eq!(pages.taken.get(), 1);
    // Port 256's bucket is in the second page.
    assert_eq!(
        status_of(&mut w, DOM0, DOMID_SELF, PORTS_PER_PAGE),
        Err(Errno::EINVAL),
        "no bucket yet"
    );
    assert_eq!(
        alloc_unbound(w.as_mut_slice(), DOM0, DOMID_SELF, DOM1),
        Ok(PORTS_PER_PAGE)
    );
    assert_eq!(pages.taken.get(), 2);
    assert_eq!(
        dom(&w, DOM0).ports.valid_ports(),
        PORTS_PER_PAGE + PORTS_PER_BUCKET
    );
    assert_eq!(
        status_of(&mut w, DOM0, DOMID_SELF, PORTS_PER_PAGE + 1),
        Ok(EVTCHNSTAT_closed)
    );
}

#[test]
fn a_dry_pool_is_enomem_and_the_table_stays_as_it_was_and_usable() {
    // One page: evtchn_init's.
    let pages: &'static HeapPages = Box::leak(Box::new(HeapPages::limited(1)));
    let mut w = world_with_pages(pages);
    for expect in 1..PORTS_PER_PAGE {
        assert_eq!(
            alloc_unbound(w.as_mut_slice(), DOM0, DOMID_SELF, DOM1),
            Ok(expect)
        );
    }
    // Every binding operation that needs a new bucket is Xen's -ENOMEM, and changes nothing.
    assert_eq!(
        alloc_unbound(w.as_mut_slice(), DOM0, DOMID_SELF, DOM1),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        bind_virq(w.as_mut_slice(), DOM0, VIRQ_DOM_EXC, 0),
        Err(Errno::ENOMEM)
    );
    assert_eq!(dom(&w, DOM0).ports.virq_port(0, VIRQ_DOM_EXC), None);
    assert_eq!(bind_ipi(w.as_mut_slice(), DOM0, 0), Err(Errno::ENOMEM));
    let remote = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM0).unwrap();
    assert_eq!(
        bind_interdomain(w.as_mut_slice(), DOM0, DOM1, remote),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        status_of(&mut w, DOM1, DOMID_SELF, remote),
        Ok(EVTCHNSTAT_unbound),
        "the remote end is still waiting"
    );
    let t = &dom(&w, DOM0).ports;
    assert_eq!(t.valid_ports(), PORTS_PER_PAGE);
    assert_eq!(t.nr_pages(), 1);
    assert_eq!(
        status_of(&mut w, DOM0, DOMID_SELF, PORTS_PER_PAGE),
        Err(Errno::EINVAL),
        "no bucket, no port"
    );
    // What was allocated still works, and a closed port is handed out again.
    assert_eq!(
        status_of(&mut w, DOM0, DOMID_SELF, 7),
        Ok(EVTCHNSTAT_unbound)
    );
    close(w.as_mut_slice(), DOM0, 7).unwrap();
    assert_eq!(
        bind_interdomain(w.as_mut_slice(), DOM0, DOM1, remote).map(|b| b.port),
        Ok(7)
    );
    // A page given back to the pool is there for the next bucket.
    pages.left.set(Some(1));
    assert_eq!(
        alloc_unbound(w.as_mut_slice(), DOM0, DOMID_SELF, DOM1),
        Ok(PORTS_PER_PAGE)
    );
}

#[test]
fn a_new_domain_without_a_page_cannot_be_made() {
    let mut t = PortTable::new(1, 1023);
    assert_eq!(t.init(&HeapPages::limited(0)), Err(Errno::ENOMEM));
    assert_eq!(t.valid_ports(), 0);
    assert_eq!(t.nr_pages(), 0);
}

#[test]
fn a_table_never_initialised_never_hands_out_port_0() {
    let pages: &'static HeapPages = Box::leak(Box::new(HeapPages::unlimited()));
    let mut w = world();
    let d = dom_mut(&mut w, DOM2);
    d.pages = pages;
    let _ = d.ports.take_pages();
    d.ports.reset(1, 99);
    assert_eq!(status_of(&mut w, DOM2, DOMID_SELF, 0), Err(Errno::EINVAL));
    assert_eq!(
        alloc_unbound(w.as_mut_slice(), DOM2, DOMID_SELF, DOM0),
        Ok(1)
    );
    assert_eq!(
        dom(&w, DOM2).ports.channel(0).map(|c| c.state),
        Some(ChannelState::Reserved)
    );
}

#[test]
fn taking_the_pages_back_gives_every_frame_and_leaves_no_valid_port() {
    let pages: &'static HeapPages = Box::leak(Box::new(HeapPages::unlimited()));
    let mut w = world_with_pages(pages);
    for _ in 0..600 {
        alloc_unbound(w.as_mut_slice(), DOM0, DOMID_SELF, DOM1).unwrap();
    }
    assert_eq!(pages.out.get(), 3, "ports 0..601 fill three pages");
    reset(w.as_mut_slice(), DOM0, DOMID_SELF).unwrap();
    let d = dom_mut(&mut w, DOM0);
    let held: Vec<_> = d.ports.page_frames().collect();
    let frames = d.ports.take_pages();
    assert_eq!(frames.as_slice(), held.as_slice());
    assert_eq!(d.ports.valid_ports(), 0);
    assert_eq!(d.ports.nr_pages(), 0);
    assert!(d.ports.channel(1).is_none());
    for f in frames {
        pages.give_back(f);
    }
    assert_eq!(pages.out.get(), 0, "every page back");
}

#[test]
fn closing_a_channel_whose_other_end_is_not_bound_back_frees_the_local_end_alone() {
    // A broken invariant (Xen BUG()s): dom0's port names a dom1 port that is another channel,
    // or one beyond dom1's table. Closing frees dom0's end and touches nothing of dom1's.
    let mut w = world();
    let rport = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM0).unwrap();
    let bound = bind_interdomain(w.as_mut_slice(), DOM0, DOM1, rport).unwrap();
    let other = bind_ipi(w.as_mut_slice(), DOM1, 0).unwrap();
    dom_mut(&mut w, DOM0).ports.chan_mut(bound.port).state = ChannelState::Interdomain {
        remote_dom: DOM1,
        remote_port: other,
    };
    close(w.as_mut_slice(), DOM0, bound.port).unwrap();
    assert_eq!(state(&w, DOM0, bound.port), ChannelState::Free);
    assert_eq!(
        state(&w, DOM1, other),
        ChannelState::Ipi,
        "another channel's end"
    );
    // dom1's first port still names dom0's old one (nothing undid it); a fresh one for the rest.
    let rport = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOM0).unwrap();
    let again = bind_interdomain(w.as_mut_slice(), DOM0, DOM1, rport).unwrap();
    let beyond = dom(&w, DOM1).ports.valid_ports() + 64;
    dom_mut(&mut w, DOM0).ports.chan_mut(again.port).state = ChannelState::Interdomain {
        remote_dom: DOM1,
        remote_port: beyond,
    };
    close(w.as_mut_slice(), DOM0, again.port).unwrap();
    assert_eq!(state(&w, DOM0, again.port), ChannelState::Free);
    assert_eq!(
        state(&w, DOM1, rport),
        ChannelState::Interdomain {
            remote_dom: DOM0,
            remote_port: again.port
        },
        "dom1's end is left as it was: nothing named it"
    );
}
