//! A virtio-blk driver with scatter-gather requests, over virtio-drivers' PCI transport and
//! virtqueue: a request's data may be several buffers (one descriptor each, in one indirect
//! table), so blkback can hand the device a front end's granted pages where they are mapped,
//! at their `dev_bus_addr` (`XenHal::share`), instead of one bounce buffer.
//!
//! virtio-drivers' own `VirtIOBlk` takes one data buffer per request and keeps its queue
//! private; this is the same protocol (virtio 1.2 §5.2: a `virtio_blk_req` header the device
//! reads, the data, a status byte it writes) with the data as a list.

use core::ptr::NonNull;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, InterruptStatus, Transport};
use virtio_drivers::{Error, PAGE_SIZE};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::blkdev::XenHal;

/// The request queue (virtio-blk has one).
const QUEUE: u16 = 0;
/// Requests in the queue at once (each takes one descriptor: its chain is an indirect table).
/// virtio-drivers also caps one request's descriptors at the queue size, so this is 64: a
/// 32-page request is 34 descriptors (QEMU's virtio-blk queues hold 256).
pub const QUEUE_SIZE: usize = 64;

/// Data buffers one request carries at most: a 32-page request (an indirect blkif request of
/// 32 segments) plus one, so that a chain's descriptor list fits in a small array on the stack
/// (no allocation per request besides virtio-drivers' indirect table).
pub const MAX_SEGMENTS: usize = 33;

/// A request's descriptors at most: header, data, status.
const MAX_DESCRIPTORS: usize = MAX_SEGMENTS + 2;

