//! Teaching labs (`lab=<name>`), each printing `lab <name> ...` lines for the host's `make lab`.
//!
//! - `pt-batching`: batched versus per-update page-table hypercalls
//!   (`docs/lab-page-table-batching.md`): the page-table workload (`pt_workload.rs`) with every
//!   variant and batch size by default. Lines: `lab pt_batching start <parameters>`, one
//!   `lab pt_batching variant=... batch=... pages=... cycles_per_pte=... ...` per variant and N,
//!   then `lab pt_batching done rows=<count>` (or `lab pt_batching failed: <why>`).

use guest_kernel::cmdline::Cmdline;
use guest_kernel::pt_lab::Params;

use super::pt_workload;

/// Runs lab `name`; returns false if there is no such lab.
pub fn run(name: &str, cmdline: &Cmdline<'_>) -> bool {
    match name {
        "pt-batching" => pt_batching(cmdline),
        _ => return false,
    }
    true
}

/// `lab=pt-batching [pages=N:N..] [batches=B:B..] [variants=NAME:NAME..] [reps=R]`.
fn pt_batching(cmdline: &Cmdline<'_>) {
    let params = match Params::lab_defaults().with_cmdline(cmdline) {
        Ok(p) => p,
        Err(e) => {
            println!("lab pt_batching failed: {e}");
            return;
        }
    };
    println!("lab pt_batching start {params}");
    let mut rows = 0;
    let result = pt_workload::run(&params, |figures| {
        println!("lab pt_batching {figures}");
        rows += 1;
    });
    match result {
        Ok(()) => println!("lab pt_batching done rows={rows}"),
        Err(e) => println!("lab pt_batching failed: {e}"),
    }
}
