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
//! Plain `cargo test` runs a smoke run of 3000 operations (debug builds run ~10^3 a second: the
//! full recount after every step dominates); `make test` runs 10^5 from a fixed seed and `make
//! fuzz` 10^7 from a random one, both in release mode with debug assertions and overflow checks
//! on. The environment sets the run: `FUZZ_OPS`, `FUZZ_SEED` (the run prints it, and a failure
//! the seed of the worker that hit it), `FUZZ_THREADS`, `FUZZ_TRACE=1` (every step as it starts,
//! and the slow ones), and `FUZZ_LIVE_CR3` / `FUZZ_GDT_TEARDOWN` (`1` or `0`) to turn the two
//! held-back checks on or off whatever the constants say.

mod ops;
mod run;
mod world;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use world::{Checks, World};

/// The live-CR3 check: the L4 the CPU runs on keeps its type until CR3 leaves it. It found
/// issue 11's finding 2 (`MMUEXT_NEW_BASEPTR` dropped the old L4's type reference while the CPU
/// still ran on it, so `[UNPIN_TABLE(current L4), NEW_BASEPTR(other L4)]` followed by a
/// `CLEAR_PAGE` or `mmu_update` in the same batch or multicall rewrote the running table); on
/// since the fix. `FUZZ_LIVE_CR3=0` turns it off.
pub(crate) const LIVE_CR3_CHECK: bool = true;

/// Whether a domain's teardown must drop its GDT's frame references itself (issue 11's finding
/// 5; on since the fix). `FUZZ_GDT_TEARDOWN=0` makes the fuzzer drop them before the teardown
/// instead.
pub(crate) const GDT_TEARDOWN_CHECK: bool = true;

/// Operations `make test` runs.
const DEFAULT_OPS: u64 = 3_000;
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
    cover: world::Coverage,
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
        let left = budget - tally.borrow().ops;
        let config = Config {
            cases: (left / (MAX_LEN as u64 / 2) + 1).min(u64::from(BATCH)) as u32,
            ..config.clone()
        };
        let mut runner = TestRunner::new_with_rng(config, rng.take().unwrap());
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
                    "\nreplay: make fuzz FUZZ_SEED={seed:#x} FUZZ_THREADS=1 FUZZ_OPS={} \
                     FUZZ_LIVE_CR3={} FUZZ_GDT_TEARDOWN={}",
                    tally.borrow().ops + 1,
                    u8::from(plan.checks.live_cr3),
                    u8::from(plan.checks.gdt_teardown),
                );
                return Err(report);
            }
            Err(e) => return Err(format!("proptest gave up: {e}")),
        }
    }
    let mut t = tally.into_inner();
    t.cover = world.into_inner().cover;
    Ok(t)
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
                            all.cover.add(&t.cover);
                        }
                        Err(report) => failures.lock().unwrap().push(report),
                    }
                })
                .unwrap();
        }
        // Progress of a long run, every tenth.
        if plan.ops >= 1_000_000 {
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
    eprintln!(
        "  translation-cache hits checked against a fresh walk: {}",
        crate::guest_access::CACHE_HITS_CHECKED.load(Ordering::Relaxed)
    );
    let c = &total.cover;
    let calls: Vec<String> = crate::hypercall::TABLE
        .iter()
        .map(|h| (h.name, c.of(h.nr)))
        .filter(|(_, (n, _))| *n > 0)
        .map(|(name, (n, ok))| format!("{name} {ok}/{n}"))
        .collect();
    eprintln!(
        "  succeeded/made: {}\n  steps with a grant mapped {}, on a switched L4 {}, with a GDT {}, \
         with an interdomain channel {}; {} domains destroyed, {} rebuilt",
        calls.join(", "),
        c.granted,
        c.switched,
        c.gdt,
        c.channels,
        c.destroyed,
        c.rebuilt
    );
    assert!(total.ops >= plan.ops, "{total:?}");
    // The generator must reach the interesting states, not just bounce off refusals (checked on
    // runs as long as `make test`'s; a short replay is not held to it).
    if plan.ops >= 100_000 {
        use hypercall_abi::xen::*;
        let ok = |nr: u32| c.of(nr).1;
        assert!(
            ok(__HYPERVISOR_mmu_update) > plan.ops / 200
                && ok(__HYPERVISOR_mmuext_op) > plan.ops / 200
                && ok(__HYPERVISOR_update_va_mapping) > plan.ops / 1000
                && ok(__HYPERVISOR_multicall) > plan.ops / 200,
            "{c:?}"
        );
        assert!(
            c.granted > plan.ops / 100
                && c.switched > plan.ops / 100
                && c.gdt > plan.ops / 100
                && c.channels > plan.ops / 100
                && c.destroyed > plan.ops / 1000
                && c.rebuilt > plan.ops / 2000,
            "{c:?}"
        );
    }
}

