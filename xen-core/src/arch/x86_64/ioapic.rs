//! The I/O APIC (where ACPI's MADT puts it, 0xFEC00000 on QEMU, see `platform.rs`; the
//! hypervisor's, dom0 may map it read-only, as on Xen): routes the GSIs dom0 bound as PIRQs to
//! [`IRQ_VECTOR_BASE`]` + gsi` on this CPU's local APIC.
//!
//! PCI INTx lines are level-triggered and, on QEMU's `pc` machine, active high at the I/O APIC
//! (QEMU's MADT gives every PCI-routed ISA IRQ an override with flags 0xd: level, active high),
//! so each GSI is programmed with the trigger mode and polarity of its MADT override, or the
//! MADT's default without one (`platform::gsi_signal`: edge for an ISA IRQ, level above), fixed
//! delivery, physical destination.
//! When one fires, [`interrupt`] masks its line and sends the local APIC its EOI (the level stays
//! asserted until the device is serviced, so the line must stay masked until the guest's
//! `PHYSDEVOP_eoi`), and records the GSI; the dispatcher then raises dom0's bound port
//! ([`take_pending`], `xen_core::evtchn::hypercall::send_gsi`). Entries start masked (at boot,
//! [`init_at_boot`]), and
//! [`sync`] unmasks exactly those `xen_core::pirq::PirqTable::line_enabled` names.

use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use xen_core::pirq::{PirqTable, NR_GSIS};

use super::console::printk;
use super::{apic, mmio, platform};

/// First vector of the GSIs: GSI n arrives on vector 0x30 + n (below the timer's 0xF0).
pub const IRQ_VECTOR_BASE: u8 = 0x30;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_VERSION: u32 = 0x01;
const REG_REDIR: u32 = 0x10;

const REDIR_MASKED: u32 = 1 << 16;
const REDIR_LEVEL: u32 = 1 << 15;
const REDIR_ACTIVE_LOW: u32 = 1 << 13;

/// Virtual address of the register window, 0 before [`init`].
static BASE: AtomicU64 = AtomicU64::new(0);
/// Redirection entries present (from the version register).
static ENTRIES: AtomicU32 = AtomicU32::new(0);
/// GSIs whose entry is unmasked.
static ENABLED: AtomicU32 = AtomicU32::new(0);
/// GSIs that fired and are not yet delivered to dom0.
static PENDING: AtomicU32 = AtomicU32::new(0);
/// GSIs routed at least once (each is reported once); their entries hold this CPU as the
/// destination.
static ROUTED: AtomicU32 = AtomicU32::new(0);
/// Interrupts taken since boot (debug keys, tests).
static COUNT: AtomicU64 = AtomicU64::new(0);

/// The register IOREGSEL selects ([`UNSELECTED`] when unknown): each access to the window
/// selects its register only if another one is selected. No CPU path writes IOREGSEL but this
/// module's (dom0 may map the I/O APIC read-only, never writable: `dom0::start`), on one CPU
/// with interrupts off, so this is what the I/O APIC holds. (A bus-master device dom0 drives
/// could DMA to it, there being no IOMMU; dom0 can already DMA anywhere, so that gives it
/// nothing new. A second CPU would need this per CPU or under a lock, as the accesses
/// themselves would.) Under emulation every register access is
/// an exit (QEMU's TCG leaves the translated block for each MMIO access); an interrupt's mask
/// and its EOI's unmask of the same entry then take one access each after the first select.
static SELECTED: AtomicU32 = AtomicU32::new(UNSELECTED);
const UNSELECTED: u32 = u32::MAX;

/// Selects `reg` in IOREGSEL unless it is selected already.
fn select(base: u64, reg: u32) {
    if SELECTED.load(Ordering::SeqCst) != reg {
        // SAFETY: `base` is the uncached direct-map address of the I/O APIC (from `init`);
        // selecting a register has no other effect. One CPU, interrupts off: no other selector
        // write can come in between.
        unsafe { ptr::write_volatile((base + IOREGSEL) as *mut u32, reg) };
        SELECTED.store(reg, Ordering::SeqCst);
    }
}

fn read(base: u64, reg: u32) -> u32 {
    select(base, reg);
    // SAFETY: as in `select`; reading the window has no side effect.
    unsafe { ptr::read_volatile((base + IOWIN) as *const u32) }
}

fn write(base: u64, reg: u32, value: u32) {
    select(base, reg);
    // SAFETY: as in `select`; the registers written are redirection entries the hypervisor owns.
    unsafe { ptr::write_volatile((base + IOWIN) as *mut u32, value) };
}

/// At boot, after `platform::discover` (which says where the I/O APIC is and how each GSI
/// signals): maps it and masks every entry, so that nothing the firmware left unmasked can
/// deliver before dom0 binds its first line (until then it was done at that first bind).
pub fn init_at_boot() {
    if init().is_none() {
        printk!(
            "irq: no I/O APIC answers at {:#x}: no device interrupts\n",
            platform::ioapic_base()
        );
    }
}

