//! Guest memory through the MMU: copies to and from a guest virtual address on the tables the CPU
//! runs on, a page fault turned into an error by the exception table (Xen's `__copy_to_user_ll`
//! and `__copy_from_user_ll`, `xen/arch/x86/usercopy.c`).
//!
//! The portable core decides when a copy may go this way (`xen_core::guest_access::MmuGuest`:
//! no TLB work owed, the range wholly in the guest's part of the address space, a write within
//! one page); this module checks the range again, checks that CR3 holds the tables the caller
//! means, lifts SMAP for the copy alone (every guest page is a user page: 64-bit PV kernels run
//! in ring 3) and lets the CPU check the rest: present at every level, and writable at every
//! level for a write (CR0.WP, set at boot and never cleared, makes ring 0 honour read-only
//! mappings).

use core::arch::asm;

use xen_core::guest_access::guest_range_ok;
use xen_core::mm::{Mfn, MmuCopy};

extern "C" {
    /// Set once SMAP is enabled (`entry::enable_smep_smap`): `stac`/`clac` exist only then.
    static xen_smap_enabled: u8;
}

/// Whether the CPU runs on the tables rooted at `l4`.
#[inline(always)]
fn cr3_is(l4: Mfn) -> bool {
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) };
    cr3 == l4.maddr().0
}

/// The `asm!` of a copy between guest memory and the hypervisor (Xen's `__put_user_asm` and
/// `__get_user_asm` take the same shape): the moves given, each labelled and listed in the
/// exception table with the labels given, resuming at `4:` on a fault (the handler sets R11 =
/// vector + 1; R11 is 0 otherwise, into `$fault`), with SMAP lifted around them when it is
/// enabled (operand `smap` non-zero). The `small` form is a copy of 4, 8 or 16 bytes through
/// `{a}` (and `{b}`, given as a further operand, for 16) between `{src}` and `{dst}`.
macro_rules! guest_copy_asm {
    (small $fault:ident, $smap:expr, $src:expr, $dst:expr, [$($mv:literal),+],
     [$($label:literal),+] $(, $($operands:tt)*)?) => {
        guest_copy_asm!(
            $fault,
            [$($mv),+],
            [$($label),+],
            smap = in(reg) u32::from($smap),
            a = out(reg) _,
            src = in(reg) $src,
            dst = in(reg) $dst,
            $($($operands)*)?
        )
    };
    ($fault:ident, [$($mv:literal),+], [$($label:literal),+], $($operands:tt)*) => {
        asm!(
            "xor r11d, r11d",
            "test {smap:e}, {smap:e}",
            "jz 5f",
            "stac",
            "5:",
            $($mv,)+
            "4:",
            "test {smap:e}, {smap:e}",
            "jz 6f",
            "clac",
            "6:",
            ".pushsection xen_extable, \"a\"",
            ".balign 8",
            $(concat!(".quad ", $label, "b, 4b"),)+
            ".popsection",
            $($operands)*
            out("r11") $fault,
            options(nostack),
        )
    };
}

/// Copies `len` bytes from `src` to `dst` with SMAP lifted: 4, 8 or 16 bytes as plain moves
/// ([`move_with_fixup`]), any other length eight at a time and then one at a time (`rep movs`);
/// returns whether a fault stopped it (the listed fixup resumes after the copy with
/// R11 = vector + 1). A fault part-way through a `rep movs` leaves what was copied before it.
/// (The hypervisor's side of the copy is listed too, as with a single `rep movs`: a fault there
/// would be a hypervisor bug, reported as a guest fault rather than stopping the machine.)
///
/// # Safety
///
/// The side of the copy that is the hypervisor's must be valid for `len` bytes (a buffer the
/// caller borrows). The guest side must lie wholly in the guest's part of the address space
/// ([`guest_range_ok`]), so that nothing the hypervisor maps is reached, and CR3 must hold the
/// guest's tables.
#[inline(always)]
unsafe fn copy_with_fixup(dst: *mut u8, src: *const u8, len: usize) -> bool {
    // SAFETY: `xen_smap_enabled` is a byte written once at boot, before any guest runs.
    let smap = unsafe { (&raw const xen_smap_enabled).read_volatile() };
    // The sizes nearly every hypercall copies (an `mmu_update` request, a `*done` count, an
    // event port), known where this is inlined: plain moves, not `rep movs` and its setup.
    match len {
        4 => {
            // SAFETY: as below: the contract holds for these 4 bytes.
            return unsafe { move_with_fixup::<4>(dst, src, smap) };
        }
        8 => {
            // SAFETY: as below, for 8 bytes.
            return unsafe { move_with_fixup::<8>(dst, src, smap) };
        }
        16 => {
            // SAFETY: as below, for 16 bytes.
            return unsafe { move_with_fixup::<16>(dst, src, smap) };
        }
        _ => {}
    }
    let fault: u64;
    // SAFETY: see the function's contract: the hypervisor side is a borrowed buffer, the guest
    // side is guest memory the CPU checks page by page. A #PF (or a #GP) on either `rep movs`
    // resumes at `4:` through the exception table (`dispatch::interrupt_or_fault`), with AC
    // restored from the frame and cleared below, on both ways.
    unsafe {
        guest_copy_asm!(
            fault,
            [
                "mov {rest}, rcx",
                "shr rcx, 3",
                "and {rest}, 7",
                "2: rep movsq",
                "mov rcx, {rest}",
                "3: rep movsb"
            ],
            ["2", "3"],
            smap = in(reg) u32::from(smap),
            rest = out(reg) _,
            inout("rcx") len => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
        );
    }
    fault != 0
}

