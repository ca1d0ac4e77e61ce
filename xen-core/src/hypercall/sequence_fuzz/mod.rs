//! A fuzzer of hypercall *sequences* over the portable core (issue 11): three domains (dom0 and
//! two domUs) make random and adversarial hypercalls through [`crate::hypercall::dispatch`], and
//! after every step the invariants must hold; a failure is shrunk by proptest to the shortest
//! sequence that still breaks one, which is printed with what each step did.
//!
//! What a step can be ([`ops::Step`]): any hypercall with structured arguments written into the
//! caller's memory the way a guest writes them: `mmu_update` requests on its own tables and on
//! other domains' frames, `mmuext_op` (pins, unpins, both base pointers, CLEAR_PAGE, COPY_PAGE,
//! SET_LDT, flushes), `update_va_mapping`, grant maps, unmaps, copies and the table operations
//! on other domains' references, event-channel operations, `set_gdt`, `set_trap_table`, `domctl`,
//! and every other hypercall with raw arguments; a multicall of such calls; lists aliased
//! through page tables (one frame mapped at 512 addresses, so a list longer than a page reads the
//! same frame again), lists placed on the domain's own page tables, over page ends and at bad
//! addresses, and counts no list has; guest stores (through the writable-page-table emulation
//! for stores to its own L1s); grant entries; dom0 destroying a domU; a domU built again.
//!
//! The invariants ([`world::World::check`], [`world::World::entry`]):
//! - the frame table's full recount (`frame_table::audit`), with the references grant mappings
//!   and GDTs hold: every count and type count, no writable mapping of a page table, no domain
//!   mapping a frame it may not, every validated table's entries and the hypervisor's L4 slots;
//! - live CR3 ([`LIVE_CR3_CHECK`]): the L4 a vCPU runs on when it enters the hypervisor stays a
//!   validated L4 of the domain with a type reference until the exit path loads another one, and
//!   nothing is written into its hypervisor slots meanwhile; after the exit path the CPU runs on
//!   the domain's current table;
//! - every frame belongs to one domain or none, and only to the domain it was built for; a
//!   destroyed domain keeps only frames another domain still references, and when every domain
//!   is destroyed at the end of a sequence every frame is free again;
//! - event channels between domains agree at both ends;
//! - no panic (a panic fails the sequence and is shrunk like any other failure).
//!
//! `make test` runs 10^5 operations from a fixed seed; `make fuzz` runs 10^7 in release mode
//! from a random seed. The environment sets the run: `FUZZ_OPS`, `FUZZ_SEED`, `FUZZ_THREADS`,
//! and `FUZZ_LIVE_CR3` / `FUZZ_GDT_TEARDOWN` (`1` or `0`) to turn the two held-back checks on or
//! off whatever the constants say.

mod ops;
mod run;
mod world;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use world::{Checks, World};

/// The live-CR3 check. Off until the fix on branch `wip-mm` ("NEW_BASEPTR puts the live L4") is
/// merged: today `MMUEXT_NEW_BASEPTR` drops the old L4's type reference while the CPU still runs
/// on it (the CR3 load waits for the exit path), so `[UNPIN_TABLE(current L4),
/// NEW_BASEPTR(other L4)]` in one batch leaves the running table untyped, and a `CLEAR_PAGE` or
/// `mmu_update` after it in the same batch or multicall rewrites it. Flip to `true` after the
/// merge (or run with `FUZZ_LIVE_CR3=1`).
pub(crate) const LIVE_CR3_CHECK: bool = false;

/// Whether a domain's teardown must drop its GDT's frame references itself. Off until issue 11's
/// finding 5 (`relinquish_domain` never drops the references `set_gdt` took) is fixed: until
/// then the fuzzer drops them before the teardown, as the fix will, so every other frame can
/// still be checked. Flip to `true` with the fix (or run with `FUZZ_GDT_TEARDOWN=1`).
pub(crate) const GDT_TEARDOWN_CHECK: bool = false;

/// Operations `make test` runs.
const DEFAULT_OPS: u64 = 100_000;
/// The seed `make test` runs from.
const DEFAULT_SEED: u64 = 0x5e9_f022_c0de_0011;
/// Longest sequence generated (the mean is half of it).
const MAX_LEN: usize = 200;
/// Sequences per `TestRunner::run` call: progress and the operation budget are checked between.
const BATCH: u32 = 32;

