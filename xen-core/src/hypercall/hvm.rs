//! `hvm_op`: the HVM parameters through which dom0's toolstack finds the xenstore and console
//! rings of the domains built at boot.
//!
//! On Xen, a PV dom0 toolstack would have built its domUs itself and so would know their rings.
//! Here the hypervisor builds them at boot, as Xen's dom0less support does, and reports them the
//! way dom0less exposes them to `init-dom0less`: as HVM parameters of the domU, read with
//! `HVMOP_get_param` (`HVM_PARAM_STORE_PFN` is the xenstore ring's machine frame,
//! `HVM_PARAM_STORE_EVTCHN` its port in the domU, and the same for the console). A domain built
//! with rings ([`crate::domain::set::BootRings`]) answers like an HVM domain; every other domain,
//! the caller included, is PV and answers as Xen does for one.
//!
//! Checks in Xen 4.17's order (`hvmop_get_param`): copy (-EFAULT), an index from
//! `HVM_NR_PARAMS` up (-EINVAL), the lookup (`rcu_lock_domain_by_any_id`: `DOMID_SELF` is the
//! caller; unknown -ESRCH), a PV domain (-EINVAL: the caller itself, or a domain without rings),
//! the XSM check (-EPERM unless the caller is privileged), then the parameter: one of the four
//! ring parameters, any other -EINVAL. `HVMOP_set_param` goes through the same lookup and then
//! answers -EINVAL (every domain is PV). Any other operation is -ENOSYS.

use hypercall_abi::errno::Errno;
use hypercall_abi::hvm::*;
use hypercall_abi::xen::DOMID_SELF;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::guest_access::{copy_from_guest, copy_to_guest, GuestPtr};

pub(super) fn hvm_op<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, op: u64, arg: u64) -> HcResult {
    // Xen takes the operation as `unsigned long`: no truncation.
    if op != HVMOP_get_param && op != HVMOP_set_param {
        return Err(Errno::ENOSYS);
    }
    let mut p: XenHvmParam = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
    if p.index >= HVM_NR_PARAMS {
        return Err(Errno::EINVAL);
    }
    if p.domid == DOMID_SELF || p.domid == ctx.dom.id {
        // The caller is a PV domain.
        return Err(Errno::EINVAL);
    }
    let privileged = ctx.dom.privileged;
    let (g, _) = ctx.others.get(p.domid).ok_or(Errno::ESRCH)?;
    let Some(rings) = g.rings else {
        return Err(Errno::EINVAL);
    };
    if op == HVMOP_set_param {
        return Err(Errno::EINVAL);
    }
    if !privileged {
        return Err(Errno::EPERM);
    }
    p.value = match p.index {
        HVM_PARAM_STORE_PFN => rings.store_mfn,
        HVM_PARAM_STORE_EVTCHN => rings.store_evtchn.into(),
        HVM_PARAM_CONSOLE_PFN => rings.console_mfn,
        HVM_PARAM_CONSOLE_EVTCHN => rings.console_evtchn.into(),
        _ => return Err(Errno::EINVAL),
    };
    copy_to_guest(&mut ctx.guest(), GuestPtr::new(arg), &p)?;
    Ok(0)
}
