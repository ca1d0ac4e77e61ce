//! The teaching lab's host side: what a run boots, how its lines become CSV rows, and back.
//!
//! `make lab` boots the guest kernel with `lab=pt-batching` as dom0 on our hypervisor and on
//! Debian's Xen 4.17, in two QEMU modes (plain TCG, where the TSC is the host's, and
//! `-icount shift=0,sleep=off`, where it counts guest instructions), collects the
//! `lab pt_batching ...` lines of every run (the guest's, and on ours the hypervisor's native
//! baseline, `selftest=native-pte`), and writes `build/lab/results.csv`, `report.md` and the
//! plots. This library holds the parts that are plain data: the plan, the boots it makes, the
//! parsing, the CSV; `report.rs` and `plot.rs` turn rows into the report and the pictures.
//!
//! Design rules: nothing run-dependent goes into the CSV (in icount mode two runs must give the
//! same bytes); the order of rows is fixed; a run that did not finish is an error, never a
//! partial table.

pub mod plot;
pub mod report;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use xtests::{build_dir, guest_kernel_image, xen_reference_image, Boot, Ending, Run};

/// Which hypervisor a row was measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hypervisor {
    /// This project's `xen-core` (`build/xen`).
    Ours,
    /// Debian's Xen 4.17 (`build/xen-4.17/xen`).
    Xen417,
}

impl Hypervisor {
    /// Both, in report order.
    pub const ALL: [Hypervisor; 2] = [Hypervisor::Ours, Hypervisor::Xen417];

    /// The CSV spelling.
    pub fn name(self) -> &'static str {
        match self {
            Hypervisor::Ours => "ours",
            Hypervisor::Xen417 => "xen-4.17",
        }
    }

    /// The hypervisor called `name`.
    pub fn from_name(name: &str) -> Option<Hypervisor> {
        Hypervisor::ALL.into_iter().find(|h| h.name() == name)
    }
}

/// How the guest's TSC runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Plain TCG: the TSC is the host's, figures are wall-clock host cycles.
    Wall,
    /// `-icount shift=0,sleep=off`: the TSC counts guest instructions, figures are exact.
    Icount,
}

impl Mode {
    /// Both, in report order.
    pub const ALL: [Mode; 2] = [Mode::Wall, Mode::Icount];

    /// The CSV spelling.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Wall => "wall",
            Mode::Icount => "icount",
        }
    }

    /// The mode called `name`.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// QEMU arguments of the mode, after the harness's own.
    ///
    /// Both modes run the same machine: `-x2apic`, because QEMU 10's icount aborts ("Bad icount
    /// read") when Xen 4.17 reads the x2APIC timer count through an MSR, and a fixed virtual RTC,
    /// so that nothing the guest or Xen reads depends on the host's clock. Only `-icount`
    /// differs.
    pub fn qemu_args(self) -> Vec<String> {
        let mut args: Vec<String> = ["-cpu", "max,-x2apic", "-rtc", RTC]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if self == Mode::Icount {
            args.extend(["-icount".to_string(), "shift=0,sleep=off".to_string()]);
        }
        args
    }
}

/// The virtual RTC: a fixed date, advanced by the virtual clock.
const RTC: &str = "base=2024-01-01T00:00:00,clock=vm";

/// The variants, in the order rows are sorted (the CSV spelling).
pub const VARIANTS: [&str; 5] = [
    "native",
    "mmu_update",
    "update_va_mapping",
    "update_va_mapping_invlpg",
    "multicall_uvm",
];

