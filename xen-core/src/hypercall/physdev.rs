//! `HYPERVISOR_physdev_op`: the I/O privilege level of a PV vCPU and the physical IRQs of dom0
//! (`xen/arch/x86/physdev.c`).
//!
//! - `PHYSDEVOP_set_iopl` sets the vCPU's virtual IOPL, which decides whether the hypervisor
//!   emulates the guest's `in`/`out` instructions (`crate::emulate::port_io`).
//! - `PHYSDEVOP_map_pirq` (`MAP_PIRQ_TYPE_GSI`, `DOMID_SELF`) / `unmap_pirq` map a GSI of the
//!   I/O APIC to a PIRQ of the control domain, which `EVTCHNOP_bind_pirq` then binds to a port
//!   (`crate::pirq`, `crate::evtchn`). Other domains get -EPERM, as from Xen's XSM check.
//! - `PHYSDEVOP_eoi` ends a delivered interrupt: the level-triggered line, masked when it fired,
//!   is unmasked again; the obsolete `PHYSDEVOP_IRQ_UNMASK_NOTIFY` does so for every PIRQ.
//! - `PHYSDEVOP_irq_status_query` answers `XENIRQSTAT_needs_eoi` for a mapped PIRQ.
//!
//! Every other sub-operation (MSI, the I/O bitmap, PCI device reports, the EOI bitmap frame of
//! `PHYSDEVOP_pirq_eoi_gmfn_v*`) is -ENOSYS: guests then EOI with `PHYSDEVOP_eoi`.

use hypercall_abi::errno::Errno;
use hypercall_abi::physdev::{
    PHYSDEVOP_eoi, PHYSDEVOP_irq_status_query, PHYSDEVOP_map_pirq, PHYSDEVOP_set_iopl,
    PHYSDEVOP_unmap_pirq, PhysdevEoi, PhysdevIrqStatusQuery, PhysdevMapPirq, PhysdevSetIopl,
    PhysdevUnmapPirq, MAP_PIRQ_TYPE_GSI, PHYSDEVOP_IRQ_UNMASK_NOTIFY,
};
use hypercall_abi::xen::{DomId, DOMID_FIRST_RESERVED, DOMID_SELF};

use crate::ctx::{cmd32, Ctx, HcResult, Machine};
use crate::guest_access::{copy_from_guest, copy_to_guest, GuestPtr};
use crate::pirq::NR_PIRQS;

/// The domain a PIRQ operation names, which must be the caller: `DOMID_SELF` or its own id.
/// Reserved ids are -ESRCH; another domain (passthrough, not provided) and any unprivileged
/// caller are -EPERM (Xen's `xsm_map_domain_pirq`).
fn pirq_domain(caller: DomId, privileged: bool, domid: DomId) -> Result<(), Errno> {
    let target = match domid {
        DOMID_SELF => caller,
        d if d >= DOMID_FIRST_RESERVED => return Err(Errno::ESRCH),
        d => d,
    };
    if !privileged || target != caller {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// `HYPERVISOR_physdev_op(cmd, arg)`.
pub(super) fn physdev_op<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    cmd: u64,
    arg: u64,
) -> HcResult {
    match cmd32(cmd) {
        // Any PV vCPU may set its own IOPL (Xen checks no privilege: which ports a domain may
        // reach is `ioports_access_permitted`'s business); 0..=3, else -EINVAL.
        PHYSDEVOP_set_iopl => {
            let req: PhysdevSetIopl = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            if req.iopl > 3 {
                return Err(Errno::EINVAL);
            }
            ctx.dom.vcpu_mut().iopl = req.iopl as u8;
            Ok(0)
        }
        PHYSDEVOP_map_pirq => {
            let mut req: PhysdevMapPirq = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            pirq_domain(ctx.dom.id, ctx.dom.privileged, req.domid)?;
            if req.r#type != MAP_PIRQ_TYPE_GSI {
                // MSI is not provided.
                return Err(Errno::EINVAL);
            }
            let pirq = ctx.events.pirqs.map_gsi(req.index, req.pirq)?;
            req.pirq = pirq as i32;
            copy_to_guest(&mut ctx.guest(), GuestPtr::new(arg), &req)?;
            Ok(0)
        }
        PHYSDEVOP_unmap_pirq => {
            let req: PhysdevUnmapPirq = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            pirq_domain(ctx.dom.id, ctx.dom.privileged, req.domid)?;
            ctx.events.pirqs.unmap(req.pirq)?;
            Ok(0)
        }
        PHYSDEVOP_eoi => {
            let req: PhysdevEoi = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            if ctx.events.pirqs.eoi(req.irq)?.is_some() {
                ctx.m.sync_irq_lines(&ctx.events.pirqs);
            }
            Ok(0)
        }
        PHYSDEVOP_IRQ_UNMASK_NOTIFY => {
            let mut any = false;
            for pirq in 0..NR_PIRQS {
                any |= matches!(ctx.events.pirqs.eoi(pirq), Ok(Some(_)));
            }
            if any {
                ctx.m.sync_irq_lines(&ctx.events.pirqs);
            }
            Ok(0)
        }
        PHYSDEVOP_irq_status_query => {
            let mut req: PhysdevIrqStatusQuery = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            req.flags = ctx.events.pirqs.status(req.irq)?;
            copy_to_guest(&mut ctx.guest(), GuestPtr::new(arg), &req)?;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
