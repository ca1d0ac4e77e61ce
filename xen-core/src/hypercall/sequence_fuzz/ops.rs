//! What a sequence is made of, and how proptest generates it.
//!
//! A step names frames, addresses and domains *symbolically* ("the caller's third validated
//! table", "another domain's current L4", "the aliased list region"): the names are resolved
//! against the world when the step runs (`super::run`). So a sequence means something in every
//! state the steps before it leave, and proptest can shrink it (drop steps, simplify arguments)
//! without the rest losing its sense. Every enum lists its simplest variants first: proptest
//! shrinks towards the first arm of a `prop_oneof!`.
//!
//! One file (about 850 lines) on purpose: each step kind's symbolic names and the proptest strategy
//! that generates them change together.

use core::fmt;

use proptest::collection::vec;
use proptest::prelude::*;

use super::world::{DOM_FRAMES, I_DATA, MAPPED};

/// A frame, as the caller names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F {
    /// The caller's frame of this index (modulo its size).
    Own(u8),
    /// The caller's current L4.
    Cur,
    /// The caller's k-th validated page table (any level), or its frame k if it has none.
    Table(u8),
    /// The caller's k-th validated L4.
    L4(u8),
    /// Frame `i` of another domain (picked by the first number among the others).
    Other(u8, u8),
    /// Another domain's k-th validated table.
    OtherTable(u8, u8),
    /// Hypervisor, I/O, free and out-of-range frames, and shared_info and grant frames
    /// (`super::run::SPECIAL`).
    Special(u8),
}

/// A page-table entry's flags, a bit each (see [`Flags::bits`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Flags(pub u16);

const FLAG_NAMES: [&str; 14] = [
    "P", "RW", "US", "PWT", "PCD", "A", "D", "PAT", "G", "AVL", "NX", "GK", "b51", "b62",
];

impl Flags {
    /// The PTE bits: P RW US PWT PCD A D PAT/PSE G, an available bit (9), NX, Xen's
    /// guest-kernel bit (52), an address bit beyond the machine (51) and reserved bit 62.
    pub fn bits(self) -> u64 {
        use crate::mm::frame_table::pte::*;
        let table = [
            PRESENT,
            RW,
            USER,
            PWT,
            PCD,
            ACCESSED,
            DIRTY,
            PAT,
            GLOBAL,
            1 << 9,
            NX,
            GUEST_KERNEL,
            1 << 51,
            1 << 62,
        ];
        (0..14)
            .filter(|i| self.0 & (1 << i) != 0)
            .fold(0, |v, i| v | table[i])
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = (0..14)
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| FLAG_NAMES[i])
            .collect();
        write!(
            f,
            "{}",
            if names.is_empty() {
                "0".into()
            } else {
                names.join("|")
            }
        )
    }
}

/// A page-table entry value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Val {
    /// Not present.
    Zero,
    /// A frame with flags.
    Pte(F, Flags),
    /// Any 64 bits.
    Raw(u64),
}

/// A guest virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Va {
    /// Page `i` of the caller's mapped range (its frame `i` while its tables are unchanged;
    /// pages below 9 map its tables read-only), plus a byte offset.
    Page(u8, u16),
    /// Page `p` of the aliased region (512 pages, one frame), plus an offset.
    Alias(u16, u16),
    /// Into the caller's shared_info mapping.
    Shared(u16),
    /// Into the caller's first grant-table frame mapping.
    Grant(u16),
    /// An address no list should come from (`super::run::BAD_VA`).
    Bad(u8),
}

/// Where the fuzzer writes a list (as the guest would) and passes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// A data page (index from the first data page) and a byte offset: lists near the end of a
    /// page run into the next.
    Page(u8, u16),
    /// The aliased region at this byte offset: a list longer than a page reads the same frame
    /// again and again.
    Alias(u16),
    /// One of the caller's own page tables, through its read-only mapping: the list is the
    /// table (nothing is written).
    Table(u8),
    /// A bad address (nothing is written).
    Bad(u8),
}

