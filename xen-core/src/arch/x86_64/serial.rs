//! A polled 16550 UART: the hypervisor's console on COM1, 115200 baud, 8 data bits, no parity.

use core::fmt;

use x86_64::instructions::port::Port;

/// Register offsets from the UART's base port (with DLAB clear unless noted).
const THR: u16 = 0; // transmit holding register (write)
const DLL: u16 = 0; // divisor latch, low byte (DLAB set)
const IER: u16 = 1; // interrupt enable
const DLM: u16 = 1; // divisor latch, high byte (DLAB set)
const FCR: u16 = 2; // FIFO control (write)
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status

const LCR_DLAB: u8 = 0x80;
const LCR_8N1: u8 = 0x03;
/// Enable the FIFOs, clear both, interrupt threshold 14 bytes.
const FCR_ENABLE_CLEAR: u8 = 0xC7;
/// DTR and RTS; OUT2 stays clear because the console is polled, not interrupt-driven.
const MCR_DTR_RTS: u8 = 0x03;
/// Transmit holding register empty: the UART takes another byte.
const LSR_THRE: u8 = 0x20;
/// Line status: a received byte is waiting in RBR.
const LSR_DATA_READY: u8 = 0x01;
/// Receive buffer register (read, DLAB clear): the same port as THR.
const RBR: u16 = 0;

/// The UART clock (1.8432 MHz) divided by 16; the divisor for a baud rate is this over the rate.
const UART_BASE_BAUD: u32 = 115_200;
const BAUD: u32 = 115_200;

/// One 16550-compatible UART, addressed by its I/O base port.
pub struct SerialPort {
    base: u16,
}

impl SerialPort {
    /// The first PC serial port.
    pub const COM1: SerialPort = SerialPort { base: 0x3f8 };

    /// Programs 115200 8n1 with FIFOs on and interrupts off.
    pub fn init(&mut self) {
        let divisor = UART_BASE_BAUD / BAUD;
        self.write_reg(IER, 0);
        self.write_reg(LCR, LCR_DLAB);
        self.write_reg(DLL, (divisor & 0xff) as u8);
        self.write_reg(DLM, (divisor >> 8) as u8);
        self.write_reg(LCR, LCR_8N1);
        self.write_reg(FCR, FCR_ENABLE_CLEAR);
        self.write_reg(MCR, MCR_DTR_RTS);
    }

    /// Sends one byte, waiting until the UART can take it.
    pub fn write_byte(&mut self, byte: u8) {
        // An absent UART reads as 0xff, THRE set: this loop cannot hang on missing hardware.
        while self.read_reg(LSR) & LSR_THRE == 0 {
            core::hint::spin_loop();
        }
        self.write_reg(THR, byte);
    }

    /// A received byte, if one is waiting (never blocks).
    pub fn read_byte(&mut self) -> Option<u8> {
        // An absent UART reads as 0xff: data-ready set, and the byte read is 0xff. Treat that as
        // no input (0xff is not a key anyone types on a serial console).
        if self.read_reg(LSR) & LSR_DATA_READY == 0 {
            return None;
        }
        Some(self.read_reg(RBR)).filter(|&b| b != 0xff)
    }

    fn write_reg(&mut self, reg: u16, value: u8) {
        // SAFETY: the UART's eight ports belong to the hypervisor (no guest is given access to
        // them) and writing its registers has no effect on memory.
        unsafe { Port::<u8>::new(self.base + reg).write(value) }
    }

    fn read_reg(&mut self, reg: u16) -> u8 {
        // SAFETY: as in `write_reg`; reading LSR has no side effect that matters to a polled UART.
        unsafe { Port::<u8>::new(self.base + reg).read() }
    }
}

impl fmt::Write for SerialPort {
    /// Writes `s`, turning each `\n` into `\r\n` as serial terminals (and Xen) expect.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
        Ok(())
    }
}