/// Runs `seq` from a fresh world with `checks`.
fn replay(seq: &[ops::Step], checks: Checks) -> Result<(), String> {
    run_sequence(&mut World::new(checks), seq, None)
}

const ALL_CHECKS: Checks = Checks {
    live_cr3: true,
    gdt_teardown: true,
};

#[test]
fn the_watch_catches_writes_into_the_running_l4s_hypervisor_slots() {
    use crate::mm::frame_table::testing::HV_SLOTS;
    use crate::mm::{MachineMemoryMut, Maddr, Mfn};
    let mut w = World::new(ALL_CHECKS);
    let l4 = Mfn(world::dom_base(0));
    w.m.mem.watch = Some(l4);
    // The hypervisor's own entries, and the guest half: not what the watch is for.
    let slot = |i: u64| Maddr(l4.maddr().0 + i * 8);
    w.m.mem.write_u64(slot(256), HV_SLOTS[0]).unwrap();
    w.m.mem.write_u64(slot(3), 0x1234).unwrap();
    assert_eq!(w.m.mem.hit, None);
    // Anything else in slots 256..272, however it is written.
    w.m.mem.write_u64(slot(271), 0).unwrap();
    assert!(w.m.mem.hit.take().unwrap().contains("slot 271"));
    w.m.mem.write(l4.maddr(), &[0u8; 4096]).unwrap();
    assert!(w.m.mem.hit.take().unwrap().contains("slot 256"));
    // Another frame is not watched.
    w.m.mem.write(Mfn(l4.0 + 1).maddr(), &[0u8; 4096]).unwrap();
    assert_eq!(w.m.mem.hit, None);
}

#[test]
fn the_live_cr3_check_catches_a_running_l4_that_loses_its_type() {
    use crate::mm::frame_table::Pt;
    let mut w = World::new(ALL_CHECKS);
    // Inside one entry, drop the pin's and the base pointer's type references on the L4 the vCPU
    // runs on, as a buggy handler would.
    let r = w.entry(0, |ctx| {
        let l4 = ctx.dom.vcpu().l4;
        let caller = ctx.dom.info();
        let vcpu = ctx.dom.vcpu_mut();
        let mut pt = Pt {
            mm: &mut ctx.m.mm,
            mem: &mut ctx.m.mem,
            perf: &mut vcpu.perf,
            flush: &mut vcpu.flush,
            caller,
        };
        pt.mm.set_pinned(l4, false);
        pt.put_page_and_type(l4);
        pt.put_page_and_type(l4);
    });
    let e = r.unwrap_err();
    assert!(
        e.contains("live CR3") && e.contains("at the end of the entry"),
        "{e}"
    );
}

