//! dom0's block back end: one virtual block device (vbd 51712, `xvda`) per domU, served by
//! `ring_drivers::blkif::BlkBack` from dom0's disk.
//!
//! - **The disk** ([`init_disk`]): dom0's virtio-blk disk (`blkdev.rs`) when one is attached,
//!   else a 1 MiB RAM disk; [`SharedDisk`] is a handle to it.
//! - **A window of it per domU** (`ring_drivers::blkif::Window`): the disk is cut into equal
//!   slots, one per boot-time domU (or `vbd-slots=<n>` on dom0's command line), and the domU the
//!   hypervisor built as boot-time domU `i` (its handle, `hypercall_abi::domctl::BootHandle`:
//!   the same on every boot of one configuration, and kept by a domU that reboots) gets slot `i`
//!   as its whole vbd, starting at its sector 0. A domU with no slot gets no vbd, with a line
//!   saying why. So no domU reaches another's sectors, on this boot or the next with the same
//!   boot modules; changing them (more domUs, other `copies=`) moves the slots, and a disk
//!   reused across such a change must be wiped first, as after repartitioning. dom0's own
//!   disk tools (`bench-blkdev`, `blkdev-selftest`) use the whole disk: the operator's.
//! - **The toolstack part** ([`Vbd::create`]): libxl's layout. The back-end directory
//!   `/local/domain/0/backend/vbd/<domid>/51712` (`frontend`, `frontend-id`, `state`, and what
//!   `BackendInfo::for_disk` publishes) is owned by dom0 and readable by the domU; the front-end
//!   directory `/local/domain/<domid>/device/vbd/51712` (`backend`, `backend-id`, `state`,
//!   `virtual-device`, `device-type`) is owned by the domU and readable by dom0. Both start in
//!   `Initialising`; the back end then publishes the device and goes to `InitWait`.
//! - **The handshake**: dom0 watches the front end's `state` and feeds it to
//!   `ring_drivers::xenbus::state::XenbusBackend`, performing the actions it returns.
//! - **Connect**: the front end's `ring-ref` is mapped for real (`GNTTABOP_map_grant_ref` with
//!   `GNTMAP_host_map` into a window page, `ring_page::map_grant`), its `event-channel` bound;
//!   data moves with batched `GNTTABOP_copy` ([`GntCopy`]: one hypercall per request).
//! - **Serving**: on each event (and again while a budget-limited pass left requests waiting).
//!   A front end that overruns its ring gets it closed (`blkback: d<N> ring overrun: closing`:
//!   disconnect, then `Closing`); the other domUs' rings are untouched.
//! - **Teardown**: on `Closing`/`Closed` from the front end (disconnect: unmap, unbind), and
//!   when the domU dies ([`Vbd::destroy`]; the hypervisor has already revoked the mapping of a
//!   dead granter's page, so the unmap's refusal is expected then).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use guest_kernel::rates::per_request;
use hypercall_abi::domctl::BootHandle;
use hypercall_abi::grant_table::{
    GNTCOPY_dest_gref, GNTCOPY_source_gref, GnttabCopy, GnttabCopyPtr,
};
use hypercall_abi::io::xenbus::XenbusState;
use hypercall_abi::xen::DOMID_SELF;
use hypercall_abi::HypercallError;
use ring_drivers::blkif::{
    slot, BackStats, BackendInfo, BlkBack, Disk, DiskError, DiskIo, FrontendTransport, GrantIo,
    GrantIoError, GrantMapping, GrantSegment, GrantXfer, RamDisk, Window,
};
use ring_drivers::xenbus::state::{BackendAction, XenbusBackend};
use ring_drivers::xenbus::{Access, Perm};
use ring_drivers::RingError;
use spin::Mutex;

use super::blkdev::BlockDevice;
use super::grant_map;
use super::service::{Ctx, Service};
use super::xenstore::Store;
use crate::kernel::events::{self, Channel, EvtNotify};
use crate::kernel::hypercall as hc;
use crate::kernel::mm;
use crate::kernel::ring_page::{self, MappedPage};

/// The virtual device number of the one disk each domU gets: `xvda` (202 << 8 | 0).
pub const VDEV: u32 = 51712;

