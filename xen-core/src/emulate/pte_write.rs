//! Writes of a PV guest kernel to its own page tables through their read-only mappings, emulated
//! instruction by instruction (Xen's writable-page-table emulation, `pv/ro-page-fault.c:
//! ptwr_do_page_fault` with `x86_emulate` and `ptwr_emulated_{write,cmpxchg}`).
//!
//! The faulting instruction is decoded with the `iced-x86` decoder (no_std, table-driven and
//! fuzzed upstream, so a hostile instruction stream meets no hand-written opcode parsing here).
//! What Linux uses on page-table entries is emulated: `mov` of a register or an immediate,
//! `xchg` (`ptep_get_and_clear`), `cmpxchg` with or without `lock` (`try_cmpxchg` loops),
//! `and`/`or`/`xor` with a register or an immediate (`clear_bit`/`set_bit` with a constant bit:
//! `lock andb $imm, (mem)`), and `bts`/`btr`/`btc` (`test_and_clear_bit`). Anything else is not
//! emulated, and the page fault is the guest's.
//!
//! As in Xen, the access must lie in the page of the fault address and be naturally aligned; a
//! store narrower than 8 bytes is merged into the full entry it belongs to, and the entry is
//! written through the hypervisor's validation (the same `mod_l1_entry` as `mmu_update`); a
//! refused entry leaves everything unchanged and the fault goes to the guest. Registers and flags
//! change only once the store is done (or, for `cmpxchg`, found not to be due).

use iced_x86::{Decoder, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind, Register};

use super::Emulated;
use crate::regs::Regs;

/// How the hypervisor reaches the page-table entry an emulated store goes to.
pub trait PteAccess {
    /// The 8-byte entry at guest address `va` (8-aligned), or `None` unless `va` lies in one of
    /// the guest's own validated L1 tables mapped read-only there (then the fault is the guest's).
    fn read(&mut self, va: u64) -> Option<u64>;
    /// Stores `value` as the entry at `va` through the hypervisor's validation; `false` if
    /// refused (the entry is then unchanged).
    fn write(&mut self, va: u64, value: u64) -> bool;
}

/// RFLAGS bits an emulated instruction may change.
const CF: u64 = 1 << 0;
const PF: u64 = 1 << 2;
const AF: u64 = 1 << 4;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const OF: u64 = 1 << 11;
const ARITH: u64 = CF | PF | AF | ZF | SF | OF;

/// A general register operand: its number (as `emulate::gpr` counts), its size in bytes, and
/// whether it is one of AH, CH, DH, BH (bits 8..15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gpr {
    n: u8,
    size: u8,
    high: bool,
}

/// The general register `r` names, if it is one.
fn gpr_of(r: Register) -> Option<Gpr> {
    let v = r as u32;
    let g = |n: u32, size: u8, high: bool| Gpr {
        n: n as u8,
        size,
        high,
    };
    Some(match v {
        // AL, CL, DL, BL
        1..=4 => g(v - 1, 1, false),
        // AH, CH, DH, BH
        5..=8 => g(v - 5, 1, true),
        // SPL .. R15L
        9..=20 => g(v - 5, 1, false),
        21..=36 => g(v - 21, 2, false),
        37..=52 => g(v - 37, 4, false),
        53..=68 => g(v - 53, 8, false),
        _ => return None,
    })
}

/// A 64-bit general register's value (address registers must be 64-bit: no `addr32`).
fn reg64(regs: &mut Regs, r: Register) -> Option<u64> {
    match gpr_of(r)? {
        Gpr { n, size: 8, .. } => Some(*super::gpr(regs, n)),
        _ => None,
    }
}

fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

fn read_gpr(regs: &mut Regs, g: Gpr) -> u64 {
    let v = *super::gpr(regs, g.n);
    if g.high {
        (v >> 8) & 0xff
    } else {
        v & mask(g.size)
    }
}

