//! The domU's block front end: finds its vbd in xenstore, connects it with
//! `ring_drivers::xenbus::state::XenbusFrontend`, and offers blocking sector I/O through
//! `ring_drivers::blkif::BlkFront` ([`Blkfront::read`], [`Blkfront::write`], [`Blkfront::flush`]).
//!
//! - **Discovery**: `device/vbd` lists the devices dom0's toolstack created; each has `backend`
//!   (the back end's directory) and `backend-id`. We watch the back end's `state`.
//! - **Transport**: one ring page in .bss and [`DATA_PAGES`] data pages taken from the frame
//!   allocator on the first connect (not in the image: every domain would pay for them), granted read-write to the
//!   back end's domain; an unbound event channel for it; `ring-ref`, `event-channel` and
//!   `protocol` (`x86_64-abi`) written in the front-end directory. The ring is initialised
//!   (`BlkFront::new`) before its reference is published.
//! - **Close**: `Closing`, the back end disconnects and says `Closing`, then we end the grants,
//!   close the port and say `Closed`. **Reconnect**: once the back end is `Closed` too, start
//!   over from `Initialising` with fresh grants.
//!
//! Command-line modes (`domu/mod.rs` runs them): `blk-selftest=<seed>,<start>,<sectors>` writes an
//! xorshift64 stream, flushes, reconnects, reads it back and verifies; `blk-evil` sends one bad
//! request per kind and then overruns the ring; `blk-bench[=<start>]` measures throughput;
//! `blk-soak=<seed>,<start>,<sectors>` writes, flushes, reads back and verifies rounds of it until
//! dom0 asks it to power off through `control/shutdown` (a bystander's steady I/O).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use hypercall_abi::errno::Errno;
use hypercall_abi::io::blkif::{
    BlkifRequest, BlkifRequestSegment, BlkifVdev, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR,
};
use hypercall_abi::io::xenbus::XenbusState;
use ring_drivers::blkif::{
    keys, xorshift_stream, BackendInfo, BlkFront, BlkFrontRing, FrontendTransport, GrantPages,
};
use ring_drivers::shared_page::SharedPage;
use ring_drivers::xenbus::{Reply, Request};

use guest_kernel::layout::direct_map_va;
use guest_kernel::rates::{
    per_request, phase_fields, round_text, Phases, Rounds, RAND_QD_ROUND_OPS, RAND_ROUND_OPS,
    ROUNDS, SEQ_RANGE_BYTES, SEQ_ROUND_BYTES,
};
use spin::Once;

use super::client::Client;
use super::error::DomuError;
use super::xenbus_front::{self, FrontLink, XenbusDevice};
use crate::kernel::direct_map;
use crate::kernel::events::{self, Channel, EvtNotify};
use crate::kernel::grant;
use crate::kernel::mm;
use crate::kernel::ring_page::MappedPage;
use crate::kernel::time;

/// Granted data pages: 256, a whole 1 MiB call in flight at once (8 indirect requests of 32
/// pages, one per indirect page; or 23 direct ones of 11).
pub const DATA_PAGES: usize = 256;

/// Granted pages for the segment lists of indirect requests (one per indirect request in flight).
pub const INDIRECT_PAGES: usize = 8;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The ring page; shared with the back end: reached only through raw pointers.
static mut RING: Page = Page([0; 4096]);
/// The data pages, taken from the frame allocator on the first connect and kept: direct-map
/// address of the first of them and how many there are (consecutive). Shared with the back end
/// (its grant copies, or its device by DMA, write them): raw pointers only.
static DATA: Once<(u64, usize)> = Once::new();

/// Fewest data pages: one request of the most segments (`BLKIF_MAX_SEGMENTS_PER_REQUEST`).
const MIN_DATA_PAGES: usize = 11;

/// Takes the data pages (once; later calls return the same pages): [`DATA_PAGES`], or a quarter
/// of the free frames when that is fewer (a 4 MiB domU has a few dozen), at least
/// [`MIN_DATA_PAGES`].
fn data_pages() -> Result<(u64, usize), DomuError> {
    DATA.try_call_once(|| {
        direct_map::init_memory().map_err(|_| DomuError::NoFrame("direct map"))?;
        let n = DATA_PAGES.min(((mm::free_frames() / 4) as usize).max(MIN_DATA_PAGES));
        let first = mm::alloc_contiguous(n as u64).ok_or(DomuError::NoFrame("data"))?;
        Ok((direct_map_va(first), n))
    })
    .copied()
}

/// The indirect pages; shared with the back end (it maps or grant-copies them): raw pointers only.
static mut INDIRECT: [Page; INDIRECT_PAGES] = [const { Page([0; 4096]) }; INDIRECT_PAGES];

