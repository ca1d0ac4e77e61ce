//! Event channels, 2-level ABI: per-domain port tables, the `EVTCHNOP_*` operations, and Xen's
//! set-pending order on the `shared_info` bitmaps.
//!
//! This is Xen 4.17's `xen/common/event_channel.c` and `event_2l.c`, as plain Rust over state
//! passed in:
//!
//! - each domain owns a [`PortTable`]: a fixed array of [`NR_PORTS`] channels (no allocation),
//!   of which the first [`PortTable::valid_ports`] are "valid" as Xen counts them — Xen allocates
//!   channels in buckets of [`PORTS_PER_BUCKET`] and answers -EINVAL for any port beyond the
//!   buckets allocated so far, even below the ABI limit, so this table tracks the same boundary;
//! - a domain's `shared_info` frame is reached only through [`SharedInfoBits`], atomic bit
//!   operations at byte offsets (the hypervisor implements it with `lock bts`/`btr` through the
//!   direct map; tests use a byte array);
//! - operations that touch two domains (interdomain channels) find them through [`Domains`].
//!
//! Every operation validates its arguments in Xen's order and fails with Xen's errno, so that the
//! conformance suite gets identical answers here and on Xen. An operation that made an event
//! pending for a vCPU whose upcall was not yet pending returns a [`Kick`]: the caller must wake
//! (or interrupt) that vCPU, as Xen's `vcpu_kick` does.
//!
//! Physical IRQs: a domain's PIRQs (mapped by `PHYSDEVOP_map_pirq`, see `crate::pirq`) live in
//! its port table; `bind_pirq` binds one, `close` unbinds it, [`send_pirq`] raises it.
//!
//! Not provided yet: the FIFO ABI (`init_control`, `expand_array`: -ENOSYS, so guests fall back to 2-level), Xen-
//! internal consumers, and device-model targets in the privilege check.

pub mod hypercall;

use core::mem::{offset_of, size_of};

use hypercall_abi::arch_x86_64::XEN_LEGACY_MAX_VCPUS;
use hypercall_abi::event_channel::{
    EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_ipi, EVTCHNOP_bind_pirq,
    EVTCHNOP_bind_vcpu, EVTCHNOP_bind_virq, EVTCHNOP_close, EVTCHNOP_expand_array,
    EVTCHNOP_init_control, EVTCHNOP_reset, EVTCHNOP_send, EVTCHNOP_set_priority, EVTCHNOP_status,
    EVTCHNOP_unmask, EVTCHNSTAT_closed, EVTCHNSTAT_interdomain, EVTCHNSTAT_ipi, EVTCHNSTAT_pirq,
    EVTCHNSTAT_unbound, EVTCHNSTAT_virq, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi,
    EvtchnBindPirq, EvtchnBindVcpu, EvtchnBindVirq, EvtchnClose, EvtchnExpandArray,
    EvtchnInitControl, EvtchnPort, EvtchnReset, EvtchnSend, EvtchnSetPriority, EvtchnStatus,
    EvtchnUnmask, EVTCHN_2L_NR_CHANNELS,
};
use hypercall_abi::xen::{
    DomId, SharedInfo, VcpuInfo, DOMID_FIRST_RESERVED, DOMID_SELF, NR_VIRQS, VIRQ_DEBUG,
    VIRQ_TIMER, VIRQ_XENOPROF, VIRQ_XENPMU,
};
use hypercall_abi::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::guest_access::{copy_from_guest, copy_to_guest, GuestMemory};
use crate::pirq::PirqTable;

/// Ports per domain in the 2-level ABI on 64-bit guests: 64 selector bits × 64-bit words.
pub const NR_PORTS: usize = EVTCHN_2L_NR_CHANNELS as usize;

/// Xen allocates channels in buckets of this many (`EVTCHNS_PER_BUCKET`: a page of 64-byte
/// `struct evtchn`); a port is valid once its bucket exists. Domain creation allocates the first.
pub const PORTS_PER_BUCKET: u32 = 64;

/// vCPUs whose `vcpu_info` lives in `shared_info` (Xen's legacy slots). Port tables serve at most
/// this many vCPUs.
pub const MAX_VCPUS: usize = XEN_LEGACY_MAX_VCPUS;

/// Bits per word of the pending and mask bitmaps (and per selector).
const BITS_PER_WORD: u32 = 64;

/// What a channel is connected to. Xen's `ECS_*` states with their `u` union.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    /// Available for allocation (`ECS_FREE`).
    Free,
    /// Never allocated: port 0 (`ECS_RESERVED`).
    Reserved,
    /// Waiting for `remote_dom` to bind to it (`ECS_UNBOUND`).
    Unbound {
        /// The only domain allowed to bind.
        remote_dom: DomId,
    },
    /// Connected to `remote_port` of `remote_dom` (`ECS_INTERDOMAIN`); possibly the same domain.
    Interdomain {
        /// The domain at the other end.
        remote_dom: DomId,
        /// The port at the other end.
        remote_port: EvtchnPort,
    },
    /// Raised by the hypervisor for virtual IRQ `virq` (`ECS_VIRQ`).
    Virq {
        /// `VIRQ_*`.
        virq: u32,
    },
    /// An inter-processor interrupt within the domain (`ECS_IPI`).
    Ipi,
    /// Raised by the hypervisor for physical IRQ `pirq` of the domain (`ECS_PIRQ`).
    Pirq {
        /// The PIRQ.
        pirq: u32,
    },
}

