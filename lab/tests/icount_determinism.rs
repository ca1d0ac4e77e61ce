//! icount mode is deterministic: two runs of a small lab plan give byte-identical CSVs, on both
//! hypervisors (the quick version of `make lab-check`, which reruns the whole grid).
//!
//! Ignored in a plain `cargo test` (it boots QEMU and needs the images); `make test` runs it.

use lab::{first_difference, to_csv, Hypervisor, Mode, Plan};

#[test]
#[ignore = "boots QEMU (make test runs it)"]
fn two_icount_runs_give_identical_csvs() {
    let plan = Plan {
        pages: vec![64, 512],
        batches: vec![1, 8, 512],
        icount_reps: 2,
        modes: vec![Mode::Icount],
        ..Plan::default()
    };
    // Four boots at once: icount figures do not depend on how busy the host is.
    let runs: Vec<(Hypervisor, Result<String, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = [Hypervisor::Ours, Hypervisor::Xen417]
            .iter()
            .flat_map(|&h| [h, h])
            .map(|h| {
                let plan = &plan;
                (
                    h,
                    s.spawn(move || lab::run(plan, h, Mode::Icount).map(|(rows, _)| to_csv(&rows))),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(h, t)| (h, t.join().expect("run thread")))
            .collect()
    });
    for pair in runs.chunks(2) {
        let h = pair[0].0;
        let a = pair[0].1.as_ref().unwrap_or_else(|e| panic!("{e}"));
        let b = pair[1].1.as_ref().unwrap_or_else(|e| panic!("{e}"));
        // Every variant at both N (and on ours the native baseline): nothing was left out.
        let expected = plan.guest_rows() + if h == Hypervisor::Ours { 2 } else { 0 };
        assert_eq!(a.lines().count(), 1 + expected, "{}:\n{a}", h.name());
        if let Some((line, x, y)) = first_difference(a, b) {
            panic!(
                "{}: two icount runs differ at CSV line {line}:\n  {x}\n  {y}",
                h.name()
            );
        }
        println!(
            "{}: two icount runs, {} identical CSV rows",
            h.name(),
            expected
        );
    }
}
