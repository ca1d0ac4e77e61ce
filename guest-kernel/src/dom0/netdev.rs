//! dom0's network card: a real virtio-net PCI NIC (QEMU's `virtio-net-pci`), driven with the
//! `virtio-drivers` crate's `VirtIONetRaw` through the same PV access as the disk (`blkdev.rs`):
//! configuration space through the emulated ports, the BAR mapped uncached, its INTx line a PIRQ
//! event channel.
//!
//! - **Buffers**: every receive and transmit buffer is one whole frame of dom0's own memory
//!   (4 KiB: a virtio-net header and a 1514-byte frame fit), taken from the frame allocator at
//!   probe time. [`NetHal`] hands the device their machine addresses directly (a buffer inside
//!   one page, or machine-contiguous pages, needs no copy); anything else is bounced by
//!   `blkdev::XenHal`.
//! - **Receive**: all [`QUEUE`] receive buffers are posted at probe; [`NetDevice::recv`] takes
//!   each completed one, hands the frame to the caller and posts the buffer again.
//! - **Transmit**: [`NetDevice::send`] copies a frame behind a virtio-net header into a free
//!   transmit buffer and queues it; completed ones are reclaimed on the next send or poll. A full
//!   queue drops the frame (counted): TCP retransmits, nobody waits.
//! - **Interrupts**: unlike the disk, the NIC's port is unmasked and registered with the event
//!   loop ([`Channel::Nic`]), so a received frame wakes dom0; [`NetDevice::interrupt`] reads the
//!   ISR (lowering the level-triggered line) and sends `PHYSDEVOP_eoi`. Without PIRQs the loop's
//!   polls find the frames.
//! - **Wire input is hostile too**: a completion longer than its buffer or shorter than the
//!   header is dropped and counted, never used to index.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;

use guest_kernel::layout::direct_map_va;
use guest_kernel::paging::{Mfn, Pfn};
use guest_kernel::pci::is_virtio_net;
use hypercall_abi::physdev::PhysdevEoi;
use hypercall_abi::HypercallError;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::pci::bus::{Command, ConfigurationAccess, DeviceFunction};
use virtio_drivers::transport::pci::{PciTransport, VirtioPciError};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use super::blkdev::{bind_gsi, IrqMode, XenHal};
use super::pci;
use crate::kernel::events::{self, Channel};
use crate::kernel::hypercall as hc;
use crate::kernel::pt::PtError;
use crate::kernel::{direct_map, mm};

/// Descriptors per virtqueue (QEMU's virtio-net offers up to 256), and receive buffers posted.
/// The driver keeps a shadow of each queue's descriptors inside its own struct, which is built
/// on the stack: 64 keeps it near 4 KiB (256 made dom0's 64 KiB boot stack overflow into the
/// `.bss` below it).
pub const QUEUE: usize = 64;

/// Transmit buffers (each one frame of memory).
const TX_BUFFERS: usize = 64;

/// Why the NIC could not be found or used.
#[derive(Debug)]
pub enum NetError {
    /// `PHYSDEVOP_set_iopl(1)` failed with this result.
    Iopl(HypercallError),
    /// No virtio-net function on PCI bus 0.
    NoDevice,
    /// The virtio-pci transport could not be set up.
    Transport(VirtioPciError),
    /// The virtio device refused or failed a request.
    Virtio(virtio_drivers::Error),
    /// Memory for the buffers could not be had.
    Memory(PtError),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Iopl(rc) => write!(f, "PHYSDEVOP_set_iopl(1)={rc}"),
            NetError::NoDevice => write!(f, "no virtio-net device on PCI bus 0"),
            NetError::Transport(e) => write!(f, "virtio-pci: {e}"),
            NetError::Virtio(e) => write!(f, "virtio: {e}"),
            NetError::Memory(e) => write!(f, "memory: {e}"),
        }
    }
}

impl From<virtio_drivers::Error> for NetError {
    fn from(e: virtio_drivers::Error) -> Self {
        NetError::Virtio(e)
    }
}

/// The machine address of `[va, va + len)` if it lies in dom0's own frames (direct map or
/// initial region, where `va = pfn << 12`) that are machine-contiguous.
fn contiguous_maddr(va: u64, len: usize) -> Option<u64> {
    let first = Pfn(va >> 12);
    let last = Pfn((va + len.max(1) as u64 - 1) >> 12);
    if direct_map_va(first) != va & !0xfff {
        return None;
    }
    let mfn0 = mm::mfn_of(first)?;
    for i in 1..=(last.0 - first.0) {
        if mm::mfn_of(Pfn(first.0 + i)) != Some(Mfn(mfn0.0 + i)) {
            return None;
        }
    }
    Some(mfn0.maddr() + (va & 0xfff))
}

