//! `make xen-reference`: boots `build/guest-kernel suite=conformance` as dom0 on Debian's Xen 4.17
//! in QEMU, shows the guest's console, prints the case list and records it in
//! `build/xen-reference.cases`.
//!
//! Usage: `xen-reference [--runs N] [--quiet]`. With N > 1 the runs must give identical case lists.
//! Exit status: 0 when every run completed the suite (and the runs agree), 1 otherwise.

use std::process::ExitCode;

use xtests::{
    build_dir, diff_cases, duplicate_names, guest_kernel_image, Boot, Ending, SuiteResult,
};

fn main() -> ExitCode {
    let mut runs = 1usize;
    let mut quiet = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(1).max(1),
            "--quiet" => quiet = true,
            _ => {
                eprintln!("usage: xen-reference [--runs N] [--quiet]");
                return ExitCode::from(2);
            }
        }
    }

    let boot = Boot::xen_reference(&guest_kernel_image(), "suite=conformance exit=reboot");
    let mut first: Option<SuiteResult> = None;
    let mut ok = true;
    for n in 1..=runs {
        let run = match boot.run() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("xen-reference: ERROR: {e}");
                return ExitCode::from(1);
            }
        };
        let suite = SuiteResult::from_log(&run.log);
        if !quiet && n == 1 {
            println!("---- Xen 4.17 serial log (dom0 = guest-kernel suite=conformance) ----");
            for line in &run.log {
                println!("{line}");
            }
            println!("---- end of log ----");
        }
        println!(
            "xen-reference: run {n}: {} cases, suite {}, ended {:?} after {:.1} s",
            suite.cases.len(),
            if suite.complete() {
                "complete"
            } else {
                "INCOMPLETE"
            },
            run.ending,
            run.elapsed.as_secs_f64()
        );
        if !suite.complete() || run.ending == Ending::TimedOut {
            ok = false;
            if quiet {
                for line in &run.log {
                    eprintln!("{line}");
                }
            }
        }
        let dups = duplicate_names(&suite.cases);
        if !dups.is_empty() {
            eprintln!("xen-reference: duplicate case names: {dups:?}");
            ok = false;
        }
        match &first {
            None => first = Some(suite),
            Some(f) => {
                let d = diff_cases(&f.cases, &suite.cases);
                if d.is_empty() {
                    println!("xen-reference: run {n} is identical to run 1");
                } else {
                    ok = false;
                    eprintln!("xen-reference: run {n} differs from run 1:");
                    for x in d {
                        eprintln!("  {x}");
                    }
                }
            }
        }
    }
    let first = first.expect("at least one run");
    let out = build_dir().join("xen-reference.cases");
    if let Err(e) = std::fs::write(&out, first.to_text()) {
        eprintln!("xen-reference: cannot write {}: {e}", out.display());
        return ExitCode::from(1);
    }
    println!(
        "---- case list ({} cases, recorded in {}) ----",
        first.cases.len(),
        out.display()
    );
    print!("{}", first.to_text());
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("xen-reference: FAILED");
        ExitCode::from(1)
    }
}
