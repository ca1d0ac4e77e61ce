//! The page-table update workload's portable half: what to run, and how its answers read.
//!
//! `lab=pt-batching` (the teaching lab) and `bench=pt-update` (`make bench`) both map and unmap a
//! scratch region of N pages in several ways and print one line per way. The kernel side
//! (`suites/pt_workload.rs`) issues the hypercalls and reads the clock; this module holds the
//! parameters and their command-line syntax, the variants, the hypervisor's counters and the
//! result line, so that the host tests cover all of it.
//!
//! Command line (lists are separated by `:`, because QEMU splits `-initrd` at commas):
//!
//! ```text
//! lab=pt-batching pages=64:4096 batches=1:8:512 variants=mmu_update:multicall_uvm reps=5
//! ```

use core::fmt;

use crate::cmdline::Cmdline;
use crate::mmu_batch::MAX_BATCH;

/// The most pages one run maps (16384 pages = 64 MiB; the kernel's scratch arrays are this big).
pub const MAX_PAGES: usize = 16384;
/// The most entries in one list parameter.
pub const MAX_ITEMS: usize = 16;
/// The most timed repetitions of one variant.
pub const MAX_REPS: usize = 63;

/// How the PTEs reach the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `mmu_update` through an `MmuBatch` of B requests per call (B = 1: one call per PTE).
    MmuUpdate,
    /// One `update_va_mapping(va, pte, UVMF_NONE)` per page.
    UpdateVaMapping,
    /// One `update_va_mapping(va, pte, UVMF_INVLPG)` per page: each call also invalidates the
    /// page's TLB entry.
    UpdateVaMappingInvlpg,
    /// B `update_va_mapping(.., UVMF_NONE)` entries per `multicall`.
    MulticallUvm,
}

impl Kind {
    /// Every kind, in the order the lab runs them.
    pub const ALL: [Kind; 4] = [
        Kind::MmuUpdate,
        Kind::UpdateVaMapping,
        Kind::UpdateVaMappingInvlpg,
        Kind::MulticallUvm,
    ];

    /// The name used on the command line, in result lines and in the lab's CSV.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::MmuUpdate => "mmu_update",
            Kind::UpdateVaMapping => "update_va_mapping",
            Kind::UpdateVaMappingInvlpg => "update_va_mapping_invlpg",
            Kind::MulticallUvm => "multicall_uvm",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the kind takes a batch size (the others send one PTE per hypercall).
    pub const fn is_batched(self) -> bool {
        matches!(self, Kind::MmuUpdate | Kind::MulticallUvm)
    }
}

/// One way of updating the PTEs: a kind and the PTEs per hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// The hypercall used.
    pub kind: Kind,
    /// PTEs per hypercall (1..=512; 1 for the per-page kinds).
    pub batch: usize,
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "variant={} batch={}", self.kind.name(), self.batch)
    }
}

/// A short list of values, without an allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct List<T: Copy> {
    items: [Option<T>; MAX_ITEMS],
    len: usize,
}

impl<T: Copy> List<T> {
    /// An empty list.
    pub const fn new() -> Self {
        List {
            items: [None; MAX_ITEMS],
            len: 0,
        }
    }

    /// A list holding `items` (at most [`MAX_ITEMS`]; the rest are dropped).
    pub fn of(items: &[T]) -> Self {
        let mut l = List::new();
        for &i in items.iter().take(MAX_ITEMS) {
            let _ = l.push(i);
        }
        l
    }

    /// Appends `item`; `Err` when the list is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.len == MAX_ITEMS {
            return Err(item);
        }
        self.items[self.len] = Some(item);
        self.len += 1;
        Ok(())
    }

    /// The values, in order.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Copy> Default for List<T> {
    fn default() -> Self {
        List::new()
    }
}