/// virtio-drivers' platform layer for the NIC: `XenHal`'s, without the bounce for buffers that
/// are already in machine-contiguous frames of dom0 (every buffer this driver posts).
pub struct NetHal;

// SAFETY: allocation and MMIO are `XenHal`'s (see its contract); `share` either returns the
// buffer's own machine address (the device then reads or writes the caller's buffer in place,
// which the caller lent it until `unshare`) or `XenHal`'s bounce buffer, and `unshare` tells the
// two apart by comparing that address with the buffer's own.
unsafe impl Hal for NetHal {
    fn dma_alloc(pages: usize, direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        XenHal::dma_alloc(pages, direction)
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { XenHal::dma_dealloc(paddr, vaddr, pages) }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { XenHal::mmio_phys_to_virt(paddr, size) }
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let va = buffer.as_ptr().cast::<u8>() as u64;
        match contiguous_maddr(va, buffer.len()) {
            Some(maddr) => maddr,
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { XenHal::share(buffer, direction) },
        }
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let va = buffer.as_ptr().cast::<u8>() as u64;
        if contiguous_maddr(va, buffer.len()) != Some(paddr) {
            // SAFETY: `paddr` is the bounce buffer `share` got from `XenHal`.
            unsafe { XenHal::unshare(paddr, buffer, direction) }
        }
    }
}

/// The NIC's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct NicStats {
    /// Frames received and handed on.
    pub rx_frames: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Completions dropped as malformed (too short, too long).
    pub rx_bad: u64,
    /// Frames queued for transmission.
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames dropped because every transmit buffer was in flight, or too big.
    pub tx_dropped: u64,
    /// Interrupts taken.
    pub interrupts: u64,
}

/// A virtio-net NIC with its posted buffers.
pub struct NetDevice {
    net: Box<VirtIONetRaw<NetHal, PciTransport, QUEUE>>,
    /// Receive buffer (its frame) by the token of the request that holds it.
    rx: Vec<Option<Pfn>>,
    /// Transmit buffer and the length queued, by token.
    tx: Vec<Option<(Pfn, usize)>>,
    /// Transmit buffers not in flight.
    tx_free: Vec<Pfn>,
    /// The card's MAC address.
    pub mac: [u8; 6],
    /// Where it sits on PCI bus 0.
    pub location: DeviceFunction,
    /// How its interrupts arrive.
    pub irq: IrqMode,
    /// Counters.
    pub stats: NicStats,
}

/// The whole frame `pfn` as bytes.
///
/// # Safety
/// `pfn` must be one of this driver's buffers, not lent to the device for the slice's lifetime
/// (or lent, if the slice only goes to the device itself).
unsafe fn page(pfn: Pfn) -> &'static mut [u8] {
    // SAFETY: the frame came from the allocator at probe and is mapped writable in the direct
    // map; the caller guarantees exclusive use.
    unsafe { core::slice::from_raw_parts_mut(direct_map_va(pfn) as *mut u8, PAGE_SIZE) }
}

impl NetDevice {
    /// Finds the first virtio-net function on PCI bus 0, initialises it, posts the receive
    /// buffers and binds its interrupt to [`Channel::Nic`].
    pub fn probe() -> Result<NetDevice, NetError> {
        direct_map::init_memory().map_err(NetError::Memory)?;
        let mut root = pci::root().map_err(NetError::Iopl)?;
        let (location, _) = pci::enumerate_bus0(&root, false)
            .into_iter()
            .find(|(_, i)| is_virtio_net(i.vendor_id, i.device_id))
            .ok_or(NetError::NoDevice)?;
        let (_, command) = root.get_status_command(location);
        root.set_command(
            location,
            command | Command::MEMORY_SPACE | Command::BUS_MASTER,
        );
        let transport =
            PciTransport::new::<NetHal, _>(&mut root, location).map_err(NetError::Transport)?;
        let net = Box::new(VirtIONetRaw::<NetHal, _, QUEUE>::new(transport)?);
        let mac = net.mac_address();
        let mut dev = NetDevice {
            net,
            rx: alloc::vec![None; QUEUE],
            tx: alloc::vec![None; QUEUE],
            tx_free: Vec::with_capacity(TX_BUFFERS),
            mac,
            location,
            irq: IrqMode::Polled,
            stats: NicStats::default(),
        };
        for _ in 0..TX_BUFFERS {
            let pfn = mm::alloc_frame().ok_or(NetError::Memory(PtError::OutOfFrames))?;
            dev.tx_free.push(pfn);
        }
        for _ in 0..QUEUE {
            let pfn = mm::alloc_frame().ok_or(NetError::Memory(PtError::OutOfFrames))?;
            dev.post(pfn)?;
        }
        let intr = pci::PortCam.read_word(location, 0x3c);
        let (line, pin) = (intr & 0xff, (intr >> 8) & 0xff);
        let irq = if pin != 0 && line < 0xff {
            bind_gsi(line)
        } else {
            None
        };
        match irq {
            Some(mode @ IrqMode::Pirq { port, .. }) => {
                let (_, command) = root.get_status_command(location);
                root.set_command(location, command - Command::INTERRUPT_DISABLE);
                events::register(port, Channel::Nic);
                events::unmask(port);
                dev.net.enable_interrupts();
                dev.irq = mode;
            }
            _ => {
                // Polled: INTx off at the device too (see `BlockDevice::probe`).
                dev.net.disable_interrupts();
                let (_, command) = root.get_status_command(location);
                root.set_command(location, command | Command::INTERRUPT_DISABLE);
            }
        }
        Ok(dev)
    }

