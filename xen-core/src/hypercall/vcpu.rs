//! `vcpu_op`: per-vCPU queries and timers (`public/vcpu.h`). Domains have one vCPU, number 0.

use hypercall_abi::errno::Errno;
use hypercall_abi::vcpu::*;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::guest_access::{copy_from_guest, copy_to_guest, GuestPtr};

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
    match crate::ctx::cmd32(cmd) {
        // Xen reads the context before it looks at the vCPU: a bad pointer is -EFAULT even
        // though vCPU 0 is initialised and running (-EEXIST).
        VCPUOP_initialise => {
            let _: hypercall_abi::arch_x86_64::VcpuGuestContext =
                copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            Err(Errno::EEXIST)
        }
        VCPUOP_up => Ok(0),
        VCPUOP_is_up => Ok(1),
        VCPUOP_get_runstate_info => {
            let info = runstate(ctx.m.now_ns());
            copy_to_guest(&mut ctx.guest(), GuestPtr::new(arg), &info)?;
            Ok(0)
        }
        VCPUOP_set_periodic_timer => {
            let set: VcpuSetPeriodicTimer = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
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
            let set: VcpuSetSingleshotTimer = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            // VCPU_SSHOTTMR_future is ignored since Xen commit 19c6cbd90965 (in Debian's 4.17): a
            // deadline in the past fires at once instead of failing with -ETIME as vcpu.h says.
            // One with the top bit set passes Xen's (unsigned) "in the past" test but is a
            // negative s_time_t for `set_timer`, so it fires at once too; any other deadline,
            // however far, is kept (`do_vcpu_op` in `xen/common/domain.c`).
            let now = ctx.m.now_ns();
            ctx.dom.vcpu.timer_deadline =
                Some(crate::time::guest_deadline(set.timeout_abs_ns, now));
            Ok(0)
        }
        VCPUOP_stop_singleshot_timer => {
            ctx.dom.vcpu.timer_deadline = None;
            Ok(0)
        }
        VCPUOP_register_runstate_memory_area => {
            let area: VcpuRegisterRunstateMemoryArea =
                copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            ctx.dom.vcpu.runstate_area = area.addr;
            if area.addr != 0 {
                // Xen writes the current runstate at once; a bad address is the guest's loss.
                let info = runstate(ctx.m.now_ns());
                let _ = copy_to_guest(&mut ctx.guest(), GuestPtr::new(area.addr), &info);
            }
            Ok(0)
        }
        // One physical CPU, APIC id 0 and ACPI id 0: dom0's vCPU 0 is pinned to it.
        VCPUOP_get_physid if ctx.dom.privileged => {
            copy_to_guest(
                &mut ctx.guest(),
                GuestPtr::new(arg),
                &VcpuGetPhysid { phys_id: 0 },
            )?;
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

#[cfg(test)]
mod tests {
    use hypercall_abi::vcpu::{VCPUOP_set_singleshot_timer, VcpuSetSingleshotTimer};
    use hypercall_abi::xen::__HYPERVISOR_vcpu_op;

    use super::super::testing::*;
    use crate::domain::MachineInfo;
    use crate::regs::Regs;

    const NOW: u64 = 7_000_000_000;

    fn singleshot(timeout_abs_ns: u64, flags: u32) -> (i64, Option<u64>) {
        let (mut m, mut d, _) = setup();
        m.now = NOW;
        let arg = VcpuSetSingleshotTimer {
            timeout_abs_ns,
            flags,
            ..Default::default()
        };
        let mut g = crate::guest_access::PageTableGuest {
            mem: &mut m,
            l4: d.l4,
        };
        crate::guest_access::copy_to_guest(
            &mut g,
            crate::guest_access::GuestPtr::new(GUEST_VA),
            &arg,
        )
        .unwrap();
        let info = MachineInfo {
            max_ram_page: 0x1ffe0,
        };
        let mut regs = Regs::default();
        let rc = with_ctx(&mut m, &mut d, &info, &mut regs, |ctx| {
            call(
                ctx,
                __HYPERVISOR_vcpu_op.into(),
                [VCPUOP_set_singleshot_timer.into(), 0, GUEST_VA, 0, 0],
            )
        });
        (rc, d.vcpu.timer_deadline)
    }

    #[test]
    fn a_singleshot_deadline_with_the_sign_bit_set_fires_at_once() {
        assert_eq!(singleshot(NOW + 5, 0), (0, Some(NOW + 5)));
        assert_eq!(singleshot(i64::MAX as u64, 0), (0, Some(i64::MAX as u64)));
        // Past (VCPU_SSHOTTMR_future ignored, as in Debian's 4.17): due at once.
        assert_eq!(singleshot(NOW / 2, 1), (0, Some(NOW / 2)));
        // Xen compares the u64 with NOW() unsigned (not past), then hands it to set_timer as a
        // negative s_time_t: it fires on the next timer softirq.
        for negative in [1u64 << 63, (1 << 63) | 1, u64::MAX] {
            assert_eq!(singleshot(negative, 0), (0, Some(NOW)), "{negative:#x}");
        }
    }
}