/// The count passed with a list of `n` elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// `n`.
    Exact,
    /// `n - k`.
    Less(u8),
    /// `n + k`: past the end, into whatever follows.
    More(u8),
    /// A count no list has (`super::run::HUGE`), continuation bit included.
    Huge(u8),
}

/// Where a batch's `*pdone` goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// A null pointer.
    Null,
    /// A writable scratch word.
    Ok,
    /// A bad address.
    Bad(u8),
}

/// A domain id as the caller names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dom {
    /// `DOMID_SELF`.
    SelfId,
    /// Its own id, spelled out.
    Me,
    /// Another domain's id.
    Other(u8),
    /// A raw id (`super::run::DOM_IDS`: dead ones, DOMID_IO, DOMID_XEN, ...).
    Raw(u8),
}

/// `foreigndom` of `mmu_update` / `mmuext_op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fd {
    /// `DOMID_SELF`.
    SelfId,
    /// A domain id.
    Dom(Dom),
    /// The upper half names the page tables' owner (`pt_owner + 1`), the lower half the pages'.
    PtOwner(Dom, Dom),
}

/// One `mmu_update` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuReq {
    /// Entry `slot` of a validated table of the caller, linked to a frame of its own with
    /// ordinary flags (read-only when `ro`): builds structure for the rest to tear down.
    Link {
        table: u8,
        slot: u16,
        child: F,
        ro: bool,
    },
    /// `ptr = frame << 12 | slot * 8 | cmd` (cmd 0..8: the four commands and bad ones).
    Raw { cmd: u8, at: F, slot: u16, val: Val },
}

/// One `mmuext_op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    /// `MMUEXT_PIN_L<level>_TABLE`.
    Pin(u8, F),
    /// `MMUEXT_UNPIN_TABLE`.
    Unpin(F),
    /// `MMUEXT_NEW_BASEPTR`.
    NewBase(F),
    /// `MMUEXT_NEW_USER_BASEPTR` (`None`: 0, none).
    NewUserBase(Option<F>),
    /// `MMUEXT_CLEAR_PAGE`.
    Clear(F),
    /// `MMUEXT_COPY_PAGE` (destination, source).
    Copy(F, F),
    /// `MMUEXT_SET_LDT` (base, entries).
    SetLdt(Va, u16),
    /// One of the flush commands (`super::run::FLUSH_CMDS`) with an address or vCPU mask.
    Flush(u8, Va),
    /// Any command with any arguments.
    Raw(u8, u64, u64),
}

/// `update_va_mapping`'s flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UvmFlags {
    /// One of the usual flush choices (`super::run::UVM_FLAGS`).
    Pick(u8),
    /// A pointer to a vCPU mask, with a flush type.
    Mask(Va, u8),
    /// Any 64 bits.
    Raw(u64),
}

/// A grant reference: small ones mostly (the table has 512 per frame shared).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gref {
    /// The k-th reference of the granting domain's table that grants access to the caller
    /// (a small one if none does).
    Granted(u8),
    /// 0..32.
    Small(u8),
    /// Any.
    Raw(u32),
}

/// An event-channel port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The caller's k-th port in use (any state but free).
    Mine(u8),
    /// The k-th port of the named remote domain left unbound for the caller to bind.
    Waiting(u8),
    /// Any port number.
    Raw(u16),
}

/// A grant handle of the caller's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handle {
    /// The caller's k-th mapping in use.
    Mapped(u8),
    /// Any handle number.
    Raw(u16),
}

/// Where a grant mapping goes: a linear address, or (`GNTMAP_contains_pte`) a PTE's machine
/// address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// A virtual address.
    Va(Va),
    /// Entry `slot` of a frame.
    Pte(F, u16),
}

/// One `GNTTABOP_map_grant_ref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GMap {
    /// `GNTMAP_*` bits: device, host, readonly, application, contains_pte.
    pub flags: u8,
    pub gref: Gref,
    pub dom: Dom,
    pub host: Host,
}

/// One `GNTTABOP_unmap_grant_ref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GUnmap {
    pub handle: Handle,
    /// The address the handle was mapped at (`Some(None)`), another one, or none.
    pub host: Option<Option<Host>>,
    /// Pass the bus address of the frame the handle maps (or a wrong one).
    pub dev: Option<bool>,
}