/// The lab's region sizes: 64 to 16384 pages, every power of two.
pub const DEFAULT_PAGES: [u32; 9] = [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
/// The batch sizes: 1 to 512, every power of two.
pub const DEFAULT_BATCHES: [u32; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
/// Timed rounds per variant and N in wall mode: the host is noisy, medians need samples.
pub const DEFAULT_WALL_REPS: u32 = 9;
/// Timed rounds per variant and N in icount mode: every round counts the same instructions
/// (give or take a timer interrupt), three are plenty.
pub const DEFAULT_ICOUNT_REPS: u32 = 3;
/// dom0's memory for the lab: 16384 scratch pages and their tables do not fit in 64 MiB.
pub const DOM0_MEM: &str = "128M";

/// What one `make lab` (or `make lab-check`) run measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Region sizes N.
    pub pages: Vec<u32>,
    /// Batch sizes B.
    pub batches: Vec<u32>,
    /// Timed rounds per variant and N in wall mode.
    pub wall_reps: u32,
    /// Timed rounds per variant and N in icount mode.
    pub icount_reps: u32,
    /// The hypervisors to boot.
    pub hypervisors: Vec<Hypervisor>,
    /// The modes to run in.
    pub modes: Vec<Mode>,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            pages: DEFAULT_PAGES.to_vec(),
            batches: DEFAULT_BATCHES.to_vec(),
            wall_reps: DEFAULT_WALL_REPS,
            icount_reps: DEFAULT_ICOUNT_REPS,
            hypervisors: Hypervisor::ALL.to_vec(),
            modes: Mode::ALL.to_vec(),
        }
    }
}

fn join(values: &[u32]) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(":")
}

impl Plan {
    /// Timed rounds in `mode`.
    pub fn reps(&self, mode: Mode) -> u32 {
        match mode {
            Mode::Wall => self.wall_reps,
            Mode::Icount => self.icount_reps,
        }
    }

    /// The guest's command line (`:` separates list items: QEMU splits `-initrd` at commas).
    pub fn guest_cmdline(&self, h: Hypervisor, mode: Mode) -> String {
        let mut c = format!(
            "lab=pt-batching pages={} batches={} reps={}",
            join(&self.pages),
            join(&self.batches),
            self.reps(mode)
        );
        if h == Hypervisor::Xen417 {
            // Xen halts the machine on a dom0 power-off; a reboot ends QEMU (-no-reboot).
            c.push_str(" exit=reboot");
        }
        c
    }

    /// The hypervisor's command line: the harness's, with the lab's dom0 memory, and on ours
    /// the native baseline before dom0.
    pub fn hypervisor_cmdline(&self, h: Hypervisor) -> String {
        let mut c =
            format!("console=com1 com1=115200,8n1 dom0_mem={DOM0_MEM} loglvl=all guest_loglvl=all");
        if h == Hypervisor::Ours {
            c.push_str(" selftest=native-pte");
        }
        c
    }

    /// The QEMU boot of one run.
    pub fn boot(&self, h: Hypervisor, mode: Mode) -> Boot {
        Boot {
            hypervisor: match h {
                Hypervisor::Ours => build_dir().join("xen"),
                Hypervisor::Xen417 => xen_reference_image(),
            },
            cmdline: self.hypervisor_cmdline(h),
            modules: vec![(guest_kernel_image(), self.guest_cmdline(h, mode))],
            timeout: Duration::from_secs(600),
            qemu_extra: mode.qemu_args(),
        }
    }