impl ChannelState {
    /// Xen's `evtchn_usable`: the channel is bound to something a guest can use (above
    /// `ECS_RESERVED`). Only such channels get pending bits set, cleared or unmasked.
    const fn usable(&self) -> bool {
        !matches!(self, ChannelState::Free | ChannelState::Reserved)
    }
}

/// One event channel (the guest-visible part of Xen's `struct evtchn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    /// What the channel is bound to.
    pub state: ChannelState,
    /// The vCPU notified when it becomes pending (`notify_vcpu_id`).
    pub notify_vcpu: u32,
}

impl Channel {
    const FREE: Channel = Channel {
        state: ChannelState::Free,
        notify_vcpu: 0,
    };
}

/// A domain's event channels, in fixed-size storage.
#[derive(Clone, Debug)]
pub struct PortTable {
    channels: [Channel; NR_PORTS],
    /// Ports below this are valid (`d->valid_evtchns`): whole buckets, grown on demand, never
    /// shrunk while the domain lives.
    valid: u32,
    /// The highest port the domain may use (`d->max_evtchn_port`, from its configuration).
    max_port: u32,
    /// vCPUs of the domain.
    vcpus: u32,
    /// Per vCPU, the port bound to each VIRQ, 0 for none (`v->virq_to_evtchn`).
    virq_to_port: [[EvtchnPort; NR_VIRQS as usize]; MAX_VCPUS],
    /// The domain's physical IRQs and the ports bound to them.
    pub pirqs: PirqTable,
}

impl PortTable {
    /// The table of a new domain with `vcpus` vCPUs (at most [`MAX_VCPUS`]) that may use ports up
    /// to `max_port` (Xen's `max_evtchn_port`; dom0 gets every port of the ABI): port 0 reserved,
    /// the first bucket valid (Xen's `evtchn_init`).
    pub const fn new(vcpus: u32, max_port: u32) -> PortTable {
        let mut channels = [Channel::FREE; NR_PORTS];
        channels[0].state = ChannelState::Reserved;
        PortTable {
            channels,
            valid: PORTS_PER_BUCKET,
            max_port,
            vcpus: if vcpus as usize > MAX_VCPUS {
                MAX_VCPUS as u32
            } else {
                vcpus
            },
            virq_to_port: [[0; NR_VIRQS as usize]; MAX_VCPUS],
            pirqs: PirqTable::new(),
        }
    }

    /// Makes this the table of a new domain, in place (a table is too big to build on a stack
    /// and move): as [`PortTable::new`].
    pub fn reset(&mut self, vcpus: u32, max_port: u32) {
        self.channels.fill(Channel::FREE);
        self.channels[0].state = ChannelState::Reserved;
        self.valid = PORTS_PER_BUCKET;
        self.max_port = max_port;
        self.vcpus = vcpus.min(MAX_VCPUS as u32);
        for v in self.virq_to_port.iter_mut() {
            v.fill(0);
        }
        self.pirqs.reset();
    }

    /// Number of valid ports: ports `0..valid_ports()` exist, later ones are -EINVAL.
    pub const fn valid_ports(&self) -> u32 {
        self.valid
    }

    /// The highest port this domain may allocate.
    pub const fn max_port(&self) -> u32 {
        self.max_port
    }

    /// Number of vCPUs.
    pub const fn vcpus(&self) -> u32 {
        self.vcpus
    }

    /// Xen's `port_is_valid`.
    pub const fn is_valid(&self, port: EvtchnPort) -> bool {
        port < self.valid
    }

    /// The channel behind a valid port (Xen's `_evtchn_from_port`).
    pub fn channel(&self, port: EvtchnPort) -> Option<&Channel> {
        if self.is_valid(port) {
            self.channels.get(port as usize)
        } else {
            None
        }
    }

    /// The port bound to `virq` on `vcpu`, if any.
    pub fn virq_port(&self, vcpu: u32, virq: u32) -> Option<EvtchnPort> {
        let port = *self.virq_to_port.get(vcpu as usize)?.get(virq as usize)?;
        (port != 0).then_some(port)
    }

    fn chan_mut(&mut self, port: EvtchnPort) -> &mut Channel {
        &mut self.channels[port as usize]
    }

    fn vcpu_exists(&self, vcpu: u32) -> bool {
        vcpu < self.vcpus
    }

    /// Xen's `evtchn_allocate_port`: make `port` usable if it is free, allocating its bucket
    /// (and every bucket before it) if needed.
    fn allocate_port(&mut self, port: EvtchnPort) -> Result<(), Errno> {
        if port > self.max_port || port as usize >= NR_PORTS {
            return Err(Errno::ENOSPC);
        }
        if self.is_valid(port) {
            if self.channels[port as usize].state != ChannelState::Free {
                return Err(Errno::EBUSY);
            }
        } else {
            // Bucket allocation cannot fail here: the storage is already there.
            self.valid = (port / PORTS_PER_BUCKET + 1) * PORTS_PER_BUCKET;
        }
        Ok(())
    }

