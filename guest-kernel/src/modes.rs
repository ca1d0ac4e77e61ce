//! Which program the kernel runs, from the command line: the conformance suite, a benchmark or
//! lab (`suites/`), dom0's disk self-test, user-mode `init` (`user/`), the domU (`domu/`) or
//! dom0's services (`dom0/`). [`guest_main`] is the Rust entry `kernel/boot.rs` calls.

use guest_kernel::cmdline::Cmdline;
use hypercall_abi::sched::{SHUTDOWN_crash, SHUTDOWN_poweroff, SHUTDOWN_reboot};
use hypercall_abi::xen::{StartInfo, SIF_INITDOMAIN, SIF_PRIVILEGED};

use crate::kernel::{hypercall, mm, shared_info};
use crate::suites::{bench, conformance, lab};
use crate::{dom0, domu, user};

/// Rust entry, called by `kernel/boot.rs` with the `start_info` pointer Xen left in RSI.
///
/// # Safety
/// `start_info` must be the pointer the hypervisor passed at entry, and this is called once.
#[no_mangle]
unsafe extern "C" fn guest_main(start_info: *const StartInfo) -> ! {
    // SAFETY: the caller passes the start_info Xen mapped for us; it stays mapped and is not
    // written by anyone else for the kernel's lifetime.
    let si: &'static StartInfo = unsafe { &*start_info };
    mm::init(si);
    let initdomain = si.flags & SIF_INITDOMAIN != 0;
    // dom0's own words, and what follows `--` for the domU it builds (`build-domu`); a domU's
    // command line is its own whole.
    let whole = Cmdline::from_bytes(&si.cmd_line);
    let (cmdline, domu_cmdline) = if initdomain {
        whole.split_dashes()
    } else {
        (whole, None)
    };
    if !initdomain {
        // A domU's console is its console ring, from the first line on.
        domu::early_console(si);
    }

    let role = if si.flags & SIF_INITDOMAIN != 0 {
        "dom0"
    } else {
        "domU"
    };
    let magic = Cmdline::from_bytes(&si.magic);
    println!(
        "guest-kernel {}: booted as {role} on {} ({} pages{})",
        env!("CARGO_PKG_VERSION"),
        magic.as_str(),
        si.nr_pages,
        if si.flags & SIF_PRIVILEGED != 0 {
            ", privileged"
        } else {
            ""
        },
    );
    println!("guest-kernel: command line \"{}\"", cmdline.as_str());

    let reason = match cmdline.get("suite") {
        Some("conformance") => {
            let reason = exit_reason(&cmdline);
            conformance::run(si, reason);
            reason
        }
        Some(other) => {
            println!("guest-kernel: unknown suite '{other}'");
            SHUTDOWN_crash
        }
        None => match (cmdline.get("bench"), cmdline.get("lab")) {
            (Some(name), _) if bench::run(name, &cmdline) => exit_reason(&cmdline),
            (Some(name), _) => {
                println!("guest-kernel: unknown benchmark '{name}'");
                SHUTDOWN_crash
            }
            (None, Some(name)) if lab::run(name, &cmdline) => exit_reason(&cmdline),
            (None, Some(name)) => {
                println!("guest-kernel: unknown lab '{name}'");
                SHUTDOWN_crash
            }
            // dom0 drives its virtio disk: find it, read, write a pattern, flush, read back;
            // with `pci-msi-attack`, after trying to program every device's MSI and MSI-X.
            (None, None) if cmdline.has("blkdev-selftest") || cmdline.has("pci-msi-attack") => {
                if cmdline.has("pci-msi-attack") {
                    if let Err(rc) = dom0::pci::msi_attack() {
                        println!("pci-msi-attack: PHYSDEVOP_set_iopl(1)={rc}");
                    }
                }
                let sector = cmdline
                    .get("blkdev-selftest")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1);
                // The PIRQ's port and the poll timeout need shared_info (without it the driver
                // polls).
                if let Err(e) = shared_info::map(si) {
                    println!("guest-kernel: shared_info: {e}");
                }
                if dom0::blkdev::selftest(sector) {
                    exit_reason(&cmdline)
                } else {
                    SHUTDOWN_crash
                }
            }
            (None, None) if cmdline.has("init") => {
                user::run_init(si, &cmdline);
                exit_reason(&cmdline)
            }
            (None, None) if !initdomain => domu::run(si, &cmdline),
            // `stay`: the services run (the network, the shell) even with no domU to serve.
            (None, None)
                if dom0::has_domus() || cmdline.has("stay") || cmdline.has("build-domu") =>
            {
                // The services end with a power-off, unless `exit=reboot` asks for a reboot
                // (Xen halts the machine on dom0's power-off; a reboot lets QEMU exit).
                match dom0::run(si, &cmdline, domu_cmdline) {
                    reason if reason == SHUTDOWN_poweroff => exit_reason(&cmdline),
                    reason => reason,
                }
            }
            (None, None) => {
                println!("guest-kernel: nothing to do, shutting down");
                exit_reason(&cmdline)
            }
        },
    };
    hypercall::shutdown(reason)
}

/// `exit=reboot` asks for SHUTDOWN_reboot (Xen then resets the machine, and QEMU's `-no-reboot`
/// exits); anything else is a power-off.
fn exit_reason(cmdline: &Cmdline<'_>) -> u32 {
    match cmdline.get("exit") {
        Some("reboot") => SHUTDOWN_reboot,
        _ => SHUTDOWN_poweroff,
    }
}
