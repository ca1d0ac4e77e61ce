//! Event channels, 2-level ABI: per-domain port tables, the `EVTCHNOP_*` operations, and Xen's
//! set-pending order on the `shared_info` bitmaps.
//!
//! This is Xen 4.17's `xen/common/event_channel.c` and `event_2l.c`, as plain Rust over state
//! passed in:
//!
//! - each domain owns a [`PortTable`], whose first [`PortTable::valid_ports`] ports are "valid"
//!   as Xen counts them: Xen allocates channels in buckets of [`PORTS_PER_BUCKET`] as the domain
//!   needs them (`evtchn_allocate_port`) and answers -EINVAL for any port beyond the buckets
//!   allocated so far, even below the ABI limit. The channels themselves live in hypervisor pages
//!   ([`XenPage`], [`PORTS_PER_PAGE`] channels each) taken from the free pool through
//!   [`PortPages`] when the valid ports grow into them, and given back when the domain dies
//!   ([`PortTable::take_pages`]): a domain that uses ten ports holds one page. No page left is
//!   Xen's -ENOMEM, the table unchanged;
//! - a domain's `shared_info` frame is reached only through its view
//!   ([`SharedInfoPage`]), whose bitmap operations are Xen's locked ones (the hypervisor's
//!   direct map does them with `lock` instructions; tests use a byte array);
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
//! The FIFO ABI (`fifo.rs`) replaces the 2-level bitmaps for a domain once it calls
//! `EVTCHNOP_init_control`: [`set_pending`], unmask and clearing on free then go through its
//! event words instead (Xen's `evtchn_port_ops`), until `EVTCHNOP_reset` switches back.
//!
//! Not provided yet: Xen-internal consumers, device-model targets in the privilege check, and
//! FIFO ports beyond [`NR_PORTS`] (the table's fixed size: -ENOSPC there, where Xen would go on
//! to 2^17).

mod bind;
pub mod fifo;
pub mod hypercall;
mod op;
mod send;

pub use bind::*;
pub use op::*;
pub use send::*;

use fifo::{Fifo, FifoMemory};

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
    DomId, DOMID_FIRST_RESERVED, DOMID_SELF, NR_VIRQS, VIRQ_DEBUG, VIRQ_TIMER, VIRQ_XENOPROF,
    VIRQ_XENPMU,
};
use hypercall_abi::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::guest_access::{copy_from_guest, copy_to_guest, GuestMemory};
use crate::mm::xen_page::{XenPage, PAGE_ALIGN, PAGE_BYTES};
use crate::mm::Mfn;
use crate::pirq::PirqTable;
use crate::shared_info::{SharedInfoPage, SharedMemory};

/// Ports per domain in the 2-level ABI on 64-bit guests: 64 selector bits × 64-bit words.
pub const NR_PORTS: usize = EVTCHN_2L_NR_CHANNELS as usize;

/// Xen allocates channels in buckets of this many (`EVTCHNS_PER_BUCKET`: a page of 64-byte
/// `struct evtchn`); a port is valid once its bucket exists. Domain creation allocates the first.
pub const PORTS_PER_BUCKET: u32 = 64;

/// Channels per page of the table's storage: a frame of 16-byte [`Channel`]s, four of Xen's
/// buckets.
pub const PORTS_PER_PAGE: u32 = (PAGE_BYTES / core::mem::size_of::<Channel>()) as u32;

/// Pages a table holds at most (every port of the 2-level ABI).
pub const MAX_PORT_PAGES: usize = NR_PORTS / PORTS_PER_PAGE as usize;

const _: () = assert!(
    core::mem::size_of::<Channel>() == 16,
    "a page holds 256 channels"
);
const _: () = assert!(core::mem::align_of::<Channel>() <= PAGE_ALIGN);
const _: () = assert!(PORTS_PER_PAGE.is_multiple_of(PORTS_PER_BUCKET));

/// The frames a table held, as [`PortTable::take_pages`] gives them back.
pub type PortFrames = heapless::Vec<Mfn, MAX_PORT_PAGES>;

/// Where a domain's event-channel pages come from: the free pool (Xen's `alloc_evtchn_bucket`,
/// which is `xzalloc`). Shared by every domain an operation reaches, hence `&self`.
pub trait PortPages {
    /// A page for more channels, or `None` when no memory is left (the operation is then
    /// -ENOMEM, as on Xen).
    fn take_page(&self) -> Option<XenPage>;
}

/// No page to give: for the hypervisor's own operations that never allocate a port (sends,
/// closes).
pub struct NoPages;

