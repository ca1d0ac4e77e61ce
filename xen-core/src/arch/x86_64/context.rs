//! The vCPU state the CPU holds while a vCPU runs, and its switch (Xen's `arch/x86/domain.c`
//! `context_switch`, `save_segments`/`load_segments`): FPU/SSE areas, data selectors, segment
//! bases, virtual CR0.TS, debug registers, page tables, and the TLB work hypercalls asked for.
//! Which vCPU runs is the portable scheduler's choice (`xen_core::sched::core`).

use core::arch::asm;

use spin::Mutex;
use xen_core::domain::set::MAX_DOMAINS;
use xen_core::domain::MAX_VCPUS;

/// Scheduling units: every vCPU of every slot (`xen_core::sched::core::unit`).
const UNITS: usize = MAX_DOMAINS * MAX_VCPUS;
use xen_core::domain::{Domain, FlushRequest};
use xen_core::emulate;

use super::machine::{Cr3Load, HvMachine};

/// FPU/SSE state of each vCPU while it does not run (`fxsave` format), by scheduling unit.
static FPU: Mutex<[Fxsave; UNITS]> = Mutex::new([Fxsave([0; 512]); UNITS]);

/// An `fxsave` area.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub struct Fxsave(pub [u8; 512]);

/// Data segment selectors (DS, ES, FS, GS) of each vCPU while it does not run (Xen's
/// `save_segments`/`load_segments`), by scheduling unit: a guest loads them itself, even from
/// user mode.
static SEGS: Mutex<[[u16; 4]; UNITS]> = Mutex::new([[0; 4]; UNITS]);

/// Bytes of the FPU and segment save areas each domain slot has (`MAX_VCPUS` units), whatever
/// its vCPUs.
pub const SAVE_BYTES_PER_SLOT: usize =
    MAX_VCPUS * (core::mem::size_of::<Fxsave>() + core::mem::size_of::<[u16; 4]>());

/// The FPU state a vCPU starts with (`fninit`), captured once at boot.
static FPU_INIT: spin::Once<Fxsave> = spin::Once::new();

const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_TSC_AUX: u32 = 0xc000_0103;
/// CR0.TS.
pub const CR0_TS: u64 = 1 << 3;

/// Captures the initial FPU state every new vCPU gets; call before any guest runs.
pub fn capture_initial_fpu() {
    FPU_INIT.call_once(|| {
        let mut area = Fxsave([0; 512]);
        // SAFETY: no guest has run yet, so resetting the x87/SSE state loses nothing; `clts`
        // makes the FPU instructions usable; the area is 16-byte aligned and 512 bytes long.
        unsafe {
            asm!("clts", "fninit", options(nomem, nostack));
            asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack));
        }
        area
    });
}

/// Gives every vCPU of slot `slot` the initial FPU state and null data selectors (a new domain).
pub fn reset_fpu(slot: usize) {
    for unit in slot * MAX_VCPUS..(slot + 1) * MAX_VCPUS {
        reset_unit(unit);
    }
}

/// Gives the vCPU of scheduling unit `unit` the initial FPU state and null data selectors. Every
/// unit of a slot gets it when a domain is built there ([`reset_fpu`]), so a vCPU that
/// `VCPUOP_initialise` starts later begins from that state.
fn reset_unit(unit: usize) {
    if unit >= UNITS {
        return;
    }
    if let Some(init) = FPU_INIT.get() {
        FPU.lock()[unit] = *init;
    }
    SEGS.lock()[unit] = [0; 4];
}

/// Drops every TLB entry, global ones included, by toggling CR4.PGE.
pub fn flush_tlb_global() {
    // SAFETY: toggling CR4.PGE only drops cached translations.
    unsafe {
        let cr4: u64;
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        asm!("mov cr4, {}", in(reg) cr4 & !(1 << 7), options(nostack));
        asm!("mov cr4, {}", in(reg) cr4, options(nostack));
    }
}

