//! Host tests of the FIFO ABI: the switch from 2-level, Xen's argument checks, linking and the
//! READY/HEAD protocol against a model of Linux's consumer, priorities, and hostile guests
//! (LINK fields scribbled, words changed under every `cmpxchg`, loops in the queue, an event
//! array page that cannot be reached): the hypervisor's work stays bounded and nothing panics.

use std::collections::{BTreeMap, BTreeSet};

use super::super::fifo::{self, FifoMemory, MAX_EVENT_ARRAY_PAGES, WORDS_PER_PAGE};
use super::*;
use crate::guest_access::GuestPtr;
use crate::mm::Maddr;
use crate::shared_info::{forward_shared_memory, forward_shared_read, SharedRead};
use hypercall_abi::event_channel::{
    EVTCHN_FIFO_BUSY, EVTCHN_FIFO_LINKED, EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_MASKED,
    EVTCHN_FIFO_PENDING, EVTCHN_FIFO_PRIORITY_DEFAULT,
};

const P: u32 = 1 << EVTCHN_FIFO_PENDING;
const M: u32 = 1 << EVTCHN_FIFO_MASKED;
const L: u32 = 1 << EVTCHN_FIFO_LINKED;
const B: u32 = 1 << EVTCHN_FIFO_BUSY;

/// Where the test puts vCPU 0's control block, and the event array pages.
const BLOCK: u64 = 0x10_0000;
const ARRAY: u64 = 0x20_0000;

/// A domain's shared_info plus the words of its other frames, with what a hostile guest does.
#[derive(Clone, Default)]
struct Mem {
    shared: Vec<u8>,
    words: BTreeMap<u64, u32>,
    /// Frames that cannot be reached (every access fails).
    holes: BTreeSet<u64>,
    /// XORed into the word after each `cmpxchg`: a guest changing it under the hypervisor.
    churn: u32,
    /// Memory operations done, to check the work is bounded.
    ops: u64,
}

forward_shared_read!([] Mem, |s| s.shared.as_slice());
forward_shared_memory!([] Mem, |s| s.shared.as_mut_slice());

impl Mem {
    fn reach(&self, at: Maddr) -> Option<()> {
        assert!(at.0.is_multiple_of(4), "unaligned FIFO access at {at:?}");
        (!self.holes.contains(&(at.0 >> 12))).then_some(())
    }
    fn get(&self, at: u64) -> u32 {
        self.words.get(&at).copied().unwrap_or(0)
    }
}

impl FifoMemory for Mem {
    fn load(&self, at: Maddr) -> Option<u32> {
        self.reach(at)?;
        Some(self.get(at.0))
    }
    fn store(&mut self, at: Maddr, value: u32) -> Option<()> {
        self.reach(at)?;
        self.ops += 1;
        self.words.insert(at.0, value);
        Some(())
    }
    fn cmpxchg(&mut self, at: Maddr, old: u32, new: u32) -> Option<u32> {
        self.reach(at)?;
        self.ops += 1;
        if self.churn != 0 {
            // The guest got there first.
            let w = self.get(at.0) ^ self.churn;
            self.words.insert(at.0, w);
        }
        let cur = self.get(at.0);
        if cur == old {
            self.words.insert(at.0, new);
        }
        Some(cur)
    }
    fn fetch_or(&mut self, at: Maddr, bits: u32) -> Option<u32> {
        self.reach(at)?;
        self.ops += 1;
        let cur = self.get(at.0);
        self.words.insert(at.0, cur | bits);
        Some(cur)
    }
    fn fetch_and(&mut self, at: Maddr, bits: u32) -> Option<u32> {
        self.reach(at)?;
        self.ops += 1;
        let cur = self.get(at.0);
        self.words.insert(at.0, cur & bits);
        Some(cur)
    }
}

type FWorld = Vec<EvtchnDomain<Mem>>;

fn fworld() -> FWorld {
    vec![EvtchnDomain {
        id: DOM1,
        privileged: false,
        ports: super::initialised(PortTable::new(2, u32::MAX)),
        shared: Mem {
            shared: vec![0; 4096],
            ..Default::default()
        },
        pages: super::heap_pages(),
    }]
}

fn d(w: &mut FWorld) -> &mut EvtchnDomain<Mem> {
    &mut w[0]
}