fn indirect_va(i: usize) -> u64 {
    assert!(i < INDIRECT_PAGES);
    // SAFETY: address of an element of a static array; nothing is dereferenced.
    unsafe { (&raw mut INDIRECT[i]) as u64 }
}

fn data_va(i: usize) -> u64 {
    let (base, n) = *DATA.get().expect("publish took the data pages");
    assert!(i < n);
    base + (i * 4096) as u64
}

fn ring_va() -> u64 {
    (&raw mut RING) as u64
}

/// The data pages and their grant references.
#[derive(Debug)]
pub struct DataPages {
    grefs: [u32; DATA_PAGES],
    /// How many of them there are (the first `count` of `grefs`).
    count: usize,
    indirect: [u32; INDIRECT_PAGES],
}

impl GrantPages for DataPages {
    fn count(&self) -> usize {
        self.count
    }

    fn gref(&self, page: usize) -> u32 {
        self.grefs[page]
    }

    fn read(&self, page: usize, offset: usize, buf: &mut [u8]) {
        assert!(offset + buf.len() <= 4096);
        let p = (data_va(page) as usize + offset) as *const u8;
        // SAFETY: inside data page `page` (checked above); the back end writes it through the
        // hypervisor between our requests, so it is copied, never referenced.
        unsafe { ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
    }

    fn write(&mut self, page: usize, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= 4096);
        let p = (data_va(page) as usize + offset) as *mut u8;
        // SAFETY: as in `read`; the page is ours and not in use by a request now.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    }

    fn indirect_count(&self) -> usize {
        INDIRECT_PAGES
    }

    fn indirect_gref(&self, page: usize) -> u32 {
        self.indirect[page]
    }

    fn write_indirect(&mut self, page: usize, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= 4096);
        let p = (indirect_va(page) as usize + offset) as *mut u8;
        // SAFETY: inside indirect page `page` (checked above), ours and not in use by a request
        // in flight (the front end hands out free pages only); the back end only reads it.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    }
}

type Front = BlkFront<MappedPage, DataPages, EvtNotify>;

/// One vbd, connected or not.
pub struct Blkfront {
    /// Its virtual device number (the directory name under `device/vbd`).
    pub vdev: u32,
    link: FrontLink,
    blk: Option<Front>,
    ring_gref: u32,
    port: u32,
    /// Where the wall-clock time of [`Blkfront::read_scattered`]'s calls went.
    scattered: ScatterTimes,
}

/// Wall-clock time of [`Blkfront::read_scattered`]'s calls, split at the first and last wait:
/// building and sending the requests, waiting (dom0's back end, the device and both switches
/// between the domains), and taking the responses (the copies out of the data pages).
#[derive(Clone, Copy, Debug, Default)]
pub struct ScatterTimes {
    /// Calls that waited at least once.
    pub calls: u64,
    /// Nanoseconds from the call to its first wait.
    pub send_ns: u64,
    /// Nanoseconds waited for events.
    pub wait_ns: u64,
    /// Nanoseconds from the last wait's end to the call's return, and between waits.
    pub complete_ns: u64,
}

const TOKEN: &str = "blk-back-state";

/// Whether the front end offers `feature-persistent` (`blk-no-persistent` on the command line:
/// not, as a front end that revokes its grants after each request would).
static OFFER_PERSISTENT: AtomicBool = AtomicBool::new(true);

/// Offers persistent grants or not on the next connect.
pub fn set_offer_persistent(offer: bool) {
    OFFER_PERSISTENT.store(offer, Ordering::Relaxed);
}

impl Blkfront {
    /// Finds the first vbd dom0 created for us and watches its back end's state.
    pub fn discover(d: &mut Client) -> Result<Blkfront, DomuError> {
        let list = match d.request(0, &Request::Directory("device/vbd"))? {
            Reply::Directory(l) => l,
            // dom0 made no vbd for us (it may have none to give).
            Reply::Error(Errno::ENOENT) => return Err(DomuError::NoVbd),
            Reply::Error(e) => return Err(DomuError::Refused(String::from("device/vbd"), e)),
            other => return Err(DomuError::Unexpected(String::from("device/vbd"), other)),
        };
        let vdev: u32 = list
            .iter()
            .find_map(|n| n.parse().ok())
            .ok_or(DomuError::NoVbd)?;
        let front_dir = format!("device/vbd/{vdev}");
        let link = FrontLink::open(d, front_dir, TOKEN)?;
        Ok(Blkfront {
            vdev,
            link,
            blk: None,
            ring_gref: 0,
            port: 0,
            scattered: ScatterTimes::default(),
        })
    }

    /// The back end's current state.
    pub fn backend_state(&self, d: &mut Client) -> Result<XenbusState, DomuError> {
        xenbus_front::backend_state(&self.link, d)
    }