    /// The plan that produced `rows` (one mode's): their N, batch sizes, rounds and
    /// hypervisors; `None` when there are no guest rows.
    pub fn of_rows(rows: &[Row]) -> Option<Plan> {
        let guest: Vec<&Row> = rows.iter().filter(|r| r.variant != "native").collect();
        let first = guest.first()?;
        let unique = |it: &mut dyn Iterator<Item = u32>| {
            let mut v: Vec<u32> = it.collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut hypervisors: Vec<Hypervisor> = guest.iter().map(|r| r.hypervisor).collect();
        hypervisors.sort_unstable();
        hypervisors.dedup();
        Some(Plan {
            pages: unique(&mut guest.iter().map(|r| r.pages)),
            batches: unique(
                &mut guest
                    .iter()
                    .filter(|r| r.variant == "mmu_update" || r.variant == "multicall_uvm")
                    .filter_map(|r| r.batch),
            ),
            wall_reps: first.reps,
            icount_reps: first.reps,
            hypervisors,
            modes: vec![first.mode],
        })
    }

    /// The guest rows a complete run prints: every N times every variant.
    pub fn guest_rows(&self) -> usize {
        self.pages.len() * (2 * self.batches.len() + 2)
    }
}

/// One CSV row: one variant at one batch size and N, on one hypervisor in one mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub hypervisor: Hypervisor,
    pub mode: Mode,
    /// One of [`VARIANTS`].
    pub variant: String,
    /// PTEs per hypercall; `None` for `native` (no hypercalls).
    pub batch: Option<u32>,
    /// N.
    pub pages: u32,
    /// Median TSC cycles per PTE update (a round maps and unmaps N pages: 2N updates).
    pub cycles_per_pte: u64,
    /// Hypercalls the guest issued per round.
    pub hypercalls: u64,
    /// The hypervisor's counters per round; `None` where it has none (Xen 4.17 as Debian builds
    /// it).
    pub validations: Option<u64>,
    pub flushes: Option<u64>,
    pub invlpgs: Option<u64>,
    pub traps: Option<u64>,
    pub ref_ops: Option<u64>,
    pub page_updates: Option<u64>,
    /// Hypercalls the hypervisor dispatched (multicall entries count one each).
    pub hv_hypercalls: Option<u64>,
    /// Median TSC cycles per page of reading the mapped pages once (TLB refill).
    pub touch_cycles_per_page: u64,
    pub min_cycles_per_pte: u64,
    pub max_cycles_per_pte: u64,
    /// Timed rounds.
    pub reps: u32,
}

/// The CSV header: the columns first, then the rest.
pub const CSV_HEADER: &str = "hypervisor,mode,variant,batch,pages,cycles_per_pte,hypercalls,\
validations,flushes,invlpgs,traps,ref_ops,page_updates,hv_hypercalls,touch_cycles_per_page,\
min_cycles_per_pte,max_cycles_per_pte,reps";

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| v.to_string())
}

