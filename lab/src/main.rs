//! `lab`: the page-table batching lab's runner (`make lab`, `make lab-check`).
//!
//! ```text
//! lab [run]    [--out DIR] [--pages LIST] [--batches LIST] [--reps N] [--wall-reps N]
//!              [--icount-reps N] [--modes LIST] [--hypervisors LIST]
//! lab check    [the same options]     rerun icount mode and compare with DIR/results.csv (its
//!                                     N, B and rounds; the options only when it has no icount rows)
//! lab report   [--out DIR]            report and plots again from DIR/results.csv
//! ```
//!
//! `run` boots every hypervisor in every mode once (the icount runs side by side, then the wall
//! runs one at a time, so that nothing else competes with them for the host), keeps each serial
//! log in `DIR/logs/`, and writes `DIR/results.csv`, `DIR/report.md` and the plots. Lists take
//! `,` or `:`. DIR defaults to `build/lab`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use lab::{
    first_difference, parse_list, plot, read_csv, report, to_csv, Hypervisor, Mode, Plan, Row,
};
use xtests::build_dir;

struct Args {
    command: String,
    out: PathBuf,
    plan: Plan,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1).peekable();
    let command = match args.peek().map(String::as_str) {
        Some("run" | "check" | "report") => args.next().unwrap_or_default(),
        _ => "run".to_string(),
    };
    let mut out = build_dir().join("lab");
    let mut plan = Plan::default();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => out = PathBuf::from(value()?),
            "--pages" => plan.pages = parse_list(&value()?)?,
            "--batches" => plan.batches = parse_list(&value()?)?,
            "--reps" | "--wall-reps" | "--icount-reps" => {
                let v = value()?;
                let reps: u32 = v.parse().map_err(|_| format!("{flag}: '{v}'"))?;
                if flag != "--icount-reps" {
                    plan.wall_reps = reps;
                }
                if flag != "--wall-reps" {
                    plan.icount_reps = reps;
                }
            }
            "--modes" => {
                plan.modes = value()?
                    .split([',', ':'])
                    .map(|m| Mode::from_name(m).ok_or_else(|| format!("unknown mode '{m}'")))
                    .collect::<Result<_, _>>()?;
            }
            "--hypervisors" => {
                plan.hypervisors = value()?
                    .split([',', ':'])
                    .map(|h| {
                        Hypervisor::from_name(h).ok_or_else(|| format!("unknown hypervisor '{h}'"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    Ok(Args { command, out, plan })
}

const USAGE: &str = "usage: lab [run|check|report] [--out DIR] [--pages LIST] [--batches LIST] \
[--reps N] [--wall-reps N] [--icount-reps N] [--modes wall,icount] [--hypervisors ours,xen-4.17]";

/// Boots `h` in `mode`, keeps the log in `logs`, and returns the run's rows.
fn run_one(plan: &Plan, h: Hypervisor, mode: Mode, logs: &Path) -> Result<Vec<Row>, String> {
    let started = Instant::now();
    let log_path = logs.join(format!("{}-{}.log", h.name(), mode.name()));
    let (rows, run) = lab::run(plan, h, mode)?;
    let _ = std::fs::write(&log_path, run.log.join("\n") + "\n");
    println!(
        "lab: {} {}: {} rows in {:.1} s (log: {})",
        h.name(),
        mode.name(),
        rows.len(),
        started.elapsed().as_secs_f64(),
        log_path.display()
    );
    Ok(rows)
}

/// Every run of `plan`: the icount runs in parallel, then the wall runs one by one.
fn measure(plan: &Plan, out: &Path) -> Result<Vec<Row>, String> {
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    for &h in &plan.hypervisors {
        for &m in &plan.modes {
            println!(
                "lab: {} {}: hypervisor \"{}\", dom0 \"{}\"",
                h.name(),
                m.name(),
                plan.hypervisor_cmdline(h),
                plan.guest_cmdline(h, m)
            );
        }
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    if plan.modes.contains(&Mode::Icount) {
        let logs = logs.as_path();
        let results: Vec<Result<Vec<Row>, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = plan
                .hypervisors
                .iter()
                .map(|&h| s.spawn(move || run_one(plan, h, Mode::Icount, logs)))
                .collect();
            handles
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|_| Err("a run panicked".into())))
                .collect()
        });
        for r in results {
            match r {
                Ok(r) => rows.extend(r),
                Err(e) => errors.push(e),
            }
        }
    }
    if plan.modes.contains(&Mode::Wall) {
        for &h in &plan.hypervisors {
            match run_one(plan, h, Mode::Wall, &logs) {
                Ok(r) => rows.extend(r),
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors.join("\n"))
    }
}

/// Writes the report and the plots for `rows` into `out`.
fn write_report(rows: &[Row], out: &Path) -> Result<(), String> {
    let md = out.join("report.md");
    std::fs::write(&md, report::markdown(rows)).map_err(|e| format!("{}: {e}", md.display()))?;
    println!("lab: wrote {}", md.display());
    let n = report::main_pages(rows);
    for mode in Mode::ALL {
        match n {
            Some(n) if rows.iter().any(|r| r.mode == mode) => {
                let [svg, png] = plot::batching_chart(rows, mode, n, out)?;
                println!("lab: wrote {} and {}", svg.display(), png.display());
            }
            // No rows in this mode: a plot left by an earlier run would not match the CSV.
            _ => {
                for ext in ["svg", "png"] {
                    let _ =
                        std::fs::remove_file(out.join(format!("batching-{}.{ext}", mode.name())));
                }
            }
        }
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    plot::load_font()?; // fail before the long part, not after it
    let started = Instant::now();
    let rows = measure(&args.plan, &args.out)?;
    let csv = args.out.join("results.csv");
    std::fs::write(&csv, to_csv(&rows)).map_err(|e| format!("{}: {e}", csv.display()))?;
    println!("lab: wrote {} ({} rows)", csv.display(), rows.len());
    write_report(&rows, &args.out)?;
    summary(&rows);
    println!(
        "lab: done in {:.0} s",
        started.elapsed().as_secs_f64().ceil()
    );
    Ok(())
}

/// The headline figures on the terminal.
fn summary(rows: &[Row]) {
    let Some(n) = report::main_pages(rows) else {
        return;
    };
    for h in Hypervisor::ALL {
        for mode in Mode::ALL {
            if let Some(r) = report::per_update_ratio(rows, h, mode, n) {
                println!(
                    "lab: {} {}: mmu_update one per PTE / batches of 512 at N = {n}: {r:.2}x",
                    h.name(),
                    mode.name()
                );
            }
        }
    }
}

/// `check`: icount mode again, compared byte for byte with the icount rows of `results.csv`,
/// rerunning exactly what produced them (or, when there are none, twice with the given plan).
fn check(args: &Args) -> Result<(), String> {
    let mut plan = args.plan.clone();
    plan.modes = vec![Mode::Icount];
    let dir = args.out.join("check");
    let previous: Vec<Row> = read_csv(&args.out.join("results.csv"))
        .map(|rows| {
            rows.into_iter()
                .filter(|r| r.mode == Mode::Icount && plan.hypervisors.contains(&r.hypervisor))
                .collect()
        })
        .unwrap_or_default();
    if let Some(p) = Plan::of_rows(&previous) {
        plan.pages = p.pages;
        plan.batches = p.batches;
        plan.icount_reps = p.icount_reps;
        plan.hypervisors = p.hypervisors;
        println!("lab check: rerunning the icount runs of results.csv");
    }
    let (first, what) = match previous.is_empty() {
        false => (to_csv(&previous), "the icount rows of results.csv"),
        true => {
            println!("lab check: no icount rows in results.csv: two runs");
            (to_csv(&measure(&plan, &dir)?), "a first run")
        }
    };
    let second = to_csv(&measure(&plan, &dir)?);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let _ = std::fs::write(dir.join("icount-a.csv"), &first);
    let _ = std::fs::write(dir.join("icount-b.csv"), &second);
    match first_difference(&first, &second) {
        None => {
            println!(
                "lab check: icount CSV identical to {what} ({} lines)",
                first.lines().count()
            );
            Ok(())
        }
        Some((line, a, b)) => Err(format!(
            "lab check: icount CSV differs from {what} at line {line}:\n  {a}\n  {b}\n(files: {})",
            dir.display()
        )),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("{}: {e}", args.out.display()))
        .and_then(|()| match args.command.as_str() {
            "check" => check(&args),
            "report" => {
                let rows = read_csv(&args.out.join("results.csv"))?;
                write_report(&rows, &args.out)
            }
            _ => run(&args),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
