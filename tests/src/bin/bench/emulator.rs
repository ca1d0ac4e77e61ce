//! `bench --blk-emulator`: what the emulator itself does for one random 4 KiB read, dom0's
//! directly on its disk and a domU's through the split driver, counted with `perf` uprobes on
//! QEMU's own functions (docs/performance.md, "What the emulator does per 4 KiB read").
//!
//! Three boots of the block benchmark with only its phase of random reads one at a time
//! (`bench-phases=`): dom0's direct rounds alone, the domU's alone, and neither (the boot and
//! the rounds' pairing); each count of the first two less the third's, over the reads made, is
//! that path's per read. The counts are exact whatever the host's speed; no time is printed
//! (each uprobe hit costs the emulator about a microsecond: `--blk` has the times). Device
//! register accesses are not counted: the serial console's reads, polled every 20 ms of idle
//! time, would swamp them; `cpu_io_recompile` counts the MMIO ones inside translated code.
//! Needs `perf` and root (uprobes); says so and stops otherwise.

use std::process::Command;

use xtests::{build_dir, guest_kernel_image, Boot, XEN_CMDLINE};

/// QEMU's functions counted, with what each says.
const PROBES: &[(&str, &str)] = &[
    (
        "tlb_flush",
        "software TLB flushes (a CR3 write, a CR4.PGE toggle)",
    ),
    (
        "tlb_set_page_full",
        "software TLB fills (each page touched after a flush)",
    ),
    (
        "qht_lookup_custom",
        "translated blocks looked up in the hash table (jump cache missed)",
    ),
    (
        "helper_lookup_tb_ptr",
        "indirect jumps and returns between translated blocks",
    ),
    (
        "cpu_io_recompile",
        "MMIO accesses inside a translated block (each leaves it)",
    ),
    ("apic_msr_write", "x2APIC register writes (MSRs)"),
    ("helper_hlt", "hlt (the hypervisor idles)"),
];

fn qemu_path() -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", "command -v qemu-system-x86_64"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!path.is_empty()).then_some(path)
}