/// Segments a domU's `BLKIF_OP_INDIRECT` may carry (`feature-max-indirect-segments`).
const INDIRECT_SEGMENTS: u16 = ring_drivers::blkif::MAX_INDIRECT_SEGMENTS as u16;

/// Offer persistent grants (`feature-persistent`): a front end that offers them too gets its
/// grants mapped once and kept (`grant_map`), with the device DMAing into them.
const PERSISTENT: bool = true;

/// Sectors of the RAM disk used when dom0 has no virtio disk.
const RAM_SECTORS: u64 = 2048;

/// What serves the blocks.
enum Backing {
    Virtio(Box<BlockDevice>),
    Ram(RamDisk),
}

/// The disk, behind a lock (the event loop is its only user).
struct DiskCell(Option<Backing>);

// SAFETY: the guest kernel runs on one vCPU and only its event loop (never an upcall) reaches the
// disk, always through the mutex; the virtio driver's raw pointers are never shared elsewhere.
unsafe impl Send for DiskCell {}

static DISK: Mutex<DiskCell> = Mutex::new(DiskCell(None));

/// Finds dom0's disk (once): the virtio-blk device if there is one, else a RAM disk. Prints
/// what it found.
pub fn init_disk() {
    let mut d = DISK.lock();
    if d.0.is_some() {
        return;
    }
    grant_map::init();
    d.0 = Some(match BlockDevice::probe(false) {
        Ok(dev) => {
            println!(
                "blkback: the domUs' vbds are slots of the virtio disk ({} sectors)",
                dev.sectors()
            );
            Backing::Virtio(Box::new(dev))
        }
        Err(e) => {
            println!(
                "blkback: no virtio disk ({e}): the domUs' vbds are slots of a {RAM_SECTORS}-sector RAM disk"
            );
            Backing::Ram(RamDisk::new(RAM_SECTORS, false))
        }
    });
}

/// A handle to dom0's one disk ([`init_disk`] must have run).
#[derive(Clone, Copy, Debug, Default)]
pub struct SharedDisk;

impl SharedDisk {
    fn with<R>(f: impl FnOnce(&mut Backing) -> R) -> R {
        let mut d = DISK.lock();
        f(d.0.as_mut().expect("blkback::init_disk ran"))
    }
}

impl Disk for SharedDisk {
    fn sectors(&self) -> u64 {
        Self::with(|b| match b {
            Backing::Virtio(d) => d.sectors(),
            Backing::Ram(r) => r.sectors(),
        })
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        Self::with(|b| match b {
            Backing::Virtio(d) => d.read(sector, buf).map_err(|_| DiskError::Io),
            Backing::Ram(r) => r.read(sector, buf),
        })
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        Self::with(|b| match b {
            Backing::Virtio(d) => d.write(sector, data).map_err(|_| DiskError::Io),
            Backing::Ram(r) => r.write(sector, data),
        })
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        Self::with(|b| match b {
            Backing::Virtio(d) => d.flush().map_err(|_| DiskError::Io),
            Backing::Ram(r) => r.flush(),
        })
    }

    fn transfer(&mut self, ios: &mut [DiskIo<'_>]) {
        Self::with(|b| match b {
            Backing::Virtio(d) => d.transfer(ios),
            Backing::Ram(r) => r.transfer(ios),
        })
    }

    fn supports_dma(&self) -> bool {
        // The virtio device reaches a front end's pages mapped in the grant-map area.
        Self::with(|b| matches!(b, Backing::Virtio(_))) && grant_map::ready()
    }

    fn read_only(&self) -> bool {
        Self::with(|b| match b {
            Backing::Virtio(d) => d.readonly(),
            Backing::Ram(_) => false,
        })
    }
}

/// `GrantIo` over `GNTTABOP_copy`: every segment of a request (split where its local bytes
/// cross a page of the bounce buffer) in one batched hypercall.
#[derive(Debug, Default)]
pub struct GntCopy {
    ops: Vec<GnttabCopy>,
    grefs: Vec<u32>,
    /// Copy hypercalls made.
    pub hypercalls: u64,
}

impl GntCopy {
    /// Queues the ops for `segs` against the local buffer at `va` (`to_grant`: local → grant).
    fn build(&mut self, domid: u16, segs: &[GrantSegment], va: u64, to_grant: bool) {
        self.ops.clear();
        self.grefs.clear();
        self.append(domid, segs, va, to_grant);
    }

