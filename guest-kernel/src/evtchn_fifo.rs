//! The guest's half of the FIFO event-channel ABI (`event_channel.h`, as Linux's
//! `drivers/xen/events/events_fifo.c` does it), over atomics so the kernel can hand it its shared
//! pages: consuming the per-priority queues the hypervisor links, and the bit protocol on one
//! event word (mask, conditional unmask that respects BUSY, pending).
//!
//! The words are shared with the hypervisor, and a hypervisor is not trusted to keep them sane
//! here either: a HEAD or LINK past the event array ends that queue, READY bits above the 16
//! queues are ignored, and one [`consume`] call handles at most `budget` words, so a loop in a
//! queue (which a correct hypervisor never makes: each visit unlinks the word) cannot hold the
//! CPU. The kernel (`kernel/events.rs`) owns the pages; this module only reads and writes them.

use core::sync::atomic::{AtomicU32, Ordering::SeqCst};

use hypercall_abi::event_channel::{
    EVTCHN_FIFO_BUSY, EVTCHN_FIFO_LINKED, EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_MASKED,
    EVTCHN_FIFO_MAX_QUEUES, EVTCHN_FIFO_PENDING,
};

/// Event words per 4 KiB event array page.
pub const WORDS_PER_PAGE: usize = 1024;
/// Words of a control block: READY, a reserved word, HEAD[16].
pub const CONTROL_WORDS: usize = 2 + EVTCHN_FIFO_MAX_QUEUES;

const PENDING: u32 = 1 << EVTCHN_FIFO_PENDING;
const MASKED: u32 = 1 << EVTCHN_FIFO_MASKED;
const LINKED: u32 = 1 << EVTCHN_FIFO_LINKED;
const BUSY: u32 = 1 << EVTCHN_FIFO_BUSY;
const QUEUE_BITS: u32 = (1 << EVTCHN_FIFO_MAX_QUEUES) - 1;

/// What one [`consume`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Consumed {
    /// Events handed to the handler (pending and not masked).
    pub handled: u32,
    /// Words visited.
    pub visited: u32,
    /// HEADs or LINKs that pointed past the event array (the queue was ended there).
    pub bad_links: u32,
    /// The budget ran out: the local heads were forgotten, so the next call starts again from
    /// the control block's HEADs.
    pub exhausted: bool,
}

/// Clears LINKED and LINK of `word`, returning the old value (Linux's `clear_linked`, one
/// locked `and` instead of its `cmpxchg` loop).
pub fn clear_linked(word: &AtomicU32) -> u32 {
    word.fetch_and(!(LINKED | EVTCHN_FIFO_LINK_MASK), SeqCst)
}

/// Whether the event is pending.
pub fn is_pending(word: &AtomicU32) -> bool {
    word.load(SeqCst) & PENDING != 0
}

/// Whether the event is masked.
pub fn is_masked(word: &AtomicU32) -> bool {
    word.load(SeqCst) & MASKED != 0
}

/// Clears PENDING; returns whether it was set.
pub fn clear_pending(word: &AtomicU32) -> bool {
    word.fetch_and(!PENDING, SeqCst) & PENDING != 0
}

/// Sets MASKED.
pub fn mask(word: &AtomicU32) {
    word.fetch_or(MASKED, SeqCst);
}

/// Linux's `clear_masked_cond`: clears MASKED in place unless the event is pending (it must be
/// linked by the hypervisor) or the hypervisor holds the word BUSY (it is writing its LINK).
/// `true`: unmasked (or was not masked); `false`: the caller must ask the hypervisor
/// (`EVTCHNOP_unmask`). Gives up after a few tries against a word that keeps changing.
pub fn unmask_local(word: &AtomicU32) -> bool {
    let mut w = word.load(SeqCst);
    for _ in 0..16 {
        if w & MASKED == 0 {
            return true;
        }
        if w & PENDING != 0 {
            return false;
        }
        let old = w & !BUSY;
        match word.compare_exchange(old, old & !MASKED, SeqCst, SeqCst) {
            Ok(_) => return true,
            Err(now) => w = now,
        }
    }
    false
}

