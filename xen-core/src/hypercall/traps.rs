//! The virtual CPU's trap-related hypercalls: `set_trap_table`, `iret`, `stack_switch`,
//! `set_segment_base`, `fpu_taskswitch`, `vm_assist`.

use hypercall_abi::arch_x86_64::*;
use hypercall_abi::errno::Errno;
use hypercall_abi::xen::*;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::guest_access::{copy_from_guest, is_canonical, GuestPtr};
use crate::regs::rflags;

/// `do_set_trap_table` (`xen/arch/x86/pv/traps.c`): reads `trap_info` entries until one with
/// address 0. The list is the guest's and may be any length (one page aliased at a million
/// addresses makes it 2^20 entries and more), so after each entry Xen asks
/// `hypercall_preempt_check()` and, if the CPU is wanted, continues with the list advanced past
/// the entries done (`hypercall_create_continuation(__HYPERVISOR_set_trap_table, "h", traps)`).
/// Entries done stay done, also when a later one faults (-EFAULT) or is non-canonical (-EINVAL).
pub(super) fn set_trap_table<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, list: u64) -> HcResult {
    if list == 0 {
        // A null table clears the whole virtual IDT.
        ctx.dom.vcpu_mut().trap_ctxt.clear();
        return Ok(0);
    }
    let mut at = list;
    loop {
        let mut ti: TrapInfo = copy_from_guest(&ctx.guest(), GuestPtr::new(at))?;
        if ti.address == 0 {
            return Ok(0);
        }
        // `fixup_guest_code_selector`: a 64-bit PV kernel's selectors carry RPL 3. A
        // non-canonical handler is -EINVAL.
        ti.cs |= 3;
        ctx.dom.vcpu_mut().trap_ctxt.set(ti.vector, &ti)?;
        at = at.wrapping_add(core::mem::size_of::<TrapInfo>() as u64);
        if ctx.preempt_check() {
            return ctx.create_continuation(&[at]);
        }
    }
}

/// `iret`: returns from a bounced exception or event (`pv/iret.c: do_iret`). The stub pushed
/// RCX, R11, RAX on top of the guest-built frame, so RSP points at an `iret_context`
/// (`arch-x86/xen-x86_64.h`). The RPL of the saved CS chooses the mode: 3 returns to guest user
/// mode (toggling to it: user page tables, user GS base), anything else stays in kernel mode. CS
/// and SS get RPL 3 either way, since both modes run in ring 3.
/// With `VMASST_TYPE_architectural_iopl` the frame's RFLAGS.IOPL sets the virtual IOPL.
pub(super) fn iret<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>) -> HcResult {
    let rsp = ctx.regs.rsp;
    let Ok(saved) = copy_from_guest::<IretContext>(&ctx.guest(), GuestPtr::new(rsp)) else {
        ctx.fx.crash = Some("fault while reading the iret context from the guest stack");
        return Ok(0);
    };
    // The end of an NMI handler, or of any frame: NMIs may be delivered again
    // (`async_exception_cleanup`). One waiting is delivered by the full way out.
    ctx.dom.vcpu_mut().nmi_masked = false;
    if ctx.dom.vcpu().nmi_pending {
        ctx.fx.full_exit = true;
    }
    // Returning to user mode? Hypercalls come from kernel mode only, so this is a toggle to user:
    // the full way out loads the user page tables and GS base (`load_vcpu`). Within kernel mode
    // the registers and the upcall mask are all that change, which the fast way back handles
    // (it delivers an upcall the unmasking lets through).
    if saved.cs & 3 == 3 {
        ctx.fx.full_exit = true;
        if let Err(why) = ctx.dom.toggle_guest_mode() {
            ctx.fx.crash = Some(why);
            return Ok(0);
        }
    }
    // With `VMASST_TYPE_architectural_iopl` the frame's IOPL becomes the virtual one; the real
    // RFLAGS.IOPL stays 0 (`sanitise_for_guest`), so port I/O keeps faulting into the emulation.
    if ctx.dom.vm_assist & (1 << VMASST_TYPE_architectural_iopl) != 0 {
        ctx.dom.vcpu_mut().iopl = ((saved.rflags & rflags::IOPL) >> 12) as u8;
    }
    let r = &mut *ctx.regs;
    r.rip = saved.rip;
    r.cs = saved.cs;
    r.rflags = saved.rflags;
    r.rsp = saved.rsp;
    r.ss = saved.ss;
    r.sanitise_for_guest();
    if saved.flags & VGCF_in_syscall != 0 {
        // Returning to a `syscall` site: Xen leaves through `sysret`, which loads RCX and R11.
        r.rcx = r.rip;
        r.r11 = r.rflags;
    } else {
        r.rcx = saved.rcx;
        r.r11 = saved.r11;
        // Leave with `iretq`, which restores RCX and R11 instead of loading them.
        r.vector = crate::regs::ENTRY_RESTORE_ALL;
    }
    // The guest's virtual interrupt flag follows the returned RFLAGS.IF.
    let masked = saved.rflags & rflags::IF == 0;
    crate::shared_info::set_upcall_mask(ctx.m, ctx.dom, masked);
    Ok(saved.rax as i64)
}

