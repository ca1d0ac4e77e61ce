//! The hypervisor console: `printk!` and the `log` back end, on COM1, each line prefixed `(XEN) `.
//!
//! `printk!` always prints (banners, boot summary, fatal errors); `log::{error,warn,info,debug}!`
//! print if the level passes `loglvl=` from the command line, as in Xen.

use core::fmt::{self, Write};

use spin::Mutex;
use xen_core::console::{LinePrefixer, XEN_PREFIX};

use super::serial::SerialPort;

/// The console: one UART behind one lock, so lines from different callers do not interleave.
static CONSOLE: Mutex<LinePrefixer<SerialPort>> =
    Mutex::new(LinePrefixer::new(SerialPort::COM1, XEN_PREFIX));

/// Prints to the hypervisor console, like `print!`: no newline is added.
macro_rules! printk {
    ($($arg:tt)*) => {
        $crate::arch::x86_64::console::print(format_args!($($arg)*))
    };
}
pub(crate) use printk;

/// Programs the UART and installs the `log` back end (level `warning` until the command line is
/// read, Xen's default).
pub fn init() {
    CONSOLE.lock().inner_mut().init();
    // `set_logger` fails only if a logger is already installed: then that one keeps working.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Warn);
}

/// Backs `printk!`.
pub fn print(args: fmt::Arguments<'_>) {
    // The UART never reports a write error.
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Prints from a path that may have interrupted a `print` (panic, fatal exception), starting on a
/// fresh line.
pub fn print_emergency(args: fmt::Arguments<'_>) {
    if CONSOLE.is_locked() {
        // SAFETY: there is one CPU and interrupts are never enabled, so the lock holder is the very
        // code this fatal path interrupted; it will never run again and cannot observe the unlock.
        // (With SMP, this must become "wait a bounded time, then break the lock", as Xen's
        // `console_force_unlock` does.)
        unsafe { CONSOLE.force_unlock() };
    }
    let mut console = CONSOLE.lock();
    if !console.at_line_start() {
        let _ = console.write_str("\n");
    }
    let _ = console.write_fmt(args);
}

/// Forwards `log` records to the console.
struct Logger;

static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            print(format_args!("{}\n", record.args()));
        }
    }

    fn flush(&self) {}
}

/// Writes a guest's console bytes as they are (dom0's `console_io` output, like Xen's, carries no
/// prefix), through the same lock so that lines never interleave mid-byte-sequence.
pub fn write_guest(bytes: &[u8]) {
    let mut console = CONSOLE.lock();
    let port = console.inner_mut();
    for &b in bytes {
        if b == b'\n' {
            port.write_byte(b'\r');
        }
        port.write_byte(b);
    }
}

/// A byte typed on the serial console, if any (never blocks).
fn read_byte() -> Option<u8> {
    CONSOLE.lock().inner_mut().read_byte()
}

/// Where serial input goes (dom0 at boot; three `CTRL-a` switch to the debug keys and back).
static INPUT: spin::Mutex<xen_core::console::InputSwitch> =
    spin::Mutex::new(xen_core::console::InputSwitch::new());

/// Serial input waiting for dom0's `CONSOLEIO_read`.
static DOM0_INPUT: spin::Mutex<xen_core::console::InputQueue<1024>> =
    spin::Mutex::new(xen_core::console::InputQueue::new());

/// Reads what was typed: debug keys are handed to `key`; bytes for dom0 are queued. Returns
/// whether dom0 got new input (the caller raises `VIRQ_CONSOLE`).
pub fn poll_input(mut key: impl FnMut(u8)) -> bool {
    use xen_core::console::{Input, InputOwner};
    let mut for_dom0 = false;
    while let Some(b) = read_byte() {
        let routed = INPUT.lock().feed(b);
        match routed {
            Input::Dom0(b) => {
                DOM0_INPUT.lock().push(b);
                for_dom0 = true;
            }
            Input::Key(k) => key(k),
            Input::Switched(InputOwner::Xen) => {
                printk!("*** Serial input to Xen (type 'CTRL-a' three times to switch input)\n")
            }
            Input::Switched(InputOwner::Dom0) => {
                printk!("*** Serial input to DOM0 (type 'CTRL-a' three times to switch input)\n")
            }
            Input::Pending => {}
        }
    }
    for_dom0
}

/// Moves queued dom0 input into `buf` (`CONSOLEIO_read`); returns how many bytes.
pub fn read_dom0_input(buf: &mut [u8]) -> usize {
    DOM0_INPUT.lock().pop_into(buf)
}