/// Hands the FPU state and data selectors from the vCPU of unit `prev` (saved, if its domain
/// still exists) to the one of unit `next` (loaded), drops every TLB entry and loads the page
/// tables of `dom`'s current vCPU (the one of unit `next`), as `load_vcpu_state` would: the way
/// out then writes its bounce frame through the MMU. (Units come from the portable scheduler,
/// always below `UNITS`.)
pub fn switch(m: &mut HvMachine, prev: Option<usize>, next: usize, dom: &Domain) {
    let mut fpu = FPU.lock();
    // SAFETY: `clts` only makes FPU instructions usable in ring 0 (the vCPU's virtual CR0.TS is
    // loaded again by `load_vcpu_state`); each area is a 16-byte aligned 512-byte `fxsave` image:
    // one written by `fxsave64` here or captured at boot, so `fxrstor64` cannot fault on it.
    unsafe { asm!("clts", options(nomem, nostack)) };
    m.loaded.ts = false;
    let mut segs = SEGS.lock();
    // Selectors still waiting to be loaded: the CPU's are not `prev`'s (a second switch before
    // any vCPU ran), whose saved ones stand.
    let cpu_holds_prev = m.segs_to_load.is_none();
    if let Some(prev) = prev {
        let s = &mut segs[prev];
        if cpu_holds_prev {
            // SAFETY: reading segment registers has no side effects.
            unsafe {
                asm!("mov {:x}, ds", out(reg) s[0], options(nomem, nostack, preserves_flags));
                asm!("mov {:x}, es", out(reg) s[1], options(nomem, nostack, preserves_flags));
                asm!("mov {:x}, fs", out(reg) s[2], options(nomem, nostack, preserves_flags));
                asm!("mov {:x}, gs", out(reg) s[3], options(nomem, nostack, preserves_flags));
            }
        }
        // SAFETY: as above.
        unsafe { asm!("fxsave64 [{}]", in(reg) fpu[prev].0.as_mut_ptr(), options(nostack)) };
    }
    // SAFETY: as above.
    unsafe { asm!("fxrstor64 [{}]", in(reg) fpu[next].0.as_ptr(), options(nostack)) };
    // The next vCPU's selectors may name its own GDT entries: they are loaded by
    // `load_vcpu_state`, once its GDT frames are in place.
    drop(segs);
    m.segs_to_load = Some(next);
    // The next vCPU's tables (checked live by `load_cr3`; `load_vcpu_state` finds them there),
    // loaded with CR4.PGE off around the CR3 write (Xen's `switch_cr3_cr4`) when the table left
    // may have global entries: guest user mappings are global (as Xen makes them), and a new
    // address space must not see the previous one's, not even one the CPU filled
    // speculatively between a flush and the load. A domain whose tables never held a global
    // entry leaves none in the TLB past the CR3 write (`Cr3Load::Switch`).
    m.load_cr3(dom.current_l4(), Cr3Load::Switch);
}

/// Loads the data selectors the vCPU of unit `slot` had when it last ran.
fn load_data_segments(slot: usize) {
    let mut segs = SEGS.lock();
    let s = segs[slot];
    // Each selector is null (a new vCPU) or one this vCPU loaded itself, which the CPU checked
    // then; still, they are the guest's choice (and its GDT may have changed since), so each load
    // has an exception-table fixup (a refused selector becomes the null one, as Xen's
    // `load_segments`). The caller rewrites the FS and GS bases afterwards.
    for (which, sel) in s.iter().enumerate() {
        if super::extable::load_data_segment(which, *sel).is_err() {
            segs[slot][which] = 0;
        }
    }
}

