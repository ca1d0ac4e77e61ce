//! Every domain the hypervisor runs: a fixed table of slots, and the split borrow that lets a
//! hypercall change its caller and reach the other domains at the same time.
//!
//! A slot holds a [`DomainEntry`] (the domain with its vCPUs, its scheduling figures) and, beside it in a parallel array, the domain's event-channel
//! [`PortTable`] (tens of KiB each, so the arrays are built in place once and reset in place, never
//! moved). Domain ids are not slot numbers: a rebuilt domain gets a fresh id, as on Xen.

use crate::domain::{Domain, DomainId};
use crate::evtchn::PortTable;
use crate::gnttab::GrantTable;
use core::marker::PhantomData;
use core::ptr::NonNull;

/// Most domains at once, dom0 included: dom0 and 64 small domUs with room to spare (issue 17's
/// scale benchmark). Each slot costs its port and grant tables in the image whether used or not
/// (`docs/performance.md`, "Scale"); the scheduler's passes visit occupied slots only.
pub const MAX_DOMAINS: usize = crate::mm::frame_table::MAX_DOMAINS;

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
    /// The same in the arch layer's clock ticks (the TSC on x86), kept to compare each entry's
    /// cost against without converting it to ns.
    pub longest_entry_ticks: u64,
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
    /// Which copy of that module's `copies=` it is (from 1; `None`: a module built once): with
    /// the module, its place among the boot-time domUs (its handle), kept when it is rebuilt.
    pub copy: Option<u32>,
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

const _: () = assert!(MAX_DOMAINS <= 128, "occupied slots are a u128 mask");

/// The slots set in `mask`, lowest first.
#[inline]
fn mask_slots(mut mask: u128) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let slot = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(slot)
    })
}

/// The table of domains.
pub struct DomainSet {
    /// Bit `s` set: slot `s` holds a domain. Every walk over the domains goes through it, so a
    /// pass costs the domains there are, not the slots there could be.
    occupied: u128,
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
            occupied: 0,
            guests: [const { None }; MAX_DOMAINS],
            ports: [const { PortTable::new(1, MAX_PORT_2L) }; MAX_DOMAINS],
            grants: [const { GrantTable::new() }; MAX_DOMAINS],
        }
    }

    /// The slot of domain `id`.
    pub fn slot_of(&self, id: DomainId) -> Option<usize> {
        self.slots().find(|(_, g)| g.dom.id == id).map(|(s, _)| s)
    }

    /// The lowest free slot, if any.
    pub fn free_slot(&self) -> Option<usize> {
        Some(self.occupied.trailing_ones() as usize).filter(|&s| s < MAX_DOMAINS)
    }

    /// The occupied slots, lowest first (a copy of the mask: the set may change meanwhile).
    #[inline]
    pub fn occupied(&self) -> impl Iterator<Item = usize> {
        mask_slots(self.occupied)
    }

    /// Puts `guest` in free slot `slot` with a fresh port table (for its vCPUs, `max_port`).
    pub fn install(&mut self, slot: usize, guest: DomainEntry, max_port: u32) {
        self.ports[slot].reset(guest.dom.vcpus.len() as u32, max_port);
        self.grants[slot].reset();
        self.guests[slot] = Some(guest);
        self.occupied |= 1 << slot;
    }

    /// Empties slot `slot`, returning its domain.
    pub fn remove(&mut self, slot: usize) -> Option<DomainEntry> {
        if slot >= MAX_DOMAINS {
            return None;
        }
        self.ports[slot].reset(1, MAX_PORT_2L);
        self.grants[slot].reset();
        self.occupied &= !(1 << slot);
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
        mask_slots(self.occupied).filter_map(|s| self.guests[s].as_ref().map(|g| (s, g)))
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.occupied.count_ones() as usize
    }

    /// Whether there is no domain.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Splits the table into the guest in `slot` (with its ports and grant table) and all the
    /// others.
    ///
    /// Made on every entry from a guest, so it is a few instructions: [`Others`] is three
    /// pointers and a mask, not slices around the caller's slot.
    #[inline]
    pub fn split(
        &mut self,
        slot: usize,
    ) -> Option<(
        &mut DomainEntry,
        &mut PortTable,
        &mut GrantTable,
        Others<'_>,
    )> {
        if slot >= MAX_DOMAINS {
            return None;
        }
        // Every pointer is taken before any reference to a slot is made, and all of them come
        // from `self`, borrowed mutably for as long as the results live.
        let guests = self.guests.as_mut_ptr();
        let ports = self.ports.as_mut_ptr();
        let grants = self.grants.as_mut_ptr();
        // SAFETY: `slot < MAX_DOMAINS`, the arrays' length, so each pointer is to an element of
        // its array; the three are distinct objects. `Others` reaches only the slots of `mask`,
        // which leaves `slot` out, so these references alias nothing it hands out.
        let (me, my_ports, my_grants) = unsafe {
            (
                (*guests.add(slot)).as_mut()?,
                &mut *ports.add(slot),
                &mut *grants.add(slot),
            )
        };
        Some((
            me,
            my_ports,
            my_grants,
            Others {
                guests,
                ports,
                grants,
                occupied: self.occupied,
                caller: slot,
                _set: PhantomData,
            },
        ))
    }
}

