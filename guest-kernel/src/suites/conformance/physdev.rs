//! Conformance cases for `physdev_op` and the port I/O a PV dom0 gets through it.
//!
//! `PHYSDEVOP_set_iopl` sets the vCPU's virtual IOPL; with it at 1 the guest kernel's
//! `in`/`out` instructions (which fault in ring 3) are emulated by Xen
//! (`emulate_privileged_op`, `guest_io_okay`): a port the domain may use is accessed for real,
//! one the hypervisor keeps (the PIC here) reads all-ones. With IOPL 0 they stay a #GP. The
//! port values printed are ones every correct hypervisor gives on the same QEMU machine: the
//! i440FX host bridge's ID through 0xCF8/0xCFC and the master PIC's mask port, withheld.

use hypercall_abi::physdev::{PHYSDEVOP_set_iopl, PhysdevSetIopl};

use super::{values, Suite, BAD_CMD, UNMAPPED};
use crate::kernel::hypercall as hc;
use crate::kernel::traps::probe;

/// `physdev_op(PHYSDEVOP_set_iopl, {iopl})`.
fn set_iopl(iopl: u32) -> i64 {
    hc::physdev_op(&mut PhysdevSetIopl { iopl })
}

/// Every case of this group; leaves the IOPL at 0, as the suite found it.
pub(super) fn cases(s: &mut Suite) {
    s.group("physdev", |s| {
        s.run("physdev_op.set_iopl_range", || {
            let (a, b, c) = (set_iopl(3), set_iopl(4), set_iopl(0));
            values!("iopl3={a} iopl4={b} iopl0={c}")
        });
        s.run("physdev_op.set_iopl_bad_pointer", || {
            // SAFETY: the hypervisor only reads through the (unmapped) pointer and fails.
            let rc = unsafe {
                hc::hypercall(
                    hypercall_abi::xen::__HYPERVISOR_physdev_op,
                    PHYSDEVOP_set_iopl.into(),
                    UNMAPPED,
                    0,
                    0,
                    0,
                )
            };
            values!("rc={rc}")
        });
        s.run("physdev_op.unknown_cmd", || {
            let mut arg = PhysdevSetIopl { iopl: 0 };
            // SAFETY: an unknown command touches nothing; `arg` is writable anyway.
            let rc = unsafe { hc::raw::physdev_op(BAD_CMD, hc::ptr(&raw mut arg)) };
            values!("rc={rc}")
        });
        s.run("io.in_without_iopl", || {
            let _ = set_iopl(0);
            // SAFETY: reading the POST port has no effect; at IOPL 0 it is a #GP, resumed after.
            let p = unsafe { probe!("inb $0x80, %al", out("eax") _) };
            values!("{p}")
        });
        s.run("io.pci_host_bridge_id", || {
            let rc = set_iopl(1);
            let mut id: u32 = 0;
            // SAFETY: selects register 0 of 00:00.0 and reads it: configuration reads of the ID
            // register have no effect.
            let p = unsafe {
                probe!(
                    "movw $0xcf8, %dx\nmovl $0x80000000, %eax\noutl %eax, %dx\nmovw $0xcfc, %dx\ninl %dx, %eax",
                    inout("eax") id,
                    out("edx") _
                )
            };
            let _ = set_iopl(0);
            values!("set_iopl={rc} {p} id={id:#x}")
        });
        s.run("io.withheld_port_reads_ones", || {
            let rc = set_iopl(1);
            let mut v: u32 = 0;
            // SAFETY: the master PIC's mask register; the hypervisor keeps it and answers
            // all-ones without touching it.
            let p = unsafe { probe!("xorl %eax, %eax\ninb $0x21, %al", inout("eax") v) };
            let _ = set_iopl(0);
            values!("set_iopl={rc} {p} value={v:#x}")
        });
    });
}