/// A parameter the workload cannot use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamError<'a> {
    /// A value is not a decimal number.
    NotANumber { key: &'static str, word: &'a str },
    /// A number outside what the parameter allows.
    OutOfRange {
        key: &'static str,
        value: usize,
        min: usize,
        max: usize,
    },
    /// A variant name the workload does not know.
    UnknownVariant(&'a str),
    /// More than [`MAX_ITEMS`] values.
    TooMany(&'static str),
    /// A list with no value.
    Empty(&'static str),
}

impl fmt::Display for ParamError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::NotANumber { key, word } => write!(f, "{key}: '{word}' is not a number"),
            ParamError::OutOfRange {
                key,
                value,
                min,
                max,
            } => write!(f, "{key}: {value} is not in {min}..={max}"),
            ParamError::UnknownVariant(name) => write!(
                f,
                "variants: unknown variant '{name}' (known: mmu_update, update_va_mapping, \
                 update_va_mapping_invlpg, multicall_uvm)"
            ),
            ParamError::TooMany(key) => write!(f, "{key}: more than {MAX_ITEMS} values"),
            ParamError::Empty(key) => write!(f, "{key}: no value"),
        }
    }
}

/// What one run of the workload does: every variant at every page count, `reps` timed rounds
/// each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Region sizes N, in pages (each 1..=[`MAX_PAGES`]).
    pub pages: List<usize>,
    /// Batch sizes B for the batched kinds (each 1..=512).
    pub batches: List<usize>,
    /// The kinds to run.
    pub kinds: List<Kind>,
    /// Timed map+unmap rounds per variant and N (the median is reported).
    pub reps: usize,
}

/// The lab's batch sizes: every power of two up to one page table's worth.
pub const LAB_BATCHES: [usize; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

impl Params {
    /// The lab's defaults: 4096 pages, every batch size, every kind, 5 repetitions.
    pub fn lab_defaults() -> Params {
        Params {
            pages: List::of(&[4096]),
            batches: List::of(&LAB_BATCHES),
            kinds: List::of(&Kind::ALL),
            reps: 5,
        }
    }

    /// `bench=pt-update`: 512 pages, `mmu_update` per PTE and in batches of 8, 64 and 512, and
    /// `update_va_mapping` per page; 7 repetitions.
    pub fn bench_defaults() -> Params {
        Params {
            pages: List::of(&[512]),
            batches: List::of(&[1, 8, 64, MAX_BATCH]),
            kinds: List::of(&[Kind::MmuUpdate, Kind::UpdateVaMapping]),
            reps: 7,
        }
    }

    /// `defaults` with what the command line overrides: `pages=`, `batches=`, `variants=`,
    /// `reps=`.
    pub fn with_cmdline<'a>(mut self, cmdline: &Cmdline<'a>) -> Result<Params, ParamError<'a>> {
        if let Some(v) = cmdline.get("pages") {
            self.pages = numbers("pages", v, 1, MAX_PAGES)?;
        }
        if let Some(v) = cmdline.get("batches") {
            self.batches = numbers("batches", v, 1, MAX_BATCH)?;
        }
        if let Some(v) = cmdline.get("variants") {
            let mut kinds = List::new();
            for word in items(v) {
                let kind = Kind::from_name(word).ok_or(ParamError::UnknownVariant(word))?;
                kinds
                    .push(kind)
                    .map_err(|_| ParamError::TooMany("variants"))?;
            }
            if kinds.is_empty() {
                return Err(ParamError::Empty("variants"));
            }
            self.kinds = kinds;
        }
        if let Some(v) = cmdline.get("reps") {
            self.reps = number("reps", v, 1, MAX_REPS)?;
        }
        Ok(self)
    }

    /// The largest N.
    pub fn max_pages(&self) -> usize {
        self.pages.iter().max().unwrap_or(0)
    }

    /// Every variant to run, in order: each kind, batched kinds once per batch size.
    pub fn variants(&self) -> impl Iterator<Item = Variant> + '_ {
        self.kinds.iter().flat_map(move |kind| {
            let batches = if kind.is_batched() {
                self.batches
            } else {
                List::of(&[1])
            };
            batches
                .into_iter_owned()
                .map(move |batch| Variant { kind, batch })
        })
    }
}

