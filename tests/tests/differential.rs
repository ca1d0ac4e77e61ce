//! The differential conformance test: the same guest runs its conformance suite as dom0 on our
//! hypervisor and on Debian's Xen 4.17 in the same QEMU; the case lists must be identical, except
//! for the cases listed in `tests/known-differences.txt`, each with the reason it differs.

use std::collections::BTreeMap;
use std::time::Duration;

use xtests::{
    build_dir, diff_cases, guest_kernel_image, Boot, CaseDiff, Ending, SuiteResult, XEN_CMDLINE,
};

/// dom0's command line: on our hypervisor `vcpus=2` gives dom0 two vCPUs (Xen passes it on to the
/// guest, which ignores it).
const GUEST_CMDLINE: &str = "suite=conformance exit=reboot vcpus=2";

/// The same two vCPUs for dom0 on Xen (one physical CPU, as ours): `dom0_max_vcpus=2` sets the
/// minimum and the maximum (our hypervisor ignores it), so the `vcpu_smp` cases see the same domain.
const DOM0_VCPUS: &str = "dom0_max_vcpus=2";

/// The reviewed list of known differences: `name  # reason` per line.
fn known_differences() -> BTreeMap<String, String> {
    let path = xtests::repo_root().join("tests/known-differences.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, reason) = l.split_once('#').unwrap_or((l, ""));
            (name.trim().to_string(), reason.trim().to_string())
        })
        .collect()
}

fn suite_on(hypervisor: std::path::PathBuf) -> (SuiteResult, Ending, String) {
    let boot = Boot {
        hypervisor,
        cmdline: format!("{XEN_CMDLINE} {DOM0_VCPUS}"),
        modules: vec![(guest_kernel_image(), GUEST_CMDLINE.into())],
        timeout: Duration::from_secs(120),
        qemu_extra: Vec::new(),
    };
    let run = boot.run().unwrap_or_else(|e| panic!("harness error: {e}"));
    (
        SuiteResult::from_log(&run.log),
        run.ending,
        run.log.join("\n"),
    )
}

#[test]
#[ignore = "boots QEMU with both hypervisors: run through `make test`"]
fn our_hypervisor_answers_like_xen_4_17() {
    let (xen, xen_end, xen_log) = suite_on(xtests::xen_reference_image());
    assert!(
        xen.complete(),
        "suite incomplete on Xen 4.17 ({xen_end:?}); log:\n{xen_log}"
    );
    let (ours, ours_end, ours_log) = suite_on(build_dir().join("xen"));
    assert!(
        ours.complete() && ours_end == Ending::Exited(0),
        "suite incomplete on our hypervisor (ended {ours_end:?}, {} of {} cases); log:\n{ours_log}",
        ours.cases.len(),
        xen.cases.len()
    );

    let known = known_differences();
    let diffs = diff_cases(&xen.cases, &ours.cases);
    let name = |d: &CaseDiff| match d {
        CaseDiff::Value { name, .. }
        | CaseDiff::OnlyLeft { name, .. }
        | CaseDiff::OnlyRight { name, .. } => name.clone(),
    };
    let unexpected: Vec<String> = diffs
        .iter()
        .filter(|d| !known.contains_key(&name(d)))
        .map(|d| format!("  {d}"))
        .collect();
    let stale: Vec<&String> = known
        .keys()
        .filter(|k| !diffs.iter().any(|d| &name(d) == *k))
        .collect();
    println!(
        "differential: {} cases on Xen 4.17, {} on ours, {} known differences, {} unexpected",
        xen.cases.len(),
        ours.cases.len(),
        diffs.len() - unexpected.len(),
        unexpected.len()
    );
    assert!(
        unexpected.is_empty(),
        "cases that differ (Xen 4.17  <>  ours):\n{}",
        unexpected.join("\n")
    );
    assert!(
        stale.is_empty(),
        "known-differences.txt lists cases that now match: {stale:?}"
    );
}