/// `VIRTIO_BLK_F_SEG_MAX`: `seg_max` is valid.
const F_SEG_MAX: u64 = 1 << 2;
/// `VIRTIO_BLK_F_RO`.
const F_RO: u64 = 1 << 5;
/// `VIRTIO_BLK_F_FLUSH`.
const F_FLUSH: u64 = 1 << 9;
/// `VIRTIO_F_INDIRECT_DESC`.
const F_INDIRECT_DESC: u64 = 1 << 28;
/// `VIRTIO_F_EVENT_IDX`.
const F_EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_F_VERSION_1`.
const F_VERSION_1: u64 = 1 << 32;
const SUPPORTED: u64 = F_SEG_MAX | F_RO | F_FLUSH | F_INDIRECT_DESC | F_EVENT_IDX | F_VERSION_1;

/// `VIRTIO_BLK_T_IN`, `_OUT`, `_FLUSH`.
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;

/// `VIRTIO_BLK_S_OK`.
const S_OK: u8 = 0;
/// `VIRTIO_BLK_S_UNSUPP`.
const S_UNSUPP: u8 = 2;

/// A virtqueue's notify register of a modern virtio-pci device: `queue_notify_off` times
/// `notify_off_multiplier` into the notify capability's region (virtio 1.2 §4.1.4.4), mapped
/// uncached. Found once (`blkdev::notify_register`): the queue's offset never changes.
pub struct NotifyRegister(NonNull<u16>);

// SAFETY: the register is device memory mapped for dom0's kernel alone, reached only through
// `write` (a volatile 16-bit store); dom0 runs on one vCPU.
unsafe impl Send for NotifyRegister {}

impl NotifyRegister {
    /// # Safety
    /// `va` must map the 16-bit notify register of a virtqueue uncached, for as long as the
    /// register is used.
    pub unsafe fn new(va: NonNull<u16>) -> NotifyRegister {
        NotifyRegister(va)
    }

    /// Notifies the device of queue `queue` (without `VIRTIO_F_NOTIFICATION_DATA`, the queue's
    /// index is what is written).
    pub fn write(&self, queue: u16) {
        // SAFETY: `new`'s contract: an uncached mapping of the register.
        unsafe { self.0.as_ptr().write_volatile(queue) }
    }
}

/// `struct virtio_blk_req`'s header: what the device reads first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct BlkHeader {
    kind: u32,
    reserved: u32,
    sector: u64,
}

/// A virtio-blk device.
pub struct VirtioBlk {
    transport: PciTransport,
    /// The queue's notify register, when [`VirtioBlk::set_notify_register`] was given it.
    notify: Option<NotifyRegister>,
    queue: VirtQueue<XenHal, QUEUE_SIZE>,
    capacity: u64,
    features: u64,
    seg_max: usize,
}

/// A request's data: buffers the device reads (a write) or writes (a read).
pub enum Data<'a, 'b> {
    /// The device reads these.
    Out(&'a [&'b [u8]]),
    /// The device writes these.
    In(&'a mut [&'b mut [u8]]),
}

impl VirtioBlk {
    /// Initialises the device behind `transport` (virtio 1.2 §3.1.1).
    pub fn new(mut transport: PciTransport) -> Result<VirtioBlk, Error> {
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let features = transport.read_device_features() & SUPPORTED;
        transport.write_driver_features(features);
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK,
        );
        transport.set_guest_page_size(PAGE_SIZE as u32);
        // `capacity` (le64 at 0) and `seg_max` (le32 at 12).
        let capacity = transport.read_consistent(|| {
            Ok(u64::from(transport.read_config_space::<u32>(0)?)
                | u64::from(transport.read_config_space::<u32>(4)?) << 32)
        })?;
        let seg_max = if features & F_SEG_MAX != 0 {
            transport.read_config_space::<u32>(12)? as usize
        } else {
            1
        };
        let queue = VirtQueue::new(
            &mut transport,
            QUEUE,
            features & F_INDIRECT_DESC != 0,
            features & F_EVENT_IDX != 0,
        )?;
        transport.finish_init();
        Ok(VirtioBlk {
            transport,
            notify: None,
            queue,
            capacity,
            features,
            seg_max: seg_max.max(1),
        })
    }

    /// Size in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether writes are refused (`VIRTIO_BLK_F_RO`).
    pub fn readonly(&self) -> bool {
        self.features & F_RO != 0
    }

    /// Data buffers one request may carry: the device's `seg_max`, at most [`MAX_SEGMENTS`].
    pub fn max_segments(&self) -> usize {
        self.seg_max.min(MAX_SEGMENTS)
    }

    /// Requests the queue holds at once.
    pub fn queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    /// Acknowledges the device's interrupt (reading the ISR lowers the INTx line).
    pub fn ack_interrupt(&mut self) -> InterruptStatus {
        self.transport.ack_interrupt()
    }

    /// Writes the queue's notify register found at probe (one register write), or has the
    /// transport find it (virtio-drivers' `PciTransport::notify` selects the queue and reads its
    /// `queue_notify_off` first: three accesses, each an exit from QEMU's translated code).
    fn notify(&mut self) {
        match &self.notify {
            Some(reg) => reg.write(QUEUE),
            None => self.transport.notify(QUEUE),
        }
    }

    /// Notifies the queue through `reg` from now on (`super::blkdev`, which found it at probe).
    pub fn set_notify_register(&mut self, reg: NotifyRegister) {
        self.notify = Some(reg);
    }

    /// Notifies the device of the queue whatever `avail_event` says (an extra notification is
    /// harmless): after a wait timed out, in case one was lost.
    pub fn kick(&mut self) {
        self.notify();
    }

    /// Asks the device to interrupt on completions.
    pub fn enable_interrupts(&mut self) {
        self.queue.set_dev_notify(true);
    }

    /// Asks the device not to interrupt.
    pub fn disable_interrupts(&mut self) {
        self.queue.set_dev_notify(false);
    }

    /// The token of the next completed request, if any (not consumed).
    pub fn peek_used(&mut self) -> Option<u16> {
        self.queue.peek_used()
    }

    /// Queues a read (`Data::In`) or write (`Data::Out`) of the buffers' sectors from `sector`
    /// and notifies the device; returns the request's token.
    ///
    /// # Safety
    /// `hdr`, the buffers and `status` must stay valid and must not be accessed until
    /// [`VirtioBlk::complete`] with the token and the same arguments succeeded.
    pub unsafe fn submit(
        &mut self,
        sector: u64,
        hdr: &mut BlkHeader,
        data: Data<'_, '_>,
        status: &mut [u8; 1],
    ) -> Result<u16, Error> {
        let (kind, n) = match &data {
            Data::Out(b) => (T_OUT, b.len()),
            Data::In(b) => (T_IN, b.len()),
        };
        if n == 0 || n > self.max_segments() {
            return Err(Error::InvalidParam);
        }
        *hdr = BlkHeader {
            kind,
            reserved: 0,
            sector,
        };
        status[0] = 0xff;
        // SAFETY: the caller keeps every buffer valid and untouched until `complete`.
        let token = unsafe {
            with_chain(hdr, data, status, |inputs, outputs| {
                self.queue.add(inputs, outputs)
            })?
        };
        // The avail index just stored, `avail_event` loaded next: a full barrier between them
        // (VIRTIO_F_EVENT_IDX's other Dekker pair; see `BlockDevice::wait`).
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        if self.queue.should_notify() {
            self.notify();
        }
        Ok(token)
    }

    /// Takes a completed request off the used ring (`token` must be [`VirtioBlk::peek_used`]'s)
    /// and returns its outcome.
    ///
    /// # Safety
    /// The arguments must be those the request was submitted with.
    pub unsafe fn complete(
        &mut self,
        token: u16,
        hdr: &BlkHeader,
        data: Data<'_, '_>,
        status: &mut [u8; 1],
    ) -> Result<(), Error> {
        // SAFETY: the same buffers as `submit` added (the caller's promise).
        unsafe {
            with_chain(hdr, data, status, |inputs, outputs| {
                self.queue.pop_used(token, inputs, outputs)
            })?;
        }
        match status[0] {
            S_OK => Ok(()),
            S_UNSUPP => Err(Error::Unsupported),
            _ => Err(Error::IoError),
        }
    }

    /// Reads into `buf` from `sector`, spinning until done (interrupts off: the polled mode).
    pub fn read_polled(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Error> {
        let mut hdr = BlkHeader::default();
        let mut status = [0u8; 1];
        let mut bufs = [buf];
        // SAFETY: every argument lives until `complete` below, which waits for the device.
        unsafe {
            let token = self.submit(sector, &mut hdr, Data::In(&mut bufs), &mut status)?;
            self.spin_for(token);
            self.complete(token, &hdr, Data::In(&mut bufs), &mut status)
        }
    }

    /// Writes `buf` from `sector`, spinning until done.
    pub fn write_polled(&mut self, sector: u64, buf: &[u8]) -> Result<(), Error> {
        let mut hdr = BlkHeader::default();
        let mut status = [0u8; 1];
        let bufs = [buf];
        // SAFETY: as in `read_polled`.
        unsafe {
            let token = self.submit(sector, &mut hdr, Data::Out(&bufs), &mut status)?;
            self.spin_for(token);
            self.complete(token, &hdr, Data::Out(&bufs), &mut status)
        }
    }

    /// Flushes the device's cache (`VIRTIO_BLK_T_FLUSH`), spinning until done; a no-op without
    /// `VIRTIO_BLK_F_FLUSH` (writes are durable on completion then). Call with nothing else in
    /// the queue.
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.features & F_FLUSH == 0 {
            return Ok(());
        }
        let hdr = BlkHeader {
            kind: T_FLUSH,
            reserved: 0,
            sector: 0,
        };
        let mut status = [0xffu8; 1];
        // SAFETY: `hdr` and `status` live until the request is popped below.
        unsafe {
            let token = self
                .queue
                .add(&[hdr.as_bytes()], &mut [status.as_mut_slice()])?;
            // As in `submit`.
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
            if self.queue.should_notify() {
                self.notify();
            }
            self.spin_for(token);
            self.queue
                .pop_used(token, &[hdr.as_bytes()], &mut [status.as_mut_slice()])?;
        }
        match status[0] {
            S_OK => Ok(()),
            S_UNSUPP => Err(Error::Unsupported),
            _ => Err(Error::IoError),
        }
    }

    fn spin_for(&mut self, token: u16) {
        while self.queue.peek_used() != Some(token) {
            core::hint::spin_loop();
        }
    }
}

/// Runs `f` on a request's chain as virtio-drivers takes it: what the device reads (the header,
/// a write's data) and what it writes (a read's data, the status), in arrays on the stack. More
/// than [`MAX_SEGMENTS`] buffers: `InvalidParam`.
fn with_chain<R>(
    hdr: &BlkHeader,
    data: Data<'_, '_>,
    status: &mut [u8; 1],
    f: impl for<'a> FnOnce(&'a [&'a [u8]], &'a mut [&'a mut [u8]]) -> Result<R, Error>,
) -> Result<R, Error> {
    match data {
        // One buffer (a 4 KiB read or write): arrays of two.
        Data::Out(&[buf]) => f(&[hdr.as_bytes(), buf], &mut [status.as_mut_slice()]),
        Data::In([buf]) => f(&[hdr.as_bytes()], &mut [&mut **buf, status.as_mut_slice()]),
        Data::Out(bufs) if bufs.len() <= MAX_SEGMENTS => {
            let mut inputs: [&[u8]; MAX_DESCRIPTORS] = [&[]; MAX_DESCRIPTORS];
            inputs[0] = hdr.as_bytes();
            inputs[1..=bufs.len()].copy_from_slice(bufs);
            f(&inputs[..=bufs.len()], &mut [status.as_mut_slice()])
        }
        Data::In(bufs) if bufs.len() <= MAX_SEGMENTS => {
            let n = bufs.len();
            let mut outputs: [&mut [u8]; MAX_DESCRIPTORS] =
                core::array::from_fn(|_| Default::default());
            for (o, b) in outputs.iter_mut().zip(bufs.iter_mut()) {
                *o = &mut **b;
            }
            outputs[n] = status.as_mut_slice();
            f(&[hdr.as_bytes()], &mut outputs[..=n])
        }
        _ => Err(Error::InvalidParam),
    }
}

impl Drop for VirtioBlk {
    fn drop(&mut self) {
        // The device must not reach the queue's memory once it is freed.
        self.transport.queue_unset(QUEUE);
    }
}
