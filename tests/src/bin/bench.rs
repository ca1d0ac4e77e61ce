//! `make bench`: boot and hypercall figures for our hypervisor and Debian's Xen 4.17, in one run.
//!
//! Every boot runs under the accelerator `XTESTS_ACCEL` names (`tcg` by default; `make bench`
//! runs this once under KVM when `scripts/accel.sh` picks it, then once under TCG).
//!
//! - Boot: QEMU start to dom0's first console line, median of 5 boots, in ms (wall clock), and
//!   QEMU's CPU time (user + system) at that line in the same boots: the boot's work, which the
//!   load of a shared machine barely moves, where the wall clock doubles.
//! - Null hypercall: `xen_version(XENVER_version)` round trip in guest TSC cycles, median of 10^5,
//!   measured by the guest (`bench=null-hypercall`); next to it, from the same boot of ours, the
//!   bare `syscall`/`sysretq` round trip from ring 3 with an empty handler, median of 1000,
//!   measured by the hypervisor (`selftest=native-syscall`), and the ratio of the two.
//!
//! - Two domains, ours beside Xen 4.17 (on Xen our dom0 builds the domU itself through Xen's
//!   toolstack hypercalls, `build-domu`; on ours the hypervisor builds it from its boot module):
//!   dom0 and one domU bounce 1000 events (round trip, dom0 send to the domU's answer arriving,
//!   through both event loops and the scheduler: median of the 1000, TSC cycles), then dom0
//!   times 1000 grant copies of a 4 KiB page from the domU (`GNTTABOP_copy`, one per
//!   hypercall): median cycles. Both modes (TCG wall clock, and icount with `--icount`).
//!
//! - Block I/O, ours and then Xen 4.17 (our dom0 builds the domU there, `build-domu`): in one
//!   run, dom0 reads and writes its virtio disk directly
//!   (`bench-blkdev`: sequential write and read in 64 KiB requests, random 4 KiB reads one at a
//!   time and 16 in flight) and a domU does the same through blkfront/blkback (`blk-bench`:
//!   512 KiB calls, split into indirect requests of 32 pages, up to 16 in flight), each phase in
//!   32 rounds, dom0's round and the domU's taking turns (`guest_kernel::rates`,
//!   `dom0::blkbench`), on a fresh 32 MiB image (in
//!   `/dev/shm` when there is one, else `build/`; `BENCH_DISK_DIR` names another place), twice:
//!   with persistent grants (the back end maps the front end's pages once, the device DMAs into
//!   them), then over a fresh connection without (each batch's grants mapped and unmapped);
//!   the ratios to dom0 direct are of the same run; with the event notifications per request
//!   on both sides, requests in flight, grant-copy and map/unmap hypercalls per request and how
//!   each request's data moved (BlkFront and BlkBack counters); then each figure on ours over
//!   the same on Xen 4.17, for the domU and for dom0 direct. `--blk` runs this section alone,
//!   `BENCH_BLK_RUNS` pairs of runs (ours, then Xen), with the medians.
//!
//! - Network (ours only): dom0 with its virtio-net NIC and one domU; the host's TCP echo of
//!   64 MiB (every byte checked) and 1-byte round trips to dom0 directly and to the domU through
//!   the bridge, netback and netfront; netback's events, notifications and grant-copy calls per
//!   packet, the domU's netfront counters.
//!
//! - Scale (ours only): dom0 + 64 domUs of 4 MiB in 512 MiB, each doing its ping-pong and grant
//!   copy with dom0: the hypervisor's build of them, each domU from its build to done (median,
//!   slowest), all of them (total, per domU), QEMU start to the last one destroyed, in wall clock
//!   and QEMU CPU time; the hypervisor's memory per domain (static slot + frames) and dom0's
//!   heap. `--scale` runs this section alone.
//!
//! - `--blk-emulator` (alone, not in the default run; needs `perf` and root): QEMU's own work
//!   per random 4 KiB read one at a time, dom0's direct and the domU's, counted with uprobes
//!   (`bench/emulator.rs`).
//!
//! - icount mode (TCG only): the null hypercall and the page-table updates again under
//!   `-icount shift=0,sleep=off`, where a TSC cycle is one guest instruction: exact figures, the
//!   same on every machine, ours next to Xen 4.17.
//!
//! The machine is shared and noisy: compare the two columns of one run (the ratio), not absolute
//! figures across runs.

use std::process::ExitCode;
use std::time::Duration;

#[path = "bench/emulator.rs"]
mod emulator;

use xtests::{build_dir, guest_kernel_image, median, xen_reference_image, Boot, XEN_CMDLINE};

const BOOTS: usize = 5;
const FIRST_LINE: &str = "guest-kernel 0.1.0: booted";

struct Figures {
    boot_ms: Option<f64>,
    /// QEMU's CPU time (user + system) at dom0's first line, median of the same boots, in ms:
    /// the work of the boot, which the load of a shared machine barely moves.
    boot_cpu_ms: Option<f64>,
    null_cycles: Option<u64>,
    null_line: String,
    /// Ours only (`selftest=native-syscall`, same boot as the null hypercall): the bare
    /// `syscall`/`sysretq` round trip from ring 3, median TSC cycles, and its line.
    native_cycles: Option<u64>,
    native_line: String,
    /// `bench pt_update ...` lines: one per variant and batch size.
    pt_update: Vec<std::collections::BTreeMap<String, String>>,
}

/// The `key=value` words of a `bench` line.
fn fields(line: &str) -> std::collections::BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn boot(hypervisor: &std::path::Path, xen_opts: &str, guest_cmdline: &str) -> Option<xtests::Run> {
    boot_with(hypervisor, xen_opts, guest_cmdline, Vec::new())
}

/// [`boot`] with extra QEMU arguments (the icount mode's).
fn boot_with(
    hypervisor: &std::path::Path,
    xen_opts: &str,
    guest_cmdline: &str,
    qemu_extra: Vec<String>,
) -> Option<xtests::Run> {
    let b = Boot {
        hypervisor: hypervisor.to_path_buf(),
        cmdline: format!("{XEN_CMDLINE} {xen_opts}").trim_end().to_string(),
        modules: vec![(guest_kernel_image(), guest_cmdline.into())],
        timeout: Duration::from_secs(120),
        qemu_extra,
    };
    match b.run() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("bench: {e}");
            None
        }
    }
}

/// The first line of `run`'s log containing `needle` (empty if none), and its `median_cycles=`.
fn median_line(run: Option<&xtests::Run>, needle: &str) -> (String, Option<u64>) {
    let line = run
        .and_then(|r| r.log.iter().find(|l| l.contains(needle)).cloned())
        .unwrap_or_default();
    let cycles = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("median_cycles="))
        .and_then(|v| v.parse().ok());
    (line, cycles)
}

/// QEMU start -> dom0's first line over [`BOOTS`] boots: the median wall clock and the median
/// of QEMU's CPU time there, in ms (`None` unless every boot got there).
fn boot_times(hypervisor: &std::path::Path) -> (Option<f64>, Option<f64>) {
    let mut boots = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..BOOTS {
        let Some(r) = boot(hypervisor, "", "exit=reboot") else {
            continue;
        };
        if let Some(t) = r.first_line_at(FIRST_LINE) {
            boots.push(t.as_micros() as u64);
        }
        if let Some(t) = r.first_line_cpu(FIRST_LINE) {
            cpus.push(t.as_micros() as u64);
        }
    }
    let ms = |v: &[u64]| (v.len() == BOOTS).then(|| median(v).unwrap_or(0) as f64 / 1000.0);
    (ms(&boots), ms(&cpus))
}

