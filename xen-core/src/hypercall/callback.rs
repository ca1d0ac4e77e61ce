//! `set_callbacks` and `callback_op`: where the guest wants events, failsafe returns and
//! guest-user `syscall`s delivered (`public/callback.h`, Xen's `pv/callback.c`).

use hypercall_abi::arch_x86_64::{VGCF_failsafe_disables_events, VGCF_syscall_disables_events};
use hypercall_abi::callback::*;
use hypercall_abi::errno::Errno;

use crate::ctx::{Ctx, HcResult, Machine};
use crate::guest_access::{copy_from_guest, is_canonical, GuestPtr};

/// Vector of the NMI, whose callback lives in the trap table.
const TRAP_NMI: u8 = 2;

fn register<M: Machine + ?Sized>(ctx: &mut Ctx<'_, M>, reg: &CallbackRegister) -> HcResult {
    if !is_canonical(reg.address) {
        return Err(Errno::EINVAL);
    }
    let v = ctx.dom.vcpu_mut();
    let mask = reg.flags & CALLBACKF_mask_events != 0;
    let set_flag = |flags: &mut u64, bit: u64| {
        if mask {
            *flags |= bit;
        } else {
            *flags &= !bit;
        }
    };
    match reg.r#type {
        CALLBACKTYPE_event => v.event_callback = reg.address,
        CALLBACKTYPE_failsafe => {
            v.failsafe_callback = reg.address;
            set_flag(&mut v.callback_flags, VGCF_failsafe_disables_events);
        }
        CALLBACKTYPE_syscall => {
            v.syscall_callback = reg.address;
            set_flag(&mut v.callback_flags, VGCF_syscall_disables_events);
        }
        // `syscall` from 32-bit code enters here (Xen's `cstar_enter`); its event masking follows
        // VGCF_syscall_disables_events like the 64-bit one (`switch_to_kernel`).
        CALLBACKTYPE_syscall32 => v.syscall32_callback = reg.address,
        // `sysenter` is not delivered (it faults with #GP, reflected to the guest): accepted.
        CALLBACKTYPE_sysenter => {}
        CALLBACKTYPE_nmi => {
            let t = hypercall_abi::arch_x86_64::TrapInfo {
                vector: TRAP_NMI,
                address: reg.address,
                cs: hypercall_abi::arch_x86_64::FLAT_KERNEL_CS,
                flags: 0,
                ..Default::default()
            };
            v.trap_ctxt.set(TRAP_NMI, &t)?;
        }
        _ => return Err(Errno::ENOSYS),
    }
    Ok(0)
}

pub(super) fn set_callbacks<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    event: u64,
    failsafe: u64,
    syscall: u64,
) -> HcResult {
    // Xen registers the three and ignores their individual results.
    for (kind, address) in [
        (CALLBACKTYPE_event, event),
        (CALLBACKTYPE_failsafe, failsafe),
        (CALLBACKTYPE_syscall, syscall),
    ] {
        let reg = CallbackRegister {
            r#type: kind,
            address,
            ..Default::default()
        };
        let _ = register(ctx, &reg);
    }
    Ok(0)
}

pub(super) fn callback_op<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    cmd: u64,
    arg: u64,
) -> HcResult {
    match crate::ctx::cmd32(cmd) {
        CALLBACKOP_register => {
            let reg: CallbackRegister = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            register(ctx, &reg)
        }
        CALLBACKOP_unregister => {
            let unreg: CallbackUnregister = copy_from_guest(&ctx.guest(), GuestPtr::new(arg))?;
            match unreg.r#type {
                CALLBACKTYPE_nmi => {
                    ctx.dom
                        .vcpu_mut()
                        .trap_ctxt
                        .update(TRAP_NMI, |t| t.address = 0)?;
                    Ok(0)
                }
                CALLBACKTYPE_event
                | CALLBACKTYPE_failsafe
                | CALLBACKTYPE_syscall
                | CALLBACKTYPE_syscall32
                | CALLBACKTYPE_sysenter => Err(Errno::EINVAL),
                _ => Err(Errno::ENOSYS),
            }
        }
        _ => Err(Errno::ENOSYS),
    }
}