pub(super) fn stack_switch<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    ss: u64,
    sp: u64,
) -> HcResult {
    // `fixup_guest_stack_selector`: force RPL 3. Xen accepts any value: it is checked when used.
    ctx.dom.vcpu_mut().kernel_ss = ss | 3;
    ctx.dom.vcpu_mut().kernel_sp = sp;
    Ok(0)
}

pub(super) fn set_segment_base<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    which: u64,
    base: u64,
) -> HcResult {
    let v = ctx.dom.vcpu_mut();
    if matches!(
        which as u32,
        SEGBASE_FS | SEGBASE_GS_USER | SEGBASE_GS_KERNEL | SEGBASE_GS_USER_SEL
    ) {
        v.base_writes = v.base_writes.wrapping_add(1);
    }
    match which as u32 {
        SEGBASE_FS | SEGBASE_GS_USER | SEGBASE_GS_KERNEL if !is_canonical(base) => {
            Err(Errno::EINVAL)
        }
        SEGBASE_FS => {
            v.fs_base = base;
            Ok(0)
        }
        SEGBASE_GS_USER => {
            v.gs_base_user = base;
            Ok(0)
        }
        SEGBASE_GS_KERNEL => {
            v.gs_base_kernel = base;
            Ok(0)
        }
        // Loading a user GS selector: the flat selectors (and the null one, which a bad one becomes)
        // have base 0, which becomes the user GS base (Xen re-reads the base after the load).
        SEGBASE_GS_USER_SEL => {
            v.gs_base_user = 0;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

pub(super) fn fpu_taskswitch<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, set: u64) -> HcResult {
    ctx.dom.vcpu_mut().fpu_ts = set as u32 != 0;
    Ok(0)
}

/// VM assists a 64-bit PV guest may enable (`NATIVE_VM_ASSIST_VALID`).
const VM_ASSIST_VALID: u64 = (1 << VMASST_TYPE_4gb_segments)
    | (1 << VMASST_TYPE_4gb_segments_notify)
    | (1 << VMASST_TYPE_writable_pagetables)
    | (1 << VMASST_TYPE_pae_extended_cr3)
    | (1 << VMASST_TYPE_architectural_iopl)
    | (1 << VMASST_TYPE_runstate_update_flag)
    | (1 << VMASST_TYPE_m2p_strict);

pub(super) fn vm_assist<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    cmd: u64,
    kind: u64,
) -> HcResult {
    let kind = kind as u32;
    if kind >= 64 || VM_ASSIST_VALID & (1 << kind) == 0 {
        return Err(Errno::EINVAL);
    }
    match cmd as u32 {
        VMASST_CMD_enable => ctx.dom.vm_assist |= 1 << kind,
        VMASST_CMD_disable => ctx.dom.vm_assist &= !(1 << kind),
        _ => return Err(Errno::ENOSYS),
    }
    Ok(0)
}