/// `init_control` as the handler runs it, the frame accepted.
fn init(w: &mut FWorld, vcpu: u32, block: u64) -> Result<(), Errno> {
    let d = d(w);
    fifo::check_init_control(&d.ports, vcpu, (block & 0xfff) as u32)?;
    fifo::init_control(&mut d.ports, &d.shared, vcpu, Maddr(block));
    Ok(())
}

/// `expand_array` as the handler runs it, the frame accepted; returns the kick.
fn expand(w: &mut FWorld) -> Result<Option<Kick>, Errno> {
    let d = d(w);
    fifo::check_expand_array(&d.ports)?;
    let n = d.ports.fifo().unwrap().pages();
    Ok(fifo::add_array_page(
        &mut d.view(),
        Maddr(ARRAY + u64::from(n) * 0x1000),
    ))
}

fn word_at(port: u32) -> u64 {
    ARRAY + u64::from(port / WORDS_PER_PAGE) * 0x1000 + u64::from(port % WORDS_PER_PAGE) * 4
}

fn word(w: &FWorld, port: u32) -> u32 {
    w[0].shared.get(word_at(port))
}

fn set_word(w: &mut FWorld, port: u32, v: u32) {
    w[0].shared.words.insert(word_at(port), v);
}

fn head(w: &FWorld, block: u64, prio: u32) -> u32 {
    w[0].shared.get(block + 8 + 4 * u64::from(prio))
}

fn ready(w: &FWorld, block: u64) -> u32 {
    w[0].shared.get(block)
}

/// A loopback pair: (a, b); sending on b raises a.
fn pair(w: &mut FWorld) -> (u32, u32) {
    let a = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOMID_SELF).unwrap();
    let b = bind_interdomain(w.as_mut_slice(), DOM1, DOMID_SELF, a)
        .unwrap()
        .port;
    (a, b)
}

/// A FIFO domain with vCPU 0's block and one array page, every word zero (unmasked).
fn fifo_world() -> FWorld {
    let mut w = fworld();
    init(&mut w, 0, BLOCK).unwrap();
    expand(&mut w).unwrap();
    w
}

/// Linux's consumer (`__evtchn_fifo_handle_events` / `consume_one_event`), bounded by `limit`
/// events: the ports it handles, in order.
fn consume(w: &mut FWorld, block: u64, limit: usize) -> Vec<u32> {
    let mut out = vec![];
    let mem = &mut w[0].shared;
    let mut ready = mem.get(block) & 0xffff;
    mem.words.insert(block, 0);
    let mut local_head = [0u32; 16];
    while ready != 0 && out.len() < limit {
        let q = ready.trailing_zeros();
        let mut port = local_head[q as usize];
        if port == 0 {
            port = mem.get(block + 8 + 4 * u64::from(q));
        }
        let at = word_at(port);
        let wv = mem.get(at);
        mem.words.insert(at, wv & !(L | EVTCHN_FIFO_LINK_MASK));
        let link = wv & EVTCHN_FIFO_LINK_MASK;
        if link == 0 {
            ready &= !(1 << q);
        }
        if wv & P != 0 && wv & M == 0 {
            let cur = mem.get(at);
            mem.words.insert(at, cur & !P);
            out.push(port);
        }
        local_head[q as usize] = link;
        ready |= mem.get(block) & 0xffff;
        mem.words.insert(block, 0);
    }
    out
}

#[test]
fn init_control_checks_in_xens_order() {
    let mut w = fworld();
    assert_eq!(init(&mut w, 2, BLOCK), Err(Errno::ENOENT), "no vCPU 2");
    assert_eq!(
        init(&mut w, 0, BLOCK + 4096 - 72 + 8),
        Err(Errno::EINVAL),
        "crosses the page"
    );
    assert_eq!(
        init(&mut w, 0, BLOCK + 4),
        Err(Errno::EINVAL),
        "not 8-byte aligned"
    );
    assert!(d(&mut w).ports.fifo().is_none(), "still 2-level");
    assert_eq!(
        expand(&mut w),
        Err(Errno::EOPNOTSUPP),
        "expand before init_control"
    );
    assert_eq!(
        init(&mut w, 0, BLOCK + 4096 - 72),
        Ok(()),
        "last offset that fits"
    );
    assert_eq!(
        init(&mut w, 0, BLOCK),
        Err(Errno::EINVAL),
        "twice for one vCPU"
    );
    assert_eq!(init(&mut w, 1, BLOCK + 0x1000), Ok(()), "the other vCPU");
    for _ in 0..MAX_EVENT_ARRAY_PAGES {
        expand(&mut w).unwrap();
    }
    assert_eq!(expand(&mut w), Err(Errno::ENOSPC), "past 128 pages");
}

