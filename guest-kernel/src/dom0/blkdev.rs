//! dom0's block device: a real virtio-blk PCI disk, driven through the access Xen gives a
//! privileged PV dom0.
//!
//! - **Configuration space** through ports 0xCF8/0xCFC (`pci.rs`), emulated by the hypervisor
//!   after `PHYSDEVOP_set_iopl(1)`.
//! - **Registers**: the modern virtio-pci capabilities live in a memory BAR. Its machine frames
//!   are I/O memory dom0 may map (`iomem_access_permitted`); [`XenHal::mmio_phys_to_virt`] maps
//!   them in the kernel's MMIO range (L4 slot 3) with `mmu_update`, uncached (PCD|PWT).
//! - **DMA** uses machine addresses (no IOMMU): buffers come from runs of pseudo-physically
//!   contiguous frames whose p2m entries are machine-contiguous too (always so for dom0 on our
//!   hypervisor, `mfn = base + pfn`; checked, as a PV kernel must, on any hypervisor), and the
//!   device gets `mfn << 12`. Caller buffers are bounced through such frames (`share`/`unshare`),
//!   so any slice works.
//! - **Completion by interrupt** (Xen's PIRQ model): the device's INTx GSI (its configuration
//!   space's Interrupt Line, which the BIOS programmed) is mapped to a PIRQ with
//!   `PHYSDEVOP_map_pirq(MAP_PIRQ_TYPE_GSI)` and bound to an event channel with
//!   `EVTCHNOP_bind_pirq`. The port stays masked (the upcall leaves it alone): a request is
//!   submitted (`*_blocks_nb`), the driver waits in `SCHEDOP_poll` on the port until the used
//!   ring has the answer, then clears the pending bit, reads the device's ISR (which lowers the
//!   level-triggered line) and sends `PHYSDEVOP_eoi`, after which the hypervisor unmasks the
//!   line. If either hypercall fails (a hypervisor without PIRQs), completion is polled: the
//!   queue's interrupts off, spinning on the used ring (`add_notify_wait_pop`).
//!
//! The driver is `virtio_blk.rs` (scatter-gather requests) over the `virtio-drivers` crate's
//! `PciTransport` and virtqueue; this file is their `Hal` for a PV guest and the [`BlockDevice`]
//! API in 512-byte sectors. A transfer whose data is in a front end's mapped grants
//! (`IoData::Dma`) is one request with one descriptor per granted page, at the bus address the
//! hypervisor gave the mapping: the device reads and writes the domU's pages itself.

use alloc::vec::Vec;
use core::fmt;
use core::ptr::{self, NonNull};

use guest_kernel::layout::{direct_map_va, MMIO_BASE, MMIO_END};
use guest_kernel::paging::{index, make_entry, Mfn, Pfn, PTE_A, PTE_D, PTE_P, PTE_RW};
use guest_kernel::pci::{is_virtio_blk, selftest_pattern};
use hypercall_abi::HypercallError;
use ring_drivers::blkif::{DiskError, DiskIo, IoData};
use spin::Mutex;
use virtio_drivers::transport::pci::bus::{Command, ConfigurationAccess, DeviceFunction};
use virtio_drivers::transport::pci::{PciTransport, VirtioPciError};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use super::pci;
use super::virtio_blk::{BlkHeader, Data, VirtioBlk};
use crate::kernel::hypercall as hc;
use crate::kernel::pt::{self, PtError};
use crate::kernel::shared_info;
use crate::kernel::time;
use crate::kernel::{direct_map, mm};

/// Bytes per sector: every offset and length in the [`BlockDevice`] API counts these.
pub const SECTOR_SIZE: usize = 512;

/// Page-cache attribute bits: write-through and cache-disable, i.e. uncached (PAT entry 3).
const PTE_PWT: u64 = 1 << 3;
const PTE_PCD: u64 = 1 << 4;

/// Largest request handed to the device at once: 128 KiB, a whole 32-segment indirect blkif
/// request (bounded so a bounce buffer, where one is needed, stays small).
const MAX_REQUEST_SECTORS: usize = 256;

/// Why the block device could not be found or used.
#[derive(Debug)]
pub enum BlkError {
    /// `PHYSDEVOP_set_iopl(1)` failed with this result.
    Iopl(HypercallError),
    /// No virtio-blk function on PCI bus 0.
    NoDevice,
    /// The virtio-pci transport could not be set up.
    Transport(VirtioPciError),
    /// The virtio device refused or failed a request.
    Virtio(virtio_drivers::Error),
    /// Memory for the driver (frames, page tables) could not be had.
    Memory(PtError),
    /// A buffer whose length is not a non-zero multiple of [`SECTOR_SIZE`].
    BadLength(usize),
    /// A request past the end of the disk: first sector, sector count, disk size.
    OutOfRange(u64, u64, u64),
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkError::Iopl(rc) => write!(f, "PHYSDEVOP_set_iopl(1)={rc}"),
            BlkError::NoDevice => write!(f, "no virtio-blk device on PCI bus 0"),
            BlkError::Transport(e) => write!(f, "virtio-pci: {e}"),
            BlkError::Virtio(e) => write!(f, "virtio: {e}"),
            BlkError::Memory(e) => write!(f, "memory: {e}"),
            BlkError::BadLength(n) => write!(f, "buffer of {n} bytes is not whole sectors"),
            BlkError::OutOfRange(s, n, size) => {
                write!(f, "sectors {s}+{n} past the end of a {size}-sector disk")
            }
        }
    }
}