/// One side of a `GNTTABOP_copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    /// A grant reference of `dom` (else a frame of the caller's).
    pub gref: Option<Gref>,
    pub frame: F,
    pub dom: Dom,
    pub off: u16,
}

/// One `GNTTABOP_copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GCopy {
    pub src: Side,
    pub dst: Side,
    pub len: u16,
}

/// The single-element grant-table operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GOther {
    SetupTable {
        dom: Dom,
        nr: u8,
        list: Va,
    },
    QuerySize(Dom),
    SetVersion(u8),
    GetVersion(Dom),
    GetStatusFrames(Dom, u8),
    Swap(Gref, Gref),
    /// Any command, any count, with the arguments at the caller's argument page.
    Raw(u8, u8),
}

/// An event-channel operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ev {
    AllocUnbound {
        dom: Dom,
        remote: Dom,
    },
    BindInterdomain {
        remote: Dom,
        port: Port,
    },
    Send(Port),
    Close(Port),
    Unmask(Port),
    Status(Dom, Port),
    BindVirq {
        virq: u8,
        vcpu: u8,
    },
    BindIpi(u8),
    BindVcpu(Port, u8),
    Reset(Dom),
    /// Any command with zeroed-or-stale arguments.
    Raw(u8),
}

/// A hypercall argument for [`Call::Raw`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    Small(u8),
    /// The caller's argument page (holding [`Call::Raw`]'s words) at this offset.
    Ptr(u16),
    Va(Va),
    Dom(Dom),
    Word(u64),
}

/// A trap-table entry's handler address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// A canonical guest kernel address.
    Good(u16),
    /// 0: ends the list.
    End,
    /// Non-canonical.
    Bad,
}

/// One hypercall, its lists and structures to be written into the caller's memory first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Mmu {
        reqs: Vec<MmuReq>,
        fd: Fd,
        at: At,
        count: Count,
        done: Done,
    },
    Ext {
        ops: Vec<Ext>,
        fd: Fd,
        at: At,
        count: Count,
        done: Done,
    },
    Uvm {
        va: Va,
        val: Val,
        flags: UvmFlags,
        other: Option<Dom>,
    },
    Map {
        ops: Vec<GMap>,
        at: At,
        count: Count,
    },
    Unmap {
        ops: Vec<GUnmap>,
        at: At,
        count: Count,
    },
    Copy {
        ops: Vec<GCopy>,
        at: At,
        count: Count,
    },
    Gnt(GOther),
    Evtchn(Ev),
    SetGdt {
        frames: Vec<F>,
        entries: u16,
        at: At,
    },
    TrapTable {
        entries: Vec<(u8, Handler)>,
        at: At,
    },
    /// `XEN_DOMCTL_*` (`super::run::DOMCTLS`) on a domain.
    Domctl(u8, Dom),
    /// Hypercall number (`super::run::RAW_NRS`), arguments, and words put at the argument page.
    Raw {
        nr: u8,
        args: [Arg; 5],
        words: Vec<u64>,
    },
}

/// One step of a sequence. Domains are picked by slot (modulo 3; a slot whose domain cannot
/// run passes the turn to the next that can).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A hypercall.
    Call(u8, Call),
    /// A multicall of these calls, its list written at `at`.
    Multi(u8, Vec<Call>, At, Count),
    /// A guest store to a virtual address (through the writable-page-table emulation when it
    /// hits one of the domain's L1 tables mapped read-only).
    Store(u8, Va, Val),
    /// The guest writes entry `gref` of its grant table: flags, the domain allowed, the frame.
    Grant(u8, u8, u16, Dom, F),
    /// Dom0 destroys a domU (slot 1 + k % 2) and the hypervisor tears it down.
    Destroy(u8),
    /// A domain is built again in an empty slot (with a fresh id) if its frames are all free.
    Rebuild(u8),
}

// ------------------------------------------------------------------------------------------------
// Strategies

