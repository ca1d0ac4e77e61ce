//! Port I/O (`in`/`out`), Xen's `emulate_privileged_op` with `guest_io_okay` and `admin_io_okay`.

pub use crate::pci::PortBus;

use super::Emulated;
use crate::regs::Regs;

/// Which way a port access goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoDirection {
    /// `in`: the port's value goes to AL/AX/EAX.
    In,
    /// `out`: AL/AX/EAX goes to the port.
    Out,
}

/// One decoded `in`/`out` instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortAccess {
    /// The port (imm8, or DX).
    pub port: u16,
    /// Access width in bytes: 1, 2 or 4.
    pub bytes: u8,
    /// `in` or `out`.
    pub dir: IoDirection,
    /// The instruction's length, prefixes included.
    pub len: u64,
}

/// Decodes `in`/`out` at the start of `code` (opcodes E4-E7 with an imm8 port, EC-EF with the
/// port in DX; an operand-size prefix 0x66 makes the wide forms 16-bit; a REX prefix is allowed
/// and changes nothing, as on hardware). `ins`/`outs` are not decoded: Xen emulates them, we
/// reflect their #GP (none of our guests uses them).
pub fn decode_port_io(code: &[u8], dx: u64) -> Option<PortAccess> {
    let mut i = 0;
    let mut opsize16 = false;
    while let Some(&b) = code.get(i) {
        match b {
            0x66 => opsize16 = true,
            0x40..=0x4f => {}
            _ => break,
        }
        i += 1;
        if i > 4 {
            return None; // no instruction of ours needs more prefixes than that
        }
    }
    let op = *code.get(i)?;
    let wide = if opsize16 { 2 } else { 4 };
    let (bytes, dir) = match op {
        0xe4 | 0xec => (1, IoDirection::In),
        0xe5 | 0xed => (wide, IoDirection::In),
        0xe6 | 0xee => (1, IoDirection::Out),
        0xe7 | 0xef => (wide, IoDirection::Out),
        _ => return None,
    };
    let (port, len) = if op & 0x08 == 0 {
        (u16::from(*code.get(i + 1)?), i + 2)
    } else {
        (dx as u16, i + 1)
    };
    Some(PortAccess {
        port,
        bytes,
        dir,
        len: len as u64,
    })
}

/// `iopl_ok`: whether the vCPU's virtual IOPL lets the current guest mode use port I/O. The guest
/// kernel counts as ring 1 (ring 0 with `VMASST_TYPE_architectural_iopl`), user mode as ring 3.
pub fn iopl_ok(iopl: u8, kernel_mode: bool, architectural_iopl: bool) -> bool {
    let cpl = match (kernel_mode, architectural_iopl) {
        (true, true) => 0,
        (true, false) => 1,
        (false, _) => 3,
    };
    iopl >= cpl
}

/// The I/O ports no domain reaches directly (Xen's `dom0_setup_permissions` and
/// `ns16550_endboot`): the PICs (the hypervisor masks them), the PIT and the speaker port (TSC
/// and APIC calibration), the CMOS/RTC (the wall clock at boot; Xen emulates these for dom0,
/// `rtc_guest_read`), the serial console COM1, QEMU's isa-debug-exit device, through which the
/// hypervisor reports how the run ended, and PCI CONFIG_DATA, which the hypervisor accesses on
/// dom0's behalf after filtering ([`crate::pci::cfg_ok`]).
pub const HYPERVISOR_PORTS: &[core::ops::RangeInclusive<u16>] = &[
    0x20..=0x21,   // master PIC
    0x40..=0x43,   // PIT
    0x61..=0x61,   // PIT channel 2 gate, speaker
    0x70..=0x71,   // CMOS/RTC
    0xa0..=0xa1,   // slave PIC
    0xf4..=0xf7,   // isa-debug-exit (iobase 0xf4, iosize 4)
    0x3f8..=0x3ff, // COM1, the hypervisor's console
    0xcfc..=0xcff, // PCI CONFIG_DATA ("NB. 0xcf8 has special treatment")
];

/// `ioports_access_permitted(d, port, port + bytes - 1)`: the privileged domain (dom0) may use
/// every port but [`HYPERVISOR_PORTS`]; other domains none (no `XEN_DOMCTL_ioport_permission`
/// yet).
pub fn ioports_access_permitted(privileged: bool, port: u16, bytes: u8) -> bool {
    let first = u32::from(port);
    let last = first + u32::from(bytes.max(1)) - 1;
    privileged
        && last <= 0xffff
        && !HYPERVISOR_PORTS
            .iter()
            .any(|r| first <= u32::from(*r.end()) && u32::from(*r.start()) <= last)
}

/// `admin_io_okay`: whether the access goes to the machine's port as it is. A dword at
/// CONFIG_ADDRESS (0xCF8) never does: each domain has its own, which the hypervisor loads into
/// the real register for each data access it performs (narrower accesses at 0xCF8 are other
/// registers on PC chipsets and are ordinary ports, as on Xen 4.17).
pub fn admin_io_okay(privileged: bool, port: u16, bytes: u8) -> bool {
    !(port == crate::pci::PCI_CONF_ADDRESS && bytes == 4)
        && ioports_access_permitted(privileged, port, bytes)
}

/// The size of the next piece of a data-port access at `port` with `bytes` left, as Xen's
/// `guest_io_read`/`guest_io_write` split it: up to the end of CONFIG_DATA, never 3.
fn conf_data_piece(port: u16, bytes: u8) -> u8 {
    match bytes.min(4 - (port & 3) as u8) {
        3 => 2,
        n => n,
    }
}

