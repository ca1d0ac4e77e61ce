//! The event upcall: what the kernel does when Xen enters its event callback.
//!
//! Xen sets a port's bit in `evtchn_pending`, the word's bit in the `evtchn_pending_sel` and
//! `evtchn_upcall_pending` of the vCPU the port notifies, and, if that vCPU's
//! `evtchn_upcall_mask` is 0, bounces it to the event callback with upcalls masked (`traps.rs`
//! routes that to [`upcall`]). The 2-level protocol (`xen.h`,
//! "Event channels"): clear `evtchn_upcall_pending`, exchange the selector with 0, and for each
//! selected word handle the bits that are pending and not masked, clearing each pending bit.
//!
//! The upcall only records which ports fired, in a set of the vCPU that took it (it must not
//! allocate or lock): [`take_on`] tells which vCPU an event reached. The conformance
//! cases [`take`] single ports; the multi-domain programs (`dom0/`, `domu/`) keep a
//! port-to-[`Channel`] table ([`register`]) and run an event loop: [`wait`] blocks until
//! something fired, [`dispatch`] hands each fired port with its handler to the caller.
//! The event-channel hypercalls those modes need are wrapped here too.
//!
//! **Two ABIs.** dom0 and the domU call [`init_abi`] once their upcall is installed: it offers
//! the hypervisor a FIFO control block (`EVTCHNOP_init_control`, a page of .bss) and, if that
//! works, four event array pages (ports 0..4095, `EVTCHNOP_expand_array`); from then on the
//! upcall consumes the FIFO queues (`guest_kernel::evtchn_fifo`) instead of the 2-level bitmaps.
//! Any error keeps the 2-level ABI, and `evtchn=2l` on the command line forces it. Each vCPU
//! has its own control block and queues: [`init_vcpu`] gives one to another vCPU before it
//! comes up (Linux's `evtchn_fifo_cpu_prepare`). Code that
//! polls a port rather than taking its upcall ([`is_pending`], [`clear_pending`], [`mask`])
//! goes through here so that it works on both.

use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use guest_kernel::evtchn_fifo::{self as fifo, CONTROL_WORDS, WORDS_PER_PAGE};
use hypercall_abi::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVcpu, EvtchnBindVirq,
    EvtchnClose, EvtchnExpandArray, EvtchnInitControl, EvtchnSend, EvtchnUnmask,
    EVTCHN_FIFO_MAX_QUEUES,
};
use hypercall_abi::sched::SchedNoArg;
use hypercall_abi::xen::DOMID_SELF;
use hypercall_abi::HypercallError;
use ring_drivers::blkif::Notify;
use spin::Mutex;

use super::hypercall as hc;
use super::shared_info::{self, Bitmap};
use super::smp::{self, MAX_VCPUS};
use super::time;

/// A set of ports: one bit per port of the 2-level range.
type PortSet = [AtomicU64; 64];

/// Ports each vCPU's upcall saw and that are not yet taken.
static RECEIVED: [PortSet; MAX_VCPUS] = [const { [const { AtomicU64::new(0) }; 64] }; MAX_VCPUS];

/// For each vCPU, which words of its [`RECEIVED`] set may have a bit (bit `w`: word `w`): the
/// event loop looks at those words only, not at all 64 of every vCPU's set on each pass. The
/// upcall sets the word's bit, then this one; the loop clears this one, then takes the words,
/// so a bit is never left behind unseen (at worst a summary bit outlives its word's bits).
static SUMMARY: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

/// The vCPU each port notifies, as far as this kernel moved it ([`bind_ipi`], [`bind_vcpu`]; 0
/// otherwise): a 2-level upcall takes only its own vCPU's ports, since the selectors are per
/// vCPU but the pending bitmap is shared (Linux's `cpu_evtchn_mask`). FIFO needs no such table:
/// each vCPU has its own queues.
static NOTIFY: [AtomicU8; 4096] = [const { AtomicU8::new(0) }; 4096];

/// Records that `port` notifies `vcpu`.
fn set_notify(port: u32, vcpu: u32) {
    if let Some(n) = NOTIFY.get(port as usize) {
        n.store(vcpu as u8, Ordering::SeqCst);
    }
}

