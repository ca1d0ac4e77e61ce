//! `hostile=<name>`: a domU that makes one attack on the hypervisor, one per boot (issue 11).
//!
//! Each attack is a way in which one unprivileged guest could crash, stall or take over the
//! hypervisor, or keep another domain's memory, if the hypervisor lacked one of Xen's rules. The
//! attacker prints `hostile: <name>: <what it saw>` lines (return codes, counts), then returns,
//! and the domU powers off; or the hypervisor crashes it, which is also allowed. The QEMU tests
//! (`tests/tests/hostile.rs`) run each attack next to a bystander domU that must finish its own
//! work, and check that the hypervisor survives and every frame of the attacker comes back.
//!
//! One module per attack; [`ATTACKS`] is the table of names.

use core::sync::atomic::AtomicU16;

mod alias;
mod bad_iret;
mod close_store_port;
mod console_escapes;
mod far_timer;
mod gdt_leak;
mod grant_exhaust;
mod huge_multicall;
mod huge_trap_table;
mod live_l4;
mod watchdog_spin;

/// The attacker's own domain id (from xenstore; the domU sets it before [`run`]).
pub static DOMID: AtomicU16 = AtomicU16::new(0);

/// An attack: runs once, returns what to report on failure to even set up.
type Attack = fn() -> Result<(), &'static str>;

/// Every attack, by the name `hostile=` takes.
const ATTACKS: &[(&str, Attack)] = &[
    ("bad-iret", bad_iret::run),
    ("live-l4", live_l4::run),
    ("gdt-leak", gdt_leak::run),
    ("grant-exhaust", grant_exhaust::run),
    ("huge-trap-table", huge_trap_table::run),
    ("huge-multicall", huge_multicall::run),
    ("close-store-port", close_store_port::run),
    ("console-escapes", console_escapes::run),
    ("far-timer", far_timer::run),
    ("watchdog-spin", watchdog_spin::run),
];

/// Attacks on dom0's toolstack that must strike before dom0 introduces the domU: called first
/// thing by `domu::run`. Returns if there is none to make (or it found dom0 was quicker).
pub fn early(si: &hypercall_abi::xen::StartInfo, name: &str) {
    if name == "close-store-port" {
        close_store_port::early(si);
    }
}

/// Runs the attack `name`.
pub fn run(name: &str) -> Result<(), &'static str> {
    let Some((_, attack)) = ATTACKS.iter().find(|(n, _)| *n == name) else {
        println!("hostile: unknown attack {name:?}; known:");
        for (n, _) in ATTACKS {
            println!("hostile:   {n}");
        }
        return Err("unknown attack");
    };
    println!("hostile: {name}: start");
    attack()?;
    println!("hostile: {name}: survived");
    Ok(())
}