#[test]
fn the_starting_world_and_a_quiet_sequence_pass_every_check() {
    use ops::*;
    // Build a table, switch to the spare L4 and back, grant a frame to dom0, which maps it.
    let seq = [
        Step::Call(
            1,
            Call::Ext {
                ops: vec![Ext::NewBase(F::L4(1)), Ext::NewBase(F::L4(0))],
                fd: Fd::SelfId,
                at: At::Page(0, 0),
                count: Count::Exact,
                done: Done::Ok,
            },
        ),
        Step::Grant(
            1,
            3,
            hypercall_abi::grant_table::GTF_permit_access,
            Dom::Raw(0),
            F::Own(12),
        ),
        Step::Call(
            0,
            Call::Map {
                ops: vec![GMap {
                    flags: 2,
                    gref: Gref::Small(3),
                    dom: Dom::Other(0),
                    host: Host::Va(Va::Page(20, 0)),
                }],
                at: At::Page(1, 0),
                count: Count::Exact,
            },
        ),
        Step::Call(
            0,
            Call::Evtchn(Ev::AllocUnbound {
                dom: Dom::SelfId,
                remote: Dom::Other(0),
            }),
        ),
        Step::Call(
            1,
            Call::Evtchn(Ev::BindInterdomain {
                remote: Dom::Other(0),
                port: Port::Waiting(0),
            }),
        ),
        Step::Call(1, Call::Evtchn(Ev::Send(Port::Mine(0)))),
        Step::Destroy(0),
        Step::Rebuild(0),
    ];
    let mut w = World::new(ALL_CHECKS);
    let mut log = Vec::new();
    for (i, st) in seq.iter().enumerate() {
        log.push(run::step(&mut w, st).unwrap_or_else(|e| panic!("step {i}: {e}")));
        if i == 2 {
            let maps: Vec<_> = w.set.grants[0]
                .mappings(&w.m.mem)
                .map(|(_, m)| (m.domid, m.gref))
                .collect();
            assert_eq!(maps, [(1, 3)], "dom0 maps d1's grant: {log:#?}");
        }
        if i == 4 {
            assert_eq!(w.cover.channels, 1, "d1 bound d0's port: {log:#?}");
        }
    }
    assert_eq!(w.teardown_all(), Ok(()));
    assert!(log[0].ends_with("-> 0"), "{}", log[0]);
    assert!(
        log[4].ends_with("-> 0") && log[5].ends_with("-> 0"),
        "{log:#?}"
    );
    assert!(
        log[6].contains("torn down") && log[7].contains("built d3"),
        "{log:#?}"
    );
}

/// Issue 11, finding 2: the minimal sequences the fuzzer prints for the live L4 put by
/// `MMUEXT_NEW_BASEPTR` (in one batch, and with the running L4 rewritten after it in the same
/// batch or multicall). They failed before the fix (`new_guest_cr3` now switches CR3 before it
/// releases the old table); a regression test since.
#[test]
fn switching_away_from_the_running_l4_keeps_it_typed_until_the_exit_path() {
    use ops::*;
    let ext = |ops: Vec<Ext>| Call::Ext {
        ops,
        fd: Fd::SelfId,
        at: At::Page(0, 0),
        count: Count::Exact,
        done: Done::Ok,
    };
    let checks = Checks {
        live_cr3: true,
        gdt_teardown: GDT_TEARDOWN_CHECK,
    };
    let unpin_and_switch = [Step::Call(
        0,
        ext(vec![Ext::NewBase(F::L4(1)), Ext::Unpin(F::L4(0))]),
    )];
    let and_clear = [Step::Call(
        1,
        ext(vec![
            Ext::Unpin(F::Cur),
            Ext::NewBase(F::L4(1)),
            Ext::Clear(F::Own(0)),
        ]),
    )];
    let then_write = [Step::Multi(
        2,
        vec![
            ext(vec![Ext::Unpin(F::Cur), Ext::NewBase(F::L4(1))]),
            Call::Mmu {
                reqs: vec![MmuReq::Raw {
                    cmd: 0,
                    at: F::Own(0),
                    slot: 256,
                    val: Val::Zero,
                }],
                fd: Fd::SelfId,
                at: At::Page(1, 0),
                count: Count::Exact,
                done: Done::Ok,
            },
        ],
        At::Page(2, 0),
        Count::Exact,
    )];
    let results = [
        replay(&unpin_and_switch, checks),
        replay(&and_clear, checks),
        replay(&then_write, checks),
    ];
    assert_eq!(results, [Ok(()), Ok(()), Ok(())]);
}

/// Issue 11, finding 5: the fuzzer's minimal sequence for the GDT references a dead domain
/// leaks. It failed before `relinquish_domain` dropped them; a regression test since.
#[test]
fn a_destroyed_domain_gives_back_its_gdt_frames() {
    use ops::*;
    let checks = Checks {
        live_cr3: LIVE_CR3_CHECK,
        gdt_teardown: true,
    };
    let seq = [Step::Call(
        0,
        Call::SetGdt {
            frames: vec![F::Own(6)],
            entries: 1,
            at: At::Page(0, 0),
        },
    )];
    assert_eq!(replay(&seq, checks), Ok(()));
}