    /// Xen's `get_free_port`: the lowest free port, allocating a bucket if all valid ones are
    /// taken. The new bucket stays valid even if the operation then fails, as in Xen.
    fn get_free_port(&mut self) -> Result<EvtchnPort, Errno> {
        let mut port = 0;
        while port <= self.max_port {
            match self.allocate_port(port) {
                Ok(()) => return Ok(port),
                Err(Errno::EBUSY) => port += 1,
                Err(e) => return Err(e),
            }
        }
        Err(Errno::ENOSPC)
    }
}

/// Atomic bit operations on one domain's `shared_info` frame.
///
/// `offset` is the byte offset of a naturally aligned 64-bit word inside `shared_info`, `bit` is
/// 0..64 within that little-endian word. The hypervisor implements these with locked bit
/// instructions on the frame (guests change the same words concurrently); the `[u8]`
/// implementation is for tests and for frames nobody else can see yet.
pub trait SharedInfoBits {
    /// Whether the bit is set.
    fn test_bit(&self, offset: usize, bit: u32) -> bool;
    /// Sets the bit; returns whether it was already set.
    fn test_and_set_bit(&mut self, offset: usize, bit: u32) -> bool;
    /// Clears the bit; returns whether it was set.
    fn test_and_clear_bit(&mut self, offset: usize, bit: u32) -> bool;
}

impl SharedInfoBits for [u8] {
    fn test_bit(&self, offset: usize, bit: u32) -> bool {
        self[offset + (bit / 8) as usize] & (1 << (bit % 8)) != 0
    }

    fn test_and_set_bit(&mut self, offset: usize, bit: u32) -> bool {
        let byte = &mut self[offset + (bit / 8) as usize];
        let old = *byte & (1 << (bit % 8)) != 0;
        *byte |= 1 << (bit % 8);
        old
    }

    fn test_and_clear_bit(&mut self, offset: usize, bit: u32) -> bool {
        let byte = &mut self[offset + (bit / 8) as usize];
        let old = *byte & (1 << (bit % 8)) != 0;
        *byte &= !(1 << (bit % 8));
        old
    }
}

impl<const N: usize> SharedInfoBits for [u8; N] {
    fn test_bit(&self, offset: usize, bit: u32) -> bool {
        self.as_slice().test_bit(offset, bit)
    }
    fn test_and_set_bit(&mut self, offset: usize, bit: u32) -> bool {
        self.as_mut_slice().test_and_set_bit(offset, bit)
    }
    fn test_and_clear_bit(&mut self, offset: usize, bit: u32) -> bool {
        self.as_mut_slice().test_and_clear_bit(offset, bit)
    }
}

/// Where the bits of the 2-level ABI live in `shared_info` (`xen.h`).
pub mod offsets {
    use super::*;

    /// The word of `evtchn_pending` holding `port`'s bit (bit `port % 64`).
    pub const fn pending_word(port: EvtchnPort) -> usize {
        offset_of!(SharedInfo, evtchn_pending) + (port / BITS_PER_WORD) as usize * 8
    }

    /// The word of `evtchn_mask` holding `port`'s bit (bit `port % 64`).
    pub const fn mask_word(port: EvtchnPort) -> usize {
        offset_of!(SharedInfo, evtchn_mask) + (port / BITS_PER_WORD) as usize * 8
    }

    /// `vcpu_info[vcpu].evtchn_pending_sel` (bit `port / 64`).
    pub const fn selector_word(vcpu: u32) -> usize {
        offset_of!(SharedInfo, vcpu_info)
            + vcpu as usize * size_of::<VcpuInfo>()
            + offset_of!(VcpuInfo, evtchn_pending_sel)
    }

    /// The word starting at `vcpu_info[vcpu].evtchn_upcall_pending` (bit 0 is that byte's bit
    /// 0, which is what Xen's `test_and_set_bit(0, &evtchn_upcall_pending)` touches).
    pub const fn upcall_word(vcpu: u32) -> usize {
        offset_of!(SharedInfo, vcpu_info)
            + vcpu as usize * size_of::<VcpuInfo>()
            + offset_of!(VcpuInfo, evtchn_upcall_pending)
    }
}

/// A vCPU whose `evtchn_upcall_pending` went from 0 to 1: it must be woken, or interrupted if it
/// is running, so that it takes the upcall (Xen's `vcpu_mark_events_pending` → `vcpu_kick`).
#[must_use = "a vCPU with a new pending upcall must be kicked"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kick {
    /// The domain.
    pub dom: DomId,
    /// Its vCPU.
    pub vcpu: u32,
}

/// One domain as the event-channel code needs it.
pub struct DomainEvents<'a, S: SharedInfoBits + ?Sized> {
    /// Its id (a real one, below `DOMID_FIRST_RESERVED`).
    pub id: DomId,
    /// Whether it is the control domain, which may act on other domains' channels (Xen's
    /// `XSM_TARGET` rule: the domain itself, or a privileged one).
    pub privileged: bool,
    /// Its channels.
    pub ports: &'a mut PortTable,
    /// Its `shared_info` frame.
    pub shared: &'a mut S,
}

/// Two domains borrowed at once, in the order asked for.
pub type DomainPair<'a, S> = (DomainEvents<'a, S>, DomainEvents<'a, S>);

/// The set of existing domains, as event channels look them up (Xen's `rcu_lock_domain_by_id`).
pub trait Domains {
    /// How each domain's `shared_info` is reached.
    type Shared: SharedInfoBits + ?Sized;

