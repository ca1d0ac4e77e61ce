//! `hostile=bad-iret`: `iret` hypercalls to selectors the CPU refuses (issue 11, finding 3).
//!
//! The hypervisor forces RPL 3 on the CS and SS of an `iret` frame and leaves through `iretq`.
//! With CS 0xe008 (the hypervisor's code segment, DPL 0) or a null SS that `iretq` faults in
//! ring 0; without an exception-table fixup the machine stops. As on Xen 4.17, the fault must
//! reach the guest instead (#GP with the selector as error code) and the hypervisor carry on.

use hypercall_abi::arch_x86_64::{FLAT_KERNEL_CS, FLAT_KERNEL_SS};

use crate::kernel::traps;

/// The attack: both bad frames, each reported as `<name>=vector/error/at_target`.
pub fn run() -> Result<(), &'static str> {
    for (name, cs, ss) in [
        ("hypervisor_cs", 0xe008u64, u64::from(FLAT_KERNEL_SS)),
        ("null_ss", u64::from(FLAT_KERNEL_CS & !3), 0),
        ("hypervisor_ss", u64::from(FLAT_KERNEL_CS & !3), 0xe010),
    ] {
        let (trap, at_target) = traps::iret_with_selectors(cs, ss);
        match trap {
            Some(t) => println!(
                "hostile: bad-iret: {name}={}/{:#x}/{}",
                t.vector,
                t.error_code.unwrap_or(0),
                u8::from(at_target)
            ),
            None => println!("hostile: bad-iret: {name}=none"),
        }
    }
    Ok(())
}
