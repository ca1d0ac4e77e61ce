//! FIFO event-channel cases: `EVTCHNOP_init_control`, `expand_array` and `set_priority` with
//! their argument checks, then the word protocol observed in the guest's own frames (PENDING,
//! MASKED, LINKED, the LINK field, HEAD and READY in the control block), and the way back to
//! 2-level with `EVTCHNOP_reset`.
//!
//! The group runs last: `init_control` switches the whole domain to FIFO, which only
//! `EVTCHNOP_reset` (closing every port) undoes. Scratch page 6 holds the control block, page 7
//! the first event array page; upcalls stay masked while the group runs. Port numbers are never
//! printed, only how they relate (`link_b_is_a=1`).

use core::ptr;

use hypercall_abi::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnClose, EvtchnExpandArray, EvtchnInitControl,
    EvtchnReset, EvtchnSend, EvtchnSetPriority, EvtchnUnmask, EVTCHN_FIFO_LINKED,
    EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_MASKED, EVTCHN_FIFO_PENDING,
};
use hypercall_abi::xen::DOMID_SELF;

use super::*;

const P: u32 = 1 << EVTCHN_FIFO_PENDING;
const M: u32 = 1 << EVTCHN_FIFO_MASKED;
const L: u32 = 1 << EVTCHN_FIFO_LINKED;
/// Where the control block goes in its page (8-byte aligned, as Linux does not need but Xen
/// requires).
const BLOCK_OFFSET: u32 = 0x40;

fn rd(va: u64) -> u32 {
    // SAFETY: `va` is in scratch page 6 or 7, mapped read-write and 4-byte aligned; volatile
    // because the hypervisor writes these words.
    unsafe { ptr::read_volatile(va as *const u32) }
}

fn wr(va: u64, v: u32) {
    // SAFETY: as for `rd`.
    unsafe { ptr::write_volatile(va as *mut u32, v) }
}

/// The event word of `port` (in the first event array page).
fn word_va(port: u32) -> u64 {
    scratch_va(7) + 4 * u64::from(port % 1024)
}

fn word(port: u32) -> u32 {
    rd(word_va(port))
}

fn head(prio: u32) -> u32 {
    rd(scratch_va(6) + u64::from(BLOCK_OFFSET) + 8 + 4 * u64::from(prio))
}

fn ready() -> u32 {
    rd(scratch_va(6) + u64::from(BLOCK_OFFSET))
}

/// The P/M/L bits of a word, as letters (`PL`, `PM`, `-`).
struct Bits(u32);

impl fmt::Display for Bits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 & (P | M | L) == 0 {
            return f.write_str("-");
        }
        for (bit, c) in [(P, 'P'), (M, 'M'), (L, 'L')] {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Zeroes both pages: every event unmasked and unlinked, every queue empty.
fn clear_pages() {
    for i in 0..1024 {
        wr(scratch_va(6) + 4 * i, 0);
        wr(scratch_va(7) + 4 * i, 0);
    }
}

fn init_control(gfn: u64, offset: u32, vcpu: u32) -> (i64, u8) {
    let mut a = EvtchnInitControl {
        control_gfn: gfn,
        offset,
        vcpu,
        ..Default::default()
    };
    let rc = hc::event_channel_op(&mut a);
    (rc, a.link_bits)
}

fn expand(gfn: u64) -> i64 {
    hc::event_channel_op(&mut EvtchnExpandArray { array_gfn: gfn })
}

fn set_priority(port: u32, priority: u32) -> i64 {
    hc::event_channel_op(&mut EvtchnSetPriority { port, priority })
}

fn send(port: u32) -> i64 {
    hc::event_channel_op(&mut EvtchnSend { port })
}

/// A loopback pair (a unbound for ourselves, b bound to it): sending on b raises a.
fn pair() -> (i64, u32, u32) {
    let mut alloc = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    let rc = hc::event_channel_op(&mut alloc);
    let mut bind = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: alloc.port,
        local_port: 0,
        ..Default::default()
    };
    let rc2 = hc::event_channel_op(&mut bind);
    (if rc != 0 { rc } else { rc2 }, alloc.port, bind.local_port)
}

fn close(port: u32) -> i64 {
    hc::event_channel_op(&mut EvtchnClose { port })
}

