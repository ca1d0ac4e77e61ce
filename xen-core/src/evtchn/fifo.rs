//! The FIFO event-channel ABI (Xen 4.17's `xen/common/event_fifo.c`): control blocks and event
//! array pages in guest frames, per-vCPU priority queues, and the LINKED/BUSY protocol.
//!
//! A domain starts on the 2-level ABI. `EVTCHNOP_init_control` for its first vCPU switches the
//! whole domain to FIFO ([`PortTable::fifo`] becomes `Some`): each port already bound keeps its
//! pending state (copied from shared_info's bitmap into [`Channel::fifo_pending`], re-raised
//! once an event array page covers it) and gets the default priority. `EVTCHNOP_reset` switches
//! back to 2-level. Which frames the guest named is the handler's business (`hypercall.rs`
//! checks the frame and holds a writable type reference on it); this module gets machine
//! addresses that stay valid until the FIFO state is dropped.
//!
//! **Guest-written words.** Every event word and control block is guest memory that the guest
//! may change at any moment. The hypervisor never follows a LINK field: it only writes the LINK
//! of the tail it remembers ([`Fifo::tails`], its own copy, never read back from the guest) with
//! a bounded `cmpxchg` loop (Xen's `evtchn_fifo_set_link`: one try, then BUSY and at most four
//! more), writes HEAD when a queue was empty, and sets bits. So no guest value can make it loop,
//! index out of range or panic: a corrupt queue only loses or duplicates the guest's own events.
//! A word that cannot be reached (never, while the reference is held) reads as absent.

use hypercall_abi::event_channel::{
    EVTCHN_FIFO_BUSY, EVTCHN_FIFO_LINKED, EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_MASKED,
    EVTCHN_FIFO_MAX_QUEUES, EVTCHN_FIFO_NR_CHANNELS, EVTCHN_FIFO_PENDING,
    EVTCHN_FIFO_PRIORITY_DEFAULT, EVTCHN_FIFO_PRIORITY_MIN,
};

use super::*;
use crate::mm::Maddr;

/// Event words per event array page (`EVTCHN_FIFO_EVENT_WORDS_PER_PAGE`).
pub const WORDS_PER_PAGE: u32 = 4096 / 4;

/// Event array pages a domain may add (`EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES`): enough for every
/// port of the FIFO ABI, 2^17. Ports beyond [`NR_PORTS`] never exist here (the port table's
/// fixed size), but a guest may still add all the pages, as on Xen.
pub const MAX_EVENT_ARRAY_PAGES: usize = (EVTCHN_FIFO_NR_CHANNELS / WORDS_PER_PAGE) as usize;

/// Size of `struct evtchn_fifo_control_block`.
pub const CONTROL_BLOCK_SIZE: u32 =
    core::mem::size_of::<hypercall_abi::event_channel::EvtchnFifoControlBlock>() as u32;

/// Offset of `head[0]` in the control block.
const HEAD_OFFSET: u64 = 8;

const PENDING: u32 = 1 << EVTCHN_FIFO_PENDING;
const MASKED: u32 = 1 << EVTCHN_FIFO_MASKED;
const LINKED: u32 = 1 << EVTCHN_FIFO_LINKED;
const BUSY: u32 = 1 << EVTCHN_FIFO_BUSY;

/// Memory holding FIFO words: aligned u32 accesses at machine addresses, with the locked
/// operations Xen uses (`cmpxchg`, `guest_set_bit`, `guest_clear_bit`). `None`: the address
/// cannot be reached; the operation is then dropped.
pub trait FifoMemory {
    /// Reads the word at `at`.
    fn load(&self, at: Maddr) -> Option<u32>;
    /// Writes the word at `at` (`write_atomic`).
    fn store(&mut self, at: Maddr, value: u32) -> Option<()>;
    /// `cmpxchg`: writes `new` if the word is `old`; returns what it was.
    fn cmpxchg(&mut self, at: Maddr, old: u32, new: u32) -> Option<u32>;
    /// Locked or; returns the old value.
    fn fetch_or(&mut self, at: Maddr, bits: u32) -> Option<u32>;
    /// Locked and; returns the old value.
    fn fetch_and(&mut self, at: Maddr, bits: u32) -> Option<u32>;
}

/// A domain's FIFO state (Xen's `struct evtchn_fifo_domain` and each vCPU's
/// `struct evtchn_fifo_vcpu`), present once the domain switched to FIFO.
#[derive(Clone, Debug)]
pub struct Fifo {
    /// Per vCPU, its control block, once `init_control` mapped it.
    control: [Option<Maddr>; MAX_VCPUS],
    /// Per vCPU and priority, the last port linked (`q->tail`), 0 for none. The hypervisor's own
    /// copy: never read from guest memory.
    tails: [[EvtchnPort; EVTCHN_FIFO_MAX_QUEUES]; MAX_VCPUS],
    /// The event array pages, in order.
    array: [Maddr; MAX_EVENT_ARRAY_PAGES],
    /// How many of `array` are there.
    pages: u32,
}

