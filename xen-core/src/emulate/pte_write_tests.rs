//! Host tests of the page-table-write emulation (`pte_write`): each instruction Linux uses on
//! PTEs, the merge of narrow stores, flags and registers, and every refusal leaving the guest's
//! state and the table unchanged.

use super::{pte_write, Emulated, PteAccess};
use crate::regs::Regs;

/// The guest's read-only view of one L1 table.
const TABLE: u64 = 0xffff_8880_0640_0000;
/// A value the fake validation refuses (as `mod_l1_entry` refuses, say, a frame not owned).
const REFUSED_BIT: u64 = 1 << 51;

struct Table {
    entries: [u64; 512],
    writes: usize,
}

impl Table {
    fn new() -> Table {
        let mut entries = [0u64; 512];
        for (i, e) in entries.iter_mut().enumerate() {
            *e = 0x8000_0000_1234_5067 + ((i as u64) << 12);
        }
        Table { entries, writes: 0 }
    }
}

impl PteAccess for Table {
    fn read(&mut self, va: u64) -> Option<u64> {
        assert_eq!(va % 8, 0, "reads are of whole entries");
        (va & !0xfff == TABLE).then(|| self.entries[((va & 0xfff) / 8) as usize])
    }
    fn write(&mut self, va: u64, value: u64) -> bool {
        assert_eq!(va & !0xfff, TABLE, "writes only where read");
        if value & REFUSED_BIT != 0 {
            return false;
        }
        self.writes += 1;
        self.entries[((va & 0xfff) / 8) as usize] = value;
        true
    }
}

/// Runs `code` at RIP 0x1000 with `regs`, faulting at `cr2`; returns the outcome.
fn run(t: &mut Table, regs: &mut Regs, code: &[u8], cr2: u64) -> Emulated {
    regs.rip = 0x1000;
    pte_write(regs, code, cr2, t)
}

fn regs_at(rdi: u64) -> Regs {
    Regs {
        rdi,
        rflags: 0x202,
        ..Regs::default()
    }
}

#[test]
fn xchg_swaps_the_entry_and_the_register() {
    // xchg %rdx,(%rax): __vunmap_range_noflush's ptep_get_and_clear.
    let mut t = Table::new();
    let old = t.entries[5];
    let mut r = Regs {
        rax: TABLE + 40,
        rdx: 0,
        rflags: 0x246,
        ..Regs::default()
    };
    assert_eq!(
        run(&mut t, &mut r, &[0x48, 0x87, 0x10], TABLE + 40),
        Emulated::Done
    );
    assert_eq!(
        (t.entries[5], r.rdx, r.rip, r.rflags),
        (0, old, 0x1003, 0x246)
    );
}

#[test]
fn cmpxchg_stores_on_a_match_and_loads_the_accumulator_otherwise() {
    let mut t = Table::new();
    let old = t.entries[0];
    // lock cmpxchg %rcx,(%rdi), matching: stored, ZF set.
    let mut r = regs_at(TABLE);
    r.rax = old;
    r.rcx = old & !0x40;
    let code = [0xf0, 0x48, 0x0f, 0xb1, 0x0f];
    assert_eq!(run(&mut t, &mut r, &code, TABLE), Emulated::Done);
    assert_eq!((t.entries[0], r.rax, r.rip), (old & !0x40, old, 0x1005));
    assert_ne!(r.rflags & 0x40, 0, "ZF");
    // Not matching (without lock): no store, RAX gets the entry, ZF clear.
    let mut r = regs_at(TABLE);
    r.rax = 1;
    r.rcx = 0;
    let now = t.entries[0];
    let writes = t.writes;
    assert_eq!(run(&mut t, &mut r, &code[1..], TABLE), Emulated::Done);
    assert_eq!((t.entries[0], r.rax, t.writes), (now, now, writes));
    assert_eq!(r.rflags & 0x40, 0, "ZF");
}

