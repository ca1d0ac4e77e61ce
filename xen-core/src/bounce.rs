//! Delivering exceptions and events to a PV guest: Xen's bounce frame on the guest kernel stack.
//!
//! When a guest takes an exception (or an event upcall is due), the hypervisor does not return to
//! the interrupted instruction. It pushes a frame on the guest kernel's stack and enters the
//! handler the guest registered (`set_trap_table`, `callback_op`). The frame
//! (`x86_64/entry.S: create_bounce_frame`), from the new stack pointer upwards:
//!
//! ```text
//!   RCX, R11, [error code], RIP, CS | saved_upcall_mask << 32, RFLAGS, RSP, SS
//! ```
//!
//! The stack is the interrupted one (16-byte aligned down) in guest kernel mode. The saved CS has
//! its RPL cleared ("kernel context"), RFLAGS.IF carries the inverse of the saved upcall mask, and
//! the guest later returns with the `iret` hypercall. A handler address of 0, or a stack pointer
//! inside the hypervisor's range, crashes the domain: it could not take the exception.

use hypercall_abi::arch_x86_64::{
    FLAT_KERNEL_CS, FLAT_KERNEL_SS, HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START,
};

use crate::domain::Domain;
use crate::guest::{GuestMemory, PageTableGuest};
use crate::mm::MachineMemoryMut;
use crate::regs::{rflags, Regs};
use crate::shared;

/// Page-fault error-code bit: the access came from user mode.
const PFEC_USER: u32 = 1 << 2;
/// Vector numbers the bounce logic treats specially.
pub const TRAP_PAGE_FAULT: u8 = 14;

/// What to deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounce {
    /// Guest handler address.
    pub eip: u64,
    /// Error code to push, if the event has one.
    pub error_code: Option<u32>,
    /// Mask events on entry (`TBF_INTERRUPT`).
    pub mask_events: bool,
}

/// Why a bounce could not be delivered: the domain must be crashed.
pub type CrashReason = &'static str;

/// Builds the bounce frame for `b` on the guest stack and rewrites `regs` to enter the handler.
pub fn create_bounce_frame<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &Domain,
    regs: &mut Regs,
    b: Bounce,
) -> Result<(), CrashReason> {
    if b.eip == 0 {
        return Err("no handler registered for a trap or event it had to take");
    }
    // Guest kernel mode only until guest user mode arrives (memory issue); then a frame from user
    // mode goes on `vcpu.kernel_sp` after switching to the kernel page tables.
    let mut sp = regs.rsp & !0xf;
    if (HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END + 60).contains(&sp) {
        return Err("guest stack pointer inside the hypervisor's range");
    }
    let saved_mask = shared::upcall_mask(m, dom);
    if b.mask_events {
        shared::set_upcall_mask(m, dom, true);
    }
    let cs = (regs.cs & !3 & 0xffff) | (u64::from(saved_mask) << 32);
    let fl = (regs.rflags & !rflags::IF) | if saved_mask { 0 } else { rflags::IF };

    let mut words = [0u64; 8];
    let mut n = 0;
    let mut push = |v: u64| {
        words[n] = v;
        n += 1;
    };
    push(regs.rcx);
    push(regs.r11);
    if let Some(ec) = b.error_code {
        push(u64::from(ec));
    }
    push(regs.rip);
    push(cs);
    push(fl);
    push(regs.rsp);
    push(regs.ss);
    let bytes_len = n * 8;
    sp = sp.wrapping_sub(bytes_len as u64);
    let mut bytes = [0u8; 64];
    for (i, w) in words[..n].iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let mut g = PageTableGuest { mem: m, l4: dom.l4 };
    g.write(sp, &bytes[..bytes_len])
        .map_err(|_| "fault while writing an exception frame to the guest stack")?;

    regs.rflags &= !(rflags::AC | rflags::VM | rflags::RF | rflags::NT | rflags::TF);
    regs.ss = FLAT_KERNEL_SS.into();
    regs.rsp = sp;
    regs.cs = FLAT_KERNEL_CS.into();
    regs.rip = b.eip;
    Ok(())
}

/// Delivers hardware exception `vector` (with `error_code` where the CPU pushes one) through the
/// guest's trap table; for a page fault, `cr2` goes to `vcpu_info.arch.cr2`.
pub fn inject_exception<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &Domain,
    regs: &mut Regs,
    vector: u8,
    error_code: Option<u32>,
    cr2: u64,
) -> Result<(), CrashReason> {
    let ti = dom.vcpu.trap_ctxt[usize::from(vector)];
    let mut error_code = error_code;
    if vector == TRAP_PAGE_FAULT {
        shared::set_cr2(m, dom, cr2);
        // The CPU saw ring 3; the guest wants to know whether its *user* mode faulted.
        error_code = error_code.map(|e| {
            let e = e & !PFEC_USER;
            if dom.vcpu.kernel_mode {
                e
            } else {
                e | PFEC_USER
            }
        });
    }
    create_bounce_frame(
        m,
        dom,
        regs,
        Bounce {
            eip: ti.address,
            error_code,
            mask_events: ti.flags & 4 != 0,
        },
    )
}

