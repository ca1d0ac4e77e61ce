//! Host-side TCP clients for the network tests and `make bench`: connecting to a forwarded
//! port while QEMU's forward has nobody behind it yet, `GET /` as curl sends it, a random
//! stream through an echo service checked byte for byte, and the echo round trip.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ring_drivers::blkif::xorshift_stream;

/// Connects to 127.0.0.1:`port`, retrying for 30 s while nobody answers yet.
pub fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
                let _ = s.set_nodelay(true);
                return s;
            }
            Err(e) if Instant::now() > deadline => panic!("connect 127.0.0.1:{port}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `GET /` as curl sends it; returns the status line and the body (checked against
/// `Content-Length`).
pub fn http_get(port: u16) -> (String, String) {
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
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v)
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    assert_eq!(body.len(), len, "body length differs from Content-Length");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// Sends `len` bytes of the xorshift64 stream seeded `seed` to the echo service behind `port`
/// while reading them back; panics at the first wrong byte. Returns MB/s (10^6 bytes per
/// second, of the stream's length, send start to last byte back).
pub fn echo_stream(port: u16, seed: u64, len: usize) -> f64 {
    let data = xorshift_stream(seed, len);
    let s = connect(port);
    // A transfer that stalls fails the test with where it stopped instead of hanging it (and
    // CI) for ever: no step of a working echo waits a minute.
    let stall = Some(std::time::Duration::from_secs(60));
    s.set_read_timeout(stall).unwrap();
    s.set_write_timeout(stall).unwrap();
    let mut reader = s.try_clone().unwrap();
    let start = Instant::now();
    let expected = data.clone();
    let rx = thread::spawn(move || {
        let mut got = vec![0u8; 64 * 1024];
        let mut at = 0usize;
        let mut last = Instant::now();
        let mut worst = (std::time::Duration::ZERO, 0usize);
        while at < expected.len() {
            let n = reader.read(&mut got).unwrap_or_else(|e| {
                panic!(
                    "the echo stalled after {at} of {} bytes came back: {e}",
                    expected.len()
                )
            });
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
            let gap = last.elapsed();
            if gap > worst.0 {
                worst = (gap, at);
            }
            last = Instant::now();
        }
        if worst.0 > std::time::Duration::from_secs(2) {
            println!("echo: longest wait {:?} before byte {}", worst.0, worst.1);
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

/// Median round trip of up to `n` one-byte exchanges with the echo service behind `port`, in
/// µs, and how many were made (it stops after 20 s: a stack that delays its acknowledgements
/// makes each one slow).
pub fn echo_rtt_us(port: u16, n: usize) -> (f64, usize) {
    let mut s = connect(port);
    let mut times = Vec::with_capacity(n);
    let mut b = [0u8; 1];
    let start = Instant::now();
    for i in 0..n {
        if i > 0 && start.elapsed() > Duration::from_secs(20) {
            break;
        }
        let t = Instant::now();
        s.write_all(&[i as u8]).expect("send");
        s.read_exact(&mut b).expect("echo");
        assert_eq!(b[0], i as u8, "echo answered another byte");
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    (times[times.len() / 2], times.len())
}

/// Sends `len` bytes of the xorshift64 stream from seed 1 to the sink service behind `port`
/// (port 9 of a guest), half-closes, and expects `ok <len>`: MB/s of the one-way transfer
/// (start to the verdict).
pub fn sink_stream(port: u16, len: usize) -> f64 {
    let data = xorshift_stream(1, len);
    let mut s = connect(port);
    let start = Instant::now();
    s.write_all(&data).expect("send to the sink");
    s.shutdown(Shutdown::Write).expect("half-close");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("the sink's verdict");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(reply.trim(), format!("ok {len}"), "the sink's verdict");
    len as f64 / secs / 1e6
}

/// Reads `len` bytes from the source service behind `port` (port 19 of a guest), checked
/// against the xorshift64 stream from seed 1, then closes: MB/s of the one-way transfer.
pub fn source_stream(port: u16, len: usize) -> f64 {
    let expected = xorshift_stream(1, len);
    let mut s = connect(port);
    let start = Instant::now();
    let mut got = vec![0u8; 64 * 1024];
    let mut at = 0usize;
    while at < len {
        let want = (len - at).min(got.len());
        let n = s.read(&mut got[..want]).expect("read from the source");
        assert!(n > 0, "the source closed after {at} of {len} bytes");
        if got[..n] != expected[at..at + n] {
            let i = (0..n).find(|&i| got[i] != expected[at + i]).unwrap();
            panic!("source byte {} differs", at + i);
        }
        at += n;
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = s.shutdown(Shutdown::Both);
    len as f64 / secs / 1e6
}