impl From<virtio_drivers::Error> for BlkError {
    fn from(e: virtio_drivers::Error) -> Self {
        BlkError::Virtio(e)
    }
}

// ---------------------------------------------------------------------------------------------
// The Hal: DMA memory, MMIO mappings and buffer sharing for a PV guest.

/// virtio-drivers' platform layer for a Xen PV guest.
pub struct XenHal;

/// Next free address of the MMIO range.
static NEXT_MMIO: Mutex<u64> = Mutex::new(MMIO_BASE);

/// `n` zeroed frames that are contiguous in machine memory: their machine address and their
/// direct-map address.
fn dma_pages(n: usize) -> Result<(u64, u64), PtError> {
    let n = n.max(1) as u64;
    let first = mm::alloc_contiguous(n).ok_or(PtError::OutOfFrames)?;
    let mfn0 = mm::mfn_of(first).ok_or(PtError::NoMfn(first))?;
    if let Some(bad) = (1..n).find(|&i| mm::mfn_of(Pfn(first.0 + i)) != Some(Mfn(mfn0.0 + i))) {
        free_pages(first, n);
        return Err(PtError::NotOurs(Mfn(mfn0.0 + bad)));
    }
    let va = direct_map_va(first);
    // SAFETY: the frames were just taken from the allocator (nobody else uses them) and the
    // direct map maps every allocator frame writable (`direct_map::init_memory` ran in `probe`).
    unsafe { ptr::write_bytes(va as *mut u8, 0, (n as usize) * PAGE_SIZE) };
    Ok((mfn0.maddr(), va))
}

/// Gives back `n` frames from `first`.
fn free_pages(first: Pfn, n: u64) {
    for i in 0..n {
        let _ = mm::free_frame(Pfn(first.0 + i));
    }
}

/// The direct-map address of machine address `maddr` in one of our frames.
fn maddr_to_va(maddr: u64) -> Option<u64> {
    let pfn = mm::pfn_of(Mfn(maddr >> 12))?;
    Some(direct_map_va(pfn) + (maddr & 0xfff))
}

/// The machine address of `[va, va + len)` if the range is one of our pages' run whose machine
/// frames are contiguous (dom0's memory on our hypervisor is `mfn = base + pfn`, so heap and
/// stack buffers are): the device may then use it in place, without a bounce copy. `None`
/// (bounce) when any page is not ours or the run is not machine-contiguous (Xen 4.17).
fn direct_maddr(va: u64, len: usize) -> Option<u64> {
    let last = (va.checked_add((len as u64).checked_sub(1)?)?) >> 12;
    let mfn0 = mm::va_to_mfn(va)?;
    if mfn0 >= 1 << 40 {
        return None; // INVALID_MFN (a ballooned-out page) or garbage
    }
    // The following pages (none for a buffer within one page, as virtio's headers are): each
    // the next machine frame.
    let mut want = mfn0;
    for page in (va >> 12) + 1..=last {
        want += 1;
        if mm::pfn_to_mfn(page) != Some(want) {
            return None;
        }
    }
    Some((mfn0 << 12) | (va & 0xfff))
}

/// Maps machine range `[paddr, paddr + size)` (I/O memory) uncached in the MMIO range.
fn map_mmio(paddr: u64, size: usize) -> Result<u64, PtError> {
    let offset = paddr & 0xfff;
    let pages = (offset + size as u64).div_ceil(4096).max(1);
    let mut next = NEXT_MMIO.lock();
    let base = *next;
    if base + pages * 4096 > MMIO_END {
        return Err(PtError::OutOfFrames);
    }
    let l4 = mm::kernel_l4();
    for i in 0..pages {
        let va = base + i * 4096;
        let l1 = pt::ensure_l1(l4, va)?;
        let mfn = (paddr >> 12) + i;
        pt::set_entry(
            "mmu_update(map MMIO)",
            l1,
            index(va, 1),
            make_entry(mfn, PTE_P | PTE_RW | PTE_A | PTE_D | PTE_PCD | PTE_PWT),
        )?;
    }
    *next = base + pages * 4096;
    Ok(base + offset)
}