/// Xen's `guest_io_read` for an access [`admin_io_okay`] refused, byte by byte or piece by
/// piece: the domain's CONFIG_ADDRESS for a dword at 0xCF8, configuration space through
/// [`crate::pci::cfg_ok`] at 0xCFC-0xCFF, all-ones for every other port (Xen emulates the PIT
/// and RTC for dom0 here; we do not).
fn guest_io_read(
    dom: &crate::domain::Domain,
    mut port: u16,
    mut bytes: u8,
    bus: &mut dyn PortBus,
) -> u32 {
    let mut data = 0u32;
    let mut shift = 0;
    while bytes != 0 {
        let mut size = 1;
        let mut sub = u32::MAX;
        if port == crate::pci::PCI_CONF_ADDRESS && bytes == 4 {
            size = 4;
            sub = dom.pci_cf8;
        } else if port & 0xfffc == crate::pci::PCI_CONF_DATA {
            let offset = (port & 3) as u8;
            size = conf_data_piece(port, bytes);
            if crate::pci::cfg_ok(dom.privileged, dom.pci_cf8, offset, size, false, bus) {
                sub = crate::pci::conf_read(bus, dom.pci_cf8, offset, size);
            }
        }
        if size == 4 {
            return sub;
        }
        data |= (sub & ((1 << (size * 8)) - 1)) << shift;
        shift += u32::from(size) * 8;
        port = port.wrapping_add(size.into());
        bytes -= size;
    }
    data
}

/// Xen's `guest_io_write` for an access [`admin_io_okay`] refused: a dword at 0xCF8 sets the
/// domain's CONFIG_ADDRESS; each piece at 0xCFC-0xCFF goes to configuration space if
/// [`crate::pci::cfg_ok`] passes it and is dropped if not (no error reaches the guest, as on
/// Xen); anything else is dropped.
fn guest_io_write(
    dom: &mut crate::domain::Domain,
    mut port: u16,
    mut bytes: u8,
    mut data: u32,
    bus: &mut dyn PortBus,
) {
    while bytes != 0 {
        let mut size = 1;
        if port == crate::pci::PCI_CONF_ADDRESS && bytes == 4 {
            size = 4;
            dom.pci_cf8 = data;
        } else if port & 0xfffc == crate::pci::PCI_CONF_DATA {
            let offset = (port & 3) as u8;
            size = conf_data_piece(port, bytes);
            if crate::pci::cfg_ok(dom.privileged, dom.pci_cf8, offset, size, true, bus) {
                crate::pci::conf_write(bus, dom.pci_cf8, offset, size, data);
            }
        }
        if size == 4 {
            return;
        }
        port = port.wrapping_add(size.into());
        bytes -= size;
        data >>= u32::from(size) * 8;
    }
}

/// Emulates `in`/`out` at `regs.rip` after a #GP(0), as Xen's `emulate_privileged_op`: refused
/// (`Emulated::No`, the #GP is reflected) unless the virtual IOPL allows port I/O in the current
/// mode (`guest_io_okay`); then a port the domain may use is accessed for real
/// (`admin_io_okay`), and any other goes through Xen's `guest_io_read` / `guest_io_write`:
/// PCI configuration space, filtered, for dom0; all-ones and dropped writes otherwise. RIP is
/// advanced past the instruction.
pub fn port_io(
    regs: &mut Regs,
    code: &[u8],
    dom: &mut crate::domain::Domain,
    bus: &mut dyn PortBus,
) -> Emulated {
    let Some(io) = decode_port_io(code, regs.rdx) else {
        return Emulated::No;
    };
    let architectural =
        dom.vm_assist & (1 << hypercall_abi::xen::VMASST_TYPE_architectural_iopl) != 0;
    if !iopl_ok(dom.vcpu().iopl, dom.vcpu().kernel_mode, architectural) {
        return Emulated::No;
    }
    let direct = admin_io_okay(dom.privileged, io.port, io.bytes);
    let mask = match io.bytes {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    };
    match io.dir {
        IoDirection::In => {
            let value = if direct {
                bus.port_read(io.port, io.bytes)
            } else {
                guest_io_read(dom, io.port, io.bytes, bus)
            } & mask;
            // A 32-bit destination zero-extends into RAX; 8- and 16-bit ones keep the rest.
            regs.rax = if io.bytes == 4 {
                u64::from(value)
            } else {
                (regs.rax & !u64::from(mask)) | u64::from(value)
            };
        }
        IoDirection::Out => {
            let value = regs.rax as u32 & mask;
            if direct {
                bus.port_write(io.port, io.bytes, value);
            } else {
                guest_io_write(dom, io.port, io.bytes, value, bus);
            }
        }
    }
    regs.rip = regs.rip.wrapping_add(io.len);
    Emulated::Done
}

/// Emulates `cli` / `sti` at `regs.rip` after a #GP(0), as Xen 4.17's privileged-op emulation
/// does (`validate` in `pv/emul-priv-op.c`): when the virtual IOPL allows them in the current
/// mode they are skipped and change nothing (a PV kernel masks events through `vcpu_info`'s
/// `evtchn_upcall_mask`, and Xen deliberately does not map `cli` onto it); otherwise the #GP is
/// the guest's (`Emulated::No`). An optional REX prefix is accepted.
pub fn cli_sti(regs: &mut Regs, code: &[u8], dom: &crate::domain::Domain) -> Emulated {
    let len = match code {
        [0xfa | 0xfb, ..] => 1,
        [0x40..=0x4f, 0xfa | 0xfb, ..] => 2,
        _ => return Emulated::No,
    };
    let architectural =
        dom.vm_assist & (1 << hypercall_abi::xen::VMASST_TYPE_architectural_iopl) != 0;
    if !iopl_ok(dom.vcpu().iopl, dom.vcpu().kernel_mode, architectural) {
        return Emulated::No;
    }
    regs.rip = regs.rip.wrapping_add(len);
    Emulated::Done
}
