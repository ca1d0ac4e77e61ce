//! `hostile=console-escapes`: console output made to rewrite dom0's log.
//!
//! dom0's console daemon prints each line of a domU's console ring with a `(dN) ` prefix. Raw,
//! the bytes below would erase that prefix on a terminal (`ESC [2K`, `ESC [1G`, backspaces),
//! retitle the window, ring the bell, or slip in a line that reads as the hypervisor's. dom0 must
//! escape them (`ring_drivers::printable`), as Xen strips them from a domU's console writes.

use crate::kernel::console;

pub fn run() -> Result<(), &'static str> {
    let lines: [&[u8]; 5] = [
        b"hostile: console-escapes: \x1b[2K\x1b[1G(XEN) fake hypervisor line\n",
        b"hostile: console-escapes: \x08\x08\x08\x08\x08(XEN) behind backspaces\x07\n",
        b"hostile: console-escapes: \x1b]0;owned\x07 title\x00nul\x7fdel\n",
        b"hostile: console-escapes: carriage\r(XEN) return\n",
        b"hostile: console-escapes: high \xc2\xb5 \xff and a backslash \\x1b\n",
    ];
    for l in lines {
        console::write_bytes(l);
    }
    console::flush();
    println!("hostile: console-escapes: lines=5");
    Ok(())
}
