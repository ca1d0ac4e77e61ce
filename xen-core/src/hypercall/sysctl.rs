//! `sysctl` for the control domain: the software performance counters (`XEN_SYSCTL_perfc_op`)
//! and the list of domains (`XEN_SYSCTL_getdomaininfolist`).
//!
//! Xen keeps machine-wide counters when built with `CONFIG_PERF_COUNTERS` (Debian's release build
//! is not, and answers -ENOSYS). Ours are always there: the counters of the domains (one today),
//! each described by name with one value, as `xenperf` reads them. The teaching lab and
//! `make bench` read them around each workload.
//!
//! `XEN_SYSCTL_getdomaininfolist` (`xen/common/sysctl.c`) writes one `xen_domctl_getdomaininfo`
//! per domain with an id from `first_domain` up, in id order, until `max_domains` entries; it
//! returns 0 and reports the count in `num_domains`. No domain to report (or `max_domains` 0) is
//! success with `num_domains` 0 and the buffer untouched; a buffer that cannot be written is
//! -EFAULT. The records are [`super::domctl::domain_info`]'s (the caller's `cpu_time` is 0: its
//! run time is not in the hypercall's reach).

use hypercall_abi::errno::Errno;
use hypercall_abi::sysctl::*;
use zerocopy::{FromBytes, IntoBytes};

use crate::ctx::{Ctx, HcResult, Machine};
use crate::domain::PerfCounters;
use crate::guest_access::{copy_from_guest, copy_to_guest, GuestPtr};

pub(super) fn sysctl<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, arg: u64) -> HcResult {
    let mut op: XenSysctl = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
    if op.interface_version != XEN_SYSCTL_INTERFACE_VERSION {
        return Err(Errno::EACCES);
    }
    if !ctx.dom.privileged {
        return Err(Errno::EPERM);
    }
    match op.cmd {
        XEN_SYSCTL_perfc_op => {
            let (mut pc, _) =
                XenSysctlPerfcOp::read_from_prefix(&op.u).map_err(|_| Errno::EINVAL)?;
            let counters = ctx.dom.vcpu().perf.named();
            match pc.cmd {
                XEN_SYSCTL_PERFCOP_reset => ctx.dom.vcpu_mut().perf = PerfCounters::default(),
                XEN_SYSCTL_PERFCOP_query => {}
                _ => return Err(Errno::EINVAL),
            }
            pc.nr_counters = counters.len() as u32;
            pc.nr_vals = counters.len() as u32;
            for (i, (name, value)) in counters.iter().enumerate() {
                let i = i as u64;
                if pc.desc != 0 {
                    let mut d = XenSysctlPerfcDesc {
                        nr_vals: 1,
                        ..Default::default()
                    };
                    d.name[..name.len()].copy_from_slice(name.as_bytes());
                    copy_to_guest(&mut ctx.guest(), GuestPtr::new(pc.desc).add(i), &d)?;
                }
                if pc.val != 0 {
                    // Xen's values are 32-bit: they wrap, as Xen's do.
                    copy_to_guest(
                        &mut ctx.guest(),
                        GuestPtr::new(pc.val).add(i),
                        &(*value as u32),
                    )?;
                }
            }
            op.u[..32].copy_from_slice(pc.as_bytes());
            copy_to_guest(&mut ctx.guest(), GuestPtr::new(arg), &op)?;
            Ok(0)
        }
        XEN_SYSCTL_getdomaininfolist => {
            let (mut l, _) =
                XenSysctlGetdomaininfolist::read_from_prefix(&op.u).map_err(|_| Errno::EINVAL)?;
            let mut n = 0u32;
            let mut from = u32::from(l.first_domain);
            while n < l.max_domains {
                let Some(info) = super::domctl::first_info_from(ctx, from) else {
                    break;
                };
                let at = GuestPtr::new(l.buffer).add(u64::from(n));
                copy_to_guest(&mut ctx.guest(), at, &info)?;
                n += 1;
                from = u32::from(info.domain) + 1;
            }
            l.num_domains = n;
            op.u[..size_of_val(&l)].copy_from_slice(l.as_bytes());
            copy_to_guest(&mut ctx.guest(), GuestPtr::new(arg), &op)?;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
