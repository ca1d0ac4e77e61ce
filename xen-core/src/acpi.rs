//! ACPI at boot: the RSDP, the RSDT or XSDT, and the MADT (the interrupt controllers: local
//! APICs, I/O APICs and the ISA interrupt source overrides), read from machine memory.
//!
//! A small parser instead of the `acpi` crate: three fixed-layout tables, every length and
//! checksum checked (ACPI 6.5, 5.2.5 RSDP, 5.2.6 headers, 5.2.7/5.2.8 RSDT/XSDT, 5.2.12 MADT),
//! nothing allocated, and firmware tables treated like any other untrusted input: a bad table is
//! an error the caller reports, never a panic or a read past its end. The hypervisor
//! (`arch/x86_64/platform.rs`) takes the I/O APIC's address and each GSI's trigger mode and
//! polarity from here, falling back to QEMU's fixed layout when there is no ACPI.

use crate::mm::{MachineMemory, Maddr};

/// The RSDP's signature.
const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Bytes of the ACPI 1.0 RSDP (covered by its checksum).
const RSDP_V1_LEN: usize = 20;
/// Bytes of the ACPI 2.0+ RSDP.
const RSDP_V2_LEN: usize = 36;
/// A system description table's header.
const HEADER_LEN: usize = 36;
/// The longest table this parser accepts (QEMU's MADT is about 120 bytes; this bounds a hostile
/// or corrupt length field).
const MAX_TABLE_LEN: usize = 64 * 1024;
/// The most I/O APICs and interrupt source overrides kept (more are counted, not kept).
pub const MAX_IOAPICS: usize = 8;
pub const MAX_OVERRIDES: usize = 16;

/// Why the ACPI tables could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No RSDP in the EBDA's first KiB or in 0xE0000..0x100000.
    NoRsdp,
    /// A table (named by its signature) is not readable at the address its parent gives.
    Unreadable([u8; 4], u64),
    /// A table's length field is too small or too large for its kind.
    BadLength([u8; 4], u64),
    /// A table's bytes do not sum to zero.
    BadChecksum([u8; 4]),
    /// No table with this signature (or the RSDT/XSDT entry looked at is another table).
    NotFound([u8; 4]),
    /// A MADT entry's length is too small for its type or runs past the table.
    BadEntry { offset: usize, kind: u8, len: u8 },
}

/// A table signature as text.
fn sig_str(s: &[u8; 4]) -> &str {
    core::str::from_utf8(s).unwrap_or("????")
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AcpiError::NoRsdp => write!(f, "no RSDP found"),
            AcpiError::Unreadable(s, a) => write!(f, "{} at {a:#x} is not readable", sig_str(s)),
            AcpiError::BadLength(s, l) => write!(f, "{} has a bad length {l}", sig_str(s)),
            AcpiError::BadChecksum(s) => write!(f, "{} has a bad checksum", sig_str(s)),
            AcpiError::NotFound(s) => write!(f, "no {} table", sig_str(s)),
            AcpiError::BadEntry { offset, kind, len } => write!(
                f,
                "MADT entry at offset {offset} (type {kind}) has a bad length {len}"
            ),
        }
    }
}

/// Where the tables are: the RSDP's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    /// The RSDP's own machine address.
    pub address: u64,
    /// 0 for ACPI 1.0, 2 or more for ACPI 2.0+.
    pub revision: u8,
    /// The RSDT's machine address.
    pub rsdt: u32,
    /// The XSDT's machine address (ACPI 2.0+; 0 when absent).
    pub xsdt: u64,
}

/// An I/O APIC from the MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    pub id: u8,
    /// Machine address of its registers.
    pub address: u32,
    /// The first GSI it serves.
    pub gsi_base: u32,
}

/// An interrupt source override: ISA IRQ `source` arrives on `gsi`, with `flags` (MPS INTI
/// flags: polarity in bits 0..2, trigger mode in bits 2..4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Override {
    pub bus: u8,
    pub source: u8,
    pub gsi: u32,
    pub flags: u16,
}

/// A GSI's trigger mode and polarity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal {
    pub level: bool,
    pub active_low: bool,
}

impl core::fmt::Display for Signal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}, active {}",
            if self.level { "level" } else { "edge" },
            if self.active_low { "low" } else { "high" }
        )
    }
}