/// Loads the vCPU's GDT frames, its data selectors after a switch, segment bases, virtual CR0.TS and page tables into the CPU where changed.
/// The GS base and CR3 follow the guest mode: the user's GS base and L4 in user mode, the
/// kernel's in kernel mode (what Xen's `swapgs` and `update_cr3` keep in step on each toggle).
pub fn load_vcpu_state(m: &mut HvMachine, dom: &Domain) {
    let v = dom.vcpu();
    let (gs, gs_shadow) = v.gs_bases();
    // The vCPU's own descriptors under the hypervisor's (`set_gdt`), before any of its
    // selectors is loaded.
    super::gdt::load_guest_frames(&v.gdt_frames);
    // Field by field against what the CPU holds (`m.loaded`), each written only where it
    // differs: no copy of the whole record is built (this runs on every way out).
    //
    // Bases the CPU's copies of which are stale whatever `m.loaded` says: after loading FS and
    // GS (which loaded their bases from the descriptors), or after the guest wrote a base (a
    // selector load may have changed the CPU's copy since).
    let mut stale = v.base_writes != m.loaded.base_writes;
    if let Some(slot) = m.segs_to_load.take() {
        load_data_segments(slot);
        stale = true;
    }
    let have = &m.loaded.debug;
    // (Plain compares: the tuple's `!=` is a call to `bcmp` on every way out.)
    let debug_same = ((v.dr[0] ^ have.0[0])
        | (v.dr[1] ^ have.0[1])
        | (v.dr[2] ^ have.0[2])
        | (v.dr[3] ^ have.0[3])
        | (v.dr7 ^ have.1))
        == 0;
    if !debug_same {
        // SAFETY: DR0..DR3 hold guest addresses (checked by `set_debugreg`: never the
        // hypervisor's range, which the hypervisor's own accesses use), DR7 has no general-detect
        // or I/O breakpoints; a breakpoint can only fire while the guest runs, and a #DB taken in
        // the hypervisor anyway is harmless (`hypervisor_debug_trap`).
        unsafe {
            asm!("mov dr7, {}", in(reg) 0x400u64, options(nomem, nostack));
            asm!("mov dr0, {}", in(reg) v.dr[0], options(nomem, nostack));
            asm!("mov dr1, {}", in(reg) v.dr[1], options(nomem, nostack));
            asm!("mov dr2, {}", in(reg) v.dr[2], options(nomem, nostack));
            asm!("mov dr3, {}", in(reg) v.dr[3], options(nomem, nostack));
            asm!("mov dr7, {}", in(reg) v.dr7, options(nomem, nostack));
        }
        m.loaded.debug = (v.dr, v.dr7);
    }
    // The vCPU's kernel or user L4 (`update_cr3`), both of which hold a type reference while
    // installed; `load_cr3` checks that and skips a reload of the table in CR3.
    m.load_cr3(dom.current_l4(), Cr3Load::IfChanged);
    let fsgsbase = v.cr4 & emulate::CR4_FSGSBASE != 0;
    let tsd = v.cr4 & emulate::CR4_TSD != 0;
    let l = &mut m.loaded;
    // SAFETY: the bases were checked canonical by `set_segment_base` (or the emulated WRMSR), so
    // the MSR writes cannot fault; CR0.TS only makes the next FPU instruction trap.
    unsafe {
        // Guest values: checked canonical where they were set, and written with a fixup all
        // the same (a refused base stays what it was; Xen's `wrfsbase`/`wrmsr_safe`).
        if stale || v.fs_base != l.fs {
            let _ = super::extable::wrmsr_safe(MSR_FS_BASE, v.fs_base);
            l.fs = v.fs_base;
        }
        if stale || gs != l.gs {
            let _ = super::extable::wrmsr_safe(MSR_GS_BASE, gs);
            l.gs = gs;
        }
        if stale || gs_shadow != l.gs_shadow {
            let _ = super::extable::wrmsr_safe(MSR_KERNEL_GS_BASE, gs_shadow);
            l.gs_shadow = gs_shadow;
        }
        l.base_writes = v.base_writes;
        if v.tsc_aux != l.tsc_aux {
            // Checked to fit 32 bits by the emulated WRMSR; absent without RDTSCP (refused).
            let _ = super::extable::wrmsr_safe(MSR_TSC_AUX, v.tsc_aux);
            l.tsc_aux = v.tsc_aux;
        }
        if (fsgsbase, tsd) != (l.fsgsbase, l.tsd) {
            // `pv_make_cr4`: the guest's CR4.FSGSBASE and CR4.TSD are the CPU's while it runs
            // (only offered where the CPU has them, `emulate::pv_cr4_writable`), switched per
            // vCPU so that neither leaks into the next one.
            let mut cr4: u64;
            asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
            // Never set where the CPU lacks it, whatever the guest's view says (a context from
            // VCPUOP_initialise may carry the bit): that write would fault in ring 0.
            let has =
                emulate::pv_cr4_writable(super::machine::native_cpuid) & emulate::CR4_FSGSBASE != 0;
            cr4 = if fsgsbase && has {
                cr4 | emulate::CR4_FSGSBASE
            } else {
                cr4 & !emulate::CR4_FSGSBASE
            };
            // Every x86-64 CPU has TSD; at CPL 0 it changes nothing for the hypervisor.
            cr4 = if tsd {
                cr4 | emulate::CR4_TSD
            } else {
                cr4 & !emulate::CR4_TSD
            };
            asm!("mov cr4, {}", in(reg) cr4, options(nostack));
            l.fsgsbase = fsgsbase;
            l.tsd = tsd;
        }
        if v.fpu_ts != l.ts {
            let mut cr0: u64;
            asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
            cr0 = if v.fpu_ts {
                cr0 | CR0_TS
            } else {
                cr0 & !CR0_TS
            };
            asm!("mov cr0, {}", in(reg) cr0, options(nostack));
            l.ts = v.fpu_ts;
        }
    }
}

