//! dom0's PCI configuration access: legacy ports 0xCF8/0xCFC, after raising the virtual IOPL.
//!
//! A 64-bit PV kernel runs in ring 3 with RFLAGS.IOPL 0, so each `in`/`out` faults into the
//! hypervisor, which performs it when the vCPU's virtual IOPL is at least 1
//! (`PHYSDEVOP_set_iopl`, what Linux's `xen_start_kernel` asks for) and the port is one the
//! domain may use (Xen's `guest_io_okay` + `admin_io_okay`). [`PortCam`] is virtio-drivers'
//! `ConfigurationAccess` over that path, so its `PciRoot` enumerates and configures devices.
//!
//! `pci-msi-attack` ([`msi_attack`]) is a hostile dom0: it tries to aim each device's MSI or
//! MSI-X at the NMI and reports whether the writes reached the device (the hypervisor must drop
//! them, as Xen's `pci_cfg_ok` does for the devices it owns).

use core::arch::asm;

use guest_kernel::pci::{config_address, CONFIG_ADDRESS, CONFIG_DATA};
use hypercall_abi::physdev::{PhysdevManagePci, PhysdevSetIopl};
use hypercall_abi::HypercallError;
use spin::Mutex;
use virtio_drivers::transport::pci::bus::{
    ConfigurationAccess, DeviceFunction, DeviceFunctionInfo, PciRoot,
};

use crate::kernel::hypercall as hc;

/// Serialises the two-step CONFIG_ADDRESS / CONFIG_DATA sequence (one vCPU, but the event
/// upcall could one day touch PCI too).
static CF8: Mutex<()> = Mutex::new(());

/// `PHYSDEVOP_set_iopl(iopl)`: returns the hypercall's result (0, or -EINVAL above 3).
pub fn set_iopl(iopl: u32) -> i64 {
    let mut arg = PhysdevSetIopl { iopl };
    hc::physdev_op(&mut arg)
}

/// `inl`.
///
/// # Safety
/// Reading `port` must have no effect the caller has not accounted for (some device registers
/// change state on read). Needs the virtual IOPL, else the kernel takes a #GP.
pub unsafe fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: the caller vouches for the port; the hypervisor emulates the access.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack)) };
    v
}

/// `outl`.
///
/// # Safety
/// As [`inl`], for a write.
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller vouches for the port; the hypervisor emulates the access.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack)) };
}