impl Fifo {
    const fn new() -> Fifo {
        Fifo {
            control: [None; MAX_VCPUS],
            tails: [[0; EVTCHN_FIFO_MAX_QUEUES]; MAX_VCPUS],
            array: [Maddr(0); MAX_EVENT_ARRAY_PAGES],
            pages: 0,
        }
    }

    /// Ports covered by event array pages (`num_evtchns`).
    pub const fn num_evtchns(&self) -> u32 {
        self.pages * WORDS_PER_PAGE
    }

    /// Event array pages added so far.
    pub const fn pages(&self) -> u32 {
        self.pages
    }

    /// The control block of `vcpu`, if mapped.
    pub fn control_block(&self, vcpu: u32) -> Option<Maddr> {
        *self.control.get(vcpu as usize)?
    }

    /// The tail the hypervisor remembers for `vcpu`'s queue `priority` (0: empty).
    pub fn tail(&self, vcpu: u32, priority: u32) -> EvtchnPort {
        self.tails
            .get(vcpu as usize)
            .and_then(|t| t.get(priority as usize))
            .copied()
            .unwrap_or(0)
    }

    /// Where `port`'s event word is (`evtchn_fifo_word_from_port`), if a page covers it.
    pub fn word(&self, port: EvtchnPort) -> Option<Maddr> {
        if port >= self.num_evtchns() {
            return None;
        }
        let page = self.array.get((port / WORDS_PER_PAGE) as usize)?;
        Some(Maddr(page.0 + u64::from(port % WORDS_PER_PAGE) * 4))
    }
}