impl Row {
    /// The row as a CSV line (no newline).
    pub fn to_csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.hypervisor.name(),
            self.mode.name(),
            self.variant,
            self.batch
                .map_or_else(|| "n/a".to_string(), |b| b.to_string()),
            self.pages,
            self.cycles_per_pte,
            self.hypercalls,
            opt(self.validations),
            opt(self.flushes),
            opt(self.invlpgs),
            opt(self.traps),
            opt(self.ref_ops),
            opt(self.page_updates),
            opt(self.hv_hypercalls),
            self.touch_cycles_per_page,
            self.min_cycles_per_pte,
            self.max_cycles_per_pte,
            self.reps,
        )
    }

    /// The sort key: hypervisor, mode, N, variant, batch.
    fn key(&self) -> (Hypervisor, Mode, u32, usize, u32) {
        let v = VARIANTS
            .iter()
            .position(|v| *v == self.variant)
            .unwrap_or(VARIANTS.len());
        (
            self.hypervisor,
            self.mode,
            self.pages,
            v,
            self.batch.unwrap_or(0),
        )
    }

    /// Builds a row from the `key=value` words of a `lab pt_batching` result line.
    pub fn from_fields(h: Hypervisor, mode: Mode, text: &str) -> Result<Row, ParseError> {
        let get = |key: &str| {
            text.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v)
                .ok_or_else(|| ParseError(format!("no {key}= in \"{text}\"")))
        };
        let num = |key: &str| -> Result<u64, ParseError> {
            let v = get(key)?;
            v.parse()
                .map_err(|_| ParseError(format!("{key}={v} is not a number in \"{text}\"")))
        };
        let opt_num = |key: &str| -> Result<Option<u64>, ParseError> {
            match get(key)? {
                "n/a" => Ok(None),
                _ => num(key).map(Some),
            }
        };
        let variant = get("variant")?;
        if !VARIANTS.contains(&variant) {
            return Err(ParseError(format!("unknown variant {variant}")));
        }
        Ok(Row {
            hypervisor: h,
            mode,
            variant: variant.to_string(),
            batch: opt_num("batch")?.map(|b| b as u32),
            pages: num("pages")? as u32,
            cycles_per_pte: num("cycles_per_pte")?,
            hypercalls: num("hypercalls")?,
            validations: opt_num("validations")?,
            flushes: opt_num("flushes")?,
            invlpgs: opt_num("invlpgs")?,
            traps: opt_num("traps")?,
            ref_ops: opt_num("ref_ops")?,
            page_updates: opt_num("page_updates")?,
            hv_hypercalls: opt_num("hv_hypercalls")?,
            touch_cycles_per_page: num("touch_cycles_per_page")?,
            min_cycles_per_pte: num("min_cycles_per_pte")?,
            max_cycles_per_pte: num("max_cycles_per_pte")?,
            reps: num("reps")? as u32,
        })
    }

    /// Parses a CSV line written by [`Row::to_csv`].
    pub fn from_csv(line: &str) -> Result<Row, ParseError> {
        let cols: Vec<&str> = line.trim_end().split(',').collect();
        let names: Vec<&str> = CSV_HEADER.split(',').collect();
        if cols.len() != names.len() {
            return Err(ParseError(format!(
                "{} columns instead of {}: \"{line}\"",
                cols.len(),
                names.len()
            )));
        }
        let h = Hypervisor::from_name(cols[0])
            .ok_or_else(|| ParseError(format!("unknown hypervisor {}", cols[0])))?;
        let mode = Mode::from_name(cols[1])
            .ok_or_else(|| ParseError(format!("unknown mode {}", cols[1])))?;
        let fields: String = names
            .iter()
            .zip(&cols)
            .skip(2)
            .map(|(n, v)| format!("{n}={v} "))
            .collect();
        Row::from_fields(h, mode, &fields)
    }
}

/// A line or file that does not read as the lab's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// The marker of the lab's lines (the hypervisor's carry a `(XEN) ` prefix).
pub const MARKER: &str = "lab pt_batching ";

/// What one run's log says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOutput {
    /// The result rows, guest and native, in log order.
    pub rows: Vec<Row>,
    /// The guest's `done rows=<n>`, if it got there.
    pub done: Option<usize>,
    /// The first `failed: <why>`, if any.
    pub failed: Option<String>,
}

impl RunOutput {
    /// Extracts the lab's lines from a serial log.
    pub fn from_log<S: AsRef<str>>(h: Hypervisor, mode: Mode, log: &[S]) -> RunOutput {
        let mut out = RunOutput::default();
        for line in log {
            let line = line.as_ref();
            let Some(i) = line.find(MARKER) else { continue };
            let rest = &line[i + MARKER.len()..];
            if let Some(n) = rest.strip_prefix("done rows=") {
                out.done = n.trim().parse().ok();
            } else if let Some(why) = rest.strip_prefix("failed: ") {
                out.failed.get_or_insert_with(|| why.to_string());
            } else if rest.starts_with("variant=") {
                match Row::from_fields(h, mode, rest) {
                    Ok(r) => out.rows.push(r),
                    Err(e) => {
                        out.failed.get_or_insert(e.0);
                    }
                }
            }
        }
        out
    }