/// `null_opts`: extra hypervisor options for the null-hypercall boot (ours: the native baseline).
fn measure(hypervisor: &std::path::Path, null_opts: &str) -> Figures {
    let (boot_ms, boot_cpu_ms) = boot_times(hypervisor);
    let run = boot(hypervisor, null_opts, "bench=null-hypercall exit=reboot");
    let (native_line, native_cycles) = median_line(run.as_ref(), "native-syscall: median_cycles=");
    let (line, null_cycles) = median_line(run.as_ref(), "bench null_hypercall");
    let pt = boot(hypervisor, "", "bench=pt-update exit=reboot");
    let pt_update = pt
        .map(|r| {
            r.log
                .iter()
                .filter(|l| l.contains("bench pt_update"))
                .map(|l| fields(l))
                .collect()
        })
        .unwrap_or_default();
    Figures {
        boot_ms,
        boot_cpu_ms,
        null_cycles,
        null_line: line,
        native_cycles,
        native_line,
        pt_update,
    }
}

/// The icount mode's QEMU arguments (as the lab's): TCG counts one TSC cycle per guest
/// instruction (`-icount shift=0,sleep=off`), so the figures are exact and the same on every
/// machine; `-x2apic` because QEMU's icount aborts when Xen 4.17 reads the x2APIC timer by MSR.
fn icount_args() -> Vec<String> {
    ["-cpu", "max,-x2apic", "-icount", "shift=0,sleep=off"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The icount mode's figures for one hypervisor: the null hypercall's median and the
/// `bench pt_update` lines, in guest instructions.
struct IcountFigures {
    null: Option<u64>,
    pt_update: Vec<std::collections::BTreeMap<String, String>>,
}

fn measure_icount(hypervisor: &std::path::Path) -> IcountFigures {
    let run = boot_with(
        hypervisor,
        "",
        "bench=null-hypercall exit=reboot",
        icount_args(),
    );
    let (_, null) = median_line(run.as_ref(), "bench null_hypercall");
    let pt_update = boot_with(hypervisor, "", "bench=pt-update exit=reboot", icount_args())
        .map(|r| {
            r.log
                .iter()
                .filter(|l| l.contains("bench pt_update"))
                .map(|l| fields(l))
                .collect()
        })
        .unwrap_or_default();
    IcountFigures { null, pt_update }
}

/// The icount mode: exact guest-instruction counts for ours and Xen 4.17 (TCG only).
fn print_icount() {
    println!();
    println!("icount mode (TCG, -icount shift=0,sleep=off: one TSC cycle = one guest instruction; exact, the same on every machine):");
    println!();
    let ours = measure_icount(&build_dir().join("xen"));
    let xen = measure_icount(&xen_reference_image());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    println!("| figure (guest instructions) | ours | Xen 4.17 | ours / Xen |");
    println!("|---|---|---|---|");
    println!(
        "| null hypercall (xen_version) round trip, median of 10^5 | {} | {} | {} |",
        show(ours.null),
        show(xen.null),
        ratio(ours.null.map(|v| v as f64), xen.null.map(|v| v as f64))
    );
    for o in &ours.pt_update {
        let key = (o.get("variant"), o.get("batch"));
        let x = xen
            .pt_update
            .iter()
            .find(|x| (x.get("variant"), x.get("batch")) == key);
        let oc: Option<f64> = o.get("cycles_per_pte").and_then(|v| v.parse().ok());
        let xc: Option<f64> = x
            .and_then(|x| x.get("cycles_per_pte"))
            .and_then(|v| v.parse().ok());
        println!(
            "| {} batch {} ({} pages), per PTE | {} | {} | {} |",
            o.get("variant").map_or("?", |v| v.as_str()),
            o.get("batch").map_or("?", |v| v.as_str()),
            o.get("pages").map_or("?", |v| v.as_str()),
            show(oc),
            show(xc),
            ratio(oc, xc)
        );
    }
    println!("(`make profile` breaks our null hypercall down per function; docs/performance.md)");
    print_icount_round_trip((ours.null, xen.null));
}

/// The two-domain table both modes print, ours beside Xen 4.17 (the same guest pair: on Xen our
/// dom0 builds the domU itself, `build-domu`): the event-channel round trip (median, and in null
/// hypercalls of the same hypervisor in the same mode), dom0's side of a round trip from our
/// hypervisor's counters (Xen has none to read), and the 4 KiB grant copy. `decimals`: places of
/// the round trip in null hypercalls.
fn print_two_domains(
    ours: Option<&(String, String)>,
    xen: Option<&(String, String)>,
    null: (Option<f64>, Option<f64>),
    unit: &str,
    decimals: usize,
) {
    let split = |d: Option<&(String, String)>| d.map(|(r, c)| (fields(r), fields(c)));
    let (o, x) = (split(ours), split(xen));
    let num = |d: &Option<(Fields, Fields)>, rtt: bool, k: &str| -> Option<f64> {
        let (r, c) = d.as_ref()?;
        (if rtt { r } else { c }).get(k)?.parse().ok()
    };
    let text =
        |v: Option<f64>, places: usize| v.map_or("FAILED".into(), |v| format!("{v:.places$}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    println!("| figure | ours | Xen 4.17 | ours / Xen |");
    println!("|---|---|---|---|");
    let row = |what: &str, a: Option<f64>, b: Option<f64>, places: usize| {
        println!(
            "| {what} | {} | {} | {} |",
            text(a, places),
            text(b, places),
            ratio(a, b)
        );
    };
    let (ro, rx) = (
        num(&o, true, "median_cycles"),
        num(&x, true, "median_cycles"),
    );
    row(
        &format!("event-channel round trip dom0 -> domU -> dom0, median of 1000 ({unit})"),
        ro,
        rx,
        0,
    );
    let in_nulls = |r: Option<f64>, n: Option<f64>| match (r, n) {
        (Some(r), Some(n)) if n > 0.0 => Some(r / n),
        _ => None,
    };
    row(
        "the round trip in null hypercalls of the same hypervisor (issue 17's goal: <= 20)",
        in_nulls(ro, null.0),
        in_nulls(rx, null.1),
        decimals,
    );
    for (key, what) in [
        (
            "dom0_hypercalls_per_rtt",
            "dom0's hypercalls per round trip",
        ),
        ("dom0_fast_exits_per_rtt", "of which took the fast way back"),
        (
            "dom0_dispatches_per_rtt",
            "context switches to dom0 per round trip",
        ),
        (
            "dom0_upcalls_per_rtt",
            "event upcalls to dom0 per round trip",
        ),
    ] {
        let v = o.as_ref().and_then(|(r, _)| r.get(key).cloned());
        println!(
            "| {what} | {} | n/a | - |",
            v.unwrap_or_else(|| "n/a".into())
        );
    }
    row(
        &format!("grant copy of 4 KiB from the domU's page, median of 1000 ({unit} per copy)"),
        num(&o, false, "median_cycles"),
        num(&x, false, "median_cycles"),
        0,
    );
    println!();
    for (who, d) in [("ours", ours), ("Xen 4.17", xen)] {
        match d {
            Some((r, c)) => println!("{who}: {r}\n{who}: {c}"),
            None => println!("{who}: the two-domain run failed"),
        }
    }
}

/// The two-domain figures under icount, ours beside Xen 4.17, in guest instructions.
fn print_icount_round_trip(null: (Option<u64>, Option<u64>)) {
    println!();
    println!("Two domains under icount (dom0 bench-copies=1000, domU pingpong=1000; guest instructions, exact):");
    println!();
    let ours = two_domains_with(false, icount_args());
    let xen = two_domains_with(true, icount_args());
    print_two_domains(
        ours.as_ref(),
        xen.as_ref(),
        (null.0.map(|n| n as f64), null.1.map(|n| n as f64)),
        "guest instructions",
        1,
    );
    println!("(scripts/trace-roundtrip.sh traces one round trip instruction by instruction; docs/performance.md)");
}

fn show<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "FAILED".to_string(), |v| v.to_string())
}

/// Our dom0 and one domU with command lines `dom0` and `domu`: on ours, the hypervisor builds
/// the domU from its boot module; on Xen 4.17 (`on_xen`), our dom0 builds it from its own boot
/// module (`build-domu`, the domU's command line after `--`).
fn pair_boot(
    on_xen: bool,
    dom0: &str,
    domu: &str,
    timeout: Duration,
    qemu_extra: Vec<String>,
) -> Boot {
    if on_xen {
        let mut b = Boot::xen_reference(
            &guest_kernel_image(),
            &format!("build-domu {dom0} -- {domu}"),
        );
        b.modules.push((guest_kernel_image(), String::new()));
        b.timeout = timeout;
        b.qemu_extra = qemu_extra;
        b
    } else {
        Boot {
            hypervisor: build_dir().join("xen"),
            cmdline: XEN_CMDLINE.into(),
            modules: vec![
                (guest_kernel_image(), dom0.into()),
                (guest_kernel_image(), domu.into()),
            ],
            timeout,
            qemu_extra,
        }
    }
}

/// dom0 + one domU: the `bench evtchn_rtt` and `bench grant_copy` lines dom0 prints, on ours
/// (`on_xen` false: our hypervisor builds the domU from its boot module) or on Xen 4.17 (our dom0
/// builds it, `build-domu`), with extra QEMU arguments (the icount mode's).
fn two_domains_with(on_xen: bool, qemu_extra: Vec<String>) -> Option<(String, String)> {
    const DOM0: &str = "bench-copies=1000";
    const DOMU: &str = "name=bench mem=16M pingpong=1000";
    let b = pair_boot(on_xen, DOM0, DOMU, Duration::from_secs(120), qemu_extra);
    let run = match b.run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            return None;
        }
    };
    let find = |p: &str| run.log.iter().find(|l| l.starts_with(p)).cloned();
    Some((find("bench evtchn_rtt")?, find("bench grant_copy")?))
}

