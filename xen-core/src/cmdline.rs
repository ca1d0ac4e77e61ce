//! The hypervisor command line: Xen's syntax, and the few options this hypervisor knows so far.
//!
//! Syntax follows Xen's `parse_params()` (`xen/common/kernel.c`): options are separated by spaces
//! (only ' ', no quoting), each is `name` or `name=value`. Unknown options are reported, not fatal.

use log::LevelFilter;

/// Strips the image name a multiboot1 loader puts in front of the command line.
///
/// QEMU (like GRUB legacy) passes `"<image path> <options>"`; GRUB 2 passes only the options. This
/// is Xen's `cmdline_cook()` (`xen/arch/x86/setup.c`): skip leading spaces, then, unless the loader
/// is GRUB 2, skip the first word and the spaces after it.
pub fn cook<'a>(raw: &'a str, boot_loader_name: Option<&str>) -> &'a str {
    let s = raw.trim_start_matches(' ');
    if boot_loader_name.is_some_and(|name| name.starts_with("GRUB 2")) {
        return s;
    }
    split_image_name(s).1
}

/// Splits a module (or hypervisor) string `"<image path> <args>"` into the path and the arguments.
///
/// QEMU's `-initrd "a.elf x=1,b.elf"` gives each module such a string; the arguments become that
/// domain's kernel command line.
pub fn split_image_name(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches(' ');
    match s.split_once(' ') {
        Some((name, rest)) => (name, rest.trim_start_matches(' ')),
        None => (s, ""),
    }
}

/// Whether boot module string `s` names an initial ramdisk rather than a kernel: its arguments'
/// first word is `initrd` (`-initrd "linux.elf console=hvc0,initrd.cpio.gz initrd"`). Such a
/// module is no domain of its own: it is the ramdisk of the kernel in the module just before it
/// (`start_info.mod_start`/`mod_len`), as Xen gives dom0 the module after its kernel.
pub fn is_initrd_module(s: &str) -> bool {
    split_image_name(s).1.split(' ').next() == Some("initrd")
}

/// How many domUs boot module string `s` asks for: its `copies=` when that is a number from 1
/// to `max`, 1 without it, `Err(1)` for any other value (the builder reports it and builds one).
pub fn copies(s: &str, max: u32) -> Result<u32, u32> {
    let args = split_image_name(s).1;
    match args
        .split(' ')
        .find_map(|w| w.strip_prefix("copies="))
        .map(str::parse::<u32>)
    {
        None => Ok(1),
        Some(Ok(n)) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(1),
    }
}

/// The boot-time domUs that the boot module strings `modules` (dom0's first) ask for, in the
/// order the hypervisor builds them: (module, copy) for every module after dom0's that is no
/// initrd, `copy` from 1 to its [`copies`] when it asks for more than one, else `None`. The
/// builder goes through this list, and a domU's place in it (counting every entry, built or
/// not) is its `hypercall_abi::domctl::BootHandle`: it depends on the strings alone, so it is
/// the same on every boot of one configuration.
pub fn boot_domus<'a, I>(modules: I, max: u32) -> impl Iterator<Item = (usize, Option<u32>)> + 'a
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: 'a,
{
    modules
        .into_iter()
        .enumerate()
        .skip(1)
        .filter(|(_, s)| !is_initrd_module(s))
        .flat_map(move |(i, s)| {
            let n = copies(s, max).unwrap_or_else(|one| one);
            (1..=n).map(move |c| (i, (n > 1).then_some(c)))
        })
}

/// Where copy `copy` of boot module `module` stands in [`boot_domus`] (from 0), and how many
/// entries it has; a domU not in it gets the count (no place).
pub fn boot_place<'a, I>(modules: I, module: usize, copy: Option<u32>, max: u32) -> (u32, u32)
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: 'a,
{
    let (mut place, mut count) = (None, 0u32);
    for d in boot_domus(modules, max) {
        if d == (module, copy) {
            place = Some(count);
        }
        count += 1;
    }
    (place.unwrap_or(count), count)
}

/// One command-line option: `name` or `name=value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param<'a> {
    /// The text before the first `=`.
    pub name: &'a str,
    /// The text after the first `=`, if there is one (it may be empty: `name=`).
    pub value: Option<&'a str>,
}

/// Iterates over the options of a (cooked) command line, in order.
pub fn params(cmdline: &str) -> impl Iterator<Item = Param<'_>> {
    cmdline
        .split(' ')
        .filter(|word| !word.is_empty())
        .map(|word| match word.split_once('=') {
            Some((name, value)) => Param {
                name,
                value: Some(value),
            },
            None => Param {
                name: word,
                value: None,
            },
        })
}

