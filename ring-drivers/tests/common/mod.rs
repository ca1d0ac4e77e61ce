//! Fakes for the other side of every blkif interface: grant table, event channel, domains.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hypercall_abi::grant_table::{GNTST_bad_domain, GNTST_bad_gntref};
use ring_drivers::blkif::{
    Disk, DiskError, DiskIo, GrantIo, GrantIoError, GrantMapping, GrantPages, GrantSegment, IoData,
    Notify, RamDisk,
};
use ring_drivers::shared_page::PAGE_SIZE;

/// The front end's domain id and the back end's, as the fakes check them.
pub const FRONT_DOMID: u16 = 1;

/// A grant table: the front end's granted pages by reference (shared by both "domains"), and
/// the back end's mappings of them.
#[derive(Default)]
pub struct GrantTable {
    pages: Mutex<HashMap<u32, Box<[u8; PAGE_SIZE]>>>,
    /// Live mappings by handle: (gref, read-only).
    mapped: Mutex<HashMap<u32, (u32, bool)>>,
    next_handle: Mutex<u32>,
}

/// The fake's bus address of granted page `gref` (its "machine frame": the same for every
/// mapping of it).
pub fn bus_addr(gref: u32) -> u64 {
    (0x10_0000 + u64::from(gref)) << 12
}

impl GrantTable {
    /// Mappings not given up yet.
    pub fn live_mappings(&self) -> usize {
        self.mapped.lock().unwrap().len()
    }

    /// A device's access to `len` bytes at bus address `addr`: the page must be mapped (and
    /// mapped writable if the device writes it); runs `f` on the bytes.
    pub fn dma<R>(&self, addr: u64, len: usize, write: bool, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let gref = ((addr >> 12) - 0x10_0000) as u32;
        let off = (addr & 0xfff) as usize;
        assert!(off + len <= PAGE_SIZE, "DMA past the frame");
        let ok = self
            .mapped
            .lock()
            .unwrap()
            .values()
            .any(|&(g, ro)| g == gref && !(write && ro));
        assert!(
            ok,
            "DMA to gref {gref} (write {write}) without a fitting mapping"
        );
        let mut pages = self.pages.lock().unwrap();
        f(&mut pages.get_mut(&gref).expect("granted")[off..off + len])
    }
}

impl GrantTable {
    /// Grants `n` fresh zeroed pages with references 8.. (0..7 are reserved); returns them.
    pub fn grant(self: &Arc<Self>, n: usize) -> FrontPages {
        let mut pages = self.pages.lock().unwrap();
        let first = 8 + pages.len() as u32;
        let grefs: Vec<u32> = (first..first + n as u32).collect();
        for &g in &grefs {
            pages.insert(g, Box::new([0; PAGE_SIZE]));
        }
        FrontPages {
            table: self.clone(),
            grefs,
            indirect: Vec::new(),
        }
    }

    /// The back end's view (grant copies checked against the granting domain).
    pub fn backend_view(self: &Arc<Self>) -> BackGrants {
        BackGrants {
            table: self.clone(),
            copies: 0,
            can_map: false,
            map_calls: 0,
            unmap_calls: 0,
        }
    }
}

/// The front end's granted data pages (and, after [`FrontPages::with_indirect`], pages for
/// indirect segment lists).
pub struct FrontPages {
    table: Arc<GrantTable>,
    pub grefs: Vec<u32>,
    pub indirect: Vec<u32>,
}

impl FrontPages {
    /// Writes into page `page` at `offset` through a shared reference (a hostile front end
    /// rewriting a page it granted).
    pub fn write_shared(&self, page: usize, offset: usize, data: &[u8]) {
        let mut pages = self.table.pages.lock().unwrap();
        let p = pages.get_mut(&self.grefs[page]).unwrap();
        p[offset..offset + data.len()].copy_from_slice(data);
    }

    /// Grants `n` more pages for indirect segment lists.
    pub fn with_indirect(mut self, n: usize) -> Self {
        let more = self.table.grant(n);
        self.indirect = more.grefs;
        self
    }
}

impl GrantPages for FrontPages {
    fn count(&self) -> usize {
        self.grefs.len()
    }

    fn gref(&self, page: usize) -> u32 {
        self.grefs[page]
    }

    fn read(&self, page: usize, offset: usize, buf: &mut [u8]) {
        let pages = self.table.pages.lock().unwrap();
        buf.copy_from_slice(&pages[&self.grefs[page]][offset..offset + buf.len()]);
    }