/// Delivers a pending event upcall if the guest has events pending and unmasked. Returns whether
/// one was delivered.
pub fn deliver_upcall<M: MachineMemoryMut + ?Sized>(
    m: &mut M,
    dom: &Domain,
    regs: &mut Regs,
) -> Result<bool, CrashReason> {
    if shared::upcall_mask(m, dom) || !shared::upcall_pending(m, dom) {
        return Ok(false);
    }
    let eip = dom.vcpu.event_callback;
    create_bounce_frame(
        m,
        dom,
        regs,
        Bounce {
            eip,
            error_code: None,
            mask_events: true,
        },
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::copy_from_guest;
    use crate::hypercall::testing::{setup, GUEST_VA};

    #[test]
    fn exception_frame_layout_matches_xen() {
        let (mut m, mut d, _) = setup();
        d.vcpu.trap_ctxt[14].address = 0x10_1000;
        d.vcpu.trap_ctxt[14].flags = 4; // mask events
        let mut regs = Regs {
            rip: 0x10_2345,
            cs: 0xe033,
            rflags: 0x246,
            rsp: GUEST_VA + 0x808, // not 16-byte aligned: aligned down first
            ss: 0xe02b,
            rcx: 0x1111,
            r11: 0x2222,
            ..Regs::default()
        };
        inject_exception(&mut m, &d, &mut regs, 14, Some(0x6), 0xdead_b000).unwrap();
        assert_eq!(regs.rip, 0x10_1000);
        assert_eq!((regs.cs, regs.ss), (0xe033, 0xe02b));
        assert_eq!(regs.rsp, GUEST_VA + 0x800 - 64);
        let g = PageTableGuest {
            mem: &mut m,
            l4: d.l4,
        };
        let frame: [u64; 8] = copy_from_guest(&g, regs.rsp).unwrap();
        // RCX, R11, error code (user bit cleared: guest kernel mode), RIP, CS (RPL 0, mask 0 saved),
        // RFLAGS (IF = !saved mask), RSP, SS.
        assert_eq!(
            frame,
            [
                0x1111,
                0x2222,
                0x2,
                0x10_2345,
                0xe030,
                0x246,
                GUEST_VA + 0x808,
                0xe02b
            ]
        );
        assert!(shared::upcall_mask(&m, &d), "trap flag 4 masks events");
        let cr2 = m
            .mem
            .read_u64(crate::mm::Maddr(d.shared_info.maddr().0 + 16))
            .unwrap();
        assert_eq!(cr2, 0xdead_b000);
    }

    #[test]
    fn no_handler_or_bad_stack_crashes_the_domain() {
        let (mut m, d, _) = setup();
        let mut regs = Regs {
            rsp: GUEST_VA + 0x800,
            ..Regs::default()
        };
        assert!(inject_exception(&mut m, &d, &mut regs, 6, None, 0).is_err());
        let b = Bounce {
            eip: 0x1000,
            error_code: None,
            mask_events: false,
        };
        let mut regs = Regs {
            rsp: HYPERVISOR_VIRT_START + 0x100,
            ..Regs::default()
        };
        assert!(create_bounce_frame(&mut m, &d, &mut regs, b).is_err());
        let mut regs = Regs {
            rsp: 0x7000_0000_0000,
            ..Regs::default()
        };
        assert!(
            create_bounce_frame(&mut m, &d, &mut regs, b).is_err(),
            "unmapped stack"
        );
    }

    #[test]
    fn upcall_only_when_pending_and_unmasked() {
        let (mut m, mut d, _) = setup();
        d.vcpu.event_callback = 0x10_3000;
        let mut regs = Regs {
            rsp: GUEST_VA + 0x800,
            rflags: 0x202,
            cs: 0xe033,
            ..Regs::default()
        };
        shared::set_upcall_mask(&mut m, &d, true);
        shared::write_u8(&mut m, &d, shared::UPCALL_PENDING, 1);
        assert_eq!(deliver_upcall(&mut m, &d, &mut regs), Ok(false));
        shared::set_upcall_mask(&mut m, &d, false);
        assert_eq!(deliver_upcall(&mut m, &d, &mut regs), Ok(true));
        assert_eq!(regs.rip, 0x10_3000);
        assert!(
            shared::upcall_mask(&m, &d),
            "an upcall masks further upcalls"
        );
        let g = PageTableGuest {
            mem: &mut m,
            l4: d.l4,
        };
        let frame: [u64; 7] = copy_from_guest(&g, regs.rsp).unwrap();
        assert_eq!(
            frame[4], 0x202,
            "IF set: upcalls were unmasked when it was taken"
        );
    }
}
