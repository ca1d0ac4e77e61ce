//! Host tests for the xenstore server: tree operations, permissions, watches, transactions,
//! domains, hostile input, and a run through the real ring code with the xenbus client.
//! (One file: the cases share one set of setup helpers and read as one specification.)

use alloc::string::String;
use alloc::vec::Vec;

use hypercall_abi::io::xs_wire::*;
use ring_drivers::xenbus::xs_ring::{self, MessageAssembler, OutQueue};
use ring_drivers::xenbus::{Event, Reply, Request, WatchEvent, XenbusClient};
use ring_drivers::ArrayPage;
use zerocopy::FromBytes;

use super::*;

/// Splits a framed message.
fn parse(bytes: &[u8]) -> (XsdSockmsg, Vec<u8>) {
    let h = XsdSockmsg::read_from_bytes(&bytes[..16]).unwrap();
    assert_eq!(h.len as usize, bytes.len() - 16);
    (h, bytes[16..].to_vec())
}

/// Runs one request; returns the reply payload or the error name, and the whole output.
fn call_out(
    xs: &mut Xenstored,
    conn: u16,
    ty: u32,
    tx: u32,
    payload: &[u8],
) -> (Result<Vec<u8>, String>, Output) {
    let hdr = XsdSockmsg {
        r#type: ty,
        req_id: 77,
        tx_id: tx,
        len: payload.len() as u32,
    };
    let out = xs.handle(conn, &hdr, payload);
    let replies: Vec<_> = out
        .messages
        .iter()
        .filter(|(c, m)| *c == conn && parse(m).0.r#type != XS_WATCH_EVENT)
        .collect();
    assert_eq!(replies.len(), 1, "exactly one reply");
    let (h, p) = parse(&replies[0].1);
    assert_eq!(h.req_id, 77);
    assert_eq!(h.tx_id, tx);
    let r = if h.r#type == XS_ERROR {
        assert_eq!(p.last(), Some(&0));
        Err(String::from_utf8(p[..p.len() - 1].to_vec()).unwrap())
    } else {
        assert_eq!(h.r#type, ty);
        Ok(p)
    };
    (r, out)
}

fn call(
    xs: &mut Xenstored,
    conn: u16,
    ty: u32,
    tx: u32,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    call_out(xs, conn, ty, tx, payload).0
}

fn ok(r: Result<Vec<u8>, String>) {
    assert_eq!(r, Ok(b"OK\0".to_vec()));
}

fn err(r: Result<Vec<u8>, String>, name: &str) {
    assert_eq!(r, Err(String::from(name)));
}

fn write(xs: &mut Xenstored, conn: u16, path: &str, value: &str) -> Result<Vec<u8>, String> {
    let mut p = Vec::from(path.as_bytes());
    p.push(0);
    p.extend_from_slice(value.as_bytes());
    call(xs, conn, XS_WRITE, 0, &p)
}

fn arg(s: &str) -> Vec<u8> {
    let mut v = Vec::from(s.as_bytes());
    v.push(0);
    v
}

fn args(a: &[&str]) -> Vec<u8> {
    a.iter().flat_map(|s| arg(s)).collect()
}

fn read(xs: &mut Xenstored, conn: u16, path: &str) -> Result<Vec<u8>, String> {
    call(xs, conn, XS_READ, 0, &arg(path))
}

/// Watch events for `conn` in an output, as `(path, token)`.
fn events(out: &Output, conn: u16) -> Vec<(String, String)> {
    out.messages
        .iter()
        .filter(|(c, _)| *c == conn)
        .map(|(_, m)| parse(m))
        .filter(|(h, _)| h.r#type == XS_WATCH_EVENT)
        .map(|(h, p)| {
            assert_eq!(h.req_id, 0);
            let v: Vec<_> = p.split(|&b| b == 0).collect();
            assert_eq!(v.len(), 3, "path\\0token\\0");
            (
                String::from_utf8(v[0].to_vec()).unwrap(),
                String::from_utf8(v[1].to_vec()).unwrap(),
            )
        })
        .collect()
}

fn ev(path: &str, token: &str) -> (String, String) {
    (path.into(), token.into())
}

/// dom0 sets up /local/domain/{1,2}, each owned by its domain, and introduces both.
fn two_domains() -> Xenstored {
    let mut xs = Xenstored::new();
    for d in [1u16, 2] {
        xs.introduce(d, 0x1000 + u64::from(d), 5).unwrap();
        let home = path::home(d);
        ok(call(&mut xs, 0, XS_MKDIR, 0, &arg(&home)));
        let n = alloc::format!("n{d}");
        ok(call(&mut xs, 0, XS_SET_PERMS, 0, &args(&[&home, &n])));
    }
    xs
}

#[test]
fn read_write_mkdir_rm_directory() {
    let mut xs = Xenstored::new();
    err(read(&mut xs, 0, "/a"), "ENOENT");
    ok(write(&mut xs, 0, "/a/b/c", "hello"));
    assert_eq!(read(&mut xs, 0, "/a/b/c"), Ok(b"hello".to_vec()));
    assert_eq!(
        read(&mut xs, 0, "/a/b"),
        Ok(Vec::new()),
        "parents made, empty"
    );
    ok(write(&mut xs, 0, "/a/b/c", "bye\0with nul"));
    assert_eq!(read(&mut xs, 0, "/a/b/c"), Ok(b"bye\0with nul".to_vec()));
    ok(write(&mut xs, 0, "/a/b-x", ""));
    ok(call(&mut xs, 0, XS_MKDIR, 0, &arg("/a/d")));
    ok(call(&mut xs, 0, XS_MKDIR, 0, &arg("/a/d")));
    assert_eq!(
        call(&mut xs, 0, XS_DIRECTORY, 0, &arg("/a")),
        Ok(b"b\0b-x\0d\0".to_vec())
    );
    assert_eq!(
        call(&mut xs, 0, XS_DIRECTORY, 0, &arg("/")),
        Ok(b"a\0".to_vec())
    );
    assert_eq!(
        call(&mut xs, 0, XS_DIRECTORY, 0, &arg("/a/d")),
        Ok(Vec::new())
    );
    ok(call(&mut xs, 0, XS_RM, 0, &arg("/a/b")));
    err(read(&mut xs, 0, "/a/b/c"), "ENOENT");
    assert_eq!(
        call(&mut xs, 0, XS_DIRECTORY, 0, &arg("/a")),
        Ok(b"b-x\0d\0".to_vec())
    );
    // Removing a missing node under an existing parent is fine; with no parent it is not.
    ok(call(&mut xs, 0, XS_RM, 0, &arg("/a/nothing")));
    err(call(&mut xs, 0, XS_RM, 0, &arg("/x/y")), "ENOENT");
    err(call(&mut xs, 0, XS_RM, 0, &arg("/")), "EINVAL");
}

#[test]
fn relative_paths_and_domain_path() {
    let mut xs = two_domains();
    ok(write(&mut xs, 1, "data/x", "1"));
    assert_eq!(
        read(&mut xs, 0, "/local/domain/1/data/x"),
        Ok(b"1".to_vec())
    );
    assert_eq!(
        call(&mut xs, 1, XS_GET_DOMAIN_PATH, 0, &arg("7")),
        Ok(b"/local/domain/7\0".to_vec())
    );
    err(call(&mut xs, 1, XS_GET_DOMAIN_PATH, 0, &arg("x")), "EINVAL");
    err(
        call(&mut xs, 1, XS_GET_DOMAIN_PATH, 0, &arg("70000")),
        "EINVAL",
    );
}

#[test]
fn permissions_are_enforced() {
    let mut xs = two_domains();
    ok(write(&mut xs, 1, "secret", "s"));
    // The creator owns what it made, with the parent's default for others.
    assert_eq!(
        call(&mut xs, 0, XS_GET_PERMS, 0, &arg("/local/domain/1/secret")),
        Ok(b"n1\0".to_vec())
    );
    // Another domain can neither read, list, write nor remove it.
    err(read(&mut xs, 2, "/local/domain/1/secret"), "EACCES");
    err(
        call(&mut xs, 2, XS_DIRECTORY, 0, &arg("/local/domain/1")),
        "EACCES",
    );
    err(write(&mut xs, 2, "/local/domain/1/secret", "x"), "EACCES");
    err(write(&mut xs, 2, "/local/domain/1/new", "x"), "EACCES");
    err(
        call(&mut xs, 2, XS_RM, 0, &arg("/local/domain/1/secret")),
        "EACCES",
    );
    err(
        call(&mut xs, 2, XS_GET_PERMS, 0, &arg("/local/domain/1/secret")),
        "EACCES",
    );
    // Nor can it write outside its home (/ is "n0").
    err(write(&mut xs, 2, "/tool", "x"), "EACCES");
    // dom0 can do anything.
    assert_eq!(
        read(&mut xs, 0, "/local/domain/1/secret"),
        Ok(b"s".to_vec())
    );
    // The owner grants dom2 read access; dom2 still may not write or change perms.
    ok(call(
        &mut xs,
        1,
        XS_SET_PERMS,
        0,
        &args(&["secret", "n1", "r2"]),
    ));
    assert_eq!(
        read(&mut xs, 2, "/local/domain/1/secret"),
        Ok(b"s".to_vec())
    );
    err(write(&mut xs, 2, "/local/domain/1/secret", "x"), "EACCES");
    err(
        call(
            &mut xs,
            2,
            XS_SET_PERMS,
            0,
            &args(&["/local/domain/1/secret", "b2"]),
        ),
        "EACCES",
    );
    // The owner may not give the node away; dom0 may.
    err(
        call(&mut xs, 1, XS_SET_PERMS, 0, &args(&["secret", "n2"])),
        "EPERM",
    );
    ok(call(
        &mut xs,
        0,
        XS_SET_PERMS,
        0,
        &args(&["/local/domain/1/secret", "n2"]),
    ));
    ok(write(&mut xs, 2, "/local/domain/1/secret", "mine"));
    // Bad permission strings.
    for bad in [
        &["secret"][..],
        &["secret", "x1"],
        &["secret", "r01"],
        &["secret", ""],
    ] {
        err(call(&mut xs, 0, XS_SET_PERMS, 0, &args(bad)), "EINVAL");
    }
    err(call(&mut xs, 0, XS_SET_PERMS, 0, b"/local\0r0"), "EINVAL");
    // A "b2" default lets everyone write; dom1 creates under dom0's node and owns the child.
    ok(call(&mut xs, 0, XS_MKDIR, 0, &arg("/shared")));
    ok(call(&mut xs, 0, XS_SET_PERMS, 0, &args(&["/shared", "b0"])));
    ok(write(&mut xs, 1, "/shared/a/b", "v"));
    assert_eq!(
        call(&mut xs, 0, XS_GET_PERMS, 0, &arg("/shared/a")),
        Ok(b"b1\0".to_vec())
    );
}

#[test]
fn node_quota_limits_domus() {
    let mut xs = two_domains();
    for i in 0..QUOTA_NODES - 1 {
        ok(write(&mut xs, 1, &alloc::format!("n{i}"), ""));
    }
    err(write(&mut xs, 1, "one-too-many", ""), "ENOSPC");
    ok(write(&mut xs, 1, "n0", "overwrite is fine"));
}

#[test]
fn watches_fire_on_registration_and_changes() {
    let mut xs = two_domains();
    let (r, out) = call_out(
        &mut xs,
        0,
        XS_WATCH,
        0,
        &args(&["/local/domain/1/dev", "tok"]),
    );
    ok(r);
    // The reply comes first, then the registration event.
    assert_eq!(parse(&out.messages[0].1).0.r#type, XS_WATCH);
    assert_eq!(events(&out, 0), [ev("/local/domain/1/dev", "tok")]);
    err(
        call(
            &mut xs,
            0,
            XS_WATCH,
            0,
            &args(&["/local/domain/1/dev", "tok"]),
        ),
        "EEXIST",
    );
    let (_, out) = call_out(
        &mut xs,
        0,
        XS_WATCH,
        0,
        &args(&["/local/domain/1/dev/x", "exact"]),
    );
    assert_eq!(events(&out, 0), [ev("/local/domain/1/dev/x", "exact")]);

    // A write at or under the path fires, elsewhere not.
    let (r, out) = call_out(&mut xs, 1, XS_WRITE, 0, b"dev/x/y\0v");
    ok(r);
    assert_eq!(
        events(&out, 0),
        [
            ev("/local/domain/1/dev/x/y", "tok"),
            ev("/local/domain/1/dev/x/y", "exact")
        ]
    );
    let (_, out) = call_out(&mut xs, 1, XS_WRITE, 0, b"devx\0v");
    assert!(events(&out, 0).is_empty());

    // Removing /dev fires once for the ancestor watch (with /dev), and exactly for the
    // watch on a removed descendant.
    let (r, out) = call_out(&mut xs, 1, XS_RM, 0, &arg("dev"));
    ok(r);
    let mut got = events(&out, 0);
    got.sort();
    assert_eq!(
        got,
        [
            ev("/local/domain/1/dev", "tok"),
            ev("/local/domain/1/dev/x", "exact")
        ]
    );

    // After unwatch, nothing.
    ok(call(
        &mut xs,
        0,
        XS_UNWATCH,
        0,
        &args(&["/local/domain/1/dev", "tok"]),
    ));
    err(
        call(
            &mut xs,
            0,
            XS_UNWATCH,
            0,
            &args(&["/local/domain/1/dev", "tok"]),
        ),
        "ENOENT",
    );
    let (_, out) = call_out(&mut xs, 1, XS_WRITE, 0, b"dev\0v");
    assert!(events(&out, 0).is_empty());
}

#[test]
fn relative_watches_and_read_permission() {
    let mut xs = two_domains();
    let (_, out) = call_out(&mut xs, 1, XS_WATCH, 0, &args(&["data", "t1"]));
    assert_eq!(events(&out, 1), [ev("data", "t1")]);
    // dom2 watches dom1's node but may not read it: it hears nothing.
    ok(call(
        &mut xs,
        2,
        XS_WATCH,
        0,
        &args(&["/local/domain/1/data", "t2"]),
    ));
    let (_, out) = call_out(&mut xs, 0, XS_WRITE, 0, b"/local/domain/1/data/k\0v");
    assert_eq!(events(&out, 1), [ev("data/k", "t1")]);
    assert!(events(&out, 2).is_empty());
    // Once dom1 lets dom2 read, it hears.
    ok(call(
        &mut xs,
        1,
        XS_SET_PERMS,
        0,
        &args(&["data/k", "n1", "r2"]),
    ));
    let (_, out) = call_out(&mut xs, 1, XS_WRITE, 0, b"data/k\0w");
    assert_eq!(events(&out, 2), [ev("/local/domain/1/data/k", "t2")]);
}

#[test]
fn transactions_conflict_commit_and_abort() {
    let mut xs = two_domains();
    ok(write(&mut xs, 1, "counter", "0"));
    let tx_of = |r: Result<Vec<u8>, String>| -> u32 {
        let p = r.unwrap();
        core::str::from_utf8(&p[..p.len() - 1])
            .unwrap()
            .parse()
            .unwrap()
    };
    let t1 = tx_of(call(&mut xs, 1, XS_TRANSACTION_START, 0, b"\0"));
    let t0 = tx_of(call(&mut xs, 0, XS_TRANSACTION_START, 0, b"\0"));
    assert_ne!(t1, 0);
    // Both read the counter and write it.
    let c = "/local/domain/1/counter";
    assert_eq!(
        call(&mut xs, 1, XS_READ, t1, &arg("counter")),
        Ok(b"0".to_vec())
    );
    assert_eq!(call(&mut xs, 0, XS_READ, t0, &arg(c)), Ok(b"0".to_vec()));
    ok(call(&mut xs, 1, XS_WRITE, t1, b"counter\0one"));
    ok(call(
        &mut xs,
        0,
        XS_WRITE,
        t0,
        b"/local/domain/1/counter\0zero",
    ));
    // Reads in a transaction see its own writes; outside, nothing changed yet.
    assert_eq!(
        call(&mut xs, 1, XS_READ, t1, &arg("counter")),
        Ok(b"one".to_vec())
    );
    assert_eq!(read(&mut xs, 1, "counter"), Ok(b"0".to_vec()));
    // dom0 commits first; dom1's commit then fails with EAGAIN and its writes vanish.
    ok(call(&mut xs, 0, XS_TRANSACTION_END, t0, &arg("T")));
    assert_eq!(read(&mut xs, 1, "counter"), Ok(b"zero".to_vec()));
    err(
        call(&mut xs, 1, XS_TRANSACTION_END, t1, &arg("T")),
        "EAGAIN",
    );
    assert_eq!(read(&mut xs, 1, "counter"), Ok(b"zero".to_vec()));
    // The failed transaction is gone.
    err(call(&mut xs, 1, XS_READ, t1, &arg("counter")), "ENOENT");

    // Abort: nothing is applied.
    let t = tx_of(call(&mut xs, 1, XS_TRANSACTION_START, 0, b"\0"));
    ok(call(&mut xs, 1, XS_WRITE, t, b"new/node\0x"));
    ok(call(&mut xs, 1, XS_TRANSACTION_END, t, &arg("F")));
    err(read(&mut xs, 1, "new/node"), "ENOENT");

    // A commit applies creates and removes, and fires watches only then.
    ok(call(
        &mut xs,
        0,
        XS_WATCH,
        0,
        &args(&["/local/domain/1", "w"]),
    ));
    let t = tx_of(call(&mut xs, 1, XS_TRANSACTION_START, 0, b"\0"));
    let (_, out) = call_out(&mut xs, 1, XS_WRITE, t, b"a/b\0x");
    assert!(events(&out, 0).is_empty());
    ok(call(&mut xs, 1, XS_RM, t, &arg("counter")));
    // Unrelated changes by others do not conflict.
    ok(write(&mut xs, 2, "elsewhere", "x"));
    let (r, out) = call_out(&mut xs, 1, XS_TRANSACTION_END, t, &arg("T"));
    ok(r);
    assert_eq!(
        events(&out, 0),
        [
            ev("/local/domain/1/a/b", "w"),
            ev("/local/domain/1/counter", "w")
        ]
    );
    assert_eq!(read(&mut xs, 1, "a/b"), Ok(b"x".to_vec()));
    err(read(&mut xs, 1, "counter"), "ENOENT");

    // Listing a directory conflicts with a child being added meanwhile.
    let t = tx_of(call(&mut xs, 1, XS_TRANSACTION_START, 0, b"\0"));
    call(&mut xs, 1, XS_DIRECTORY, t, &arg("a")).unwrap();
    ok(call(&mut xs, 1, XS_WRITE, t, b"flag\0x"));
    ok(write(&mut xs, 0, "/local/domain/1/a/c", ""));
    err(call(&mut xs, 1, XS_TRANSACTION_END, t, &arg("T")), "EAGAIN");

    // Misuse.
    err(call(&mut xs, 1, XS_TRANSACTION_START, 99, b"\0"), "EBUSY");
    err(call(&mut xs, 1, XS_TRANSACTION_END, 0, &arg("T")), "ENOENT");
    err(
        call(&mut xs, 1, XS_TRANSACTION_END, 12345, &arg("T")),
        "ENOENT",
    );
    let t = tx_of(call(&mut xs, 1, XS_TRANSACTION_START, 0, b"\0"));
    err(
        call(&mut xs, 1, XS_TRANSACTION_END, t, &arg("maybe")),
        "EINVAL",
    );
    // Another domain cannot use dom1's transaction.
    err(call(&mut xs, 2, XS_READ, t, &arg("/")), "ENOENT");
    // Quota.
    for _ in 1..QUOTA_TRANSACTIONS {
        call(&mut xs, 1, XS_TRANSACTION_START, 0, b"\0").unwrap();
    }
    err(call(&mut xs, 1, XS_TRANSACTION_START, 0, b"\0"), "ENOSPC");
}

#[test]
fn introduce_and_release() {
    let mut xs = Xenstored::new();
    ok(call(
        &mut xs,
        0,
        XS_WATCH,
        0,
        &args(&["@introduceDomain", "in"]),
    ));
    ok(call(
        &mut xs,
        0,
        XS_WATCH,
        0,
        &args(&["@releaseDomain", "out"]),
    ));
    assert_eq!(
        call(&mut xs, 0, XS_IS_DOMAIN_INTRODUCED, 0, &arg("3")),
        Ok(b"F\0".to_vec())
    );
    let (r, out) = call_out(&mut xs, 0, XS_INTRODUCE, 0, &args(&["3", "4660", "9"]));
    ok(r);
    assert_eq!(
        out.actions,
        [Action::Introduce(Introduction {
            domid: 3,
            mfn: 4660,
            evtchn: 9
        })]
    );
    assert_eq!(events(&out, 0), [ev("@introduceDomain", "in")]);
    assert_eq!(
        call(&mut xs, 0, XS_IS_DOMAIN_INTRODUCED, 0, &arg("3")),
        Ok(b"T\0".to_vec())
    );
    assert_eq!(xs.ring(3).map(|r| r.mfn), Some(4660));
    // Re-introducing only updates the ring.
    let (r, out) = call_out(&mut xs, 0, XS_INTRODUCE, 0, &args(&["3", "4661", "9"]));
    ok(r);
    assert!(events(&out, 0).is_empty());
    assert_eq!(out.actions.len(), 1);

    // Only dom0 may introduce or release.
    err(
        call(&mut xs, 3, XS_INTRODUCE, 0, &args(&["4", "1", "1"])),
        "EACCES",
    );
    err(call(&mut xs, 3, XS_RELEASE, 0, &arg("3")), "EACCES");
    err(
        call(&mut xs, 0, XS_INTRODUCE, 0, &args(&["0", "1", "1"])),
        "EINVAL",
    );
    err(
        call(&mut xs, 0, XS_INTRODUCE, 0, &args(&["4", "1"])),
        "EINVAL",
    );
    err(
        call(&mut xs, 0, XS_INTRODUCE, 0, &args(&["4", "x", "1"])),
        "EINVAL",
    );
    err(
        call(&mut xs, 0, XS_INTRODUCE, 0, &args(&["32752", "1", "1"])),
        "EINVAL",
    );

    // dom3 watches something; release drops its watches and its connection.
    ok(call(&mut xs, 3, XS_WATCH, 0, &args(&["/", "all"])));
    let (r, out) = call_out(&mut xs, 0, XS_RELEASE, 0, &arg("3"));
    ok(r);
    assert_eq!(out.actions, [Action::Release { domid: 3 }]);
    assert_eq!(events(&out, 0), [ev("@releaseDomain", "out")]);
    assert!(!xs.is_introduced(3));
    let (_, out) = call_out(&mut xs, 0, XS_WRITE, 0, b"/x\0y");
    assert!(events(&out, 3).is_empty());
    err(call(&mut xs, 3, XS_READ, 0, &arg("/")), "EACCES");
    err(call(&mut xs, 0, XS_RELEASE, 0, &arg("3")), "ENOENT");
    err(call(&mut xs, 0, XS_RELEASE, 0, &arg("0")), "EINVAL");
}

#[test]
fn hostile_input_gets_errors_not_panics() {
    let mut xs = two_domains();
    // Header length disagreeing with the payload.
    let hdr = XsdSockmsg {
        r#type: XS_READ,
        req_id: 1,
        tx_id: 0,
        len: 10,
    };
    let out = xs.handle(1, &hdr, b"/a\0");
    let (h, p) = parse(&out.messages[0].1);
    assert_eq!((h.r#type, p.as_slice()), (XS_ERROR, &b"EINVAL\0"[..]));
    // Missing NUL terminators, extra arguments, bad paths.
    err(call(&mut xs, 1, XS_READ, 0, b"/local"), "EINVAL");
    err(call(&mut xs, 1, XS_READ, 0, b"/local\0/x\0"), "EINVAL");
    err(call(&mut xs, 1, XS_READ, 0, b""), "EINVAL");
    err(call(&mut xs, 1, XS_WRITE, 0, b"no-nul"), "EINVAL");
    err(call(&mut xs, 1, XS_WATCH, 0, b"/a\0"), "EINVAL");
    err(call(&mut xs, 1, XS_WATCH, 0, b"/a\0t"), "EINVAL");
    for bad in ["/a//b", "/a/", "a b", "/\u{e9}", "@introduceDomain", ""] {
        err(call(&mut xs, 0, XS_WRITE, 0, &arg(bad)), "EINVAL");
        err(read(&mut xs, 0, bad), "EINVAL");
    }
    err(
        call(&mut xs, 0, XS_WATCH, 0, &args(&["/a//b", "t"])),
        "EINVAL",
    );
    let long = alloc::format!("/{}", "a".repeat(XENSTORE_ABS_PATH_MAX));
    err(write(&mut xs, 0, &long, "x"), "EINVAL");
    // Oversized payload.
    let big = alloc::vec![b'a'; XENSTORE_PAYLOAD_MAX + 1];
    err(call(&mut xs, 0, XS_WRITE, 0, &big), "EINVAL");
    // Unknown, unimplemented and server-only types.
    for ty in [XS_INVALID, XS_TYPE_COUNT, 1000, XS_WATCH_EVENT, XS_ERROR] {
        err(call(&mut xs, 1, ty, 0, b"\0"), "EINVAL");
    }
    err(call(&mut xs, 0, XS_DIRECTORY_PART, 0, b"/\0"), "ENOSYS");
    // A directory whose listing exceeds the payload limit.
    for i in 0..700 {
        ok(write(&mut xs, 0, &alloc::format!("/big/child-{i:04}"), ""));
    }
    err(call(&mut xs, 0, XS_DIRECTORY, 0, &arg("/big")), "E2BIG");
}

#[test]
fn random_messages_never_panic() {
    let mut xs = two_domains();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"/\0ab1@-_TF0nrwb \xff";
    for _ in 0..20_000 {
        let conn = (rand() % 4) as u16;
        let ty = (rand() % 26) as u32;
        let len = (rand() % 24) as usize;
        let payload: Vec<u8> = (0..len)
            .map(|_| alphabet[(rand() % alphabet.len() as u64) as usize])
            .collect();
        let hdr = XsdSockmsg {
            r#type: ty,
            req_id: 5,
            tx_id: (rand() % 4) as u32,
            len: if rand() % 16 == 0 { 3 } else { len as u32 },
        };
        let out = xs.handle(conn, &hdr, &payload);
        assert!(out
            .messages
            .iter()
            .any(|(c, m)| *c == conn && parse(m).0.req_id == 5));
    }
}

/// Moves server replies for `conn` onto its ring, handling every complete request.
fn serve(
    xs: &mut Xenstored,
    conn: u16,
    page: &mut ArrayPage,
    asm: &mut MessageAssembler,
    out: &mut OutQueue,
) {
    out.flush_responses(page).unwrap();
    while let Some(msg) = xs_ring::read_request_message(page, asm).unwrap() {
        for (c, bytes) in xs.handle_message(conn, &msg).messages {
            assert_eq!(c, conn, "single-client test");
            out.push(&bytes);
        }
        out.flush_responses(page).unwrap();
    }
}

#[test]
fn xenbus_client_through_the_ring() {
    let mut xs = two_domains();
    let mut page = ArrayPage::new();
    let mut client = XenbusClient::new();
    let mut asm = MessageAssembler::new();
    let mut out = OutQueue::new();
    let mut events: Vec<Event> = Vec::new();

    let big = alloc::vec![b'z'; QUOTA_ENTRY_SIZE];
    let reqs = [
        client
            .send(
                0,
                &Request::Watch {
                    path: "device",
                    token: "dev",
                },
            )
            .unwrap(),
        client
            .send(0, &Request::Write("device/vbd/768/state", b"1"))
            .unwrap(),
        client.send(0, &Request::Write("big", &big)).unwrap(),
        client.send(0, &Request::Read("big")).unwrap(),
        client.send(0, &Request::Read("/local/domain/2")).unwrap(),
        client.send(0, &Request::Directory("device/vbd")).unwrap(),
        client.send(0, &Request::GetDomainPath(1)).unwrap(),
        client.send(0, &Request::GetPerms("device")).unwrap(),
        client.send(0, &Request::TransactionStart).unwrap(),
    ];
    // Pump both ends until the client has nothing outstanding (the big requests and replies
    // need several rounds through the 1 KiB rings).
    for _ in 0..50 {
        client.pump(&mut page, &mut |e| events.push(e)).unwrap();
        serve(&mut xs, 1, &mut page, &mut asm, &mut out);
        if client.outstanding() == 0 && out.is_empty() {
            client.pump(&mut page, &mut |e| events.push(e)).unwrap();
            break;
        }
    }
    assert_eq!(client.outstanding(), 0);
    let reply = |id: u32| {
        events.iter().find_map(|e| match e {
            Event::Reply { req_id, reply, .. } if *req_id == id => Some(reply.clone()),
            _ => None,
        })
    };
    assert_eq!(reply(reqs[0]), Some(Reply::Ok));
    assert_eq!(reply(reqs[1]), Some(Reply::Ok));
    assert_eq!(reply(reqs[3]), Some(Reply::Value(big.clone())));
    assert_eq!(
        reply(reqs[4]),
        Some(Reply::Error(hypercall_abi::errno::Errno::EACCES))
    );
    assert_eq!(
        reply(reqs[5]),
        Some(Reply::Directory(alloc::vec!["768".into()]))
    );
    assert_eq!(
        reply(reqs[6]),
        Some(Reply::DomainPath("/local/domain/1".into()))
    );
    assert!(matches!(reply(reqs[7]), Some(Reply::Perms(p)) if p[0].domid == 1));
    let Some(Reply::TransactionId(tx)) = reply(reqs[8]) else {
        panic!("no transaction id");
    };
    let watches: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Watch(w) => Some(w.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        watches,
        [
            WatchEvent {
                path: "device".into(),
                token: "dev".into()
            },
            WatchEvent {
                path: "device/vbd/768/state".into(),
                token: "dev".into()
            },
        ]
    );

    // Finish the transaction through the ring too.
    events.clear();
    let w = client
        .send(tx, &Request::Write("device/vbd/768/state", b"4"))
        .unwrap();
    let end = client.send(tx, &Request::TransactionEnd(true)).unwrap();
    for _ in 0..4 {
        client.pump(&mut page, &mut |e| events.push(e)).unwrap();
        serve(&mut xs, 1, &mut page, &mut asm, &mut out);
    }
    client.pump(&mut page, &mut |e| events.push(e)).unwrap();
    let replies: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Reply { req_id, reply, .. } => Some((*req_id, reply.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(replies, [(w, Reply::Ok), (end, Reply::Ok)]);
    assert!(events.contains(&Event::Watch(WatchEvent {
        path: "device/vbd/768/state".into(),
        token: "dev".into()
    })));
    assert_eq!(
        read(&mut xs, 0, "/local/domain/1/device/vbd/768/state"),
        Ok(b"4".to_vec())
    );
}

#[test]
fn an_unprivileged_value_beyond_the_entry_quota_is_refused() {
    let mut xs = two_domains();
    let big = "x".repeat(QUOTA_ENTRY_SIZE + 1);
    err(write(&mut xs, 1, "big", &big), "ENOSPC");
    ok(write(&mut xs, 1, "fits", &"x".repeat(QUOTA_ENTRY_SIZE)));
    // dom0 is not bound by the quota.
    ok(write(&mut xs, 0, "/local/domain/1/big", &big));
}

#[test]
fn transactions_cannot_together_exceed_the_node_quota() {
    let mut xs = two_domains();
    let start = |xs: &mut Xenstored| -> u32 {
        let r = call(xs, 1, XS_TRANSACTION_START, 0, &arg("")).unwrap();
        core::str::from_utf8(&r[..r.len() - 1])
            .unwrap()
            .parse()
            .unwrap()
    };
    // Two directories, so the transactions touch no common node (no conflict).
    ok(write(&mut xs, 1, "x", ""));
    ok(write(&mut xs, 1, "y", ""));
    let (t1, t2) = (start(&mut xs), start(&mut xs));
    // Each stays under the quota on its own snapshot.
    for (t, dir) in [(t1, "x"), (t2, "y")] {
        for i in 0..600 {
            let mut p = Vec::from(alloc::format!("{dir}/n{i}").as_bytes());
            p.push(0);
            ok(call(&mut xs, 1, XS_WRITE, t, &p));
        }
    }
    ok(call(&mut xs, 1, XS_TRANSACTION_END, t1, &arg("T")));
    err(
        call(&mut xs, 1, XS_TRANSACTION_END, t2, &arg("T")),
        "ENOSPC",
    );
}

/// A transaction keeps only what it changes: it does not copy the tree (64 domUs each in one at
/// once made dom0 hold 64 copies of a 3000-node tree). It reads nodes it has not touched from the
/// live tree, as C xenstored does, and still conflicts on the ones it touched.
#[test]
fn a_transaction_holds_only_what_it_changed_and_reads_the_live_tree() {
    let mut xs = two_domains();
    for i in 0..200 {
        ok(write(&mut xs, 0, &format!("/tool/n{i}"), "v"));
    }
    ok(write(&mut xs, 1, "seen", "0"));
    let p = call(&mut xs, 1, XS_TRANSACTION_START, 0, b"\0").unwrap();
    let t: u32 = core::str::from_utf8(&p[..p.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    let overlay_len = |xs: &Xenstored| {
        let tx = &xs.connections[&1].transactions[&t];
        tx.overlay.nodes.len() + tx.overlay.removed.len()
    };
    assert_eq!(overlay_len(&xs), 0, "nothing copied at the start");
    ok(call(&mut xs, 1, XS_WRITE, t, b"mine\0x"));
    // The node and its parent (whose children changed), nothing else.
    assert_eq!(overlay_len(&xs), 2);
    // A node the transaction has not touched: the live value, changed after it started.
    ok(write(&mut xs, 1, "late", "new"));
    assert_eq!(
        call(&mut xs, 1, XS_READ, t, &arg("late")),
        Ok(b"new".to_vec())
    );
    // Its own write, not visible outside.
    assert_eq!(
        call(&mut xs, 1, XS_READ, t, &arg("mine")),
        Ok(b"x".to_vec())
    );
    err(read(&mut xs, 1, "mine"), "ENOENT");
    // A removal in the transaction hides the live node from it only.
    ok(call(&mut xs, 1, XS_RM, t, &arg("seen")));
    err(call(&mut xs, 1, XS_READ, t, &arg("seen")), "ENOENT");
    assert_eq!(read(&mut xs, 1, "seen"), Ok(b"0".to_vec()));
    // The directory listing merges both.
    let list = call(&mut xs, 1, XS_DIRECTORY, t, &arg("/local/domain/1")).unwrap();
    let names: Vec<&[u8]> = list.split(|&b| b == 0).filter(|s| !s.is_empty()).collect();
    assert!(names.contains(&&b"mine"[..]) && names.contains(&&b"late"[..]));
    assert!(!names.contains(&&b"seen"[..]));
    // Someone changes a node it read: EAGAIN, nothing applied.
    ok(write(&mut xs, 0, "/local/domain/1/late", "other"));
    err(call(&mut xs, 1, XS_TRANSACTION_END, t, &arg("T")), "EAGAIN");
    err(read(&mut xs, 1, "mine"), "ENOENT");
    assert_eq!(read(&mut xs, 1, "seen"), Ok(b"0".to_vec()));
}
