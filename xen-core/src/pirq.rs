//! Physical IRQs (PIRQs) of a PV dom0: which GSI each PIRQ maps, the event channel bound to it,
//! and whether its level-triggered line waits for the guest's EOI (Xen's `struct pirq`,
//! `map_domain_pirq`, `pirq_guest_eoi` in `xen/arch/x86/irq.c`, reduced to one I/O APIC).
//!
//! The hardware side (programming and masking I/O APIC entries) is the architecture's: it asks
//! [`PirqTable::line_enabled`] whether a GSI's line should be unmasked, masks a line when its
//! interrupt arrives and hands it to [`PirqTable::raise`], and unmasks it again after the guest's
//! `PHYSDEVOP_eoi` ([`PirqTable::eoi`]).

use hypercall_abi::errno::Errno;
use hypercall_abi::event_channel::EvtchnPort;

/// GSIs the hypervisor routes: the inputs of one I/O APIC (24 on the PC's 82093AA).
pub const NR_GSIS: u32 = 24;
/// PIRQs per domain (Xen's `nr_pirqs` for dom0 is larger; GSIs are identity-mapped here).
pub const NR_PIRQS: u32 = 64;

const UNMAPPED: u8 = u8::MAX;

/// A domain's PIRQs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PirqTable {
    /// The GSI each PIRQ maps, [`UNMAPPED`] for none.
    gsi: [u8; NR_PIRQS as usize],
    /// The event channel bound to each PIRQ, 0 for none.
    port: [EvtchnPort; NR_PIRQS as usize],
    /// GSIs whose interrupt was delivered and awaits the guest's EOI (one bit per GSI).
    in_flight: u32,
}

impl Default for PirqTable {
    fn default() -> Self {
        Self::new()
    }
}

impl PirqTable {
    /// No PIRQ mapped.
    pub const fn new() -> PirqTable {
        PirqTable {
            gsi: [UNMAPPED; NR_PIRQS as usize],
            port: [0; NR_PIRQS as usize],
            in_flight: 0,
        }
    }

    /// Forgets every mapping and binding.
    pub fn reset(&mut self) {
        *self = PirqTable::new();
    }

    /// `PHYSDEVOP_map_pirq(MAP_PIRQ_TYPE_GSI)`: maps `gsi` to `pirq` (negative: the GSI's
    /// existing PIRQ, else the PIRQ numbered as the GSI if free, else the lowest free one) and
    /// returns the PIRQ. Mapping the same pair again succeeds; a PIRQ or GSI already mapped to
    /// something else is -EBUSY (Xen logs and answers 0 without mapping; a guest is better told).
    pub fn map_gsi(&mut self, gsi: i32, pirq: i32) -> Result<u32, Errno> {
        let gsi = u32::try_from(gsi)
            .ok()
            .filter(|&g| g < NR_GSIS)
            .ok_or(Errno::EINVAL)?;
        let existing = self.pirq_of_gsi(gsi);
        let pirq = if pirq < 0 {
            match existing {
                Some(p) => return Ok(p),
                None if self.gsi_of(gsi).is_none() => gsi,
                None => (0..NR_PIRQS)
                    .find(|&p| self.gsi_of(p).is_none())
                    .ok_or(Errno::ENOSPC)?,
            }
        } else {
            u32::try_from(pirq)
                .ok()
                .filter(|&p| p < NR_PIRQS)
                .ok_or(Errno::EINVAL)?
        };
        match (self.gsi_of(pirq), existing) {
            (Some(g), _) if g == gsi => Ok(pirq),
            (None, None) => {
                self.gsi[pirq as usize] = gsi as u8;
                Ok(pirq)
            }
            _ => Err(Errno::EBUSY),
        }
    }

    /// `PHYSDEVOP_unmap_pirq`: -EINVAL for a PIRQ out of range or unmapped, -EBUSY while an
    /// event channel is bound to it.
    pub fn unmap(&mut self, pirq: i32) -> Result<(), Errno> {
        let p = self.mapped(pirq)?;
        if self.port[p as usize] != 0 {
            return Err(Errno::EBUSY);
        }
        self.gsi[p as usize] = UNMAPPED;
        Ok(())
    }

    /// The PIRQ, if in range and mapped; else -EINVAL.
    fn mapped(&self, pirq: impl TryInto<u32>) -> Result<u32, Errno> {
        let p = pirq.try_into().map_err(|_| Errno::EINVAL)?;
        self.gsi_of(p).map(|_| p).ok_or(Errno::EINVAL)
    }

    /// The GSI `pirq` maps.
    pub fn gsi_of(&self, pirq: u32) -> Option<u32> {
        let g = *self.gsi.get(pirq as usize)?;
        (g != UNMAPPED).then_some(u32::from(g))
    }

    /// The PIRQ mapping `gsi`.
    pub fn pirq_of_gsi(&self, gsi: u32) -> Option<u32> {
        (0..NR_PIRQS).find(|&p| self.gsi_of(p) == Some(gsi))
    }

    /// The event channel bound to `pirq` (Xen's `pirq_to_evtchn`).
    pub fn port(&self, pirq: u32) -> Option<EvtchnPort> {
        let port = *self.port.get(pirq as usize)?;
        (port != 0).then_some(port)
    }