/// Configuration mechanism #1 through the ports (PCI segment 0 only).
pub struct PortCam;

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, register_offset: u8) -> u32 {
        let _g = CF8.lock();
        // SAFETY: CONFIG_ADDRESS/CONFIG_DATA only select and read configuration space; the
        // address selects an existing function's register (or reads all-ones from an absent one).
        unsafe {
            outl(
                CONFIG_ADDRESS,
                config_address(df.bus, df.device, df.function, register_offset),
            );
            inl(CONFIG_DATA)
        }
    }

    fn write_word(&mut self, df: DeviceFunction, register_offset: u8, data: u32) {
        let _g = CF8.lock();
        // SAFETY: dom0 owns the PCI devices it configures; virtio-drivers writes only the command
        // register and BARs (while sizing them, with decoding off) of the device it drives.
        unsafe {
            outl(
                CONFIG_ADDRESS,
                config_address(df.bus, df.device, df.function, register_offset),
            );
            outl(CONFIG_DATA, data);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// Raises the IOPL and returns a `PciRoot` over the ports; the error is `set_iopl`'s result.
pub fn root() -> Result<PciRoot<PortCam>, HypercallError> {
    HypercallError::check(set_iopl(1)).map(|_| PciRoot::new(PortCam))
}

/// Every function on bus 0, in slot order, printed as `pci: 00:04.0 1af4:1001 class 01.00`.
pub fn enumerate_bus0(
    root: &PciRoot<PortCam>,
    print: bool,
) -> alloc::vec::Vec<(DeviceFunction, DeviceFunctionInfo)> {
    let mut found = alloc::vec::Vec::new();
    for (df, info) in root.enumerate_bus(0) {
        if print {
            println!(
                "pci: {:02x}:{:02x}.{} {:04x}:{:04x} class {:02x}.{:02x}",
                df.bus,
                df.device,
                df.function,
                info.vendor_id,
                info.device_id,
                info.class,
                info.subclass
            );
        }
        found.push((df, info));
    }
    found
}

// ---------------------------------------------------------------------------------------------
// `pci-msi-attack`: dom0 tries to program a device's MSI or MSI-X itself.

/// `PCI_MSIX_FLAGS_ENABLE` and `PCI_MSIX_FLAGS_MASKALL` in the MSI-X control word.
const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_MASKALL: u16 = 1 << 14;
/// `PCI_MSI_FLAGS_ENABLE` and `PCI_MSI_FLAGS_64BIT` in the MSI control word.
const MSI_ENABLE: u16 = 1;
const MSI_64BIT: u16 = 1 << 7;
/// The message the attack aims at the boot CPU: the local APIC's MSI window, destination 0, and
/// data with delivery mode NMI (0b100 in bits 8..10). An NMI taken in the hypervisor is fatal.
const NMI_MSI_ADDRESS: u32 = 0xfee0_0000;
const NMI_MSI_DATA: u16 = 0x0400 | 2;

/// `outw`.
///
/// # Safety
/// As [`outl`].
unsafe fn outw(port: u16, value: u16) {
    // SAFETY: the caller vouches for the port; the hypervisor emulates the access.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack)) };
}

fn read8(df: DeviceFunction, reg: u8) -> u8 {
    (PortCam.read_word(df, reg) >> (8 * (reg & 3))) as u8
}

fn read16(df: DeviceFunction, reg: u8) -> u16 {
    (PortCam.read_word(df, reg) >> (8 * (reg & 2))) as u16
}

/// A 16-bit configuration write at `reg` (even), through 0xCFC or 0xCFE.
fn write16(df: DeviceFunction, reg: u8, value: u16) {
    let _g = CF8.lock();
    // SAFETY: as `PortCam::write_word`; the attack writes only MSI and MSI-X registers and puts
    // back what it read if a write took effect.
    unsafe {
        outl(
            CONFIG_ADDRESS,
            config_address(df.bus, df.device, df.function, reg),
        );
        outw(CONFIG_DATA + u16::from(reg & 2), value);
    }
}

/// Tries to enable MSI-X at `pos` with the function mask clear, first with a dword write of the
/// capability's first register, then with a word write of the control word alone (the form Xen
/// passes for devices it knows). Returns whether either took effect; restores the control word.
fn attack_msix(df: DeviceFunction, pos: u8, name: &str) -> bool {
    let before = read16(df, pos + 2);
    let attack = (before | MSIX_ENABLE) & !MSIX_MASKALL;
    let header = u32::from(read16(df, pos));
    PortCam.write_word(df, pos, u32::from(attack) << 16 | header);
    let after_dword = read16(df, pos + 2);
    if after_dword != before {
        write16(df, pos + 2, before);
    }
    write16(df, pos + 2, attack);
    let after_word = read16(df, pos + 2);
    if after_word != before {
        write16(df, pos + 2, before);
    }
    let took = after_dword != before || after_word != before;
    println!(
        "pci-msi-attack: {name} msi-x at {pos:#04x}: control {before:#06x}, after a dword write \
         {after_dword:#06x}, after a word write {after_word:#06x}: {}",
        if took { "took effect" } else { "dropped" }
    );
    took
}

/// Tries to aim MSI at `pos` at the NMI and enable it: address, data, then the control word.
/// Returns whether any register changed; puts every one back.
fn attack_msi(df: DeviceFunction, pos: u8, name: &str) -> bool {
    let control = read16(df, pos + 2);
    let is64 = control & MSI_64BIT != 0;
    let data_reg = pos + if is64 { 0x0c } else { 0x08 };
    let read = || {
        (
            PortCam.read_word(df, pos + 4),
            if is64 {
                PortCam.read_word(df, pos + 8)
            } else {
                0
            },
            read16(df, data_reg),
            read16(df, pos + 2),
        )
    };
    let before = read();
    PortCam.write_word(df, pos + 4, NMI_MSI_ADDRESS);
    if is64 {
        PortCam.write_word(df, pos + 8, 0);
    }
    write16(df, data_reg, NMI_MSI_DATA);
    write16(df, pos + 2, control | MSI_ENABLE);
    let after = read();
    let took = after != before;
    if took {
        write16(df, pos + 2, before.3);
        PortCam.write_word(df, pos + 4, before.0);
        if is64 {
            PortCam.write_word(df, pos + 8, before.1);
        }
        write16(df, data_reg, before.2);
    }
    println!(
        "pci-msi-attack: {name} msi at {pos:#04x}: address {:#010x} data {:#06x} control \
         {:#06x}, after the writes address {:#010x} data {:#06x} control {:#06x}: {}",
        before.0,
        before.2,
        before.3,
        after.0,
        after.2,
        after.3,
        if took { "took effect" } else { "dropped" }
    );
    took
}

/// `pci-msi-attack`: for every function on bus 0, reports it to the hypervisor
/// (`PHYSDEVOP_manage_pci_add`, as a Linux dom0 reports each device at boot: Xen filters only
/// the devices it knows; ours answers -ENOSYS and filters every device), lists its capabilities
/// and tries to program its MSI and MSI-X (see [`attack_msi`], [`attack_msix`]), reading each
/// back. Prints
/// `pci-msi-attack: <n> capabilities attacked, <k> writes took effect`; on a hypervisor that
/// keeps MSI for itself k is 0. Returns `(n, k)`, or the `set_iopl` error.
pub fn msi_attack() -> Result<(usize, usize), HypercallError> {
    let root = root()?;
    let (mut attacked, mut took) = (0, 0);
    for (df, info) in enumerate_bus0(&root, false) {
        let name = alloc::format!("{:02x}:{:02x}.{}", df.bus, df.device, df.function);
        let mut add = PhysdevManagePci {
            bus: df.bus,
            devfn: df.device << 3 | df.function,
        };
        let rc = hc::physdev_op(&mut add);
        let caps = guest_kernel::pci::capabilities(|reg| read8(df, reg));
        let mut list = alloc::string::String::new();
        for (pos, id) in &caps {
            list.push_str(&alloc::format!(" {id:02x}@{pos:02x}"));
        }
        println!(
            "pci-msi-attack: {name} {:04x}:{:04x} manage_pci_add={rc} capabilities:{}",
            info.vendor_id,
            info.device_id,
            if list.is_empty() { " none" } else { &list }
        );
        for &(pos, id) in &caps {
            let hit = match id {
                guest_kernel::pci::PCI_CAP_ID_MSIX => attack_msix(df, pos, &name),
                guest_kernel::pci::PCI_CAP_ID_MSI => attack_msi(df, pos, &name),
                _ => continue,
            };
            attacked += 1;
            took += usize::from(hit);
        }
    }
    println!("pci-msi-attack: {attacked} capabilities attacked, {took} writes took effect");
    Ok((attacked, took))
}