fn frame() -> BoxedStrategy<F> {
    prop_oneof![
        4 => (0..DOM_FRAMES as u8).prop_map(F::Own),
        1 => Just(F::Cur),
        3 => (0u8..16).prop_map(F::Table),
        2 => (0u8..4).prop_map(F::L4),
        1 => (any::<u8>(), 0..DOM_FRAMES as u8).prop_map(|(d, i)| F::Other(d, i)),
        1 => (any::<u8>(), 0u8..16).prop_map(|(d, k)| F::OtherTable(d, k)),
        1 => (0u8..18).prop_map(F::Special),
    ]
    .boxed()
}

/// Frames for the base-pointer and pin commands: mostly tables.
fn table_frame() -> BoxedStrategy<F> {
    prop_oneof![
        3 => (0u8..4).prop_map(F::L4),
        2 => Just(F::Cur),
        3 => (0u8..16).prop_map(F::Table),
        2 => frame(),
    ]
    .boxed()
}

fn flags() -> impl Strategy<Value = Flags> {
    (
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.5),
        prop::bool::weighted(0.6),
        prop::bool::weighted(0.5),
        prop::bool::weighted(0.3),
        0u16..40,
    )
        .prop_map(|(p, rw, us, a, d, rare)| {
            let mut f = u16::from(p) | u16::from(rw) << 1 | u16::from(us) << 2;
            f |= u16::from(a) << 5 | u16::from(d) << 6;
            // One rare bit now and then: PWT PCD PAT G AVL NX GK b51 b62.
            let rare_bits = [3, 4, 7, 8, 9, 10, 10, 11, 12, 13];
            if let Some(&b) = rare_bits.get(usize::from(rare)) {
                f |= 1 << b;
            }
            Flags(f)
        })
}

fn val() -> BoxedStrategy<Val> {
    prop_oneof![
        1 => Just(Val::Zero),
        10 => (frame(), flags()).prop_map(|(f, fl)| Val::Pte(f, fl)),
        1 => any::<u64>().prop_map(Val::Raw),
    ]
    .boxed()
}

fn offset() -> impl Strategy<Value = u16> {
    prop_oneof![
        6 => Just(0u16),
        2 => (0u16..512).prop_map(|x| x * 8),
        1 => 4000u16..4096,
        1 => 0u16..4096,
    ]
}

fn va() -> BoxedStrategy<Va> {
    prop_oneof![
        6 => (0..(MAPPED + 2) as u8, offset()).prop_map(|(p, o)| Va::Page(p, o)),
        2 => (0u16..512, offset()).prop_map(|(p, o)| Va::Alias(p, o)),
        1 => (0u16..4096).prop_map(Va::Shared),
        1 => (0u16..4096).prop_map(Va::Grant),
        2 => (0u8..12).prop_map(Va::Bad),
    ]
    .boxed()
}

fn at() -> BoxedStrategy<At> {
    prop_oneof![
        8 => (0..(MAPPED - I_DATA - 10) as u8, offset()).prop_map(|(p, o)| At::Page(p, o)),
        2 => (0u16..4096).prop_map(|o| At::Alias(o & !7)),
        1 => (0u8..8).prop_map(At::Table),
        1 => (0u8..12).prop_map(At::Bad),
    ]
    .boxed()
}

fn count(huge: bool) -> BoxedStrategy<Count> {
    if huge {
        prop_oneof![
            20 => Just(Count::Exact),
            1 => any::<u8>().prop_map(Count::Less),
            2 => any::<u8>().prop_map(Count::More),
            1 => (0u8..8).prop_map(Count::Huge),
        ]
        .boxed()
    } else {
        prop_oneof![
            20 => Just(Count::Exact),
            1 => any::<u8>().prop_map(Count::Less),
            2 => any::<u8>().prop_map(Count::More),
        ]
        .boxed()
    }
}

fn done() -> BoxedStrategy<Done> {
    prop_oneof![
        4 => Just(Done::Ok),
        2 => Just(Done::Null),
        1 => (0u8..12).prop_map(Done::Bad),
    ]
    .boxed()
}

