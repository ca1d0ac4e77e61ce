//! PCI configuration space as dom0 reaches it through ports 0xCF8/0xCFC: a virtual
//! CONFIG_ADDRESS per domain and a write filter that keeps every device's MSI and MSI-X for
//! the hypervisor.
//!
//! A device's MSI or MSI-X capability says which address and data it writes to signal an
//! interrupt. A dom0 that could program them could aim a device at any vector of the CPU,
//! an exception vector or NMI delivery included, and an NMI taken in the hypervisor is fatal.
//! Xen therefore never lets dom0 reach 0xCFC-0xCFF directly (`dom0_setup_permissions`), keeps
//! dom0's CONFIG_ADDRESS in `d->arch.pci_cf8` and performs each data-port access itself after
//! `pci_cfg_ok` (`pv/emul-priv-op.c`) has passed it; for writes that is
//! `pci_conf_write_intercept` (`arch/x86/pci.c`) and `pci_msi_conf_write_intercept`
//! (`arch/x86/msi.c`), which refuse writes into the capabilities of MSI and MSI-X the
//! hypervisor owns. The same steps are here, over the [`PortBus`] the emulator uses, so the
//! host tests run them against a fake configuration space.
//!
//! Where Xen lets dom0 program a device's MSI or MSI-X itself we do not. Xen refuses only for
//! devices it knows (`pci_get_pdev`: found by its IOMMU scan or reported by dom0 with
//! `PHYSDEVOP_pci_device_add`), lets dom0 write the MSI-X control word and, once it has set up
//! MSI itself, the MSI control word and mask bits, because a Linux dom0 enables the interrupts
//! Xen programmed. We implement no MSI for dom0 (no `PHYSDEVOP_map_pirq` of type MSI), so every
//! device's MSI and MSI-X structures are the hypervisor's whole: no write into them reaches
//! the device, their enable bits stay clear, and devices interrupt through INTx and the
//! I/O APIC, which the hypervisor programs.

use core::ops::Range;

/// The machine's port space, as the arch layer reaches it (`in`/`out` instructions); tests fake it.
pub trait PortBus {
    /// Reads `bytes` (1, 2 or 4) from `port`.
    fn port_read(&mut self, port: u16, bytes: u8) -> u32;
    /// Writes the low `bytes` (1, 2 or 4) bytes of `value` to `port`.
    fn port_write(&mut self, port: u16, bytes: u8, value: u32);
}

/// CONFIG_ADDRESS (mechanism #1).
pub const PCI_CONF_ADDRESS: u16 = 0xcf8;
/// CONFIG_DATA: 0xCFC-0xCFF, byte `n` of the addressed dword at 0xCFC + n.
pub const PCI_CONF_DATA: u16 = 0xcfc;

/// `PCI_STATUS` and its `PCI_STATUS_CAP_LIST` bit (`xen/include/xen/pci_regs.h`).
const PCI_STATUS: u8 = 0x06;
const PCI_STATUS_CAP_LIST: u16 = 0x10;
/// `PCI_CAPABILITY_LIST`: the first capability's offset.
const PCI_CAPABILITY_LIST: u8 = 0x34;
/// `PCI_CAP_LIST_NEXT`: a capability's link to the next, after its one-byte id.
const PCI_CAP_LIST_NEXT: u8 = 1;
/// `PCI_CAP_ID_MSI`.
pub const PCI_CAP_ID_MSI: u8 = 0x05;
/// `PCI_CAP_ID_MSIX`.
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// `PCI_MSI_FLAGS_64BIT` and `PCI_MSI_FLAGS_MASKBIT` in the MSI control word.
const PCI_MSI_FLAGS_64BIT: u16 = 0x80;
const PCI_MSI_FLAGS_MASKBIT: u16 = 0x100;
/// The MSI-X capability's size: control, table offset/BIR, PBA offset/BIR
/// (`msix_pba_offset_reg(pos) + 4` in Xen's `pci_msi_conf_write_intercept`).
const MSIX_CAP_SIZE: u16 = 12;
/// How many capability links [`find_msi_caps`] follows: `pci_find_cap_offset`'s `max_cap`. A
/// device's list is data it supplies and can loop.
pub const MAX_CAP_LINKS: usize = 48;

/// `CF8_ENABLED`: the enable bit; without it the data ports do not reach configuration space.
pub const fn cf8_enabled(cf8: u32) -> bool {
    cf8 & 0x8000_0000 != 0
}

/// `CF8_BDF`: bus, device and function, as bits 8..23 hold them.
pub const fn cf8_bdf(cf8: u32) -> u16 {
    (cf8 >> 8) as u16
}

/// `CF8_ADDR_LO`: the dword-aligned register, bits 2..7.
pub const fn cf8_addr_lo(cf8: u32) -> u16 {
    (cf8 & 0xfc) as u16
}

/// The CONFIG_ADDRESS value for register `reg` of `bdf` (Xen's `PCI_CONF_ADDRESS`, standard
/// configuration space only).
pub const fn conf_address(bdf: u16, reg: u8) -> u32 {
    0x8000_0000 | (bdf as u32) << 8 | (reg & 0xfc) as u32
}

/// `pci_conf_read`: selects `cf8` and reads `bytes` at data port offset `offset`
/// (`offset + bytes <= 4`). Bits 0 and 1 of CONFIG_ADDRESS are reserved (they read as zero on
/// PCI host bridges) but QEMU's adds them to the register number: they are cleared here, so the
/// register reached is the one the filter judged, `CF8_ADDR_LO | offset`, on every machine.
pub fn conf_read(bus: &mut dyn PortBus, cf8: u32, offset: u8, bytes: u8) -> u32 {
    debug_assert!(offset + bytes <= 4);
    bus.port_write(PCI_CONF_ADDRESS, 4, cf8 & !3);
    bus.port_read(PCI_CONF_DATA + u16::from(offset), bytes)
}

