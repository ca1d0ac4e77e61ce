//! Property test: two hostile domains (dom0, privileged, and an unprivileged domU) throw random
//! `mmu_update`, `mmuext_op` and `update_va_mapping` calls at the frame table. After every step
//! a full recount ([`super::audit`]) must agree with the table: no writable mapping of a frame
//! typed as a page table, no domain mapping a frame it may not, every general and type count
//! equal to what the allocations, shares, pins, base pointers and validated entries account for.
//! At the end both domains are torn down and every count must return to zero.
//!
//! The generator aims at collisions: most frames and slots come from a small set, so tables get
//! built, shared, pinned, remapped and torn down often; the rest is noise (other domains' frames,
//! hypervisor and I/O frames, reserved flags, Xen's slots, bad commands).
//!
//! `make test` runs 10^5 operations from two fixed seeds. Longer runs take their size and seeds
//! from the environment ([`Plan::from_env`]); `make fuzz-mm` runs 10^7 operations from a random
//! seed in release mode, with debug assertions and overflow checks on. Every run of [`STEPS`]
//! operations starts afresh from its own seed; a failure names the seed and step, and the command
//! that replays it.

use hypercall_abi::xen::*;

use super::pte::{self, ACCESSED, DIRTY, GLOBAL, NX, PAT, PCD, PRESENT, PWT, RW, USER};
use super::testing::*;
use super::{FrameInfo, Owner, PageType};

/// Operations per run (one seed, one fresh pair of domains).
const STEPS: u64 = 50_000;
/// Operations of the default plan: two runs, as `make test` has always done.
const DEFAULT_OPS: u64 = 100_000;
/// Seeds of the default plan.
const DEFAULT_SEEDS: [u64; 2] = [0x9e37_79b9_7f4a_7c15, 0xd1b5_4a32_d192_ed03];

/// How many operations to run, from which seeds, on how many threads.
#[derive(Debug)]
struct Plan {
    /// Total operations.
    ops: u64,
    /// One seed per run of up to [`STEPS`] operations.
    seeds: Vec<u64>,
    /// Worker threads (runs are independent).
    threads: usize,
}

