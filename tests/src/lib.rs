//! Host-side integration harness: boots images in QEMU (TCG), captures the serial log, extracts
//! the conformance suite's `case` lines and compares runs.
//!
//! The differential idea: the same guest kernel runs its conformance suite on Debian's Xen 4.17 and
//! (from the hypervisor issue on) on ours, in the same QEMU; the two `case` lists must match.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub mod net;

/// The repository root (this crate lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The build directory: `$BUILD` (relative to the repository root unless absolute) or
/// `<root>/build`. Cargo runs tests from the crate's own directory, hence the anchoring.
pub fn build_dir() -> PathBuf {
    match std::env::var_os("BUILD") {
        Some(dir) => repo_root().join(dir),
        None => repo_root().join("build"),
    }
}

/// Debian's Xen 4.17 image, unpacked by `scripts/setup.sh`.
pub fn xen_reference_image() -> PathBuf {
    build_dir().join("xen-4.17/xen")
}

/// The guest kernel built by `make images`.
pub fn guest_kernel_image() -> PathBuf {
    build_dir().join("guest-kernel")
}

/// Xen's command line for the reference runs: serial console, 64 MiB dom0, all log levels.
pub const XEN_CMDLINE: &str =
    "console=com1 com1=115200,8n1 dom0_mem=64M loglvl=all guest_loglvl=all";

/// Machine memory given to QEMU for every differential run (cases such as
/// `memory_op.maximum_ram_page` depend on it, so both hypervisors must see the same machine).
pub const MACHINE_MEMORY_MIB: u32 = 512;

/// Lines of Debian's Xen after which its run is over although QEMU has not exited (Xen halts the
/// CPU on a dom0 power-off instead of turning the machine off). Only watched for in runs of the
/// reference image: our hypervisor always ends QEMU itself, and a test must see that it does.
pub const END_MARKERS: &[&str] = &["Hardware Dom0 halted", "Hardware Dom0 crashed"];

/// QEMU's accelerator for every boot of the harness, from `XTESTS_ACCEL` (`tcg`, the default, or
/// `kvm`; `scripts/accel.sh` picks it for `make bench` and `make test`'s KVM pass).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// QEMU's emulator with `-cpu max`: deterministic, what the differential answers come from.
    Tcg,
    /// Hardware virtualization with `-cpu host`: real cycles.
    Kvm,
}

impl Accel {
    /// Parses `XTESTS_ACCEL`'s value; `None` for anything but `tcg`, `kvm` or empty.
    pub fn parse(value: &str) -> Option<Accel> {
        match value {
            "" | "tcg" => Some(Accel::Tcg),
            "kvm" => Some(Accel::Kvm),
            _ => None,
        }
    }

    /// The accelerator's name, as `XTESTS_ACCEL` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }

    /// QEMU's `-accel` and `-cpu` arguments for it (KVM: [`kvm_cpu`]'s model).
    pub fn qemu_args(self) -> [&'static str; 4] {
        match self {
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
            Accel::Kvm => ["-accel", "kvm", "-cpu", kvm_cpu()],
        }
    }
}

/// The `-cpu` model for KVM boots, asked once of `scripts/kvm-cpu.sh`: `host`, or
/// `host,-arch-capabilities` where this host's KVM refuses the IA32_ARCH_CAPABILITIES value QEMU
/// sets for `-cpu host` (QEMU would abort before the guest runs).
pub fn kvm_cpu() -> &'static str {
    static CPU: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CPU.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kvm-cpu.sh");
        let out = Command::new("bash").arg(script).output();
        let model = out
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if model.is_empty() {
            "host".to_string()
        } else {
            model
        }
    })
}

/// The accelerator `XTESTS_ACCEL` asks for (TCG when unset). A value that is neither `tcg` nor
/// `kvm` is a harness error: it panics rather than run the tests under the wrong one.
pub fn accel() -> Accel {
    let value = std::env::var("XTESTS_ACCEL").unwrap_or_default();
    Accel::parse(&value).unwrap_or_else(|| panic!("XTESTS_ACCEL must be tcg or kvm, not {value:?}"))
}