impl<T: Copy> List<T> {
    fn into_iter_owned(self) -> impl Iterator<Item = T> {
        let len = self.len;
        self.items.into_iter().take(len).flatten()
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pages=")?;
        join(f, self.pages.iter())?;
        f.write_str(" batches=")?;
        join(f, self.batches.iter())?;
        f.write_str(" variants=")?;
        join(f, self.kinds.iter().map(Kind::name))?;
        write!(f, " reps={}", self.reps)
    }
}

fn join<T: fmt::Display>(f: &mut fmt::Formatter<'_>, it: impl Iterator<Item = T>) -> fmt::Result {
    for (i, v) in it.enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{v}")?;
    }
    Ok(())
}

fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(':').filter(|w| !w.is_empty())
}

fn number<'a>(
    key: &'static str,
    word: &'a str,
    min: usize,
    max: usize,
) -> Result<usize, ParamError<'a>> {
    let value: usize = word
        .parse()
        .map_err(|_| ParamError::NotANumber { key, word })?;
    if !(min..=max).contains(&value) {
        return Err(ParamError::OutOfRange {
            key,
            value,
            min,
            max,
        });
    }
    Ok(value)
}

fn numbers<'a>(
    key: &'static str,
    value: &'a str,
    min: usize,
    max: usize,
) -> Result<List<usize>, ParamError<'a>> {
    let mut list = List::new();
    for word in items(value) {
        list.push(number(key, word, min, max)?)
            .map_err(|_| ParamError::TooMany(key))?;
    }
    if list.is_empty() {
        return Err(ParamError::Empty(key));
    }
    Ok(list)
}

/// The hypervisor's memory-management counters (`sysctl(XEN_SYSCTL_perfc_op)`), by Xen's
/// convention 32-bit and wrapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Hypercalls dispatched, multicall entries included.
    pub hypercalls: u32,
    /// Exceptions and interrupts taken while the guest ran.
    pub traps: u32,
    /// Page-table entries validated.
    pub ptes_validated: u32,
    /// `mmu_update` requests completed.
    pub page_updates: u32,
    /// `mmu_update` requests done as plain writes to ordinary pages.
    pub writable_mmu_updates: u32,
    /// Full TLB flushes.
    pub tlb_flushes: u32,
    /// Single-page TLB invalidations.
    pub invlpgs: u32,
    /// Frame reference-count operations.
    pub ref_ops: u32,
    /// Hypercalls that took the hypervisor's fast way back.
    pub fast_exits: u32,
    /// Times the scheduler switched the CPU to this vCPU.
    pub dispatches: u32,
}

impl Counters {
    /// Records counter `name` (as `XEN_SYSCTL_perfc_op` names it); false for a name not kept.
    pub fn set(&mut self, name: &[u8], value: u32) -> bool {
        let slot = match name {
            b"hypercalls" => &mut self.hypercalls,
            b"traps" => &mut self.traps,
            b"ptes_validated" => &mut self.ptes_validated,
            b"page_updates" => &mut self.page_updates,
            b"writable_mmu_updates" => &mut self.writable_mmu_updates,
            b"tlb_flushes" => &mut self.tlb_flushes,
            b"invlpgs" => &mut self.invlpgs,
            b"ref_ops" => &mut self.ref_ops,
            b"fast_exits" => &mut self.fast_exits,
            b"dispatches" => &mut self.dispatches,
            _ => return false,
        };
        *slot = value;
        true
    }

