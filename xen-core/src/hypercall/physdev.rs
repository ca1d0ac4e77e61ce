//! `HYPERVISOR_physdev_op`: the I/O privilege level of a PV vCPU (`xen/arch/x86/physdev.c`).
//!
//! Only `PHYSDEVOP_set_iopl` is implemented: it sets the vCPU's virtual IOPL, which decides
//! whether the hypervisor emulates the guest's `in`/`out` instructions (`crate::emulate::port_io`).
//! Every other sub-operation (PIRQs, MSI, the I/O bitmap, PCI device reports) is -ENOSYS: no
//! device interrupt is routed to a guest yet.

use hypercall_abi::errno::Errno;
use hypercall_abi::physdev::{PHYSDEVOP_set_iopl, PhysdevSetIopl};

use super::{cmd32, Ctx, HcResult, Machine};
use crate::guest::copy_from_guest;

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
            let req: PhysdevSetIopl = copy_from_guest(&ctx.guest(), arg)?;
            if req.iopl > 3 {
                return Err(Errno::EINVAL);
            }
            ctx.dom.vcpu.iopl = req.iopl as u8;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
