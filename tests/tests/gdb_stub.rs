//! QEMU test of `make debug`'s recipe: QEMU's gdb stub with the boot stopped at reset, gdb in
//! batch mode with `scripts/debug.gdb` (both images' symbols) attaches, stops in the guest kernel's
//! `_start` (ring 3, CS 0xe033), then in a hypercall handler of the hypervisor with a backtrace
//! to `handle_entry`. Skipped, with its reason printed, when gdb is not installed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xtests::{build_dir, guest_kernel_image, repo_root, Boot, XEN_CMDLINE};

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn gdb_attaches_breaks_in_the_guest_and_in_a_hypercall_handler() {
    if Command::new("gdb").arg("--version").output().is_err() {
        println!("gdb stub test: skipped: gdb is not installed");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules: vec![(guest_kernel_image(), String::new())],
        timeout: Duration::from_secs(60),
        qemu_extra: vec!["-gdb".into(), format!("tcp:127.0.0.1:{port}"), "-S".into()],
    };
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(boot.qemu_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start QEMU");
    // Wait for the stub to listen (QEMU opens it before running anything).
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "QEMU's gdb stub never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let handler = "xen_core::hypercall::console::console_io<xen::arch::x86_64::machine::HvMachine>";
    let out = Command::new("timeout")
        .current_dir(repo_root())
        .args(["60", "gdb", "-q", "-batch", "-x", "scripts/debug.gdb"])
        .args(["-ex", &format!("target remote 127.0.0.1:{port}")])
        .args(["-ex", "break _start", "-ex", "continue"])
        .args(["-ex", "info registers cs"])
        .args(["-ex", &format!("break {handler}"), "-ex", "continue"])
        .args(["-ex", "bt"])
        .output()
        .expect("run gdb");
    let _ = qemu.kill();
    let _ = qemu.wait();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        text.contains("Breakpoint 1, 0x0000000000100000 in _start ()"),
        "stopped at the guest's entry:\n{text}"
    );
    assert!(text.contains("cs             0xe033"), "in ring 3:\n{text}");
    assert!(
        text.contains(&format!("Breakpoint 2, {handler}")),
        "stopped in the hypercall handler:\n{text}"
    );
    assert!(
        // "#4 0x... in xen::...::handle_entry (regs=...)", or without the address when a
        // function it calls is inlined into it and gdb shows that as frame #3.
        text.contains("xen::arch::x86_64::dispatch::handle_entry (regs="),
        "backtrace with symbols:\n{text}"
    );
}