/// A QEMU boot: a multiboot hypervisor image with its command line and boot modules.
#[derive(Clone, Debug)]
pub struct Boot {
    /// The `-kernel` image (multiboot1).
    pub hypervisor: PathBuf,
    /// Its command line (`-append`).
    pub cmdline: String,
    /// Boot modules: (file, command line). Module 1 becomes dom0.
    pub modules: Vec<(PathBuf, String)>,
    /// Wall-clock limit for the whole run.
    pub timeout: Duration,
    /// Extra QEMU arguments, appended after the harness's own (QEMU takes the last of a repeated
    /// option, so `-cpu max,-x2apic` here replaces the default `-cpu max`), e.g. the teaching
    /// lab's `-icount shift=0,sleep=off`.
    pub qemu_extra: Vec<String>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// QEMU exited by itself with this status.
    Exited(i32),
    /// An end marker appeared in the log and the harness stopped QEMU.
    Marker,
    /// The time limit passed and the harness killed QEMU.
    TimedOut,
}

/// The outcome of a run: the serial log and how it ended.
#[derive(Clone, Debug)]
pub struct Run {
    /// Everything QEMU wrote to the serial port (and its own stderr), line by line.
    pub log: Vec<String>,
    /// When each line of `log` arrived, counted from QEMU's start.
    pub arrived: Vec<Duration>,
    /// QEMU's CPU time (user + system, all its threads) when each line of `log` arrived, where
    /// `/proc` tells it (zero otherwise): unlike the wall clock, it barely moves with the load
    /// of a shared machine.
    pub cpu: Vec<Duration>,
    /// How the run ended.
    pub ending: Ending,
    /// Wall-clock duration.
    pub elapsed: Duration,
}

/// A harness problem (not a hypervisor failure): QEMU missing, image missing, ...
#[derive(Debug)]
pub struct HarnessError(pub String);

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

impl Boot {
    /// Debian's Xen 4.17 with `kernel` as dom0 and `cmdline` as its command line.
    pub fn xen_reference(kernel: &Path, cmdline: &str) -> Boot {
        Boot {
            hypervisor: xen_reference_image(),
            cmdline: XEN_CMDLINE.to_string(),
            modules: vec![(kernel.to_path_buf(), cmdline.to_string())],
            timeout: Duration::from_secs(120),
            qemu_extra: Vec::new(),
        }
    }

    /// The QEMU arguments for this boot, under the accelerator `XTESTS_ACCEL` names.
    pub fn qemu_args(&self) -> Vec<String> {
        self.qemu_args_under(accel())
    }