    /// The domain with this id, if it exists.
    fn get(&mut self, id: DomId) -> Option<DomainEvents<'_, Self::Shared>>;

    /// Two distinct domains at once (`a != b`), for operations on interdomain channels; `None`
    /// if either does not exist.
    fn get_two(&mut self, a: DomId, b: DomId) -> Option<DomainPair<'_, Self::Shared>>;
}

/// A domain's event-channel state, owned: the simplest [`Domains`] is a slice of these.
pub struct EvtchnDomain<S> {
    /// Domain id.
    pub id: DomId,
    /// Control domain?
    pub privileged: bool,
    /// Its channels.
    pub ports: PortTable,
    /// Its `shared_info` frame (or a handle to it).
    pub shared: S,
}

impl<S: SharedInfoBits> EvtchnDomain<S> {
    fn view(&mut self) -> DomainEvents<'_, S> {
        DomainEvents {
            id: self.id,
            privileged: self.privileged,
            ports: &mut self.ports,
            shared: &mut self.shared,
        }
    }
}

impl<S: SharedInfoBits> Domains for [EvtchnDomain<S>] {
    type Shared = S;

    fn get(&mut self, id: DomId) -> Option<DomainEvents<'_, S>> {
        self.iter_mut().find(|d| d.id == id).map(EvtchnDomain::view)
    }

    fn get_two(&mut self, a: DomId, b: DomId) -> Option<DomainPair<'_, S>> {
        if a == b {
            return None;
        }
        let ia = self.iter().position(|d| d.id == a)?;
        let ib = self.iter().position(|d| d.id == b)?;
        if ia < ib {
            let (lo, hi) = self.split_at_mut(ib);
            Some((lo[ia].view(), hi[0].view()))
        } else {
            let (lo, hi) = self.split_at_mut(ia);
            Some((hi[0].view(), lo[ib].view()))
        }
    }
}

/// Xen's `rcu_lock_domain_by_any_id`: `DOMID_SELF` is the caller; other reserved ids name no
/// domain that event channels can use.
fn resolve(caller: DomId, dom: DomId) -> Result<DomId, Errno> {
    match dom {
        DOMID_SELF => Ok(caller),
        d if d >= DOMID_FIRST_RESERVED => Err(Errno::ESRCH),
        d => Ok(d),
    }
}

/// Xen's `virq_is_global`: bound on vCPU 0 only and delivered to the vCPU the channel names.
/// Only the timer, debug, xenoprof and PMU VIRQs are per-vCPU; on x86 the architectural
/// `VIRQ_ARCH_*` are global too (`arch_virq_is_global`).
pub const fn virq_is_global(virq: u32) -> bool {
    !matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

/// The 2-level set-pending order (`evtchn_2l_set_pending`): set the port's pending bit; only if
/// it was clear and the port is not masked, set the selector bit on the notified vCPU; only if
/// that was clear, set `evtchn_upcall_pending`; only if that was clear, kick the vCPU.
fn set_pending<S: SharedInfoBits + ?Sized>(
    dom: DomId,
    shared: &mut S,
    port: EvtchnPort,
    vcpu: u32,
) -> Option<Kick> {
    if shared.test_and_set_bit(offsets::pending_word(port), port % BITS_PER_WORD) {
        return None;
    }
    if shared.test_bit(offsets::mask_word(port), port % BITS_PER_WORD)
        || shared.test_and_set_bit(offsets::selector_word(vcpu), port / BITS_PER_WORD)
    {
        return None;
    }
    mark_events_pending(dom, shared, vcpu)
}

/// Xen's `vcpu_mark_events_pending`.
fn mark_events_pending<S: SharedInfoBits + ?Sized>(
    dom: DomId,
    shared: &mut S,
    vcpu: u32,
) -> Option<Kick> {
    if shared.test_and_set_bit(offsets::upcall_word(vcpu), 0) {
        None
    } else {
        Some(Kick { dom, vcpu })
    }
}

/// `evtchn_port_set_pending`: only usable channels are made pending.
fn set_pending_on<S: SharedInfoBits + ?Sized>(
    d: &mut DomainEvents<'_, S>,
    port: EvtchnPort,
) -> Option<Kick> {
    let chan = *d.ports.channel(port)?;
    if chan.state.usable() {
        set_pending(d.id, d.shared, port, chan.notify_vcpu)
    } else {
        None
    }
}

/// Xen's `evtchn_free`: clear the pending bit (so a re-bound port starts quiet), mark the
/// channel free and notify vCPU 0 again.
fn free_channel<S: SharedInfoBits + ?Sized>(d: &mut DomainEvents<'_, S>, port: EvtchnPort) {
    if d.ports.chan_mut(port).state.usable() {
        d.shared
            .test_and_clear_bit(offsets::pending_word(port), port % BITS_PER_WORD);
    }
    *d.ports.chan_mut(port) = Channel::FREE;
}

/// Whether `caller` may act on domain `target`: Xen's default `XSM_TARGET` policy.
fn xsm_target<D: Domains + ?Sized>(doms: &mut D, caller: DomId, target: DomId) -> bool {
    caller == target || doms.get(caller).is_some_and(|d| d.privileged)
}

/// `EVTCHNOP_alloc_unbound`: a new port in domain `dom` (usually `DOMID_SELF`) that
/// `remote_dom` may later bind to. The remote domain need not exist yet.
pub fn alloc_unbound<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    dom: DomId,
    remote_dom: DomId,
) -> Result<EvtchnPort, Errno> {
    let target = resolve(caller, dom)?;
    let allowed = xsm_target(doms, caller, target);
    let d = doms.get(target).ok_or(Errno::ESRCH)?;
    let port = d.ports.get_free_port()?;
    if !allowed {
        return Err(Errno::EPERM);
    }
    // DOMID_SELF as the remote means the *caller*, which differs from `dom` for a privileged
    // caller allocating on another domain's behalf.
    let remote_dom = if remote_dom == DOMID_SELF {
        caller
    } else {
        remote_dom
    };
    *d.ports.chan_mut(port) = Channel {
        state: ChannelState::Unbound { remote_dom },
        notify_vcpu: 0,
    };
    Ok(port)
}