fn dom() -> BoxedStrategy<Dom> {
    prop_oneof![
        4 => Just(Dom::SelfId),
        1 => Just(Dom::Me),
        4 => any::<u8>().prop_map(Dom::Other),
        1 => (0u8..10).prop_map(Dom::Raw),
    ]
    .boxed()
}

/// A domain id, mostly another domain's.
fn other_dom() -> BoxedStrategy<Dom> {
    prop_oneof![4 => any::<u8>().prop_map(Dom::Other), 1 => dom()].boxed()
}

fn fd() -> BoxedStrategy<Fd> {
    prop_oneof![
        12 => Just(Fd::SelfId),
        3 => dom().prop_map(Fd::Dom),
        1 => (dom(), dom()).prop_map(|(a, b)| Fd::PtOwner(a, b)),
    ]
    .boxed()
}

fn slot() -> impl Strategy<Value = u16> {
    prop_oneof![
        6 => 0u16..8,
        3 => 0u16..48,
        1 => prop::sample::select(vec![255u16, 256, 263, 271, 272, 300, 511]),
    ]
}

fn mmu_req() -> BoxedStrategy<MmuReq> {
    prop_oneof![
        1 => (0u8..16, 0u16..48, frame(), prop::bool::weighted(0.3))
            .prop_map(|(table, slot, child, ro)| MmuReq::Link { table, slot, child, ro }),
        2 => (
            prop_oneof![12 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8), 1 => 4u8..8],
            prop_oneof![3 => (0u8..16).prop_map(F::Table), 2 => frame()],
            slot(),
            val(),
        )
            .prop_map(|(cmd, at, slot, val)| MmuReq::Raw { cmd, at, slot, val }),
    ]
    .boxed()
}

fn ext() -> BoxedStrategy<Ext> {
    prop_oneof![
        8 => (1u8..=4, table_frame()).prop_map(|(l, f)| Ext::Pin(l, f)),
        5 => table_frame().prop_map(Ext::Unpin),
        4 => table_frame().prop_map(Ext::NewBase),
        2 => prop::option::weighted(0.8, table_frame()).prop_map(Ext::NewUserBase),
        1 => frame().prop_map(Ext::Clear),
        1 => (frame(), frame()).prop_map(|(d, s)| Ext::Copy(d, s)),
        1 => (va(), prop_oneof![Just(0u16), 1u16..16, Just(8192), Just(8193)])
            .prop_map(|(v, n)| Ext::SetLdt(v, n)),
        2 => (0u8..8, va()).prop_map(|(c, v)| Ext::Flush(c, v)),
        1 => (0u8..24, any::<u64>(), any::<u64>()).prop_map(|(c, a, b)| Ext::Raw(c, a, b)),
    ]
    .boxed()
}

fn gref() -> BoxedStrategy<Gref> {
    prop_oneof![
        6 => (0u8..8).prop_map(Gref::Granted),
        4 => (0u8..32).prop_map(Gref::Small),
        1 => prop::sample::select(vec![511u32, 512, 1023, 2047, 2048, u32::MAX]).prop_map(Gref::Raw),
    ]
    .boxed()
}

fn host() -> BoxedStrategy<Host> {
    prop_oneof![
        4 => va().prop_map(Host::Va),
        1 => (frame(), slot()).prop_map(|(f, s)| Host::Pte(f, s)),
    ]
    .boxed()
}

fn gmap() -> BoxedStrategy<GMap> {
    (
        prop_oneof![
            4 => Just(2u8),   // host
            2 => Just(6u8),   // host, readonly
            1 => Just(1u8),   // device
            1 => Just(3u8),   // device + host
            1 => Just(18u8),  // host, contains_pte
            1 => 0u8..32,
        ],
        gref(),
        dom(),
        host(),
    )
        .prop_map(|(flags, gref, dom, host)| GMap {
            flags,
            gref,
            dom,
            host,
        })
        .boxed()
}