/// Number of upcalls taken so far.
static UPCALLS: AtomicU32 = AtomicU32::new(0);

/// Whether the domain switched to the FIFO ABI ([`init_abi`]).
static FIFO: AtomicBool = AtomicBool::new(false);

/// Event array pages the hypervisor took: ports below `ARRAY_PAGES * 1024` have a word.
static ARRAY_PAGES: AtomicU32 = AtomicU32::new(0);

/// Pages offered for the event array: every port of the 2-level range.
const MAX_ARRAY_PAGES: usize = 4;

#[repr(C, align(4096))]
struct Page<const N: usize>([AtomicU32; N]);

/// Each vCPU's FIFO control block (at offset 0 of its page), shared with the hypervisor.
static CONTROL: [Page<1024>; MAX_VCPUS] =
    [const { Page([const { AtomicU32::new(0) }; 1024]) }; MAX_VCPUS];

/// The event array, shared with the hypervisor once expanded. Words start at 0 (not masked),
/// as the 2-level mask bits do.
static ARRAY: Page<{ MAX_ARRAY_PAGES * WORDS_PER_PAGE }> =
    Page([const { AtomicU32::new(0) }; MAX_ARRAY_PAGES * WORDS_PER_PAGE]);

/// Where each of a vCPU's queues' walk stopped (Linux's per-CPU `q->head`), only touched by
/// that vCPU's upcall.
static HEADS: [[AtomicU32; EVTCHN_FIFO_MAX_QUEUES]; MAX_VCPUS] =
    [const { [const { AtomicU32::new(0) }; EVTCHN_FIFO_MAX_QUEUES] }; MAX_VCPUS];

/// Words one upcall visits at most (a hypervisor that links in a loop cannot hold the CPU).
const FIFO_BUDGET: u32 = 2 * (MAX_ARRAY_PAGES * WORDS_PER_PAGE) as u32;

/// Which event ABI is in use, for the boot line and the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    /// FIFO, with this many ports covered by event array pages.
    Fifo(u32),
    /// 2-level: forced by `evtchn=2l`.
    TwoLevelForced,
    /// 2-level: `EVTCHNOP_init_control` failed with this.
    TwoLevel(i64),
}

/// Switches to the FIFO ABI if the hypervisor offers it (and `force_2l` is not set), as Linux
/// does at boot (`xen_evtchn_fifo_init`), and prints `events: FIFO ...` or `events: 2-level
/// ...`. Call once, with upcalls masked, after the event callback is registered.
pub fn init_abi(force_2l: bool) -> Abi {
    let abi = if force_2l {
        Abi::TwoLevelForced
    } else {
        try_fifo()
    };
    match abi {
        Abi::Fifo(ports) => println!("events: FIFO ({ports} ports)"),
        Abi::TwoLevelForced => println!("events: 2-level (forced by evtchn=2l)"),
        Abi::TwoLevel(rc) => println!("events: 2-level (init_control: {rc})"),
    }
    abi
}

/// `EVTCHNOP_init_control` for `vcpu` with its page of [`CONTROL`]; the hypercall's result.
fn init_control(vcpu: u32) -> i64 {
    let Some(page) = CONTROL.get(vcpu as usize) else {
        return -22;
    };
    let Some(block) = super::mm::va_to_mfn(core::ptr::addr_of!(*page) as u64) else {
        return -22;
    };
    let mut init = EvtchnInitControl {
        control_gfn: block,
        offset: 0,
        vcpu,
        ..Default::default()
    };
    hc::event_channel_op(&mut init)
}

/// Gives vCPU `vcpu` (not yet up) what it needs to take events: with FIFO, its own control block
/// (before any event is bound to it); nothing with 2-level events. The hypercall's result.
pub fn init_vcpu(vcpu: u32) -> i64 {
    if FIFO.load(Ordering::SeqCst) {
        init_control(vcpu)
    } else {
        0
    }
}