/// Reserves `pages` pages of the MMIO range with page tables but nothing mapped (the grant-map
/// area: the hypervisor writes its PTEs); returns the first page's address.
pub(crate) fn reserve_va(pages: usize) -> Result<u64, PtError> {
    let mut next = NEXT_MMIO.lock();
    let base = *next;
    let end = base + pages as u64 * 4096;
    if end > MMIO_END {
        return Err(PtError::OutOfFrames);
    }
    let l4 = mm::kernel_l4();
    let mut va = base;
    while va < end {
        pt::ensure_l1(l4, va)?;
        va = (va | 0x1f_ffff) + 1; // the next 2 MiB: one L1 table each
    }
    *next = end;
    Ok(base)
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned memory that nothing else uses until
// `dma_dealloc` (fresh allocator frames, machine-contiguous, at their direct-map address);
// `mmio_phys_to_virt` returns a fresh mapping of the BAR range; `share` hands the device a bounce
// buffer that only it and `unshare` use.
unsafe impl Hal for XenHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let (maddr, va) = dma_pages(pages).unwrap_or_else(|e| panic!("blkdev: DMA memory: {e}"));
        (
            maddr,
            NonNull::new(va as *mut u8).expect("direct-map addresses are not null"),
        )
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        match mm::pfn_of(Mfn(paddr >> 12)) {
            Some(first) => {
                free_pages(first, pages as u64);
                0
            }
            None => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let va = map_mmio(paddr, size)
            .unwrap_or_else(|e| panic!("blkdev: mapping MMIO {paddr:#x}+{size:#x}: {e}"));
        NonNull::new(va as *mut u8).expect("the MMIO range is not at 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        let va = buffer.as_ptr().cast::<u8>() as u64;
        if let Some(bus) = super::grant_map::bus_addr(va, len) {
            // A front end's granted page mapped for the device: its `dev_bus_addr`.
            return bus;
        }
        if let Some(maddr) = direct_maddr(va, len) {
            // Machine-contiguous already: the device reads or writes it in place.
            return maddr;
        }
        let (maddr, va) = dma_pages(len.div_ceil(PAGE_SIZE))
            .unwrap_or_else(|e| panic!("blkdev: bounce buffer: {e}"));
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller guarantees `buffer` is valid and unaliased for this call; the
            // bounce pages are ours and at least `len` bytes long.
            unsafe { ptr::copy_nonoverlapping(buffer.as_ptr().cast::<u8>(), va as *mut u8, len) };
        }
        maddr
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let len = buffer.len();
        let va = buffer.as_ptr().cast::<u8>() as u64;
        if super::grant_map::bus_addr(va, len) == Some(paddr) {
            // A granted page, in place.
            return;
        }
        if direct_maddr(va, len) == Some(paddr) {
            // Shared in place (a bounce page is never the buffer's own frame).
            return;
        }
        let Some(va) = maddr_to_va(paddr) else {
            return;
        };
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: the bounce pages from `share` hold `len` bytes the device wrote; the caller
            // guarantees `buffer` is valid and unaliased for this call.
            unsafe { ptr::copy_nonoverlapping(va as *const u8, buffer.as_ptr().cast::<u8>(), len) };
        }
        if let Some(first) = mm::pfn_of(Mfn(paddr >> 12)) {
            free_pages(first, len.div_ceil(PAGE_SIZE) as u64);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The block device API.

/// A virtio-blk disk in 512-byte sectors: the device part of the block split driver (blkback
/// serves domUs from it).
pub struct BlockDevice {
    blk: VirtioBlk,
    /// Where the device sits on PCI bus 0.
    pub location: DeviceFunction,
    /// Its PCI device ID (0x1001 transitional, 0x1042 modern).
    pub device_id: u16,
    /// How completions are noticed.
    pub irq: IrqMode,
    /// Interrupts (events on the PIRQ's port) taken.
    pub interrupts: u64,
    /// Waits that ended without the event (a lost interrupt would show here).
    pub timeouts: u64,
    /// Requests submitted by [`BlockDevice::transfer`].
    pub submitted: u64,
    /// Most requests [`BlockDevice::transfer`] had in the device's queue at once.
    pub max_inflight: u64,
    /// [`BlockDevice::transfer`]'s header and status per request in flight, and which piece each
    /// queue slot holds: kept between calls (no allocation per request; a queue-depth-1 read
    /// paid two, one of 64 entries), never moved while the device may write them.
    hdrs: Vec<(BlkHeader, [u8; 1])>,
    slots: Vec<Option<(usize, u16)>>,
    /// [`BlockDevice::transfer`]'s requests and their buffers, kept between calls too.
    pieces: Vec<Piece>,
    bufs: Vec<(*mut u8, usize)>,
}

/// A request of [`BlockDevice::transfer`]: its transfer, first sector, direction, and its data
/// buffers, `bufs[first..first + n]` of the call's list (address, length).
struct Piece {
    io: usize,
    sector: u64,
    write: bool,
    first: usize,
    n: usize,
}

/// How the driver learns that a request completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqMode {
    /// Spinning on the used ring.
    Polled,
    /// The INTx line's GSI, mapped to `pirq`, bound to event channel `port`.
    Pirq {
        /// GSI from the Interrupt Line register.
        gsi: u32,
        /// The PIRQ the hypervisor mapped it to.
        pirq: u32,
        /// The event channel bound to the PIRQ.
        port: u32,
    },
}

impl fmt::Display for IrqMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IrqMode::Polled => f.write_str("polled"),
            IrqMode::Pirq { gsi, pirq, port } => {
                write!(f, "irq GSI {gsi} -> pirq {pirq} -> port {port}")
            }
        }
    }
}