/// How long a run is and where it starts.
#[derive(Clone, Copy, Debug)]
struct Plan {
    ops: u64,
    seed: u64,
    threads: usize,
    checks: Checks,
}

impl Plan {
    fn from_env() -> Plan {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let num = |n: &str| {
            var(n).map(|v| parse_u64(&v).unwrap_or_else(|| panic!("{n}={v:?}: not a number")))
        };
        let flag = |n: &str, default: bool| num(n).map_or(default, |v| v != 0);
        let ops = num("FUZZ_OPS").unwrap_or(DEFAULT_OPS);
        Plan {
            ops,
            seed: num("FUZZ_SEED").unwrap_or(DEFAULT_SEED),
            threads: num("FUZZ_THREADS")
                .map_or_else(
                    || std::thread::available_parallelism().map_or(1, |n| n.get()),
                    |n| n as usize,
                )
                .clamp(1, 64),
            checks: Checks {
                live_cr3: flag("FUZZ_LIVE_CR3", LIVE_CR3_CHECK),
                gdt_teardown: flag("FUZZ_GDT_TEARDOWN", GDT_TEARDOWN_CHECK),
            },
        }
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

/// splitmix64: a worker's seed from the run's.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of worker `i`: the run's own for the first, derived ones for the others.
fn worker_seed(seed: u64, i: usize) -> u64 {
    if i == 0 {
        seed
    } else {
        splitmix64(seed ^ i as u64)
    }
}

/// Runs one sequence from a fresh world; `log` gets a line per step.
fn run_sequence(
    w: &mut World,
    seq: &[ops::Step],
    mut log: Option<&mut Vec<String>>,
) -> Result<(), String> {
    w.reset();
    for (i, st) in seq.iter().enumerate() {
        // `FUZZ_TRACE=1`: every step as it starts, and how long the slow ones held the CPU.
        let trace = std::env::var_os("FUZZ_TRACE").is_some();
        if trace {
            eprintln!("step {i}: {st:?}");
        }
        let t = std::time::Instant::now();
        let line =
            run::step(w, st).map_err(|e| format!("step {i}: {e}\n  state: {}", w.describe()))?;
        if trace && t.elapsed().as_millis() > 100 {
            eprintln!("  slow step ({:?}): {line}", t.elapsed());
        }
        if let Some(log) = log.as_deref_mut() {
            log.push(line);
        }
    }
    w.teardown_all().map_err(|e| format!("teardown: {e}"))
}

/// What a worker did.
#[derive(Default, Debug)]
struct Tally {
    ops: u64,
    sequences: u64,
    entries: u64,
}

/// Runs sequences from `seed` until `budget` operations are done (or another worker failed);
/// returns the tally, or the report of a failure with its minimal sequence.
fn worker(
    plan: &Plan,
    seed: u64,
    budget: u64,
    stop: &AtomicBool,
    progress: &AtomicU64,
) -> Result<Tally, String> {
    let world = RefCell::new(World::new(plan.checks));
    let tally = RefCell::new(Tally::default());
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..].copy_from_slice(&splitmix64(seed).to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::XorShift, &bytes);
    let config = Config {
        cases: BATCH,
        failure_persistence: None,
        max_shrink_iters: 20_000,
        ..Config::default()
    };
    let mut rng = Some(rng);
    let strategy = ops::sequence(MAX_LEN);
    let failing = Cell::new(false);
    while tally.borrow().ops < budget && !stop.load(Ordering::Relaxed) {
        // A runner runs `cases` sequences once: each batch gets a new one, its RNG drawn from
        // the last one's, so the whole run follows from the seed.
        let mut runner = TestRunner::new_with_rng(config.clone(), rng.take().unwrap());
        let result = runner.run(&strategy, |seq| {
            let mut w = world.borrow_mut();
            let r = run_sequence(&mut w, &seq, None);
            if !failing.get() {
                let mut t = tally.borrow_mut();
                t.ops += seq.len() as u64;
                t.sequences += 1;
                t.entries += w.entries;
                progress.fetch_add(seq.len() as u64, Ordering::Relaxed);
            }
            r.map_err(|e| {
                failing.set(true);
                TestCaseError::fail(e)
            })
        });
        rng = Some(runner.new_rng());
        match result {
            Ok(()) => {}
            Err(TestError::Fail(why, seq)) => {
                stop.store(true, Ordering::Relaxed);
                let mut log = Vec::new();
                let mut w = world.borrow_mut();
                let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_sequence(&mut w, &seq, Some(&mut log))
                }))
                .unwrap_or_else(|p| {
                    Err(p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "a panic".into()))
                });
                let mut report = format!(
                    "the sequence fuzzer broke an invariant (worker seed {seed:#x}):\n  {why}\n\n\
                     minimal sequence ({} steps):\n",
                    seq.len()
                );
                for (i, st) in seq.iter().enumerate() {
                    report += &format!("  {i:3}: {st:?}\n");
                }
                report += "\nwhat each step did:\n";
                for (i, line) in log.iter().enumerate() {
                    report += &format!("  {i:3}: {line}\n");
                }
                report += &format!(
                    "  replayed: {}\n",
                    again.err().unwrap_or_else(|| "passed (flaky?)".into())
                );
                report += &format!(
                    "\nreplay: FUZZ_SEED={seed:#x} FUZZ_THREADS=1 FUZZ_OPS={} cargo test --release \
                     -p xen-core sequence_fuzz -- --nocapture",
                    tally.borrow().ops.max(1)
                );
                return Err(report);
            }
            Err(e) => return Err(format!("proptest gave up: {e}")),
        }
    }
    Ok(tally.into_inner())
}