/// Every domain but the caller, borrowed for the length of a hypercall.
///
/// The three arrays of the [`DomainSet`] as pointers (the caller's slot is borrowed apart, so no
/// slice may cover it) and the occupied slots other than the caller's: every method reaches
/// only those slots, each through its own element, and hands out references that live no
/// longer than the borrow of `self` they come from.
pub struct Others<'a> {
    guests: *mut Option<DomainEntry>,
    ports: *mut PortTable,
    grants: *mut GrantTable,
    /// The occupied slots (the caller's among them: `mask` leaves it out).
    occupied: u128,
    /// The caller's slot.
    caller: usize,
    _set: PhantomData<&'a mut DomainSet>,
}

impl<'a> Others<'a> {
    /// No other domain (tests of a single domain).
    pub fn none() -> Others<'a> {
        Others {
            guests: NonNull::dangling().as_ptr(),
            ports: NonNull::dangling().as_ptr(),
            grants: NonNull::dangling().as_ptr(),
            occupied: 0,
            caller: 0,
            _set: PhantomData,
        }
    }

    /// The occupied slots other than the caller's (worked out when asked: the split is made on
    /// every entry, and most hypercalls never look at the others).
    #[inline]
    fn mask(&self) -> u128 {
        self.occupied & !(1u128 << self.caller)
    }

    /// The guest in slot `s` of the mask.
    #[inline]
    fn guest_at(&self, s: usize) -> Option<&DomainEntry> {
        debug_assert!(self.mask() & (1 << s) != 0);
        // SAFETY: `s` is a slot of `mask` (the only callers pass those), so below
        // `MAX_DOMAINS` and not the caller's; the result borrows `self`, so no mutable
        // reference to the slot made through `self` can be live.
        unsafe { (*self.guests.add(s)).as_ref() }
    }

    /// The guest, ports and grant table in slot `s` of the mask, mutably.
    ///
    /// # Safety
    ///
    /// `s` is a slot of `mask`, and no other reference to its elements made through this
    /// `Others` lives as long as the results.
    #[inline]
    unsafe fn slot_mut<'s>(
        &self,
        s: usize,
    ) -> (
        &'s mut Option<DomainEntry>,
        &'s mut PortTable,
        &'s mut GrantTable,
    ) {
        debug_assert!(self.mask() & (1 << s) != 0);
        // SAFETY: as the caller promises: an occupied slot that is not the caller's, below
        // `MAX_DOMAINS`, reached by nothing else.
        unsafe {
            (
                &mut *self.guests.add(s),
                &mut *self.ports.add(s),
                &mut *self.grants.add(s),
            )
        }
    }

    /// The slot of domain `id` among the others.
    #[inline]
    fn slot_of(&self, id: DomainId) -> Option<usize> {
        mask_slots(self.mask()).find(|&s| self.guest_at(s).is_some_and(|g| g.dom.id == id))
    }

    /// Domain `id` with its ports, if it exists (and is not the caller).
    pub fn get(&mut self, id: DomainId) -> Option<(&mut DomainEntry, &mut PortTable)> {
        let s = self.slot_of(id)?;
        // SAFETY: a slot of the mask; the results borrow `self` mutably.
        let (g, p, _) = unsafe { self.slot_mut(s) };
        Some((g.as_mut()?, p))
    }

    /// Every other domain with its ports.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&mut DomainEntry, &mut PortTable)> + '_ {
        let this = &*self;
        mask_slots(self.mask()).filter_map(move |s| {
            // SAFETY: each slot of the mask once, so the items are distinct slots; they borrow
            // `self` mutably (the iterator's lifetime).
            let (g, p, _) = unsafe { this.slot_mut(s) };
            Some((g.as_mut()?, p))
        })
    }

    /// The grant table of domain `id`, if it exists (and is not the caller).
    pub fn grants_mut(&mut self, id: DomainId) -> Option<&mut GrantTable> {
        let s = self.slot_of(id)?;
        // SAFETY: a slot of the mask; the result borrows `self` mutably.
        Some(unsafe { self.slot_mut(s) }.2)
    }

    /// Domain `id` with its grant table, if it exists (and is not the caller).
    pub fn with_grants_mut(&mut self, id: DomainId) -> Option<(&mut DomainEntry, &mut GrantTable)> {
        let s = self.slot_of(id)?;
        // SAFETY: a slot of the mask; the results borrow `self` mutably.
        let (g, _, t) = unsafe { self.slot_mut(s) };
        Some((g.as_mut()?, t))
    }

    /// Every other domain.
    pub fn iter(&self) -> impl Iterator<Item = &DomainEntry> + '_ {
        mask_slots(self.mask()).filter_map(|s| self.guest_at(s))
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
            copy: None,
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

    #[test]
    fn walks_visit_only_the_occupied_slots_up_to_the_last() {
        let mut set = boxed_set();
        let last = MAX_DOMAINS - 1;
        let taken = [(0, 0), (5, 5), (64, 64), (last, 99)];
        for (slot, id) in taken {
            set.install(slot, guest(id), MAX_PORT_2L);
        }
        assert_eq!(set.len(), 4);
        assert_eq!(set.occupied().collect::<Vec<_>>(), [0, 5, 64, last]);
        assert_eq!(
            set.slots().map(|(s, g)| (s, g.dom.id)).collect::<Vec<_>>(),
            taken
        );
        assert_eq!(set.slot_of(99), Some(last));
        assert_eq!(set.free_slot(), Some(1));
        // The others of each domain, in slot order, the caller left out; each one's grant table
        // reached by id.
        for (slot, id) in taken {
            let (me, _, _, mut others) = set.split(slot).unwrap();
            assert_eq!(me.dom.id, id);
            let want: Vec<u16> = taken.iter().map(|t| t.1).filter(|&i| i != id).collect();
            assert_eq!(others.iter().map(|g| g.dom.id).collect::<Vec<_>>(), want);
            assert_eq!(
                others.iter_mut().map(|(g, _)| g.dom.id).collect::<Vec<_>>(),
                want
            );
            for &other in &want {
                assert_eq!(others.get(other).unwrap().0.dom.id, other);
                assert!(others.grants_mut(other).is_some());
            }
            assert!(others.get(id).is_none() && others.grants_mut(id).is_none());
            assert!(others.get(1).is_none(), "no domain 1");
        }
        set.remove(64);
        assert_eq!(set.occupied().collect::<Vec<_>>(), [0, 5, last]);
        assert!(set.guest(64).is_none() && set.split(64).is_none());
        assert_eq!(
            set.remove(MAX_DOMAINS).map(|g| g.dom.id),
            None,
            "no such slot"
        );
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn every_slot_can_be_filled_and_then_none_is_free() {
        let mut set = boxed_set();
        for slot in 0..MAX_DOMAINS {
            assert_eq!(set.free_slot(), Some(slot));
            set.install(slot, guest(slot as DomainId), 1023);
        }
        assert_eq!(set.free_slot(), None);
        assert_eq!(set.len(), MAX_DOMAINS);
        set.remove(MAX_DOMAINS / 2);
        assert_eq!(set.free_slot(), Some(MAX_DOMAINS / 2));
    }
}