#[test]
fn send_links_at_head_then_tail_and_marks_ready_once() {
    let mut w = fifo_world();
    let (a, b) = pair(&mut w);
    // bind_interdomain raised `b` at once (Xen's conservative notification).
    assert_eq!(word(&w, b), P | L);
    assert_eq!(head(&w, BLOCK, EVTCHN_FIFO_PRIORITY_DEFAULT), b);
    assert_eq!(ready(&w, BLOCK), 1 << EVTCHN_FIFO_PRIORITY_DEFAULT);
    assert!(SharedInfoPage(&w[0].shared).upcall_pending(0));
    let kick = send(w.as_mut_slice(), DOM1, b).unwrap();
    assert_eq!(kick, None, "the upcall was already pending");
    assert_eq!(word(&w, a), P | L);
    assert_eq!(word(&w, b) & EVTCHN_FIFO_LINK_MASK, a, "b links to a");
    assert_eq!(
        head(&w, BLOCK, EVTCHN_FIFO_PRIORITY_DEFAULT),
        b,
        "head unchanged"
    );
    assert_eq!(consume(&mut w, BLOCK, 10), vec![b, a]);
    // Sending again to a consumed, unlinked queue starts it anew at HEAD.
    send(w.as_mut_slice(), DOM1, b).unwrap();
    assert_eq!(head(&w, BLOCK, EVTCHN_FIFO_PRIORITY_DEFAULT), a);
    assert_eq!(consume(&mut w, BLOCK, 10), vec![a]);
}

#[test]
fn masked_event_waits_for_unmask_which_links_it() {
    let mut w = fifo_world();
    let (a, b) = pair(&mut w);
    consume(&mut w, BLOCK, 10);
    set_word(&mut w, a, M);
    send(w.as_mut_slice(), DOM1, b).unwrap();
    assert_eq!(word(&w, a), M | P, "pending, not linked");
    assert_eq!(ready(&w, BLOCK), 0);
    unmask(w.as_mut_slice(), DOM1, a).unwrap();
    assert_eq!(word(&w, a), P | L);
    assert_eq!(consume(&mut w, BLOCK, 10), vec![a]);
    // Unmasking a port that is not pending links nothing.
    unmask(w.as_mut_slice(), DOM1, a).unwrap();
    assert_eq!(word(&w, a), 0);
}

#[test]
fn priorities_pick_queues_and_checks_match_xen() {
    let mut w = fworld();
    let (a, b) = pair(&mut w);
    let prio = |w: &mut FWorld, port, priority| {
        let d = d(w);
        let out = do_event_channel_op(
            std::slice::from_mut(d),
            DOM1,
            &mut NoGuestMemory(EvtchnSetPriority { port, priority }),
            EVTCHNOP_set_priority,
            GuestPtr::new(0),
        );
        out.result
    };
    assert_eq!(
        prio(&mut w, a, 3),
        Err(Errno::ENOSYS),
        "2-level has no priorities"
    );
    assert_eq!(
        prio(&mut w, 5000, 3),
        Err(Errno::EINVAL),
        "invalid port first"
    );
    init(&mut w, 0, BLOCK).unwrap();
    expand(&mut w).unwrap();
    assert_eq!(prio(&mut w, a, 16), Err(Errno::EINVAL), "past PRIORITY_MIN");
    assert_eq!(prio(&mut w, 40, 3), Err(Errno::EACCES), "a free port");
    assert_eq!(prio(&mut w, a, 3), Ok(()));
    consume(&mut w, BLOCK, 10);
    send(w.as_mut_slice(), DOM1, b).unwrap();
    assert_eq!(head(&w, BLOCK, 3), a);
    assert_eq!(ready(&w, BLOCK), 1 << 3);
    // b (default 7) and a (3): the consumer takes the higher priority first.
    send(w.as_mut_slice(), DOM1, a).unwrap();
    assert_eq!(consume(&mut w, BLOCK, 10), vec![a, b]);
    // A closed and re-bound port gets the default priority again.
    close(w.as_mut_slice(), DOM1, a).unwrap();
    assert_eq!(d(&mut w).ports.channel(a).unwrap().priority, 7);
}

/// The guest's `EvtchnSetPriority` at any address: the argument of the one command tested.
struct NoGuestMemory(EvtchnSetPriority);