    /// The QEMU arguments for this boot under `accel`.
    pub fn qemu_args_under(&self, accel: Accel) -> Vec<String> {
        let initrd = self
            .modules
            .iter()
            .map(|(path, cmdline)| {
                // QEMU splits modules at commas; a comma inside a module's own command line is
                // doubled, QEMU's escape (`make run` does the same). A path cannot be escaped.
                assert!(
                    !path.display().to_string().contains(','),
                    "module paths cannot contain ','"
                );
                format!("{} {}", path.display(), cmdline.replace(',', ",,"))
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut args: Vec<String> = accel.qemu_args().iter().map(|s| s.to_string()).collect();
        args.extend(
            [
                "-display",
                "none",
                "-serial",
                "stdio",
                "-monitor",
                "none",
                "-no-reboot",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        args.extend(["-m".into(), MACHINE_MEMORY_MIB.to_string()]);
        args.extend(["-kernel".into(), self.hypervisor.display().to_string()]);
        args.extend(["-append".into(), self.cmdline.clone()]);
        if !initrd.is_empty() {
            args.extend(["-initrd".into(), initrd]);
        }
        args.extend(self.qemu_extra.iter().cloned());
        args
    }

    /// Boots, streams the log, and stops at QEMU's exit, an end marker, or the time limit.
    pub fn run(&self) -> Result<Run, HarnessError> {
        self.run_with_input(&[])
    }

    /// As [`Boot::run`], typing on the serial console: when a line containing `after` arrives,
    /// `bytes` are written to the serial port's input (QEMU's stdin), once per trigger.
    pub fn run_with_input(&self, triggers: &[(&str, &[u8])]) -> Result<Run, HarnessError> {
        self.run_inner(self.qemu_args(), triggers)
    }

    /// Boots under `accel` whatever `XTESTS_ACCEL` says (e.g. a KVM probe from the TCG pass).
    pub fn run_under(&self, accel: Accel) -> Result<Run, HarnessError> {
        self.run_inner(self.qemu_args_under(accel), &[])
    }

    /// As [`Boot::run`], QEMU started by `wrapper` (a program and its arguments, given QEMU's
    /// command line after them: e.g. `perf stat ... --`).
    pub fn run_wrapped(&self, wrapper: &[String]) -> Result<Run, HarnessError> {
        self.run_with(wrapper, self.qemu_args(), &[])
    }

    fn run_inner(
        &self,
        args: Vec<String>,
        triggers: &[(&str, &[u8])],
    ) -> Result<Run, HarnessError> {
        self.run_with(&[], args, triggers)
    }

    fn run_with(
        &self,
        wrapper: &[String],
        args: Vec<String>,
        triggers: &[(&str, &[u8])],
    ) -> Result<Run, HarnessError> {
        for path in std::iter::once(&self.hypervisor).chain(self.modules.iter().map(|(p, _)| p)) {
            if !path.is_file() {
                return Err(HarnessError(format!(
                    "{} is missing: run `make images` (or `make test`, which builds and installs \
                     everything)",
                    path.display()
                )));
            }
        }
        let start = Instant::now();
        let (program, before) = match wrapper.split_first() {
            Some((p, rest)) => (p.as_str(), rest.iter().map(String::as_str).collect()),
            None => ("qemu-system-x86_64", Vec::new()),
        };
        let mut child = Command::new(program)
            .args(before)
            .args(if wrapper.is_empty() {
                None
            } else {
                Some("qemu-system-x86_64")
            })
            .args(args)
            .stdin(if triggers.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError(format!("cannot start {program}: {e}")))?;

        let pid = child.id();
        let (tx, rx) = mpsc::channel::<String>();
        let mut readers = Vec::new();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            readers.push(thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut buf = Vec::new();
                while reader.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_string();
                    if tx.send(line).is_err() {
                        break;
                    }
                    buf.clear();
                }
            }));
        }
        drop(tx);
        let mut stdin = child.stdin.take();
        let mut pending: Vec<(&str, &[u8])> = triggers.to_vec();

        let deadline = start + self.timeout;
        let markers: &[&str] = if self.hypervisor == xen_reference_image() {
            END_MARKERS
        } else {
            &[]
        };
        let mut log = Vec::new();
        let mut arrived = Vec::new();
        let mut cpu = Vec::new();
        let ending = loop {
            let now = Instant::now();
            if now >= deadline {
                let _ = child.kill();
                break Ending::TimedOut;
            }
            match rx.recv_timeout((deadline - now).min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(input) = stdin.as_mut() {
                        use std::io::Write;
                        pending.retain(|(after, bytes)| {
                            let fire = line.contains(after);
                            if fire {
                                let _ = input.write_all(bytes).and_then(|()| input.flush());
                            }
                            !fire
                        });
                    }
                    let is_end = markers.iter().any(|m| line.contains(m));
                    log.push(line);
                    arrived.push(start.elapsed());
                    cpu.push(process_cpu_time(pid));
                    if is_end {
                        let _ = child.kill();
                        break Ending::Marker;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        // Drain what is left, then report the exit.
                        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                            log.push(line);
                            arrived.push(start.elapsed());
                            cpu.push(Duration::ZERO);
                        }
                        break Ending::Exited(status.code().unwrap_or(-1));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().map_err(|e| HarnessError(e.to_string()))?;
                    break Ending::Exited(status.code().unwrap_or(-1));
                }
            }
        };
        let _ = child.wait();
        for r in readers {
            let _ = r.join();
        }
        Ok(Run {
            log,
            arrived,
            cpu,
            ending,
            elapsed: start.elapsed(),
        })
    }
}