    /// Appends the ops for `segs` against the local buffer at `va` to the list.
    fn append(&mut self, domid: u16, segs: &[GrantSegment], va: u64, to_grant: bool) {
        let mut pos = 0u64;
        for s in segs {
            let mut done = 0u16;
            while done < s.len {
                let lva = va + pos;
                let chunk = (s.len - done).min((4096 - (lva & 0xfff)) as u16);
                let local = GnttabCopyPtr {
                    u: mm::va_to_mfn(lva).unwrap_or(u64::MAX),
                    domid: DOMID_SELF,
                    offset: (lva & 0xfff) as u16,
                    ..Default::default()
                };
                let grant = GnttabCopyPtr {
                    u: u64::from(s.gref),
                    domid,
                    offset: s.offset + done,
                    ..Default::default()
                };
                let (source, dest, flags) = if to_grant {
                    (local, grant, GNTCOPY_dest_gref)
                } else {
                    (grant, local, GNTCOPY_source_gref)
                };
                self.ops.push(GnttabCopy {
                    source,
                    dest,
                    len: chunk,
                    flags,
                    ..Default::default()
                });
                self.grefs.push(s.gref);
                done += chunk;
                pos += u64::from(chunk);
            }
        }
    }

    fn run(&mut self) -> Result<(), GrantIoError> {
        if self.ops.is_empty() {
            return Ok(());
        }
        self.hypercalls += 1;
        let rc = hc::grant_table_op(&mut self.ops);
        if rc != 0 {
            return Err(GrantIoError {
                gref: self.grefs[0],
                status: hypercall_abi::grant_table::GNTST_general_error,
            });
        }
        match self.ops.iter().position(|o| o.status != 0) {
            Some(i) => Err(GrantIoError {
                gref: self.grefs[i],
                status: self.ops[i].status,
            }),
            None => Ok(()),
        }
    }
}

/// The segments' bytes add up to the local buffer's length: the hypervisor copies to or from
/// `va + pos` for every byte the segments name, so a mismatch would read or write past the
/// buffer (the back ends keep this invariant; this makes it checked, not assumed).
fn fits(segs: &[GrantSegment], len: usize) -> Result<(), GrantIoError> {
    let total: usize = segs.iter().map(|s| usize::from(s.len)).sum();
    if total == len {
        return Ok(());
    }
    Err(GrantIoError {
        gref: segs.first().map_or(0, |s| s.gref),
        status: hypercall_abi::grant_table::GNTST_general_error,
    })
}

impl GrantIo for GntCopy {
    fn can_map(&self) -> bool {
        grant_map::ready()
    }

    fn map_grants(
        &mut self,
        domid: u16,
        grefs: &[(u32, bool)],
        out: &mut Vec<Result<GrantMapping, GrantIoError>>,
    ) {
        grant_map::map(domid, grefs, out);
    }

    fn unmap_grants(&mut self, maps: &[GrantMapping]) -> usize {
        grant_map::unmap(maps)
    }

    fn read_mapped(&mut self, map: &GrantMapping, offset: usize, buf: &mut [u8]) {
        grant_map::read(map, offset, buf);
    }

    fn write_mapped(&mut self, map: &GrantMapping, offset: usize, data: &[u8]) {
        grant_map::write(map, offset, data);
    }