impl GuestMemory for NoGuestMemory {
    fn read(&self, _va: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        buf.copy_from_slice(self.0.as_bytes());
        Ok(())
    }
    fn write(&mut self, _va: u64, _data: &[u8]) -> Result<(), GuestFault> {
        Ok(())
    }
}

#[test]
fn switch_carries_bound_ports_and_their_pending_state_over() {
    let mut w = fworld();
    let (a, b) = pair(&mut w);
    // 2-level: b is pending from the bind; send makes a pending too.
    send(w.as_mut_slice(), DOM1, b).unwrap();
    assert!(SharedInfoPage(&w[0].shared).evtchn_pending(a));
    init(&mut w, 0, BLOCK).unwrap();
    let c = &d(&mut w).ports.channel(a).unwrap().clone();
    assert!(c.fifo_pending && c.priority == 7);
    assert_eq!(ready(&w, BLOCK), 0, "no page yet: nothing linked");
    // The page comes: both raised, in port order, with a kick.
    let kick = expand(&mut w).unwrap();
    assert_eq!(
        kick, None,
        "upcall_pending was already set by the 2-level sends"
    );
    assert_eq!(consume(&mut w, BLOCK, 10), vec![a, b]);
    assert!(!d(&mut w).ports.channel(a).unwrap().fifo_pending);
    // EVTCHNOP_reset goes back to 2-level with every port closed.
    reset(w.as_mut_slice(), DOM1, DOMID_SELF).unwrap();
    assert!(d(&mut w).ports.fifo().is_none());
    let (_, b) = pair(&mut w);
    assert!(
        SharedInfoPage(&w[0].shared).evtchn_pending(b),
        "2-level bitmaps again"
    );
}

#[test]
fn events_beyond_the_array_wait_for_their_page() {
    let mut w = fifo_world();
    // Use ports past the first page: allocate until beyond 1024.
    let mut last = (0, 0);
    while last.0 < WORDS_PER_PAGE + 4 {
        last = pair(&mut w);
    }
    let (a, b) = last;
    consume(&mut w, BLOCK, 2000);
    send(w.as_mut_slice(), DOM1, b).unwrap();
    assert!(d(&mut w).ports.channel(a).unwrap().fifo_pending);
    expand(&mut w).unwrap();
    let got = consume(&mut w, BLOCK, 10);
    assert!(got.contains(&a) && got.contains(&b), "{got:?}");
}

#[test]
fn close_clears_pending_in_the_word() {
    let mut w = fifo_world();
    let (a, b) = pair(&mut w);
    send(w.as_mut_slice(), DOM1, b).unwrap();
    close(w.as_mut_slice(), DOM1, a).unwrap();
    assert_eq!(word(&w, a) & P, 0);
}

#[test]
fn a_closed_port_still_linked_is_not_handed_out_again_until_consumed() {
    // Xen's `evtchn_allocate_port` skips a free port whose word is LINKED (`evtchn_is_busy`):
    // reusing it would deliver its first event on the old queue.
    let mut w = fifo_world();
    let (a, b) = pair(&mut w);
    send(w.as_mut_slice(), DOM1, b).unwrap();
    assert_ne!(word(&w, a) & L, 0, "a is linked on a queue");
    close(w.as_mut_slice(), DOM1, a).unwrap();
    let c = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOMID_SELF).unwrap();
    assert_ne!(c, a, "a still LINKED: busy");
    assert_eq!(c, b + 1, "the lowest free port that is not linked");
    // Once the guest consumed it, the port is free again.
    // (b is pending since its bind, as Xen makes a new interdomain port; a, closed, is not.)
    assert_eq!(consume(&mut w, BLOCK, 8), vec![b]);
    assert_eq!(word(&w, a) & L, 0);
    let e = alloc_unbound(w.as_mut_slice(), DOM1, DOMID_SELF, DOMID_SELF).unwrap();
    assert_eq!(e, a);
}

#[test]
fn tail_unlinked_by_the_guest_restarts_the_queue_at_head() {
    let mut w = fifo_world();
    let (a, b) = pair(&mut w);
    // The guest consumed b (cleared LINKED) behind the hypervisor's back, keeping READY.
    set_word(&mut w, b, 0);
    send(w.as_mut_slice(), DOM1, b).unwrap();
    assert_eq!(head(&w, BLOCK, 7), a, "tail not linked: a becomes head");
    assert_eq!(word(&w, b), 0, "b untouched");
}

