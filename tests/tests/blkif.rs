//! QEMU tests of the block split driver: domUs reach dom0's virtio disk through blkfront and
//! blkback (xenstore handshake, a grant-mapped ring, event channels, grant copies). The host then
//! checks the disk image itself: the data a domU wrote is there, at the sector it chose, and no
//! other byte changed. A misbehaving front end gets every bad request refused and its ring closed
//! while a well-behaved domU's I/O goes on.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring_drivers::blkif::{xorshift64, xorshift_stream};
use xtests::{build_dir, guest_kernel_image, Boot, Ending, Run, XEN_CMDLINE};

const SECTOR: usize = 512;
/// The test disk: 16 MiB of zeros.
const DISK_BYTES: usize = 16 << 20;
const DISK_SECTORS: u64 = (DISK_BYTES / SECTOR) as u64;

/// A random non-zero number (time and process id, mixed), printed by the callers for replay.
fn random(salt: u64) -> u64 {
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

/// A fresh disk image of zeros under the build directory, unique to this test and process.
fn fresh_disk(name: &str, bytes: &[u8]) -> PathBuf {
    let path = build_dir().join(format!("blkif-test-{name}-{}.img", std::process::id()));
    std::fs::write(&path, bytes).expect("write the test disk");
    path
}

/// A finished boot: its run, the disk image as it left it (the file is removed), its log.
struct Booted {
    run: Run,
    image: Vec<u8>,
    log: String,
}

/// Boots dom0 (services mode) and one domU per command line, with `disk` as dom0's virtio disk;
/// requires a clean power-off.
fn boot(disk: &Path, domus: &[String]) -> Booted {
    boot_with(disk, "", domus)
}

/// As [`boot`], with `dom0` as dom0's command line.
fn boot_with(disk: &Path, dom0: &str, domus: &[String]) -> Booted {
    let mut modules = vec![(guest_kernel_image(), dom0.to_string())];
    modules.extend(domus.iter().map(|c| (guest_kernel_image(), c.clone())));
    let boot = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules,
        timeout: Duration::from_secs(180),
        qemu_extra: xtests::virtio_disk_args(disk),
    };
    let run = boot.run().unwrap_or_else(|e| panic!("harness error: {e}"));
    let image = std::fs::read(disk).expect("read the test disk");
    let _ = std::fs::remove_file(disk);
    let log = run.log.join("\n");
    assert_eq!(run.ending, Ending::Exited(0), "log:\n{log}");
    Booted { run, image, log }
}