    fn copy_batch(&mut self, domid: u16, batch: &mut [GrantXfer<'_>]) {
        // Every item's ops in one list, one hypercall; each item then takes its own ops' status.
        self.ops.clear();
        self.grefs.clear();
        let mut ends = Vec::with_capacity(batch.len());
        for x in batch.iter_mut() {
            if let Err(e) = fits(x.segs, x.buf.len()) {
                x.result = Err(e);
                ends.push(self.ops.len());
                continue;
            }
            x.result = Ok(());
            self.append(domid, x.segs, x.buf.as_mut_ptr() as u64, x.to_grant);
            ends.push(self.ops.len());
        }
        if self.ops.is_empty() {
            return;
        }
        self.hypercalls += 1;
        let rc = hc::grant_table_op(&mut self.ops);
        let mut start = 0;
        for (x, &end) in batch.iter_mut().zip(&ends) {
            if x.result.is_ok() {
                let failed = if rc != 0 {
                    Some((start, hypercall_abi::grant_table::GNTST_general_error))
                } else {
                    (start..end)
                        .find(|&i| self.ops[i].status != 0)
                        .map(|i| (i, self.ops[i].status))
                };
                if let Some((i, status)) = failed {
                    x.result = Err(GrantIoError {
                        gref: self.grefs.get(i).copied().unwrap_or(0),
                        status,
                    });
                }
            }
            start = end;
        }
    }

    fn copy_from_grants(
        &mut self,
        domid: u16,
        segs: &[GrantSegment],
        buf: &mut [u8],
    ) -> Result<(), GrantIoError> {
        // The hypervisor writes `buf` (our heap memory, exclusively borrowed for the call), as
        // many bytes as the segments say: they must cover exactly `buf`, never past it.
        fits(segs, buf.len())?;
        self.build(domid, segs, buf.as_mut_ptr() as u64, false);
        self.run()
    }

    fn copy_to_grants(
        &mut self,
        domid: u16,
        segs: &[GrantSegment],
        data: &[u8],
    ) -> Result<(), GrantIoError> {
        fits(segs, data.len())?;
        self.build(domid, segs, data.as_ptr() as u64, true);
        self.run()
    }
}

/// A domU's part of the disk.
pub type VbdDisk = Window<SharedDisk>;

type Back = BlkBack<MappedPage, VbdDisk, GntCopy, EvtNotify>;

/// A connected ring.
struct Conn {
    back: Back,
    handle: u32,
    port: u32,
    errors_reported: u64,
}

/// Why a vbd could not connect to its front end's ring.
#[derive(Debug)]
enum ConnectError {
    /// The front end published no transport (`ring-ref`, `event-channel`).
    NoTransport,
    /// Its `ring-ref` could not be mapped.
    RingRef(ring_page::MapError),
    /// Its `event-channel` could not be bound (the port, the return code).
    Bind(u32, HypercallError),
    /// The ring's indexes are unusable.
    Ring(RingError),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::NoTransport => write!(f, "no transport"),
            ConnectError::RingRef(e) => write!(f, "ring-ref: {e}"),
            ConnectError::Bind(port, rc) => write!(f, "bind event-channel {port}={rc}"),
            ConnectError::Ring(e) => write!(f, "ring: {e}"),
        }
    }
}

/// One domU's vbd as dom0 serves it.
pub struct Vbd {
    domid: u16,
    disk: VbdDisk,
    backend: XenbusBackend,
    conn: Option<Conn>,
    front_dir: String,
    back_dir: String,
    transport: Option<FrontendTransport>,
    /// A serve pass ran out of budget with requests waiting: serve again before blocking.
    pub busy: bool,
}

/// The watch token of `domid`'s vbd (its front end's `state`).
pub fn token(domid: u16) -> String {
    format!("vbd{domid}")
}

impl Vbd {
    /// Creates `domid`'s vbd (`disk`) in xenstore (both directories, libxl's permissions),
    /// watches the front end's state and starts the back end (`InitWait`). Once connected, the
    /// ring's port goes to the event loop as [`Channel::Blk`]`(domid)`.
    pub fn create(store: &mut impl Store, domid: u16, disk: VbdDisk) -> Vbd {
        let front_dir = format!("/local/domain/{domid}/device/vbd/{VDEV}");
        let back_dir = format!("/local/domain/0/backend/vbd/{domid}/{VDEV}");
        store.write(&back_dir, "");
        store.set_perms(
            &back_dir,
            &[
                Perm {
                    domid: 0,
                    access: Access::None,
                },
                Perm {
                    domid,
                    access: Access::Read,
                },
            ],
        );
        store.write(&format!("{back_dir}/frontend"), &front_dir);
        store.write(&format!("{back_dir}/frontend-id"), &format!("{domid}"));
        store.write(&format!("{back_dir}/state"), "1");
        store.write(&front_dir, "");
        store.set_perms(
            &front_dir,
            &[
                Perm {
                    domid,
                    access: Access::None,
                },
                Perm {
                    domid: 0,
                    access: Access::Read,
                },
            ],
        );
        store.write(&format!("{front_dir}/backend"), &back_dir);
        store.write(&format!("{front_dir}/backend-id"), "0");
        store.write(&format!("{front_dir}/virtual-device"), &format!("{VDEV}"));
        store.write(&format!("{front_dir}/device-type"), "disk");
        store.write(&format!("{front_dir}/state"), "1");
        let mut v = Vbd {
            domid,
            disk,
            backend: XenbusBackend::new(),
            conn: None,
            front_dir,
            back_dir,
            transport: None,
            busy: false,
        };
        let actions = v.backend.start();
        v.apply(store, actions);
        store.watch(&format!("{}/state", v.front_dir), &token(domid));
        v
    }