    /// Lends receive buffer `pfn` to the device.
    fn post(&mut self, pfn: Pfn) -> Result<(), NetError> {
        // SAFETY: `pfn` is ours and not lent; the device owns it until `recv` completes it.
        let buf = unsafe { page(pfn) };
        // SAFETY: the buffer stays allocated and untouched until its completion is popped.
        let token = unsafe { self.net.receive_begin(buf)? };
        match self.rx.get_mut(usize::from(token)) {
            Some(slot) => *slot = Some(pfn),
            None => return Err(NetError::Virtio(virtio_drivers::Error::WrongToken)),
        }
        Ok(())
    }

    /// Hands up to `budget` received frames to `f` (Ethernet header first, no FCS) and posts
    /// their buffers again; returns how many completions it took.
    pub fn recv(&mut self, budget: usize, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < budget {
            let Some(token) = self.net.poll_receive() else {
                break;
            };
            let Some(pfn) = self.rx.get_mut(usize::from(token)).and_then(Option::take) else {
                // A token we never handed out: the device is broken; stop taking.
                self.stats.rx_bad += 1;
                break;
            };
            // SAFETY: the same buffer `post` lent under this token.
            let buf = unsafe { page(pfn) };
            // SAFETY: as above: `buf` is the buffer of `token`.
            match unsafe { self.net.receive_complete(token, buf) } {
                Ok((hdr, len)) if hdr.checked_add(len).is_some_and(|end| end <= buf.len()) => {
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += len as u64;
                    f(&buf[hdr..hdr + len]);
                }
                _ => self.stats.rx_bad += 1,
            }
            n += 1;
            if self.post(pfn).is_err() {
                self.stats.rx_bad += 1;
            }
        }
        n
    }

    /// Whether a received frame is waiting.
    pub fn rx_pending(&self) -> bool {
        self.net.poll_receive().is_some()
    }

    /// Takes back the transmit buffers the device is done with.
    pub fn reclaim(&mut self) {
        while let Some(token) = self.net.poll_transmit() {
            let Some((pfn, len)) = self.tx.get_mut(usize::from(token)).and_then(Option::take)
            else {
                break;
            };
            // SAFETY: the buffer and length `send` queued under this token.
            let buf = unsafe { page(pfn) };
            // SAFETY: as above.
            let _ = unsafe { self.net.transmit_complete(token, &buf[..len]) };
            self.tx_free.push(pfn);
        }
    }

    /// Queues `frame` (an Ethernet frame without FCS) for transmission; false if it was
    /// dropped (no free buffer, or too big).
    pub fn send(&mut self, frame: &[u8]) -> bool {
        self.reclaim();
        let Some(pfn) = self.tx_free.pop() else {
            self.stats.tx_dropped += 1;
            return false;
        };
        // SAFETY: a free transmit buffer: nobody else uses it.
        let buf = unsafe { page(pfn) };
        let Ok(hdr) = self.net.fill_buffer_header(buf) else {
            self.tx_free.push(pfn);
            self.stats.tx_dropped += 1;
            return false;
        };
        let len = hdr + frame.len();
        if len > buf.len() {
            self.tx_free.push(pfn);
            self.stats.tx_dropped += 1;
            return false;
        }
        buf[hdr..len].copy_from_slice(frame);
        // SAFETY: the buffer stays allocated and untouched until `reclaim` pops its completion.
        match unsafe { self.net.transmit_begin(&buf[..len]) } {
            Ok(token) if usize::from(token) < self.tx.len() => {
                self.tx[usize::from(token)] = Some((pfn, len));
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += frame.len() as u64;
                true
            }
            _ => {
                self.tx_free.push(pfn);
                self.stats.tx_dropped += 1;
                false
            }
        }
    }

    /// The NIC's interrupt fired: acknowledge it at the device and EOI the PIRQ.
    pub fn interrupt(&mut self) {
        self.stats.interrupts += 1;
        self.net.ack_interrupt();
        if let IrqMode::Pirq { pirq, .. } = self.irq {
            hc::physdev_op(&mut PhysdevEoi { irq: pirq });
        }
    }
}
