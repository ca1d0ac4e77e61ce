//! `vcpu_op`: bringing vCPUs up and down, per-vCPU queries and timers (`public/vcpu.h`).
//!
//! A domain has `Domain::vcpus` vCPUs (its `max_vcpus`, `vcpus=<n>` on its module's command
//! line); vCPU 0 is initialised and up when it is built, the others wait for `VCPUOP_initialise`
//! (with a `vcpu_guest_context`, checked as Xen's `arch_set_info_guest` does) and `VCPUOP_up`.

use hypercall_abi::errno::Errno;
use hypercall_abi::vcpu::*;
use hypercall_abi::xen::VMASST_TYPE_runstate_update_flag;

use crate::ctx::{Ctx, HcResult, Machine};
use hypercall_abi::arch_x86_64::{
    VGCF_failsafe_disables_events, VGCF_in_kernel, VGCF_online, VGCF_syscall_disables_events,
    VcpuGuestContext,
};

use crate::domain::Domain;
use crate::guest_access::{
    copy_from_guest, copy_to_guest, guest_va_ok, is_canonical, GuestMemory, GuestPtr,
    PageTableGuest,
};
use crate::mm::frame_table::{Owner, PageType};
use crate::mm::guest_pt::pt;
use crate::mm::{MachineMemoryMut, Maddr, Mfn};
use crate::regs::Regs;
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
    // `domain_vcpu`: an id beyond the domain's vCPUs is -ENOENT, before anything is read.
    let id = vcpuid as u32;
    if ctx.dom.vcpu_by_id(id).is_none() {
        return Err(Errno::ENOENT);
    }
    let me = id == ctx.dom.vcpu_id();
    let idx = id as usize;
    match crate::ctx::cmd32(cmd) {
        // `default_initialise_vcpu`: the context is read first (-EFAULT), then an initialised
        // vCPU is -EEXIST, then `arch_set_info_guest` checks it.
        VCPUOP_initialise => {
            let c: VcpuGuestContext = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            if ctx.dom.vcpus[idx].initialised {
                return Err(Errno::EEXIST);
            }
            initialise(ctx, idx, &c)?;
            // A vCPU that came up may run: the scheduler looks again.
            ctx.fx.kicks.add(ctx.dom.id);
            Ok(0)
        }
        // Only an initialised vCPU comes up (-EINVAL); one already up stays so.
        VCPUOP_up => {
            let now = ctx.m.now_ns();
            let v = &mut ctx.dom.vcpus[idx];
            if !v.initialised {
                return Err(Errno::EINVAL);
            }
            if !v.up {
                v.up = true;
                v.runstate.set(RUNSTATE_runnable, now);
                ctx.fx.kicks.add(ctx.dom.id);
            }
            Ok(0)
        }
        // Taking the last vCPU that is up down shuts the domain down instead (`do_vcpu_op`:
        // "Last vcpu going down?" -> `domain_shutdown(d, SHUTDOWN_poweroff)`, the vCPU stays
        // up), where a code the guest set with `SCHEDOP_shutdown_code` wins and a domain already
        // shut down stays as it is. Linux does this from `halt()` with interrupts off, e.g.
        // after an early panic. Any other vCPU just stops running.
        VCPUOP_down => {
            let others_up = ctx
                .dom
                .vcpus
                .iter()
                .enumerate()
                .any(|(i, v)| i != idx && v.up);
            if !others_up {
                if ctx.dom.shutdown.is_none() {
                    let reason = ctx
                        .dom
                        .shutdown_code
                        .unwrap_or(hypercall_abi::sched::SHUTDOWN_poweroff);
                    ctx.dom.shutdown = Some(crate::domain::Shutdown::Requested(reason));
                }
                return Ok(0);
            }
            let now = ctx.m.now_ns();
            let v = &mut ctx.dom.vcpus[idx];
            if v.up {
                v.up = false;
                if !me {
                    v.runstate.set(RUNSTATE_offline, now);
                }
                // The caller may have taken itself down: the scheduler runs another vCPU.
                ctx.fx.kicks.add(ctx.dom.id);
            }
            Ok(0)
        }
        VCPUOP_is_up => Ok(i64::from(ctx.dom.vcpus[idx].up)),
        VCPUOP_get_runstate_info => {
            let info = ctx.dom.vcpus[idx].runstate.info(ctx.m.now_ns());
            copy_to_guest(&mut ctx.guest(), GuestPtr::new(arg), &info)?;
            Ok(0)
        }
        VCPUOP_set_periodic_timer => {
            let set: VcpuSetPeriodicTimer = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            if !(MIN_PERIOD_NS..=MAX_PERIOD_NS).contains(&set.period_ns) {
                return Err(Errno::EINVAL);
            }
            ctx.dom.vcpus[idx].periodic_period = set.period_ns;
            Ok(0)
        }
        VCPUOP_stop_periodic_timer => {
            ctx.dom.vcpus[idx].periodic_period = 0;
            Ok(0)
        }
        // The single-shot timer is the caller's own only (`v != current`: -EINVAL, before the
        // argument is read).
        VCPUOP_set_singleshot_timer | VCPUOP_stop_singleshot_timer if !me => Err(Errno::EINVAL),
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
        // `guest_handle_okay`: an address the guest may not name is -EFAULT (only the start is
        // checked, as Xen's `access_ok`). The area is written now, through the caller's tables,
        // and again at every context switch of that vCPU ([`update_runstate_area`]).
        VCPUOP_register_runstate_memory_area => {
            let area: VcpuRegisterRunstateMemoryArea =
                copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            if !guest_va_ok(area.addr) {
                return Err(Errno::EFAULT);
            }
            ctx.dom.vcpus[idx].runstate_area = area.addr;
            if area.addr != 0 {
                // A bad address is the guest's loss (Xen ignores `__copy_to_guest`'s result).
                let info = ctx.dom.vcpus[idx].runstate.info(ctx.m.now_ns());
                let _ = copy_to_guest(&mut ctx.guest(), GuestPtr::new(area.addr), &info);
            }
            Ok(0)
        }
        VCPUOP_register_vcpu_info => {
            let info: VcpuRegisterVcpuInfo = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            register_vcpu_info(ctx, idx, info)
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
        // x86's `arch_do_vcpu_op`: the argument must be null; an NMI already pending is not
        // counted twice. It is delivered to the vCPU's NMI callback on its way back to the guest
        // (`bounce::deliver_nmi`).
        VCPUOP_send_nmi => {
            if arg != 0 {
                return Err(Errno::EINVAL);
            }
            let v = &mut ctx.dom.vcpus[idx];
            if !v.nmi_pending {
                v.nmi_pending = true;
                ctx.fx.kicks.add(ctx.dom.id);
            }
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Xen's `update_runstate_area`, called at each context switch for the vCPU leaving the CPU and
/// the one taking it: writes vCPU `idx`'s runstate at `now` into the area it registered, if any,
/// through that vCPU's kernel page tables. With `VMASST_TYPE_runstate_update_flag` enabled a
/// reader can tell a record being rewritten: `XEN_RUNSTATE_UPDATE` (bit 63 of
/// `state_entry_time`) is set first by writing that field's top byte alone, the record is
/// written with the bit set, then the byte is written again without it. A fault (the area
/// unmapped, read-only) is ignored, as in Xen.
pub fn update_runstate_area<M: MachineMemoryMut + ?Sized>(
    mem: &mut M,
    dom: &Domain,
    idx: usize,
    now: u64,
) {
    let Some(v) = dom.vcpus.get(idx) else {
        return;
    };
    // Only through a kernel L4 the vCPU holds (an uninitialised vCPU has none).
    if v.runstate_area == 0 || !v.initialised {
        return;
    }
    let mut g = PageTableGuest { mem, l4: v.l4 };
    let mut info = v.runstate.info(now);
    // The top byte of `state_entry_time`, where XEN_RUNSTATE_UPDATE lives.
    let flag_byte = v
        .runstate_area
        .wrapping_add(core::mem::offset_of!(VcpuRunstateInfo, state_entry_time) as u64 + 7);
    let flagged = dom.vm_assist & (1 << VMASST_TYPE_runstate_update_flag) != 0;
    if flagged {
        info.state_entry_time |= XEN_RUNSTATE_UPDATE;
        let _ = g.write(flag_byte, &[(info.state_entry_time >> 56) as u8]);
    }
    let _ = copy_to_guest(&mut g, GuestPtr::new(v.runstate_area), &info);
    if flagged {
        info.state_entry_time &= !XEN_RUNSTATE_UPDATE;
        let _ = g.write(flag_byte, &[(info.state_entry_time >> 56) as u8]);
    }
}

/// Most GDT entries a guest may install (`FIRST_RESERVED_GDT_ENTRY`).
const MAX_GDT_ENTS: u64 = 0xe000 / 8;
/// Most LDT entries (`arch_set_info_guest`: 8192).
const MAX_LDT_ENTS: u64 = 8192;

/// Why [`check_context`] refused a `vcpu_guest_context`: each check its own variant; the guest
/// sees -EINVAL for every one, as from Xen's `arch_set_info_guest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadContext {
    /// A RIP, RSP, stack, base or callback address that is not canonical.
    NonCanonical,
    /// A trap table entry whose handler is not canonical.
    NonCanonicalTrap,
    /// `ldt_base` in the hypervisor's range (`__addr_ok`).
    LdtInHypervisor,
    /// `ldt_base` not page aligned, or more than 8192 entries.
    BadLdt,
    /// Starting in guest user mode (no `VGCF_in_kernel`) without user page tables
    /// (`ctrlreg[1]` 0).
    UserModeWithoutUserTables,
    /// More GDT entries than the guest may have.
    TooManyGdtEntries,
}

/// The checks of `arch_set_info_guest` for a 64-bit PV vCPU that need no frame table, in Xen's
/// order.
pub fn check_context(c: &VcpuGuestContext) -> Result<(), BadContext> {
    let addresses = [
        c.user_regs.rip,
        c.user_regs.rsp,
        c.kernel_sp,
        c.fs_base,
        c.gs_base_kernel,
        c.gs_base_user,
        c.event_callback_eip,
        c.syscall_callback_eip,
        c.failsafe_callback_eip,
    ];
    if !addresses.iter().all(|&a| is_canonical(a)) || (c.ldt_ents != 0 && !is_canonical(c.ldt_base))
    {
        return Err(BadContext::NonCanonical);
    }
    if !c.trap_ctxt.iter().all(|t| is_canonical(t.address)) {
        return Err(BadContext::NonCanonicalTrap);
    }
    if !guest_va_ok(c.ldt_base) {
        return Err(BadContext::LdtInHypervisor);
    }
    if c.ldt_base & 0xfff != 0 || c.ldt_ents > MAX_LDT_ENTS {
        return Err(BadContext::BadLdt);
    }
    if c.flags & VGCF_in_kernel == 0 && c.ctrlreg[1] == 0 {
        return Err(BadContext::UserModeWithoutUserTables);
    }
    if c.gdt_ents > MAX_GDT_ENTS {
        return Err(BadContext::TooManyGdtEntries);
    }
    Ok(())
}

/// `arch_set_info_guest` for a vCPU that is not initialised yet (64-bit PV): the checks of
/// [`check_context`], then the GDT frames (`pv_set_gdt`: the domain's, valid descriptor pages),
/// then `ctrlreg[3]` (the kernel L4: a frame of the domain that takes the L4 type, i.e. validates
/// as a top-level table; a reference is held while installed) and, if set, `ctrlreg[1]` (the user
/// L4, the same). Any refusal is -EINVAL and leaves the vCPU as it was (what was taken is given
/// back). Then the state is installed: registers (RFLAGS.IOPL becomes the virtual IOPL, IF set),
/// trap table, LDT, stack, callbacks, bases (a non-null FS/GS selector kills its base), CR0.TS,
/// CR4, debug registers (each as `set_debugreg`, bad ones ignored), and the mode; `VGCF_online`
/// brings it up. Its FPU starts in the initial state (`fpu_ctxt` is not loaded).
fn initialise<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    idx: usize,
    c: &VcpuGuestContext,
) -> Result<(), Errno> {
    check_context(c).map_err(|_| Errno::EINVAL)?;
    let id = ctx.dom.id;
    // The GDT, installed as the target vCPU would (`install_gdt` acts on the running vCPU: the
    // handler acts as vCPU `idx` for its length; the caller's registers are not in the domain).
    let frames: heapless::Vec<Mfn, 16> = c.gdt_frames.iter().map(|&f| Mfn(f)).collect();
    let caller = ctx.dom.cur_vcpu;
    ctx.dom.cur_vcpu = idx;
    let gdt = super::gdt::install_gdt(ctx, &frames, c.gdt_ents as u32);
    ctx.dom.cur_vcpu = caller;
    gdt.map_err(|_| Errno::EINVAL)?;
    // The base pointers.
    let kernel = Mfn(c.ctrlreg[3] >> 12);
    let user = (c.ctrlreg[1] != 0).then_some(Mfn(c.ctrlreg[1] >> 12));
    let gdt = core::mem::take(&mut ctx.dom.vcpus[idx].gdt_frames);
    let taken = {
        let Some((mm, mem)) = ctx.m.mm() else {
            return Err(Errno::ENOSYS);
        };
        let (mut pt, _) = pt(mm, mem, ctx.dom, &mut ctx.fx.flush);
        let mut take = |mfn: Mfn| {
            pt.mm.frames.mfn_valid(mfn)
                && pt
                    .get_page_and_type(mfn, Owner::Domain(id), PageType::L4)
                    .is_ok()
        };
        let k = take(kernel);
        let u = k && user.is_none_or(&mut take);
        if k && !u {
            pt.put_page_and_type(kernel);
        }
        if !u {
            // `pv_destroy_gdt`.
            for &g in &gdt {
                pt.put_page_and_type(g);
            }
        }
        u
    };
    if !taken {
        ctx.dom.vcpus[idx].gdt_ents = 0;
        return Err(Errno::EINVAL);
    }
    ctx.dom.vcpus[idx].gdt_frames = gdt;
    let now = ctx.m.now_ns();
    let v = &mut ctx.dom.vcpus[idx];
    v.l4 = kernel;
    v.user_l4 = user;
    let r = &c.user_regs;
    let mut regs = Regs {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rbp: r.rbp,
        rdi: r.rdi,
        rsi: r.rsi,
        rdx: r.rdx,
        rcx: r.rcx,
        rbx: r.rbx,
        rax: r.rax,
        // Entered with `iretq`, every register restored.
        vector: crate::regs::ENTRY_RESTORE_ALL,
        error_code: 0,
        rip: r.rip,
        cs: r.cs.into(),
        rflags: r.rflags,
        rsp: r.rsp,
        ss: r.ss.into(),
    };
    // IOPL is virtualised; real interrupts stay enabled; selectors get RPL 3
    // (`fixup_guest_{code,stack}_selector`).
    v.iopl = ((r.rflags & crate::regs::rflags::IOPL) >> 12) as u8;
    regs.sanitise_for_guest();
    v.regs = regs;
    // (Checked canonical above.)
    for (vector, t) in (0..=255u8).zip(c.trap_ctxt.iter()) {
        let mut t = *t;
        t.cs |= 3;
        v.trap_ctxt.set(vector, &t)?;
    }
    v.ldt_base = c.ldt_base;
    v.ldt_ents = c.ldt_ents as u32;
    v.kernel_ss = c.kernel_ss | 3;
    v.kernel_sp = c.kernel_sp;
    v.event_callback = c.event_callback_eip;
    v.failsafe_callback = c.failsafe_callback_eip;
    v.syscall_callback = c.syscall_callback_eip;
    v.callback_flags = c.flags & (VGCF_failsafe_disables_events | VGCF_syscall_disables_events);
    v.fs_base = if r.fs & !3 == 0 { c.fs_base } else { 0 };
    v.gs_base_kernel = c.gs_base_kernel;
    v.gs_base_user = if r.gs & !3 == 0 { c.gs_base_user } else { 0 };
    v.base_writes = v.base_writes.wrapping_add(1);
    v.fpu_ts = c.ctrlreg[0] & (1 << 3) != 0;
    // Only the bits a PV guest owns and this CPU offers (Xen's `pv_fixup_guest_cr4`); the
    // emulated `mov %reg,%cr4` keeps the same ones.
    v.cr4 = c.ctrlreg[4] & crate::emulate::PV_CR4_GUEST_MASK & ctx.info.pv_cr4_writable;
    v.dr = [0; 4];
    v.dr6 = crate::domain::DR6_DEFAULT;
    v.dr7 = 0x400;
    // As Xen: DR0-DR3, DR6 and DR7 only (debugreg[4] and [5] would be aliases of DR6 and DR7
    // without CR4.DE, and Xen never applies them).
    for reg in [0, 1, 2, 3, 6, 7] {
        let _ = crate::emulate::debugreg::set_debugreg(v, reg, c.debugreg[reg as usize]);
    }
    v.kernel_mode = c.flags & VGCF_in_kernel != 0;
    v.initialised = true;
    v.up = c.flags & VGCF_online != 0;
    v.runstate.set(
        if v.up {
            RUNSTATE_runnable
        } else {
            RUNSTATE_offline
        },
        now,
    );
    Ok(())
}

/// `VCPUOP_register_vcpu_info` (`map_vcpu_info`, `xen/common/domain.c`): moves vCPU `idx`'s
/// `vcpu_info` out of shared_info into the guest frame `mfn` at `offset`, which must hold the
/// whole structure; once only (-EINVAL after); for the caller itself or a vCPU that is down
/// (-EINVAL otherwise). The frame must be the domain's and take a writable type (not a page table
/// or descriptor page: -EINVAL); it keeps a general and a writable type reference while
/// registered, dropped when the domain is torn down. The current contents are copied over, then
/// an upcall and every selector bit are marked pending so the vCPU rescans its event channels
/// ("Mark everything as being pending just to make sure nothing gets lost").
fn register_vcpu_info<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    idx: usize,
    info: VcpuRegisterVcpuInfo,
) -> HcResult {
    const PAGE_SIZE: u32 = 4096;
    let v = &ctx.dom.vcpus[idx];
    if info.offset > PAGE_SIZE - VCPU_INFO_SIZE as u32 || v.vcpu_info.is_some() {
        return Err(Errno::EINVAL);
    }
    // "Run this command on yourself or on other offline VCPUS."
    if idx != ctx.dom.cur_vcpu && v.up {
        return Err(Errno::EINVAL);
    }
    let id = ctx.dom.id;
    let old_at = Maddr(ctx.dom.shared_info.maddr().0 + (idx * VCPU_INFO_SIZE) as u64);
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
    if let Some(b) = mem.read(old_at, VCPU_INFO_SIZE) {
        old.copy_from_slice(b);
    }
    let at = Maddr(mfn.maddr().0 + u64::from(info.offset));
    // Cannot fail: a frame of the domain's, which the frame table just vouched for.
    let _ = mem.write(at, &old);
    ctx.dom.vcpus[idx].vcpu_info = Some((mfn, info.offset));
    let mut page = crate::shared_info::SharedInfoPage::of_domain_mut(mem, ctx.dom);
    page.test_and_set_upcall_pending(idx as u32);
    for word in 0..64 {
        page.test_and_set_pending_sel(idx as u32, word);
    }
    Ok(0)
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
            pv_cr4_writable: crate::emulate::PV_CR4_GUEST_MASK,
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
            pv_cr4_writable: crate::emulate::PV_CR4_GUEST_MASK,
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