/// The checks of `EVTCHNOP_init_control` that come before the frame is looked at, in Xen's
/// order: the vCPU exists (-ENOENT), the block fits in the page (-EINVAL) and is 8-byte
/// aligned (-EINVAL), and the vCPU has no control block yet (-EINVAL).
pub fn check_init_control(ports: &PortTable, vcpu: u32, offset: u32) -> Result<(), Errno> {
    if !ports.vcpu_exists(vcpu) {
        return Err(Errno::ENOENT);
    }
    if offset > 4096 - CONTROL_BLOCK_SIZE || offset & 7 != 0 {
        return Err(Errno::EINVAL);
    }
    if ports
        .fifo
        .as_ref()
        .is_some_and(|f| f.control_block(vcpu).is_some())
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// `evtchn_fifo_init_control` once the frame was accepted: the control block of `vcpu` is at
/// `block` (checked by [`check_init_control`]). The first one switches the domain to FIFO:
/// every valid port keeps its 2-level pending bit as [`Channel::fifo_pending`] and gets the
/// default priority (`setup_ports`).
pub fn init_control<S: crate::shared_info::SharedRead + ?Sized>(
    ports: &mut PortTable,
    shared: &S,
    vcpu: u32,
    block: Maddr,
) {
    if ports.fifo.is_none() {
        let page = SharedInfoPage(shared);
        for port in 1..ports.valid {
            let Some(c) = super::channel_in(&mut ports.pages, port) else {
                continue;
            };
            if page.evtchn_pending(port) {
                c.fifo_pending = true;
            }
            c.priority = EVTCHN_FIFO_PRIORITY_DEFAULT as u8;
        }
        ports.fifo = Some(Fifo::new());
    }
    if let Some(slot) = ports
        .fifo
        .as_mut()
        .and_then(|f| f.control.get_mut(vcpu as usize))
    {
        *slot = Some(block);
    }
}

/// The checks of `EVTCHNOP_expand_array` before the frame is looked at: the domain uses FIFO
/// (-EOPNOTSUPP) and has room for another page (-ENOSPC).
pub fn check_expand_array(ports: &PortTable) -> Result<(), Errno> {
    let fifo = ports.fifo.as_ref().ok_or(Errno::EOPNOTSUPP)?;
    if fifo.pages as usize >= MAX_EVENT_ARRAY_PAGES {
        return Err(Errno::ENOSPC);
    }
    Ok(())
}

/// `add_page_to_event_array` once the frame was accepted: the next page is at `page`. Events
/// that became pending while no page covered their port are raised now. Returns a vCPU to
/// kick if that made an upcall pending.
pub fn add_array_page<S: SharedMemory + FifoMemory + ?Sized>(
    d: &mut DomainEvents<'_, S>,
    page: Maddr,
) -> Option<Kick> {
    let fifo = d.ports.fifo.as_mut()?;
    let first = fifo.num_evtchns();
    let slot = fifo.array.get_mut(fifo.pages as usize)?;
    *slot = page;
    fifo.pages += 1;
    let end = fifo.num_evtchns().min(d.ports.valid);
    let mut kick = None;
    for port in first..end {
        let Some(c) = super::channel_in(&mut d.ports.pages, port) else {
            continue;
        };
        if c.fifo_pending {
            c.fifo_pending = false;
            let vcpu = c.notify_vcpu;
            kick = set_pending(d, port, vcpu).or(kick);
        }
    }
    kick
}

/// `evtchn_fifo_set_priority`: -EINVAL above `EVTCHN_FIFO_PRIORITY_MIN`; the new priority
/// applies to the next time the event is linked.
pub fn set_priority(ports: &mut PortTable, port: EvtchnPort, priority: u32) -> Result<(), Errno> {
    if priority > EVTCHN_FIFO_PRIORITY_MIN {
        return Err(Errno::EINVAL);
    }
    ports.chan_mut(port).priority = priority as u8;
    Ok(())
}

/// `try_set_link`: if the word is still LINKED, replace its LINK (and clear BUSY) with one
/// `cmpxchg`. `Ok(false)`: not linked (the guest consumed it); `Err(now)`: it changed meanwhile.
fn try_set_link<S: FifoMemory + ?Sized>(
    mem: &mut S,
    at: Maddr,
    w: u32,
    link: u32,
) -> Result<bool, Option<u32>> {
    if w & LINKED == 0 {
        return Ok(false);
    }
    let new = (w & !(BUSY | EVTCHN_FIFO_LINK_MASK)) | link;
    match mem.cmpxchg(at, w, new) {
        Some(now) if now == w => Ok(true),
        now => Err(now),
    }
}

/// `evtchn_fifo_set_link`: link `link` after the tail word at `at` iff that word is still
/// LINKED. At most six `cmpxchg`s whatever the guest does: one try; then BUSY (which stops a
/// well-behaved guest from unmasking) and four more; then give up, leaving the link unchanged
/// and reporting "linked", as Xen does.
pub(super) fn set_link<S: FifoMemory + ?Sized>(mem: &mut S, at: Maddr, link: u32) -> bool {
    let Some(mut w) = mem.load(at) else {
        return false;
    };
    match try_set_link(mem, at, w, link) {
        Ok(linked) => return linked,
        Err(None) => return false,
        Err(Some(now)) => w = now,
    }
    let _ = mem.fetch_or(at, BUSY);
    if let Some(now) = mem.load(at) {
        w = now;
    }
    for _ in 0..4 {
        match try_set_link(mem, at, w, link) {
            Ok(linked) => {
                if !linked {
                    let _ = mem.fetch_and(at, !BUSY);
                }
                return linked;
            }
            Err(None) => break,
            Err(Some(now)) => w = now,
        }
    }
    let _ = mem.fetch_and(at, !BUSY);
    true
}

/// `evtchn_fifo_set_pending` for `port`, notifying `vcpu`: set PENDING; if the event is not
/// masked and not already LINKED, link it at the tail of its queue (or write HEAD if the queue
/// was empty, then set the queue's bit in READY and mark the upcall pending). A port no page
/// covers yet only remembers that it is pending.
pub(super) fn set_pending<S: SharedMemory + FifoMemory + ?Sized>(
    d: &mut DomainEvents<'_, S>,
    port: EvtchnPort,
    vcpu: u32,
) -> Option<Kick> {
    let fifo = d.ports.fifo.as_mut()?;
    let chan = super::channel_in(&mut d.ports.pages, port)?;
    let Some(word) = fifo.word(port) else {
        chan.fifo_pending = true;
        return None;
    };
    let vcpu = vcpu.min(MAX_VCPUS as u32 - 1);
    let prio = u32::from(chan.priority).min(EVTCHN_FIFO_PRIORITY_MIN);
    let _was_pending = d.shared.fetch_or(word, PENDING)? & PENDING != 0;
    let block = fifo.control_block(vcpu)?;
    let mut linked = true;
    let w = d.shared.load(word)?;
    if w & MASKED == 0 && d.shared.fetch_or(word, LINKED)? & LINKED == 0 {
        // If this event was the tail of its old queue, that queue is empty now: forget its
        // tail so that linking onto it later cannot touch this word.
        let (old_v, old_p) = (u32::from(chan.last_vcpu), u32::from(chan.last_priority));
        if let Some(t) = fifo
            .tails
            .get_mut(old_v as usize)
            .and_then(|t| t.get_mut(old_p as usize))
        {
            if *t == port {
                *t = 0;
            }
        }
        if (old_v, old_p) != (vcpu, prio) {
            chan.last_vcpu = vcpu as u8;
            chan.last_priority = prio as u8;
        }
        linked = false;
        let tail = fifo.tails[vcpu as usize][prio as usize];
        if tail != 0 {
            if let Some(tw) = fifo.word(tail) {
                linked = set_link(&mut *d.shared, tw, port);
            }
        }
        if !linked {
            d.shared
                .store(Maddr(block.0 + HEAD_OFFSET + 4 * u64::from(prio)), port)?;
        }
        fifo.tails[vcpu as usize][prio as usize] = port;
    }
    if !linked && d.shared.fetch_or(block, 1 << prio)? & (1 << prio) == 0 {
        return mark_events_pending(d.id, d.shared, vcpu);
    }
    None
}

/// `evtchn_fifo_clear_pending`: clear PENDING only; the guest unlinks non-pending events itself.
pub(super) fn clear_pending<S: FifoMemory + ?Sized>(fifo: &Fifo, mem: &mut S, port: EvtchnPort) {
    if let Some(word) = fifo.word(port) {
        let _ = mem.fetch_and(word, !PENDING);
    }
}

/// `evtchn_fifo_unmask`: clear MASKED and, if the event is pending, link it.
pub(super) fn unmask<S: SharedMemory + FifoMemory + ?Sized>(
    d: &mut DomainEvents<'_, S>,
    port: EvtchnPort,
    vcpu: u32,
) -> Option<Kick> {
    let word = d.ports.fifo.as_ref()?.word(port)?;
    d.shared.fetch_and(word, !MASKED)?;
    if d.shared.load(word)? & PENDING != 0 {
        return set_pending(d, port, vcpu);
    }
    None
}

/// `evtchn_fifo_is_pending`.
pub fn is_pending<S: FifoMemory + ?Sized>(fifo: &Fifo, mem: &S, port: EvtchnPort) -> bool {
    fifo.word(port)
        .and_then(|w| mem.load(w))
        .is_some_and(|w| w & PENDING != 0)
}

/// `evtchn_fifo_is_busy`: the port's event word is LINKED on a queue.
pub fn is_linked<S: FifoMemory + ?Sized>(fifo: &Fifo, mem: &S, port: EvtchnPort) -> bool {
    fifo.word(port)
        .and_then(|w| mem.load(w))
        .is_some_and(|w| w & LINKED != 0)
}

/// `evtchn_fifo_is_masked`: a port no page covers counts as masked.
pub fn is_masked<S: FifoMemory + ?Sized>(fifo: &Fifo, mem: &S, port: EvtchnPort) -> bool {
    fifo.word(port)
        .and_then(|w| mem.load(w))
        .is_none_or(|w| w & MASKED != 0)
}

/// Machine memory read through a shared reference, for the read-only checks (`SCHEDOP_poll`,
/// the debug keys).
pub struct ReadOnly<'a, M: ?Sized>(pub &'a M);