/// Maps `gsi` to a PIRQ and binds it to a masked event channel; `None` if the hypervisor
/// refuses either step (the PIRQ stays mapped if only the bind fails: harmless).
pub(crate) fn bind_gsi(gsi: u32) -> Option<IrqMode> {
    // The port is watched in shared_info, and the poll's timeout needs the time.
    if shared_info::get().is_none() || time::now_ns().is_none() {
        return None;
    }
    use hypercall_abi::event_channel::EvtchnBindPirq;
    use hypercall_abi::physdev::{PhysdevMapPirq, MAP_PIRQ_TYPE_GSI};
    let mut map = PhysdevMapPirq {
        domid: hypercall_abi::xen::DOMID_SELF,
        r#type: MAP_PIRQ_TYPE_GSI,
        index: gsi as i32,
        pirq: gsi as i32,
        ..Default::default()
    };
    if hc::physdev_op(&mut map) != 0 || map.pirq < 0 {
        return None;
    }
    let pirq = map.pirq as u32;
    let mut bind = EvtchnBindPirq {
        pirq,
        flags: hypercall_abi::event_channel::BIND_PIRQ__WILL_SHARE,
        port: 0,
    };
    if hc::event_channel_op(&mut bind) != 0 {
        return None;
    }
    // The upcall handles unmasked ports only: this one is waited for with SCHEDOP_poll.
    crate::kernel::events::mask(bind.port);
    Some(IrqMode::Pirq {
        gsi,
        pirq,
        port: bind.port,
    })
}

/// `cfg_type` of the common configuration's and the notifications' `virtio_pci_cap`s.
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
/// PCI capability ID of a vendor-specific capability (virtio's).
const PCI_CAP_ID_VNDR: u8 = 0x09;
/// `queue_select` and `queue_notify_off` in `virtio_pci_common_cfg`.
const COMMON_QUEUE_SELECT: usize = 0x16;
const COMMON_QUEUE_NOTIFY_OFF: usize = 0x1e;

/// Where a virtio structure is: BAR `bar`, `offset` and `length` in it (`virtio_pci_cap`).
struct CapRegion {
    bar: u8,
    offset: u32,
    length: u32,
}

/// Maps the region `r` of `location`'s BARs (checked against the BAR's size); its address.
fn map_cap_region(
    root: &mut virtio_drivers::transport::pci::bus::PciRoot<pci::PortCam>,
    location: DeviceFunction,
    r: &CapRegion,
) -> Option<u64> {
    let (address, size) = root
        .bar_info(location, r.bar)
        .ok()??
        .memory_address_size()?;
    if address == 0 || u64::from(r.offset) + u64::from(r.length) > size {
        return None;
    }
    map_mmio(address + u64::from(r.offset), r.length as usize).ok()
}

/// Finds queue `queue`'s notify register of the modern virtio-pci device at `location`, as
/// `PciTransport::notify` computes it on each call (virtio-drivers' own TODO says to cache it),
/// or `None` (the transport's own notify is used then): the first common and notify
/// capabilities, `queue_notify_off` read once with the queue selected, every offset checked
/// against its region and BAR.
fn notify_register(
    root: &mut virtio_drivers::transport::pci::bus::PciRoot<pci::PortCam>,
    location: DeviceFunction,
    queue: u16,
) -> Option<super::virtio_blk::NotifyRegister> {
    let (mut common, mut notify) = (None, None);
    for cap in root.capabilities(location) {
        if cap.id != PCI_CAP_ID_VNDR {
            continue;
        }
        let (cap_len, cfg_type) = (cap.private_header as u8, (cap.private_header >> 8) as u8);
        let word = |at: u8| pci::PortCam.read_word(location, cap.offset + at);
        let region = CapRegion {
            bar: word(4) as u8,
            offset: word(8),
            length: word(12),
        };
        match cfg_type {
            VIRTIO_PCI_CAP_COMMON_CFG if common.is_none() => common = Some(region),
            VIRTIO_PCI_CAP_NOTIFY_CFG if cap_len >= 20 && notify.is_none() => {
                notify = Some((region, word(16)));
            }
            _ => {}
        }
    }
    let common = common?;
    let (notify, multiplier) = notify?;
    if (common.length as usize) < COMMON_QUEUE_NOTIFY_OFF + 2 {
        return None;
    }
    let cfg = map_cap_region(root, location, &common)?;
    // SAFETY: `cfg` maps the device's common configuration uncached, at least up to
    // `queue_notify_off` (checked above); selecting a queue and reading its notify offset
    // change nothing else (the transport selects the queue it wants before each access).
    let off = unsafe {
        ptr::write_volatile((cfg + COMMON_QUEUE_SELECT as u64) as *mut u16, queue);
        ptr::read_volatile((cfg + COMMON_QUEUE_NOTIFY_OFF as u64) as *const u16)
    };
    let at = u64::from(off) * u64::from(multiplier);
    if at + 2 > u64::from(notify.length) || !at.is_multiple_of(2) {
        return None;
    }
    let region = CapRegion {
        bar: notify.bar,
        offset: notify.offset.checked_add(u32::try_from(at).ok()?)?,
        length: 2,
    };
    let va = map_cap_region(root, location, &region)?;
    // SAFETY: `va` maps the two bytes of queue `queue`'s notify register (within the notify
    // capability's region and its BAR, checked above), uncached (`map_mmio`), for as long as
    // dom0 runs.
    Some(unsafe { super::virtio_blk::NotifyRegister::new(NonNull::new(va as *mut u16)?) })
}