/// Something wrong with one option. Reported on the console; boot continues with the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamProblem<'a> {
    /// No option of that name exists (Xen prints `parameter "name" unknown!`).
    Unknown(Param<'a>),
    /// The option exists but its value cannot be parsed.
    BadValue(Param<'a>),
}

/// The options the hypervisor understands, with Xen's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootOptions<'a> {
    /// `console=`: where hypervisor output goes. Only `com1` exists so far; kept for the record.
    pub console: Option<&'a str>,
    /// `loglvl=`: the most verbose hypervisor message level printed (Xen's default is `warning`).
    pub loglvl: LevelFilter,
    /// `dom0_mem=<size>`: dom0's memory in bytes (Xen's `parse_size_and_unit`: K, M, G suffixes).
    pub dom0_mem: Option<u64>,
    /// `selftest=<name>`: run a hypervisor self-test instead of (or before) dom0 (`panic`, `trap`:
    /// the fatal-error paths, checked by the QEMU tests; `wx`: a write to `.text`, which W^X makes
    /// a fatal page fault; `time`: the clocks; `native-pte`: the
    /// teaching lab's native page-table baseline, then dom0 as usual; `native-syscall`: the bare
    /// ring-3 syscall round trip, then dom0; `cpl`: power off after the boot's ring-0 check).
    pub selftest: Option<&'a str>,
}

impl Default for BootOptions<'_> {
    fn default() -> Self {
        Self {
            console: None,
            loglvl: LevelFilter::Warn,
            dom0_mem: None,
            selftest: None,
        }
    }
}

impl<'a> BootOptions<'a> {
    /// Parses a cooked command line; each problem is passed to `report`, and the option keeps its
    /// default. A later occurrence of an option overrides an earlier one, as in Xen.
    pub fn parse(cmdline: &'a str, mut report: impl FnMut(ParamProblem<'a>)) -> Self {
        let mut opts = Self::default();
        for param in params(cmdline) {
            match param.name {
                "console" => opts.console = param.value,
                "loglvl" => match param.value.and_then(parse_loglvl) {
                    Some(level) => opts.loglvl = level,
                    None => report(ParamProblem::BadValue(param)),
                },
                // Options real Xen takes that are harmless to ignore here: the serial line is
                // always 115200 8n1, and guests have no log levels yet.
                "dom0_mem" => match param.value.and_then(parse_size) {
                    Some(bytes) => opts.dom0_mem = Some(bytes),
                    None => report(ParamProblem::BadValue(param)),
                },
                "selftest" => opts.selftest = param.value,
                "com1" | "guest_loglvl" => {}
                _ => report(ParamProblem::Unknown(param)),
            }
        }
        opts
    }
}

/// Parses `vcpus=<n>` of a boot module's command line: how many vCPUs the domain gets, 1 to
/// `max` (decimal; the caller passes `domain::MAX_VCPUS`). Anything else is `None` (the caller
/// refuses the module).
pub fn parse_vcpus(text: &str, max: usize) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 3 {
        return None;
    }
    let n: usize = text.parse().ok()?;
    (1..=max).contains(&n).then_some(n)
}

/// Parses Xen's size syntax (`parse_size_and_unit`): a decimal number with a B, K, M, G or T
/// suffix; without a suffix the number is in KiB.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let shift = match unit {
        "B" | "b" => 0,
        "" | "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// Parses Xen's `loglvl` value, `<level>[/<rate-limited level>]`, ignoring the rate-limited part.