#[test]
fn narrow_bit_operations_merge_into_the_entry() {
    let mut t = Table::new();
    let old = t.entries[0];
    // lock andb $0xfd,(%rdi): ptep_set_wrprotect's clear_bit(_PAGE_BIT_RW).
    let mut r = regs_at(TABLE);
    assert_eq!(
        run(&mut t, &mut r, &[0xf0, 0x80, 0x27, 0xfd], TABLE),
        Emulated::Done
    );
    assert_eq!(t.entries[0], old & !2);
    assert_eq!(r.rflags & 0x801, 0, "CF and OF cleared");
    // lock orb $0x40,1(%rdi): a byte inside the entry.
    let mut r = regs_at(TABLE);
    assert_eq!(
        run(&mut t, &mut r, &[0xf0, 0x80, 0x4f, 0x01, 0x40], TABLE + 1),
        Emulated::Done
    );
    assert_eq!(t.entries[0], (old & !2) | 0x4000);
    // lock btrq $5,(%rdi): test_and_clear_young; CF is the old bit.
    let mut r = regs_at(TABLE);
    let code = [0xf0, 0x48, 0x0f, 0xba, 0x37, 0x05];
    assert_eq!(run(&mut t, &mut r, &code, TABLE), Emulated::Done);
    assert_eq!((t.entries[0] & 0x20, r.rflags & 1), (0, 1));
    assert_eq!(run(&mut t, &mut r, &code, TABLE), Emulated::Done);
    assert_eq!(r.rflags & 1, 0, "bit already clear");
    // lock bts %rsi,(%rdi) and btcq $63,(%rdi).
    let mut r = regs_at(TABLE);
    r.rsi = 9;
    assert_eq!(
        run(&mut t, &mut r, &[0xf0, 0x48, 0x0f, 0xab, 0x37], TABLE),
        Emulated::Done
    );
    assert_ne!(t.entries[0] & 0x200, 0);
    let before = t.entries[0];
    assert_eq!(
        run(&mut t, &mut r, &[0x48, 0x0f, 0xba, 0x3f, 0x3f], TABLE),
        Emulated::Done
    );
    assert_eq!(t.entries[0], before ^ (1 << 63));
    // and %rsi,(%rdi); xorq $0x7f,(%rdi); xorq $-1,(%rdi) would set the refused bit.
    let mut r = regs_at(TABLE + 8);
    r.rsi = 0xfff;
    let e1 = t.entries[1];
    assert_eq!(
        run(&mut t, &mut r, &[0x48, 0x21, 0x37], TABLE + 8),
        Emulated::Done
    );
    assert_eq!(t.entries[1], e1 & 0xfff);
    assert_eq!(
        run(&mut t, &mut r, &[0x48, 0x83, 0x37, 0x7f], TABLE + 8),
        Emulated::Done
    );
    assert_eq!(t.entries[1], (e1 & 0xfff) ^ 0x7f);
    assert_eq!(r.rflags & 0xc0, 0, "SF, ZF");
    let flags = r.rflags;
    assert_eq!(
        run(&mut t, &mut r, &[0x48, 0x83, 0x37, 0xff], TABLE + 8),
        Emulated::No
    );
    assert_eq!((t.entries[1], r.rflags), ((e1 & 0xfff) ^ 0x7f, flags));
}