impl PortPages for NoPages {
    fn take_page(&self) -> Option<XenPage> {
        None
    }
}

#[cfg(test)]
impl PortPages for crate::mm::xen_page::heap::HeapPages {
    fn take_page(&self) -> Option<XenPage> {
        self.take()
    }
}

/// One page of channels, every one of them a valid [`Channel`] (written when the page was
/// taken).
#[derive(Debug)]
struct ChannelPage(XenPage);

impl ChannelPage {
    /// Makes `page` a page of free channels (port 0 reserved if it is the table's first page).
    fn new(page: XenPage, first: bool) -> ChannelPage {
        let chans = page.as_ptr().cast::<Channel>();
        for i in 0..PORTS_PER_PAGE as usize {
            let mut c = Channel::FREE;
            if first && i == 0 {
                c.state = ChannelState::Reserved;
            }
            // SAFETY: the page is 4096 bytes aligned for a `Channel`, this page's alone
            // (`XenPage::new`), and `PORTS_PER_PAGE` channels fill at most that (asserted above).
            unsafe { chans.add(i).write(c) };
        }
        ChannelPage(page)
    }

    #[inline]
    fn channels(&self) -> &[Channel; PORTS_PER_PAGE as usize] {
        // SAFETY: every channel of the page was written in `new`; the page is reached only
        // through this value, borrowed shared here.
        unsafe { &*self.0.as_ptr().cast::<[Channel; PORTS_PER_PAGE as usize]>() }
    }

    #[inline]
    fn channels_mut(&mut self) -> &mut [Channel; PORTS_PER_PAGE as usize] {
        // SAFETY: as `channels`, borrowed mutably.
        unsafe { &mut *self.0.as_ptr().cast::<[Channel; PORTS_PER_PAGE as usize]>() }
    }
}

/// The channel behind `port` in a table's `pages`, if its page is there (a function of the
/// field alone, so that a caller can hold the table's other fields at the same time).
#[inline]
fn channel_in(
    pages: &mut [Option<ChannelPage>; MAX_PORT_PAGES],
    port: EvtchnPort,
) -> Option<&mut Channel> {
    let page = pages.get_mut((port / PORTS_PER_PAGE) as usize)?.as_mut()?;
    Some(&mut page.channels_mut()[(port % PORTS_PER_PAGE) as usize])
}

/// vCPUs a port table serves: a domain's most ([`crate::domain::MAX_VCPUS`]), all of them with
/// their `vcpu_info` in `shared_info` (Xen's legacy slots). Its per-vCPU VIRQ table and FIFO
/// queues are sized by it in every slot, so it is the domain's limit, not the ABI's 32.
pub const MAX_VCPUS: usize = crate::domain::MAX_VCPUS;

const _: () = assert!(MAX_VCPUS <= XEN_LEGACY_MAX_VCPUS);

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
    /// FIFO priority, 0 (highest) ..= 15 (`priority`); the default on each allocation.
    pub priority: u8,
    /// FIFO: the vCPU of the queue the event was last linked on (`fifo_lastq`), kept when the
    /// port is freed, as Xen keeps it.
    pub last_vcpu: u8,
    /// FIFO: the priority of that queue.
    pub last_priority: u8,
    /// FIFO: pending while no event array page covered the port (`evtchn->pending`); raised when
    /// the page is added.
    pub fifo_pending: bool,
}

impl Channel {
    const FREE: Channel = Channel {
        state: ChannelState::Free,
        notify_vcpu: 0,
        priority: hypercall_abi::event_channel::EVTCHN_FIFO_PRIORITY_DEFAULT as u8,
        last_vcpu: 0,
        last_priority: 0,
        fifo_pending: false,
    };
}

/// A domain's event channels: the pages of channels it took, and the rest in place.
#[derive(Debug)]
pub struct PortTable {
    /// Page `i` holds ports `i * PORTS_PER_PAGE ..`; every page the valid ports reach is there.
    pages: [Option<ChannelPage>; MAX_PORT_PAGES],
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
    /// The FIFO ABI's state once the domain switched to it; `None`: 2-level.
    fifo: Option<Fifo>,
}