fn try_fifo() -> Abi {
    // No upcall until the kernel's view (FIFO on, the array's pages counted) is the
    // hypervisor's: a port pending from the 2-level days (the periodic timer's VIRQ, bound
    // before) is linked into the array as soon as its page is added (Xen 4.17 re-raises it
    // then), and an upcall on the way out of that `EVTCHNOP_expand_array`, the page not yet
    // counted, would find the queue's HEAD past the array, take READY and abandon the queue: no
    // event linked behind it would ever raise an upcall again (seen on Xen 4.17 as a domU that
    // never heard from xenstore).
    let was = shared_info::upcall_mask();
    shared_info::set_upcall_mask(1);
    let abi = switch_to_fifo();
    if let Some(mask) = was {
        shared_info::set_upcall_mask(mask);
    }
    abi
}

/// [`try_fifo`] with upcalls masked.
fn switch_to_fifo() -> Abi {
    let rc = init_control(0);
    if rc != 0 {
        return Abi::TwoLevel(rc);
    }
    FIFO.store(true, Ordering::SeqCst);
    for page in 0..MAX_ARRAY_PAGES {
        let va = core::ptr::addr_of!(ARRAY) as u64 + (page * 4096) as u64;
        let Some(mfn) = super::mm::va_to_mfn(va) else {
            break;
        };
        if hc::event_channel_op(&mut EvtchnExpandArray { array_gfn: mfn }) != 0 {
            break;
        }
        ARRAY_PAGES.fetch_add(1, Ordering::SeqCst);
    }
    Abi::Fifo(ARRAY_PAGES.load(Ordering::SeqCst) * WORDS_PER_PAGE as u32)
}

/// The event words the hypervisor has (ports `0..len`).
fn words() -> &'static [AtomicU32] {
    let n = ARRAY_PAGES.load(Ordering::SeqCst) as usize * WORDS_PER_PAGE;
    ARRAY.0.get(..n).unwrap_or(&[])
}

/// `port`'s event word, if the domain uses FIFO and a page covers it.
fn word(port: u32) -> Option<&'static AtomicU32> {
    if FIFO.load(Ordering::SeqCst) {
        words().get(port as usize)
    } else {
        None
    }
}

/// Notes that `port` fired on this vCPU.
fn record(port: u32) {
    let me = smp::this_vcpu() as usize;
    if let Some(w) = RECEIVED[me].get((port / 64) as usize) {
        w.fetch_or(1 << (port % 64), Ordering::SeqCst);
        SUMMARY[me].fetch_or(1 << (port / 64), Ordering::SeqCst);
    }
}

/// Handles one upcall on the vCPU it arrived on (called by the trap dispatcher, with upcalls
/// masked): that vCPU's selector or FIFO queues.
pub fn upcall() {
    UPCALLS.fetch_add(1, Ordering::SeqCst);
    let me = smp::this_vcpu() as usize;
    if FIFO.load(Ordering::SeqCst) {
        shared_info::ack_upcall();
        if let Some(control) = CONTROL[me].0.first_chunk::<CONTROL_WORDS>() {
            fifo::consume(control, words(), &HEADS[me], FIFO_BUDGET, record);
        }
        return;
    }
    let mut selector = shared_info::ack_upcall();
    while selector != 0 {
        let w = selector.trailing_zeros();
        selector &= selector - 1;
        let mut ready = shared_info::word(Bitmap::Pending, w) & !shared_info::word(Bitmap::Mask, w);
        while ready != 0 {
            let bit = ready.trailing_zeros();
            ready &= ready - 1;
            let port = w * 64 + bit;
            // Another vCPU's port stays pending for that vCPU's own upcall.
            if usize::from(NOTIFY[port as usize].load(Ordering::SeqCst)) != me {
                continue;
            }
            shared_info::clear_bit(Bitmap::Pending, port);
            record(port);
        }
    }
}

/// Whether `port` fired (on any vCPU) since the last call; forgets it.
pub fn take(port: u32) -> bool {
    (0..MAX_VCPUS as u32).fold(false, |fired, vcpu| take_on(vcpu, port) | fired)
}

/// Whether `port` fired on vCPU `vcpu` (its upcall saw it) since the last call; forgets it there.
pub fn take_on(vcpu: u32, port: u32) -> bool {
    let bit = 1u64 << (port % 64);
    RECEIVED
        .get(vcpu as usize)
        .and_then(|set| set.get((port / 64) as usize))
        .is_some_and(|w| w.fetch_and(!bit, Ordering::SeqCst) & bit != 0)
}