impl Override {
    /// The signal its flags describe; "conforms to the bus" is the ISA default (edge, active high).
    pub fn signal(&self) -> Signal {
        Signal {
            active_low: self.flags & 0b11 == 0b11,
            level: (self.flags >> 2) & 0b11 == 0b11,
        }
    }
}

/// What the MADT says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Madt {
    /// The local APICs' address (the 64-bit override when one is given).
    pub local_apic: u64,
    /// PCAT_COMPAT: dual 8259s are present (and must be masked).
    pub pcat_compat: bool,
    /// Enabled (or online-capable) local APICs and x2APICs: the CPUs.
    pub cpus: u32,
    pub ioapics: heapless::Vec<IoApic, MAX_IOAPICS>,
    pub overrides: heapless::Vec<Override, MAX_OVERRIDES>,
    /// Entries that did not fit in the vectors above.
    pub dropped: u32,
}

impl Madt {
    /// The I/O APIC that serves `gsi`: the one with the highest base at or below it.
    pub fn ioapic_for(&self, gsi: u32) -> Option<&IoApic> {
        self.ioapics
            .iter()
            .filter(|io| io.gsi_base <= gsi)
            .max_by_key(|io| io.gsi_base)
    }

    /// The override that targets `gsi`, if any.
    pub fn override_for_gsi(&self, gsi: u32) -> Option<&Override> {
        self.overrides.iter().find(|o| o.gsi == gsi)
    }

    /// How `gsi` signals: its override's flags if the MADT has one; else, for GSIs 0-15 (the ISA
    /// IRQs, identity-mapped), the ISA bus's own rule, edge and active high (ACPI 6.5
    /// §5.2.12.5: an ISA interrupt whose trigger or polarity differs needs an override, as QEMU
    /// gives its PCI-routed IRQs 5, 9, 10 and 11); above them, level and active high, what
    /// QEMU's DSDT declares for its PCI interrupt links on `pc` and `q35` (real hardware would
    /// need the DSDT's `_PRT`, an AML interpreter's job, not done here).
    pub fn gsi_signal(&self, gsi: u32) -> Signal {
        match self.override_for_gsi(gsi) {
            Some(o) => o.signal(),
            None => Signal {
                level: gsi >= 16,
                active_low: false,
            },
        }
    }
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)) == 0
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | u64::from(u32_at(b, off + 4)) << 32
}

/// Checks the RSDP candidate at `addr`.
fn rsdp_at<M: MachineMemory>(mem: &M, addr: u64) -> Option<Rsdp> {
    let v1 = mem.read(Maddr(addr), RSDP_V1_LEN)?;
    if &v1[..8] != RSDP_SIGNATURE || !checksum_ok(v1) {
        return None;
    }
    let revision = v1[15];
    let rsdt = u32_at(v1, 16);
    let mut xsdt = 0;
    if revision >= 2 {
        let v2 = mem.read(Maddr(addr), RSDP_V2_LEN)?;
        let len = u32_at(v2, 20) as usize;
        if (RSDP_V2_LEN..=4096).contains(&len) {
            let full = mem.read(Maddr(addr), len)?;
            if checksum_ok(full) {
                xsdt = u64_at(v2, 24);
            }
        }
    }
    Some(Rsdp {
        address: addr,
        revision,
        rsdt,
        xsdt,
    })
}

/// Finds the RSDP where a BIOS leaves it: the first KiB of the EBDA (segment at 0x40E), then the
/// BIOS area 0xE0000..0x100000, on 16-byte boundaries.
pub fn find_rsdp<M: MachineMemory>(mem: &M) -> Result<Rsdp, AcpiError> {
    let ebda = mem
        .read(Maddr(0x40e), 2)
        .map(|b| u64::from(u16_at(b, 0)) << 4)
        .filter(|&e| (0x8_0000..0xA_0000).contains(&e));
    let ranges = [ebda.map(|e| e..e + 1024), Some(0xE_0000..0x10_0000)];
    for range in ranges.into_iter().flatten() {
        for addr in range.step_by(16) {
            if let Some(r) = rsdp_at(mem, addr) {
                return Ok(r);
            }
        }
    }
    Err(AcpiError::NoRsdp)
}