/// Checks that `image` holds `regions` (sector, bytes) and zeros everywhere else.
fn check_image(image: &[u8], regions: &[(u64, &[u8])]) {
    assert_eq!(image.len(), DISK_BYTES, "the image changed size");
    let mut expected = vec![0u8; DISK_BYTES];
    for &(sector, data) in regions {
        let at = sector as usize * SECTOR;
        expected[at..at + data.len()].copy_from_slice(data);
    }
    if let Some(i) = (0..DISK_BYTES).find(|&i| image[i] != expected[i]) {
        panic!(
            "image byte {i} (sector {}) is {:#04x}, expected {:#04x}",
            i / SECTOR,
            image[i],
            expected[i]
        );
    }
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_domu_writes_an_xorshift_stream_through_blkfront_and_the_host_finds_it_on_the_disk() {
    let seed = random(1);
    let sectors = 160u64; // 80 KiB: 11-page requests, a partial one, several in flight
    let start = random(2) % (DISK_SECTORS - sectors);
    println!("seed {seed}, start sector {start}, {sectors} sectors");
    let disk = fresh_disk("selftest", &vec![0u8; DISK_BYTES]);
    let Booted { run, image, log } = boot(
        &disk,
        &[format!("name=blk blk-selftest={seed},{start},{sectors}")],
    );
    run.expect("blkback: the domUs' vbds are slots of the virtio disk (32768 sectors)");
    run.expect("blkback: d1 vbd 51712 is sectors 0..32768 of the disk (slot 0)");
    run.expect("blkback: d1 vbd 51712 connected: ring-ref");
    run.expect("(d1) domU: blkfront: vbd 51712 connected, 32768 sectors");
    run.expect("(d1) blk-selftest: reconnected");
    let bytes = sectors as usize * SECTOR;
    run.expect(&format!("(d1) blk-selftest: ok {bytes} bytes"));
    run.expect("toolstack: d1 (blk) shut down (poweroff)");
    // Both ends offer persistent grants: every read and write went through grants mapped once
    // (on both connections), none was grant-copied, and all were unmapped at disconnect.
    let back = blkback_lines(&run.log, 1);
    assert_eq!(back.len(), 2, "one line per connection:\n{log}");
    for l in &back {
        assert_eq!(field(l, "persistent"), 1, "{l}");
        assert_eq!(field(l, "grant_copy_requests"), 0, "{l}");
        assert!(field(l, "persistent_maps") > 0, "{l}");
        assert_eq!(
            field(l, "grant_unmaps"),
            field(l, "persistent_maps") + field(l, "grant_maps"),
            "{l}"
        );
        assert_eq!(field(l, "unmap_failures"), 0, "{l}");
    }
    check_image(&image, &[(start, &xorshift_stream(seed, bytes))]);
}

/// The `bench blkback dom=<domid> ...` lines (one per connection).
fn blkback_lines(log: &[String], domid: u16) -> Vec<String> {
    let pat = format!("bench blkback dom={domid} ");
    log.iter().filter(|l| l.contains(&pat)).cloned().collect()
}

/// The number after ` <key>=` in a counters line.
fn field(line: &str, key: &str) -> u64 {
    line.split(&format!(" {key}="))
        .nth(1)
        .and_then(|v| v.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_front_end_that_does_not_offer_persistent_grants_gets_them_grant_copied() {
    let seed = random(5);
    let sectors = 160u64;
    let start = random(6) % (DISK_SECTORS - sectors);
    println!("seed {seed}, start sector {start}, {sectors} sectors");
    let disk = fresh_disk("nopersistent", &vec![0u8; DISK_BYTES]);
    let Booted { run, image, log } = boot(
        &disk,
        &[format!(
            "name=blk blk-no-persistent blk-selftest={seed},{start},{sectors}"
        )],
    );
    let bytes = sectors as usize * SECTOR;
    run.expect(&format!("(d1) blk-selftest: ok {bytes} bytes"));
    let back = blkback_lines(&run.log, 1);
    assert_eq!(back.len(), 2, "one line per connection:\n{log}");
    for l in &back {
        assert_eq!(field(l, "persistent"), 0, "{l}");
        assert_eq!(field(l, "persistent_maps"), 0, "{l}");
        assert_eq!(field(l, "errors"), 0, "{l}");
        // Without persistent grants the data is grant-copied, or mapped for the device's DMA
        // for one batch and unmapped after it.
        assert_eq!(field(l, "grant_maps"), field(l, "grant_unmaps"), "{l}");
        assert_eq!(field(l, "mapped_copy_requests"), 0, "{l}");
        // Every request but the first connection's flush.
        assert!(
            field(l, "grant_copy_requests") + field(l, "dma_requests") + 1 >= field(l, "requests"),
            "{l}"
        );
    }
    check_image(&image, &[(start, &xorshift_stream(seed, bytes))]);
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_misbehaving_front_end_is_refused_and_closed_while_another_domu_does_its_io() {
    // Two domUs: each has half the disk. The good one writes at a random sector of its half
    // (the second); the bad one tries, among other things, to write across the end of its half.
    let seed = random(3);
    let sectors = 128u64;
    let half = DISK_SECTORS / 2;
    // (From sector 4: the bad domU's write across its end would land on 16384..16387.)
    let start = 4 + random(4) % (half - 4 - sectors);
    println!("seed {seed}, start sector {start} of the second half, {sectors} sectors");
    let disk = fresh_disk("evil", &vec![0u8; DISK_BYTES]);
    let Booted { run, image, log } = boot(
        &disk,
        &[
            "name=evil blk-evil".into(),
            format!("name=good blk-selftest={seed},{start},{sectors}"),
        ],
    );
    for (case, status) in [
        ("bad-gref", -1),
        ("nr-segments-0", -1),
        ("nr-segments-12", -1),
        ("first-sect-after-last", -1),
        ("past-the-end", -1),
        ("write-across-the-end", -1),
        ("unknown-op", -1),
        ("write-barrier", -2),
    ] {
        run.expect(&format!("(d1) blk-evil: {case} -> {status}"));
    }
    run.expect("(d1) blk-evil: 8 of 8 refused");
    // 880 references never granted, more than dom0's grant-map area has slots: all refused,
    // and none kept a slot: the good read after them was mapped for the device (DMA), not
    // grant-copied for want of a slot (the slots leaked before stop 33).
    run.expect("(d1) blk-evil: a flood of 880 unknown references: 80 of 80 requests refused");
    run.expect("(d1) blk-evil: a good read after the flood -> 0");
    let back = blkback_lines(&run.log, 1);
    assert_eq!(back.len(), 1, "one connection:\n{log}");
    assert_eq!(field(&back[0], "grant_copy_requests"), 0, "{}", back[0]);
    assert_eq!(field(&back[0], "dma_requests"), 1, "{}", back[0]);
    run.expect("blkback: d1 vbd 51712 is sectors 0..16384 of the disk (slot 0)");
    run.expect("blkback: d2 vbd 51712 is sectors 16384..32768 of the disk (slot 1)");
    run.expect("(d1) domU: blkfront: vbd 51712 connected, 16384 sectors");
    run.expect("(d2) domU: blkfront: vbd 51712 connected, 16384 sectors");
    run.expect("(d1) blk-evil: overrun sent");
    run.expect("blkback: d1 ring overrun: closing");
    run.expect("(d1) blk-evil: back end closed the ring (state 5)");
    run.expect("toolstack: d1 (evil) shut down (poweroff)");
    assert!(
        !log.contains("blkback: d2 ring overrun"),
        "the good domU's ring was closed:\n{log}"
    );
    let bytes = sectors as usize * SECTOR;
    run.expect(&format!("(d2) blk-selftest: ok {bytes} bytes"));
    run.expect("toolstack: d2 (good) shut down (poweroff)");
    run.expect("services: no domU left, powering off");
    // Every bad request was refused before touching the disk: only the good domU's data is
    // there, in the second half.
    check_image(&image, &[(half + start, &xorshift_stream(seed, bytes))]);
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn the_default_demo_reads_sector_0_through_the_split_driver() {
    let mut bytes = vec![0u8; DISK_BYTES];
    bytes[..16].copy_from_slice(b"xen-rs blk demo!");
    let disk = fresh_disk("demo", &bytes);
    let Booted { run, image, .. } = boot(&disk, &["name=demo".into()]);
    run.expect("(d1) domU: ping-pong 100 round trips ok, grant copy verified");
    run.expect("(d1) domU: blkfront: vbd 51712 connected, 32768 sectors");
    run.expect("(d1) domU: blkfront: read sector 0: 78656e2d727320626c6b2064656d6f21...");
    // The front end closed the device before powering off: the back end disconnected then.
    run.expect("bench blkback dom=1 requests=1 errors=0 sectors_read=1");
    assert!(image == bytes, "a read changed the disk");
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_domu_that_dies_with_its_vbd_connected_is_torn_down_and_reclaimed() {
    let disk = fresh_disk("crash", &vec![0u8; DISK_BYTES]);
    let Booted { run, log, .. } = boot(&disk, &["name=dier blk-crash".into()]);
    run.expect("(d1) domU: blkfront: vbd 51712 connected, 32768 sectors");
    run.expect("toolstack: d1 (dier) crashed");
    // The back end disconnected (its counters) although the grant mapping was already revoked.
    run.expect("bench blkback dom=1 requests=0");
    run.expect("toolstack: d1 (dier) destroyed");
    // (dom0's maptrack frame, taken when blkback mapped the ring, stays dom0's: `free_frames`
    // adds back what dom0's tables took.)
    let (before, after) = run.free_frames();
    assert_eq!(after, Some(before), "frames lost; log:\n{log}");
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn a_front_end_reconnects_many_times_reusing_its_grant_references() {
    // Each connect grants a ring page and 32 data pages; 40 of them need 1320 references, more
    // than one grant frame holds (512): only works if ended grants are handed out again.
    let disk = fresh_disk("reconnects", &vec![0u8; DISK_BYTES]);
    let Booted { run, .. } = boot(&disk, &["name=again blk-reconnects=40".into()]);
    run.expect("(d1) blkfront: 40 reconnects ok");
}

#[test]
#[ignore = "boots QEMU with build/xen: run through `make test`"]
fn each_domu_reads_its_own_slot_of_the_disk_and_one_past_the_slots_gets_no_vbd() {
    // `vbd-slots=2`: boot-time domU 0 (d1) has the first half, 1 (d2) the second, 2 (d3)
    // nothing. Each slot's sector 0 holds its own text; the demo reads sector 0 of its vbd.
    let mut bytes = vec![0u8; DISK_BYTES];
    bytes[..16].copy_from_slice(b"slot one sector0");
    let second = DISK_BYTES / 2;
    bytes[second..second + 16].copy_from_slice(b"slot two sector0");
    let disk = fresh_disk("slots", &bytes);
    let domus: Vec<String> = (1..=3).map(|i| format!("name=vm{i}")).collect();
    let Booted { run, image, .. } = boot_with(&disk, "vbd-slots=2", &domus);
    run.expect("blkback: d1 vbd 51712 is sectors 0..16384 of the disk (slot 0)");
    run.expect("blkback: d2 vbd 51712 is sectors 16384..32768 of the disk (slot 1)");
    run.expect("blkback: d3 gets no vbd: it is boot-time domU 2 and the disk has 2 slot(s)");
    let hex = |t: &[u8]| t.iter().map(|b| format!("{b:02x}")).collect::<String>();
    for (id, text) in [(1, b"slot one sector0"), (2, b"slot two sector0")] {
        run.expect(&format!(
            "(d{id}) domU: blkfront: vbd 51712 connected, 16384 sectors"
        ));
        run.expect(&format!(
            "(d{id}) domU: blkfront: read sector 0: {}...",
            hex(text)
        ));
    }
    run.expect("(d3) domU: blkfront: dom0 gave us no vbd: no block demo");
    for id in 1..=3 {
        run.expect(&format!("toolstack: d{id} (vm{id}) destroyed"));
    }
    assert!(image == bytes, "a read changed the disk");
}