/// Checks that `table`'s `port` is unbound and waiting for `binder` (`bind_interdomain`).
fn check_waiting_for(table: &PortTable, port: EvtchnPort, binder: DomId) -> Result<(), Errno> {
    match table.channel(port).map(|c| c.state) {
        Some(ChannelState::Unbound { remote_dom }) if remote_dom == binder => Ok(()),
        _ => Err(Errno::EINVAL),
    }
}

/// A new port from `bind_interdomain`, and the vCPU to kick because it starts pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// The caller's new port.
    pub port: EvtchnPort,
    /// Set if the conservative initial notification raised an upcall.
    pub kick: Option<Kick>,
}

/// `EVTCHNOP_bind_interdomain`: connect a new local port to `remote_port` of `remote_dom`, which
/// must be unbound and waiting for the caller. Binding to one's own domain (loopback) is allowed.
///
/// As Xen does, the new local port is made pending straight away: notifications sent on the
/// remote port while it was unbound were dropped, so the local side is told to look.
pub fn bind_interdomain<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    remote_dom: DomId,
    remote_port: EvtchnPort,
) -> Result<Bound, Errno> {
    let rd = resolve(caller, remote_dom)?;
    let local = Channel {
        state: ChannelState::Interdomain {
            remote_dom: rd,
            remote_port,
        },
        notify_vcpu: 0,
    };
    // The remote end keeps the vCPU it notifies (`bind_vcpu` may have moved it while unbound).
    let (mut ld, lport) = if rd == caller {
        let ld = doms.get(caller).ok_or(Errno::ESRCH)?;
        let lport = ld.ports.get_free_port()?;
        check_waiting_for(ld.ports, remote_port, caller)?;
        *ld.ports.chan_mut(lport) = local;
        ld.ports.chan_mut(remote_port).state = ChannelState::Interdomain {
            remote_dom: caller,
            remote_port: lport,
        };
        (ld, lport)
    } else {
        let (ld, r) = doms.get_two(caller, rd).ok_or(Errno::ESRCH)?;
        let lport = ld.ports.get_free_port()?;
        check_waiting_for(r.ports, remote_port, caller)?;
        *ld.ports.chan_mut(lport) = local;
        r.ports.chan_mut(remote_port).state = ChannelState::Interdomain {
            remote_dom: caller,
            remote_port: lport,
        };
        (ld, lport)
    };
    let kick = set_pending_on(&mut ld, lport);
    Ok(Bound { port: lport, kick })
}

/// `EVTCHNOP_bind_virq`: a new port raised when the hypervisor signals `virq` on `vcpu`.
/// Global VIRQs may only be bound on vCPU 0; each VIRQ is bound at most once per vCPU.
pub fn bind_virq<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    virq: u32,
    vcpu: u32,
) -> Result<EvtchnPort, Errno> {
    if virq >= NR_VIRQS {
        return Err(Errno::EINVAL);
    }
    if virq_is_global(virq) && vcpu != 0 {
        return Err(Errno::EINVAL);
    }
    let d = doms.get(caller).ok_or(Errno::ESRCH)?;
    if !d.ports.vcpu_exists(vcpu) {
        return Err(Errno::ENOENT);
    }
    if d.ports.virq_to_port[vcpu as usize][virq as usize] != 0 {
        return Err(Errno::EEXIST);
    }
    let port = d.ports.get_free_port()?;
    *d.ports.chan_mut(port) = Channel {
        state: ChannelState::Virq { virq },
        notify_vcpu: vcpu,
    };
    d.ports.virq_to_port[vcpu as usize][virq as usize] = port;
    Ok(port)
}

/// `EVTCHNOP_bind_ipi`: a new port that notifies `vcpu` of the caller's own domain.
pub fn bind_ipi<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    vcpu: u32,
) -> Result<EvtchnPort, Errno> {
    let d = doms.get(caller).ok_or(Errno::ESRCH)?;
    if !d.ports.vcpu_exists(vcpu) {
        return Err(Errno::ENOENT);
    }
    let port = d.ports.get_free_port()?;
    *d.ports.chan_mut(port) = Channel {
        state: ChannelState::Ipi,
        notify_vcpu: vcpu,
    };
    Ok(port)
}