/// [`copy_with_fixup`] of exactly `N` bytes (4, 8 or 16), with plain moves: all loads first,
/// then all stores, so that a fault on the guest's side of a read leaves the buffer as it was,
/// and a write within one page (which [`write`] requires) faults on its first store or not at
/// all. Returns whether a fault stopped it.
///
/// # Safety
///
/// As [`copy_with_fixup`]'s, for `N` bytes; `smap` is `xen_smap_enabled`.
#[inline(always)]
unsafe fn move_with_fixup<const N: usize>(dst: *mut u8, src: *const u8, smap: u8) -> bool {
    const {
        assert!(
            N == 4 || N == 8 || N == 16,
            "move_with_fixup: 4, 8 or 16 bytes"
        )
    };
    let fault: u64;
    // SAFETY: as for `copy_with_fixup`'s `rep movs`: each listed load and store resumes at `4:`
    // through the exception table on a fault, with R11 = vector + 1 and AC restored from the
    // frame (cleared below on both ways). Unaligned moves are allowed (AC checks alignment only
    // in ring 3).
    unsafe {
        match N {
            4 => guest_copy_asm!(
                small fault,
                smap,
                src,
                dst,
                [
                    "2: mov {a:e}, dword ptr [{src}]",
                    "3: mov dword ptr [{dst}], {a:e}"
                ],
                ["2", "3"]
            ),
            8 => guest_copy_asm!(
                small fault,
                smap,
                src,
                dst,
                [
                    "2: mov {a}, qword ptr [{src}]",
                    "3: mov qword ptr [{dst}], {a}"
                ],
                ["2", "3"]
            ),
            16 => guest_copy_asm!(
                small fault,
                smap,
                src,
                dst,
                [
                    "2: mov {a}, qword ptr [{src}]",
                    "7: mov {b}, qword ptr [{src} + 8]",
                    "3: mov qword ptr [{dst}], {a}",
                    "8: mov qword ptr [{dst} + 8], {b}"
                ],
                ["2", "7", "3", "8"],
                b = out(reg) _,
            ),
            // Refused at compile time (the assertion above).
            _ => unreachable!("move_with_fixup of {} bytes", N),
        }
    }
    fault != 0
}

/// [`xen_core::mm::MachineMemoryMut::mmu_read`] on this CPU: `buf.len()` bytes from guest
/// virtual address `va` of the tables at `l4`.
pub fn read(l4: Mfn, va: u64, buf: &mut [u8]) -> MmuCopy {
    if !guest_range_ok(va, buf.len()) || !cr3_is(l4) {
        return MmuCopy::Unavailable;
    }
    // SAFETY: `buf` is borrowed for its length; `[va, va + len)` lies in the guest's part of
    // the address space (checked just above) and CR3 holds the guest's tables.
    match unsafe { copy_with_fixup(buf.as_mut_ptr(), va as *const u8, buf.len()) } {
        false => MmuCopy::Done,
        true => MmuCopy::Fault,
    }
}

/// [`xen_core::mm::MachineMemoryMut::mmu_write`] on this CPU: `data` to guest virtual address
/// `va` of the tables at `l4`, within one page (so a fault writes nothing: every byte has the one
/// translation, and the first faults if any does).
pub fn write(l4: Mfn, va: u64, data: &[u8]) -> MmuCopy {
    if (va & 0xfff) + data.len() as u64 > 4096 || !guest_range_ok(va, data.len()) || !cr3_is(l4) {
        return MmuCopy::Unavailable;
    }
    // SAFETY: as for `read`, the other way.
    match unsafe { copy_with_fixup(va as *mut u8, data.as_ptr(), data.len()) } {
        false => MmuCopy::Done,
        true => MmuCopy::Fault,
    }
}
