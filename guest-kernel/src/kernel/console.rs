//! Console output: through `console_io(CONSOLEIO_write)`, one hypercall per formatted line (dom0,
//! and any domain before its console ring is set up), or, for a domU once [`use_ring`] ran, into
//! its PV console ring (`io/console.h`), notifying dom0's console daemon after each line. Xen's
//! release builds refuse `console_io` to a domU, so the ring is a domU's only console.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use guest_kernel::line::LineBuf;
use hypercall_abi::xen::CONSOLEIO_write;
use ring_drivers::console_ring;

use super::hypercall;
use super::ring_page::MappedPage;

/// Virtual address of the console ring page (0: use `console_io`).
static RING_VA: AtomicU64 = AtomicU64::new(0);
/// The console ring's event channel.
static RING_PORT: AtomicU32 = AtomicU32::new(0);

/// Yields we spend waiting for the console daemon before giving up on a line or a flush.
const PATIENCE: u32 = 100_000;

/// From now on, output goes into the console ring mapped at `va`, and `port` is notified.
///
/// # Safety
/// `va` must be the console ring page, mapped writable for the kernel's lifetime.
pub unsafe fn use_ring(va: u64, port: u32) {
    RING_PORT.store(port, Ordering::SeqCst);
    RING_VA.store(va, Ordering::SeqCst);
}

fn ring() -> Option<MappedPage> {
    match RING_VA.load(Ordering::SeqCst) {
        0 => None,
        // SAFETY: `use_ring`'s caller vouched for the mapping.
        va => Some(unsafe { MappedPage::new(va) }),
    }
}

fn notify() {
    let _ = super::events::send(RING_PORT.load(Ordering::SeqCst));
}

/// Puts `bytes` into the ring, waiting (yielding the CPU to dom0) while it is full; false if
/// the ring is broken or the daemon never makes room.
fn ring_write(mut page: MappedPage, mut bytes: &[u8]) -> bool {
    let mut waited = 0;
    while !bytes.is_empty() {
        let Ok(n) = console_ring::write(&mut page, bytes) else {
            return false;
        };
        if n > 0 {
            notify();
            bytes = &bytes[n..];
            continue;
        }
        waited += 1;
        if waited > PATIENCE {
            return false;
        }
        hypercall::sched_op_noarg(hypercall_abi::sched::SchedNoArg::Yield);
    }
    true
}

/// Waits until the console daemon has taken everything out of the ring (before a shutdown);
/// whether it did.
pub fn flush() -> bool {
    let Some(page) = ring() else { return true };
    for _ in 0..PATIENCE {
        match console_ring::out_waiting(&page) {
            Ok(0) => return true,
            Ok(_) => {
                notify();
                hypercall::sched_op_noarg(hypercall_abi::sched::SchedNoArg::Yield);
            }
            Err(_) => return false,
        }
    }
    false
}

/// Writes raw bytes to the console (the ring if set up, else the hypervisor console).
pub fn write_bytes(bytes: &[u8]) {
    if let Some(page) = ring() {
        if ring_write(page, bytes) {
            return;
        }
    }
    hv_write_bytes(bytes);
}

/// Writes raw bytes to the hypervisor console (`console_io`).
pub fn hv_write_bytes(bytes: &[u8]) {
    // console_io takes a mutable handle in its C prototype but only reads for CONSOLEIO_write;
    // copy into a local chunk so we never hand the hypervisor a pointer to read-only data.
    let mut chunk = [0u8; 256];
    for part in bytes.chunks(chunk.len()) {
        chunk[..part.len()].copy_from_slice(part);
        hypercall::console_io(CONSOLEIO_write, &mut chunk[..part.len()]);
    }
}

/// Formats `args` plus a newline into one buffer and writes it with one hypercall (per 256 bytes).
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut line = LineBuf::<1024>::new();
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    write_bytes(line.as_bytes());
}

/// Prints a formatted line on the hypervisor console.
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::kernel::console::print_line(format_args!($($arg)*))
    };
}