#[test]
fn a_guest_changing_the_tail_word_under_every_cmpxchg_costs_at_most_six() {
    let mut w = fifo_world();
    let (a, b) = pair(&mut w);
    // b is the tail and LINKED; the guest flips MASKED after every cmpxchg.
    w[0].shared.churn = M;
    w[0].shared.ops = 0;
    send(w.as_mut_slice(), DOM1, b).unwrap();
    let ops = w[0].shared.ops;
    assert!(ops <= 12, "{ops} memory operations");
    assert_eq!(word(&w, b) & B, 0, "BUSY cleared after giving up");
    assert_eq!(word(&w, b) & EVTCHN_FIFO_LINK_MASK, 0, "link not written");
    assert_eq!(
        word(&w, a) & (P | L),
        P | L,
        "a itself is marked linked, as Xen does"
    );
}

#[test]
fn loops_and_wild_links_in_guest_words_never_reach_the_hypervisor() {
    let mut w = fifo_world();
    let mut ports = vec![];
    for _ in 0..8 {
        ports.push(pair(&mut w));
    }
    // The guest makes every word LINKED with a link to itself, out of range or into a loop.
    for (i, &(a, b)) in ports.iter().enumerate() {
        set_word(&mut w, a, L | a);
        set_word(&mut w, b, L | (EVTCHN_FIFO_LINK_MASK - i as u32));
    }
    w[0].shared.words.insert(BLOCK + 8 + 28, 0x1_ffff);
    w[0].shared.ops = 0;
    for &(a, b) in &ports {
        send(w.as_mut_slice(), DOM1, a).unwrap();
        send(w.as_mut_slice(), DOM1, b).unwrap();
        unmask(w.as_mut_slice(), DOM1, a).unwrap();
    }
    let ops = w[0].shared.ops;
    assert!(
        ops <= 16 * 3 * 12,
        "{ops} memory operations for 48 operations"
    );
    // A consumer that bounds its walk terminates too.
    let got = consume(&mut w, BLOCK, 64);
    assert!(got.len() <= 64);
}

#[test]
fn unreachable_event_array_page_drops_events_without_panicking() {
    let mut w = fifo_world();
    let (a, b) = pair(&mut w);
    w[0].shared.holes.insert(ARRAY >> 12);
    assert_eq!(send(w.as_mut_slice(), DOM1, b), Ok(None));
    assert_eq!(unmask(w.as_mut_slice(), DOM1, a), Ok(None));
    close(w.as_mut_slice(), DOM1, a).unwrap();
    w[0].shared.holes.insert(BLOCK >> 12);
    w[0].shared.holes.remove(&(ARRAY >> 12));
    let (_, d2) = pair(&mut w);
    assert_eq!(
        send(w.as_mut_slice(), DOM1, d2),
        Ok(None),
        "control block unreachable"
    );
    assert!(fifo::is_masked(
        w[0].ports.fifo().unwrap(),
        &w[0].shared,
        5000
    ));
}

#[test]
fn random_scribbling_guest_never_panics_and_work_stays_bounded() {
    // xorshift, fixed seed: every word of the page and the block rewritten at random between
    // random operations.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut w = fifo_world();
    let mut ports = vec![];
    for _ in 0..20 {
        ports.push(pair(&mut w).1);
    }
    for _ in 0..5000 {
        let r = rnd();
        let port = ports[(r % ports.len() as u64) as usize];
        if r & 0x300 == 0 {
            let target = (r >> 16) % 60;
            set_word(&mut w, target as u32, (r >> 32) as u32);
            w[0].shared
                .words
                .insert(BLOCK + 4 * ((r >> 40) % 18), (r >> 8) as u32);
        }
        let before = w[0].shared.ops;
        match (r >> 10) % 5 {
            0 | 1 => {
                let _ = send(w.as_mut_slice(), DOM1, port);
            }
            2 => {
                let _ = unmask(w.as_mut_slice(), DOM1, port);
            }
            3 => {
                let d = d(&mut w);
                let _ = fifo::set_priority(&mut d.ports, port, ((r >> 20) % 16) as u32);
            }
            _ => {
                consume(&mut w, BLOCK, 64);
            }
        }
        if (r >> 10) % 5 != 4 {
            assert!(w[0].shared.ops - before <= 24, "bounded per operation");
        }
    }
}
