//! The `xen` binary: the hypervisor image that QEMU boots with `-kernel` (multiboot1).
//!
//! It hands control to `arch::x86_64` (boot, dom0 and the domUs from the multiboot modules, the
//! scheduler's loop in `sched::core`). On the host this file compiles to a stub `main`, so that `cargo build` and
//! `cargo test` of the whole workspace keep working.
//!
//! # Building
//!
//! ```text
//! cargo build -p xen-core --bin xen --target x86_64-unknown-none --profile kernel
//! mkdir -p build
//! cp target/x86_64-unknown-none/kernel/xen build/xen-syms      # ELF with symbols, for gdb
//! objcopy -O binary target/x86_64-unknown-none/kernel/xen build/xen
//! ```
//!
//! `build/xen` is a flat image: a 64-bit ELF linked at 0xffff82d040200000 cannot be loaded by
//! QEMU's multiboot loader as an ELF ("Cannot load x86-64 image, give a 32-bit one"), but a
//! multiboot1 header with the a.out kludge (flag 16) lets the loader copy the file to machine
//! address 2 MiB without reading ELF headers. `objcopy -O binary` lays the file out by load
//! address, so the header written first by `xen.ld` is at offset 0. (Xen instead builds a 32-bit
//! ELF wrapper around its 64-bit image; the flat file is simpler.) The linker script and
//! `--no-pie` come from `build.rs` and apply to this binary only; no extra rustflags are needed.
//!
//! # Running
//!
//! ```text
//! qemu-system-x86_64 -accel tcg -machine q35 -cpu max -m 512 -display none -serial stdio \
//!     -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
//!     -kernel build/xen -append "console=com1 loglvl=all" \
//!     -initrd "/path/a.elf arg1 arg2,/path/b.elf x=1"
//! ```
//!
//! Exit status 0 is a clean ACPI power-off (the log ends with `(XEN) Powering off.`); odd statuses
//! are failures, see `xen_core::power::FailCode`. `-machine pc` works the same way.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod arch;

#[cfg(target_os = "none")]
use arch::x86_64::console::printk;