fn gunmap() -> BoxedStrategy<GUnmap> {
    (
        prop_oneof![
            6 => (0u8..8).prop_map(Handle::Mapped),
            2 => (0u16..8).prop_map(Handle::Raw),
            1 => any::<u16>().prop_map(Handle::Raw),
        ],
        prop::option::weighted(0.8, prop::option::weighted(0.2, host())),
        prop::option::weighted(0.3, any::<bool>()),
    )
        .prop_map(|(handle, host, dev)| GUnmap { handle, host, dev })
        .boxed()
}

fn side() -> BoxedStrategy<Side> {
    (
        prop::option::weighted(0.6, gref()),
        frame(),
        dom(),
        prop_oneof![3 => Just(0u16), 1 => 0u16..4200],
    )
        .prop_map(|(gref, frame, dom, off)| Side {
            gref,
            frame,
            dom,
            off,
        })
        .boxed()
}

fn gcopy() -> BoxedStrategy<GCopy> {
    (
        side(),
        side(),
        prop_oneof![2 => Just(8u16), 2 => Just(4096u16), 1 => any::<u16>()],
    )
        .prop_map(|(src, dst, len)| GCopy { src, dst, len })
        .boxed()
}

fn gother() -> BoxedStrategy<GOther> {
    prop_oneof![
        2 => (dom(), 0u8..6, va()).prop_map(|(dom, nr, list)| GOther::SetupTable { dom, nr, list }),
        1 => dom().prop_map(GOther::QuerySize),
        1 => (0u8..4).prop_map(GOther::SetVersion),
        1 => dom().prop_map(GOther::GetVersion),
        1 => (dom(), 0u8..3).prop_map(|(d, n)| GOther::GetStatusFrames(d, n)),
        2 => (gref(), gref()).prop_map(|(a, b)| GOther::Swap(a, b)),
        1 => (0u8..16, 0u8..4).prop_map(|(c, n)| GOther::Raw(c, n)),
    ]
    .boxed()
}

fn port() -> BoxedStrategy<Port> {
    prop_oneof![
        6 => (0u8..8).prop_map(Port::Mine),
        3 => (0u8..4).prop_map(Port::Waiting),
        3 => (0u16..12).prop_map(Port::Raw),
        1 => prop::sample::select(vec![63u16, 64, 1023, 4095, 4096, u16::MAX]).prop_map(Port::Raw),
    ]
    .boxed()
}

fn ev() -> BoxedStrategy<Ev> {
    prop_oneof![
        3 => (dom(), other_dom()).prop_map(|(dom, remote)| Ev::AllocUnbound { dom, remote }),
        3 => (other_dom(), port()).prop_map(|(remote, port)| Ev::BindInterdomain { remote, port }),
        3 => port().prop_map(Ev::Send),
        3 => port().prop_map(Ev::Close),
        1 => port().prop_map(Ev::Unmask),
        1 => (dom(), port()).prop_map(|(d, p)| Ev::Status(d, p)),
        1 => (0u8..26, 0u8..3).prop_map(|(virq, vcpu)| Ev::BindVirq { virq, vcpu }),
        1 => (0u8..3).prop_map(Ev::BindIpi),
        1 => (port(), 0u8..3).prop_map(|(p, v)| Ev::BindVcpu(p, v)),
        1 => dom().prop_map(Ev::Reset),
        1 => (0u8..16).prop_map(Ev::Raw),
    ]
    .boxed()
}

fn arg() -> BoxedStrategy<Arg> {
    prop_oneof![
        4 => (0u8..16).prop_map(Arg::Small),
        4 => prop_oneof![3 => Just(0u16), 1 => (0u16..64).prop_map(|x| x * 8)].prop_map(Arg::Ptr),
        1 => va().prop_map(Arg::Va),
        1 => dom().prop_map(Arg::Dom),
        1 => any::<u64>().prop_map(Arg::Word),
    ]
    .boxed()
}

fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..16,
        1 => Just(u64::from(hypercall_abi::xen::DOMID_SELF)),
        1 => 0u64..(MAPPED * 4096),
        1 => any::<u64>(),
    ]
}

fn handler() -> BoxedStrategy<Handler> {
    prop_oneof![
        8 => any::<u16>().prop_map(Handler::Good),
        1 => Just(Handler::End),
        1 => Just(Handler::Bad),
    ]
    .boxed()
}

