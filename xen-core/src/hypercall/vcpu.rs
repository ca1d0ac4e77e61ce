//! `vcpu_op`: per-vCPU queries and timers (`public/vcpu.h`). Domains have one vCPU, number 0.

use hypercall_abi::errno::Errno;
use hypercall_abi::vcpu::*;

use super::{Ctx, HcResult, Machine};
use crate::guest::{copy_from_guest, copy_to_guest};

/// Shortest periodic timer Xen accepts (1 ms).
const MIN_PERIOD_NS: u64 = 1_000_000;
/// Longest (`STIME_DELTA_MAX`, 2^62 - 1 ns).
const MAX_PERIOD_NS: u64 = (1 << 62) - 1;

pub(super) fn vcpu_op<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    cmd: u64,
    vcpuid: u64,
    arg: u64,
) -> HcResult {
    if vcpuid as u32 != 0 {
        return Err(Errno::ENOENT);
    }
    match super::cmd32(cmd) {
        // Xen reads the context before it looks at the vCPU: a bad pointer is -EFAULT even
        // though vCPU 0 is initialised and running (-EEXIST).
        VCPUOP_initialise => {
            let _: hypercall_abi::arch_x86_64::VcpuGuestContext =
                copy_from_guest(&ctx.guest(), arg)?;
            Err(Errno::EEXIST)
        }
        VCPUOP_up => Ok(0),
        VCPUOP_is_up => Ok(1),
        VCPUOP_get_runstate_info => {
            let info = runstate(ctx.m.now_ns());
            copy_to_guest(&mut ctx.guest(), arg, &info)?;
            Ok(0)
        }
        VCPUOP_set_periodic_timer => {
            let set: VcpuSetPeriodicTimer = copy_from_guest(&ctx.guest(), arg)?;
            if !(MIN_PERIOD_NS..=MAX_PERIOD_NS).contains(&set.period_ns) {
                return Err(Errno::EINVAL);
            }
            ctx.dom.vcpu.periodic_period = set.period_ns;
            Ok(0)
        }
        VCPUOP_stop_periodic_timer => {
            ctx.dom.vcpu.periodic_period = 0;
            Ok(0)
        }
        VCPUOP_set_singleshot_timer => {
            let set: VcpuSetSingleshotTimer = copy_from_guest(&ctx.guest(), arg)?;
            // VCPU_SSHOTTMR_future is ignored since Xen commit 19c6cbd90965 (in Debian's 4.17): a
            // deadline in the past fires at once instead of failing with -ETIME as vcpu.h says.
            ctx.dom.vcpu.timer_deadline = Some(set.timeout_abs_ns);
            Ok(0)
        }
        VCPUOP_stop_singleshot_timer => {
            ctx.dom.vcpu.timer_deadline = None;
            Ok(0)
        }
        VCPUOP_register_runstate_memory_area => {
            let area: VcpuRegisterRunstateMemoryArea = copy_from_guest(&ctx.guest(), arg)?;
            ctx.dom.vcpu.runstate_area = area.addr;
            if area.addr != 0 {
                // Xen writes the current runstate at once; a bad address is the guest's loss.
                let info = runstate(ctx.m.now_ns());
                let _ = copy_to_guest(&mut ctx.guest(), area.addr, &info);
            }
            Ok(0)
        }
        // One physical CPU, APIC id 0 and ACPI id 0: dom0's vCPU 0 is pinned to it.
        VCPUOP_get_physid if ctx.dom.privileged => {
            copy_to_guest(&mut ctx.guest(), arg, &VcpuGetPhysid { phys_id: 0 })?;
            Ok(0)
        }
        VCPUOP_get_physid => Err(Errno::EINVAL),
        _ => Err(Errno::ENOSYS),
    }
}

/// The runstate of the running vCPU: running since boot.
fn runstate(now: u64) -> VcpuRunstateInfo {
    VcpuRunstateInfo {
        state: RUNSTATE_running,
        state_entry_time: 0,
        time: [now, 0, 0, 0],
        ..Default::default()
    }
}
