//! Every domain the hypervisor runs: a fixed table of slots, and the split borrow that lets a
//! hypercall change its caller and reach the other domains at the same time.
//!
//! A slot holds a [`DomainEntry`] (the domain with its vCPUs, its scheduling figures) and, beside it in a parallel array, the domain's event-channel
//! [`PortTable`] (tens of KiB each, so the arrays are built in place once and reset in place, never
//! moved). Domain ids are not slot numbers: a rebuilt domain gets a fresh id, as on Xen.

use crate::domain::{Domain, DomainId};
use crate::evtchn::PortTable;
use crate::gnttab::GrantTable;

/// Most domains at once, dom0 included.
pub const MAX_DOMAINS: usize = 16;

/// The highest 2-level event channel port (4096 ports on 64-bit).
pub const MAX_PORT_2L: u32 = 4095;

/// Scheduling figures of a vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedInfo {
    /// Relative share of the CPU (Xen's credit scheduler default is 256).
    pub weight: u32,
    /// Nanoseconds spent running (Xen's `runstate.time[RUNSTATE_running]`).
    pub run_ns: u64,
    /// Times it was given the CPU.
    pub dispatches: u64,
    /// Times it lost the CPU because its slice ran out.
    pub preemptions: u64,
    /// The longest the hypervisor spent on one of its hypercalls or exceptions, in ns (one
    /// entry: a preempted hypercall that continues is a new entry each time).
    pub longest_entry_ns: u64,
}

/// One domain's entry in the [`DomainSet`]: the domain with what the hypervisor keeps for it
/// besides its ABI state. (Named apart from [`crate::guest_access`], which is guest memory.)
#[derive(Clone, Debug)]
pub struct DomainEntry {
    /// The domain.
    pub dom: Domain,
    /// Scheduling figures.
    pub sched: SchedInfo,
    /// Its name (`name=` on its boot module's command line; "Domain-0" for dom0).
    pub name: heapless::String<32>,
    /// The boot module it was built from (to rebuild it).
    pub module: usize,
    /// Its xenstore and console rings, for a domU (what a toolstack would have set up and
    /// recorded; dom0's toolstack reads it with `HVMOP_get_param`).
    pub rings: Option<BootRings>,
    /// dom0 asked for it to be destroyed (`XEN_DOMCTL_destroydomain`): the arch layer tears it
    /// down before anything runs again.
    pub destroy: bool,
    /// Its shutdown was reported (console and `VIRQ_DOM_EXC`).
    pub reported: bool,
}

/// The xenstore and console rings a domU is built with: machine frames and event-channel ports
/// (in the domU, unbound with dom0 as the remote end).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootRings {
    /// The xenstore ring's machine frame (`start_info.store_mfn`).
    pub store_mfn: u64,
    /// Its port (`start_info.store_evtchn`).
    pub store_evtchn: u32,
    /// The console ring's machine frame (`start_info.console.domU.mfn`).
    pub console_mfn: u64,
    /// Its port (`start_info.console.domU.evtchn`).
    pub console_evtchn: u32,
}

/// The table of domains.
pub struct DomainSet {
    guests: [Option<DomainEntry>; MAX_DOMAINS],
    ports: [PortTable; MAX_DOMAINS],
    /// Each slot's grant table (built and reset in place, like the port tables).
    pub grants: [GrantTable; MAX_DOMAINS],
}

impl Default for DomainSet {
    fn default() -> Self {
        Self::new()
    }
}

impl DomainSet {
    /// No domains.
    pub const fn new() -> DomainSet {
        DomainSet {
            guests: [const { None }; MAX_DOMAINS],
            ports: [const { PortTable::new(1, MAX_PORT_2L) }; MAX_DOMAINS],
            grants: [const { GrantTable::new() }; MAX_DOMAINS],
        }
    }

    /// The slot of domain `id`.
    pub fn slot_of(&self, id: DomainId) -> Option<usize> {
        self.guests
            .iter()
            .position(|g| g.as_ref().is_some_and(|g| g.dom.id == id))
    }

    /// A free slot, if any.
    pub fn free_slot(&self) -> Option<usize> {
        self.guests.iter().position(Option::is_none)
    }

    /// Puts `guest` in free slot `slot` with a fresh port table (for its vCPUs, `max_port`).
    pub fn install(&mut self, slot: usize, guest: DomainEntry, max_port: u32) {
        self.ports[slot].reset(guest.dom.vcpus.len() as u32, max_port);
        self.grants[slot].reset();
        self.guests[slot] = Some(guest);
    }

    /// Empties slot `slot`, returning its domain.
    pub fn remove(&mut self, slot: usize) -> Option<DomainEntry> {
        self.ports[slot].reset(1, MAX_PORT_2L);
        self.grants[slot].reset();
        self.guests[slot].take()
    }

    /// The guest in `slot`.
    #[inline]
    pub fn guest(&self, slot: usize) -> Option<&DomainEntry> {
        self.guests.get(slot)?.as_ref()
    }

    /// The guest in `slot`, mutably.
    #[inline]
    pub fn guest_mut(&mut self, slot: usize) -> Option<&mut DomainEntry> {
        self.guests.get_mut(slot)?.as_mut()
    }

    /// The guest and port table in `slot`.
    #[inline]
    pub fn both_mut(&mut self, slot: usize) -> Option<(&mut DomainEntry, &mut PortTable)> {
        let g = self.guests.get_mut(slot)?.as_mut()?;
        Some((g, &mut self.ports[slot]))
    }

    /// The port table in `slot`.
    #[inline]
    pub fn ports(&self, slot: usize) -> &PortTable {
        &self.ports[slot]
    }