    fn write(&mut self, page: usize, offset: usize, data: &[u8]) {
        let mut pages = self.table.pages.lock().unwrap();
        let p = pages.get_mut(&self.grefs[page]).unwrap();
        p[offset..offset + data.len()].copy_from_slice(data);
    }

    fn indirect_count(&self) -> usize {
        self.indirect.len()
    }

    fn indirect_gref(&self, page: usize) -> u32 {
        self.indirect[page]
    }

    fn write_indirect(&mut self, page: usize, offset: usize, data: &[u8]) {
        let mut pages = self.table.pages.lock().unwrap();
        let p = pages.get_mut(&self.indirect[page]).unwrap();
        p[offset..offset + data.len()].copy_from_slice(data);
    }
}

/// `GNTTABOP_copy` against the table: an unknown reference is `GNTST_bad_gntref`, another
/// domain than the front end `GNTST_bad_domain`.
pub struct BackGrants {
    table: Arc<GrantTable>,
    pub copies: u64,
    /// Offers `map_grants` (else only copies).
    pub can_map: bool,
    pub map_calls: u64,
    pub unmap_calls: u64,
}

impl BackGrants {
    /// With `map_grants` (`GNTMAP_host_map | GNTMAP_device_map`).
    pub fn with_map(mut self) -> Self {
        self.can_map = true;
        self
    }

    fn mapped_page<R>(&self, map: &GrantMapping, f: impl FnOnce(&mut [u8; PAGE_SIZE]) -> R) -> R {
        let live = self.table.mapped.lock().unwrap().get(&map.handle).copied();
        assert_eq!(live, Some((map.gref, map.readonly)), "not a live mapping");
        let mut pages = self.table.pages.lock().unwrap();
        f(pages.get_mut(&map.gref).expect("mapped pages stay granted"))
    }
}

impl BackGrants {
    fn check(
        &self,
        pages: &HashMap<u32, Box<[u8; PAGE_SIZE]>>,
        domid: u16,
        segs: &[GrantSegment],
    ) -> Result<(), GrantIoError> {
        for s in segs {
            let status = if domid != FRONT_DOMID {
                GNTST_bad_domain
            } else if !pages.contains_key(&s.gref) {
                GNTST_bad_gntref
            } else {
                assert!(usize::from(s.offset) + usize::from(s.len) <= PAGE_SIZE);
                continue;
            };
            return Err(GrantIoError {
                gref: s.gref,
                status,
            });
        }
        Ok(())
    }
}

impl GrantIo for BackGrants {
    fn copy_from_grants(
        &mut self,
        domid: u16,
        segs: &[GrantSegment],
        buf: &mut [u8],
    ) -> Result<(), GrantIoError> {
        let pages = self.table.pages.lock().unwrap();
        self.check(&pages, domid, segs)?;
        let mut at = 0;
        for s in segs {
            let (o, l) = (usize::from(s.offset), usize::from(s.len));
            buf[at..at + l].copy_from_slice(&pages[&s.gref][o..o + l]);
            at += l;
        }
        assert_eq!(at, buf.len());
        self.copies += 1;
        Ok(())
    }

    fn copy_to_grants(
        &mut self,
        domid: u16,
        segs: &[GrantSegment],
        data: &[u8],
    ) -> Result<(), GrantIoError> {
        let mut pages = self.table.pages.lock().unwrap();
        self.check(&pages, domid, segs)?;
        let mut at = 0;
        for s in segs {
            let (o, l) = (usize::from(s.offset), usize::from(s.len));
            pages.get_mut(&s.gref).unwrap()[o..o + l].copy_from_slice(&data[at..at + l]);
            at += l;
        }
        assert_eq!(at, data.len());
        self.copies += 1;
        Ok(())
    }

    fn can_map(&self) -> bool {
        self.can_map
    }

    fn map_grants(
        &mut self,
        domid: u16,
        grefs: &[(u32, bool)],
        out: &mut Vec<Result<GrantMapping, GrantIoError>>,
    ) {
        assert!(self.can_map);
        self.map_calls += 1;
        let pages = self.table.pages.lock().unwrap();
        let mut mapped = self.table.mapped.lock().unwrap();
        let mut next = self.table.next_handle.lock().unwrap();
        for &(gref, readonly) in grefs {
            let status = if domid != FRONT_DOMID {
                GNTST_bad_domain
            } else if !pages.contains_key(&gref) {
                GNTST_bad_gntref
            } else {
                let handle = *next;
                *next += 1;
                mapped.insert(handle, (gref, readonly));
                out.push(Ok(GrantMapping {
                    gref,
                    handle,
                    host_addr: 0,
                    bus_addr: bus_addr(gref),
                    readonly,
                }));
                continue;
            };
            out.push(Err(GrantIoError { gref, status }));
        }
    }