/// Borrows the whole table at `addr` after checking its header: readable, the expected
/// signature, a length between the header and [`MAX_TABLE_LEN`], a zero checksum.
fn table_at<M: MachineMemory>(mem: &M, addr: u64, sig: [u8; 4]) -> Result<&[u8], AcpiError> {
    let header = mem
        .read(Maddr(addr), HEADER_LEN)
        .ok_or(AcpiError::Unreadable(sig, addr))?;
    if header[..4] != sig {
        return Err(AcpiError::NotFound(sig));
    }
    let len = u32_at(header, 4) as usize;
    if !(HEADER_LEN..=MAX_TABLE_LEN).contains(&len) {
        return Err(AcpiError::BadLength(sig, len as u64));
    }
    let table = mem
        .read(Maddr(addr), len)
        .ok_or(AcpiError::Unreadable(sig, addr))?;
    if !checksum_ok(table) {
        return Err(AcpiError::BadChecksum(sig));
    }
    Ok(table)
}

/// Finds the table with signature `sig` through the XSDT (when the RSDP gives one) or the RSDT.
pub fn find_table<'m, M: MachineMemory>(
    mem: &'m M,
    rsdp: &Rsdp,
    sig: [u8; 4],
) -> Result<&'m [u8], AcpiError> {
    let (root, root_sig, width) = if rsdp.xsdt != 0 {
        (rsdp.xsdt, *b"XSDT", 8)
    } else {
        (u64::from(rsdp.rsdt), *b"RSDT", 4)
    };
    let root = table_at(mem, root, root_sig)?;
    for entry in root[HEADER_LEN..].chunks_exact(width) {
        let addr = if width == 8 {
            u64_at(entry, 0)
        } else {
            u64::from(u32_at(entry, 0))
        };
        match table_at(mem, addr, sig) {
            Err(AcpiError::NotFound(_)) | Err(AcpiError::Unreadable(..)) => continue,
            other => return other,
        }
    }
    Err(AcpiError::NotFound(sig))
}

/// MADT entry types (ACPI 6.5, table 5.21) and their minimum lengths.
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_OVERRIDE: u8 = 2;
const MADT_LAPIC_ADDRESS: u8 = 5;
const MADT_X2APIC: u8 = 9;