/// `EVTCHNOP_bind_pirq`: a new port raised when physical IRQ `pirq` of the caller fires,
/// notifying vCPU 0 (`evtchn_bind_pirq`). The PIRQ must be mapped (-EINVAL otherwise, also out
/// of range) and not bound yet (-EEXIST). `BIND_PIRQ__WILL_SHARE` is accepted: nothing else
/// shares a line here.
pub fn bind_pirq<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    pirq: u32,
) -> Result<EvtchnPort, Errno> {
    let d = doms.get(caller).ok_or(Errno::ESRCH)?;
    d.ports.pirqs.check_bind(pirq)?;
    let port = d.ports.get_free_port()?;
    *d.ports.chan_mut(port) = Channel {
        state: ChannelState::Pirq { pirq },
        notify_vcpu: 0,
    };
    d.ports.pirqs.bind(pirq, port);
    Ok(port)
}

/// Raises the PIRQ mapping `gsi` in domain `dom`, whose line was masked when the interrupt
/// arrived (Xen's `send_guest_pirq`): if a port is bound, it is made pending and the line awaits
/// the guest's `PHYSDEVOP_eoi`. Returns whether a port was raised, and the vCPU to kick.
pub fn send_pirq<D: Domains + ?Sized>(doms: &mut D, dom: DomId, gsi: u32) -> (bool, Option<Kick>) {
    let Some(mut d) = doms.get(dom) else {
        return (false, None);
    };
    let Some((_, port)) = d.ports.pirqs.raise(gsi) else {
        return (false, None);
    };
    (true, set_pending_on(&mut d, port))
}

/// `EVTCHNOP_close`: free a port. The other end of an interdomain channel becomes unbound again,
/// waiting for the closing domain to bind to it anew.
pub fn close<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    port: EvtchnPort,
) -> Result<(), Errno> {
    let state = {
        let d = doms.get(caller).ok_or(Errno::ESRCH)?;
        d.ports.channel(port).ok_or(Errno::EINVAL)?.state
    };
    match state {
        ChannelState::Free | ChannelState::Reserved => return Err(Errno::EINVAL),
        ChannelState::Unbound { .. } | ChannelState::Ipi => {}
        ChannelState::Pirq { pirq } => {
            // `pirq_guest_unbind`: the line is no longer delivered (the caller masks it).
            doms.get(caller)
                .ok_or(Errno::ESRCH)?
                .ports
                .pirqs
                .unbind(pirq);
        }
        ChannelState::Virq { virq } => {
            let d = doms.get(caller).ok_or(Errno::ESRCH)?;
            let chan = *d.ports.chan_mut(port);
            let vcpu = if virq_is_global(virq) {
                0
            } else {
                chan.notify_vcpu
            };
            d.ports.virq_to_port[vcpu as usize][virq as usize] = 0;
        }
        ChannelState::Interdomain {
            remote_dom,
            remote_port,
        } => {
            // The other end waits for the closing domain again, still notifying the same vCPU.
            let unbound = ChannelState::Unbound { remote_dom: caller };
            if remote_dom == caller {
                let d = doms.get(caller).ok_or(Errno::ESRCH)?;
                d.ports.chan_mut(remote_port).state = unbound;
            } else if let Some(r) = doms.get(remote_dom) {
                r.ports.chan_mut(remote_port).state = unbound;
            }
            // A missing remote domain would break the invariant that both ends exist (Xen
            // BUG()s); freeing the local end is the safe way out.
        }
    }
    let mut d = doms.get(caller).ok_or(Errno::ESRCH)?;
    free_channel(&mut d, port);
    Ok(())
}

/// `EVTCHNOP_send`: notify the other end of an interdomain channel, or the bound vCPU of an IPI
/// channel. Sending on an unbound port is silently dropped; other states are -EINVAL.
pub fn send<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    port: EvtchnPort,
) -> Result<Option<Kick>, Errno> {
    let state = {
        let d = doms.get(caller).ok_or(Errno::ESRCH)?;
        d.ports.channel(port).ok_or(Errno::EINVAL)?.state
    };
    match state {
        ChannelState::Interdomain {
            remote_dom,
            remote_port,
        } => Ok(doms
            .get(remote_dom)
            .and_then(|mut r| set_pending_on(&mut r, remote_port))),
        ChannelState::Ipi => {
            let mut d = doms.get(caller).ok_or(Errno::ESRCH)?;
            Ok(set_pending_on(&mut d, port))
        }
        ChannelState::Unbound { .. } => Ok(None),
        ChannelState::Free
        | ChannelState::Reserved
        | ChannelState::Virq { .. }
        | ChannelState::Pirq { .. } => Err(Errno::EINVAL),
    }
}

/// `EVTCHNOP_status`: the state of `port` in domain `dom` (`DOMID_SELF`, or any domain for the
/// control domain). `dom` and `port` are echoed back in the result, as Xen copies the whole
/// structure back.
pub fn status<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    dom: DomId,
    port: EvtchnPort,
) -> Result<EvtchnStatus, Errno> {
    let target = resolve(caller, dom)?;
    let allowed = xsm_target(doms, caller, target);
    let d = doms.get(target).ok_or(Errno::ESRCH)?;
    let chan = *d.ports.channel(port).ok_or(Errno::EINVAL)?;
    if !allowed {
        return Err(Errno::EPERM);
    }
    let mut out = EvtchnStatus {
        dom,
        port,
        vcpu: chan.notify_vcpu,
        ..Default::default()
    };
    out.status = match chan.state {
        ChannelState::Free | ChannelState::Reserved => EVTCHNSTAT_closed,
        ChannelState::Unbound { remote_dom } => {
            out.set_unbound(remote_dom);
            EVTCHNSTAT_unbound
        }
        ChannelState::Interdomain {
            remote_dom,
            remote_port,
        } => {
            out.set_interdomain(remote_dom, remote_port);
            EVTCHNSTAT_interdomain
        }
        ChannelState::Virq { virq } => {
            out.set_irq(virq);
            EVTCHNSTAT_virq
        }
        ChannelState::Ipi => EVTCHNSTAT_ipi,
        ChannelState::Pirq { pirq } => {
            out.set_irq(pirq);
            EVTCHNSTAT_pirq
        }
    };
    Ok(out)
}

