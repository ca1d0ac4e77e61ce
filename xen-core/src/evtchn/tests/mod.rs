//! Host tests of event channels: each of Xen's rules, the conformance suite's recorded answers,
//! and random operation sequences checked against the table invariants.

use super::*;
use crate::guest_access::GuestFault;
use crate::mm::xen_page::heap::HeapPages;
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
        ports: initialised(PortTable::new(vcpus, max_port)),
        shared: [0; 4096],
        pages: heap_pages(),
    }
}

/// A source of any number of pages for one test domain (leaked: it lives as long as the test).
fn heap_pages() -> &'static HeapPages {
    Box::leak(Box::new(HeapPages::unlimited()))
}

/// `t` with its first page, as a new domain's table (Xen's `evtchn_init`).
fn initialised(mut t: PortTable) -> PortTable {
    t.init(&HeapPages::unlimited()).unwrap();
    t
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

/// The view of a domain's shared_info page.
fn page(w: &World, id: DomId) -> SharedInfoPage<&Page> {
    SharedInfoPage(&dom(w, id).shared)
}

fn pending(w: &World, id: DomId, port: EvtchnPort) -> bool {
    page(w, id).evtchn_pending(port)
}

fn masked(w: &World, id: DomId, port: EvtchnPort) -> bool {
    page(w, id).evtchn_masked(port)
}

fn set_mask(w: &mut World, id: DomId, port: EvtchnPort) {
    let _ = SharedInfoPage(&mut dom_mut(w, id).shared).test_and_set_evtchn_mask(port);
}

fn selector(w: &World, id: DomId, vcpu: u32, word: u32) -> bool {
    page(w, id).pending_sel(vcpu, word)
}

fn upcall_pending(w: &World, id: DomId, vcpu: u32) -> bool {
    page(w, id).upcall_pending(vcpu)
}

/// What a guest's event loop does: clear upcall_pending, then the selector, then pending bits.
fn guest_acknowledges(w: &mut World, id: DomId, vcpu: u32) {
    let mut page = SharedInfoPage(&mut dom_mut(w, id).shared);
    let _ = page.test_and_clear_upcall_pending(vcpu);
    page.clear_pending_sel(vcpu);
    for port in 0..NR_PORTS as u32 {
        let _ = page.test_and_clear_evtchn_pending(port);
    }
}

fn state(w: &World, id: DomId, port: EvtchnPort) -> ChannelState {
    dom(w, id).ports.channel(port).unwrap().state
}

fn status_of(w: &mut World, caller: DomId, id: DomId, port: EvtchnPort) -> Result<u32, Errno> {
    status(w.as_mut_slice(), caller, id, port).map(|s| s.status)
}

mod fifo;
mod op;
mod rules;
mod sequences;
