//! QEMU test: `selftest=time` calibrates the TSC and the APIC timer, fires one-shot timers in
//! xAPIC and x2APIC mode, and powers off cleanly, both against the host clock and in QEMU's
//! deterministic instruction-counting mode (`-icount shift=0,sleep=off`, used by the labs).

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use xtests::{build_dir, Boot, Ending};

fn selftest_boot() -> Boot {
    Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: "selftest=time".into(),
        modules: Vec::new(),
        timeout: Duration::from_secs(60),
        qemu_extra: Vec::new(),
    }
}

/// Checks what every run of the self-test must show.
fn check_common(log: &str) {
    assert!(log.contains("(XEN) TSC: "), "log:\n{log}");
    assert!(log.contains(" MHz, APIC timer: "), "log:\n{log}");
    assert!(
        log.contains("(XEN) time selftest: xAPIC: one-shot 10.000 ms x5"),
        "log:\n{log}"
    );
    assert!(
        log.contains("(XEN) time selftest: x2APIC: one-shot 10.000 ms x5"),
        "log:\n{log}"
    );
    assert!(log.contains("(XEN) time selftest: PASS"), "log:\n{log}");
    assert!(!log.contains("FAIL"), "log:\n{log}");
    assert!(
        log.trim_end().ends_with("(XEN) Powering off."),
        "log:\n{log}"
    );
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn time_selftest_passes_against_the_host_clock() {
    let run = selftest_boot()
        .run()
        .unwrap_or_else(|e| panic!("harness error: {e}"));
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    check_common(&log);
}

/// Runs QEMU with the harness's arguments plus `extra`, and returns (exit status, output). The
/// harness's `Boot::run` takes no extra arguments, hence this small runner.
fn run_with(boot: &Boot, extra: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new("qemu-system-x86_64")
        .args(boot.qemu_args())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start qemu-system-x86_64");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + boot.timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for qemu") {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let log = out.join().unwrap_or_default() + &err.join().unwrap_or_default();
    (status, log.replace('\r', ""))
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn time_selftest_passes_with_icount() {
    let boot = selftest_boot();
    assert!(
        boot.hypervisor.is_file(),
        "{} is missing: run `make images`",
        boot.hypervisor.display()
    );
    let (status, log) = run_with(&boot, &["-icount", "shift=0,sleep=off"]);
    assert_eq!(status, Some(0), "log:\n{log}");
    check_common(&log);
    // With shift=0 one instruction is one nanosecond: the TSC runs at exactly 1 GHz, and QEMU's
    // APIC timer (virtual nanoseconds, divide by 1) too.
    assert!(
        log.contains("(XEN) TSC: 1000.000 MHz, APIC timer: 1000.000 MHz"),
        "log:\n{log}"
    );
}