impl PortTable {
    /// The table of a new domain with `vcpus` vCPUs (at most [`MAX_VCPUS`]) that may use ports up
    /// to `max_port` (Xen's `max_evtchn_port`; dom0 gets every port of the ABI), holding no page
    /// yet: [`PortTable::init`] takes the first (Xen's `evtchn_init`). A table never initialised
    /// takes it at its first allocation.
    pub const fn new(vcpus: u32, max_port: u32) -> PortTable {
        PortTable {
            pages: [const { None }; MAX_PORT_PAGES],
            valid: 0,
            max_port,
            vcpus: if vcpus as usize > MAX_VCPUS {
                MAX_VCPUS as u32
            } else {
                vcpus
            },
            virq_to_port: [[0; NR_VIRQS as usize]; MAX_VCPUS],
            pirqs: PirqTable::new(),
            fifo: None,
        }
    }

    /// Makes this the table of a new domain, in place: as [`PortTable::new`]. Its pages must
    /// have been taken back first ([`PortTable::take_pages`]): a page left here would be lost.
    pub fn reset(&mut self, vcpus: u32, max_port: u32) {
        debug_assert!(
            self.pages.iter().all(Option::is_none),
            "a port table reset with its pages"
        );
        self.pages = [const { None }; MAX_PORT_PAGES];
        self.valid = 0;
        self.max_port = max_port;
        self.vcpus = vcpus.min(MAX_VCPUS as u32);
        for v in self.virq_to_port.iter_mut() {
            v.fill(0);
        }
        self.pirqs.reset();
        self.fifo = None;
    }

    /// Xen's `evtchn_init`: the first bucket, port 0 reserved in it. -ENOMEM (the table
    /// unchanged) when `pages` has none: the domain cannot be built.
    pub fn init(&mut self, pages: &dyn PortPages) -> Result<(), Errno> {
        self.grow_to(0, pages)
    }

    /// Takes every page out of the table (a domain being torn down: its channels were closed),
    /// leaving it with no valid port; their frames are for the caller to give back.
    pub fn take_pages(&mut self) -> PortFrames {
        self.valid = 0;
        let mut out = PortFrames::new();
        for p in self.pages.iter_mut() {
            if let Some(ChannelPage(page)) = p.take() {
                // Cannot fail: at most `MAX_PORT_PAGES` pages.
                let _ = out.push(page.into_mfn());
            }
        }
        out
    }