/// A call; `nested`: inside a multicall, where no batch is chunked (no huge counts there, or
/// one step could run for minutes).
fn call(nested: bool) -> BoxedStrategy<Call> {
    let small = 1..6usize;
    prop_oneof![
        25 => (vec(mmu_req(), small.clone()), fd(), at(), count(!nested), done())
            .prop_map(|(reqs, fd, at, count, done)| Call::Mmu { reqs, fd, at, count, done }),
        25 => (vec(ext(), small.clone()), fd(), at(), count(!nested), done())
            .prop_map(|(ops, fd, at, count, done)| Call::Ext { ops, fd, at, count, done }),
        8 => (
            va(),
            val(),
            prop_oneof![
                6 => (0u8..8).prop_map(UvmFlags::Pick),
                1 => (va(), 0u8..4).prop_map(|(v, t)| UvmFlags::Mask(v, t)),
                1 => any::<u64>().prop_map(UvmFlags::Raw),
            ],
            prop::option::weighted(0.1, dom()),
        )
            .prop_map(|(va, val, flags, other)| Call::Uvm { va, val, flags, other }),
        6 => (vec(gmap(), 1..4), at(), count(!nested))
            .prop_map(|(ops, at, count)| Call::Map { ops, at, count }),
        4 => (vec(gunmap(), 1..4), at(), count(!nested))
            .prop_map(|(ops, at, count)| Call::Unmap { ops, at, count }),
        3 => (vec(gcopy(), 1..3), at(), count(!nested))
            .prop_map(|(ops, at, count)| Call::Copy { ops, at, count }),
        3 => gother().prop_map(Call::Gnt),
        12 => ev().prop_map(Call::Evtchn),
        3 => (
            vec(
                prop_oneof![3 => prop::sample::select(vec![F::Own(6), F::Own(7)]), 1 => frame()],
                0..3
            ),
            prop_oneof![
                4 => 1u16..512,
                1 => 512u16..1536,
                1 => Just(0u16),
                1 => Just(7168u16),
                1 => Just(7169u16),
            ],
            at(),
        )
            .prop_map(|(frames, entries, at)| Call::SetGdt { frames, entries, at }),
        2 => (vec((any::<u8>(), handler()), 0..6), at())
            .prop_map(|(entries, at)| Call::TrapTable { entries, at }),
        1 => (0u8..6, dom()).prop_map(|(c, d)| Call::Domctl(c, d)),
        10 => (0u8..64, [arg(), arg(), arg(), arg(), arg()], vec(word(), 0..12))
            .prop_map(|(nr, args, words)| Call::Raw { nr, args, words }),
    ]
    .boxed()
}

fn step() -> BoxedStrategy<Step> {
    prop_oneof![
        70 => (any::<u8>(), call(false)).prop_map(|(d, c)| Step::Call(d, c)),
        8 => (any::<u8>(), vec(call(true), 1..5), at(), count(false))
            .prop_map(|(d, calls, at, count)| Step::Multi(d, calls, at, count)),
        8 => (any::<u8>(), va(), val()).prop_map(|(d, v, x)| Step::Store(d, v, x)),
        6 => (
            any::<u8>(),
            0u8..40,
            prop_oneof![
                4 => Just(hypercall_abi::grant_table::GTF_permit_access),
                2 => Just(hypercall_abi::grant_table::GTF_permit_access
                    | hypercall_abi::grant_table::GTF_readonly),
                1 => Just(0u16),
                1 => any::<u16>(),
            ],
            dom(),
            prop_oneof![3 => (I_DATA as u8..MAPPED as u8).prop_map(F::Own), 1 => frame()],
        )
            .prop_map(|(d, gref, flags, to, f)| Step::Grant(d, gref, flags, to, f)),
        1 => any::<u8>().prop_map(Step::Destroy),
        2 => any::<u8>().prop_map(Step::Rebuild),
    ]
    .boxed()
}

/// A sequence of up to `max` steps.
pub fn sequence(max: usize) -> impl Strategy<Value = Vec<Step>> {
    vec(step(), 1..=max)
}