/// Adds the uprobes (removing any left over first); `Err`: why they cannot be.
fn add_probes(qemu: &str) -> Result<(), String> {
    remove_probes();
    for (f, _) in PROBES {
        let out = Command::new("perf")
            .args(["probe", "-q", "-x", qemu, "--add", f])
            .output()
            .map_err(|e| format!("cannot run perf ({e}): `apt-get install linux-perf`"))?;
        if !out.status.success() {
            return Err(format!(
                "perf probe -x {qemu} --add {f}: {} (uprobes need root)",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// Deletes every `probe_qemu:*` uprobe (ours, or any left over).
fn remove_probes() {
    let _ = Command::new("perf")
        .args(["probe", "-q", "-d", "probe_qemu:*"])
        .output();
}

/// One boot with `dom0` and `domu` as the two sides' `bench-phases=`: the counts by probe name,
/// and the reads one at a time each side reported (`rand4k_ops=` of its
/// two passes' lines: dom0's `bench blkdev`, the domU's `bench blk`).
type Counted = (Vec<(String, f64)>, u64, u64);

fn counted_boot(dom0: &str, domu: &str) -> Result<Counted, String> {
    let dir = std::path::PathBuf::from("/dev/shm");
    let dir = if dir.is_dir() { dir } else { build_dir() };
    let disk = dir.join(format!("bench-emu-disk-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 32 << 20]).map_err(|e| format!("disk image: {e}"))?;
    let stat = build_dir().join(format!("bench-emu-{}.txt", std::process::id()));
    let events = PROBES
        .iter()
        .map(|(f, _)| format!("probe_qemu:{f}"))
        .collect::<Vec<_>>()
        .join(",");
    let b = Boot {
        hypervisor: build_dir().join("xen"),
        cmdline: XEN_CMDLINE.into(),
        modules: vec![
            (
                guest_kernel_image(),
                format!("bench-blkdev=16384 bench-phases={dom0}"),
            ),
            (
                guest_kernel_image(),
                format!("name=bench mem=16M blk-bench=0 bench-phases={domu}"),
            ),
        ],
        timeout: std::time::Duration::from_secs(300),
        qemu_extra: vec![
            "-drive".into(),
            format!("file={},format=raw,if=none,id=disk0", disk.display()),
            "-device".into(),
            "virtio-blk-pci,drive=disk0".into(),
        ],
    };
    let wrapper: Vec<String> = ["perf", "stat", "-x", ",", "-e", &events, "-o"]
        .iter()
        .map(|s| s.to_string())
        .chain([stat.display().to_string(), "--".to_string()])
        .collect();
    let run = b.run_wrapped(&wrapper);
    let _ = std::fs::remove_file(&disk);
    let run = run.map_err(|e| e.to_string())?;
    let done = run
        .log
        .iter()
        .filter(|l| l.contains("bench blk mode="))
        .count();
    if done != 2 {
        let _ = std::fs::remove_file(&stat);
        return Err(format!(
            "the boot (dom0 {dom0}, domU {domu}) did not finish both passes; its log's end:\n{}",
            run.log[run.log.len().saturating_sub(20)..].join("\n")
        ));
    }
    let text = std::fs::read_to_string(&stat).map_err(|e| format!("perf stat output: {e}"))?;
    let _ = std::fs::remove_file(&stat);
    let ops = |tag: &str| -> u64 {
        run.log
            .iter()
            .filter(|l| l.contains(tag))
            .filter_map(|l| {
                l.split_once(" rand4k_ops=")?
                    .1
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    Ok((
        parse_stat(&text),
        ops("bench blkdev pass="),
        ops("bench blk mode="),
    ))
}

/// `perf stat -x,` lines: value, unit, event, ...
fn parse_stat(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let value = f.first()?.parse::<f64>().ok()?;
            let name = f.get(2)?.trim_start_matches("probe_qemu:").to_string();
            Some((name, value))
        })
        .collect()
}

fn get(counts: &[(String, f64)], name: &str) -> Option<f64> {
    counts.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// Runs the three boots and prints the table; false if it could not.
pub fn print() -> bool {
    let Some(qemu) = qemu_path() else {
        println!("bench --blk-emulator: qemu-system-x86_64 is not installed");
        return false;
    };
    if let Err(why) = add_probes(&qemu) {
        println!("bench --blk-emulator: skipped: {why}");
        remove_probes();
        return false;
    }
    let boots = [("1", "none"), ("none", "1"), ("none", "none")].map(|(a, b)| counted_boot(a, b));
    remove_probes();
    let [(direct, reads, _), (domu, _, domu_reads), (neither, ..)] = match boots {
        [Ok(a), Ok(b), Ok(c)] => [a, b, c],
        boots => {
            for e in boots.into_iter().filter_map(Result::err) {
                println!("bench --blk-emulator: {e}");
            }
            return false;
        }
    };
    if reads == 0 || domu_reads == 0 {
        println!("bench --blk-emulator: no reads reported (dom0 {reads}, the domU {domu_reads})");
        return false;
    }
    println!(
        "\n## What the emulator does per random 4 KiB read, one at a time ({reads} reads direct, {domu_reads} through the domU; QEMU uprobes)\n"
    );
    println!("| QEMU function, per read | dom0 direct | domU through blkfront/blkback | what it counts |");
    println!("|---|---|---|---|");
    // A side's count of `n` per read, less the boot without reads.
    let per = |(c, reads): (&[(String, f64)], u64), n: &str| {
        Some((get(c, n)? - get(&neither, n)?) / reads as f64)
    };
    let (dom0_side, domu_side) = ((&direct[..], reads), (&domu[..], domu_reads));
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for (f, what) in PROBES {
        println!(
            "| `{f}` | {} | {} | {what} |",
            fmt(per(dom0_side, f)),
            fmt(per(domu_side, f))
        );
    }
    true
}