#[test]
fn moves_of_registers_immediates_and_halves() {
    let mut t = Table::new();
    // mov %rcx,(%rdi,%rsi,8)
    let mut r = regs_at(TABLE);
    r.rsi = 3;
    r.rcx = 0x5000_0067;
    assert_eq!(
        run(&mut t, &mut r, &[0x48, 0x89, 0x0c, 0xf7], TABLE + 24),
        Emulated::Done
    );
    assert_eq!(t.entries[3], 0x5000_0067);
    // movq $0,8(%rdi)
    let mut r = regs_at(TABLE);
    let code = [0x48, 0xc7, 0x47, 0x08, 0, 0, 0, 0];
    assert_eq!(run(&mut t, &mut r, &code, TABLE + 8), Emulated::Done);
    assert_eq!((t.entries[1], r.rip), (0, 0x1008));
    // mov %ecx,4(%rdi): the high half, merged with the low one.
    let mut r = regs_at(TABLE);
    let low = t.entries[0] & 0xffff_ffff;
    r.rcx = 0xdead_beef_8000_0000;
    assert_eq!(
        run(&mut t, &mut r, &[0x89, 0x4f, 0x04], TABLE + 4),
        Emulated::Done
    );
    assert_eq!(t.entries[0], 0x8000_0000_0000_0000 | low);
    // xchg %ah,1(%rdi): a high-byte register.
    let mut r = regs_at(TABLE);
    r.rax = 0x1122_3344_5566_7788;
    let byte1 = (t.entries[0] >> 8) & 0xff;
    assert_eq!(
        run(&mut t, &mut r, &[0x86, 0x67, 0x01], TABLE + 1),
        Emulated::Done
    );
    assert_eq!(r.rax, 0x1122_3344_5566_0088 | (byte1 << 8));
    assert_eq!((t.entries[0] >> 8) & 0xff, 0x77);
}

#[test]
fn refusals_change_nothing() {
    let mut t = Table::new();
    let before = t.entries;
    let cases: &[(&[u8], u64, &str)] = &[
        // add is not emulated; cmpxchg16b, a store of a segment register, fs:, addr32.
        (&[0x48, 0x01, 0x0f], TABLE, "add"),
        (&[0xf0, 0x48, 0x0f, 0xc7, 0x0f], TABLE, "cmpxchg16b"),
        (&[0x8c, 0x07], TABLE, "mov %es"),
        (&[0x64, 0x48, 0x89, 0x0f], TABLE, "fs override"),
        (&[0x67, 0x48, 0x89, 0x0f], TABLE, "addr32"),
        // RIP-relative to another page than the fault's.
        (
            &[0x48, 0x89, 0x0d, 0x00, 0x01, 0x00, 0x00],
            TABLE,
            "rip-relative",
        ),
        // The fault was in another page than the operand; misaligned (a qword at +4).
        (&[0x48, 0x89, 0x0f], TABLE + 0x1000, "other page"),
        (&[0x48, 0x89, 0x4f, 0x04], TABLE + 4, "misaligned"),
        // bts with a register naming a bit beyond the operand.
        (&[0xf0, 0x48, 0x0f, 0xab, 0x37], TABLE, "bit string"),
        // Truncated instruction, garbage, a register destination.
        (&[0x48, 0x87], TABLE, "truncated"),
        (&[0x0f, 0xff], TABLE, "invalid"),
        (&[0x48, 0x89, 0xcf], TABLE, "register destination"),
        (&[], TABLE, "nothing"),
    ];
    for &(code, cr2, what) in cases {
        let mut r = regs_at(TABLE);
        r.rcx = 0x1234;
        r.rsi = 64;
        let saved = Regs { rip: 0x1000, ..r };
        assert_eq!(run(&mut t, &mut r, code, cr2), Emulated::No, "{what}");
        assert_eq!(r, saved, "{what}: registers unchanged");
    }
    // A page the access says is not one of the guest's L1 tables.
    let mut r = regs_at(TABLE + 0x2000);
    assert_eq!(
        run(&mut t, &mut r, &[0x48, 0x87, 0x17], TABLE + 0x2000),
        Emulated::No
    );
    // An entry the validation refuses: no register changes either (xchg keeps RDX).
    let mut r = regs_at(TABLE);
    r.rdx = REFUSED_BIT;
    assert_eq!(
        run(&mut t, &mut r, &[0x48, 0x87, 0x17], TABLE),
        Emulated::No
    );
    assert_eq!((r.rdx, r.rip), (REFUSED_BIT, 0x1000));
    assert_eq!(t.entries, before);
    assert_eq!(t.writes, 0);
}