    /// Whether the run measured everything `plan` asked for; otherwise why not.
    pub fn complete(&self, plan: &Plan, h: Hypervisor) -> Result<(), String> {
        if let Some(why) = &self.failed {
            return Err(format!("the workload failed: {why}"));
        }
        let guest = self.rows.iter().filter(|r| r.variant != "native").count();
        match self.done {
            None => return Err(format!("no `done` line ({guest} rows seen)")),
            Some(n) if n != guest || n != plan.guest_rows() => {
                return Err(format!(
                    "{guest} guest rows, the guest counted {n}, the plan needs {}",
                    plan.guest_rows()
                ))
            }
            Some(_) => {}
        }
        if h == Hypervisor::Ours {
            for &n in &plan.pages {
                if !self
                    .rows
                    .iter()
                    .any(|r| r.variant == "native" && r.pages == n)
                {
                    return Err(format!("no native row for N = {n}"));
                }
            }
        }
        Ok(())
    }

    /// The rows `plan` asked for (the native baseline runs every N of its own list).
    pub fn planned_rows(self, plan: &Plan) -> Vec<Row> {
        self.rows
            .into_iter()
            .filter(|r| plan.pages.contains(&r.pages))
            .collect()
    }
}

/// Boots `h` in `mode` as `plan` says and returns the rows, with the run (its log, for the
/// caller to keep); an error says why the run does not count, with the end of its log.
pub fn run(plan: &Plan, h: Hypervisor, mode: Mode) -> Result<(Vec<Row>, Run), String> {
    let what = format!("{} {}", h.name(), mode.name());
    let run = plan
        .boot(h, mode)
        .run()
        .map_err(|e| format!("{what}: {e}"))?;
    let out = RunOutput::from_log(h, mode, &run.log);
    let verdict = match run.ending {
        Ending::TimedOut => Err("timed out".to_string()),
        Ending::Exited(0) | Ending::Marker => out.complete(plan, h),
        Ending::Exited(status) => out
            .complete(plan, h)
            .and(Err(format!("QEMU exited with status {status}"))),
    };
    match verdict {
        Ok(()) => Ok((out.planned_rows(plan), run)),
        Err(why) => {
            let tail = &run.log[run.log.len().saturating_sub(25)..];
            Err(format!(
                "{what}: {why}; the log ends:\n    {}",
                tail.join("\n    ")
            ))
        }
    }
}

/// Rows in the CSV's order.
pub fn sort_rows(rows: &mut [Row]) {
    rows.sort_by_key(Row::key);
}

/// The CSV text of `rows` (header, then one line per row, in the CSV's order).
pub fn to_csv(rows: &[Row]) -> String {
    let mut rows = rows.to_vec();
    sort_rows(&mut rows);
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in &rows {
        out.push_str(&r.to_csv());
        out.push('\n');
    }
    out
}

/// Reads a CSV written by [`to_csv`].
pub fn from_csv(text: &str) -> Result<Vec<Row>, ParseError> {
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.trim_end() == CSV_HEADER => {}
        _ => return Err(ParseError("not the lab's CSV header".into())),
    }
    lines
        .filter(|l| !l.trim().is_empty())
        .map(Row::from_csv)
        .collect()
}