    /// The frames of the pages the table holds.
    pub fn page_frames(&self) -> impl Iterator<Item = Mfn> + '_ {
        self.pages.iter().flatten().map(|p| p.0.mfn())
    }

    /// Makes the buckets up to `port`'s valid (`port` below the ABI's limit), taking the pages
    /// they need from `pages` (Xen's bucket allocation in `evtchn_allocate_port`). -ENOMEM when
    /// a page is missing: the valid ports stay as they were (pages taken by then stay, for the
    /// next growth).
    fn grow_to(&mut self, port: EvtchnPort, pages: &dyn PortPages) -> Result<(), Errno> {
        let valid = (port / PORTS_PER_BUCKET + 1) * PORTS_PER_BUCKET;
        if valid <= self.valid {
            return Ok(());
        }
        for i in 0..=(port / PORTS_PER_PAGE) as usize {
            if self.pages[i].is_none() {
                let page = pages.take_page().ok_or(Errno::ENOMEM)?;
                self.pages[i] = Some(ChannelPage::new(page, i == 0));
            }
        }
        self.valid = valid;
        Ok(())
    }

    /// The FIFO state, if the domain uses the FIFO ABI.
    pub fn fifo(&self) -> Option<&Fifo> {
        self.fifo.as_ref()
    }

    /// Back to the 2-level ABI (`EVTCHNOP_reset`, `evtchn_fifo_destroy`): the FIFO state goes.
    fn drop_fifo(&mut self) {
        self.fifo = None;
    }

    /// Binds free `port` to `state`, notifying `vcpu`, with the default priority (Xen's
    /// `evtchn_port_init`); what FIFO remembers across a free is kept.
    fn bind(&mut self, port: EvtchnPort, state: ChannelState, vcpu: u32) {
        let c = self.chan_mut(port);
        c.state = state;
        c.notify_vcpu = vcpu;
        c.priority = Channel::FREE.priority;
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
    #[inline]
    pub fn channel(&self, port: EvtchnPort) -> Option<&Channel> {
        if self.is_valid(port) {
            let page = self.pages.get((port / PORTS_PER_PAGE) as usize)?.as_ref()?;
            Some(&page.channels()[(port % PORTS_PER_PAGE) as usize])
        } else {
            None
        }
    }

    /// The channel stored for `port`, valid or not, if its page is there (tests look past the
    /// valid ports: what lies there must be free).
    #[cfg(test)]
    pub(crate) fn stored(&self, port: EvtchnPort) -> Option<Channel> {
        let page = self.pages.get((port / PORTS_PER_PAGE) as usize)?.as_ref()?;
        Some(page.channels()[(port % PORTS_PER_PAGE) as usize])
    }

    /// How many pages the table holds.
    pub fn nr_pages(&self) -> usize {
        self.pages.iter().flatten().count()
    }

    /// The port bound to `virq` on `vcpu`, if any.
    pub fn virq_port(&self, vcpu: u32, virq: u32) -> Option<EvtchnPort> {
        let port = *self.virq_to_port.get(vcpu as usize)?.get(virq as usize)?;
        (port != 0).then_some(port)
    }

    /// The channel behind `port`, which must be valid.
    fn chan_mut(&mut self, port: EvtchnPort) -> &mut Channel {
        let page = self.pages[(port / PORTS_PER_PAGE) as usize]
            .as_mut()
            .expect("a valid port's page is there");
        &mut page.channels_mut()[(port % PORTS_PER_PAGE) as usize]
    }

    fn vcpu_exists(&self, vcpu: u32) -> bool {
        vcpu < self.vcpus
    }

    /// Xen's `evtchn_allocate_port`: make `port` usable if it is free, allocating its bucket
    /// (and every bucket before it) if needed, from `pages` (-ENOMEM without one). Under FIFO a
    /// free port whose event word is still LINKED on a queue is busy (`evtchn_is_busy`):
    /// handing it out again would deliver its first event on the old queue.
    fn allocate_port<S: FifoMemory + ?Sized>(
        &mut self,
        mem: &S,
        pages: &dyn PortPages,
        port: EvtchnPort,
    ) -> Result<(), Errno> {
        if port > self.max_port || port as usize >= NR_PORTS {
            return Err(Errno::ENOSPC);
        }
        if self.is_valid(port) {
            if self.chan_mut(port).state != ChannelState::Free {
                return Err(Errno::EBUSY);
            }
            if self
                .fifo
                .as_ref()
                .is_some_and(|f| fifo::is_linked(f, mem, port))
            {
                return Err(Errno::EBUSY);
            }
        } else {
            self.grow_to(port, pages)?;
            // A new bucket's channels are free, but for port 0 of a table never initialised.
            if self.chan_mut(port).state != ChannelState::Free {
                return Err(Errno::EBUSY);
            }
        }
        Ok(())
    }

    /// Xen's `get_free_port`: the lowest free port, allocating a bucket (from `pages`) if all
    /// valid ones are taken. The new bucket stays valid even if the operation then fails, as in
    /// Xen. `mem` reaches the event words under FIFO.
    fn get_free_port<S: FifoMemory + ?Sized>(
        &mut self,
        mem: &S,
        pages: &dyn PortPages,
    ) -> Result<EvtchnPort, Errno> {
        let mut port = 0;
        while port <= self.max_port {
            match self.allocate_port(mem, pages, port) {
                Ok(()) => return Ok(port),
                Err(Errno::EBUSY) => port += 1,
                Err(e) => return Err(e),
            }
        }
        Err(Errno::ENOSPC)
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
pub struct DomainEvents<'a, S: SharedMemory + ?Sized> {
    /// Its id (a real one, below `DOMID_FIRST_RESERVED`).
    pub id: DomId,
    /// Whether it is the control domain, which may act on other domains' channels (Xen's
    /// `XSM_TARGET` rule: the domain itself, or a privileged one).
    pub privileged: bool,
    /// Its channels.
    pub ports: &'a mut PortTable,
    /// Its `shared_info` frame.
    pub shared: &'a mut S,
    /// Where a new bucket of its channels comes from.
    pub pages: &'a dyn PortPages,
}

/// Two domains borrowed at once, in the order asked for.
pub type DomainPair<'a, S> = (DomainEvents<'a, S>, DomainEvents<'a, S>);

/// The set of existing domains, as event channels look them up (Xen's `rcu_lock_domain_by_id`).
pub trait Domains {
    /// How each domain's `shared_info` (and, under FIFO, its event words) is reached.
    type Shared: SharedMemory + FifoMemory + ?Sized;

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
    /// Where its channel pages come from.
    pub pages: &'static dyn PortPages,
}

impl<S: SharedMemory + FifoMemory> EvtchnDomain<S> {
    fn view(&mut self) -> DomainEvents<'_, S> {
        DomainEvents {
            id: self.id,
            privileged: self.privileged,
            ports: &mut self.ports,
            shared: &mut self.shared,
            pages: self.pages,
        }
    }
}