    /// The front end's `state` changed (or the watch fired): drive the state machine.
    pub fn frontend_changed(&mut self, store: &mut impl Store) {
        let state = store
            .read(&format!("{}/state", self.front_dir))
            .and_then(|s| XenbusState::from_node(s.as_bytes()))
            .unwrap_or(XenbusState::Unknown);
        let actions = self.backend.on_other_end_changed(state);
        self.apply(store, actions);
    }

    fn apply(&mut self, store: &mut impl Store, actions: Vec<BackendAction>) {
        for a in actions {
            let ok = match a {
                BackendAction::PublishBackendInfo => {
                    let info = BackendInfo {
                        max_indirect_segments: u32::from(INDIRECT_SEGMENTS),
                        feature_persistent: PERSISTENT && grant_map::ready(),
                        ..BackendInfo::for_disk(&self.disk)
                    };
                    for (k, v) in info.to_keys() {
                        store.write(&format!("{}/{k}", self.back_dir), &v);
                    }
                    true
                }
                BackendAction::ReadFrontendTransport => {
                    let dir = self.front_dir.clone();
                    match FrontendTransport::from_keys(|k| {
                        store.read(&format!("{dir}/{k}")).map(String::into_bytes)
                    }) {
                        Ok(t) => {
                            self.transport = Some(t);
                            true
                        }
                        Err(e) => {
                            println!(
                                "blkback: d{} front-end keys refused ({e:?}): closing",
                                self.domid
                            );
                            false
                        }
                    }
                }
                BackendAction::Connect => match self.connect() {
                    Ok(()) => true,
                    Err(e) => {
                        println!("blkback: d{} cannot connect: {e}: closing", self.domid);
                        false
                    }
                },
                BackendAction::Disconnect => {
                    self.disconnect(false);
                    true
                }
                BackendAction::SwitchState(s) => {
                    store.write(&format!("{}/state", self.back_dir), &format!("{}", s.raw()));
                    true
                }
            };
            if !ok {
                let more = self.backend.close();
                return self.apply(store, more);
            }
        }
    }