/// Number of upcalls taken since boot (cases compare two readings).
pub fn upcalls() -> u32 {
    UPCALLS.load(Ordering::SeqCst)
}

/// What a port is for, in the event loop of the program that bound it (dom0's services or the
/// domU): one list for every program, so a kind means the same everywhere. The domid is the
/// domain at the other end (dom0 for a domU's own rings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// `VIRQ_DOM_EXC`: a domain shut down or died (dom0's toolstack rescans).
    DomExc,
    /// `VIRQ_CONSOLE`: serial input arrived (dom0's shell).
    Input,
    /// `VIRQ_TIMER`: the event loop's timeout.
    Timer,
    /// A xenstore ring.
    Store(u16),
    /// A console ring.
    Console(u16),
    /// The demo's ping-pong channel.
    Ping(u16),
    /// A block ring (`blkif`).
    Blk(u16),
    /// A network vif's rings (`netif`, one port for tx and rx).
    Vif(u16),
    /// dom0's network card (its PIRQ).
    Nic,
}

/// The port-to-handler table. Only the event loop touches it (never the upcall).
static HANDLERS: Mutex<BTreeMap<u32, Channel>> = Mutex::new(BTreeMap::new());

/// Routes `port` to `channel` in [`dispatch`].
pub fn register(port: u32, channel: Channel) {
    HANDLERS.lock().insert(port, channel);
}

/// Forgets `port`'s handler (and any event it had pending for the loop).
pub fn unregister(port: u32) {
    HANDLERS.lock().remove(&port);
    take(port);
}

/// Takes every port that fired since the last call and hands it to `f` with its channel
/// (`None`: a port nobody registered). Returns how many ports fired.
pub fn dispatch(mut f: impl FnMut(u32, Option<Channel>)) -> usize {
    let mut n = 0;
    // The words any vCPU's upcall may have written since the last pass.
    let mut words = SUMMARY
        .iter()
        .fold(0, |words, s| words | s.swap(0, Ordering::SeqCst));
    while words != 0 {
        let w = words.trailing_zeros() as usize;
        words &= words - 1;
        let mut bits = RECEIVED
            .iter()
            .fold(0, |bits, set| bits | set[w].swap(0, Ordering::SeqCst));
        while bits != 0 {
            let bit = bits.trailing_zeros();
            bits &= bits - 1;
            let port = w as u32 * 64 + bit;
            let h = HANDLERS.lock().get(&port).copied();
            if h == Some(Channel::Timer) {
                // A single-shot timer fired: whatever `time::arm_timeout` recorded may be the
                // deadline that just passed, so the next wait arms afresh instead of trusting
                // a record whose timer the hypervisor no longer holds.
                time::forget_armed();
            }
            f(port, h);
            n += 1;
        }
    }
    n
}

/// Whether any port fired (on any vCPU) and was not yet dispatched or taken.
pub fn any_received() -> bool {
    RECEIVED.iter().zip(&SUMMARY).any(|(set, summary)| {
        let mut words = summary.load(Ordering::SeqCst);
        while words != 0 {
            let w = words.trailing_zeros() as usize;
            words &= words - 1;
            if set[w].load(Ordering::SeqCst) != 0 {
                return true;
            }
        }
        false
    })
}

/// Blocks until some port fired, or `timeout_ns` passed (the timer raises VIRQ_TIMER, which
/// the caller must have bound for the timeout to wake us). Upcalls are masked again on return.
pub fn wait(timeout_ns: Option<u64>) {
    if any_received() {
        return;
    }
    if let (Some(t), Some(now)) = (timeout_ns, time::now_ns()) {
        time::arm_timeout(now + t, now);
    }
    // SCHEDOP_block unmasks upcalls and checks for pending events before blocking; the upcall
    // runs on the way out of the hypercall.
    hc::sched_op_noarg(SchedNoArg::Block);
    shared_info::set_upcall_mask(1);
}

/// An event-channel hypercall's result: `Ok` or the error (event-channel ops return 0 on success).
fn check(rc: i64) -> Result<(), HypercallError> {
    HypercallError::check(rc).map(|_| ())
}