    /// Occupied slots, in slot order.
    pub fn slots(&self) -> impl Iterator<Item = (usize, &DomainEntry)> + '_ {
        self.guests
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().map(|g| (i, g)))
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.guests.iter().flatten().count()
    }

    /// Whether there is no domain.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Splits the table into the guest in `slot` (with its ports and grant table) and all the
    /// others.
    pub fn split(
        &mut self,
        slot: usize,
    ) -> Option<(
        &mut DomainEntry,
        &mut PortTable,
        &mut GrantTable,
        Others<'_>,
    )> {
        let (glo, grest) = self.guests.split_at_mut(slot);
        let (gme, ghi) = grest.split_first_mut()?;
        let (plo, prest) = self.ports.split_at_mut(slot);
        let (pme, phi) = prest.split_first_mut()?;
        let (tlo, trest) = self.grants.split_at_mut(slot);
        let (tme, thi) = trest.split_first_mut()?;
        Some((
            gme.as_mut()?,
            pme,
            tme,
            Others {
                lo: (glo, plo),
                hi: (ghi, phi),
                grants: (tlo, thi),
            },
        ))
    }
}

/// Every domain but the caller, borrowed for the length of a hypercall.
pub struct Others<'a> {
    lo: (&'a mut [Option<DomainEntry>], &'a mut [PortTable]),
    hi: (&'a mut [Option<DomainEntry>], &'a mut [PortTable]),
    grants: (&'a mut [GrantTable], &'a mut [GrantTable]),
}

impl<'a> Others<'a> {
    /// No other domain (tests of a single domain).
    pub fn none() -> Others<'a> {
        Others {
            lo: (&mut [], &mut []),
            hi: (&mut [], &mut []),
            grants: (&mut [], &mut []),
        }
    }

    /// Domain `id` with its ports, if it exists (and is not the caller).
    pub fn get(&mut self, id: DomainId) -> Option<(&mut DomainEntry, &mut PortTable)> {
        self.iter_mut().find(|(g, _)| g.dom.id == id)
    }

    /// Every other domain with its ports.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&mut DomainEntry, &mut PortTable)> + '_ {
        let lo = self.lo.0.iter_mut().zip(self.lo.1.iter_mut());
        let hi = self.hi.0.iter_mut().zip(self.hi.1.iter_mut());
        lo.chain(hi).filter_map(|(g, p)| g.as_mut().map(|g| (g, p)))
    }

    /// The grant table of domain `id`, if it exists (and is not the caller).
    pub fn grants_mut(&mut self, id: DomainId) -> Option<&mut GrantTable> {
        let lo = self.lo.0.iter().zip(self.grants.0.iter_mut());
        let hi = self.hi.0.iter().zip(self.grants.1.iter_mut());
        lo.chain(hi)
            .find(|(g, _)| g.as_ref().is_some_and(|g| g.dom.id == id))
            .map(|(_, t)| t)
    }

    /// Domain `id` with its grant table, if it exists (and is not the caller).
    pub fn with_grants_mut(&mut self, id: DomainId) -> Option<(&mut DomainEntry, &mut GrantTable)> {
        let lo = self.lo.0.iter_mut().zip(self.grants.0.iter_mut());
        let hi = self.hi.0.iter_mut().zip(self.grants.1.iter_mut());
        lo.chain(hi)
            .find_map(|(g, t)| g.as_mut().filter(|g| g.dom.id == id).map(|g| (g, t)))
    }

    /// Every other domain.
    pub fn iter(&self) -> impl Iterator<Item = &DomainEntry> + '_ {
        self.lo.0.iter().chain(self.hi.0.iter()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::Mfn;

    fn guest(id: DomainId) -> DomainEntry {
        DomainEntry {
            dom: Domain::new(id, id == 0, 1, 1, Mfn(u64::from(id) + 1), Mfn(0)),
            sched: SchedInfo::default(),
            name: heapless::String::new(),
            module: 0,
            rings: None,
            destroy: false,
            reported: false,
        }
    }

    /// A set on the heap. Built on a thread with a big stack: the value passes through the stack
    /// (twice in debug builds) on its way into the box, and it is over a MiB.
    fn boxed_set() -> Box<DomainSet> {
        std::thread::Builder::new()
            .stack_size(32 << 20)
            .spawn(|| Box::new(DomainSet::new()))
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn split_gives_the_caller_and_everyone_else() {
        let mut set = boxed_set();
        for (slot, id) in [(0, 0), (1, 3), (2, 7)] {
            set.install(slot, guest(id), MAX_PORT_2L);
        }
        assert_eq!(set.len(), 3);
        assert_eq!(set.slot_of(7), Some(2));
        let (me, _, _, mut others) = set.split(1).unwrap();
        assert_eq!(me.dom.id, 3);
        assert!(
            others.get(3).is_none(),
            "the caller is not among the others"
        );
        assert_eq!(others.get(7).unwrap().0.dom.id, 7);
        assert_eq!(others.iter().map(|g| g.dom.id).collect::<Vec<_>>(), [0, 7]);
    }

    #[test]
    fn removing_a_domain_frees_its_slot_and_resets_its_ports() {
        let mut set = boxed_set();
        set.install(0, guest(0), MAX_PORT_2L);
        set.install(1, guest(1), 1023);
        assert_eq!(set.ports(1).max_port(), 1023);
        assert_eq!(set.remove(1).unwrap().dom.id, 1);
        assert_eq!(set.free_slot(), Some(1));
        assert!(set.split(1).is_none());
        assert_eq!(set.ports(1).max_port(), MAX_PORT_2L);
    }
}