/// The portable boot flow, entered from `arch::x86_64::boot::start` once the console, the GDT and the
/// IDT are up. Named after Xen's `__start_xen`.
#[cfg(target_os = "none")]
fn start_xen(mb_magic: u32, mb_info: xen_core::mm::Maddr) -> ! {
    use arch::x86_64::{mappings, power};
    use xen_core::cmdline::{self, BootOptions, ParamProblem};
    use xen_core::layout::{MIB, XEN_VIRT_START};
    use xen_core::multiboot::BootInfo;
    use xen_core::power::FailCode;

    printk!(
        "xen-core {} (Rust PV hypervisor) booting\n",
        env!("CARGO_PKG_VERSION")
    );

    let memory = mappings::BootDirectMap;
    let info = match BootInfo::parse(&memory, mb_magic, mb_info) {
        Ok(info) => info,
        Err(err) => {
            printk!("ERR: multiboot: {err}\n");
            power::fail(FailCode::BadBoot);
        }
    };

    if let Some(name) = info.boot_loader_name {
        printk!("Bootloader: {name}\n");
    }
    let cmdline = cmdline::cook(info.cmdline.unwrap_or(""), info.boot_loader_name);
    printk!("Command line: {cmdline}\n");
    let options = BootOptions::parse(cmdline, |problem| match problem {
        // Debug hooks, handled below.
        ParamProblem::Unknown(param) if param.name == "selftest" => {}
        ParamProblem::Unknown(param) => printk!("parameter \"{}\" unknown!\n", param.name),
        ParamProblem::BadValue(param) => {
            printk!(
                "parameter \"{}\" has a bad value \"{}\"\n",
                param.name,
                param.value.unwrap_or("")
            )
        }
    });
    log::set_max_level(options.loglvl);

    let image = mappings::image_maddr_range();
    log::info!(
        "Xen image: machine {:#x}-{:#x}, linked at {:#x}",
        image.start,
        image.end,
        XEN_VIRT_START + image.start
    );

    match &info.memory_map {
        Some(map) => {
            log::info!("Multiboot memory map:");
            for region in map.iter() {
                let last = region.base.0.saturating_add(region.len.saturating_sub(1));
                log::info!(" [{:016x}, {:016x}] ({})", region.base.0, last, region.kind);
            }
            let usable = map.usable_bytes();
            printk!("System RAM: {}MB ({}kB)\n", usable / MIB, usable / 1024);
        }
        None => printk!("No memory map from the boot loader\n"),
    }

    printk!("Boot modules: {}\n", info.modules.len());
    for (index, module) in info.modules.iter().enumerate() {
        printk!(
            " module {index}: [{:#x}, {:#x}) {} bytes \"{}\"\n",
            module.start.0,
            module.end.0,
            module.len(),
            module.string
        );
    }

    match options.selftest {
        Some("panic") => panic!("self-test: a deliberate hypervisor panic"),
        // Exercises the clocks and the APIC timer, then powers off.
        Some("time") => {
            if !arch::x86_64::time::selftest() {
                power::fail(FailCode::Panic);
            }
            printk!("{}\n", xen_core::power::POWEROFF_MESSAGE);
            power::poweroff()
        }
        Some("trap") => {
            // SAFETY: deliberately reads an address nothing maps, to exercise the fatal-trap path;
            // the page fault ends the run.
            let v = unsafe { core::ptr::read_volatile(0xdead_0000 as *const u64) };
            printk!("self-test: read {v:#x} from an unmapped address?!\n");
        }
        Some("wx") => {
            // W^X: the image's .text is mapped read-only, so with CR0.WP this write (of the byte
            // already there) is a fatal page fault, error code 0x3 (present | write).
            let text = (start_xen as *const ()).cast_mut().cast::<u8>();
            // SAFETY: `text` is the first byte of this function's code, mapped and readable; the
            // write stores back the byte just read, so even if it went through the code would be
            // unchanged. It is expected to fault, which ends the run.
            unsafe { core::ptr::write_volatile(text, core::ptr::read_volatile(text)) };
            printk!("self-test: FAIL: wrote to .text at {text:p}: the image is writable\n");
            power::fail(FailCode::Panic);
        }
        // XSA-260's #DB and an NMI, in ring 0 on a guest-chosen stack; then powers off.
        Some("ist") => {
            if !arch::x86_64::entry::ist_selftest() {
                printk!("ist selftest: FAIL\n");
                power::fail(FailCode::Panic);
            }
            printk!("ist selftest: PASS\n");
            printk!("{}\n", xen_core::power::POWEROFF_MESSAGE);
            power::poweroff()
        }
        // The teaching lab's native baseline (`xen_core::lab`); dom0 boots afterwards.
        Some("native-pte") => arch::x86_64::lab::native_pte(info.memory_map.as_ref()),
        // The bare syscall/sysretq round trip from ring 3 (`ring3.rs`); dom0 boots afterwards.
        Some("native-syscall") => arch::x86_64::ring3::native_syscall(),
        // Only the boot-time CPL check (already passed to get here), then power off: a quick
        // probe of whether a virtual machine can host us (`scripts/accel.sh`).
        Some("cpl") => {
            printk!("{}\n", xen_core::power::POWEROFF_MESSAGE);
            power::poweroff()
        }
        Some(other) => printk!("unknown self-test \"{other}\"\n"),
        None => {}
    }

    let Some(map) = info.memory_map else {
        printk!("ERR: no memory map: cannot allocate memory for domains\n");
        power::fail(FailCode::BadBoot);
    };
    let Some(dom0_module) = info.modules.first() else {
        printk!("ERR: no boot module: nothing to run as dom0\n");
        power::fail(FailCode::BadBoot);
    };
    let (dom0_path, dom0_cmdline) = cmdline::split_image_name(dom0_module.string);
    let nr_pages = options.dom0_mem.unwrap_or(DEFAULT_DOM0_MEM) / 4096;
    arch::x86_64::dom0::start(&info, map, dom0_module, dom0_path, dom0_cmdline, nr_pages)
}

/// dom0's memory when `dom0_mem=` is not given.
#[cfg(target_os = "none")]
const DEFAULT_DOM0_MEM: u64 = 64 * xen_core::layout::MIB;

/// A panic in the hypervisor: report it on the console and fail the run.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let message = info.message();
    match info.location() {
        Some(at) => arch::x86_64::console::print_emergency(format_args!(
            "PANIC: {message} (at {}:{})\n",
            at.file(),
            at.line()
        )),
        None => arch::x86_64::console::print_emergency(format_args!("PANIC: {message}\n")),
    }
    arch::x86_64::symbols::print_backtrace(arch::x86_64::symbols::current_rbp());
    arch::x86_64::power::fail(xen_core::power::FailCode::Panic)
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "xen: this is the hypervisor image; build it with \
         `cargo build -p xen-core --bin xen --target x86_64-unknown-none --profile kernel`"
    );
    std::process::exit(1);
}