impl BlockDevice {
    /// Finds the first virtio-blk function on PCI bus 0, enables it (memory decoding, bus
    /// mastering) and initialises it. Raises the IOPL and builds the kernel's direct map and
    /// frame allocator if not done yet.
    pub fn probe(print_bus: bool) -> Result<BlockDevice, BlkError> {
        direct_map::init_memory().map_err(BlkError::Memory)?;
        let mut root = pci::root().map_err(BlkError::Iopl)?;
        let (location, info) = pci::enumerate_bus0(&root, print_bus)
            .into_iter()
            .find(|(_, i)| is_virtio_blk(i.vendor_id, i.device_id))
            .ok_or(BlkError::NoDevice)?;
        let (_, command) = root.get_status_command(location);
        root.set_command(
            location,
            command | Command::MEMORY_SPACE | Command::BUS_MASTER,
        );
        let notify = notify_register(&mut root, location, 0);
        let transport =
            PciTransport::new::<XenHal, _>(&mut root, location).map_err(BlkError::Transport)?;
        let mut blk = VirtioBlk::new(transport)?;
        if let Some(reg) = notify {
            blk.set_notify_register(reg);
        }
        // Interrupt Line (byte 0x3c) and Pin (0x3d): a pin and a line below 0xff mean INTx
        // routed to that GSI.
        let intr = pci::PortCam.read_word(location, 0x3c);
        let (line, pin) = (intr & 0xff, (intr >> 8) & 0xff);
        let irq = if pin != 0 && line < 0xff {
            bind_gsi(line)
        } else {
            None
        };
        let irq = match irq {
            Some(mode) => {
                // INTx must not be disabled in the command register.
                let (_, command) = root.get_status_command(location);
                root.set_command(location, command - Command::INTERRUPT_DISABLE);
                blk.enable_interrupts();
                mode
            }
            None => {
                // Completion is polled (see the module doc): the device need not interrupt,
                // and must not: with `VIRTIO_F_EVENT_IDX` `disable_interrupts` only writes a
                // hint, so INTx goes off at the device itself (the command register's Interrupt
                // Disable), or a GSI another device is bound on would storm with this one's line.
                blk.disable_interrupts();
                let (_, command) = root.get_status_command(location);
                root.set_command(location, command | Command::INTERRUPT_DISABLE);
                IrqMode::Polled
            }
        };
        Ok(BlockDevice {
            blk,
            location,
            device_id: info.device_id,
            irq,
            interrupts: 0,
            timeouts: 0,
            submitted: 0,
            max_inflight: 0,
            hdrs: Vec::new(),
            slots: Vec::new(),
            pieces: Vec::new(),
            bufs: Vec::new(),
        })
    }

    /// The disk's size in sectors.
    pub fn sectors(&self) -> u64 {
        self.blk.capacity()
    }

    /// Whether the device refuses writes (`VIRTIO_BLK_F_RO`).
    pub fn readonly(&self) -> bool {
        self.blk.readonly()
    }