///
/// Levels are Xen's names (`xen/drivers/char/console.c`): none, error, warning, info, debug, all.
pub fn parse_loglvl(value: &str) -> Option<LevelFilter> {
    let level = value
        .split_once('/')
        .map_or(value, |(level, _rate_limited)| level);
    Some(match level {
        "none" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warning" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "all" => LevelFilter::Trace,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn boot_places_count_every_copy_of_every_domu_module_in_order_and_skip_initrds() {
        let mods = [
            "xen.elf dom0",
            "k.elf name=a copies=3",
            "linux console=hvc0",
            "rd.cpio initrd",
            "k.elf name=b copies=zero",
            "k.elf name=c copies=2",
        ];
        let at = |module, copy| boot_place(mods, module, copy, 64);
        assert_eq!(at(1, Some(1)), (0, 7));
        assert_eq!(at(1, Some(3)), (2, 7));
        assert_eq!(at(2, None), (3, 7), "linux, its initrd no domain");
        assert_eq!(at(4, None), (4, 7), "a bad copies= is one domU");
        assert_eq!(at(5, Some(2)), (6, 7));
        assert_eq!(at(3, None), (7, 7), "an initrd has no place");
        assert_eq!(
            at(1, None),
            (7, 7),
            "a module of copies has no place without its copy"
        );
        assert_eq!(at(5, Some(3)), (7, 7), "nor a copy past its copies=");
        assert_eq!(
            boot_domus(mods, 64).collect::<Vec<_>>(),
            [
                (1, Some(1)),
                (1, Some(2)),
                (1, Some(3)),
                (2, None),
                (4, None),
                (5, Some(1)),
                (5, Some(2))
            ]
        );
        assert_eq!(copies("k.elf copies=65", 64), Err(1));
        assert_eq!(copies("k.elf copies=64", 64), Ok(64));
        assert_eq!(copies("k.elf", 64), Ok(1));
    }

    #[test]
    fn vcpus_counts_from_one_to_max() {
        use super::parse_vcpus;
        assert_eq!(parse_vcpus("1", 8), Some(1));
        assert_eq!(parse_vcpus("2", 8), Some(2));
        assert_eq!(parse_vcpus("8", 8), Some(8));
        for bad in [
            "",
            "0",
            "9",
            "-1",
            "2x",
            "0x2",
            "99999999999999999999",
            " 2",
        ] {
            assert_eq!(parse_vcpus(bad, 8), None, "{bad:?}");
        }
    }

    use super::*;

    #[test]
    fn sizes_use_xen_units() {
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512 << 10));
        assert_eq!(parse_size("4096B"), Some(4096));
        assert_eq!(parse_size("12Q"), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(
            BootOptions::parse("dom0_mem=64M", |_| {}).dom0_mem,
            Some(64 << 20)
        );
    }

    #[test]
    fn cook_strips_the_image_name_that_qemu_prepends() {
        assert_eq!(
            cook("build/xen console=com1 loglvl=all", Some("qemu")),
            "console=com1 loglvl=all"
        );
        assert_eq!(cook("  /boot/xen  a=b", None), "a=b");
        assert_eq!(cook("build/xen", Some("qemu")), "");
        assert_eq!(cook("", Some("qemu")), "");
    }

    #[test]
    fn cook_keeps_grub2_command_lines_whole() {
        assert_eq!(cook(" console=com1", Some("GRUB 2.06")), "console=com1");
    }

    #[test]
    fn an_initrd_module_is_named_by_its_first_argument() {
        assert!(is_initrd_module("build/initrd.cpio.gz initrd"));
        assert!(is_initrd_module("  initrd.gz   initrd more=1"));
        assert!(!is_initrd_module("build/initrd.cpio.gz"));
        assert!(!is_initrd_module("vmlinux console=hvc0 initrd"));
        assert!(!is_initrd_module("vmlinux initrd=foo"));
        assert!(!is_initrd_module("initrd"));
    }

    #[test]
    fn split_image_name_separates_path_and_arguments() {
        assert_eq!(
            split_image_name("/path/a.elf arg1 arg2"),
            ("/path/a.elf", "arg1 arg2")
        );
        assert_eq!(split_image_name("/path/b.elf"), ("/path/b.elf", ""));
        assert_eq!(split_image_name(" b.elf   x=1 "), ("b.elf", "x=1 "));
        assert_eq!(split_image_name(""), ("", ""));
    }

    #[test]
    fn params_splits_on_spaces_and_the_first_equals_sign() {
        let got: Vec<_> = params("  a  b=1 c=x=y d= ").collect();
        assert_eq!(
            got,
            [
                Param {
                    name: "a",
                    value: None
                },
                Param {
                    name: "b",
                    value: Some("1")
                },
                Param {
                    name: "c",
                    value: Some("x=y")
                },
                Param {
                    name: "d",
                    value: Some("")
                },
            ]
        );
    }

    #[test]
    fn boot_options_reads_known_options_and_reports_the_rest() {
        let mut problems = Vec::new();
        let opts = BootOptions::parse("console=com1 loglvl=all foo=bar bare", |p| problems.push(p));
        assert_eq!(
            opts,
            BootOptions {
                console: Some("com1"),
                loglvl: LevelFilter::Trace,
                dom0_mem: None,
                selftest: None,
            }
        );
        assert_eq!(
            problems,
            [
                ParamProblem::Unknown(Param {
                    name: "foo",
                    value: Some("bar")
                }),
                ParamProblem::Unknown(Param {
                    name: "bare",
                    value: None
                }),
            ]
        );
    }

    #[test]
    fn a_bad_loglvl_is_reported_and_keeps_the_default() {
        let mut problems = Vec::new();
        let opts = BootOptions::parse("loglvl=loud loglvl", |p| problems.push(p));
        assert_eq!(opts.loglvl, LevelFilter::Warn);
        assert_eq!(
            problems,
            [
                ParamProblem::BadValue(Param {
                    name: "loglvl",
                    value: Some("loud")
                }),
                ParamProblem::BadValue(Param {
                    name: "loglvl",
                    value: None
                }),
            ]
        );
    }

    #[test]
    fn the_last_occurrence_of_an_option_wins() {
        let opts = BootOptions::parse("loglvl=error loglvl=info", |_| {
            panic!("no problem expected")
        });
        assert_eq!(opts.loglvl, LevelFilter::Info);
    }

    #[test]
    fn loglvl_accepts_xens_names_and_ignores_the_rate_limited_part() {
        assert_eq!(parse_loglvl("none"), Some(LevelFilter::Off));
        assert_eq!(parse_loglvl("warning/error"), Some(LevelFilter::Warn));
        assert_eq!(parse_loglvl("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_loglvl("warn"), None);
        assert_eq!(parse_loglvl(""), None);
    }
}