    /// The counts between `earlier` and `self` (wrapping, as the counters do).
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            hypercalls: self.hypercalls.wrapping_sub(earlier.hypercalls),
            traps: self.traps.wrapping_sub(earlier.traps),
            ptes_validated: self.ptes_validated.wrapping_sub(earlier.ptes_validated),
            page_updates: self.page_updates.wrapping_sub(earlier.page_updates),
            writable_mmu_updates: self
                .writable_mmu_updates
                .wrapping_sub(earlier.writable_mmu_updates),
            tlb_flushes: self.tlb_flushes.wrapping_sub(earlier.tlb_flushes),
            invlpgs: self.invlpgs.wrapping_sub(earlier.invlpgs),
            ref_ops: self.ref_ops.wrapping_sub(earlier.ref_ops),
            fast_exits: self.fast_exits.wrapping_sub(earlier.fast_exits),
            dispatches: self.dispatches.wrapping_sub(earlier.dispatches),
        }
    }
}

/// The median (lower middle), smallest and largest of `samples`, which it sorts; zeros when
/// empty.
pub fn median_min_max(samples: &mut [u64]) -> (u64, u64, u64) {
    samples.sort_unstable();
    match (samples.first(), samples.last()) {
        (Some(&min), Some(&max)) => (samples[(samples.len() - 1) / 2], min, max),
        _ => (0, 0, 0),
    }
}

/// What one variant cost at one N: the result line's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figures {
    /// The variant.
    pub variant: Variant,
    /// N.
    pub pages: usize,
    /// Timed rounds.
    pub reps: usize,
    /// Median, smallest and largest TSC cycles per PTE update over the rounds (a round maps and
    /// unmaps N pages: 2N updates).
    pub cycles_per_pte: (u64, u64, u64),
    /// Median TSC cycles per page of reading every mapped page once after the map (TLB refill).
    pub touch_cycles_per_page: u64,
    /// Hypercalls the guest issued per round.
    pub hypercalls: u64,
    /// The hypervisor's counters over one round (the last), the reading itself taken out; `None`
    /// where the hypervisor has none (Debian's Xen).
    pub counters: Option<Counters>,
}

/// A counter, or `n/a` where the hypervisor has none.
struct OrNa(Option<u32>);