    /// Checks a request of `len` bytes at `sector`; returns its sector count.
    fn check(&self, sector: u64, len: usize) -> Result<u64, BlkError> {
        if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(BlkError::BadLength(len));
        }
        let n = (len / SECTOR_SIZE) as u64;
        let size = self.sectors();
        if sector.checked_add(n).is_none_or(|end| end > size) {
            return Err(BlkError::OutOfRange(sector, n, size));
        }
        Ok(n)
    }

    /// Reads `buf.len() / 512` sectors from `sector` into `buf` (a non-zero multiple of 512).
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        self.check(sector, buf.len())?;
        for (i, chunk) in buf
            .chunks_mut(MAX_REQUEST_SECTORS * SECTOR_SIZE)
            .enumerate()
        {
            let at = sector + (i * MAX_REQUEST_SECTORS) as u64;
            if let IrqMode::Pirq { port, pirq, .. } = self.irq {
                let mut hdr = BlkHeader::default();
                let mut status = [0u8; 1];
                let mut bufs = [chunk];
                // SAFETY: `hdr`, the chunk and `status` outlive the request: it is completed
                // below (the device is done with them once its token is in the used ring).
                unsafe {
                    let token = self
                        .blk
                        .submit(at, &mut hdr, Data::In(&mut bufs), &mut status)?;
                    self.wait(port, pirq);
                    self.blk
                        .complete(token, &hdr, Data::In(&mut bufs), &mut status)?;
                }
            } else {
                self.blk.read_polled(at, chunk)?;
            }
        }
        Ok(())
    }

    /// Writes `buf` (a non-zero multiple of 512 bytes) to the disk from `sector` on.
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        self.check(sector, buf.len())?;
        for (i, chunk) in buf.chunks(MAX_REQUEST_SECTORS * SECTOR_SIZE).enumerate() {
            let at = sector + (i * MAX_REQUEST_SECTORS) as u64;
            if let IrqMode::Pirq { port, pirq, .. } = self.irq {
                let mut hdr = BlkHeader::default();
                let mut status = [0u8; 1];
                let bufs = [chunk];
                // SAFETY: as in `read`.
                unsafe {
                    let token = self
                        .blk
                        .submit(at, &mut hdr, Data::Out(&bufs), &mut status)?;
                    self.wait(port, pirq);
                    self.blk
                        .complete(token, &hdr, Data::Out(&bufs), &mut status)?;
                }
            } else {
                self.blk.write_polled(at, chunk)?;
            }
        }
        Ok(())
    }

    /// Makes completed writes durable (`VIRTIO_BLK_T_FLUSH`; a no-op for a device without
    /// `VIRTIO_BLK_F_FLUSH`, whose writes are durable on completion).
    pub fn flush(&mut self) -> Result<(), BlkError> {
        // virtio-drivers has no non-blocking flush: poll it with the queue's interrupts off.
        if self.irq == IrqMode::Polled {
            return Ok(self.blk.flush()?);
        }
        self.blk.disable_interrupts();
        let r = self.blk.flush();
        self.blk.enable_interrupts();
        Ok(r?)
    }

    /// Performs a batch of independent reads and writes with the device's queue kept full:
    /// requests (each transfer split into pieces of at most [`MAX_REQUEST_SECTORS`], and of at
    /// most the device's segments) are submitted while the queue has room (16: each request's
    /// descriptors are one indirect table), and each completion, in the order the device
    /// finishes them (the used ring), frees room for the next; completions are awaited on the
    /// PIRQ's port as in [`BlockDevice::read`]. An [`IoData::Dma`] transfer's pieces are the
    /// front end's mapped pages themselves (one descriptor each, at its bus address).
    pub fn transfer(&mut self, ios: &mut [DiskIo<'_>]) {
        let max_bytes = MAX_REQUEST_SECTORS * SECTOR_SIZE;
        let max_segs = self.blk.max_segments();
        // The requests and their buffers (taken out of `self` for the call, put back at its
        // end: no allocation per call once they have grown).
        let mut pieces = core::mem::take(&mut self.pieces);
        let mut bufs = core::mem::take(&mut self.bufs);
        pieces.clear();
        bufs.clear();
        for (i, io) in ios.iter_mut().enumerate() {
            if self.check(io.sector, io.data.len()).is_err() {
                io.result = Err(DiskError::Io);
                continue;
            }
            io.result = Ok(());
            let (mut sector, write) = (io.sector, io.write);
            match &mut io.data {
                IoData::Buf(buf) => {
                    for c in buf.chunks_mut(max_bytes) {
                        pieces.push(Piece {
                            io: i,
                            sector,
                            write,
                            first: bufs.len(),
                            n: 1,
                        });
                        bufs.push((c.as_mut_ptr(), c.len()));
                        sector += (c.len() / SECTOR_SIZE) as u64;
                    }
                }
                IoData::Dma(segs) => {
                    let mut cur = Piece {
                        io: i,
                        sector,
                        write,
                        first: bufs.len(),
                        n: 0,
                    };
                    let mut bytes = 0;
                    for s in segs.iter() {
                        let len = s.len as usize;
                        // Each piece is one mapped page of the grant-map area (checked by
                        // `Hal::share`, which gives the device its bus address).
                        if super::grant_map::bus_addr(s.host, len) != Some(s.addr)
                            || len == 0
                            || !len.is_multiple_of(SECTOR_SIZE)
                        {
                            io.result = Err(DiskError::Io);
                            break;
                        }
                        if cur.n > 0 && (bytes + len > max_bytes || cur.n == max_segs) {
                            let next = Piece {
                                io: i,
                                sector: cur.sector + (bytes / SECTOR_SIZE) as u64,
                                write,
                                first: bufs.len(),
                                n: 0,
                            };
                            pieces.push(core::mem::replace(&mut cur, next));
                            bytes = 0;
                        }
                        bufs.push((s.host as *mut u8, len));
                        cur.n += 1;
                        bytes += len;
                    }
                    if io.result.is_err() {
                        pieces.retain(|p| p.io != i);
                    } else if cur.n > 0 {
                        pieces.push(cur);
                    }
                }
            }
        }
        // No more requests in flight than pieces (nor than the slots' bit mask below holds; the
        // queue has `virtio_blk::QUEUE_SIZE` = 64 entries anyway).
        let depth = self.blk.queue_size().min(pieces.len()).min(64);
        // Header and status of each request in flight (taken out of `self` for the call and put
        // back at its end; the buffers stay where they are).
        let mut hdrs = core::mem::take(&mut self.hdrs);
        hdrs.clear();
        hdrs.resize(depth, (BlkHeader::default(), [0u8; 1]));
        let mut slots = core::mem::take(&mut self.slots);
        slots.clear();
        slots.resize(depth, None);
        let (mut next, mut inflight) = (0, 0);
        // The free slots (bit `s` set: `slots[s]` is free), and each token's slot (`u8::MAX`:
        // none), so that neither a submission nor a completion scans the slots.
        let mut free: u64 = if depth == 64 { !0 } else { (1 << depth) - 1 };
        let mut slot_of = [u8::MAX; super::virtio_blk::QUEUE_SIZE];
        let fail = |ios: &mut [DiskIo<'_>], io: usize| ios[io].result = Err(DiskError::Io);
        /// Runs `f` on piece `p`'s buffers (in `bufs`) as the device's data.
        ///
        /// # Safety
        /// `p`'s buffers must be valid for the device's access (see the callers).
        unsafe fn with_data<R>(
            p: &Piece,
            bufs: &[(*mut u8, usize)],
            f: impl FnOnce(Data<'_, '_>) -> R,
        ) -> R {
            const N: usize = super::virtio_blk::MAX_SEGMENTS;
            // More buffers than a chain may hold (the pieces are cut to fewer): no buffer at all,
            // which `submit` refuses, rather than a chain shorter than the request.
            let bufs = if p.n <= N {
                &bufs[p.first..p.first + p.n]
            } else {
                &[]
            };
            if let &[(ptr, len)] = bufs {
                // One buffer (a 4 KiB read or write, a bounce buffer): no array of them.
                if p.write {
                    // SAFETY: the caller's promise.
                    let out = unsafe { core::slice::from_raw_parts(ptr.cast_const(), len) };
                    return f(Data::Out(&[out]));
                }
                // SAFETY: the caller's promise.
                let into = unsafe { core::slice::from_raw_parts_mut(ptr, len) };
                return f(Data::In(&mut [into]));
            }
            if p.write {
                let mut out: [&[u8]; N] = [&[]; N];
                for (o, &(ptr, len)) in out.iter_mut().zip(bufs) {
                    // SAFETY: the caller's promise.
                    *o = unsafe { core::slice::from_raw_parts(ptr.cast_const(), len) };
                }
                f(Data::Out(&out[..bufs.len()]))
            } else {
                let mut into: [&mut [u8]; N] = core::array::from_fn(|_| Default::default());
                for (o, &(ptr, len)) in into.iter_mut().zip(bufs) {
                    // SAFETY: the caller's promise.
                    *o = unsafe { core::slice::from_raw_parts_mut(ptr, len) };
                }
                f(Data::In(&mut into[..bufs.len()]))
            }
        }
        loop {
            while next < pieces.len() && inflight < depth {
                debug_assert!(free != 0, "inflight < depth");
                let s = free.trailing_zeros() as usize;
                debug_assert!(slots[s].is_none());
                let p = &pieces[next];
                if ios[p.io].result.is_err() {
                    next += 1; // an earlier piece of its transfer failed
                    continue;
                }
                let (hdr, status) = &mut hdrs[s];
                // SAFETY: a piece's buffers are a part of its transfer's buffer, which this
                // call borrows exclusively until every request is completed below, or pages of
                // the grant-map area mapped (checked above) until the back end unmaps them
                // after this call; `hdr`/`status` live in `hdrs`, untouched until then.
                let token =
                    unsafe { with_data(p, &bufs, |d| self.blk.submit(p.sector, hdr, d, status)) };
                match token {
                    Ok(t) => {
                        slots[s] = Some((next, t));
                        free &= !(1 << s);
                        // A token is the chain's first descriptor, below the queue's size
                        // (virtio-drivers' `VirtQueue<_, QUEUE_SIZE>`): indexing cannot fail.
                        slot_of[usize::from(t)] = s as u8;
                        inflight += 1;
                        self.submitted += 1;
                        next += 1;
                    }
                    Err(virtio_drivers::Error::QueueFull) if inflight > 0 => break,
                    Err(_) => {
                        fail(ios, p.io);
                        next += 1;
                    }
                }
            }
            if inflight == 0 {
                break;
            }
            self.max_inflight = self.max_inflight.max(inflight as u64);
            let token = self.wait_used();
            let s = slot_of
                .get(usize::from(token))
                .map(|&s| usize::from(s))
                .filter(|&s| {
                    slots
                        .get(s)
                        .is_some_and(|x| x.is_some_and(|(_, t)| t == token))
                });
            let Some(s) = s else {
                // Not one of ours: the device is broken; give up on what is in flight.
                for (piece, _) in slots.iter().flatten() {
                    fail(ios, pieces[*piece].io);
                }
                break;
            };
            let (piece, _) = slots[s].take().expect("found");
            free |= 1 << s;
            slot_of[usize::from(token)] = u8::MAX;
            inflight -= 1;
            let p = &pieces[piece];
            let (hdr, status) = &mut hdrs[s];
            // SAFETY: the same buffers as when submitted (see above).
            let r = unsafe { with_data(p, &bufs, |d| self.blk.complete(token, hdr, d, status)) };
            if r.is_err() {
                fail(ios, p.io);
            }
        }
        self.hdrs = hdrs;
        self.slots = slots;
        self.pieces = pieces;
        self.bufs = bufs;
    }

    /// Waits until the used ring has an entry and returns its token. With a PIRQ:
    /// `SCHEDOP_poll` on its port, then clear the event, read the ISR (lowering the line) and
    /// EOI the PIRQ; the poll has a timeout so that a lost interrupt only costs time. Polled:
    /// spins.
    fn wait_used(&mut self) -> u16 {
        let IrqMode::Pirq { port, pirq, .. } = self.irq else {
            loop {
                if let Some(t) = self.blk.peek_used() {
                    return t;
                }
                core::hint::spin_loop();
            }
        };
        self.wait(port, pirq)
    }

    /// Waits for an entry in the used ring (see [`BlockDevice::wait_used`]); returns its token.
    fn wait(&mut self, port: u32, pirq: u32) -> u16 {
        use hypercall_abi::physdev::PhysdevEoi;
        use hypercall_abi::sched::SchedPoll;
        loop {
            if crate::kernel::events::is_pending(port) {
                crate::kernel::events::clear_pending(port);
                self.interrupts += 1;
                self.blk.ack_interrupt();
                hc::physdev_op(&mut PhysdevEoi { irq: pirq });
            }
            // `VIRTIO_F_EVENT_IDX`: the last completion taken wrote `used_event` (the device
            // interrupts when its used index passes it), and the used index is read next. The
            // device does the mirror image (writes the index, a full barrier, reads
            // `used_event`), so without a full barrier here the store could still sit in the
            // store buffer while the load goes ahead: both sides would see the other's old
            // value, the device would not interrupt and this would sleep out the poll's timeout
            // (Linux's `virtqueue_poll` has the same `virtio_mb`).
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
            if let Some(t) = self.blk.peek_used() {
                return t;
            }
            let mut ports = [port];
            let mut poll = SchedPoll {
                ports: ports.as_mut_ptr() as u64,
                nr_ports: 1,
                timeout: time::now_ns().map_or(0, |t| t + 100_000_000),
                ..Default::default()
            };
            hc::sched_op(&mut poll);
            if !crate::kernel::events::is_pending(port) {
                // Timed out. Whatever was lost, it does not stay lost: the device is notified
                // again (in case a notification was), and its ISR read and the PIRQ EOI'd (in
                // case an interrupt was: a line left high is lowered and unmasked). Each is
                // harmless when nothing was.
                self.timeouts += 1;
                self.blk.kick();
                self.blk.ack_interrupt();
                hc::physdev_op(&mut PhysdevEoi { irq: pirq });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `blkdev-selftest[=<sector>]`

/// Runs the self-test; returns whether it passed. Prints what it finds and does.
pub fn selftest(sector: u64) -> bool {
    match run_selftest(sector) {
        Ok(()) => {
            println!("blkdev-selftest: PASS");
            true
        }
        Err(e) => {
            println!("blkdev-selftest: FAIL: {e}");
            false
        }
    }
}

fn run_selftest(sector: u64) -> Result<(), BlkError> {
    let mut dev = BlockDevice::probe(true)?;
    let l = dev.location;
    println!(
        "blkdev: virtio-blk at {:02x}:{:02x}.{} (1af4:{:04x}), {}",
        l.bus, l.device, l.function, dev.device_id, dev.irq
    );
    let sectors = dev.sectors();
    println!(
        "blkdev: virtio-blk {sectors} sectors ({} MiB){}",
        (sectors * SECTOR_SIZE as u64) >> 20,
        if dev.readonly() { ", read-only" } else { "" }
    );
    let mut buf = [0u8; SECTOR_SIZE];
    dev.read(0, &mut buf)?;
    let mut hex = guest_kernel::line::LineBuf::<64>::new();
    for b in &buf[..16] {
        use core::fmt::Write;
        let _ = write!(hex, "{b:02x}");
    }
    println!(
        "blkdev: read sector 0: {}...",
        core::str::from_utf8(hex.as_bytes()).unwrap_or("?")
    );
    let pattern = selftest_pattern(sector);
    dev.write(sector, &pattern)?;
    dev.flush()?;
    let mut back = [0u8; SECTOR_SIZE];
    dev.read(sector, &mut back)?;
    let same = back == pattern;
    println!(
        "blkdev: sector {sector}: wrote the pattern, flushed, read back {}",
        if same { "identical" } else { "DIFFERENT" }
    );
    if dev.irq != IrqMode::Polled {
        println!(
            "blkdev: {} interrupts, {} poll timeouts",
            dev.interrupts, dev.timeouts
        );
    }
    if same {
        Ok(())
    } else {
        Err(BlkError::Virtio(virtio_drivers::Error::IoError))
    }
}