impl<M: crate::mm::MachineMemory + ?Sized> FifoMemory for ReadOnly<'_, M> {
    fn load(&self, at: Maddr) -> Option<u32> {
        if !at.0.is_multiple_of(4) {
            return None;
        }
        let b = self.0.read(at, 4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }
    fn store(&mut self, _: Maddr, _: u32) -> Option<()> {
        None
    }
    fn cmpxchg(&mut self, _: Maddr, _: u32, _: u32) -> Option<u32> {
        None
    }
    fn fetch_or(&mut self, _: Maddr, _: u32) -> Option<u32> {
        None
    }
    fn fetch_and(&mut self, _: Maddr, _: u32) -> Option<u32> {
        None
    }
}

/// Whether `port` of `dom` is pending, whichever ABI it uses (Xen's `evtchn_port_is_pending`).
pub fn port_pending<M: crate::mm::MachineMemory + ?Sized>(
    m: &M,
    dom: &crate::domain::Domain,
    ports: &PortTable,
    port: EvtchnPort,
) -> bool {
    match &ports.fifo {
        Some(fifo) => is_pending(fifo, &ReadOnly(m), port),
        None => crate::shared_info::port_pending(m, dom, port),
    }
}

/// Host tests' shared_info pages of 2-level-only domains: no frames besides shared_info.
#[cfg(test)]
impl<const N: usize> FifoMemory for [u8; N] {
    fn load(&self, _: Maddr) -> Option<u32> {
        None
    }
    fn store(&mut self, _: Maddr, _: u32) -> Option<()> {
        None
    }
    fn cmpxchg(&mut self, _: Maddr, _: u32, _: u32) -> Option<u32> {
        None
    }
    fn fetch_or(&mut self, _: Maddr, _: u32) -> Option<u32> {
        None
    }
    fn fetch_and(&mut self, _: Maddr, _: u32) -> Option<u32> {
        None
    }
}
