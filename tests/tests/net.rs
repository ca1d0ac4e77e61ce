//! QEMU tests of the network: dom0's virtio-net NIC on QEMU's user-mode network, dom0's own
//! interface (smoltcp: DHCP, echo, HTTP) and the bridge. The host reaches the guests through
//! QEMU's `hostfwd` on 127.0.0.1 ports picked free at run time, with plain TCP: a page fetched
//! as `curl` would, and a random stream sent to an echo service and read back byte for byte.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ring_drivers::blkif::{xorshift64, xorshift_stream};
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

/// Connects to 127.0.0.1:`port`, retrying while QEMU's forward has nobody listening yet.
fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
                return s;
            }
            Err(e) if Instant::now() > deadline => panic!("connect 127.0.0.1:{port}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `GET /` as curl sends it; returns the status line and the body.
fn http_get(port: u16) -> (String, String) {
    let mut s = connect(port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: xtests\r\nAccept: */*\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).expect("read the HTTP reply");
    let reply = String::from_utf8_lossy(&reply).to_string();
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {reply:?}"));
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    assert_eq!(body.len(), len, "body length differs from Content-Length");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// Sends `len` bytes of the xorshift64 stream seeded `seed` to the echo service behind `port`
/// and reads them back at the same time; panics at the first wrong byte. Returns MB/s.
fn echo_stream(port: u16, seed: u64, len: usize) -> f64 {
    let data = xorshift_stream(seed, len);
    let s = connect(port);
    let mut reader = s.try_clone().unwrap();
    let start = Instant::now();
    let expected = data.clone();
    let rx = thread::spawn(move || {
        let mut got = vec![0u8; 64 * 1024];
        let mut at = 0usize;
        while at < expected.len() {
            let n = reader.read(&mut got).expect("read the echo");
            assert!(
                n > 0,
                "the echo service closed after {at} of {} bytes",
                expected.len()
            );
            if got[..n] != expected[at..at + n] {
                let i = (0..n).find(|&i| got[i] != expected[at + i]).unwrap();
                panic!("echoed byte {} differs (seed {seed})", at + i);
            }
            at += n;
        }
        at
    });
    let mut w = s;
    w.write_all(&data).expect("send the stream");
    let back = rx.join().expect("reader");
    let secs = start.elapsed().as_secs_f64();
    let _ = w.shutdown(Shutdown::Both);
    assert_eq!(back, len);
    len as f64 / secs / 1e6
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
    let rate = echo_stream(echo, seed, 16 << 20);
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
