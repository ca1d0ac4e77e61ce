//! QEMU tests of the network: dom0's virtio-net NIC on QEMU's user-mode network, dom0's own
//! interface (smoltcp: DHCP, echo, HTTP), the bridge, netback and the domUs' netfront. The host reaches the guests through
//! QEMU's `hostfwd` on 127.0.0.1 ports picked free at run time, with plain TCP: a page fetched
//! as `curl` would, and a random stream sent to an echo service and read back byte for byte.

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring_drivers::blkif::xorshift64;
use xtests::net::{echo_stream, http_get};
use xtests::{build_dir, free_port, guest_kernel_image, virtio_net_args, Boot, XEN_CMDLINE};

/// dom0's address from QEMU's DHCP server (the first it hands out).
const DOM0_IP: &str = "10.0.2.15";

/// A random non-zero seed (time and process id, mixed), printed by the callers for replay.
fn random_seed(salt: u64) -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x =
        t ^ (u64::from(std::process::id()) << 32) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for _ in 0..4 {
        x = xorshift64(x);
    }
    x.max(1)
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn the_host_reaches_dom0_over_its_nic_page_and_16_mib_echo() {
    let (http, echo) = (free_port(), free_port());
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules: vec![(guest_kernel_image(), "stay".into())],
        timeout: Duration::from_secs(300),
        qemu_extra: virtio_net_args(&[(http, DOM0_IP, 80), (echo, DOM0_IP, 7)]),
    };
    let mut run = boot.spawn().expect("start QEMU");
    let nic = run.wait_for("net: virtio-net at", Duration::from_secs(60));
    let addr = run.wait_for("net: dom0 is", Duration::from_secs(60));
    if nic.is_none() || addr.is_none() {
        let log = run.stop().log.join("\n");
        panic!("dom0 did not bring its network up; log:\n{log}");
    }
    assert!(addr
        .unwrap()
        .contains("net: dom0 is 10.0.2.15/24 (DHCP), gateway 10.0.2.2"));

    let (status, body) = http_get(http);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("Hello from dom0 (domain 0)"), "page: {body}");
    assert!(body.contains("address 10.0.2.15/24"), "page: {body}");

    let seed = random_seed(1);
    println!("seed {seed}");
    let rate = std::panic::catch_unwind(|| echo_stream(echo, seed, 16 << 20))
        .unwrap_or_else(|e| stalled(&mut run, e));
    println!("host <-> dom0 echo: 16 MiB each way, {rate:.1} MB/s");

    // The page counts what went through.
    let (_, body) = http_get(http);
    let echoed: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("echo: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no echo counter in {body}"));
    assert_eq!(echoed, 16 << 20, "page: {body}");
    let log = run.stop().log;
    assert!(
        !log.iter()
            .any(|l| l.contains("panicked") || l.contains("FATAL")),
        "log:\n{}",
        log.join("\n")
    );
}

/// domU `id`'s address: it asks QEMU's DHCP server for 10.0.2.(20 + domid)
/// (`guest_kernel::netstack::requested_address`).
fn domu_ip(id: u16) -> String {
    format!("10.0.2.{}", 20 + id)
}

/// dom0 (services, with the NIC) and one domU per command line; each domU's port 80 and 7
/// forwarded from a free host port: returns the run and `(http, echo)` per domU.
fn boot_domus(domus: &[&str]) -> (xtests::Running, Vec<(u16, u16)>) {
    let ports: Vec<(u16, u16)> = domus.iter().map(|_| (free_port(), free_port())).collect();
    let ips: Vec<String> = (1..=domus.len() as u16).map(domu_ip).collect();
    let mut forwards = Vec::new();
    for (i, &(http, echo)) in ports.iter().enumerate() {
        forwards.push((http, ips[i].as_str(), 80));
        forwards.push((echo, ips[i].as_str(), 7));
    }
    let mut modules = vec![(guest_kernel_image(), String::new())];
    modules.extend(domus.iter().map(|c| (guest_kernel_image(), c.to_string())));
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules,
        timeout: Duration::from_secs(300),
        qemu_extra: virtio_net_args(&forwards),
    };
    (boot.spawn().expect("start QEMU"), ports)
}

/// An echo failed (it stalled, or a byte came back wrong): the debug keys print the domains,
/// their event channels and the scheduler, so the failure says which side stopped waiting for
/// what; then fails with the echo's own message and the end of the log.
fn stalled(run: &mut xtests::Running, e: Box<dyn std::any::Any + Send>) -> ! {
    let _ = run.send_input(b"\x01\x01\x01qer");
    run.wait_for("scheduler: weighted", Duration::from_secs(10));
    thread::sleep(Duration::from_secs(1));
    let log = run.log();
    let tail = &log[log.len().saturating_sub(400)..];
    let why = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    panic!("{why}; last lines:\n{}", tail.join("\n"))
}