/// Consumes the queues of one vCPU (`__evtchn_fifo_handle_events`): takes READY, then, highest
/// priority first, walks each queue from the local head (or the control block's HEAD when it
/// reached the end last time), unlinking each word and handing `handle` every event that is
/// pending and not masked, after clearing its PENDING. `control` is the control block's words,
/// `array` the event words (port = index), `heads` the local heads kept between calls.
pub fn consume(
    control: &[AtomicU32; CONTROL_WORDS],
    array: &[AtomicU32],
    heads: &[AtomicU32; EVTCHN_FIFO_MAX_QUEUES],
    budget: u32,
    mut handle: impl FnMut(u32),
) -> Consumed {
    let mut out = Consumed::default();
    let mut ready = control[0].swap(0, SeqCst) & QUEUE_BITS;
    while ready != 0 {
        if out.visited >= budget {
            for h in heads {
                h.store(0, SeqCst);
            }
            out.exhausted = true;
            return out;
        }
        let q = ready.trailing_zeros() as usize;
        let mut port = heads[q].load(SeqCst);
        if port == 0 {
            port = control[2 + q].load(SeqCst);
        }
        let Some(word) = array.get(port as usize).filter(|_| port != 0) else {
            // An empty or impossible HEAD/LINK: this queue ends here.
            if port != 0 {
                out.bad_links += 1;
            }
            heads[q].store(0, SeqCst);
            ready &= !(1 << q);
            ready |= control[0].swap(0, SeqCst) & QUEUE_BITS;
            continue;
        };
        out.visited += 1;
        let old = clear_linked(word);
        let link = old & EVTCHN_FIFO_LINK_MASK;
        if link == 0 {
            ready &= !(1 << q);
        }
        if old & PENDING != 0 && old & MASKED == 0 && clear_pending(word) {
            out.handled += 1;
            handle(port);
        }
        heads[q].store(link, SeqCst);
        ready |= control[0].swap(0, SeqCst) & QUEUE_BITS;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: usize = 2048;

    struct World {
        control: [AtomicU32; CONTROL_WORDS],
        array: Vec<AtomicU32>,
        heads: [AtomicU32; EVTCHN_FIFO_MAX_QUEUES],
        /// The producer's tails (the hypervisor's own copy).
        tails: [u32; EVTCHN_FIFO_MAX_QUEUES],
    }

    impl World {
        fn new() -> World {
            World {
                control: core::array::from_fn(|_| AtomicU32::new(0)),
                array: (0..PORTS).map(|_| AtomicU32::new(0)).collect(),
                heads: core::array::from_fn(|_| AtomicU32::new(0)),
                tails: [0; EVTCHN_FIFO_MAX_QUEUES],
            }
        }

        /// Xen's `evtchn_fifo_set_pending` (one CPU, so no BUSY retries): a model producer.
        fn raise(&mut self, port: u32, prio: usize) {
            let w = &self.array[port as usize];
            w.fetch_or(PENDING, SeqCst);
            if w.load(SeqCst) & MASKED != 0 || w.fetch_or(LINKED, SeqCst) & LINKED != 0 {
                return;
            }
            let tail = self.tails[prio];
            let mut linked = false;
            if tail != 0 {
                let tw = &self.array[tail as usize];
                let old = tw.load(SeqCst);
                if old & LINKED != 0 {
                    tw.store((old & !(BUSY | EVTCHN_FIFO_LINK_MASK)) | port, SeqCst);
                    linked = true;
                }
            }
            if !linked {
                self.control[2 + prio].store(port, SeqCst);
            }
            self.tails[prio] = port;
            if !linked {
                self.control[0].fetch_or(1 << prio, SeqCst);
            }
        }

        fn consume(&self, budget: u32) -> (Vec<u32>, Consumed) {
            let mut got = vec![];
            let c = consume(&self.control, &self.array, &self.heads, budget, |p| {
                got.push(p)
            });
            (got, c)
        }
    }

    #[test]
    fn events_come_out_in_order_highest_priority_first() {
        let mut w = World::new();
        for p in [5, 9, 3] {
            w.raise(p, 7);
        }
        w.raise(100, 2);
        w.raise(9, 7); // already linked: nothing new
        let (got, c) = w.consume(100);
        assert_eq!(got, vec![100, 5, 9, 3]);
        assert_eq!(
            (c.handled, c.visited, c.bad_links, c.exhausted),
            (4, 4, 0, false)
        );
        assert!(
            w.array.iter().all(|a| a.load(SeqCst) == 0),
            "all unlinked and consumed"
        );
        // The queue restarts at HEAD.
        w.raise(7, 7);
        assert_eq!(w.consume(100).0, vec![7]);
    }

    #[test]
    fn masked_events_stay_pending_until_unmasked() {
        let mut w = World::new();
        mask(&w.array[4]);
        w.raise(4, 7);
        assert_eq!(w.consume(100).0, Vec::<u32>::new());
        assert!(is_pending(&w.array[4]) && is_masked(&w.array[4]));
        assert!(!unmask_local(&w.array[4]), "pending: ask the hypervisor");
        // Not pending: unmasked in place; BUSY makes it retry, then give up.
        let v = &w.array[6];
        v.store(MASKED, SeqCst);
        assert!(unmask_local(v) && !is_masked(v));
        v.store(MASKED | BUSY, SeqCst);
        assert!(
            !unmask_local(v) && is_masked(v),
            "the hypervisor holds it BUSY"
        );
        assert!(unmask_local(&w.array[8]), "not masked at all");
    }

    #[test]
    fn links_past_the_array_and_bad_heads_end_the_queue() {
        let w = World::new();
        w.control[0].store(1 << 7 | 1 << 3, SeqCst);
        w.control[2 + 7].store(5, SeqCst);
        w.array[5].store(PENDING | LINKED | 0x1_ffff, SeqCst);
        w.control[2 + 3].store(u32::MAX, SeqCst);
        let (got, c) = w.consume(100);
        assert_eq!(got, vec![5]);
        assert_eq!(c.bad_links, 2, "HEAD[3] and 5's LINK");
        assert!(w.heads.iter().all(|h| h.load(SeqCst) == 0));
    }

    #[test]
    fn a_loop_in_a_queue_is_unlinked_as_it_is_walked() {
        let w = World::new();
        // 10 -> 11 -> 10 -> ...: the second visit of 10 finds its LINK cleared.
        w.control[0].store(1, SeqCst);
        w.control[2].store(10, SeqCst);
        w.array[10].store(PENDING | LINKED | 11, SeqCst);
        w.array[11].store(PENDING | LINKED | 10, SeqCst);
        let (got, c) = w.consume(100);
        assert_eq!(got, vec![10, 11]);
        assert_eq!(c.visited, 3);
        // A self-link, too.
        w.control[0].store(1, SeqCst);
        w.array[12].store(PENDING | LINKED | 12, SeqCst);
        w.heads[0].store(12, SeqCst);
        assert_eq!(w.consume(100).0, vec![12]);
    }

    /// A hypervisor (or a stray write) that keeps READY set and HEAD pointing at a word that is
    /// re-linked forever: the budget stops the walk.
    #[test]
    fn the_budget_bounds_a_queue_that_never_ends() {
        let w = World::new();
        w.control[2].store(20, SeqCst);
        w.control[0].store(1, SeqCst);
        w.array[20].store(PENDING | LINKED | 21, SeqCst);
        w.array[21].store(PENDING | LINKED | 20, SeqCst);
        let mut rounds = 0;
        let c = consume(&w.control, &w.array, &w.heads, 50, |p| {
            rounds += 1;
            // Re-link behind the consumer's back.
            w.array[p as usize].fetch_or(PENDING | LINKED | (41 - p), SeqCst);
            w.control[0].fetch_or(1, SeqCst);
        });
        assert!(c.exhausted && c.visited == 50, "{c:?}");
        assert!(rounds <= 50);
        assert!(w.heads.iter().all(|h| h.load(SeqCst) == 0));
    }

    #[test]
    fn random_words_never_panic_and_stay_within_budget() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut w = World::new();
        for _ in 0..2000 {
            let r = rnd();
            match r % 4 {
                0 => w.array[(r >> 8) as usize % PORTS].store((r >> 32) as u32, SeqCst),
                1 => w.control[(r >> 8) as usize % CONTROL_WORDS].store((r >> 32) as u32, SeqCst),
                _ => w.raise(
                    1 + (r >> 8) as u32 % (PORTS as u32 - 1),
                    (r >> 20) as usize % 16,
                ),
            }
            let (_, c) = w.consume(64);
            assert!(c.visited <= 64);
        }
    }
}