    fn connect(&mut self) -> Result<(), ConnectError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let t = self.transport.ok_or(ConnectError::NoTransport)?;
        let (page, handle) =
            ring_page::map_grant(self.domid, t.ring_ref).map_err(ConnectError::RingRef)?;
        let port = match events::bind_interdomain(self.domid, t.event_channel) {
            Ok(p) => p,
            Err(rc) => {
                ring_page::unmap_grant(page, handle);
                return Err(ConnectError::Bind(t.event_channel, rc));
            }
        };
        let back = match Back::new(
            page,
            self.domid,
            self.disk.clone(),
            GntCopy::default(),
            EvtNotify(port),
        ) {
            Ok(mut b) => {
                b.set_max_indirect_segments(INDIRECT_SEGMENTS);
                b.set_persistent(PERSISTENT && grant_map::ready(), t.feature_persistent);
                b
            }
            Err(e) => {
                let _ = events::close(port);
                ring_page::unmap_grant(page, handle);
                return Err(ConnectError::Ring(e));
            }
        };
        events::register(port, Channel::Blk(self.domid));
        println!(
            "blkback: d{} vbd {VDEV} connected: ring-ref {} mapped, event channel {} bound as {port}",
            self.domid, t.ring_ref, t.event_channel
        );
        self.conn = Some(Conn {
            back,
            handle,
            port,
            errors_reported: 0,
        });
        self.busy = true; // requests may be waiting already
        Ok(())
    }

    /// Stops serving: unbinds the port and unmaps the ring (`dead`: the domU died, and the
    /// hypervisor revoked the mapping already).
    fn disconnect(&mut self, dead: bool) {
        let Some(c) = self.conn.take() else {
            return;
        };
        self.busy = false;
        let mut back = c.back;
        back.release_grants();
        let s = back.stats();
        let persistent = back.persistent();
        let _ = events::close(c.port);
        let hypercalls = {
            let (page, _, grants, _) = back.into_parts();
            let rc = ring_page::unmap_grant(page, c.handle);
            if rc != 0 && !dead {
                println!("blkback: d{} unmap ring: {rc}", self.domid);
            }
            grants.hypercalls
        };
        print_stats(self.domid, &s, hypercalls, persistent);
    }

    /// The ring's port fired (`event`), or a pass left work: serve.
    pub fn serve(&mut self, store: &mut impl Store, event: bool) {
        let Some(c) = self.conn.as_mut() else {
            self.busy = false;
            return;
        };
        let r = if event {
            c.back.on_event()
        } else {
            c.back.serve()
        };
        let errors = c.back.stats().errors;
        if errors > c.errors_reported {
            println!(
                "blkback: d{} refused {} request(s), last: {:?}",
                self.domid,
                errors - c.errors_reported,
                c.back.last_error()
            );
            c.errors_reported = errors;
        }
        match r {
            Ok(s) => self.busy = s.more,
            Err(_) => {
                println!("blkback: d{} ring overrun: closing", self.domid);
                let actions = self.backend.close();
                self.apply(store, actions);
            }
        }
    }

    /// The domU is gone (or going): disconnect, drop the watch and the back-end directory.
    pub fn destroy(mut self, store: &mut impl Store) {
        self.disconnect(true);
        store.unwatch(&format!("{}/state", self.front_dir), &token(self.domid));
        store.rm(&format!("/local/domain/0/backend/vbd/{}", self.domid));
    }
}

/// How the disk is cut into the domUs' parts: `vbd-slots=` from dom0's command line, `None` (the
/// default: as many slots as boot-time domUs), `Some(Ok(n))` or, for a bad value,
/// `Some(Err(text))` (no domU gets a vbd).
pub struct Slots(Option<Result<u32, String>>);

impl Slots {
    /// `text`: the value of `vbd-slots=`, if given.
    pub fn new(text: Option<&str>) -> Slots {
        Slots(text.map(|t| {
            t.parse::<u32>()
                .ok()
                .filter(|&n| (1..=u32::from(u16::MAX)).contains(&n))
                .ok_or_else(|| String::from(t))
        }))
    }

    /// The part of the disk of a domU at `boot`, or why it has none.
    pub fn window(&self, boot: Option<BootHandle>) -> Result<VbdDisk, String> {
        let b = boot.ok_or_else(|| String::from("it is not a boot-time domU"))?;
        let slots = match &self.0 {
            None => b.count,
            Some(Ok(n)) => *n,
            Some(Err(t)) => return Err(format!("bad vbd-slots={t}")),
        };
        let disk = SharedDisk.sectors();
        let index = u16::try_from(b.index).ok().filter(|_| b.index < slots);
        let slots = u16::try_from(slots).unwrap_or(u16::MAX);
        let Some(index) = index else {
            return Err(format!(
                "it is boot-time domU {} and the disk has {slots} slot(s)",
                b.index
            ));
        };
        let (first, sectors) = slot(disk, slots, index)
            .ok_or_else(|| format!("the disk ({disk} sectors) is too small for {slots} slot(s)"))?;
        Window::new(SharedDisk, first, sectors).ok_or_else(|| String::from("no such slot"))
    }
}

/// The block back end as one of dom0's services: a vbd per domU, served on its ring's events
/// and again while a budget-limited pass left requests waiting.
pub struct Blkback {
    vbds: BTreeMap<u16, Vbd>,
    slots: Slots,
}