/// Writes `value` into register `g` as the CPU does: a 32-bit write zero-extends, 8- and 16-bit
/// writes keep the other bits.
fn write_gpr(regs: &mut Regs, g: Gpr, value: u64) {
    let r = super::gpr(regs, g.n);
    *r = match (g.size, g.high) {
        (8, _) => value,
        (4, _) => value & 0xffff_ffff,
        (1, true) => (*r & !0xff00) | ((value & 0xff) << 8),
        (size, _) => (*r & !mask(size)) | (value & mask(size)),
    };
}

fn sign_bit(size: u8) -> u64 {
    1u64 << (size * 8 - 1)
}

/// PF, ZF and SF of a result of `size` bytes.
fn result_flags(result: u64, size: u8) -> u64 {
    let mut f = 0;
    if (result as u8).count_ones().is_multiple_of(2) {
        f |= PF;
    }
    if result & mask(size) == 0 {
        f |= ZF;
    }
    if result & sign_bit(size) != 0 {
        f |= SF;
    }
    f
}

/// The flags of `cmp a, b` (`a - b`) on `size` bytes: what `cmpxchg` sets.
fn sub_flags(a: u64, b: u64, size: u8) -> u64 {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let r = a.wrapping_sub(b) & m;
    let mut f = result_flags(r, size);
    if a < b {
        f |= CF;
    }
    if (a ^ b) & (a ^ r) & sign_bit(size) != 0 {
        f |= OF;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= AF;
    }
    f
}

/// The source operand (operand 1): a register or an immediate, truncated to `size` bytes.
fn source(regs: &mut Regs, i: &Instruction, size: u8) -> Option<u64> {
    let v = match i.op1_kind() {
        OpKind::Register => {
            let g = gpr_of(i.op1_register())?;
            read_gpr(regs, g)
        }
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => i.immediate(1),
        _ => return None,
    };
    Some(v & mask(size))
}

/// The linear address of the memory operand (operand 0), without a segment base (`fs`/`gs`
/// overrides are not emulated).
fn address(regs: &mut Regs, i: &Instruction) -> Option<u64> {
    if !matches!(
        i.memory_segment(),
        Register::DS | Register::ES | Register::SS | Register::CS
    ) {
        return None;
    }
    let base = match i.memory_base() {
        Register::None => 0,
        // iced resolves RIP-relative operands: the displacement is the target.
        Register::RIP => return Some(i.memory_displacement64()),
        r => reg64(regs, r)?,
    };
    let index = match i.memory_index() {
        Register::None => 0,
        r => reg64(regs, r)?.wrapping_mul(u64::from(i.memory_index_scale())),
    };
    Some(
        base.wrapping_add(index)
            .wrapping_add(i.memory_displacement64()),
    )
}

/// The operation, once decoded: what the new value of the operand is, given its old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `mov`: the source.
    Mov,
    /// `xchg`: the source; the register gets the old value.
    Xchg(Gpr),
    /// `cmpxchg`: the source if the accumulator equals the old value, else no store and the
    /// accumulator gets the old value.
    Cmpxchg,
    And,
    Or,
    Xor,
    /// `bts`/`btr`/`btc` of the bit the source names: CF gets the old bit.
    Bts,
    Btr,
    Btc,
}

/// Decodes one instruction, so that the decoder builds its tables (its only allocation) now:
/// the hypervisor calls it at boot, before any guest can fault.
pub fn warm_up_decoder() {
    let _ = Decoder::with_ip(64, &[0x90], 0, DecoderOptions::NONE).decode();
}

