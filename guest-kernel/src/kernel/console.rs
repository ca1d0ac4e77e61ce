//! Console output through `console_io(CONSOLEIO_write)`: one hypercall per formatted line.

use core::fmt::{self, Write};

use guest_kernel::line::LineBuf;
use hypercall_abi::xen::CONSOLEIO_write;

use super::hypercall;

/// Writes raw bytes to the hypervisor console.
pub fn write_bytes(bytes: &[u8]) {
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