/// The CPU time (user + system) process `pid` has used, from `/proc/<pid>/stat` (fields 14 and
/// 15, in clock ticks of 100 Hz, the kernel's `USER_HZ`); zero when it cannot be read.
fn process_cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// QEMU arguments attaching `image` (raw) as a virtio-blk PCI disk: dom0's real block device.
pub fn virtio_disk_args(image: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("file={},format=raw,if=none,id=disk0", image.display()),
        "-device".into(),
        "virtio-blk-pci,drive=disk0".into(),
    ]
}

impl Run {
    /// Whether some line of the log contains `needle`.
    pub fn has(&self, needle: &str) -> bool {
        self.log.iter().any(|l| l.contains(needle))
    }

    /// Fails the test, showing the whole log, unless some line contains `needle`.
    #[track_caller]
    pub fn expect(&self, needle: &str) {
        assert!(
            self.has(needle),
            "missing {needle:?}; log:\n{}",
            self.log.join("\n")
        );
    }

    /// The free-frame count our hypervisor printed before building the domUs, and the last one
    /// it printed after giving a dead domain's frames back (`None` if none was given back), with
    /// the frames dom0's own tables took from the pool as it ran added back (event-channel pages,
    /// maptrack frames: dom0 lives on and keeps them, as on Xen; the hypervisor prints how many
    /// at dom0's end).
    pub fn free_frames(&self) -> (u64, Option<u64>) {
        let before = self
            .log
            .iter()
            .find_map(|l| {
                l.split("free memory before domUs: ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .expect("the hypervisor prints the free pool before the domUs");
        let after = self.log.iter().rev().find_map(|l| {
            let rest = l.split("frames returned to the free pool (").nth(1)?;
            rest.split(' ').next()?.parse::<u64>().ok()
        });
        let dom0_took = self
            .log
            .iter()
            .find_map(|l| {
                l.split("dom0's tables took ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        (before, after.map(|a| a + dom0_took))
    }

    /// When the first line containing `pattern` arrived, counted from QEMU's start.
    pub fn first_line_at(&self, pattern: &str) -> Option<Duration> {
        self.log
            .iter()
            .position(|l| l.contains(pattern))
            .map(|i| self.arrived[i])
    }

    /// QEMU's CPU time when the first line containing `pattern` arrived (see [`Run::cpu`]).
    pub fn first_line_cpu(&self, pattern: &str) -> Option<Duration> {
        self.log
            .iter()
            .position(|l| l.contains(pattern))
            .and_then(|i| self.cpu.get(i).copied())
            .filter(|d| !d.is_zero())
    }
}

/// The median of `values` (the lower middle for an even count); `None` when empty.
pub fn median<T: Ord + Copy>(values: &[T]) -> Option<T> {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// One `case <name> = <value>` line of the conformance suite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The case's name, e.g. `xen_version.version`.
    pub name: String,
    /// What it observed, e.g. `0x40011`.
    pub value: String,
}

/// The conformance suite's output in a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuiteResult {
    /// The cases, in order.
    pub cases: Vec<Case>,
    /// The count from `conformance done: <N> cases`, if the suite got that far.
    pub done: Option<usize>,
}

impl SuiteResult {
    /// Extracts the case lines and the summary from a log. Lines may carry a prefix (Xen prints
    /// domU output as `(d1) ...`), so the `case ` marker is searched anywhere in the line.
    pub fn from_log<S: AsRef<str>>(log: &[S]) -> SuiteResult {
        let mut cases = Vec::new();
        let mut done = None;
        for line in log {
            let line = line.as_ref();
            if let Some(i) = line.find("case ") {
                if let Some((name, value)) = line[i + 5..].split_once(" = ") {
                    cases.push(Case {
                        name: name.trim().to_string(),
                        value: value.trim().to_string(),
                    });
                    continue;
                }
            }
            if let Some(i) = line.find("conformance done: ") {
                done = line[i + 18..]
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok());
            }
        }
        SuiteResult { cases, done }
    }

    /// Whether the suite ran to completion: the summary is there and counts exactly the cases seen.
    pub fn complete(&self) -> bool {
        self.done == Some(self.cases.len())
    }

    /// The case list as text, one `case <name> = <value>` per line.
    pub fn to_text(&self) -> String {
        self.cases
            .iter()
            .map(|c| format!("case {} = {}\n", c.name, c.value))
            .collect()
    }

    /// Parses the text written by [`SuiteResult::to_text`] (a recorded reference list).
    pub fn from_text(text: &str) -> SuiteResult {
        let lines: Vec<&str> = text.lines().collect();
        let mut r = SuiteResult::from_log(&lines);
        r.done = Some(r.cases.len());
        r
    }
}

/// One difference between two case lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaseDiff {
    /// The case ran on both sides with different values.
    Value {
        name: String,
        left: String,
        right: String,
    },
    /// The case appears only on the left.
    OnlyLeft { name: String, value: String },
    /// The case appears only on the right.
    OnlyRight { name: String, value: String },
}

impl fmt::Display for CaseDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseDiff::Value { name, left, right } => write!(f, "{name}: {left}  <>  {right}"),
            CaseDiff::OnlyLeft { name, value } => write!(f, "{name}: {value}  <>  (missing)"),
            CaseDiff::OnlyRight { name, value } => write!(f, "{name}: (missing)  <>  {value}"),
        }
    }
}