/// `EVTCHNOP_alloc_unbound`: a fresh port of ours that `remote` may bind to.
pub fn alloc_unbound(remote: u16) -> Result<u32, HypercallError> {
    let mut a = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: remote,
        port: 0,
    };
    check(hc::event_channel_op(&mut a))?;
    Ok(a.port)
}

/// `EVTCHNOP_bind_interdomain`: connects a new local port to `remote`'s unbound `remote_port`.
pub fn bind_interdomain(remote: u16, remote_port: u32) -> Result<u32, HypercallError> {
    let mut b = EvtchnBindInterdomain {
        remote_dom: remote,
        remote_port,
        local_port: 0,
        ..Default::default()
    };
    check(hc::event_channel_op(&mut b))?;
    unmask(b.local_port);
    Ok(b.local_port)
}

/// `EVTCHNOP_bind_virq` on vCPU 0.
pub fn bind_virq(virq: u32) -> Result<u32, HypercallError> {
    let mut b = EvtchnBindVirq {
        virq,
        vcpu: 0,
        port: 0,
    };
    check(hc::event_channel_op(&mut b))?;
    unmask(b.port);
    Ok(b.port)
}

/// `EVTCHNOP_bind_ipi`: a port that notifies vCPU `vcpu` of this domain when we send on it.
pub fn bind_ipi(vcpu: u32) -> Result<u32, HypercallError> {
    let mut b = EvtchnBindIpi { vcpu, port: 0 };
    check(hc::event_channel_op(&mut b))?;
    set_notify(b.port, vcpu);
    unmask(b.port);
    Ok(b.port)
}

/// `EVTCHNOP_bind_vcpu`: `port`'s events go to vCPU `vcpu` from now on.
pub fn bind_vcpu(port: u32, vcpu: u32) -> Result<(), HypercallError> {
    check(hc::event_channel_op(&mut EvtchnBindVcpu { port, vcpu }))?;
    set_notify(port, vcpu);
    Ok(())
}

/// `EVTCHNOP_send`.
pub fn send(port: u32) -> Result<(), HypercallError> {
    let mut s = EvtchnSend { port };
    check(hc::event_channel_op(&mut s))
}

/// `EVTCHNOP_close` (and forgets the port's handler).
pub fn close(port: u32) -> Result<(), HypercallError> {
    unregister(port);
    set_notify(port, 0);
    let mut c = EvtchnClose { port };
    check(hc::event_channel_op(&mut c))
}

/// Unmasks `port`: in place when FIFO allows it (not pending, not BUSY), else
/// `EVTCHNOP_unmask` (Xen re-raises a pending event).
pub fn unmask(port: u32) {
    if word(port).is_some_and(fifo::unmask_local) {
        return;
    }
    let mut u = EvtchnUnmask { port };
    hc::event_channel_op(&mut u);
}

/// Masks `port`: the upcall no longer reports it (a port waited for with `SCHEDOP_poll`).
pub fn mask(port: u32) {
    match word(port) {
        Some(w) => fifo::mask(w),
        None => shared_info::set_bit(Bitmap::Mask, port),
    }
}

/// Whether `port` is pending, whichever ABI is in use.
pub fn is_pending(port: u32) -> bool {
    match word(port) {
        Some(w) => fifo::is_pending(w),
        None if FIFO.load(Ordering::SeqCst) => false,
        None => shared_info::test_bit(Bitmap::Pending, port) == 1,
    }
}

/// Clears `port`'s pending state, whichever ABI is in use.
pub fn clear_pending(port: u32) {
    match word(port) {
        Some(w) => {
            fifo::clear_pending(w);
        }
        None if FIFO.load(Ordering::SeqCst) => {}
        None => shared_info::clear_bit(Bitmap::Pending, port),
    }
}

/// `EVTCHNOP_send` on a bound port: how a ring end (`ring_drivers`' [`Notify`]) tells its peer.
#[derive(Clone, Copy, Debug)]
pub struct EvtNotify(pub u32);

impl Notify for EvtNotify {
    fn notify(&mut self) {
        let _ = send(self.0);
    }
}