/// `pci_conf_write`, with CONFIG_ADDRESS's reserved bits cleared as in [`conf_read`].
pub fn conf_write(bus: &mut dyn PortBus, cf8: u32, offset: u8, bytes: u8, data: u32) {
    debug_assert!(offset + bytes <= 4);
    bus.port_write(PCI_CONF_ADDRESS, 4, cf8 & !3);
    bus.port_write(PCI_CONF_DATA + u16::from(offset), bytes, data);
}

fn read8(bus: &mut dyn PortBus, bdf: u16, reg: u8) -> u8 {
    conf_read(bus, conf_address(bdf, reg), reg & 3, 1) as u8
}

fn read16(bus: &mut dyn PortBus, bdf: u16, reg: u8) -> u16 {
    conf_read(bus, conf_address(bdf, reg), reg & 2, 2) as u16
}

/// Where `bdf`'s MSI and MSI-X capabilities are, if it has them: Xen's `pci_find_cap_offset`
/// for both ids in one walk of the capability list, read from the device itself. The walk
/// stops at a link below the standard header (0x40, which ends the list), at an id of 0xff
/// (an absent function), and after [`MAX_CAP_LINKS`] links whatever the list does.
pub fn find_msi_caps(bus: &mut dyn PortBus, bdf: u16) -> (Option<u8>, Option<u8>) {
    let (mut msi, mut msix) = (None, None);
    if read16(bus, bdf, PCI_STATUS) & PCI_STATUS_CAP_LIST == 0 {
        return (msi, msix);
    }
    let mut link = PCI_CAPABILITY_LIST;
    for _ in 0..MAX_CAP_LINKS {
        let pos = read8(bus, bdf, link);
        if pos < 0x40 {
            break;
        }
        let pos = pos & !3;
        match read8(bus, bdf, pos) {
            0xff => break,
            PCI_CAP_ID_MSI if msi.is_none() => msi = Some(pos),
            PCI_CAP_ID_MSIX if msix.is_none() => msix = Some(pos),
            _ => {}
        }
        if msi.is_some() && msix.is_some() {
            break;
        }
        link = pos + PCI_CAP_LIST_NEXT;
    }
    (msi, msix)
}

/// The bytes of `bdf`'s configuration space that hold its MSI and MSI-X structures. MSI:
/// control, a 32- or 64-bit address, data, and with per-vector masking the mask and pending
/// bits (`msi_mask_bits_reg` + 8); MSI-X: control and the table and PBA locations.
pub fn msi_structures(bus: &mut dyn PortBus, bdf: u16) -> [Option<Range<u16>>; 2] {
    let (msi, msix) = find_msi_caps(bus, bdf);
    let msi = msi.map(|pos| {
        let control = read16(bus, bdf, pos + 2);
        let is64 = control & PCI_MSI_FLAGS_64BIT != 0;
        let size = match (is64, control & PCI_MSI_FLAGS_MASKBIT != 0) {
            (false, false) => 0x0a,
            (true, false) => 0x0e,
            (false, true) => 0x14,
            (true, true) => 0x18,
        };
        u16::from(pos)..u16::from(pos) + size
    });
    let msix = msix.map(|pos| u16::from(pos)..u16::from(pos) + MSIX_CAP_SIZE);
    [msi, msix]
}

/// `pci_conf_write_intercept` + `pci_msi_conf_write_intercept`: whether a `size`-byte write to
/// register `reg` of `bdf` may go to the device. Registers below 64 (the standard header) and
/// from 256 (extended space) hold no capability of the list and pass without a look at the
/// device, as in Xen; any other write that touches the MSI or MSI-X structure is refused.
pub fn conf_write_ok(bus: &mut dyn PortBus, bdf: u16, reg: u16, size: u8) -> bool {
    if !(64..256).contains(&reg) {
        return true;
    }
    let write = reg..reg + u16::from(size);
    !msi_structures(bus, bdf)
        .iter()
        .flatten()
        .any(|s| write.start < s.end && s.start < write.end)
}

/// Xen's `pci_cfg_ok`: whether the domain's access of `size` bytes at data port offset
/// `offset` (0..=3), with its CONFIG_ADDRESS `cf8`, may be performed. Only the privileged
/// domain (Xen's hardware domain) reaches configuration space; with CONFIG_ADDRESS's enable bit
/// clear no configuration cycle happens and the access is harmless; reads are allowed (the
/// dummy XSM's `xsm_pci_config_permission` allows the hardware domain everything); writes go
/// through [`conf_write_ok`].
///
/// The register is `CF8_ADDR_LO | offset`. Xen adds CF8 bits 24..27 as bits 8..11 of the
/// register on AMD families 0x10..0x17 whose northbridge decodes them (MSR NB_CFG bit 46); we
/// do not read that MSR and judge every write by the low register, the one it reaches where the
/// bits are not decoded: where they are, only a write to an extended register whose low byte
/// falls in an MSI structure is refused that Xen would pass. Xen's `pci_get_ro_map` (devices
/// the hypervisor drives itself, such as a PCI serial console) has no counterpart: ours drives
/// no PCI device.
pub fn cfg_ok(
    privileged: bool,
    cf8: u32,
    offset: u8,
    size: u8,
    write: bool,
    bus: &mut dyn PortBus,
) -> bool {
    if !privileged {
        return false;
    }
    if !cf8_enabled(cf8) {
        return true;
    }
    let reg = cf8_addr_lo(cf8) | u16::from(offset);
    !write || conf_write_ok(bus, cf8_bdf(cf8), reg, size)
}