    fn unmap_grants(&mut self, maps: &[GrantMapping]) -> usize {
        self.unmap_calls += 1;
        let mut mapped = self.table.mapped.lock().unwrap();
        maps.iter()
            .filter(|m| mapped.remove(&m.handle) != Some((m.gref, m.readonly)))
            .count()
    }

    fn read_mapped(&mut self, map: &GrantMapping, offset: usize, buf: &mut [u8]) {
        self.mapped_page(map, |p| buf.copy_from_slice(&p[offset..offset + buf.len()]));
    }

    fn write_mapped(&mut self, map: &GrantMapping, offset: usize, data: &[u8]) {
        assert!(!map.readonly, "write through a read-only mapping");
        self.mapped_page(map, |p| {
            p[offset..offset + data.len()].copy_from_slice(data)
        });
    }
}

/// A disk whose device reaches the fake grant table's mapped pages by bus address
/// ([`IoData::Dma`]), over a [`RamDisk`].
pub struct DmaDisk {
    pub ram: RamDisk,
    table: Arc<GrantTable>,
    /// Transfers done by DMA.
    pub dma_ios: u64,
    /// Offers DMA (else behaves as a plain RAM disk).
    pub dma: bool,
}

impl DmaDisk {
    pub fn new(ram: RamDisk, table: &Arc<GrantTable>) -> Self {
        DmaDisk {
            ram,
            table: table.clone(),
            dma_ios: 0,
            dma: true,
        }
    }
}

impl Disk for DmaDisk {
    fn sectors(&self) -> u64 {
        self.ram.sectors()
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.ram.read(sector, buf)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        self.ram.write(sector, data)
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.ram.flush()
    }

    fn supports_dma(&self) -> bool {
        self.dma
    }

    fn transfer(&mut self, ios: &mut [DiskIo<'_>]) {
        for io in ios.iter_mut() {
            io.result = match &mut io.data {
                IoData::Buf(b) if io.write => self.ram.write(io.sector, b),
                IoData::Buf(b) => self.ram.read(io.sector, b),
                IoData::Dma(segs) => {
                    self.dma_ios += 1;
                    let mut sector = io.sector;
                    let mut r = Ok(());
                    for s in segs.iter() {
                        let len = s.len as usize;
                        r = self.table.dma(s.addr, len, !io.write, |bytes| {
                            if io.write {
                                self.ram.write(sector, bytes)
                            } else {
                                self.ram.read(sector, bytes)
                            }
                        });
                        if r.is_err() {
                            break;
                        }
                        sector += (len / 512) as u64;
                    }
                    r
                }
            };
        }
    }
}

/// One direction of an event channel: a pending count and a condition variable. Like a real
/// port, events sent while nobody waits stay pending (a waiter returns at once).
#[derive(Default)]
pub struct EventChannel {
    sent: Mutex<u64>,
    cv: Condvar,
    closed: AtomicBool,
}

impl EventChannel {
    /// The sending end.
    pub fn sender(self: &Arc<Self>) -> Sender {
        Sender(self.clone(), 0)
    }

    /// The receiving end.
    pub fn waiter(self: &Arc<Self>) -> Waiter {
        Waiter {
            chan: self.clone(),
            seen: 0,
        }
    }

    /// Wakes every waiter for good (test teardown).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _g = self.sent.lock().unwrap();
        self.cv.notify_all();
    }
}

/// Sends events; counts them.
pub struct Sender(Arc<EventChannel>, pub u64);

impl Notify for Sender {
    fn notify(&mut self) {
        *self.0.sent.lock().unwrap() += 1;
        self.0.cv.notify_all();
        self.1 += 1;
    }
}

/// Waits for events.
pub struct Waiter {
    chan: Arc<EventChannel>,
    seen: u64,
}

impl Waiter {
    /// Blocks until an event is pending (consuming it) or the channel is closed; `false` if
    /// closed. Times out after 10 s so a lost notification fails the test instead of hanging.
    pub fn wait(&mut self) -> bool {
        let mut sent = self.chan.sent.lock().unwrap();
        while *sent == self.seen {
            if self.chan.closed.load(Ordering::SeqCst) {
                return false;
            }
            let (s, timeout) = self
                .chan
                .cv
                .wait_timeout(sent, Duration::from_secs(10))
                .unwrap();
            sent = s;
            assert!(
                !timeout.timed_out() || self.chan.closed.load(Ordering::SeqCst),
                "no event for 10 s: a notification was lost"
            );
        }
        self.seen = *sent;
        true
    }
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}