/// The block section's counter lines: per domU pass (persistent grants, then none) dom0's
/// direct rounds paired with it (`bench blkdev pass=<n>`), the front end's `bench blk` and the
/// back end's `bench blkback dom=1`.
type Fields = std::collections::BTreeMap<String, String>;
struct Block {
    /// dom0 direct, paired with the first pass (the table's dom0 column).
    dev: Fields,
    /// (front end, back end, dom0 direct paired with it) of each pass.
    passes: Vec<(Fields, Fields, Fields)>,
}

/// dom0 on its disk directly, then a domU through the split driver, twice (with persistent
/// grants, then without): the `bench blkdev`, `bench blk` and `bench blkback` lines; on our
/// hypervisor, or (`on_xen`) on Xen 4.17 with our dom0 building the domU (`build-domu`).
fn block(on_xen: bool) -> Option<Block> {
    // The disk image in memory (tmpfs) when there is one: both passes, dom0's direct one and
    // the domU's, then read the same page cache, and the host's own storage (a shared virtual
    // disk, whose stalls made whole runs crawl at ~10 IOPS) is out of the comparison.
    // BENCH_DISK_DIR names another directory.
    let dir = std::env::var_os("BENCH_DISK_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::PathBuf::from("/dev/shm")).filter(|d| d.is_dir()))
        .unwrap_or_else(build_dir);
    let disk = dir.join(format!("bench-disk-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 32 << 20]).ok()?;
    const DOM0: &str = "bench-blkdev=16384";
    const DOMU: &str = "name=bench mem=16M blk-bench=0";
    let drive = vec![
        "-drive".into(),
        format!("file={},format=raw,if=none,id=disk0", disk.display()),
        "-device".into(),
        "virtio-blk-pci,drive=disk0".into(),
    ];
    let b = pair_boot(on_xen, DOM0, DOMU, Duration::from_secs(300), drive);
    let run = b.run();
    let _ = std::fs::remove_file(&disk);
    let run = match run {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            return None;
        }
    };
    let all = |p: &str| -> Vec<Fields> {
        run.log
            .iter()
            .filter(|l| l.contains(p))
            .map(|l| fields(l))
            .collect()
    };
    let devs = all("bench blkdev pass=");
    let fronts = all("bench blk mode=");
    let backs = all("bench blkback dom=1 ");
    match devs.first() {
        Some(dev) if devs.len() == 2 && fronts.len() == 2 && backs.len() == 2 => Some(Block {
            dev: dev.clone(),
            passes: fronts
                .into_iter()
                .zip(backs)
                .zip(devs.iter().cloned())
                .map(|((f, b), d)| (f, b, d))
                .collect(),
        }),
        _ => {
            eprintln!("bench: block run incomplete:\n{}", run.log.join("\n"));
            None
        }
    }
}

/// Boots `make bench BENCH_ARGS=--blk` makes by default: the host's speed varies by a factor of
/// two from one stretch of time to the next (docs/performance.md, "The host's speed, and
/// rounds"), more than most changes move a figure.
const BLK_RUNS: usize = 5;

/// The figures of the block table that are compared run to run: each phase over all its
/// rounds (the first four, in the runs' table), then over its fastest round (the guests'
/// `*_best_*` fields; `guest_kernel::rates::ROUNDS`).
const BLK_FIGURES: [(&str, &str); 8] = [
    ("sequential write", "seq_write_mb_s"),
    ("sequential read", "seq_read_mb_s"),
    ("random 4 KiB, one at a time", "rand4k_read_iops"),
    ("random 4 KiB, 16 in flight", "rand4k_qd16_read_iops"),
    ("sequential write", "seq_write_best_mb_s"),
    ("sequential read", "seq_read_best_mb_s"),
    ("random 4 KiB, one at a time", "rand4k_best_read_iops"),
    ("random 4 KiB, 16 in flight", "rand4k_qd16_best_read_iops"),
];

/// One run's same-run ratios (domU with persistent grants over dom0 direct, whole percent), in
/// [`BLK_FIGURES`]' order; `None` where a figure is missing.
fn block_ratios(b: &Block) -> [Option<u64>; 8] {
    let num = |m: &Fields, k: &str| m.get(k).and_then(|v| v.parse::<f64>().ok());
    BLK_FIGURES.map(|(_, k)| match (num(&b.passes[0].0, k), num(&b.dev, k)) {
        (Some(x), Some(y)) if y > 0.0 => Some((100.0 * x / y).round() as u64),
        _ => None,
    })
}

/// One pair of runs, ours and Xen 4.17's: for each of the first four [`BLK_FIGURES`], the domU's
/// figure (persistent grants) on ours over the same on Xen, and dom0 direct's the same way
/// (whole percent).
fn block_against_xen(ours: &Block, xen: &Block) -> [(Option<u64>, Option<u64>); 4] {
    let num = |m: &Fields, k: &str| m.get(k).and_then(|v| v.parse::<f64>().ok());
    let pct = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((100.0 * a / b).round() as u64),
        _ => None,
    };
    let mut out = [(None, None); 4];
    for (i, (_, k)) in BLK_FIGURES[..4].iter().enumerate() {
        out[i] = (
            pct(num(&ours.passes[0].0, k), num(&xen.passes[0].0, k)),
            pct(num(&ours.dev, k), num(&xen.dev, k)),
        );
    }
    out
}

/// The cross-hypervisor table: per phase, the median over the pairs of runs of the domU's
/// figure on ours over Xen 4.17's, and of dom0 direct's.
fn print_block_vs_xen(pairs: &[[(Option<u64>, Option<u64>); 4]], runs: usize) {
    println!();
    println!(
        "block, ours / Xen 4.17 ({} of {runs} pairs of runs, ours then Xen; above 100 % ours is faster; the medians):",
        pairs.len()
    );
    println!();
    println!("| figure | domU through blkfront/blkback, ours / Xen | dom0 direct on its disk, ours / Xen |");
    println!("|---|---|---|");
    let pct = |r: Option<u64>| r.map_or("n/a".into(), |r| format!("{r} %"));
    for (i, (name, _)) in BLK_FIGURES[..4].iter().enumerate() {
        let domu: Vec<u64> = pairs.iter().filter_map(|p| p[i].0).collect();
        let dev: Vec<u64> = pairs.iter().filter_map(|p| p[i].1).collect();
        println!(
            "| {name} | {} | {} |",
            pct(median(&domu)),
            pct(median(&dev))
        );
    }
}

/// Each run's ratios (domU with persistent grants / dom0 direct, each phase over all its
/// rounds, dom0's paired with the domU's) and their medians (the lower middle one for an even
/// count). The fastest-round figures are in the last run's table only: the two sides' fastest
/// rounds are not paired in time, and their ratio moves more from run to run.
fn print_block_runs(all: &[[Option<u64>; 8]], runs: usize) {
    println!(
        "block: {} of {runs} runs complete; same-run ratios, domU (persistent grants) / dom0 direct, each phase over its 32 rounds, dom0's and the domU's taking turns:",
        all.len()
    );
    println!();
    let pct = |r: Option<u64>| r.map_or("n/a".into(), |r| format!("{r} %"));
    println!(
        "| run | {} |",
        BLK_FIGURES[..4]
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|---|---|---|");
    for (i, r) in all.iter().enumerate() {
        println!(
            "| {} | {} |",
            i + 1,
            r[..4]
                .iter()
                .map(|&r| pct(r))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    let medians: Vec<String> = (0..4)
        .map(|f| {
            let v: Vec<u64> = all.iter().filter_map(|r| r[f]).collect();
            pct(median(&v))
        })
        .collect();
    println!("| **median** | {} |", medians.join(" | "));
    println!();
    println!("The last run's tables:");
    println!();
}

/// The block section's tables (dom0 direct next to the domU's two passes, with same-run ratios,
/// then the split driver's counters per pass).
fn print_block(blk: &Option<Block>) {
    let Some(Block { dev, passes }) = blk else {
        println!("(no block figures: the run failed)");
        return;
    };
    let get = |m: &Fields, k: &str| m.get(k).cloned().unwrap_or_else(|| "n/a".into());
    let ratio = |a: &Fields, b: &Fields, k: &str| match (
        a.get(k).and_then(|v| v.parse::<f64>().ok()),
        b.get(k).and_then(|v| v.parse::<f64>().ok()),
    ) {
        (Some(x), Some(y)) if y > 0.0 => format!("{:.0} %", 100.0 * x / y),
        _ => "n/a".into(),
    };
    println!(
        "| figure | dom0 direct (virtio-blk) | domU, persistent grants | ratio | domU, no persistent grants | ratio (to dom0's rounds paired with it) |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, key) in [
        ("sequential write, 16 MiB (MB/s)", "seq_write_mb_s"),
        ("sequential read, 16 MiB (MB/s)", "seq_read_mb_s"),
        (
            "random 4 KiB reads, one at a time (IOPS)",
            "rand4k_read_iops",
        ),
        (
            "random 4 KiB reads, 16 in flight (IOPS)",
            "rand4k_qd16_read_iops",
        ),
        (
            "sequential write, fastest 512 KiB round (MB/s)",
            "seq_write_best_mb_s",
        ),
        (
            "sequential read, fastest 512 KiB round (MB/s)",
            "seq_read_best_mb_s",
        ),
        (
            "random 4 KiB reads, one at a time, fastest round of 32 (IOPS)",
            "rand4k_best_read_iops",
        ),
        (
            "random 4 KiB reads, 16 in flight, fastest round of 128 (IOPS)",
            "rand4k_qd16_best_read_iops",
        ),
    ] {
        let (p, n) = (&passes[0].0, &passes[1].0);
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            get(dev, key),
            get(p, key),
            ratio(p, dev, key),
            get(n, key),
            ratio(n, &passes[1].2, key)
        );
    }
    // Where a batch of 16 random reads spends its wall-clock time: dom0's direct pass as a
    // whole; the domU's split at its first and last wait (`Blkfront::read_scattered`).
    let us = |f: &Fields, k: &str| {
        f.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .map_or_else(|| String::from("-"), |ns| format!("{:.1}", ns / 1000.0))
    };
    let split = |f: &Fields| {
        format!(
            "{} / {} / {}",
            us(f, "qd16_send_ns"),
            us(f, "qd16_wait_ns"),
            us(f, "qd16_complete_ns")
        )
    };
    println!(
        "| 16 in flight: one batch of 16 reads (us) | {} | {} | | {} | |",
        us(dev, "qd16_batch_ns"),
        us(&passes[0].0, "qd16_batch_ns"),
        us(&passes[1].0, "qd16_batch_ns")
    );
    println!(
        "| the domU's batch: build and send / wait (dom0's back end, the device, the switches) / take the responses (us) | | {} | | {} | |",
        split(&passes[0].0),
        split(&passes[1].0)
    );
    println!(
        "| dom0 direct: virtio interrupts / poll timeouts | {} / {} | | | | |",
        get(dev, "interrupts"),
        get(dev, "poll_timeouts")
    );
    println!();
    println!(
        "| split-driver counter (each blk-bench pass) | persistent grants | no persistent grants |"
    );
    println!("|---|---|---|");
    let row = |name: &str, f: &dyn Fn(&Fields, &Fields) -> String| {
        println!(
            "| {name} | {} | {} |",
            f(&passes[0].0, &passes[0].1),
            f(&passes[1].0, &passes[1].1)
        );
    };
    row("persistent grants used (front end / back end)", &|f, b| {
        format!("{} / {}", get(f, "persistent"), get(b, "persistent"))
    });
    row("requests", &|f, _| get(f, "requests"));
    row("front end: notifications sent per request", &|f, _| {
        get(f, "notifications_per_request")
    });
    row("front end: waits for an event per request", &|f, _| {
        get(f, "waits_per_request")
    });
    row("back end: events received per request", &|_, b| {
        get(b, "events_per_request")
    });
    row("back end: notifications sent per request", &|_, b| {
        get(b, "notifications_per_request")
    });
    row(
        "front end: requests in flight when one is sent, mean / max",
        &|f, _| format!("{} / {}", get(f, "mean_in_flight"), get(f, "max_in_flight")),
    );
    row(
        "back end: requests per disk batch (in flight at the device), mean / max",
        &|_, b| {
            format!(
                "{} / {}",
                get(b, "requests_per_disk_batch"),
                get(b, "max_disk_batch")
            )
        },
    );
    row(
        "indirect requests (front end sent / back end read)",
        &|f, b| {
            format!(
                "{} / {}",
                get(f, "indirect_requests"),
                get(b, "indirect_requests")
            )
        },
    );
    row(
        "back end: reads and writes by DMA / copied through mappings / grant-copied",
        &|_, b| {
            format!(
                "{} / {} / {}",
                get(b, "dma_requests"),
                get(b, "mapped_copy_requests"),
                get(b, "grant_copy_requests")
            )
        },
    );
    row("back end: grant-copy hypercalls (per request)", &|_, b| {
        format!(
            "{} ({})",
            get(b, "grant_copy_hypercalls"),
            get(b, "grant_copy_hypercalls_per_request")
        )
    });
    row("back end: map + unmap hypercalls (per request)", &|_, b| {
        format!(
            "{} + {} ({})",
            get(b, "map_hypercalls"),
            get(b, "unmap_hypercalls"),
            get(b, "map_unmap_hypercalls_per_request")
        )
    });
    row(
        "back end: grants mapped persistently / for one batch / unmapped",
        &|_, b| {
            format!(
                "{} / {} / {}",
                get(b, "persistent_maps"),
                get(b, "grant_maps"),
                get(b, "grant_unmaps")
            )
        },
    );
}

/// `--boot`: QEMU start to dom0's first line, ours beside Xen 4.17, in three rounds of
/// [`BOOTS`] boots each, alternating, so a change in the machine's load shows in both columns.
fn print_boot() {
    println!("| round | ours: wall / QEMU CPU (ms) | Xen 4.17: wall / QEMU CPU (ms) | ours / Xen (CPU) |");
    println!("|---|---|---|---|");
    let f = |v: Option<f64>| show(v.map(|v| format!("{v:.0}")));
    for round in 1..=3 {
        let ours = boot_times(&build_dir().join("xen"));
        let xen = boot_times(&xen_reference_image());
        let ratio = match (ours.1, xen.1) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        println!(
            "| {round} | {} / {} | {} / {} | {ratio} |",
            f(ours.0),
            f(ours.1),
            f(xen.0),
            f(xen.1)
        );
    }
}

fn main() -> ExitCode {
    // `bench --net`: the network section alone (`make bench BENCH_ARGS=--net`).
    if std::env::args().any(|a| a == "--net") {
        return if print_network() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    // `bench --blk`: the block section alone (`make bench BENCH_ARGS=--blk`), [`BLK_RUNS`]
    // boots (BENCH_BLK_RUNS for another number): each run's same-run ratios, their medians, and
    // the last run's full tables.
    if std::env::args().any(|a| a == "--blk") {
        let runs = std::env::var("BENCH_BLK_RUNS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(BLK_RUNS);
        let (mut all, mut xen_all) = (Vec::new(), Vec::new());
        let (mut pairs, mut last, mut xen_last) = (Vec::new(), None, None);
        for _ in 0..runs {
            // Ours, then Xen 4.17 right after: each pair of runs draws the host's speed of about
            // the same minute.
            let blk = block(false);
            let xen_blk = block(true);
            if let Some(b) = &blk {
                all.push(block_ratios(b));
            }
            if let Some(x) = &xen_blk {
                xen_all.push(block_ratios(x));
            }
            if let (Some(b), Some(x)) = (&blk, &xen_blk) {
                pairs.push(block_against_xen(b, x));
            }
            (last, xen_last) = (blk, xen_blk);
        }
        if runs > 1 {
            print_block_runs(&all, runs);
        }
        print_block(&last);
        println!();
        println!("The same benchmark on Xen 4.17 (our dom0 and domU; dom0 builds the domU, `build-domu`):");
        println!();
        if runs > 1 {
            print_block_runs(&xen_all, runs);
        }
        print_block(&xen_last);
        print_block_vs_xen(&pairs, runs);
        return if all.len() == runs && xen_all.len() == runs {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    // `bench --blk-emulator`: what QEMU does per random 4 KiB read on each path (uprobes).
    if std::env::args().any(|a| a == "--blk-emulator") {
        return if emulator::print() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    // `bench --scale`: the scale section alone (`make bench BENCH_ARGS=--scale`).
    if std::env::args().any(|a| a == "--scale") {
        return if print_scale() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    // `bench --icount`: the icount section alone (`make bench BENCH_ARGS=--icount`).
    if std::env::args().any(|a| a == "--icount") {
        print_icount();
        return ExitCode::SUCCESS;
    }
    // `bench --boot`: the boot figures alone, ours beside Xen 4.17, [`BOOTS`] boots each,
    // alternating (`make bench BENCH_ARGS=--boot`).
    if std::env::args().any(|a| a == "--boot") {
        print_boot();
        return ExitCode::SUCCESS;
    }
    let domains = two_domains_with(false, Vec::new());
    let xen_domains = two_domains_with(true, Vec::new());
    let blk = block(false);
    let xen_blk = block(true);
    let accel = xtests::accel();
    println!(
        "bench: accel {} ({})",
        accel.name(),
        accel.qemu_args().join(" ")
    );
    let ours = measure(&build_dir().join("xen"), "selftest=native-syscall");
    let xen = measure(&xen_reference_image(), "");
    println!();
    println!("| figure | ours | Xen 4.17 | ours / Xen |");
    println!("|---|---|---|---|");
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    println!(
        "| QEMU start -> dom0 first line, median of {BOOTS} (ms) | {} | {} | {} |",
        show(ours.boot_ms.map(|v| format!("{v:.0}"))),
        show(xen.boot_ms.map(|v| format!("{v:.0}"))),
        ratio(ours.boot_ms, xen.boot_ms)
    );
    println!(
        "| QEMU's CPU time at dom0's first line, median of {BOOTS} (ms; the load barely moves it) | {} | {} | {} |",
        show(ours.boot_cpu_ms.map(|v| format!("{v:.0}"))),
        show(xen.boot_cpu_ms.map(|v| format!("{v:.0}"))),
        ratio(ours.boot_cpu_ms, xen.boot_cpu_ms)
    );
    println!(
        "| null hypercall (xen_version) round trip, median of 10^5 (guest TSC cycles) | {} | {} | {} |",
        show(ours.null_cycles),
        show(xen.null_cycles),
        ratio(ours.null_cycles.map(|v| v as f64), xen.null_cycles.map(|v| v as f64))
    );
    println!(
        "| native syscall/sysretq round trip from ring 3, empty handler, median of {} (hypervisor TSC cycles) | {} | n/a | - |",
        1000,
        show(ours.native_cycles)
    );
    println!(
        "| null hypercall / native round trip | {} | n/a | - |",
        ratio(
            ours.null_cycles.map(|v| v as f64),
            ours.native_cycles.map(|v| v as f64)
        )
    );
    println!();
    println!("ours:     {}", ours.null_line);
    println!(
        "ours:     {}",
        ours.native_line.trim_start_matches("(XEN) ")
    );
    println!("xen-4.17: {}", xen.null_line);
    match accel {
        xtests::Accel::Tcg => println!(
            "(TCG without -icount: TSC cycles are host cycles of the emulator; hypercalls counted: 10^5 per run)"
        ),
        xtests::Accel::Kvm => println!(
            "(KVM: TSC cycles are real cycles of the CPU running the guest; hypercalls counted: 10^5 per run)"
        ),
    }
    if accel == xtests::Accel::Tcg {
        print_icount();
    } else {
        println!("(icount mode: TCG only; it runs in the TCG pass)");
    }
    println!();
    println!("Page-table updates (bench=pt-update): guest TSC cycles per PTE, median of the guest's repetitions;");
    println!("counts per run from the guest (hypercalls) and from the hypervisor's counters (sysctl perfc:");
    println!(
        "validations, TLB flushes; Debian's Xen is built without perf counters, so n/a there)."
    );
    println!();
    println!("| variant | batch | pages | ours cycles/PTE | Xen cycles/PTE | ours / Xen | hypercalls | ours validations | ours TLB flushes |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let get = |m: &std::collections::BTreeMap<String, String>, k: &str| {
        m.get(k).cloned().unwrap_or_else(|| "n/a".into())
    };
    for o in &ours.pt_update {
        let key = (o.get("variant"), o.get("batch"));
        let x = xen
            .pt_update
            .iter()
            .find(|x| (x.get("variant"), x.get("batch")) == key);
        let oc: Option<f64> = o.get("cycles_per_pte").and_then(|v| v.parse().ok());
        let xc: Option<f64> = x
            .and_then(|x| x.get("cycles_per_pte"))
            .and_then(|v| v.parse().ok());
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            get(o, "variant"),
            get(o, "batch"),
            get(o, "pages"),
            get(o, "cycles_per_pte"),
            x.map_or("n/a".into(), |x| get(x, "cycles_per_pte")),
            ratio(oc, xc),
            get(o, "hypercalls"),
            get(o, "validations"),
            get(o, "flushes"),
        );
    }
    if ours.pt_update.is_empty() {
        println!("(no pt_update lines from our hypervisor)");
    }
    println!();
    println!(
        "Two domains, ours beside Xen 4.17 (dom0 <-> domU; guest TSC cycles under {}):",
        accel.name()
    );
    println!();
    print_two_domains(
        domains.as_ref(),
        xen_domains.as_ref(),
        (
            ours.null_cycles.map(|n| n as f64),
            xen.null_cycles.map(|n| n as f64),
        ),
        "cycles",
        0,
    );
    println!();
    println!(
        "Block I/O on ours, one run, one 32 MiB virtio disk (MB/s = 10^6 bytes/s; {}):",
        accel.name()
    );
    println!();
    print_block(&blk);
    println!();
    println!(
        "The same block benchmark on Xen 4.17, one run (our dom0 builds the domU, `build-domu`):"
    );
    println!();
    print_block(&xen_blk);
    if let (Some(b), Some(x)) = (&blk, &xen_blk) {
        print_block_vs_xen(&[block_against_xen(b, x)], 1);
    }
    let net = print_network();
    let scale = print_scale();
    if net
        && scale
        && domains.is_some()
        && blk.is_some()
        && ours.boot_ms.is_some()
        && xen.boot_ms.is_some()
        && ours.null_cycles.is_some()
        && ours.native_cycles.is_some()
        && xen.null_cycles.is_some()
    {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Network figures (ours only), one boot: dom0 with its virtio-net NIC and one domU behind
/// netback; the host's streams (64 MiB, checked: echo both ways at once, into the sink, out of
/// the source) and 1-byte round trips to dom0 directly and to the domU through the bridge and
/// netback; the hypervisor's scheduler and perf counters after each phase (debug keys `r`
/// and `p`); then both pages' counters.
struct NetFigures {
    /// Per phase (dom0 direct, domU): echo, host -> guest, guest -> host MB/s.
    echo: [f64; 2],
    to_guest: [f64; 2],
    from_guest: [f64; 2],
    rtt_us: [(f64, usize); 2],
    /// The hypervisor's counters before, after the dom0 phase, after the domU phase.
    hv: [HvCounters; 3],
    /// Each phase's wall time (s), counter reading to counter reading.
    wall_s: [f64; 2],
    /// dom0's page line for the vif (`vif1.0: ...`).
    vif_line: String,
    /// The domU's page (its counters).
    domu_page: String,
}

/// What debug keys `r` and `p` print, at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct HvCounters {
    idle_ns: f64,
    /// dom0's and domU1's run time, dispatches and hypercalls.
    run_ns: [f64; 2],
    dispatches: [f64; 2],
    hypercalls: [f64; 2],
}

/// The number after `key` (`key` ends with `=` or a space) in `line`.
fn number_after(line: &str, key: &str) -> Option<f64> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Asks the hypervisor for its scheduler and perf counters (serial input already switched
/// to it) and reads them from the log.
fn hv_counters(run: &mut xtests::Running) -> Option<HvCounters> {
    let seen = run
        .log()
        .iter()
        .filter(|l| l.contains("device interrupts:"))
        .count();
    run.send_input(b"rp").ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while run
        .log()
        .iter()
        .filter(|l| l.contains("device interrupts:"))
        .count()
        == seen
    {
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = run.log();
    let sched = log
        .iter()
        .rposition(|l| l.contains("scheduler: weighted"))?;
    let mut c = HvCounters {
        idle_ns: number_after(&log[sched], "idle ")?,
        ..HvCounters::default()
    };
    for (i, d) in ["d0", "d1"].iter().enumerate() {
        let l = log[sched..]
            .iter()
            .find(|l| l.contains(&format!("  {d}: weight")))?;
        c.run_ns[i] = number_after(l, "run ")?;
        c.dispatches[i] = number_after(l, "dispatched ")?;
        let p = log
            .iter()
            .rev()
            .find(|l| l.contains(&format!("{d} perf counters:")))?;
        c.hypercalls[i] = number_after(p, "hypercalls=")?;
    }
    Some(c)
}

fn network() -> Option<NetFigures> {
    use xtests::net::{echo_rtt_us, echo_stream, http_get, sink_stream, source_stream};
    let ports: Vec<u16> = (0..8).map(|_| xtests::free_port()).collect();
    let (dom0_echo, domu_echo, dom0_http, domu_http) = (ports[0], ports[1], ports[2], ports[3]);
    let sink = [ports[4], ports[5]];
    let source = [ports[6], ports[7]];
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules: vec![
            (guest_kernel_image(), String::new()),
            (guest_kernel_image(), "name=bench".into()),
        ],
        timeout: Duration::from_secs(600),
        qemu_extra: xtests::virtio_net_args(&[
            (dom0_echo, "10.0.2.15", 7),
            (domu_echo, "10.0.2.21", 7),
            (dom0_http, "10.0.2.15", 80),
            (domu_http, "10.0.2.21", 80),
            (sink[0], "10.0.2.15", 9),
            (sink[1], "10.0.2.21", 9),
            (source[0], "10.0.2.15", 19),
            (source[1], "10.0.2.21", 19),
        ]),
    };
    let mut run = match boot.spawn() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            return None;
        }
    };
    for needle in ["net: dom0 is", "(d1) domU: net: 10.0.2.21/24"] {
        if run.wait_for(needle, Duration::from_secs(180)).is_none() {
            eprintln!(
                "bench: network run: no {needle:?}:\n{}",
                run.log().join("\n")
            );
            return None;
        }
    }
    // Serial input to the hypervisor's debug keys from now on.
    let _ = run.send_input(b"\x01\x01\x01");
    std::thread::sleep(Duration::from_millis(500));
    let mut hv = [HvCounters::default(); 3];
    hv[0] = hv_counters(&mut run).unwrap_or_default();
    const BYTES: usize = 64 << 20;
    let (mut echo, mut to_guest, mut from_guest) = ([0.0; 2], [0.0; 2], [0.0; 2]);
    let mut rtt_us = [(0.0, 0); 2];
    let mut wall_s = [0.0; 2];
    for (i, port) in [dom0_echo, domu_echo].into_iter().enumerate() {
        let t = std::time::Instant::now();
        echo[i] = echo_stream(port, 0x5eed_0001 + i as u64, BYTES);
        to_guest[i] = sink_stream(sink[i], BYTES);
        from_guest[i] = source_stream(source[i], BYTES);
        rtt_us[i] = echo_rtt_us(port, 1000);
        hv[i + 1] = hv_counters(&mut run).unwrap_or_default();
        wall_s[i] = t.elapsed().as_secs_f64();
    }
    let (_, page) = http_get(dom0_http);
    let vif_line = page
        .lines()
        .find(|l| l.starts_with("vif1.0:"))
        .unwrap_or("(no vif line)")
        .to_string();
    let (_, domu_page) = http_get(domu_http);
    run.stop();
    Some(NetFigures {
        echo,
        to_guest,
        from_guest,
        rtt_us,
        hv,
        wall_s,
        vif_line,
        domu_page,
    })
}

/// Prints the network section of `make bench`; whether the run gave figures.
fn print_network() -> bool {
    println!();
    println!(
        "Network (ours): the host's TCP streams through QEMU's user-mode network and dom0's \
         virtio-net NIC, 64 MiB each, every byte checked (echo: both ways at once; sink: host -> \
         guest; source: guest -> host); dom0 direct (its own smoltcp stack on the bridge) next \
         to a domU (bridge, netback, netfront, the domU's smoltcp); 1-byte round trips over \
         TCP, median of up to 1000 (20 s at most):"
    );
    println!();
    let Some(n) = network() else {
        println!("(no network figures: the run failed)");
        return false;
    };
    println!("| figure | dom0 direct | domU via netback/netfront | domU / dom0 |");
    println!("|---|---|---|---|");
    for (name, v) in [
        ("echo 64 MiB (MB/s, each way at once)", n.echo),
        ("host -> guest 64 MiB (MB/s)", n.to_guest),
        ("guest -> host 64 MiB (MB/s)", n.from_guest),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.0} % |",
            v[0],
            v[1],
            100.0 * v[1] / v[0]
        );
    }
    let r = n.rtt_us;
    println!(
        "| round trip 1 byte over TCP (us, median of {} / {}) | {:.0} | {:.0} | {:.2} |",
        r[0].1,
        r[1].1,
        r[0].0,
        r[1].0,
        r[1].0 / r[0].0
    );
    println!();
    let f = |line: &str, key: &str| -> Option<f64> {
        // "<n> <key>" pairs: the number before the key word.
        let words: Vec<&str> = line.split([' ', ',']).collect();
        words
            .windows(2)
            .find(|w| w[1] == key)
            .and_then(|w| w[0].parse().ok())
    };
    let v = &n.vif_line;
    let pkts_from = f(v, "packets").unwrap_or(0.0);
    let to = v.split("to it ").nth(1).unwrap_or("");
    let pkts_to = f(to, "packets").unwrap_or(0.0);
    let packets = pkts_from + pkts_to;
    println!("dom0 (netback, whole run): {v}");
    if packets > 0.0 {
        for (key, name) in [
            ("events", "events received"),
            ("notifications", "notifications sent"),
            ("grant", "grant-copy calls"),
        ] {
            if let Some(x) = f(v, key) {
                println!("  netback {name} per packet: {:.3}", x / packets);
            }
        }
    }
    println!("domU (netfront, whole run):");
    let mut front_notif = None;
    for l in n.domu_page.lines().filter(|l| {
        l.contains("tx:")
            || l.contains("rx:")
            || l.contains("events:")
            || l.contains("frames:")
            || l.starts_with("loop:")
    }) {
        if l.contains("events:") {
            front_notif = f(l, "notifications");
        }
        println!("  {}", l.trim());
    }
    if let (Some(x), true) = (front_notif, packets > 0.0) {
        println!(
            "  netfront notifications sent per packet: {:.3}",
            x / packets
        );
    }
    // Where the time goes: the hypervisor's accounting per phase.
    let [h0, h1, h2] = n.hv;
    if h2.run_ns[0] > 0.0 {
        println!();
        println!(
            "Where the time goes (the hypervisor's scheduler and perf counters, per phase: each \
             phase moves 3 x 64 MiB and the round trips):"
        );
        println!("| phase | wall (s) | busy (s) | domU CPU (s) | idle (s) | dom0 dispatches | domU dispatches | dom0 hypercalls | domU hypercalls |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for (i, (name, a, b)) in [("dom0 direct", h0, h1), ("domU", h1, h2)]
            .into_iter()
            .enumerate()
        {
            // Busy: wall time less the hypervisor's idle time (a vCPU's run time is only
            // added up when it is switched out, so dom0 alone on the CPU shows little).
            let idle = (b.idle_ns - a.idle_ns) / 1e9;
            println!(
                "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} |",
                n.wall_s[i],
                n.wall_s[i] - idle,
                (b.run_ns[1] - a.run_ns[1]) / 1e9,
                idle,
                b.dispatches[0] - a.dispatches[0],
                b.dispatches[1] - a.dispatches[1],
                b.hypercalls[0] - a.hypercalls[0],
                b.hypercalls[1] - a.hypercalls[1],
            );
        }
        // Packets of the domU phase: the vif's (nothing else crosses it).
        if packets > 0.0 {
            println!(
                "domU phase, per packet through the vif ({packets:.0}): dom0 {:.2} hypercalls, \
                 domU {:.2} hypercalls, {:.3} switches to the domU, dom0 CPU {:.1} us, domU CPU \
                 {:.1} us; dom0 direct phase: {:.1} us of CPU per packet of the domU phase's count",
                (h2.hypercalls[0] - h1.hypercalls[0]) / packets,
                (h2.hypercalls[1] - h1.hypercalls[1]) / packets,
                (h2.dispatches[1] - h1.dispatches[1]) / packets,
                (h2.run_ns[0] - h1.run_ns[0]) / packets / 1e3,
                (h2.run_ns[1] - h1.run_ns[1]) / packets / 1e3,
                (n.wall_s[0] - (h1.idle_ns - h0.idle_ns) / 1e9) / packets * 1e6,
            );
        }
    }
    if n.echo[1] < 0.8 * n.echo[0] {
        println!(
            "domU throughput is below 80 % of dom0's: the domU phase's CPU time is dom0's (NIC, \
             bridge, netback) plus the domU's own stack, on one CPU shared round-robin (see the \
             table above); grant copies are batched (calls per packet above), so what remains \
             is the second stack's work, the domain switches and dom0's forwarding."
        );
    }
    true
}

/// domUs the scale section boots (the figure: 64 of 4 MiB next to dom0 in 512 MiB).
const SCALE_DOMUS: usize = 64;
/// Memory of each, MiB.
const SCALE_MEM_MIB: u64 = 4;

/// Scale (ours only): dom0 + [`SCALE_DOMUS`] domUs of [`SCALE_MEM_MIB`] MiB from one boot module
/// (`copies=`), each doing its event-channel ping-pong and grant copy with dom0 (and reading its
/// vbd), then destroyed by dom0. Times come from when the serial lines arrived (wall clock) and
/// QEMU's CPU time then: the hypervisor building them (`*** Built dN`), each domU from its build
/// to dom0's `dN ping-pong 20 ok, grant copy 4096 bytes ok` (median and slowest), all of them
/// from the first build to the last one done (total and per domU), and QEMU start to dom0
/// powering off with every domU destroyed. Memory: the hypervisor's static slot per domain (it
/// prints the sizes) plus the frames a domU held beyond its own pages (`all N frames returned`),
/// and dom0's heap. Returns whether every domU did its work.
fn print_scale() -> bool {
    let b = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules: vec![
            (guest_kernel_image(), String::new()),
            (
                guest_kernel_image(),
                format!("name=vm mem={SCALE_MEM_MIB}M copies={SCALE_DOMUS} pingpong=20"),
            ),
        ],
        timeout: Duration::from_secs(600),
        qemu_extra: Vec::new(),
    };
    println!();
    println!(
        "Scale on ours: dom0 + {SCALE_DOMUS} domUs of {SCALE_MEM_MIB} MiB in 512 MiB, each ping-pong (20 round trips) and grant copy with dom0 ({}):",
        xtests::accel().name()
    );
    println!();
    let run = match b.run() {
        Ok(r) => r,
        Err(e) => {
            println!("(scale: {e})");
            return false;
        }
    };
    let at = |p: &str| run.log.iter().position(|l| l.contains(p));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let built: Vec<Option<usize>> = (1..=SCALE_DOMUS)
        .map(|id| at(&format!("*** Built d{id} (vm{id})")))
        .collect();
    let done: Vec<Option<usize>> = (1..=SCALE_DOMUS)
        .map(|id| {
            at(&format!(
                "dom0: d{id} ping-pong 20 ok, grant copy 4096 bytes ok"
            ))
        })
        .collect();
    let verified = (1..=SCALE_DOMUS)
        .filter(|id| {
            at(&format!(
                "(d{id}) domU: ping-pong 20 round trips ok, grant copy verified"
            ))
            .is_some()
        })
        .count();
    let ok = done.iter().filter(|d| d.is_some()).count();
    println!("| figure | wall clock | QEMU CPU time |");
    println!("|---|---|---|");
    println!(
        "| domUs that booted, ping-ponged and grant-copied with dom0 (dom0's count / the domUs' own) | {ok} / {verified} of {SCALE_DOMUS} | |"
    );
    // One figure from line `a` to line `b`, in wall and CPU milliseconds.
    let span = |a: usize, b: usize| {
        let wall = ms(run.arrived[b].saturating_sub(run.arrived[a]));
        let cpu = (!run.cpu[a].is_zero() && !run.cpu[b].is_zero())
            .then(|| ms(run.cpu[b].saturating_sub(run.cpu[a])));
        (wall, cpu)
    };
    let cell = |v: Option<f64>, div: f64| v.map_or("n/a".into(), |v| format!("{:.1} ms", v / div));
    let n = SCALE_DOMUS as f64;
    if let (Some(start), Some(Some(last_built))) = (at("free memory before domUs"), built.last()) {
        let (w, c) = span(start, *last_built);
        println!(
            "| the hypervisor builds the {SCALE_DOMUS} domUs: total / per domU | {:.1} ms / {:.2} ms | {} / {} |",
            w,
            w / n,
            cell(c, 1.0),
            cell(c, n)
        );
    }
    // Each domU from its build to dom0's line that its ping-pong and grant copy are done.
    let mut lat_wall: Vec<u64> = Vec::new();
    let mut lat_cpu: Vec<u64> = Vec::new();
    for (b, d) in built.iter().zip(&done) {
        if let (Some(b), Some(d)) = (b, d) {
            let (w, c) = span(*b, *d);
            lat_wall.push((w * 1000.0) as u64);
            if let Some(c) = c {
                lat_cpu.push((c * 1000.0) as u64);
            }
        }
    }
    let us = |v: Option<u64>| v.map_or("n/a".into(), |v| format!("{:.1} ms", v as f64 / 1000.0));
    println!(
        "| each domU, built -> its ping-pong and grant copy done: median / slowest | {} / {} | {} / {} |",
        us(median(&lat_wall)),
        us(lat_wall.iter().max().copied()),
        us(median(&lat_cpu)),
        us(lat_cpu.iter().max().copied())
    );
    let last_done = done.iter().flatten().max().copied();
    if let (Some(Some(first)), Some(last)) = (built.first(), last_done) {
        let (w, c) = span(*first, last);
        println!(
            "| all of them, first built -> last done: total / per domU | {:.1} ms / {:.2} ms | {} / {} |",
            w,
            w / n,
            cell(c, 1.0),
            cell(c, n)
        );
    }
    if let Some(off) = at("services: no domU left, powering off") {
        let cpu = run.cpu[off];
        println!(
            "| QEMU start -> every domU destroyed, dom0 powering off | {:.1} ms | {} |",
            ms(run.arrived[off]),
            if cpu.is_zero() {
                "n/a".into()
            } else {
                format!("{:.1} ms", ms(cpu))
            }
        );
    }
    println!();
    // Memory: the static slot (printed by the hypervisor) and the frames beyond the domU's pages.
    let slot = run.log.iter().find_map(|l| {
        let rest = l.split("memory per domain slot: ").nth(1)?;
        Some((
            rest.split(' ').next()?.parse::<u64>().ok()?,
            rest.to_string(),
        ))
    });
    let pages = SCALE_MEM_MIB * 256;
    let returned: Vec<u64> = run
        .log
        .iter()
        .filter_map(|l| {
            let rest = l.split(": all ").nth(1)?;
            let n: u64 = rest.split(' ').next()?.parse().ok()?;
            rest.contains("frames returned to the free pool")
                .then_some(n)
        })
        .collect();
    let extra = median(&returned).map(|n| n.saturating_sub(pages));
    println!("| hypervisor memory per domain | bytes |");
    println!("|---|---|");
    match &slot {
        Some((bytes, _)) => {
            println!("| static slot (paid for every slot, used or not) | {bytes} |")
        }
        None => println!("| static slot | n/a |"),
    }
    match extra {
        Some(f) => println!(
            "| frames beyond the domU's own {pages} pages (shared_info, grant table, event-channel pages), median of {} domUs | {} ({f} frames) |",
            returned.len(),
            f * 4096
        ),
        None => println!("| frames beyond the domU's own pages | n/a |"),
    }
    if let (Some((bytes, _)), Some(f)) = (&slot, extra) {
        let total = bytes + f * 4096;
        println!(
            "| **total** (goal: 64 KiB) | **{total} ({:.1} KiB)** |",
            total as f64 / 1024.0
        );
    }
    println!();
    if let Some((_, detail)) = &slot {
        println!("hypervisor: memory per domain slot: {detail}");
    }
    if let Some(l) = run.log.iter().find(|l| l.starts_with("dom0: heap ")) {
        println!("{l}");
    }
    ok == SCALE_DOMUS && verified == SCALE_DOMUS
}