/// Waits for `needle` or fails with the log.
fn expect_line(run: &mut xtests::Running, needle: &str, secs: u64) -> String {
    match run.wait_for(needle, Duration::from_secs(secs)) {
        Some(l) => l,
        None => panic!(
            "no line containing {needle:?} within {secs} s; log:\n{}",
            run.log().join("\n")
        ),
    }
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn two_domus_echo_16_mib_each_at_once_and_domu1_fetches_domu2s_page_over_the_bridge() {
    let (mut run, ports) = boot_domus(&["name=web1 net-fetch=2", "name=web2"]);
    for id in 1..=2u16 {
        expect_line(
            &mut run,
            &format!("(d{id}) domU: net: {}/24", domu_ip(id)),
            120,
        );
    }
    // The host fetches both pages (what `curl http://127.0.0.1:<port>/` prints).
    for (i, &(http, _)) in ports.iter().enumerate() {
        let (status, body) = http_get(http);
        assert_eq!(status, "HTTP/1.1 200 OK");
        let id = i + 1;
        assert!(
            body.contains(&format!("xen-rs domU {id} (web{id})")),
            "page: {body}"
        );
    }
    // 16 MiB of a random stream through each domU's echo service, both at once.
    let seeds = [random_seed(11), random_seed(12)];
    println!("seeds {seeds:?}");
    let movers: Vec<_> = ports
        .iter()
        .zip(seeds)
        .map(|(&(_, echo), seed)| thread::spawn(move || echo_stream(echo, seed, 16 << 20)))
        .collect();
    for (i, m) in movers.into_iter().enumerate() {
        let rate = m.join().unwrap_or_else(|e| stalled(&mut run, e));
        println!(
            "host <-> domU{}: 16 MiB echoed, {rate:.1} MB/s (both at once)",
            i + 1
        );
    }
    // domU1 fetched domU2's page through dom0's bridge.
    expect_line(&mut run, "(d1) net-fetch: ok", 120);
    let log = run.stop().log;
    assert!(
        log.iter()
            .any(|l| l.contains("(d1) net-fetch: xen-rs domU 2 (web2)")),
        "domU1 did not get domU2's page; log:\n{}",
        log.join("\n")
    );
    assert!(
        !log.iter().any(|l| l.contains("panicked")
            || l.contains("unexpected trap")
            || l.contains("FATAL")),
        "log:\n{}",
        log.join("\n")
    );
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_hostile_netfront_is_refused_and_closed_while_another_domus_16_mib_echo_completes() {
    let (mut run, ports) = boot_domus(&["name=evil net-evil net-evil-flood=4000", "name=good"]);
    expect_line(&mut run, &format!("(d2) domU: net: {}/24", domu_ip(2)), 120);
    // The good domU's transfer runs while the evil one floods netback.
    let seed = random_seed(21);
    println!("seed {seed}");
    let echo = std::panic::catch_unwind(|| echo_stream(ports[1].1, seed, 16 << 20));
    let rate = echo.unwrap_or_else(|e| stalled(&mut run, e));
    println!("host <-> good domU next to the hostile one: 16 MiB echoed, {rate:.1} MB/s");
    let refused = expect_line(&mut run, "(d1) net-evil: ", 120);
    println!("{refused}");
    expect_line(&mut run, "netback: d1 ring overrun: closing", 120);
    expect_line(&mut run, "(d1) net-evil: back end closed the vif", 120);
    // The hostile domU ends; its frames all go back to the pool.
    expect_line(&mut run, "domain 1: all", 120);
    // The good domU still answers.
    let (status, body) = http_get(ports[1].0);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("xen-rs domU 2 (good)"), "page: {body}");
    let log = run.stop().log;
    let summary = log
        .iter()
        .find(|l| l.contains("net-evil: ") && l.contains(" refused"))
        .unwrap_or_else(|| panic!("no refusal count; log:\n{}", log.join("\n")));
    let words: Vec<&str> = summary.split_whitespace().collect();
    let k = words
        .iter()
        .position(|w| *w == "of")
        .expect("<k> of <n> refused");
    assert_eq!(
        words[k - 1],
        words[k + 1],
        "not every bad packet refused: {summary}"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains("panicked") || l.contains("FATAL")),
        "log:\n{}",
        log.join("\n")
    );
}