/// Compares two case lists by name (order-insensitive; a case name must be unique in a list).
pub fn diff_cases(left: &[Case], right: &[Case]) -> Vec<CaseDiff> {
    let mut out = Vec::new();
    for l in left {
        match right.iter().find(|r| r.name == l.name) {
            Some(r) if r.value != l.value => out.push(CaseDiff::Value {
                name: l.name.clone(),
                left: l.value.clone(),
                right: r.value.clone(),
            }),
            Some(_) => {}
            None => out.push(CaseDiff::OnlyLeft {
                name: l.name.clone(),
                value: l.value.clone(),
            }),
        }
    }
    for r in right {
        if !left.iter().any(|l| l.name == r.name) {
            out.push(CaseDiff::OnlyRight {
                name: r.name.clone(),
                value: r.value.clone(),
            });
        }
    }
    out
}

/// Names that appear more than once in a case list (each case name must be unique).
pub fn duplicate_names(cases: &[Case]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut dups = std::collections::BTreeSet::new();
    for c in cases {
        if !seen.insert(c.name.as_str()) {
            dups.insert(c.name.clone());
        }
    }
    dups.into_iter().collect()
}

/// A QEMU boot left running while the test talks to it (over forwarded TCP ports): the log
/// streams in the background; [`Running::wait_for`] waits for a line, [`Running::stop`] kills
/// QEMU and returns the log. Dropping it kills QEMU too.
pub struct Running {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    arrived: Vec<Duration>,
    start: Instant,
}

impl Boot {
    /// Starts QEMU and returns at once (no time limit: the caller stops it).
    pub fn spawn(&self) -> Result<Running, HarnessError> {
        for path in std::iter::once(&self.hypervisor).chain(self.modules.iter().map(|(p, _)| p)) {
            if !path.is_file() {
                return Err(HarnessError(format!(
                    "{} is missing: run `make images`",
                    path.display()
                )));
            }
        }
        let start = Instant::now();
        let mut child = Command::new("qemu-system-x86_64")
            .args(self.qemu_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError(format!("cannot start qemu-system-x86_64: {e}")))?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut buf = Vec::new();
                while reader.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_string();
                    if tx.send(line).is_err() {
                        break;
                    }
                    buf.clear();
                }
            });
        }
        Ok(Running {
            child,
            stdin,
            lines: rx,
            log: Vec::new(),
            arrived: Vec::new(),
            start,
        })
    }
}