    /// Grants the ring and data pages, allocates the port, initialises the ring and writes the
    /// transport keys.
    fn publish(&mut self, d: &mut Client) -> Result<(), DomuError> {
        self.teardown();
        grant::init().map_err(DomuError::GrantTable)?;
        let dom = self.link.backend_id;
        let mfn = |va: u64| mm::va_to_mfn(va).ok_or(DomuError::NoFrame("page"));
        let (_, count) = data_pages()?;
        let mut grefs = [0u32; DATA_PAGES];
        for (i, g) in grefs[..count].iter_mut().enumerate() {
            *g = grant::grant_access(dom, mfn(data_va(i))?, false).map_err(DomuError::Grant)?;
        }
        // Read-write although the back end only reads them: with persistent grants it maps
        // every grant read-write once (as Linux's blkback does) and keeps it.
        let mut indirect = [0u32; INDIRECT_PAGES];
        for (i, g) in indirect.iter_mut().enumerate() {
            *g = grant::grant_access(dom, mfn(indirect_va(i))?, false).map_err(DomuError::Grant)?;
        }
        let port =
            events::alloc_unbound(dom).map_err(|rc| DomuError::Evtchn("alloc_unbound", rc))?;
        // The domU's loop only waits on it (any event wakes the front end's poll).
        events::register(port, Channel::Blk(dom));
        // SAFETY: our own .bss ring page, mapped for our lifetime, only reached through
        // `MappedPage` from now on.
        let page = unsafe { MappedPage::new(ring_va()) };
        let blk = Front::new(
            page,
            self.vdev as BlkifVdev,
            DataPages {
                grefs,
                count,
                indirect,
            },
            EvtNotify(port),
        );
        // The ring is initialised: only now may the back end see it.
        self.ring_gref =
            grant::grant_access(dom, mfn(ring_va())?, false).map_err(DomuError::Grant)?;
        self.port = port;
        self.blk = Some(blk);
        let t = FrontendTransport {
            ring_ref: self.ring_gref,
            event_channel: port,
            // Our pages are a fixed set granted for the connection's lifetime: persistent
            // grants already, which the back end may keep mapped if it offers that too.
            feature_persistent: OFFER_PERSISTENT.load(Ordering::Relaxed),
        };
        for (k, v) in t.to_keys() {
            self.link.write_node(d, k, &v)?;
        }
        Ok(())
    }

    fn read_backend_info(&self, d: &mut Client) -> Result<BackendInfo, DomuError> {
        let names = [
            keys::SECTORS,
            keys::SECTOR_SIZE,
            keys::PHYSICAL_SECTOR_SIZE,
            keys::INFO,
            keys::FEATURE_FLUSH_CACHE,
            keys::FEATURE_BARRIER,
            keys::FEATURE_DISCARD,
            keys::DISCARD_GRANULARITY,
            keys::DISCARD_ALIGNMENT,
            keys::DISCARD_SECURE,
            keys::FEATURE_MAX_INDIRECT_SEGMENTS,
            keys::FEATURE_PERSISTENT,
        ];
        let values = self.link.read_back_keys(d, &names)?;
        BackendInfo::from_keys(|k| xenbus_front::lookup(&values, k)).map_err(DomuError::BackendKeys)
    }

    /// Ends the grants and closes the port (the back end has let go of them).
    fn teardown(&mut self) {
        let Some(blk) = self.blk.take() else {
            return;
        };
        let (_, pages, _) = blk.into_parts();
        let mut busy = 0;
        for &g in pages.grefs[..pages.count]
            .iter()
            .chain(pages.indirect.iter())
            .chain(core::iter::once(&self.ring_gref))
        {
            if !grant::end_access(g) {
                busy += 1;
            }
        }
        if busy > 0 {
            println!("blkfront: {busy} grant(s) still in use at disconnect");
        }
        let _ = events::close(self.port);
    }

    fn front(&mut self) -> Result<&mut Front, DomuError> {
        self.blk.as_mut().ok_or(DomuError::NotConnected)
    }

    /// Device size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.blk.as_ref().map_or(0, |b| b.sectors())
    }

    /// Reads `buf.len() / 512` sectors from `sector`.
    pub fn read(&mut self, d: &mut Client, sector: u64, buf: &mut [u8]) -> Result<(), DomuError> {
        self.front()?
            .read(sector, buf, || d.step())
            .map_err(|e| DomuError::Io("read", Some(sector), e))
    }