impl Blkback {
    /// No vbd yet; `slots`: the text of `vbd-slots=` on dom0's command line.
    pub fn new(slots: Option<&str>) -> Blkback {
        Blkback {
            vbds: BTreeMap::new(),
            slots: Slots::new(slots),
        }
    }
}

impl Service for Blkback {
    fn attach(&mut self, ctx: &mut Ctx, id: u16) {
        let boot = ctx.doms.get(&id).and_then(|d| d.boot);
        let disk = match self.slots.window(boot) {
            Ok(d) => d,
            Err(why) => {
                println!("blkback: d{id} gets no vbd: {why}");
                return;
            }
        };
        println!(
            "blkback: d{id} vbd {VDEV} is sectors {}..{} of the disk (slot {})",
            disk.first(),
            disk.first() + disk.sectors(),
            boot.map_or(0, |b| b.index)
        );
        let vbd = Vbd::create(&mut ctx.xs, id, disk);
        self.vbds.insert(id, vbd);
    }

    fn detach(&mut self, ctx: &mut Ctx, id: u16) {
        if let Some(v) = self.vbds.remove(&id) {
            v.destroy(&mut ctx.xs);
        }
    }

    fn event(&mut self, ctx: &mut Ctx, channel: Channel) {
        if let Channel::Blk(id) = channel {
            if let Some(v) = self.vbds.get_mut(&id) {
                v.serve(&mut ctx.xs, true);
            }
        }
    }

    fn poll(&mut self, ctx: &mut Ctx) {
        // Rings a budget-limited pass left requests in.
        for v in self.vbds.values_mut().filter(|v| v.busy) {
            v.serve(&mut ctx.xs, false);
        }
    }

    fn watch(&mut self, ctx: &mut Ctx, token: &str) -> bool {
        let Some(id) = token.strip_prefix("vbd").and_then(|t| t.parse().ok()) else {
            return false;
        };
        if let Some(v) = self.vbds.get_mut(&id) {
            v.frontend_changed(&mut ctx.xs);
        }
        true
    }

    fn busy(&self) -> bool {
        self.vbds.values().any(|v| v.busy)
    }
}

/// `bench blkback ...`: the back end's counters over a connection.
fn print_stats(domid: u16, s: &BackStats, copy_hypercalls: u64, persistent: bool) {
    let per = |n: u64| per_request(n, s.requests);
    println!(
        "bench blkback dom={domid} requests={} errors={} sectors_read={} sectors_written={} events_received={} notifications_sent={} events_per_request={} notifications_per_request={} grant_copy_hypercalls={copy_hypercalls} grant_copy_hypercalls_per_request={} disk_batches={} requests_per_disk_batch={} max_disk_batch={} indirect_requests={} persistent={} persistent_maps={} persistent_hits={} grant_maps={} grant_unmaps={} unmap_failures={} map_hypercalls={} unmap_hypercalls={} map_unmap_hypercalls_per_request={} dma_requests={} mapped_copy_requests={} grant_copy_requests={}",
        s.requests,
        s.errors,
        s.sectors_read,
        s.sectors_written,
        s.events_received,
        s.notifications_sent,
        per(s.events_received),
        per(s.notifications_sent),
        per(copy_hypercalls),
        s.batches,
        per_request(s.batched_requests, s.batches),
        s.max_batch,
        s.indirect_requests,
        u8::from(persistent),
        s.persistent_maps,
        s.persistent_hits,
        s.grant_maps,
        s.grant_unmaps,
        s.unmap_failures,
        s.map_hypercalls,
        s.unmap_hypercalls,
        per(s.map_hypercalls + s.unmap_hypercalls),
        s.dma_requests,
        s.mapped_copy_requests,
        s.grant_copy_requests,
    );
}

/// The disk's virtio interrupts and poll timeouts so far (0 and 0 for a RAM disk), for the
/// direct benchmark's counters (`blkbench`).
pub fn disk_counts() -> (u64, u64) {
    SharedDisk::with(|b| match b {
        Backing::Virtio(d) => (d.interrupts, d.timeouts),
        Backing::Ram(_) => (0, 0),
    })
}
