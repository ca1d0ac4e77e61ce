//! `vcpu_op`: per-vCPU queries and timers (`public/vcpu.h`). Domains have one vCPU, number 0.

use hypercall_abi::errno::Errno;
use hypercall_abi::vcpu::*;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::guest_access::{copy_from_guest, copy_to_guest, GuestPtr};
use crate::mm::frame_table::{Owner, PageType};
use crate::mm::guest_pt::pt;
use crate::mm::{Maddr, Mfn};
use crate::shared_info::VCPU_INFO_SIZE;

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
        // Taking the last vCPU down shuts the domain down (`do_vcpu_op`: "Last vcpu going
        // down?" -> `domain_shutdown(d, SHUTDOWN_poweroff)`), where a code the guest set with
        // `SCHEDOP_shutdown_code` wins and a domain already shut down stays as it is. Linux does
        // this from `halt()` with interrupts off, e.g. after an early panic.
        VCPUOP_down => {
            if ctx.dom.shutdown.is_none() {
                let reason = ctx
                    .dom
                    .shutdown_code
                    .unwrap_or(hypercall_abi::sched::SHUTDOWN_poweroff);
                ctx.dom.shutdown = Some(crate::domain::Shutdown::Requested(reason));
            }
            Ok(0)
        }
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
            ctx.dom.vcpu_mut().periodic_period = set.period_ns;
            Ok(0)
        }
        VCPUOP_stop_periodic_timer => {
            ctx.dom.vcpu_mut().periodic_period = 0;
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
            ctx.dom.vcpu_mut().timer_deadline =
                Some(crate::time::guest_deadline(set.timeout_abs_ns, now));
            Ok(0)
        }
        VCPUOP_stop_singleshot_timer => {
            ctx.dom.vcpu_mut().timer_deadline = None;
            Ok(0)
        }
        VCPUOP_register_runstate_memory_area => {
            let area: VcpuRegisterRunstateMemoryArea =
                copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            ctx.dom.vcpu_mut().runstate_area = area.addr;
            if area.addr != 0 {
                // Xen writes the current runstate at once; a bad address is the guest's loss.
                let info = runstate(ctx.m.now_ns());
                let _ = copy_to_guest(&mut ctx.guest(), GuestPtr::new(area.addr), &info);
            }
            Ok(0)
        }
        VCPUOP_register_vcpu_info => {
            let info: VcpuRegisterVcpuInfo = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            register_vcpu_info(ctx, info)
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

/// `VCPUOP_register_vcpu_info` (`map_vcpu_info`, `xen/common/domain.c`): moves the vCPU's
/// `vcpu_info` out of shared_info into the guest frame `mfn` at `offset`, which must hold the
/// whole structure; once only (-EINVAL after). The frame must be the domain's and take a writable
/// type (not a page table or descriptor page: -EINVAL); it keeps a general and a writable type
/// reference while registered, dropped when the domain is torn down. The current contents are
/// copied over, then an upcall and every selector bit are marked pending so the guest rescans
/// its event channels ("Mark everything as being pending just to make sure nothing gets lost").
fn register_vcpu_info<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    info: VcpuRegisterVcpuInfo,
) -> HcResult {
    const PAGE_SIZE: u32 = 4096;
    if info.offset > PAGE_SIZE - VCPU_INFO_SIZE as u32 || ctx.dom.vcpu().vcpu_info.is_some() {
        return Err(Errno::EINVAL);
    }
    let id = ctx.dom.id;
    let shared_info = ctx.dom.shared_info;
    let Some((mm, mem)) = ctx.m.mm() else {
        return Err(Errno::ENOSYS);
    };
    let mfn = Mfn(info.mfn);
    {
        let (mut pt, _) = pt(mm, mem, ctx.dom, &mut ctx.fx.flush);
        if !pt.mm.frames.mfn_valid(mfn)
            || pt
                .get_page_and_type(mfn, Owner::Domain(id), PageType::Writable)
                .is_err()
        {
            return Err(Errno::EINVAL);
        }
    }
    let mut old = [0u8; VCPU_INFO_SIZE];
    if let Some(b) = mem.read(shared_info.maddr(), VCPU_INFO_SIZE) {
        old.copy_from_slice(b);
    }
    let at = Maddr(mfn.maddr().0 + u64::from(info.offset));
    // Cannot fail: a frame of the domain's, which the frame table just vouched for.
    let _ = mem.write(at, &old);
    ctx.dom.vcpu_mut().vcpu_info = Some((mfn, info.offset));
    let mut page = crate::shared_info::SharedInfoPage::of_domain_mut(mem, ctx.dom);
    page.test_and_set_upcall_pending(0);
    for word in 0..64 {
        page.test_and_set_pending_sel(0, word);
    }
    Ok(0)
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
            l4: d.vcpu().l4,
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
        (rc, d.vcpu().timer_deadline)
    }

    fn vcpu_op(d: &mut crate::domain::Domain, cmd: u32, vcpu: u64) -> i64 {
        let (mut m, _, _) = setup();
        let info = MachineInfo {
            max_ram_page: 0x1ffe0,
        };
        let mut regs = Regs::default();
        with_ctx(&mut m, d, &info, &mut regs, |ctx| {
            call(
                ctx,
                __HYPERVISOR_vcpu_op.into(),
                [cmd.into(), vcpu, 0, 0, 0],
            )
        })
    }

    #[test]
    fn taking_the_last_vcpu_down_powers_the_domain_off() {
        use crate::domain::Shutdown;
        use hypercall_abi::sched::{SHUTDOWN_poweroff, SHUTDOWN_reboot};
        use hypercall_abi::vcpu::{VCPUOP_down, VCPUOP_is_up};
        let (_, mut d, _) = setup();
        assert_eq!(vcpu_op(&mut d, VCPUOP_is_up, 0), 1);
        // No such vCPU.
        assert_eq!(vcpu_op(&mut d, VCPUOP_down, 1), -2);
        assert_eq!(d.shutdown, None);
        assert_eq!(vcpu_op(&mut d, VCPUOP_down, 0), 0);
        assert_eq!(d.shutdown, Some(Shutdown::Requested(SHUTDOWN_poweroff)));
        // A code set earlier wins; a domain already shut down keeps its reason.
        let (_, mut d, _) = setup();
        d.shutdown_code = Some(SHUTDOWN_reboot);
        assert_eq!(vcpu_op(&mut d, VCPUOP_down, 0), 0);
        assert_eq!(d.shutdown, Some(Shutdown::Requested(SHUTDOWN_reboot)));
        assert_eq!(vcpu_op(&mut d, VCPUOP_down, 0), 0);
        assert_eq!(d.shutdown, Some(Shutdown::Requested(SHUTDOWN_reboot)));
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