/// The FIFO group.
pub(super) fn cases(s: &mut Suite) {
    let Some([.., block, array]) = scratch_pages::<8>(s, "evtchn_fifo.setup") else {
        return;
    };
    let mask = shared_info::upcall_mask().unwrap_or(1);
    shared_info::set_upcall_mask(1);
    clear_pages();

    // Before the switch: the 2-level ABI.
    let (rc, a, b) = pair();
    let prio = set_priority(a, 3);
    let bad_port = set_priority(5000, 3);
    let _ = (close(a), close(b));
    s.case(
        "evtchn_fifo.set_priority_2level",
        format_args!("pair={rc} set_priority={prio} bad_port={bad_port}"),
    );
    s.case(
        "evtchn_fifo.expand_array_before_init",
        format_args!("{}", expand(array.mfn)),
    );

    // init_control's checks, then the switch.
    s.case(
        "evtchn_fifo.init_control_bad_vcpu",
        format_args!("{}", init_control(block.mfn, BLOCK_OFFSET, 1000).0),
    );
    s.case(
        "evtchn_fifo.init_control_bad_offset",
        format_args!(
            "unaligned={} crosses_page={} past_page={}",
            init_control(block.mfn, 4, 0).0,
            init_control(block.mfn, 4096 - 72 + 8, 0).0,
            init_control(block.mfn, 8192, 0).0
        ),
    );
    s.case(
        "evtchn_fifo.init_control_bad_gfn",
        format_args!(
            "beyond_ram={} own_l4={}",
            init_control(0xff_ffff_ffff, BLOCK_OFFSET, 0).0,
            init_control(mm::l4_mfn(), BLOCK_OFFSET, 0).0
        ),
    );
    let (rc, link_bits) = init_control(block.mfn, BLOCK_OFFSET, 0);
    s.case(
        "evtchn_fifo.init_control",
        format_args!("rc={rc} link_bits={link_bits}"),
    );
    if rc != 0 {
        shared_info::set_upcall_mask(mask);
        return;
    }
    s.case(
        "evtchn_fifo.init_control_twice",
        format_args!("{}", init_control(block.mfn, BLOCK_OFFSET, 0).0),
    );
    s.case(
        "evtchn_fifo.expand_array_bad_gfn",
        format_args!(
            "beyond_ram={} own_l4={}",
            expand(0xff_ffff_ffff),
            expand(mm::l4_mfn())
        ),
    );
    s.case(
        "evtchn_fifo.expand_array",
        format_args!("{}", expand(array.mfn)),
    );

    // The protocol. b starts pending (bind_interdomain's conservative notification) and is
    // linked at HEAD of queue 7; sending on b links a after it.
    let (rc, a, b) = pair();
    let first = (
        word(b),
        head(7) == b,
        ready(),
        shared_info::upcall_pending(),
    );
    let rc_send = send(b);
    s.case(
        "evtchn_fifo.bind_and_send",
        format_args!(
            "pair={rc} b={} head7_is_b={} ready={:#x} upcall={} send={rc_send} a={} link_b_is_a={} head7_still_b={}",
            Bits(first.0),
            flag(first.1),
            first.2,
            first.3,
            Bits(word(a)),
            flag(word(b) & EVTCHN_FIFO_LINK_MASK == a),
            flag(head(7) == b)
        ),
    );

    // The guest consumed everything (words and block cleared); a masked event is pending but
    // not linked until EVTCHNOP_unmask links it.
    clear_pages();
    wr(word_va(a), M);
    let rc_send = send(b);
    let masked = word(a);
    let ready_masked = ready();
    let rc_unmask = hc::event_channel_op(&mut EvtchnUnmask { port: a });
    s.case(
        "evtchn_fifo.masked_then_unmask",
        format_args!(
            "send={rc_send} a={} ready={ready_masked:#x} unmask={rc_unmask} a_after={} head7_is_a={} ready_after={:#x}",
            Bits(masked),
            Bits(word(a)),
            flag(head(7) == a),
            ready()
        ),
    );

    // Priorities.
    clear_pages();
    let good = set_priority(a, 3);
    let rc_send = send(b);
    s.case(
        "evtchn_fifo.set_priority",
        format_args!(
            "rc={good} send={rc_send} head3_is_a={} ready={:#x}",
            flag(head(3) == a),
            ready()
        ),
    );
    s.case(
        "evtchn_fifo.set_priority_bad",
        format_args!(
            "priority_16={} port_5000={} free_port={}",
            set_priority(a, 16),
            set_priority(5000, 3),
            set_priority(60, 3)
        ),
    );

    // Closing clears PENDING in the word.
    let _ = send(b);
    let rc_close = close(a);
    let rc_close_b = close(b);
    s.case(
        "evtchn_fifo.close_clears_pending",
        format_args!("close={rc_close} a={} close_b={rc_close_b}", Bits(word(a))),
    );

    // A closed port whose word is still LINKED is busy (`evtchn_is_busy` in Xen's
    // `evtchn_allocate_port`): a new pair gets other ports; once the guest unlinks the words,
    // the lowest ones come back.
    let linked = (word(a) & L != 0, word(b) & L != 0);
    let (rc_pair, c, d) = pair();
    let reused_while_linked = c == a || c == b || d == a || d == b;
    let _ = (close(c), close(d));
    clear_pages();
    let (rc_pair2, e, f) = pair();
    let reused_after = (e == a || e == b) && (f == a || f == b);
    let _ = (close(e), close(f));
    s.case(
        "evtchn_fifo.linked_port_not_reused",
        format_args!(
            "a_linked={} b_linked={} pair={rc_pair} reused_while_linked={} pair_after_unlink={rc_pair2} reused_after={}",
            flag(linked.0),
            flag(linked.1),
            flag(reused_while_linked),
            flag(reused_after)
        ),
    );

    // Event array pages up to Xen's limit (128; the same frame may serve several times).
    let mut added = 1;
    let mut last = 0;
    while added < 200 {
        last = expand(array.mfn);
        if last != 0 {
            break;
        }
        added += 1;
    }
    s.case(
        "evtchn_fifo.expand_array_to_limit",
        format_args!("pages={added} then={last}"),
    );

    // Back to 2-level.
    let rc = hc::event_channel_op(&mut EvtchnReset { dom: DOMID_SELF });
    let (rc_pair, a, b) = pair();
    let prio = set_priority(a, 3);
    let exp = expand(array.mfn);
    let pending_2l = shared_info::test_bit(shared_info::Bitmap::Pending, b);
    let _ = (close(a), close(b));
    s.case(
        "evtchn_fifo.reset_back_to_2level",
        format_args!(
            "reset={rc} pair={rc_pair} set_priority={prio} expand_array={exp} b_pending_2l={pending_2l}"
        ),
    );
    // The frames are plain pages again: they can be the control block anew, and go again.
    let (again, _) = init_control(block.mfn, BLOCK_OFFSET, 0);
    let undo = hc::event_channel_op(&mut EvtchnReset { dom: DOMID_SELF });
    s.case(
        "evtchn_fifo.init_control_after_reset",
        format_args!("rc={again} undo={undo}"),
    );
    clear_pages();
    let _ = shared_info::ack_upcall();
    shared_info::set_upcall_mask(mask);
}
