//! dom0's PCI configuration access: legacy ports 0xCF8/0xCFC, after raising the virtual IOPL.
//!
//! A 64-bit PV kernel runs in ring 3 with RFLAGS.IOPL 0, so each `in`/`out` faults into the
//! hypervisor, which performs it when the vCPU's virtual IOPL is at least 1
//! (`PHYSDEVOP_set_iopl`, what Linux's `xen_start_kernel` asks for) and the port is one the
//! domain may use (Xen's `guest_io_okay` + `admin_io_okay`). [`PortCam`] is virtio-drivers'
//! `ConfigurationAccess` over that path, so its `PciRoot` enumerates and configures devices.

use core::arch::asm;

use guest_kernel::pci::{config_address, CONFIG_ADDRESS, CONFIG_DATA};
use hypercall_abi::physdev::{PHYSDEVOP_set_iopl, PhysdevSetIopl};
use spin::Mutex;
use virtio_drivers::transport::pci::bus::{
    ConfigurationAccess, DeviceFunction, DeviceFunctionInfo, PciRoot,
};

use super::hypercall as hc;

/// Serialises the two-step CONFIG_ADDRESS / CONFIG_DATA sequence (one vCPU, but the event
/// upcall could one day touch PCI too).
static CF8: Mutex<()> = Mutex::new(());

/// `PHYSDEVOP_set_iopl(iopl)`: returns the hypercall's result (0, or -EINVAL above 3).
pub fn set_iopl(iopl: u32) -> i64 {
    let mut arg = PhysdevSetIopl { iopl };
    hc::physdev_op(PHYSDEVOP_set_iopl, &mut arg)
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
pub fn root() -> Result<PciRoot<PortCam>, i64> {
    match set_iopl(1) {
        0 => Ok(PciRoot::new(PortCam)),
        rc => Err(rc),
    }
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