impl<S: SharedMemory + FifoMemory> Domains for [EvtchnDomain<S>] {
    type Shared = S;

    fn get(&mut self, id: DomId) -> Option<DomainEvents<'_, S>> {
        self.iter_mut().find(|d| d.id == id).map(EvtchnDomain::view)
    }

    fn get_two(&mut self, a: DomId, b: DomId) -> Option<DomainPair<'_, S>> {
        let (x, y) = two_by_id(self, |d| d.id, a, b)?;
        Some((x.view(), y.view()))
    }
}

/// The entries of `items` whose ids (by `id`) are `a` and `b`, both borrowed at once, in that
/// order: the body of every [`Domains::get_two`]. `None` if `a == b` or either is missing.
pub(crate) fn two_by_id<T>(
    items: &mut [T],
    id: impl Fn(&T) -> DomId,
    a: DomId,
    b: DomId,
) -> Option<(&mut T, &mut T)> {
    if a == b {
        return None;
    }
    let ia = items.iter().position(|d| id(d) == a)?;
    let ib = items.iter().position(|d| id(d) == b)?;
    if ia < ib {
        let (lo, hi) = items.split_at_mut(ib);
        Some((&mut lo[ia], &mut hi[0]))
    } else {
        let (lo, hi) = items.split_at_mut(ia);
        Some((&mut hi[0], &mut lo[ib]))
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
fn set_pending<S: SharedMemory + ?Sized>(
    dom: DomId,
    shared: &mut S,
    port: EvtchnPort,
    vcpu: u32,
) -> Option<Kick> {
    let mut page = SharedInfoPage(shared);
    if page.test_and_set_evtchn_pending(port) {
        return None;
    }
    if page.evtchn_masked(port) || page.test_and_set_pending_sel(vcpu, port / BITS_PER_WORD) {
        return None;
    }
    mark_events_pending(dom, page.0, vcpu)
}

/// Xen's `vcpu_mark_events_pending`.
fn mark_events_pending<S: SharedMemory + ?Sized>(
    dom: DomId,
    shared: &mut S,
    vcpu: u32,
) -> Option<Kick> {
    if SharedInfoPage(shared).test_and_set_upcall_pending(vcpu) {
        None
    } else {
        Some(Kick { dom, vcpu })
    }
}

/// `evtchn_port_set_pending` for `port` notifying `vcpu`, by the domain's ABI.
fn raise<S: SharedMemory + FifoMemory + ?Sized>(
    d: &mut DomainEvents<'_, S>,
    port: EvtchnPort,
    vcpu: u32,
) -> Option<Kick> {
    if d.ports.fifo.is_some() {
        fifo::set_pending(d, port, vcpu)
    } else {
        set_pending(d.id, d.shared, port, vcpu)
    }
}

/// `evtchn_port_set_pending`: only usable channels are made pending.
fn set_pending_on<S: SharedMemory + FifoMemory + ?Sized>(
    d: &mut DomainEvents<'_, S>,
    port: EvtchnPort,
) -> Option<Kick> {
    let chan = *d.ports.channel(port)?;
    if chan.state.usable() {
        raise(d, port, chan.notify_vcpu)
    } else {
        None
    }
}

/// Xen's `evtchn_free`: clear the pending bit (so a re-bound port starts quiet), mark the
/// channel free and notify vCPU 0 again. What FIFO remembers of the port (its last queue, a
/// pending state waiting for an event array page) stays, as in Xen's `struct evtchn`.
fn free_channel<S: SharedMemory + FifoMemory + ?Sized>(
    d: &mut DomainEvents<'_, S>,
    port: EvtchnPort,
) {
    if d.ports.chan_mut(port).state.usable() {
        match &d.ports.fifo {
            Some(f) => fifo::clear_pending(f, &mut *d.shared, port),
            None => {
                SharedInfoPage(&mut *d.shared).test_and_clear_evtchn_pending(port);
            }
        }
    }
    let c = d.ports.chan_mut(port);
    *c = Channel {
        last_vcpu: c.last_vcpu,
        last_priority: c.last_priority,
        fifo_pending: c.fifo_pending,
        ..Channel::FREE
    };
}

/// Whether `caller` may act on domain `target`: Xen's default `XSM_TARGET` policy.
fn xsm_target<D: Domains + ?Sized>(doms: &mut D, caller: DomId, target: DomId) -> bool {
    caller == target || doms.get(caller).is_some_and(|d| d.privileged)
}

#[cfg(test)]
mod tests;