/// `EVTCHNOP_bind_vcpu`: notify `vcpu` instead when `port` fires. Allowed for unbound and
/// interdomain channels and global VIRQs; -EINVAL for per-vCPU VIRQs, IPIs and closed ports.
pub fn bind_vcpu<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    port: EvtchnPort,
    vcpu: u32,
) -> Result<(), Errno> {
    let d = doms.get(caller).ok_or(Errno::ESRCH)?;
    if !d.ports.vcpu_exists(vcpu) {
        return Err(Errno::ENOENT);
    }
    let chan = d.ports.channel(port).ok_or(Errno::EINVAL)?.state;
    match chan {
        ChannelState::Virq { virq } if virq_is_global(virq) => {}
        ChannelState::Unbound { .. }
        | ChannelState::Interdomain { .. }
        | ChannelState::Pirq { .. } => {}
        _ => return Err(Errno::EINVAL),
    }
    d.ports.chan_mut(port).notify_vcpu = vcpu;
    Ok(())
}

/// `EVTCHNOP_unmask`: clear `port`'s mask bit and, if that unmasked a pending event, deliver it
/// to the notified vCPU (`evtchn_2l_unmask`). Closed ports are accepted and left alone.
pub fn unmask<D: Domains + ?Sized>(
    doms: &mut D,
    caller: DomId,
    port: EvtchnPort,
) -> Result<Option<Kick>, Errno> {
    let d = doms.get(caller).ok_or(Errno::ESRCH)?;
    let chan = *d.ports.channel(port).ok_or(Errno::EINVAL)?;
    if !chan.state.usable() {
        return Ok(None);
    }
    let bit = port % BITS_PER_WORD;
    if d.shared.test_and_clear_bit(offsets::mask_word(port), bit)
        && d.shared.test_bit(offsets::pending_word(port), bit)
        && !d.shared.test_and_set_bit(
            offsets::selector_word(chan.notify_vcpu),
            port / BITS_PER_WORD,
        )
    {
        return Ok(mark_events_pending(d.id, d.shared, chan.notify_vcpu));
    }
    Ok(None)
}

/// `EVTCHNOP_reset` on the caller itself: close every port (Xen's `evtchn_reset`). Resetting
/// another domain needs it paused by its controller, which does not exist here yet: -EINVAL, as
/// Xen answers for a running domain.
pub fn reset<D: Domains + ?Sized>(doms: &mut D, caller: DomId, dom: DomId) -> Result<(), Errno> {
    let target = resolve(caller, dom)?;
    let allowed = xsm_target(doms, caller, target);
    let valid = doms.get(target).ok_or(Errno::ESRCH)?.ports.valid_ports();
    if !allowed {
        return Err(Errno::EPERM);
    }
    if target != caller {
        return Err(Errno::EINVAL);
    }
    for port in 1..valid {
        // Free and reserved ports answer -EINVAL; that is expected.
        let _ = close(doms, caller, port);
    }
    Ok(())
}

/// Raises `virq` for `vcpu` of domain `dom`, from the hypervisor (Xen's `send_guest_vcpu_virq`
/// and, for global VIRQs, `send_guest_global_virq`, which look up vCPU 0's binding and notify
/// the vCPU the channel names). Nothing happens if the VIRQ is not bound.
pub fn send_virq<D: Domains + ?Sized>(
    doms: &mut D,
    dom: DomId,
    vcpu: u32,
    virq: u32,
) -> Option<Kick> {
    let d = doms.get(dom)?;
    let table_vcpu = if virq_is_global(virq) { 0 } else { vcpu };
    let port = d.ports.virq_port(table_vcpu, virq)?;
    let notify = if virq_is_global(virq) {
        d.ports.channel(port)?.notify_vcpu
    } else {
        vcpu
    };
    set_pending(d.id, d.shared, port, notify)
}

/// What an `event_channel_op` hypercall did: its result for the guest, and a vCPU to kick. A kick
/// can come with an error (the operation succeeded but its result could not be copied back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpOutcome {
    /// 0 or the error returned in RAX.
    pub result: Result<(), Errno>,
    /// The vCPU to kick, if the operation raised an upcall.
    pub kick: Option<Kick>,
}

impl OpOutcome {
    fn done(result: Result<(), Errno>) -> OpOutcome {
        OpOutcome { result, kick: None }
    }

    fn kicked(result: Result<Option<Kick>, Errno>) -> OpOutcome {
        match result {
            Ok(kick) => OpOutcome {
                result: Ok(()),
                kick,
            },
            Err(e) => OpOutcome::done(Err(e)),
        }
    }