impl Running {
    /// Waits up to `timeout` for a line containing `needle` (also among the lines already
    /// seen); returns it, or `None` at the time limit or QEMU's exit.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            match self.lines.recv_timeout(deadline - now) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.log.push(line.clone());
                    self.arrived.push(self.start.elapsed());
                    if hit {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Writes `bytes` to the serial port's input (QEMU's stdin): `\x01\x01\x01` hands it to
    /// the hypervisor's debug keys.
    pub fn send_input(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        match self.stdin.as_mut() {
            Some(i) => {
                i.write_all(bytes)?;
                i.flush()
            }
            None => Err(std::io::Error::other("no stdin")),
        }
    }

    /// The log so far (lines not yet read are drained first).
    pub fn log(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
            self.arrived.push(self.start.elapsed());
        }
        &self.log
    }

    /// Waits up to `timeout` for QEMU to exit by itself (a guest that powers the machine off),
    /// then [`Running::stop`]s it: the run's ending is QEMU's own exit status when it exited.
    pub fn finish(mut self, timeout: Duration) -> Run {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.stop()
    }

    /// Kills QEMU (if it is still running) and returns the whole log.
    pub fn stop(mut self) -> Run {
        let _ = self.child.kill();
        let status = self.child.wait().ok().and_then(|s| s.code());
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
            self.log.push(line);
            self.arrived.push(self.start.elapsed());
        }
        let cpu = vec![Duration::ZERO; self.log.len()];
        Run {
            log: std::mem::take(&mut self.log),
            arrived: std::mem::take(&mut self.arrived),
            cpu,
            ending: status.map_or(Ending::TimedOut, Ending::Exited),
            elapsed: self.start.elapsed(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for QEMU's `hostfwd`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// QEMU arguments for dom0's NIC: a virtio-net PCI card (slot 5) on QEMU's user-mode network,
/// each `(host port, guest address, guest port)` forwarded from 127.0.0.1 only.
pub fn virtio_net_args(forwards: &[(u16, &str, u16)]) -> Vec<String> {
    let mut netdev = String::from("user,id=net0");
    for (host, guest, port) in forwards {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-{guest}:{port}"));
    }
    vec![
        "-netdev".into(),
        netdev,
        "-device".into(),
        "virtio-net-pci,netdev=net0,addr=5".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(name: &str, value: &str) -> Case {
        Case {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn extracts_cases_with_and_without_prefixes() {
        let log = [
            "(XEN) Xen version 4.17",
            "case a.b = 1",
            "(d1) case c.d = rc=-22 done=0",
            "something else",
            "conformance done: 2 cases",
        ];
        let r = SuiteResult::from_log(&log);
        assert_eq!(
            r.cases,
            vec![case("a.b", "1"), case("c.d", "rc=-22 done=0")]
        );
        assert_eq!(r.done, Some(2));
        assert!(r.complete());
    }

    #[test]
    fn a_suite_cut_short_is_not_complete() {
        let r = SuiteResult::from_log(&["case a = 1", "case b = 2", "conformance done: 3 cases"]);
        assert!(!r.complete());
        let r = SuiteResult::from_log(&["case a = 1"]);
        assert_eq!(r.done, None);
        assert!(!r.complete());
    }

    #[test]
    fn text_round_trip() {
        let r = SuiteResult::from_log(&["case a = 1", "case b = x y", "conformance done: 2 cases"]);
        assert_eq!(SuiteResult::from_text(&r.to_text()), r);
    }

    #[test]
    fn diff_reports_values_and_missing_cases() {
        let left = [case("a", "1"), case("b", "2"), case("c", "3")];
        let right = [case("a", "1"), case("b", "-22"), case("d", "4")];
        let d = diff_cases(&left, &right);
        assert_eq!(
            d,
            vec![
                CaseDiff::Value {
                    name: "b".into(),
                    left: "2".into(),
                    right: "-22".into()
                },
                CaseDiff::OnlyLeft {
                    name: "c".into(),
                    value: "3".into()
                },
                CaseDiff::OnlyRight {
                    name: "d".into(),
                    value: "4".into()
                },
            ]
        );
        assert!(diff_cases(&left, &left).is_empty());
    }

    #[test]
    fn median_takes_the_lower_middle() {
        assert_eq!(median(&[5, 1, 3]), Some(3));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
        assert_eq!(median::<u32>(&[]), None);
    }

    #[test]
    fn finds_duplicate_names() {
        assert_eq!(
            duplicate_names(&[case("a", "1"), case("b", "1"), case("a", "2")]),
            vec!["a"]
        );
    }

    #[test]
    fn a_process_cpu_time_counts_its_work() {
        // Busy until the reading has moved 50 ms (however loaded the machine), but no longer
        // than 20 s of wall clock: a reading that never moves fails.
        let me = std::process::id();
        let before = process_cpu_time(me);
        let start = Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after < before + Duration::from_millis(50)
            && start.elapsed() < Duration::from_secs(20)
        {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            after = process_cpu_time(me);
        }
        assert!(
            after >= before + Duration::from_millis(50),
            "{before:?} -> {after:?}"
        );
        // It cannot run ahead of the wall clock by more than the other threads' share.
        assert!(
            after - before <= start.elapsed() * 64,
            "{before:?} -> {after:?}"
        );
        assert_eq!(process_cpu_time(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn accel_names_and_flags() {
        assert_eq!(Accel::parse(""), Some(Accel::Tcg));
        assert_eq!(Accel::parse("tcg"), Some(Accel::Tcg));
        assert_eq!(Accel::parse("kvm"), Some(Accel::Kvm));
        assert_eq!(Accel::parse("KVM"), None);
        assert_eq!(Accel::parse("hvf"), None);
        assert_eq!(Accel::Kvm.qemu_args(), ["-accel", "kvm", "-cpu", kvm_cpu()]);
        assert!(kvm_cpu().starts_with("host"));
        assert_eq!(Accel::Tcg.qemu_args(), ["-accel", "tcg", "-cpu", "max"]);
        assert_eq!(Accel::parse(Accel::Kvm.name()), Some(Accel::Kvm));
    }

    #[test]
    fn qemu_args_join_modules() {
        let b = Boot {
            hypervisor: "/x/xen".into(),
            cmdline: "console=com1".into(),
            modules: vec![
                ("/k".into(), "suite=conformance".into()),
                ("/u".into(), String::new()),
            ],
            timeout: Duration::from_secs(1),
            qemu_extra: Vec::new(),
        };
        let args = b.qemu_args();
        let i = args.iter().position(|a| a == "-initrd").unwrap();
        assert_eq!(args[i + 1], "/k suite=conformance,/u");
    }

    #[test]
    fn commas_in_module_command_lines_are_doubled() {
        let b = Boot {
            hypervisor: "/x/xen".into(),
            cmdline: String::new(),
            modules: vec![
                ("/k".into(), String::new()),
                ("/u".into(), "blk-selftest=7,100,64 name=a".into()),
            ],
            timeout: Duration::from_secs(1),
            qemu_extra: Vec::new(),
        };
        let args = b.qemu_args();
        let i = args.iter().position(|a| a == "-initrd").unwrap();
        assert_eq!(args[i + 1], "/k,/u blk-selftest=7,,100,,64 name=a");
    }

    #[test]
    fn extra_qemu_arguments_come_last() {
        let b = Boot {
            hypervisor: "/x/xen".into(),
            cmdline: String::new(),
            modules: vec![],
            timeout: Duration::from_secs(1),
            qemu_extra: vec!["-icount".into(), "shift=0,sleep=off".into()],
        };
        let args = b.qemu_args();
        assert_eq!(args[args.len() - 2..], ["-icount", "shift=0,sleep=off"]);
        assert!(!args.contains(&"-initrd".to_string()));
    }
}