#[test]
fn hypercall_sequences_from_three_hostile_domains_keep_every_invariant() {
    let plan = Plan::from_env();
    let started = std::time::Instant::now();
    let stop = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let total = Mutex::new(Tally::default());
    let failures = Mutex::new(Vec::new());
    let per = plan.ops.div_ceil(plan.threads as u64);
    eprintln!(
        "sequence fuzzer: {} operations from seed {:#x} on {} threads (live-CR3 check {}, \
         GDT teardown check {})",
        plan.ops,
        plan.seed,
        plan.threads,
        if plan.checks.live_cr3 { "on" } else { "off" },
        if plan.checks.gdt_teardown {
            "on"
        } else {
            "off"
        },
    );
    std::thread::scope(|scope| {
        for i in 0..plan.threads {
            let budget = per.min(plan.ops.saturating_sub(per * i as u64));
            let (stop, progress, total, failures, plan) =
                (&stop, &progress, &total, &failures, &plan);
            std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn_scoped(scope, move || {
                    if budget == 0 {
                        return;
                    }
                    match worker(plan, worker_seed(plan.seed, i), budget, stop, progress) {
                        Ok(t) => {
                            let mut all = total.lock().unwrap();
                            all.ops += t.ops;
                            all.sequences += t.sequences;
                            all.entries += t.entries;
                        }
                        Err(report) => failures.lock().unwrap().push(report),
                    }
                })
                .unwrap();
        }
        // Progress of a long run, every tenth.
        if plan.ops > DEFAULT_OPS {
            let mut shown = 0;
            while !stop.load(Ordering::Relaxed) && shown < 9 {
                std::thread::sleep(std::time::Duration::from_millis(500));
                let done = progress.load(Ordering::Relaxed);
                if done * 10 / plan.ops > shown {
                    shown = done * 10 / plan.ops;
                    eprintln!(
                        "sequence fuzzer: {done}/{} operations, {:.0} ops/s",
                        plan.ops,
                        done as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    });
    let failures = failures.into_inner().unwrap();
    if let Some(report) = failures.first() {
        panic!("{report}");
    }
    let total = total.into_inner().unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "sequence fuzzer: {} operations in {} sequences ({} hypercall entries) in {secs:.2} s: \
         {:.0} ops/s; seed {:#x}\n  replay: FUZZ_SEED={:#x} FUZZ_OPS={} (FUZZ_THREADS={})",
        total.ops,
        total.sequences,
        total.entries,
        total.ops as f64 / secs,
        plan.seed,
        plan.seed,
        plan.ops,
        plan.threads
    );
    assert!(total.ops >= plan.ops, "{total:?}");
}