    /// Reads `sectors.len()` pieces of `piece` bytes, piece `i` from `sectors[i]` into
    /// `buf[i * piece..]`, all requested before any is waited for (`BlkFront::read_scattered`).
    /// Never inlined: `scripts/trace-roundtrip.sh`'s `TRACE_WORKLOAD=blk16` breaks on it.
    #[inline(never)]
    pub fn read_scattered(
        &mut self,
        d: &mut Client,
        sectors: &[u64],
        piece: usize,
        buf: &mut [u8],
    ) -> Result<(), DomuError> {
        let front = self.blk.as_mut().ok_or(DomuError::NotConnected)?;
        let now = || time::now_ns().unwrap_or(0);
        let start = now();
        let (mut first, mut last, mut waited) = (None, start, 0);
        let r = front.read_scattered(sectors, piece, buf, || {
            let t = now();
            first.get_or_insert(t);
            d.step();
            last = now();
            waited += last - t;
        });
        if let Some(first) = first {
            let t = &mut self.scattered;
            let total = now() - start;
            t.calls += 1;
            t.send_ns += first - start;
            t.wait_ns += waited;
            t.complete_ns += total - (first - start) - waited;
        }
        r.map_err(|e| DomuError::Io("read", sectors.first().copied(), e))
    }

    /// Where [`Blkfront::read_scattered`]'s calls spent their time so far.
    pub fn scatter_times(&self) -> ScatterTimes {
        self.scattered
    }

    /// Writes `data` (whole sectors) from `sector`.
    pub fn write(&mut self, d: &mut Client, sector: u64, data: &[u8]) -> Result<(), DomuError> {
        self.front()?
            .write(sector, data, || d.step())
            .map_err(|e| DomuError::Io("write", Some(sector), e))
    }

    /// Flushes the back end's cache.
    pub fn flush(&mut self, d: &mut Client) -> Result<(), DomuError> {
        self.front()?
            .flush(|| d.step())
            .map_err(|e| DomuError::Io("flush", None, e))
    }
}