/// Reads `path` as the lab's CSV.
pub fn read_csv(path: &Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    from_csv(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The first line where two CSV texts differ: (line number from 1, left, right).
pub fn first_difference(a: &str, b: &str) -> Option<(usize, String, String)> {
    let mut la = a.lines();
    let mut lb = b.lines();
    for n in 1.. {
        match (la.next(), lb.next()) {
            (None, None) => return None,
            (x, y) if x != y => {
                return Some((
                    n,
                    x.unwrap_or("(end)").to_string(),
                    y.unwrap_or("(end)").to_string(),
                ))
            }
            _ => {}
        }
    }
    None
}

/// Parses a host-side list: numbers separated by `,` or `:`.
pub fn parse_list(text: &str) -> Result<Vec<u32>, String> {
    let v: Result<Vec<u32>, _> = text
        .split([',', ':'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.parse::<u32>()
                .map_err(|_| format!("'{w}' is not a number"))
        })
        .collect();
    match v {
        Ok(v) if v.is_empty() => Err("empty list".into()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: &str = "lab pt_batching variant=mmu_update batch=8 pages=512 reps=5 \
        cycles_per_pte=1290 min_cycles_per_pte=1200 max_cycles_per_pte=1400 \
        touch_cycles_per_page=40 hypercalls=128 hv_hypercalls=128 traps=0 validations=512 \
        page_updates=1024 flushes=0 invlpgs=0 ref_ops=4096";
    const XEN: &str = "lab pt_batching variant=update_va_mapping batch=1 pages=512 reps=5 \
        cycles_per_pte=700 min_cycles_per_pte=690 max_cycles_per_pte=900 \
        touch_cycles_per_page=4 hypercalls=1024 hv_hypercalls=n/a traps=n/a validations=n/a \
        page_updates=n/a flushes=n/a invlpgs=n/a ref_ops=n/a";
    const NATIVE: &str = "(XEN) lab pt_batching variant=native batch=n/a pages=512 reps=7 \
        cycles_per_pte=11 min_cycles_per_pte=10 max_cycles_per_pte=12 touch_cycles_per_page=600 \
        hypercalls=0 hv_hypercalls=0 traps=0 validations=0 page_updates=0 flushes=0 invlpgs=0 \
        ref_ops=0";

    #[test]
    fn reads_guest_and_native_lines() {
        let log = [
            NATIVE,
            "guest-kernel 0.1.0: booted",
            "lab pt_batching start pages=512 batches=8 reps=5",
            GUEST,
            "lab pt_batching done rows=1",
        ];
        let out = RunOutput::from_log(Hypervisor::Ours, Mode::Icount, &log);
        assert_eq!(out.done, Some(1));
        assert_eq!(out.failed, None);
        assert_eq!(out.rows.len(), 2);
        assert_eq!(out.rows[0].variant, "native");
        assert_eq!(out.rows[0].batch, None);
        let g = &out.rows[1];
        assert_eq!(
            (g.batch, g.pages, g.cycles_per_pte, g.hypercalls),
            (Some(8), 512, 1290, 128)
        );
        assert_eq!((g.validations, g.ref_ops), (Some(512), Some(4096)));
    }

    #[test]
    fn csv_round_trips_and_keeps_na() {
        let out = RunOutput::from_log(Hypervisor::Xen417, Mode::Wall, &[XEN, GUEST]);
        let text = to_csv(&out.rows);
        assert!(text.starts_with(CSV_HEADER));
        assert!(text.contains("\nxen-4.17,wall,mmu_update,8,512,1290,128,512,0,0,0,4096,"));
        assert!(text.contains(
            "\nxen-4.17,wall,update_va_mapping,1,512,700,1024,n/a,n/a,n/a,n/a,n/a,n/a,n/a,4,690,900,5\n"
        ));
        let back = from_csv(&text).unwrap();
        assert_eq!(to_csv(&back), text);
    }

    #[test]
    fn rows_are_sorted_by_hypervisor_mode_pages_variant_batch() {
        let mut rows = vec![];
        for (h, m, line) in [
            (Hypervisor::Xen417, Mode::Wall, GUEST),
            (Hypervisor::Ours, Mode::Icount, GUEST),
            (Hypervisor::Ours, Mode::Wall, XEN),
            (Hypervisor::Ours, Mode::Wall, GUEST),
            (Hypervisor::Ours, Mode::Wall, NATIVE),
        ] {
            rows.extend(RunOutput::from_log(h, m, &[line]).rows);
        }
        let text = to_csv(&rows);
        let order: Vec<String> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
            .collect();
        assert_eq!(
            order,
            [
                "ours,wall,native",
                "ours,wall,mmu_update",
                "ours,wall,update_va_mapping",
                "ours,icount,mmu_update",
                "xen-4.17,wall,mmu_update"
            ]
        );
    }

    #[test]
    fn incomplete_runs_are_refused_with_a_reason() {
        let plan = Plan {
            pages: vec![512],
            batches: vec![8],
            ..Plan::default()
        };
        assert_eq!(plan.guest_rows(), 4);
        let out = RunOutput::from_log(Hypervisor::Ours, Mode::Wall, &[GUEST]);
        assert!(out
            .complete(&plan, Hypervisor::Ours)
            .unwrap_err()
            .contains("no `done`"));
        let out = RunOutput::from_log(
            Hypervisor::Ours,
            Mode::Wall,
            &[GUEST, "lab pt_batching failed: out of frames"],
        );
        assert!(out
            .complete(&plan, Hypervisor::Ours)
            .unwrap_err()
            .contains("out of frames"));
        let out = RunOutput::from_log(
            Hypervisor::Ours,
            Mode::Wall,
            &[GUEST, "lab pt_batching done rows=1"],
        );
        assert!(out
            .complete(&plan, Hypervisor::Ours)
            .unwrap_err()
            .contains("needs 4"));
    }

    #[test]
    fn the_plan_makes_the_commands_both_hypervisors_need() {
        let plan = Plan {
            pages: vec![64, 4096],
            batches: vec![1, 512],
            wall_reps: 7,
            icount_reps: 3,
            ..Plan::default()
        };
        assert_eq!(
            plan.guest_cmdline(Hypervisor::Ours, Mode::Icount),
            "lab=pt-batching pages=64:4096 batches=1:512 reps=3"
        );
        assert!(plan
            .guest_cmdline(Hypervisor::Xen417, Mode::Wall)
            .ends_with(" reps=7 exit=reboot"));
        assert!(plan
            .hypervisor_cmdline(Hypervisor::Ours)
            .contains("dom0_mem=128M loglvl=all guest_loglvl=all selftest=native-pte"));
        assert!(!plan
            .hypervisor_cmdline(Hypervisor::Xen417)
            .contains("selftest"));
        let b = plan.boot(Hypervisor::Xen417, Mode::Icount);
        let args = b.qemu_args();
        assert!(args
            .windows(2)
            .any(|w| w == ["-icount", "shift=0,sleep=off"]));
        assert!(args.windows(2).any(|w| w == ["-cpu", "max,-x2apic"]));
        let b = plan.boot(Hypervisor::Ours, Mode::Wall);
        assert!(!b.qemu_args().contains(&"-icount".to_string()));
    }

    #[test]
    fn a_plan_is_recovered_from_its_rows() {
        let log = [NATIVE, GUEST, XEN.replace("pages=512", "pages=64").as_str()].map(String::from);
        let rows = RunOutput::from_log(Hypervisor::Ours, Mode::Icount, &log).rows;
        let p = Plan::of_rows(&rows).unwrap();
        assert_eq!(p.pages, [64, 512]);
        assert_eq!(p.batches, [8]);
        assert_eq!(
            (p.icount_reps, p.modes.as_slice()),
            (5, &[Mode::Icount][..])
        );
        assert_eq!(p.hypervisors, [Hypervisor::Ours]);
        assert_eq!(
            Plan::of_rows(&rows[..1]),
            None,
            "native rows alone make no plan"
        );
    }

    #[test]
    fn differences_name_the_first_line() {
        assert_eq!(first_difference("a\nb\n", "a\nb\n"), None);
        assert_eq!(
            first_difference("a\nb\nc", "a\nx\nc"),
            Some((2, "b".into(), "x".into()))
        );
        assert_eq!(
            first_difference("a\n", "a\nb\n"),
            Some((2, "(end)".into(), "b".into()))
        );
    }

    #[test]
    fn host_lists_take_commas_or_colons() {
        assert_eq!(parse_list("64,128:256").unwrap(), [64, 128, 256]);
        assert!(parse_list("").is_err());
        assert!(parse_list("1,x").is_err());
    }
}