/// Parses a whole MADT (`table`, header included, checksum already checked by [`find_table`]).
pub fn parse_madt(table: &[u8]) -> Result<Madt, AcpiError> {
    if table.len() < HEADER_LEN + 8 {
        return Err(AcpiError::BadLength(*b"APIC", table.len() as u64));
    }
    let mut madt = Madt {
        local_apic: u64::from(u32_at(table, HEADER_LEN)),
        pcat_compat: u32_at(table, HEADER_LEN + 4) & 1 != 0,
        cpus: 0,
        ioapics: heapless::Vec::new(),
        overrides: heapless::Vec::new(),
        dropped: 0,
    };
    let mut off = HEADER_LEN + 8;
    while off < table.len() {
        let rest = &table[off..];
        let (kind, len) = (rest[0], *rest.get(1).unwrap_or(&0));
        let need = match kind {
            MADT_LOCAL_APIC => 8,
            MADT_IO_APIC => 12,
            MADT_OVERRIDE => 10,
            MADT_LAPIC_ADDRESS => 12,
            MADT_X2APIC => 16,
            _ => 2,
        };
        if usize::from(len) < need || usize::from(len) > rest.len() {
            return Err(AcpiError::BadEntry {
                offset: off,
                kind,
                len,
            });
        }
        let e = &rest[..usize::from(len)];
        match kind {
            // Enabled (bit 0) or online capable (bit 1).
            MADT_LOCAL_APIC if u32_at(e, 4) & 0b11 != 0 => madt.cpus += 1,
            MADT_X2APIC if u32_at(e, 8) & 0b11 != 0 => madt.cpus += 1,
            MADT_IO_APIC => {
                let io = IoApic {
                    id: e[2],
                    address: u32_at(e, 4),
                    gsi_base: u32_at(e, 8),
                };
                if madt.ioapics.push(io).is_err() {
                    madt.dropped += 1;
                }
            }
            MADT_OVERRIDE => {
                let o = Override {
                    bus: e[2],
                    source: e[3],
                    gsi: u32_at(e, 4),
                    flags: u16_at(e, 8),
                };
                if madt.overrides.push(o).is_err() {
                    madt.dropped += 1;
                }
            }
            MADT_LAPIC_ADDRESS => madt.local_apic = u64_at(e, 4),
            _ => {}
        }
        off += usize::from(len);
    }
    Ok(madt)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Machine memory for the tests: one buffer at address 0.
    struct Mem(Vec<u8>);

    impl MachineMemory for Mem {
        fn read(&self, addr: Maddr, len: usize) -> Option<&[u8]> {
            let start = usize::try_from(addr.0).ok()?;
            self.0.get(start..start.checked_add(len)?)
        }
    }

    fn fix_checksum(bytes: &mut [u8], at: usize) {
        bytes[at] = 0;
        let sum = bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        bytes[at] = 0u8.wrapping_sub(sum);
    }

    fn header(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(sig);
        t.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
        t.push(1); // revision
        t.push(0); // checksum
        t.extend_from_slice(b"BOCHS BXPC    \0\0\0\0\0\0\0\0\0\0");
        t.truncate(HEADER_LEN);
        t.resize(HEADER_LEN, 0);
        t.extend_from_slice(body);
        fix_checksum(&mut t, 9);
        t
    }

    /// QEMU's `pc` MADT: one CPU, one I/O APIC at 0xfec00000, overrides IRQ0 -> GSI2 and the
    /// PCI IRQs 5, 9, 10, 11 level/high (flags 0xd), as `qemu-system-x86_64 -machine pc` builds.
    fn qemu_pc_madt() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
        body.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // local APIC 0, enabled
        body.extend_from_slice(&[1, 12, 0, 0]);
        body.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        for (irq, gsi, flags) in [
            (0u8, 2u32, 0u16),
            (5, 5, 0xd),
            (9, 9, 0xd),
            (10, 10, 0xd),
            (11, 11, 0xd),
        ] {
            body.extend_from_slice(&[2, 10, 0, irq]);
            body.extend_from_slice(&gsi.to_le_bytes());
            body.extend_from_slice(&flags.to_le_bytes());
        }
        body.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]); // local APIC NMI: skipped
        header(b"APIC", &body)
    }

    /// A machine image: RSDP (revision 0) at 0xf5000 -> RSDT at 0x1000 -> [FACP-ish, MADT].
    fn machine(madt: Vec<u8>) -> Mem {
        let mut mem = vec![0u8; 0x10_0000];
        let other = header(b"FACP", &[0; 8]);
        mem[0x3000..0x3000 + other.len()].copy_from_slice(&other);
        mem[0x2000..0x2000 + madt.len()].copy_from_slice(&madt);
        let mut rsdt_body = Vec::new();
        rsdt_body.extend_from_slice(&0x3000u32.to_le_bytes());
        rsdt_body.extend_from_slice(&0x2000u32.to_le_bytes());
        let rsdt = header(b"RSDT", &rsdt_body);
        mem[0x1000..0x1000 + rsdt.len()].copy_from_slice(&rsdt);
        let mut rsdp = Vec::new();
        rsdp.extend_from_slice(RSDP_SIGNATURE);
        rsdp.push(0);
        rsdp.extend_from_slice(b"BOCHS ");
        rsdp.push(0);
        rsdp.extend_from_slice(&0x1000u32.to_le_bytes());
        fix_checksum(&mut rsdp, 8);
        mem[0xf5000..0xf5000 + rsdp.len()].copy_from_slice(&rsdp);
        Mem(mem)
    }

    #[test]
    fn finds_and_parses_qemus_madt() {
        let mem = machine(qemu_pc_madt());
        let rsdp = find_rsdp(&mem).unwrap();
        assert_eq!((rsdp.address, rsdp.rsdt, rsdp.xsdt), (0xf5000, 0x1000, 0));
        let madt = parse_madt(find_table(&mem, &rsdp, *b"APIC").unwrap()).unwrap();
        assert_eq!(madt.local_apic, 0xfee0_0000);
        assert!(madt.pcat_compat);
        assert_eq!(madt.cpus, 1);
        assert_eq!(
            madt.ioapics.as_slice(),
            &[IoApic {
                id: 0,
                address: 0xfec0_0000,
                gsi_base: 0
            }]
        );
        assert_eq!(madt.overrides.len(), 5);
        let irq0 = madt.overrides[0];
        assert_eq!((irq0.source, irq0.gsi), (0, 2));
        assert_eq!(
            irq0.signal(),
            Signal {
                level: false,
                active_low: false
            }
        );
        let gsi11 = madt.override_for_gsi(11).unwrap();
        assert_eq!(gsi11.signal().to_string(), "level, active high");
        assert!(madt.override_for_gsi(16).is_none());
        // With an override, its flags; an ISA IRQ without one, the ISA rule (edge, active
        // high); a GSI above the ISA range, level (QEMU's PCI links).
        assert_eq!(madt.gsi_signal(11).to_string(), "level, active high");
        assert_eq!(madt.gsi_signal(4).to_string(), "edge, active high");
        assert_eq!(madt.gsi_signal(2), irq0.signal());
        assert_eq!(madt.gsi_signal(16).to_string(), "level, active high");
        assert_eq!(madt.ioapic_for(11).unwrap().address, 0xfec0_0000);
        assert_eq!(madt.dropped, 0);
    }

    #[test]
    fn a_bad_checksum_or_length_is_refused_not_trusted() {
        let mut madt = qemu_pc_madt();
        madt[50] ^= 1;
        let mem = machine(madt);
        let rsdp = find_rsdp(&mem).unwrap();
        assert_eq!(
            find_table(&mem, &rsdp, *b"APIC"),
            Err(AcpiError::BadChecksum(*b"APIC"))
        );

        let mut madt = qemu_pc_madt();
        madt[4..8].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        let mem = machine(madt);
        assert_eq!(
            find_table(&mem, &rsdp, *b"APIC"),
            Err(AcpiError::BadLength(*b"APIC", 0x7fff_ffff))
        );
    }

    #[test]
    fn entries_that_overrun_or_are_too_short_are_errors() {
        let mut t = qemu_pc_madt();
        // The I/O APIC entry (offset 52) claims 2 bytes: too short for its type.
        t[53] = 2;
        assert_eq!(
            parse_madt(&t),
            Err(AcpiError::BadEntry {
                offset: 52,
                kind: 1,
                len: 2
            })
        );
        let mut t = qemu_pc_madt();
        // The last entry claims more bytes than the table has.
        let last = t.len() - 6;
        t[last + 1] = 40;
        assert!(matches!(parse_madt(&t), Err(AcpiError::BadEntry { .. })));
        // A zero-length entry must not loop forever.
        let mut t = qemu_pc_madt();
        t[last + 1] = 0;
        assert!(matches!(
            parse_madt(&t),
            Err(AcpiError::BadEntry { len: 0, .. })
        ));
        // Truncated after the type byte.
        let mut t = qemu_pc_madt();
        t.truncate(t.len() - 5);
        assert!(matches!(parse_madt(&t), Err(AcpiError::BadEntry { .. })));
    }

    #[test]
    fn no_rsdp_without_a_valid_signature_and_checksum() {
        let mut mem = machine(qemu_pc_madt());
        mem.0[0xf5008] ^= 0xff;
        assert_eq!(find_rsdp(&mem), Err(AcpiError::NoRsdp));
        let empty = Mem(vec![0; 0x10_0000]);
        assert_eq!(find_rsdp(&empty), Err(AcpiError::NoRsdp));
    }

    #[test]
    fn the_xsdt_is_used_when_the_rsdp_gives_one() {
        let mut mem = machine(qemu_pc_madt());
        // An XSDT at 0x4000 with the MADT's address as a 64-bit entry; the RSDT is wrecked.
        let xsdt = header(b"XSDT", &0x2000u64.to_le_bytes());
        mem.0[0x4000..0x4000 + xsdt.len()].copy_from_slice(&xsdt);
        mem.0[0x1000] = b'X';
        let mut rsdp = Vec::new();
        rsdp.extend_from_slice(RSDP_SIGNATURE);
        rsdp.push(0);
        rsdp.extend_from_slice(b"BOCHS ");
        rsdp.push(2);
        rsdp.extend_from_slice(&0x1000u32.to_le_bytes());
        rsdp.extend_from_slice(&(RSDP_V2_LEN as u32).to_le_bytes());
        rsdp.extend_from_slice(&0x4000u64.to_le_bytes());
        rsdp.extend_from_slice(&[0, 0, 0, 0]);
        fix_checksum(&mut rsdp[..RSDP_V1_LEN], 8);
        fix_checksum(&mut rsdp, 32);
        mem.0[0xf5000..0xf5000 + rsdp.len()].copy_from_slice(&rsdp);
        let r = find_rsdp(&mem).unwrap();
        assert_eq!((r.revision, r.xsdt), (2, 0x4000));
        let madt = parse_madt(find_table(&mem, &r, *b"APIC").unwrap()).unwrap();
        assert_eq!(madt.ioapics.len(), 1);
    }
}