/// Discovers and connects the first vbd, printing the connection line.
pub fn open(d: &mut Client) -> Result<Blkfront, DomuError> {
    let mut b = Blkfront::discover(d)?;
    b.connect(d)?;
    println!(
        "domU: blkfront: vbd {} connected, {} sectors",
        b.vdev,
        b.sectors()
    );
    Ok(b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The default demo's part: read sector 0, print it, close. Returns the closed device (a
/// lingering domU's balloon reconnects it), or `None` if dom0 gave us no vbd.
pub fn demo(d: &mut Client) -> Result<Option<Blkfront>, DomuError> {
    let mut b = match open(d) {
        Ok(b) => b,
        Err(DomuError::NoVbd) => {
            println!("domU: blkfront: dom0 gave us no vbd: no block demo");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; 512];
    b.read(d, 0, &mut buf)?;
    println!("domU: blkfront: read sector 0: {}...", hex(&buf[..16]));
    b.close(d)?;
    Ok(Some(b))
}

/// `blk-selftest=<seed>,<start_sector>,<sectors>`.
pub fn selftest(d: &mut Client, arg: &str) -> Result<(), DomuError> {
    let nums: Vec<u64> = arg.split(',').filter_map(|s| s.parse().ok()).collect();
    let [seed, start, sectors] = nums[..] else {
        return Err(DomuError::Arg(
            "blk-selftest",
            String::from(arg),
            "want <seed>,<start_sector>,<sectors>",
        ));
    };
    let mut b = open(d)?;
    let len = sectors as usize * 512;
    let data = xorshift_stream(seed, len);
    b.write(d, start, &data)?;
    b.flush(d)?;
    println!("blk-selftest: wrote {len} bytes at sector {start} (seed {seed}), flushed");
    // Read back over a fresh connection: what comes back was on the disk, not in a ring.
    b.close(d)?;
    b.reconnect(d)?;
    println!("blk-selftest: reconnected");
    let mut back = vec![0u8; len];
    b.read(d, start, &mut back)?;
    let r = match (0..len).find(|&i| back[i] != data[i]) {
        None => {
            println!("blk-selftest: ok {len} bytes");
            Ok(())
        }
        Some(i) => {
            println!(
                "blk-selftest: mismatch at byte {i}: wrote {:#04x} read {:#04x}",
                data[i], back[i]
            );
            Err(DomuError::Check(String::from("blk-selftest failed")))
        }
    };
    b.close(d)?;
    r
}

/// The pause between two rounds of [`soak`]: the bystander's I/O is steady, not a flood that
/// would starve its neighbours of the (emulated) CPU.
const SOAK_PAUSE_NS: u64 = 100 * time::MS;

/// `blk-soak=<seed>,<start_sector>,<sectors>`: a bystander's steady block I/O, until dom0 asks it
/// to stop. Announces `control/feature-poweroff` and watches `control/shutdown` (so dom0's
/// `shutdown <id>` asks it through xenstore, as it asks Linux); then round after round (the
/// first is round 1) writes the xorshift64 stream seeded `seed + n - 1` from `<start_sector>`,
/// flushes, reads it back and verifies it (`blk-soak: round <n> ok`), [`SOAK_PAUSE_NS`] apart. When
/// `control/shutdown` says `poweroff` it acknowledges (writes it empty, as Linux does), closes the
/// vbd and says `blk-soak: stopped by control/shutdown after <n> rounds, last seed <s>`; the
/// domU then powers off. A mismatch fails the domU.
pub fn soak(d: &mut Client, arg: &str) -> Result<(), DomuError> {
    let nums: Vec<u64> = arg.split(',').filter_map(|s| s.parse().ok()).collect();
    let [seed, start, sectors] = nums[..] else {
        return Err(DomuError::Arg(
            "blk-soak",
            String::from(arg),
            "want <seed>,<start_sector>,<sectors>",
        ));
    };
    if sectors == 0 || sectors > 1024 {
        return Err(DomuError::Arg(
            "blk-soak",
            String::from(arg),
            "1 to 1024 sectors",
        ));
    }
    d.ok(
        0,
        &Request::Watch {
            path: "control/shutdown",
            token: "shutdown",
        },
    )?
    .map_err(|e| DomuError::Refused(String::from("watch control/shutdown"), e))?;
    d.ok(0, &Request::Write("control/feature-poweroff", b"1"))?
        .map_err(|e| DomuError::Refused(String::from("write control/feature-poweroff"), e))?;
    let mut b = open(d)?;
    let len = sectors as usize * 512;
    let mut back = vec![0u8; len];
    let mut round = 0u64;
    loop {
        let round_seed = seed.wrapping_add(round);
        let data = xorshift_stream(round_seed, len);
        b.write(d, start, &data)?;
        b.flush(d)?;
        b.read(d, start, &mut back)?;
        if let Some(i) = (0..len).find(|&i| back[i] != data[i]) {
            println!(
                "blk-soak: round {}: mismatch at byte {i}: wrote {:#04x} read {:#04x}",
                round + 1,
                data[i],
                back[i]
            );
            return Err(DomuError::Check(String::from("blk-soak failed")));
        }
        round += 1;
        println!("blk-soak: round {round} ok");
        if soak_pause_asked_to_stop(d)? {
            break;
        }
    }
    b.close(d)?;
    println!(
        "blk-soak: stopped by control/shutdown after {round} rounds, last seed {}",
        seed.wrapping_add(round - 1)
    );
    Ok(())
}

/// Waits [`SOAK_PAUSE_NS`], handling events; true if `control/shutdown` asked for a power-off
/// meanwhile (or before), which is then acknowledged.
fn soak_pause_asked_to_stop(d: &mut Client) -> Result<bool, DomuError> {
    let until = time::now_ns().unwrap_or(0) + SOAK_PAUSE_NS;
    loop {
        while let Some(w) = d.watches.pop_front() {
            if w.token != "shutdown" {
                continue;
            }
            if let Ok(v) = d.read("control/shutdown")? {
                if v == b"poweroff" {
                    d.ok(0, &Request::Write("control/shutdown", b""))?
                        .map_err(|e| DomuError::Refused(String::from("ack control/shutdown"), e))?;
                    return Ok(true);
                }
            }
        }
        match time::now_ns() {
            Some(now) if now < until => d.step_within(until - now),
            _ => return Ok(false),
        }
    }
}

/// `blk-reconnects=<n>`: closes and reconnects the vbd `n` times, reading sector 0 after each
/// connect (each connect grants a ring and the data pages afresh: the grant references of the
/// last one must be free again), then prints `blkfront: <n> reconnects ok`.
pub fn reconnects(d: &mut Client, arg: &str) -> Result<(), DomuError> {
    let n: u32 = arg
        .parse()
        .map_err(|_| DomuError::Arg("blk-reconnects", String::from(arg), "not a number"))?;
    let mut b = open(d)?;
    let mut first = vec![0u8; 512];
    b.read(d, 0, &mut first)?;
    for i in 0..n {
        b.close(d)?;
        b.reconnect(d)?;
        let mut again = vec![0u8; 512];
        b.read(d, 0, &mut again)?;
        if again != first {
            return Err(DomuError::Check(format!(
                "reconnect {i}: sector 0 reads differently"
            )));
        }
    }
    b.close(d)?;
    println!("blkfront: {n} reconnects ok");
    Ok(())
}

/// Requests of `blk-evil`'s flood of unknown references (11 each: 880, above dom0's 768 slots).
const FLOOD_REQUESTS: u32 = 80;

/// `blk-evil`: a front end that breaks the rules, one bad request at a time (then a flood of
/// unknown references, and a good read after it), then overruns.
pub fn evil(d: &mut Client) -> Result<(), DomuError> {
    let mut b = open(d)?;
    let sectors = b.sectors();
    let blk = b.blk.take().ok_or(DomuError::NotConnected)?;
    let (mut page, mut pages, _) = blk.into_parts();
    // Non-zero data: a write that got through would show on the disk.
    pages.write(0, 0, &[0xe7; 4096]);
    let port = b.port;
    // Nothing was sent yet: every index is 0, and initialising again keeps them so.
    let mut ring = BlkFrontRing::init(&mut page);
    let good = pages.gref(0);
    let vdev = b.vdev as BlkifVdev;
    let seg = |gref, first_sect, last_sect| BlkifRequestSegment {
        gref,
        first_sect,
        last_sect,
        ..Default::default()
    };
    let read = |nr: u8, sector: u64, s0: BlkifRequestSegment| {
        let mut r = BlkifRequest {
            operation: BLKIF_OP_READ,
            nr_segments: nr,
            handle: vdev,
            sector_number: sector,
            ..Default::default()
        };
        for s in r.seg.iter_mut() {
            *s = seg(good, 0, 7);
        }
        r.seg[0] = s0;
        r
    };
    let mut unknown = read(1, 0, seg(good, 0, 7));
    unknown.operation = 0x7f;
    let mut barrier = read(1, 0, seg(good, 0, 7));
    barrier.operation = BLKIF_OP_WRITE_BARRIER;
    // A write of 8 sectors whose last 4 lie past our disk (in the next domU's slot, if any).
    let mut write_across = read(1, sectors.saturating_sub(4), seg(good, 0, 7));
    write_across.operation = BLKIF_OP_WRITE;
    let cases = [
        ("bad-gref", read(1, 0, seg(0x00ff_ffff, 0, 7))),
        ("nr-segments-0", read(0, 0, seg(good, 0, 7))),
        ("nr-segments-12", read(12, 0, seg(good, 0, 7))),
        ("first-sect-after-last", read(1, 0, seg(good, 5, 2))),
        ("past-the-end", read(1, sectors, seg(good, 0, 7))),
        ("write-across-the-end", write_across),
        ("unknown-op", unknown),
        ("write-barrier", barrier),
    ];
    let since = time::now_ns().unwrap_or(0);
    // Sends one request and waits for its response.
    let mut exchange = |d: &mut Client,
                        req: &BlkifRequest|
     -> Result<hypercall_abi::io::blkif::BlkifResponse, DomuError> {
        ring.push_request(&mut page, req);
        if ring.push_requests_and_check_notify(&mut page) {
            let _ = events::send(port);
        }
        loop {
            if let Some(r) = ring.get_response(&page).map_err(DomuError::Ring)? {
                return Ok(r);
            }
            if !ring
                .final_check_for_responses(&mut page)
                .map_err(DomuError::Ring)?
            {
                d.timed_out(since)?;
                d.step();
            }
        }
    };
    let mut refused = 0;
    for (i, (name, mut req)) in cases.into_iter().enumerate() {
        req.id = 0xe000 + i as u64;
        let rsp = exchange(d, &req)?;
        println!("blk-evil: {name} -> {}", rsp.status);
        if rsp.id == req.id && (rsp.status == BLKIF_RSP_ERROR || rsp.status == BLKIF_RSP_EOPNOTSUPP)
        {
            refused += 1;
        }
    }
    println!("blk-evil: {refused} of {} refused", cases.len());
    // A flood of reads naming references never granted, 11 a request, more in all than dom0's
    // grant-map area has slots (768, for every vbd): each is refused, and none may keep a slot
    // (a read of a good page after it must still be mapped for the device, not grant-copied:
    // dom0's `bench blkback dom=<us>` line says which).
    let mut flood_refused = 0;
    for k in 0..FLOOD_REQUESTS {
        let mut req = read(11, 0, seg(good, 0, 7));
        for (j, s) in req.seg.iter_mut().enumerate() {
            *s = seg(0x00f0_0000 + k * 11 + j as u32, 0, 7);
        }
        req.id = 0xf000 + u64::from(k);
        let rsp = exchange(d, &req)?;
        if rsp.id == req.id && rsp.status == BLKIF_RSP_ERROR {
            flood_refused += 1;
        }
    }
    println!(
        "blk-evil: a flood of {} unknown references: {flood_refused} of {FLOOD_REQUESTS} requests refused",
        FLOOD_REQUESTS * 11
    );
    let mut after = read(1, 0, seg(good, 0, 7));
    after.id = 0xf800;
    let rsp = exchange(d, &after)?;
    println!("blk-evil: a good read after the flood -> {}", rsp.status);
    // The producer index far ahead of anything the back end could answer.
    let prod = ring.req_prod_pvt().wrapping_add(1000);
    page.store_release_u32(0, prod);
    let _ = events::send(port);
    println!("blk-evil: overrun sent");
    let since = time::now_ns().unwrap_or(0);
    loop {
        let s = b.backend_state(d)?;
        if s == XenbusState::Closing || s == XenbusState::Closed {
            println!("blk-evil: back end closed the ring (state {})", s.raw());
            break;
        }
        xenbus_front::wait_backend::<Blkfront>(d, since)?;
    }
    if refused == cases.len() && flood_refused == FLOOD_REQUESTS && rsp.status == 0 {
        Ok(())
    } else {
        Err(DomuError::Check(String::from(
            "blk-evil: a bad request was not refused",
        )))
    }
}

/// `blk-bench[=<start sector>]`: after a warm-up (one 1 MiB call each way, not timed),
/// [`ROUNDS`] rounds of each phase through the split driver, alternating: sequential writes and
/// then reads of [`SEQ_ROUND_BYTES`] in one call each (split into requests of up to 32 pages,
/// up to 16 in flight), going round [`SEQ_RANGE_BYTES`]; [`RAND_ROUND_OPS`] random 4 KiB reads
/// one at a time; [`RAND_QD_ROUND_OPS`] more [`RAND_QD`] at a time (`rand4k_qd16_read_iops`).
/// Prints `bench blk mode=persistent ...` with each phase's figure over all its rounds and over
/// its fastest (`*_best_*`), and the front end's counters. Then
/// the same again over a fresh connection on which the front end does not offer persistent
/// grants (`mode=no-persistent`: the back end maps each batch's grants for the device and
/// unmaps them after, or grant-copies).
pub fn bench(d: &mut Client, arg: Option<&str>, which: Phases) -> Result<(), DomuError> {
    let start: u64 = arg.and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut b = open(d)?;
    // dom0 runs its direct rounds paired with ours when it offers to (`bench-blkdev`).
    let paired = d.read(PAIR_OFFER)?.is_ok();
    if paired {
        d.ok(
            0,
            &Request::Watch {
                path: PAIR_DONE,
                token: PAIR_DONE,
            },
        )?
        .map_err(|e| DomuError::Refused(format!("watch {PAIR_DONE}"), e))?;
    }
    bench_pass(d, &mut b, start, "persistent", paired.then_some(0), which)?;
    b.close(d)?;
    set_offer_persistent(false);
    b.reconnect(d)?;
    bench_pass(
        d,
        &mut b,
        start,
        "no-persistent",
        paired.then_some(1),
        which,
    )?;
    b.close(d)
}

/// Random reads in flight at once in `blk-bench`'s second random phase (dom0's direct pass uses
/// the same depth).
pub const RAND_QD: usize = 16;

/// Written by dom0 when it runs its direct rounds paired with a domU's (`dom0::blkbench`).
const PAIR_OFFER: &str = "data/blk-bench-direct";
/// Where the domU asks for dom0's round ([`round_text`]).
const PAIR_ASK: &str = "data/blk-bench-round";
/// Where dom0 answers that it ran it (the same text) or not (`<text> refused`), and the watch's
/// token.
const PAIR_DONE: &str = "data/blk-bench-done";

/// Asks dom0 for its direct round `k` of pass `n` and waits until it ran it; `Err` if dom0
/// refused.
fn pair(d: &mut Client, n: u32, k: u64) -> Result<(), DomuError> {
    let text = round_text(n, k);
    d.ok(0, &Request::Write(PAIR_ASK, text.as_bytes()))?
        .map_err(|e| DomuError::Refused(format!("write {PAIR_ASK}"), e))?;
    let since = time::now_ns().unwrap_or(0);
    loop {
        d.watches.retain(|w| w.token != PAIR_DONE);
        match d.read(PAIR_DONE)?.ok() {
            Some(v) if v == text.as_bytes() => return Ok(()),
            Some(v) if v == format!("{text} refused").as_bytes() => {
                return Err(DomuError::Check(format!(
                    "bench blk: dom0 refused its round {text} (its console says why)"
                )))
            }
            _ => {}
        }
        d.timed_out(since)?;
        d.step();
    }
}

/// One pass of [`bench`] over the connected `b`; `pass`: its number, when dom0 runs its direct
/// rounds paired with ours ([`pair`] before each round).
fn bench_pass(
    d: &mut Client,
    b: &mut Blkfront,
    start: u64,
    mode: &str,
    pass: Option<u32>,
    which: Phases,
) -> Result<(), DomuError> {
    let before = b.front()?.stats();
    let chunk = 1024 * 1024usize;
    let count = SEQ_RANGE_BYTES / 512;
    if start + count > b.sectors() {
        return Err(DomuError::Check(String::from(
            "bench blk: the disk is too small",
        )));
    }
    let mut buf = xorshift_stream(0x1234_5678, chunk);
    let now = || time::now_ns().unwrap_or(0);
    // Warm-up, not timed: one 1 MiB call each way, so that the timed passes measure the steady
    // state (as fio's `ramp_time` does). The first call of a connection otherwise pays once
    // for what every later call reuses: the back end mapping the persistent grants (a 1 MiB
    // call uses all of the front end's pages: 256 data and 8 indirect) and, under TCG, QEMU
    // translating the code both drivers run for the first time. dom0's direct pass warms up
    // too (1 MiB written and read back, `dom0::blkbench::DirectPass::new`).
    b.write(d, start, &buf)?;
    b.read(d, start, &mut buf)?;
    // The four phases in alternating rounds, as dom0's direct pass runs them.
    let slots = SEQ_RANGE_BYTES / SEQ_ROUND_BYTES;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut places = [0u64; RAND_QD];
    let times_before = b.scatter_times();
    let [mut write, mut read, mut rand, mut rand_qd] = [Rounds::default(); 4];
    for round in 0..ROUNDS {
        if let Some(n) = pass {
            pair(d, n, round)?;
        }
        let sector = start + (round % slots) * (SEQ_ROUND_BYTES / 512);
        let piece = &mut buf[..SEQ_ROUND_BYTES as usize];
        if which.has(0) {
            let t0 = now();
            b.write(d, sector, piece)?;
            b.flush(d)?;
            write.add(now().saturating_sub(t0));
        }
        if which.has(1) {
            let t0 = now();
            b.read(d, sector, piece)?;
            read.add(now().saturating_sub(t0));
        }
        if which.has(2) {
            let t0 = now();
            for _ in 0..RAND_ROUND_OPS {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.read(d, start + (x % (count / 8)) * 8, &mut buf[..4096])?;
            }
            rand.add(now().saturating_sub(t0));
        }
        // The same at a queue depth of `RAND_QD`: each call asks for that many random pages
        // at once, as dom0's direct pass does (`bench-blkdev`).
        if which.has(3) {
            let t0 = now();
            for _ in 0..RAND_QD_ROUND_OPS / RAND_QD as u64 {
                for p in places.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *p = start + (x % (count / 8)) * 8;
                }
                b.read_scattered(d, &places, 4096, &mut buf[..RAND_QD * 4096])?;
            }
            rand_qd.add(now().saturating_sub(t0));
        }
    }
    let times = b.scatter_times();
    let per_batch = |f: fn(&ScatterTimes) -> u64| {
        (f(&times) - f(&times_before)) / (times.calls - times_before.calls).max(1)
    };
    let after = b.front()?.stats();
    let n = |f: fn(&ring_drivers::blkif::FrontStats) -> u64| f(&after) - f(&before);
    let requests = n(|s| s.requests);
    let persistent =
        OFFER_PERSISTENT.load(Ordering::Relaxed) && b.front()?.info().feature_persistent;
    println!(
        "bench blk mode={mode} {} requests={requests} notifications_sent={} waits={} notifications_per_request={} waits_per_request={} mean_in_flight={} max_in_flight={} indirect_requests={} persistent={} qd16_batch_ns={} qd16_send_ns={} qd16_wait_ns={} qd16_complete_ns={}",
        phase_fields([write, read, rand, rand_qd]),
        n(|s| s.notifications_sent),
        n(|s| s.waits),
        per_request(n(|s| s.notifications_sent), requests),
        per_request(n(|s| s.waits), requests),
        per_request(n(|s| s.in_flight_sum), requests),
        after.max_in_flight,
        n(|s| s.indirect_requests),
        u8::from(persistent),
        rand_qd.total_ns / (RAND_QD_ROUND_OPS / RAND_QD as u64 * ROUNDS),
        per_batch(|t| t.send_ns),
        per_batch(|t| t.wait_ns),
        per_batch(|t| t.complete_ns),
    );
    Ok(())
}

impl XenbusDevice for Blkfront {
    const TOKEN: &'static str = TOKEN;

    fn link(&mut self) -> &mut FrontLink {
        &mut self.link
    }

    fn publish(&mut self, d: &mut Client) -> Result<(), DomuError> {
        Blkfront::publish(self, d)
    }

    fn connect_device(&mut self, d: &mut Client) -> Result<(), DomuError> {
        let info = self.read_backend_info(d)?;
        if let Some(b) = self.blk.as_mut() {
            b.connect(info);
        }
        Ok(())
    }

    fn teardown(&mut self) {
        Blkfront::teardown(self)
    }
}