/// Emulates the store at `regs.rip` (instruction bytes `code`) that faulted on the read-only
/// page-table mapping at `cr2`; RIP is advanced past it. `Emulated::No` leaves `regs` and the
/// table unchanged: the page fault is then the guest's.
pub fn pte_write(regs: &mut Regs, code: &[u8], cr2: u64, pte: &mut dyn PteAccess) -> Emulated {
    let mut decoder = Decoder::with_ip(64, code, regs.rip, DecoderOptions::NONE);
    let i = decoder.decode();
    if i.is_invalid() || i.op_count() != 2 || i.op0_kind() != OpKind::Memory {
        return Emulated::No;
    }
    let op = match i.mnemonic() {
        Mnemonic::Mov => Op::Mov,
        Mnemonic::Xchg => match gpr_of(i.op1_register()) {
            Some(g) if i.op1_kind() == OpKind::Register => Op::Xchg(g),
            _ => return Emulated::No,
        },
        Mnemonic::Cmpxchg => Op::Cmpxchg,
        Mnemonic::And => Op::And,
        Mnemonic::Or => Op::Or,
        Mnemonic::Xor => Op::Xor,
        Mnemonic::Bts => Op::Bts,
        Mnemonic::Btr => Op::Btr,
        Mnemonic::Btc => Op::Btc,
        _ => return Emulated::No,
    };
    let size = match i.op1_kind() {
        OpKind::Register => match gpr_of(i.op1_register()) {
            Some(g) => g.size,
            None => return Emulated::No,
        },
        // (`MemorySize::size` needs iced's `instr_info` tables: the integer sizes are named.)
        _ => match i.memory_size() {
            MemorySize::UInt8 | MemorySize::Int8 => 1,
            MemorySize::UInt16 | MemorySize::Int16 => 2,
            MemorySize::UInt32 | MemorySize::Int32 => 4,
            MemorySize::UInt64 | MemorySize::Int64 => 8,
            _ => return Emulated::No,
        },
    };
    let Some(src) = source(regs, &i, size) else {
        return Emulated::No;
    };
    let Some(addr) = address(regs, &i) else {
        return Emulated::No;
    };
    // `bt*` with a register may name a bit beyond the operand (a bit string): only bits inside
    // it are emulated. With an immediate the CPU takes it modulo the operand size.
    let bit = match op {
        Op::Bts | Op::Btr | Op::Btc => {
            let bits = u64::from(size) * 8;
            if i.op1_kind() == OpKind::Register && src >= bits {
                return Emulated::No;
            }
            Some(src % bits)
        }
        _ => None,
    };
    // Xen's `ptwr_emulated_update`: a naturally aligned access inside the faulting page.
    let size64 = u64::from(size);
    if (addr ^ cr2) & !0xfff != 0 || !addr.is_multiple_of(size64) {
        return Emulated::No;
    }
    let aligned = addr & !7;
    let shift = (addr & 7) * 8;
    let Some(full) = pte.read(aligned) else {
        return Emulated::No;
    };
    let old = (full >> shift) & mask(size);
    let mut flags = None;
    let mut reg_update = None;
    let new = match op {
        Op::Mov => Some(src),
        Op::Xchg(g) => {
            reg_update = Some((g, old));
            Some(src)
        }
        Op::Cmpxchg => {
            let acc = Gpr {
                n: 0,
                size,
                high: false,
            };
            let expected = read_gpr(regs, acc);
            flags = Some((ARITH, sub_flags(expected, old, size)));
            if expected == old {
                Some(src)
            } else {
                reg_update = Some((acc, old));
                None
            }
        }
        Op::And | Op::Or | Op::Xor => {
            let r = match op {
                Op::And => old & src,
                Op::Or => old | src,
                _ => old ^ src,
            };
            // CF and OF cleared; AF is undefined (cleared, as many CPUs do).
            flags = Some((ARITH, result_flags(r, size)));
            Some(r)
        }
        Op::Bts | Op::Btr | Op::Btc => {
            let b = 1u64 << bit.unwrap_or(0);
            flags = Some((CF, if old & b != 0 { CF } else { 0 }));
            Some(match op {
                Op::Bts => old | b,
                Op::Btr => old & !b,
                _ => old ^ b,
            })
        }
    };
    if let Some(new) = new {
        let value = (full & !(mask(size) << shift)) | ((new & mask(size)) << shift);
        if !pte.write(aligned, value) {
            return Emulated::No;
        }
    }
    if let Some((g, v)) = reg_update {
        write_gpr(regs, g, v);
    }
    if let Some((which, value)) = flags {
        regs.rflags = (regs.rflags & !which) | value;
    }
    regs.rip = regs.rip.wrapping_add(i.len() as u64);
    Emulated::Done
}