    /// Checks that `pirq` can be bound (`evtchn_bind_pirq`'s checks): in range and mapped
    /// (-EINVAL), not bound yet (-EEXIST).
    pub fn check_bind(&self, pirq: u32) -> Result<(), Errno> {
        self.mapped(pirq)?;
        if self.port(pirq).is_some() {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    /// Records `port` as bound to `pirq` (checked by [`PirqTable::check_bind`]).
    pub fn bind(&mut self, pirq: u32, port: EvtchnPort) {
        if let Some(p) = self.port.get_mut(pirq as usize) {
            *p = port;
        }
    }

    /// The channel bound to `pirq` closed (`pirq_guest_unbind`): the line is no longer the
    /// guest's, and no EOI is awaited.
    pub fn unbind(&mut self, pirq: u32) {
        if let Some(p) = self.port.get_mut(pirq as usize) {
            *p = 0;
        }
        if let Some(g) = self.gsi_of(pirq) {
            self.in_flight &= !(1 << g);
        }
    }

    /// Whether the line of `gsi` should be unmasked: mapped, bound, and not awaiting an EOI.
    pub fn line_enabled(&self, gsi: u32) -> bool {
        gsi < NR_GSIS
            && self.in_flight & (1 << gsi) == 0
            && self
                .pirq_of_gsi(gsi)
                .is_some_and(|p| self.port(p).is_some())
    }

    /// The interrupt of `gsi` arrived (its line is masked): if a channel is bound to the PIRQ
    /// mapping it, the line now awaits the guest's EOI and the channel is returned to be made
    /// pending (Xen's `__do_IRQ_guest` → `send_guest_pirq`).
    pub fn raise(&mut self, gsi: u32) -> Option<(u32, EvtchnPort)> {
        let pirq = self.pirq_of_gsi(gsi)?;
        let port = self.port(pirq)?;
        self.in_flight |= 1 << gsi;
        Some((pirq, port))
    }

    /// Whether `gsi`'s interrupt was delivered and awaits the guest's EOI.
    pub fn awaits_eoi(&self, gsi: u32) -> bool {
        gsi < NR_GSIS && self.in_flight & (1 << gsi) != 0
    }

    /// `PHYSDEVOP_eoi {irq: pirq}`: -EINVAL for a PIRQ out of range or unmapped; otherwise the
    /// line stops awaiting the EOI, and its GSI is returned if it was (to be unmasked).
    pub fn eoi(&mut self, pirq: u32) -> Result<Option<u32>, Errno> {
        let p = self.mapped(pirq)?;
        let gsi = self.gsi_of(p).ok_or(Errno::EINVAL)?;
        if self.in_flight & (1 << gsi) == 0 {
            return Ok(None);
        }
        self.in_flight &= !(1 << gsi);
        Ok(Some(gsi))
    }

    /// `PHYSDEVOP_irq_status_query`: `XENIRQSTAT_needs_eoi` for a mapped PIRQ (level-triggered
    /// GSIs always need one), -EINVAL otherwise.
    pub fn status(&self, pirq: u32) -> Result<u32, Errno> {
        self.mapped(pirq)?;
        Ok(hypercall_abi::physdev::XENIRQSTAT_needs_eoi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_validates_and_allocates() {
        let mut t = PirqTable::new();
        assert_eq!(t.map_gsi(-1, 5), Err(Errno::EINVAL));
        assert_eq!(t.map_gsi(24, 5), Err(Errno::EINVAL));
        assert_eq!(t.map_gsi(11, 64), Err(Errno::EINVAL));
        assert_eq!(t.map_gsi(11, 11), Ok(11));
        assert_eq!(t.map_gsi(11, 11), Ok(11), "same mapping again");
        assert_eq!(t.map_gsi(11, -1), Ok(11), "the GSI's existing PIRQ");
        assert_eq!(t.map_gsi(11, 12), Err(Errno::EBUSY), "GSI mapped elsewhere");
        assert_eq!(
            t.map_gsi(10, 11),
            Err(Errno::EBUSY),
            "PIRQ mapped elsewhere"
        );
        assert_eq!(t.map_gsi(10, -1), Ok(10));
        assert_eq!(t.map_gsi(5, 20), Ok(20));
        // GSI 20's identity PIRQ is taken by GSI 5: the lowest free one.
        assert_eq!(t.map_gsi(20, -1), Ok(0));
        assert_eq!(t.gsi_of(20), Some(5));
        assert_eq!(t.pirq_of_gsi(20), Some(0));
    }

    #[test]
    fn bind_raise_eoi_unbind() {
        let mut t = PirqTable::new();
        assert_eq!(t.check_bind(11), Err(Errno::EINVAL), "unmapped");
        assert_eq!(t.check_bind(NR_PIRQS), Err(Errno::EINVAL), "out of range");
        t.map_gsi(11, 11).unwrap();
        assert!(!t.line_enabled(11), "mapped but unbound: masked");
        assert_eq!(t.raise(11), None, "nobody bound: nothing delivered");
        t.check_bind(11).unwrap();
        t.bind(11, 7);
        assert_eq!(t.check_bind(11), Err(Errno::EEXIST));
        assert!(t.line_enabled(11));
        assert_eq!(t.eoi(11), Ok(None), "EOI with nothing in flight");
        assert_eq!(t.raise(11), Some((11, 7)));
        assert!(!t.line_enabled(11), "masked until the EOI");
        assert!(t.awaits_eoi(11));
        assert_eq!(t.eoi(12), Err(Errno::EINVAL));
        assert_eq!(t.eoi(11), Ok(Some(11)));
        assert!(t.line_enabled(11));
        assert_eq!(t.raise(11), Some((11, 7)));
        assert_eq!(t.unmap(11), Err(Errno::EBUSY), "bound");
        t.unbind(11);
        assert!(!t.awaits_eoi(11) && !t.line_enabled(11));
        assert_eq!(
            t.status(11),
            Ok(hypercall_abi::physdev::XENIRQSTAT_needs_eoi)
        );
        t.unmap(11).unwrap();
        assert_eq!(t.status(11), Err(Errno::EINVAL));
        assert_eq!(t.unmap(11), Err(Errno::EINVAL));
    }
}
