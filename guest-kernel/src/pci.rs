//! PCI configuration mechanism #1 (ports 0xCF8/0xCFC) and the virtio-blk identities: the portable
//! half of dom0's PCI code (`dom0/pci.rs` does the port I/O).
//!
//! A configuration read writes `CONFIG_ADDRESS` (0xCF8) with the enable bit, bus, device,
//! function and dword-aligned register, then reads `CONFIG_DATA` (0xCFC). On a PV dom0 every such
//! access is a privileged instruction the hypervisor emulates once the kernel has raised its
//! virtual IOPL (`PHYSDEVOP_set_iopl`).

/// `CONFIG_ADDRESS`.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
/// `CONFIG_DATA`.
pub const CONFIG_DATA: u16 = 0xcfc;

/// The virtio vendor (Red Hat / Qumranet).
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// virtio-blk, transitional device ID (legacy I/O BAR and modern capabilities).
pub const VIRTIO_BLK_TRANSITIONAL: u16 = 0x1001;
/// virtio-blk, modern-only device ID (0x1040 + virtio device type 2).
pub const VIRTIO_BLK_MODERN: u16 = 0x1042;

/// The `CONFIG_ADDRESS` value for register `offset` (rounded down to a dword) of
/// `bus:device.function`.
pub const fn config_address(bus: u8, device: u8, function: u8, offset: u8) -> u32 {
    0x8000_0000
        | (bus as u32) << 16
        | ((device & 0x1f) as u32) << 11
        | ((function & 7) as u32) << 8
        | (offset & 0xfc) as u32
}

/// Whether a function with these IDs is a virtio block device.
pub const fn is_virtio_blk(vendor: u16, device: u16) -> bool {
    vendor == VIRTIO_VENDOR && (device == VIRTIO_BLK_TRANSITIONAL || device == VIRTIO_BLK_MODERN)
}

/// PCI device ID of a transitional virtio-net function (QEMU's `virtio-net-pci` default).
pub const VIRTIO_NET_TRANSITIONAL: u16 = 0x1000;
/// PCI device ID of a modern-only virtio-net function.
pub const VIRTIO_NET_MODERN: u16 = 0x1041;

/// Whether a function with these IDs is a virtio network device.
pub const fn is_virtio_net(vendor: u16, device: u16) -> bool {
    vendor == VIRTIO_VENDOR && (device == VIRTIO_NET_TRANSITIONAL || device == VIRTIO_NET_MODERN)
}

/// The 512 bytes `blkdev-selftest` writes to sector `sector`: a byte pattern that differs from
/// one sector to the next, so a write that lands on the wrong sector is caught. The QEMU test
/// (`tests/tests/blkdev.rs`) looks for these bytes in the disk image on the host.
pub fn selftest_pattern(sector: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    for (i, v) in b.iter_mut().enumerate() {
        *v = ((sector.wrapping_mul(7).wrapping_add(i as u64 * 13)) % 251) as u8 ^ 0x5a;
    }
    b
}

/// `PCI_CAP_ID_MSI`.
pub const PCI_CAP_ID_MSI: u8 = 0x05;
/// `PCI_CAP_ID_MSIX`.
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// Most capability links followed (Linux's and Xen's 48): a device's list can loop.
pub const MAX_CAP_LINKS: usize = 48;

/// A function's capability list as `(offset, id)` pairs, read with `read8(register)`, in list
/// order: from the pointer at 0x34 (if the status register's capability-list bit is set) until
/// a link below 0x40, an id of 0xff, or [`MAX_CAP_LINKS`] entries.
pub fn capabilities(mut read8: impl FnMut(u8) -> u8) -> alloc::vec::Vec<(u8, u8)> {
    let mut caps = alloc::vec::Vec::new();
    if read8(0x06) & 0x10 == 0 {
        return caps;
    }
    let mut link = 0x34;
    for _ in 0..MAX_CAP_LINKS {
        let pos = read8(link);
        if pos < 0x40 {
            break;
        }
        let pos = pos & !3;
        let id = read8(pos);
        if id == 0xff {
            break;
        }
        caps.push((pos, id));
        link = pos + 1;
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_addresses_pack_bus_device_function_register() {
        assert_eq!(config_address(0, 0, 0, 0), 0x8000_0000);
        assert_eq!(config_address(0, 4, 0, 0x10), 0x8000_2010);
        assert_eq!(config_address(1, 31, 7, 0xff), 0x8001_fffc);
    }

    #[test]
    fn virtio_blk_ids() {
        assert!(is_virtio_blk(0x1af4, 0x1001) && is_virtio_blk(0x1af4, 0x1042));
        assert!(!is_virtio_blk(0x1af4, 0x1000) && !is_virtio_blk(0x8086, 0x1001));
        assert!(is_virtio_net(0x1af4, 0x1000) && is_virtio_net(0x1af4, 0x1041));
        assert!(!is_virtio_net(0x1af4, 0x1001) && !is_virtio_net(0x8086, 0x1000));
    }

    #[test]
    fn capability_walks_end_even_when_the_list_loops() {
        let mut cfg = [0u8; 256];
        cfg[0x06] = 0x10;
        cfg[0x34] = 0x40;
        cfg[0x40] = 0x09;
        cfg[0x41] = 0x98;
        cfg[0x98] = PCI_CAP_ID_MSIX;
        cfg[0x99] = 0x00;
        assert_eq!(
            capabilities(|r| cfg[usize::from(r)]).as_slice(),
            &[(0x40, 0x09), (0x98, PCI_CAP_ID_MSIX)]
        );
        cfg[0x99] = 0x40; // back to the first
        assert_eq!(capabilities(|r| cfg[usize::from(r)]).len(), MAX_CAP_LINKS);
        cfg[0x06] = 0; // no list
        assert!(capabilities(|r| cfg[usize::from(r)]).is_empty());
    }

    #[test]
    fn the_pattern_differs_between_sectors() {
        assert_ne!(selftest_pattern(1), selftest_pattern(2));
        assert_eq!(selftest_pattern(5)[0], 35 ^ 0x5a);
        assert_eq!(selftest_pattern(0)[100], (1300 % 251) as u8 ^ 0x5a);
    }
}