    /// The value for the guest's RAX: 0 or `-errno`.
    pub fn rax(&self) -> i64 {
        match self.result {
            Ok(()) => 0,
            Err(e) => -(e as i64),
        }
    }
}

/// Reads the argument structure (`copy_from_guest`), or -EFAULT.
fn arg<T: FromBytes + IntoBytes>(guest: &impl GuestMemory, va: u64) -> Result<T, Errno> {
    copy_from_guest(guest, va).map_err(|_| Errno::EFAULT)
}

/// Writes the argument structure back (`__copy_to_guest`), or -EFAULT. Xen does not undo the
/// operation when this fails ("cleaning up here would be a mess"), and neither does this.
fn put<T: IntoBytes + Immutable>(
    guest: &mut impl GuestMemory,
    va: u64,
    v: &T,
) -> Result<(), Errno> {
    copy_to_guest(guest, va, v).map_err(|_| Errno::EFAULT)
}

/// `HYPERVISOR_event_channel_op(cmd, arg)` for domain `caller`, whose memory `guest` is and whose
/// argument structure is at guest virtual address `arg_va` (Xen's `do_event_channel_op`).
/// Unknown commands are -ENOSYS.
#[allow(non_upper_case_globals)] // the EVTCHNOP_* patterns keep Xen's spelling
pub fn do_event_channel_op<D: Domains + ?Sized, G: GuestMemory>(
    doms: &mut D,
    caller: DomId,
    guest: &mut G,
    cmd: u32,
    arg_va: u64,
) -> OpOutcome {
    // Operations that only produce a result; those that can also kick return early below.
    let result = match cmd {
        EVTCHNOP_alloc_unbound => arg::<EvtchnAllocUnbound>(guest, arg_va).and_then(|mut a| {
            a.port = alloc_unbound(doms, caller, a.dom, a.remote_dom)?;
            put(guest, arg_va, &a)
        }),
        EVTCHNOP_bind_interdomain => {
            let bound = arg::<EvtchnBindInterdomain>(guest, arg_va).and_then(|b| {
                let bound = bind_interdomain(doms, caller, b.remote_dom, b.remote_port)?;
                Ok((b, bound))
            });
            return match bound {
                Ok((mut b, bound)) => {
                    b.local_port = bound.port;
                    OpOutcome {
                        result: put(guest, arg_va, &b),
                        kick: bound.kick,
                    }
                }
                Err(e) => OpOutcome::done(Err(e)),
            };
        }
        EVTCHNOP_bind_virq => arg::<EvtchnBindVirq>(guest, arg_va).and_then(|mut b| {
            b.port = bind_virq(doms, caller, b.virq, b.vcpu)?;
            put(guest, arg_va, &b)
        }),
        EVTCHNOP_bind_ipi => arg::<EvtchnBindIpi>(guest, arg_va).and_then(|mut b| {
            b.port = bind_ipi(doms, caller, b.vcpu)?;
            put(guest, arg_va, &b)
        }),
        EVTCHNOP_bind_pirq => arg::<EvtchnBindPirq>(guest, arg_va).and_then(|mut b| {
            b.port = bind_pirq(doms, caller, b.pirq)?;
            put(guest, arg_va, &b)
        }),
        EVTCHNOP_close => {
            arg::<EvtchnClose>(guest, arg_va).and_then(|c| close(doms, caller, c.port))
        }
        EVTCHNOP_send => {
            let sent = arg::<EvtchnSend>(guest, arg_va).and_then(|s| send(doms, caller, s.port));
            return OpOutcome::kicked(sent);
        }
        EVTCHNOP_status => arg::<EvtchnStatus>(guest, arg_va).and_then(|s| {
            let out = status(doms, caller, s.dom, s.port)?;
            put(guest, arg_va, &out)
        }),
        EVTCHNOP_bind_vcpu => arg::<EvtchnBindVcpu>(guest, arg_va)
            .and_then(|b| bind_vcpu(doms, caller, b.port, b.vcpu)),
        EVTCHNOP_unmask => {
            let unmasked =
                arg::<EvtchnUnmask>(guest, arg_va).and_then(|u| unmask(doms, caller, u.port));
            return OpOutcome::kicked(unmasked);
        }
        EVTCHNOP_reset => {
            arg::<EvtchnReset>(guest, arg_va).and_then(|r| reset(doms, caller, r.dom))
        }
        // The 2-level ABI has no priorities: Xen checks the port, then answers -ENOSYS.
        EVTCHNOP_set_priority => arg::<EvtchnSetPriority>(guest, arg_va).and_then(|p| {
            let d = doms.get(caller).ok_or(Errno::ESRCH)?;
            d.ports.channel(p.port).ok_or(Errno::EINVAL)?;
            Err(Errno::ENOSYS)
        }),
        // The FIFO ABI is not provided; guests fall back to 2-level on any error.
        EVTCHNOP_init_control => arg::<EvtchnInitControl>(guest, arg_va).and(Err(Errno::ENOSYS)),
        EVTCHNOP_expand_array => arg::<EvtchnExpandArray>(guest, arg_va).and(Err(Errno::ENOSYS)),
        _ => Err(Errno::ENOSYS),
    };
    OpOutcome::done(result)
}

#[cfg(test)]
mod tests;