/// Maps the I/O APIC uncached and masks every entry; idempotent. Returns the register window,
/// or `None` if it cannot be reached.
fn init() -> Option<u64> {
    let base = BASE.load(Ordering::SeqCst);
    if base != 0 {
        return Some(base);
    }
    let base = mmio::directmap_uncached(platform::ioapic_base()).ok()?;
    // Whatever firmware left selected, select afresh (and again at a retry after a failure).
    SELECTED.store(UNSELECTED, Ordering::SeqCst);
    let version = read(base, REG_VERSION);
    if version == u32::MAX {
        SELECTED.store(UNSELECTED, Ordering::SeqCst);
        return None;
    }
    let entries = ((version >> 16) & 0xff) + 1;
    for gsi in 0..entries {
        // Masked, but already in the line's own trigger mode (see `program`); entries beyond
        // the GSIs dom0 can bind are never programmed (their vector would not fit).
        let low = if gsi < NR_GSIS {
            low_word(gsi, true)
        } else {
            REDIR_MASKED
        };
        write(base, REG_REDIR + 2 * gsi, low);
    }
    ENTRIES.store(entries.min(NR_GSIS), Ordering::SeqCst);
    BASE.store(base, Ordering::SeqCst);
    Some(base)
}

/// The low word of `gsi`'s entry: vector `IRQ_VECTOR_BASE + gsi`, the trigger mode and polarity
/// `platform::gsi_signal` gives, masked or not.
fn low_word(gsi: u32, masked: bool) -> u32 {
    let vector = u32::from(IRQ_VECTOR_BASE) + gsi;
    let signal = platform::gsi_signal(gsi);
    vector
        | if signal.level { REDIR_LEVEL } else { 0 }
        | if signal.active_low {
            REDIR_ACTIVE_LOW
        } else {
            0
        }
        | if masked { REDIR_MASKED } else { 0 }
}

/// Programs `gsi`'s entry (see [`low_word`]) to this CPU.
///
/// The entry is masked first *in its own trigger mode*, never as a bare `REDIR_MASKED` (which
/// also says edge): a level-triggered line that rises while its entry reads "masked, edge" is
/// dropped (an edge on a masked pin is ignored, as the 82093AA's manual says and QEMU's model
/// does), and once the entry says level again nothing re-reads the line, which stays high
/// (the device waits for its ISR to be read, dom0 for an interrupt): the line is lost for
/// good. QEMU's INTx from virtio-blk hit that window now and then during the EOI's unmask
/// (`make bench BENCH_ARGS=--blk` crawling at 10 IOPS on the driver's 100 ms poll timeout,
/// the device's ISR 1, the 8259 seeing IRQ 11 high and the I/O APIC not). A masked
/// level-triggered entry still records the line, and unmasking it delivers.
fn program(base: u64, gsi: u32, masked: bool) {
    // The destination is written once, while the entry is masked (this CPU's APIC ID does not
    // change); afterwards the entry's low word alone masks and unmasks it (`init` left it
    // masked in its own trigger mode, and so does [`interrupt`]).
    if ROUTED.load(Ordering::SeqCst) & (1 << gsi) == 0 {
        // Mask first, then the destination, then the final low word.
        write(base, REG_REDIR + 2 * gsi, low_word(gsi, true));
        write(base, REG_REDIR + 2 * gsi + 1, (apic::id() & 0xff) << 24);
    }
    write(base, REG_REDIR + 2 * gsi, low_word(gsi, masked));
}

/// Unmasks exactly the lines `pirqs` (dom0's) says are enabled.
pub fn sync(pirqs: &PirqTable) {
    let want = (0..NR_GSIS)
        .filter(|&g| pirqs.line_enabled(g))
        .fold(0u32, |acc, g| acc | 1 << g);
    let have = ENABLED.load(Ordering::SeqCst);
    if want == have {
        return;
    }
    let Some(base) = init() else {
        return;
    };
    let entries = ENTRIES.load(Ordering::SeqCst);
    let want = want & ((1u64 << entries) - 1) as u32;
    for gsi in 0..entries {
        let bit = 1 << gsi;
        if (want ^ have) & bit != 0 {
            program(base, gsi, want & bit == 0);
            // `program` wrote the destination if it was not routed yet (a line is never
            // unmasked before that).
            if want & bit != 0 && ROUTED.fetch_or(bit, Ordering::SeqCst) & bit == 0 {
                printk!(
                    "irq: GSI {gsi} -> vector {:#x} (I/O APIC, {}) -> dom0 pirq\n",
                    u32::from(IRQ_VECTOR_BASE) + gsi,
                    platform::gsi_signal(gsi)
                );
            }
        }
    }
    ENABLED.store(want, Ordering::SeqCst);
}

/// The GSI behind an interrupt `vector`, if it is one of [`IRQ_VECTOR_BASE`]'s.
pub fn gsi_of_vector(vector: u64) -> Option<u32> {
    let gsi = vector.checked_sub(u64::from(IRQ_VECTOR_BASE))?;
    (gsi < u64::from(NR_GSIS)).then_some(gsi as u32)
}

/// A GSI's interrupt: mask its line (level-triggered: it stays asserted until the guest has
/// serviced the device), EOI the local APIC, and leave it for [`take_pending`].
pub fn interrupt(gsi: u32) {
    let base = BASE.load(Ordering::SeqCst);
    if base != 0 {
        // Masked in its own trigger mode (see `program`): the entry's low word is all this
        // module's (`low_word`), so it is written without being read first.
        write(base, REG_REDIR + 2 * gsi, low_word(gsi, true));
    }
    ENABLED.fetch_and(!(1 << gsi), Ordering::SeqCst);
    PENDING.fetch_or(1 << gsi, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::Relaxed);
    apic::eoi();
}

/// The GSIs that fired since the last call.
pub fn take_pending() -> u32 {
    PENDING.swap(0, Ordering::SeqCst)
}

/// Whether some line is unmasked (an interrupt may still wake an idle CPU).
pub fn any_enabled() -> bool {
    ENABLED.load(Ordering::SeqCst) != 0
}

/// Device interrupts taken since boot.
pub fn count() -> u64 {
    COUNT.load(Ordering::Relaxed)
}
