//! The exception table: ring-0 instructions that may fault on guest-chosen state, and where to go on.
//!
//! As Xen's `_ASM_EXTABLE(insn, fixup)`: an instruction that loads something a guest chose (a
//! segment selector, an MSR value) is listed in the `xen_extable` section with a fixup address.
//! If it faults (#NP, #SS, #GP, #PF or #AC: what an operand can cause; any other exception
//! there is handled as anywhere else), the fault handler (`dispatch::handle_entry`) resumes at
//! the fixup with R11 = vector + 1 (the instruction's own code sets R11 to 0 before it),
//! instead of stopping the machine; the caller then decides what the guest gets. The `iretq` back to a guest is the one
//! instruction handled differently: its fault is the guest's (see `entry.rs`).

use core::arch::asm;

/// One entry: the faulting instruction's address and where to resume.
#[repr(C)]
struct Entry {
    insn: u64,
    fixup: u64,
}

extern "C" {
    static __start_xen_extable: Entry;
    static __stop_xen_extable: Entry;
}

/// The fixup for a fault at `rip`, if the instruction there is listed.
pub fn fixup(rip: u64) -> Option<u64> {
    let start = (&raw const __start_xen_extable).cast::<Entry>();
    let stop = (&raw const __stop_xen_extable).cast::<Entry>();
    // SAFETY: the linker script puts every `xen_extable` entry, 16-byte `Entry` records emitted
    // by the `asm!` blocks below, between the two symbols, in read-only data that lives as long
    // as the hypervisor.
    let table = unsafe { core::slice::from_raw_parts(start, stop.offset_from(start) as usize) };
    table.iter().find(|e| e.insn == rip).map(|e| e.fixup)
}

/// Writes an MSR with a value a guest influenced; a fault (the CPU refused the value) is an
/// error carrying the vector, not a fatal trap (Xen's `wrmsr_safe`).
pub fn wrmsr_safe(msr: u32, value: u64) -> Result<(), u8> {
    let fault: u64;
    // SAFETY: writing the MSRs this is used for (FS/GS bases) only changes what the guest's
    // segment bases are; a value the CPU refuses faults, and the listed fixup resumes after the
    // instruction with R11 set.
    unsafe {
        asm!(
            "xor r11d, r11d",
            "2: wrmsr",
            "3:",
            ".pushsection xen_extable, \"a\"",
            ".balign 8",
            ".quad 2b, 3b",
            ".popsection",
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            out("r11") fault,
            options(nostack),
        );
    }
    match fault {
        0 => Ok(()),
        v => Err((v - 1) as u8),
    }
}

/// Reads an MSR that may not exist on this CPU; a fault is an error carrying the vector (Xen's
/// `rdmsr_safe`), used for the MSRs a guest may read (`emulate::msr`).
pub fn rdmsr_safe(msr: u32) -> Result<u64, u8> {
    let fault: u64;
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR has no side effect on the ones the emulation asks for; one the CPU
    // does not have faults, and the listed fixup resumes after the instruction with R11 set.
    unsafe {
        asm!(
            "xor r11d, r11d",
            "xor eax, eax",
            "xor edx, edx",
            "2: rdmsr",
            "3:",
            ".pushsection xen_extable, \"a\"",
            ".balign 8",
            ".quad 2b, 3b",
            ".popsection",
            in("ecx") msr,
            out("eax") lo,
            out("edx") hi,
            out("r11") fault,
            options(nostack, nomem),
        );
    }
    match fault {
        0 => Ok((u64::from(hi) << 32) | u64::from(lo)),
        v => Err((v - 1) as u8),
    }
}

/// Loads a data segment register (`which`: 0 DS, 1 ES, 2 FS, 3 GS) with a selector a guest chose;
/// a selector the CPU refuses is an error and the register is loaded with the null selector
/// instead (Xen's `loadsegment` fixups).
pub fn load_data_segment(which: usize, sel: u16) -> Result<(), u8> {
    let fault: u64;
    macro_rules! load {
        ($reg:literal) => {
            // SAFETY: loading a data segment register affects only the segment the guest sees;
            // a refused selector faults and the listed fixup resumes after the instruction with
            // R11 set.
            unsafe {
                asm!(
                    "xor r11d, r11d",
                    concat!("2: mov ", $reg, ", {0:x}"),
                    "3:",
                    ".pushsection xen_extable, \"a\"",
                    ".balign 8",
                    ".quad 2b, 3b",
                    ".popsection",
                    in(reg) sel,
                    out("r11") fault,
                    options(nostack, preserves_flags),
                )
            }
        };
    }
    match which {
        0 => load!("ds"),
        1 => load!("es"),
        2 => load!("fs"),
        _ => load!("gs"),
    }
    if fault == 0 {
        return Ok(());
    }
    // The null selector always loads.
    let null = 0u16;
    // SAFETY: as above; the null selector cannot fault in 64-bit mode.
    unsafe {
        match which {
            0 => asm!("mov ds, {0:x}", in(reg) null, options(nomem, nostack, preserves_flags)),
            1 => asm!("mov es, {0:x}", in(reg) null, options(nomem, nostack, preserves_flags)),
            2 => asm!("mov fs, {0:x}", in(reg) null, options(nomem, nostack, preserves_flags)),
            _ => asm!("mov gs, {0:x}", in(reg) null, options(nomem, nostack, preserves_flags)),
        }
    }
    Err((fault - 1) as u8)
}