impl fmt::Display for OrNa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("n/a"),
        }
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |get: fn(&Counters) -> u32| OrNa(self.counters.as_ref().map(get));
        let (median, min, max) = self.cycles_per_pte;
        write!(
            f,
            "{} pages={} reps={} cycles_per_pte={median} min_cycles_per_pte={min} \
             max_cycles_per_pte={max} touch_cycles_per_page={} hypercalls={} hv_hypercalls={} \
             traps={} validations={} page_updates={} flushes={} invlpgs={} ref_ops={}",
            self.variant,
            self.pages,
            self.reps,
            self.touch_cycles_per_page,
            self.hypercalls,
            c(|c| c.hypercalls),
            c(|c| c.traps),
            c(|c| c.ptes_validated),
            c(|c| c.page_updates),
            c(|c| c.tlb_flushes),
            c(|c| c.invlpgs),
            c(|c| c.ref_ops),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Params, ParamError<'_>> {
        Params::lab_defaults().with_cmdline(&Cmdline::from_bytes(text.as_bytes()))
    }

    #[test]
    fn defaults_run_every_variant_and_batch_size() {
        let p = Params::lab_defaults();
        let v: Vec<Variant> = p.variants().collect();
        // 10 batch sizes of mmu_update and of multicall, and the two per-page kinds.
        assert_eq!(v.len(), 22);
        assert_eq!(
            v[0],
            Variant {
                kind: Kind::MmuUpdate,
                batch: 1
            }
        );
        assert_eq!(
            v[10],
            Variant {
                kind: Kind::UpdateVaMapping,
                batch: 1
            }
        );
        assert_eq!(v[21].to_string(), "variant=multicall_uvm batch=512");
        assert_eq!(p.max_pages(), 4096);
    }

    #[test]
    fn the_command_line_overrides_lists_and_reps() {
        let p = parse("lab=pt-batching pages=64:16384 batches=1:512 variants=multicall_uvm reps=3")
            .unwrap();
        assert_eq!(p.pages.iter().collect::<Vec<_>>(), [64, 16384]);
        assert_eq!(p.max_pages(), 16384);
        assert_eq!(p.reps, 3);
        let v: Vec<String> = p.variants().map(|v| v.to_string()).collect();
        assert_eq!(
            v,
            [
                "variant=multicall_uvm batch=1",
                "variant=multicall_uvm batch=512"
            ]
        );
        assert_eq!(
            p.to_string(),
            "pages=64:16384 batches=1:512 variants=multicall_uvm reps=3"
        );
    }

    #[test]
    fn per_page_kinds_ignore_the_batch_list() {
        let p = parse("batches=4:8 variants=update_va_mapping_invlpg:mmu_update").unwrap();
        let v: Vec<String> = p.variants().map(|v| v.to_string()).collect();
        assert_eq!(
            v,
            [
                "variant=update_va_mapping_invlpg batch=1",
                "variant=mmu_update batch=4",
                "variant=mmu_update batch=8"
            ]
        );
    }

    #[test]
    fn bad_parameters_name_the_problem() {
        assert_eq!(
            parse("pages=0"),
            Err(ParamError::OutOfRange {
                key: "pages",
                value: 0,
                min: 1,
                max: MAX_PAGES
            })
        );
        assert_eq!(
            parse("batches=1:1024").unwrap_err().to_string(),
            "batches: 1024 is not in 1..=512"
        );
        assert_eq!(
            parse("reps=x"),
            Err(ParamError::NotANumber {
                key: "reps",
                word: "x"
            })
        );
        assert_eq!(
            parse("variants=mmu_update:fast"),
            Err(ParamError::UnknownVariant("fast"))
        );
        assert_eq!(parse("pages=:"), Err(ParamError::Empty("pages")));
        assert_eq!(
            parse("batches=1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17"),
            Err(ParamError::TooMany("batches"))
        );
    }

    #[test]
    fn counters_are_named_as_the_hypervisor_names_them_and_wrap() {
        let mut a = Counters::default();
        assert!(a.set(b"ptes_validated", u32::MAX));
        assert!(a.set(b"tlb_flushes", 7));
        assert!(!a.set(b"cycles", 1));
        let mut b = a;
        b.set(b"ptes_validated", 4);
        b.set(b"tlb_flushes", 9);
        let d = b.since(&a);
        assert_eq!((d.ptes_validated, d.tlb_flushes, d.hypercalls), (5, 2, 0));
    }

    #[test]
    fn median_is_the_lower_middle() {
        assert_eq!(median_min_max(&mut [5, 1, 3]), (3, 1, 5));
        assert_eq!(median_min_max(&mut [4, 1, 3, 2]), (2, 1, 4));
        assert_eq!(median_min_max(&mut [9]), (9, 9, 9));
        assert_eq!(median_min_max(&mut []), (0, 0, 0));
    }

    #[test]
    fn result_lines_carry_every_field_and_na_without_counters() {
        let mut f = Figures {
            variant: Variant {
                kind: Kind::MmuUpdate,
                batch: 8,
            },
            pages: 512,
            reps: 5,
            cycles_per_pte: (1200, 1100, 1500),
            touch_cycles_per_page: 40,
            hypercalls: 128,
            counters: None,
        };
        assert_eq!(
            f.to_string(),
            "variant=mmu_update batch=8 pages=512 reps=5 cycles_per_pte=1200 \
             min_cycles_per_pte=1100 max_cycles_per_pte=1500 touch_cycles_per_page=40 \
             hypercalls=128 hv_hypercalls=n/a traps=n/a validations=n/a page_updates=n/a \
             flushes=n/a invlpgs=n/a ref_ops=n/a"
        );
        f.counters = Some(Counters {
            hypercalls: 128,
            ptes_validated: 512,
            page_updates: 1024,
            ref_ops: 2048,
            ..Counters::default()
        });
        assert!(f.to_string().ends_with(
            "hv_hypercalls=128 traps=0 validations=512 page_updates=1024 flushes=0 invlpgs=0 \
             ref_ops=2048"
        ));
    }
}
