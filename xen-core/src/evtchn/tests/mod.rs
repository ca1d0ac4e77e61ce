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

mod op;
mod rules;
mod sequences;