impl Plan {
    /// The plan the environment asks for:
    /// - `FUZZ_MM_OPS`: total operations (default 10^5; `_` separators allowed);
    /// - `FUZZ_MM_SEEDS`: comma-separated seeds, decimal or `0x` hex (default: the two fixed
    ///   ones). Runs take them in order; when there are more runs than seeds, further seeds come
    ///   from a splitmix64 stream started at the last one, so one seed names a whole long run;
    /// - `FUZZ_MM_THREADS`: worker threads (default: the available parallelism).
    fn from_env() -> Plan {
        Plan::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Plan::from_env`] over any source of variables.
    fn from_vars(get: impl Fn(&str) -> Option<String>) -> Plan {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let ops = var("FUZZ_MM_OPS").map_or(DEFAULT_OPS, |v| {
            parse_u64(&v).unwrap_or_else(|| panic!("FUZZ_MM_OPS={v:?}: not a number"))
        });
        let given: Vec<u64> = var("FUZZ_MM_SEEDS").map_or(DEFAULT_SEEDS.to_vec(), |v| {
            v.split(',')
                .map(|s| {
                    parse_u64(s).unwrap_or_else(|| panic!("FUZZ_MM_SEEDS: {s:?} is not a seed"))
                })
                .collect()
        });
        assert!(!given.is_empty(), "FUZZ_MM_SEEDS names no seed");
        let runs = ops.div_ceil(STEPS) as usize;
        let mut seeds: Vec<u64> = given.iter().copied().take(runs).collect();
        let mut stream = *given.last().unwrap();
        while seeds.len() < runs {
            seeds.push(splitmix64(&mut stream));
        }
        let threads = var("FUZZ_MM_THREADS")
            .and_then(|v| parse_u64(&v))
            .map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                |n| n as usize,
            )
            .clamp(1, runs.max(1));
        Plan {
            ops,
            seeds,
            threads,
        }
    }

    /// Operations of run `i`: [`STEPS`], or what is left for the last one.
    fn steps(&self, i: usize) -> u64 {
        (self.ops - i as u64 * STEPS).min(STEPS)
    }
}

/// A decimal or `0x` hexadecimal number, `_` separators allowed.
fn parse_u64(s: &str) -> Option<u64> {
    let s: String = s.trim().chars().filter(|&c| c != '_').collect();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// splitmix64: derives well-spread seeds from one.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// xorshift64*: small, deterministic, good enough to explore.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// A frame as a hostile domain `d` would name one.
fn frame(r: &mut Rng, d: usize) -> u64 {
    match r.below(100) {
        // Its own tables and the first data pages: where the action is.
        0..=49 => base(d) + r.below(8),
        50..=79 => base(d) + r.below(DOM_FRAMES),
        80..=87 => base(1 - d) + r.below(DOM_FRAMES),
        // I/O, hypervisor, shared_info, free, beyond RAM, INVALID_MFN.
        _ => r.pick(&[
            0,
            2,
            4,
            5,
            6,
            7,
            90,
            127,
            128,
            0x300,
            0xfee00,
            pte::ADDR >> 12,
        ]),
    }
}

fn slot(r: &mut Rng) -> u64 {
    match r.below(100) {
        0..=59 => r.below(8),
        60..=84 => r.below(48),
        _ => r.pick(&[255, 256, 263, 271, 272, 300, 511]),
    }
}

/// A page-table entry value.
fn value(r: &mut Rng, d: usize) -> u64 {
    match r.below(100) {
        0..=7 => 0,
        8..=11 => r.next(),
        _ => {
            let mut v = frame(r, d) << 12;
            for (bit, pct) in [
                (PRESENT, 90),
                (RW, 50),
                (USER, 50),
                (ACCESSED, 50),
                (DIRTY, 30),
                (PWT, 4),
                (PCD, 4),
                (PAT, 4),
                (GLOBAL, 6),
                (NX, 10),
                (pte::GUEST_KERNEL, 10),
                (1 << 61, 3),
                (1 << 10, 3),
            ] {
                if r.pct(pct) {
                    v |= bit;
                }
            }
            v
        }
    }
}

fn foreigndom(r: &mut Rng, d: usize) -> u32 {
    let other = (1 - d) as u32;
    match r.below(100) {
        0..=84 => DOMID_SELF.into(),
        85..=89 => other,
        90 => d as u32,
        91 => DOMID_IO.into(),
        92 => DOMID_XEN.into(),
        93 => 77,
        // The upper half names the page tables' owner: only the unprivileged domain tries it
        // (dom0 may legitimately edit a domU's tables, which the audit's ownership rule for
        // unprivileged tables does not model).
        _ if d == 1 => ((other + 1) << 16) | u32::from(DOMID_SELF),
        _ => DOMID_SELF.into(),
    }
}

/// A virtual address inside or near the domain's mapped range.
fn va(r: &mut Rng) -> u64 {
    match r.below(100) {
        0..=69 => page_va(r.below(48)),
        70..=89 => {
            (r.below(2) << 39) | (r.below(2) << 30) | (r.below(2) << 21) | page_va(r.below(16))
        }
        _ => r.pick(&[
            1 << 47,
            0xffff_8000_0000_0000,
            0xffff_ff80_0000_0000,
            0x7000_0000_0000,
        ]),
    }
}

/// What happened, for the coverage check at the end.
#[derive(Default, Debug, Clone)]
struct Stats {
    ops: usize,
    ok: usize,
    l1_updates_ok: usize,
    upper_updates_ok: usize,
    pins_ok: [usize; 4],
    unpins_ok: usize,
    baseptr_ok: usize,
    uvm_ok: usize,
    tables_seen: usize,
    /// Steps after which some table held a linear entry to another table.
    linear_seen: usize,
}

impl Stats {
    fn add(&mut self, s: &Stats) {
        self.ops += s.ops;
        self.ok += s.ok;
        self.l1_updates_ok += s.l1_updates_ok;
        self.upper_updates_ok += s.upper_updates_ok;
        for i in 0..4 {
            self.pins_ok[i] += s.pins_ok[i];
        }
        self.unpins_ok += s.unpins_ok;
        self.baseptr_ok += s.baseptr_ok;
        self.uvm_ok += s.uvm_ok;
        self.tables_seen += s.tables_seen;
        self.linear_seen += s.linear_seen;
    }
}

/// One operation, kept for the failure message.
#[allow(dead_code)] // read through Debug only
#[derive(Debug)]
enum Op {
    Mmu {
        d: usize,
        reqs: Vec<(u64, u64)>,
        foreigndom: u32,
        rc: i64,
        done: u32,
    },
    Ext {
        d: usize,
        ops: Vec<(u32, u64, u64)>,
        foreigndom: u32,
        rc: i64,
    },
    Uvm {
        d: usize,
        va: u64,
        val: u64,
        flags: u64,
        domid: Option<u16>,
        rc: i64,
    },
}

/// A random validated table of domain `d`, if it has one.
fn some_table(t: &Two, r: &mut Rng, d: usize) -> Option<(u64, PageType)> {
    let tables: Vec<(u64, PageType)> = (base(d)..base(d) + DOM_FRAMES)
        .map(|m| (m, t.frame(m)))
        .filter(|(_, f)| f.page_type().is_page_table() && f.validated())
        .map(|(m, f)| (m, f.page_type()))
        .collect();
    (!tables.is_empty()).then(|| r.pick(&tables))
}

/// A virtual address the domain's current tables give an L1, if one of a few tries finds one.
fn aimed_va(t: &Two, r: &mut Rng, d: usize) -> u64 {
    for _ in 0..8 {
        let v = (r.below(2) << 39) | (r.below(3) << 30) | (r.below(3) << 21) | page_va(r.below(48));
        if crate::mm::guest_pt::map_guest_l1e(&t.m.mem, t.doms[d].vcpu().l4, v).is_some() {
            return v;
        }
    }
    va(r)
}

/// A well-formed update: link an own frame into one of the domain's validated tables, so that
/// structure keeps being built while the hostile operations tear it down.
fn constructive(t: &Two, r: &mut Rng, d: usize) -> Vec<(u64, u64)> {
    let Some((table, ty)) = some_table(t, r, d) else {
        return Vec::new();
    };
    let child = base(d) + r.below(DOM_FRAMES);
    let (slot, val) = match ty {
        PageType::L1 => {
            let data = base(d) + 4 + r.below(DOM_FRAMES - 4);
            let flags = if r.pct(70) { DATA } else { DATA & !RW };
            (r.below(48), (data << 12) | flags)
        }
        // A linear entry: read-only, to a validated table of the same level (or itself).
        _ if r.pct(5) => {
            let same: Vec<u64> = t
                .mm()
                .frames
                .iter()
                .filter(|(m, f)| {
                    (base(d)..base(d) + DOM_FRAMES).contains(&m.0)
                        && f.page_type() == ty
                        && f.validated()
                })
                .map(|(m, _)| m.0)
                .collect();
            let target = if same.is_empty() {
                child
            } else {
                r.pick(&same)
            };
            (r.below(3), (target << 12) | (TABLE_FLAGS & !RW))
        }
        PageType::L4 => (r.below(2), (child << 12) | TABLE_FLAGS),
        _ => (r.below(3), (child << 12) | TABLE_FLAGS),
    };
    vec![(Two::slot(table, slot), val)]
}

fn step(t: &mut Two, r: &mut Rng, s: &mut Stats) -> Op {
    let d = r.below(2) as usize;
    match r.below(100) {
        0..=14 => {
            let reqs = constructive(t, r, d);
            let (rc, done) = t.mmu(d, &reqs, DOMID_SELF.into());
            s.ok += usize::from(rc == 0);
            Op::Mmu {
                d,
                reqs,
                foreigndom: DOMID_SELF.into(),
                rc,
                done,
            }
        }
        15..=44 => {
            let n = 1 + r.below(4) as usize;
            let reqs: Vec<(u64, u64)> = (0..n)
                .map(|_| {
                    let cmd = match r.below(100) {
                        0..=84 => MMU_NORMAL_PT_UPDATE,
                        85..=89 => MMU_PT_UPDATE_PRESERVE_AD,
                        90..=92 => MMU_PT_UPDATE_NO_TRANSLATE,
                        93..=96 => MMU_MACHPHYS_UPDATE,
                        _ => 4 + r.below(4),
                    };
                    let ptr = (frame(r, d) << 12) + slot(r) * 8 + cmd;
                    (ptr, value(r, d))
                })
                .collect();
            let fd = foreigndom(r, d);
            let types: Vec<_> = reqs
                .iter()
                .map(|&(p, _)| {
                    t.mm()
                        .frames
                        .get(crate::mm::Mfn(p >> 12))
                        .map(|f| f.page_type())
                })
                .collect();
            let (rc, done) = t.mmu(d, &reqs, fd);
            for ty in types.iter().take(done as usize) {
                match ty {
                    Some(PageType::L1) => s.l1_updates_ok += 1,
                    Some(PageType::L2 | PageType::L3 | PageType::L4) => s.upper_updates_ok += 1,
                    _ => {}
                }
            }
            s.ok += usize::from(rc == 0);
            Op::Mmu {
                d,
                reqs,
                foreigndom: fd,
                rc,
                done,
            }
        }
        45..=74 => {
            let n = 1 + r.below(3) as usize;
            let ops: Vec<(u32, u64, u64)> = (0..n)
                .map(|_| {
                    let cmd = match r.below(100) {
                        0..=39 => MMUEXT_PIN_L1_TABLE + r.below(4) as u32,
                        40..=59 => MMUEXT_UNPIN_TABLE,
                        60..=69 => MMUEXT_NEW_BASEPTR,
                        70..=76 => MMUEXT_NEW_USER_BASEPTR,
                        77..=79 => MMUEXT_CLEAR_PAGE,
                        80..=82 => MMUEXT_COPY_PAGE,
                        83..=92 => r.pick(&[
                            MMUEXT_TLB_FLUSH_LOCAL,
                            MMUEXT_INVLPG_LOCAL,
                            MMUEXT_TLB_FLUSH_MULTI,
                            MMUEXT_INVLPG_MULTI,
                            MMUEXT_TLB_FLUSH_ALL,
                            MMUEXT_INVLPG_ALL,
                        ]),
                        93..=95 => MMUEXT_SET_LDT,
                        _ => r.below(24) as u32,
                    };
                    // Validated L4s to switch to (for NEW_BASEPTR, other than the current one:
                    // a reload is reached often enough through `frame`).
                    let current = t.doms[d].vcpu().l4.0;
                    let l4s: Vec<u64> = (base(d)..base(d) + DOM_FRAMES)
                        .filter(|&m| {
                            let f = t.frame(m);
                            f.page_type() == PageType::L4
                                && f.validated()
                                && (cmd != MMUEXT_NEW_BASEPTR || m != current)
                        })
                        .collect();
                    let baseptr = matches!(cmd, MMUEXT_NEW_BASEPTR | MMUEXT_NEW_USER_BASEPTR);
                    let arg1 = if cmd == MMUEXT_NEW_USER_BASEPTR && r.pct(20) {
                        0
                    } else if baseptr && !l4s.is_empty() && r.pct(50) {
                        r.pick(&l4s)
                    } else if matches!(cmd, MMUEXT_INVLPG_LOCAL | MMUEXT_SET_LDT) {
                        va(r)
                    } else {
                        frame(r, d)
                    };
                    let arg2 = match cmd {
                        MMUEXT_COPY_PAGE => frame(r, d),
                        MMUEXT_SET_LDT => r.below(10_000),
                        _ => va(r),
                    };
                    (cmd, arg1, arg2)
                })
                .collect();
            let fd = foreigndom(r, d);
            let old_l4 = t.doms[d].vcpu().l4;
            let rc = t.ext(d, &ops, fd);
            s.ok += usize::from(rc == 0);
            if rc == 0 {
                for &(cmd, arg1, _) in &ops {
                    match cmd {
                        MMUEXT_PIN_L1_TABLE..=MMUEXT_PIN_L4_TABLE => {
                            s.pins_ok[(cmd - MMUEXT_PIN_L1_TABLE) as usize] += 1
                        }
                        MMUEXT_UNPIN_TABLE => s.unpins_ok += 1,
                        MMUEXT_NEW_BASEPTR if t.doms[d].vcpu().l4.0 == arg1 && old_l4.0 != arg1 => {
                            s.baseptr_ok += 1
                        }
                        _ => {}
                    }
                }
            }
            Op::Ext {
                d,
                ops,
                foreigndom: fd,
                rc,
            }
        }
        _ => {
            let v = if r.pct(70) { aimed_va(t, r, d) } else { va(r) };
            let val = if r.pct(40) {
                ((base(d) + 4 + r.below(DOM_FRAMES - 4)) << 12) | DATA
            } else {
                value(r, d)
            };
            let flags = match r.below(10) {
                0..=5 => r.pick(&[0, 1, 2, 3, 5, 6]),
                6 | 7 => page_va(r.below(40)) | (1 + r.below(2)),
                _ => r.next(),
            };
            let domid = if r.pct(10) {
                Some(foreigndom(r, d) as u16)
            } else {
                None
            };
            let rc = t.uvm(d, v, val, flags, domid);
            s.ok += usize::from(rc == 0);
            s.uvm_ok += usize::from(rc == 0);
            Op::Uvm {
                d,
                va: v,
                val,
                flags,
                domid,
                rc,
            }
        }
    }
}

fn run(seed: u64, steps: u64) -> Stats {
    let mut t = Two::new();
    let mut r = Rng(seed);
    let mut s = Stats::default();
    for i in 0..steps {
        let what = step(&mut t, &mut r, &mut s);
        s.ops += 1;
        // What the arch layer would do after each hypercall.
        for d in &mut t.doms {
            d.vcpu_mut().flush.take();
        }
        if let Err(e) = t.audit() {
            panic!(
                "seed {seed:#x} step {i}: {what:x?}\n  audit: {e}\n  \
                 replay: FUZZ_MM_SEEDS={seed:#x} FUZZ_MM_OPS={} cargo test -p xen-core property",
                i + 1
            );
        }
        s.tables_seen += t
            .mm()
            .frames
            .iter()
            .filter(|(_, f)| f.page_type().is_page_table() && f.validated())
            .count();
        s.linear_seen += usize::from(t.mm().frames.iter().any(|(_, f)| f.linear_pt_count() > 0));
    }

    // Tear everything down: dom0 first (it may map the domU's frames), then the domU.
    for d in 0..2 {
        let (mm, mem) = crate::ctx::Machine::mm(&mut t.m).unwrap();
        let left = mm.relinquish_domain(mem, &mut t.doms[d]);
        assert_eq!(left, 0, "seed {seed:#x}: d{d} frames still referenced");
    }
    for (mfn, f) in t.mm().frames.iter() {
        match mfn.0 {
            0..4 => assert_eq!((f.owner(), f.count(), f.type_count()), (Owner::Io, 1, 1)),
            4..6 => assert_eq!((f.owner(), f.count(), f.type_count()), (Owner::Xen, 0, 0)),
            _ => assert_eq!(
                f.without_given(),
                FrameInfo::FREE,
                "seed {seed:#x}: {mfn:?} after teardown"
            ),
        }
    }
    if let Err(e) = super::audit::audit(t.mm(), &t.m.mem, &[]) {
        panic!("seed {seed:#x} after teardown: {e}");
    }
    s
}

#[test]
fn random_operations_from_two_hostile_domains_keep_every_invariant() {
    let plan = Plan::from_env();
    let started = std::time::Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicU64::new(0);
    let total = std::sync::Mutex::new(Stats::default());
    let long = plan.seeds.len() > DEFAULT_SEEDS.len();
    std::thread::scope(|scope| {
        for _ in 0..plan.threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&seed) = plan.seeds.get(i) else {
                    break;
                };
                let s = run(seed, plan.steps(i));
                total.lock().unwrap().add(&s);
                let before = done.fetch_add(s.ops as u64, std::sync::atomic::Ordering::Relaxed);
                let after = before + s.ops as u64;
                // Progress of a long run, every tenth.
                if long && after * 10 / plan.ops != before * 10 / plan.ops {
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "fuzz-mm: {after}/{} operations, {:.0} ops/s",
                        plan.ops,
                        after as f64 / secs
                    );
                }
            });
        }
    });
    let total = total.into_inner().unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "property test: {} operations in {elapsed:.2?} ({:.0} ops/s, {} runs on {} threads): \
         {total:?}",
        total.ops,
        total.ops as f64 / elapsed.as_secs_f64(),
        plan.seeds.len(),
        plan.threads
    );
    eprintln!(
        "  replay: FUZZ_MM_SEEDS={:#x} FUZZ_MM_OPS={} \
         (one run: FUZZ_MM_SEEDS=<its seed> FUZZ_MM_OPS={STEPS})",
        plan.seeds[0], plan.ops
    );
    for chunk in plan.seeds.chunks(6) {
        let line: Vec<String> = chunk.iter().map(|s| format!("{s:#018x}")).collect();
        eprintln!("  seeds: {}", line.join(" "));
    }
    assert_eq!(total.ops as u64, plan.ops);
    // The generator must reach the interesting paths, not just bounce off refusals (checked on
    // runs at least as long as the default; a short replay of one failure is not held to it).
    if plan.ops >= DEFAULT_OPS {
        assert!(total.ok > total.ops / 10, "{total:?}");
        assert!(
            total.l1_updates_ok > 1000 && total.upper_updates_ok > 100,
            "{total:?}"
        );
        assert!(total.pins_ok.iter().all(|&n| n > 20), "{total:?}");
        assert!(
            total.unpins_ok > 100 && total.baseptr_ok > 10 && total.uvm_ok > 500,
            "{total:?}"
        );
        assert!(total.linear_seen > 1000, "{total:?}");
    }
}

#[test]
fn the_plan_defaults_to_two_fixed_runs_and_extends_seeds_by_splitmix() {
    let plan = |vars: &[(&str, &str)]| {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Plan::from_vars(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    };
    // Nothing set (`make test`): the two historical runs.
    let d = plan(&[("FUZZ_MM_THREADS", "1")]);
    assert_eq!(
        (d.ops, d.seeds.as_slice()),
        (DEFAULT_OPS, &DEFAULT_SEEDS[..])
    );
    assert_eq!((d.steps(0), d.steps(1)), (STEPS, STEPS));
    // Empty variables are unset ones.
    assert_eq!(
        plan(&[("FUZZ_MM_OPS", ""), ("FUZZ_MM_SEEDS", " ")]).seeds,
        DEFAULT_SEEDS
    );
    // One seed names a long run: the rest follow from it, the same every time.
    let long = plan(&[("FUZZ_MM_OPS", "10_000_000"), ("FUZZ_MM_SEEDS", "0x2a")]);
    assert_eq!(long.seeds.len(), 200);
    assert_eq!(long.seeds[0], 0x2a);
    let mut stream = 0x2a;
    assert_eq!(long.seeds[1], splitmix64(&mut stream));
    assert_eq!(
        long.seeds,
        plan(&[("FUZZ_MM_OPS", "10000000"), ("FUZZ_MM_SEEDS", "42")]).seeds
    );
    // A replay of one failure: the seed it names, as many steps as it took; a last short run.
    let replay = plan(&[("FUZZ_MM_OPS", "1234"), ("FUZZ_MM_SEEDS", "0x5, 0x6")]);
    assert_eq!((replay.seeds.as_slice(), replay.steps(0)), (&[5][..], 1234));
    let odd = plan(&[("FUZZ_MM_OPS", "120001"), ("FUZZ_MM_THREADS", "64")]);
    assert_eq!((odd.seeds.len(), odd.steps(2), odd.threads), (3, 20_001, 3));
    assert_eq!(parse_u64("1e7"), None);
}