/// At an entry from a guest that may write its own FS and GS bases (CR4.FSGSBASE), reads them
/// back into its vCPU, as Xen reads `rdfsbase`/`rdgsbase` where it needs them: the current
/// mode's GS base is the CPU's GS base (the other one only `swapgs` reaches, which the guest
/// cannot execute).
pub fn sync_guest_bases(m: &mut HvMachine, dom: &mut Domain) {
    if !m.loaded.fsgsbase {
        return;
    }
    let (Ok(fs), Ok(gs)) = (
        super::extable::rdmsr_safe(MSR_FS_BASE),
        super::extable::rdmsr_safe(MSR_GS_BASE),
    ) else {
        return;
    };
    let v = dom.vcpu_mut();
    v.fs_base = fs;
    if v.kernel_mode {
        v.gs_base_kernel = gs;
    } else {
        v.gs_base_user = gs;
    }
    m.loaded.fs = fs;
    m.loaded.gs = gs;
}

/// Carries out the TLB, cache and CR3 work the hypercalls asked for (`FlushRequest`), once per
/// entry: a whole `mmu_update` batch or multicall is followed by one flush, as on Xen.
pub fn perform_flushes(m: &mut HvMachine, dom: &Domain, req: FlushRequest) {
    if req.new_cr3.is_some() {
        // The table the vCPU's mode runs on (`update_cr3`), which is its kernel or user L4 and
        // so holds a type reference: not the recorded one, which a later hypercall of the same
        // entry could have replaced (and released).
        m.load_cr3(dom.current_l4(), Cr3Load::Always);
    }
    // SAFETY: each operation only drops cached translations or writes back caches.
    unsafe {
        if req.cache_flush {
            asm!("wbinvd", options(nomem, nostack));
        }
    }
    if req.local_flush {
        // Toggling CR4.PGE flushes global entries too (Xen marks guest user mappings global).
        flush_tlb_global();
    } else {
        for va in req.invlpg {
            // SAFETY: only drops a cached translation.
            unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack)) };
        }
    }
}
