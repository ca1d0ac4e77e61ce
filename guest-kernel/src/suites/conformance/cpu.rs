//! Conformance cases for the rest of CPU virtualization: callbacks, segment bases,
//! `stack_switch`, CPUID, control registers, privileged-instruction emulation, `set_gdt` and
//! `vm_assist`.
//!
//! Many answers here are Xen's emulation of a privileged instruction a PV kernel executes in ring
//! 3: the CPU raises #GP, Xen decodes the instruction (`pv_emulate_privileged_op` in Xen's
//! `arch/x86/pv/emul-priv-op.c`) and either emulates it invisibly or injects the #GP into the
//! guest. Cases run guarded and probe their instructions as in [`super::exceptions`].

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_kernel::paging::PTE_FRAME_MASK;
use hypercall_abi::arch_x86_64::{
    FIRST_RESERVED_GDT_ENTRY, FLAT_KERNEL_SS, SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER,
    SEGBASE_GS_USER_SEL,
};
use hypercall_abi::callback::{
    CALLBACKF_mask_events, CALLBACKOP_register, CALLBACKTYPE_event, CALLBACKTYPE_failsafe,
    CALLBACKTYPE_nmi, CALLBACKTYPE_syscall, CallbackRegister, CallbackUnregister,
};
use hypercall_abi::xen::{
    __HYPERVISOR_callback_op, __HYPERVISOR_set_gdt, __HYPERVISOR_update_descriptor,
    VMASST_CMD_disable, VMASST_CMD_enable, VMASST_TYPE_4gb_segments,
    VMASST_TYPE_runstate_update_flag, VMASST_TYPE_writable_pagetables,
};

use super::exceptions::l1_store_same;
use super::insn::{rdmsr, read_cr};
use super::{
    flag, mm, peek, poke, scratch, values, Suite, Values, BAD_CMD, NON_CANONICAL, UNMAPPED,
};
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::traps::{self, probe, Probe};

/// CR0.MP: a bit Xen does not let a PV guest change.
const CR0_MP: u64 = 1 << 1;
/// An MSR index no CPU defines.
const UNKNOWN_MSR: u32 = 0x1234_5678;
/// MSR_FS_BASE, MSR_GS_BASE and MSR_SHADOW_GS_BASE.
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_SHADOW_GS_BASE: u32 = 0xc000_0102;

/// Every group of this module, in order.
pub(super) fn cases(s: &mut Suite) {
    callback_cases(s);
    segment_cases(s);
    stack_switch_cases(s);
    cpuid_cases(s);
    control_register_cases(s);
    privileged_instruction_cases(s);
    set_gdt_cases(s);
    update_descriptor_cases(s);
    vm_assist_cases(s);
}

/// Registers `address` as callback `kind` with `flags`; the return code.
fn register_callback(kind: u16, flags: u16, address: u64) -> i64 {
    let reg = CallbackRegister {
        r#type: kind,
        flags,
        address,
        ..Default::default()
    };
    // SAFETY: the cases register either the stubs of traps.rs (which handle what Xen pushes), 0
    // (no callback), or addresses the hypervisor must refuse; the syscall and failsafe callbacks
    // are never entered by this kernel (no user mode, no bad segment reloads).
    unsafe { hc::callback_op(&reg) }
}

fn unregister_callback(kind: u16) -> i64 {
    let unreg = CallbackUnregister {
        r#type: kind,
        _unused: 0,
    };
    // SAFETY: unregistering takes nothing but the type.
    unsafe { hc::callback_op(&unreg) }
}

fn callback_cases(s: &mut Suite) {
    // Each registration is undone by registering what the suite runs with: the upcall entry for
    // events, nothing (0) for the others.
    s.run("callback.register_failsafe", || {
        let rc = register_callback(
            CALLBACKTYPE_failsafe,
            CALLBACKF_mask_events,
            traps::failsafe_entry_address(),
        );
        let undo = register_callback(CALLBACKTYPE_failsafe, 0, 0);
        values!("rc={rc} undo={undo}")
    });

    s.run("callback.register_syscall", || {
        let rc = register_callback(
            CALLBACKTYPE_syscall,
            CALLBACKF_mask_events,
            traps::upcall_entry(),
        );
        let undo = register_callback(CALLBACKTYPE_syscall, 0, 0);
        values!("rc={rc} undo={undo}")
    });

    // The NMI callback is the one type that can be unregistered.
    s.run("callback.register_nmi", || {
        let rc = register_callback(CALLBACKTYPE_nmi, 0, traps::upcall_entry());
        let unreg = unregister_callback(CALLBACKTYPE_nmi);
        values!("rc={rc} unregister={unreg}")
    });

    s.run("callback.register_unknown_type", || {
        values!("{}", register_callback(99, 0, traps::upcall_entry()))
    });

    s.run("callback.register_non_canonical", || {
        values!(
            "{}",
            register_callback(CALLBACKTYPE_event, 0, NON_CANONICAL)
        )
    });

    s.run("callback.unregister_event", || {
        values!("{}", unregister_callback(CALLBACKTYPE_event))
    });

    s.run("callback.unregister_unknown_type", || {
        values!("{}", unregister_callback(99))
    });

    s.run("callback.unknown_cmd", || {
        let reg = CallbackRegister::default();
        // SAFETY: an unknown command reads nothing; `reg` is readable anyway.
        let rc = unsafe { hc::raw::callback_op(BAD_CMD, hc::ptr(&raw const reg)) };
        values!("{rc}")
    });

    s.run("callback.register_bad_pointer", || {
        // SAFETY: an unmapped argument: -EFAULT.
        let rc = unsafe {
            hc::hypercall(
                __HYPERVISOR_callback_op,
                CALLBACKOP_register.into(),
                UNMAPPED,
                0,
                0,
                0,
            )
        };
        values!("{rc}")
    });

    // The older hypercall registers all three at once and always returns 0, silently ignoring
    // addresses it refuses.
    s.run("callback.set_callbacks", || {
        // SAFETY: the event entry is the suite's own; failsafe and syscall are never entered.
        let rc = unsafe { hc::set_callbacks(traps::upcall_entry(), 0, 0) };
        values!("{rc}")
    });

    s.run("callback.set_callbacks_non_canonical", || {
        // SAFETY: every address is refused; the event entry is registered again right after.
        let rc = unsafe { hc::set_callbacks(NON_CANONICAL, NON_CANONICAL, NON_CANONICAL) };
        let undo = traps::register_upcall();
        values!("rc={rc} undo={undo}")
    });
}

/// Targets for the segment-base cases: a segment pointed at one reads it at offset 0.
static FS_TARGET: AtomicU64 = AtomicU64::new(0x0f5f_5f5f_0000_0001);
static GS_TARGET: AtomicU64 = AtomicU64::new(0x0656_5656_0000_0002);

/// `%fs:0` or `%gs:0`.
fn read_segment_word(gs: bool) -> u64 {
    let v: u64;
    // SAFETY: the cases point the segment at a live static before reading.
    unsafe {
        if gs {
            asm!("mov %gs:0, {v}", v = out(reg) v, options(att_syntax, nostack, readonly));
        } else {
            asm!("mov %fs:0, {v}", v = out(reg) v, options(att_syntax, nostack, readonly));
        }
    }
    v
}

/// `set_segment_base`, for bases nothing in the kernel uses (the Rust code never touches FS/GS).
fn set_base(which: u32, base: u64) -> i64 {
    // SAFETY: the kernel does not use FS or GS; each case restores the base it changed.
    unsafe { hc::set_segment_base(which, base) }
}

/// `set_segment_base` of FS (or, with `gs`, the kernel GS) to a word of ours: the return code,
/// whether `%fs:0` (`%gs:0`) then reads that word, whether the MSR holds the base, and the undo.
fn base_case(gs: bool) -> Values {
    let (msr_index, which, word, seg) = if gs {
        (MSR_GS_BASE, SEGBASE_GS_KERNEL, &GS_TARGET, "gs")
    } else {
        (MSR_FS_BASE, SEGBASE_FS, &FS_TARGET, "fs")
    };
    let old = rdmsr(msr_index).1.unwrap_or(0);
    let target = word.as_ptr() as u64;
    let rc = set_base(which, target);
    let reads = read_segment_word(gs) == word.load(Ordering::SeqCst);
    let msr = rdmsr(msr_index).1 == Some(target);
    let undo = set_base(which, old);
    values!(
        "rc={rc} {seg}0_reads_target={} rdmsr_matches={} undo={undo}",
        flag(reads),
        flag(msr)
    )
}

fn segment_cases(s: &mut Suite) {
    s.run("segment.fs_base", || base_case(false));
    s.run("segment.gs_kernel_base", || base_case(true));

    // The user GS base is the one `swapgs` brings in: invisible in kernel mode but for the MSR.
    s.run("segment.gs_user_base", || {
        let old = rdmsr(MSR_SHADOW_GS_BASE).1.unwrap_or(0);
        let target = GS_TARGET.as_ptr() as u64;
        let rc = set_base(SEGBASE_GS_USER, target);
        let msr = rdmsr(MSR_SHADOW_GS_BASE).1 == Some(target);
        let undo = set_base(SEGBASE_GS_USER, old);
        values!("rc={rc} shadow_gs_msr_matches={} undo={undo}", flag(msr))
    });

    // Loading the null selector into the user GS resets the user GS base to 0.
    s.run("segment.gs_user_sel_null", || {
        let old = rdmsr(MSR_SHADOW_GS_BASE).1.unwrap_or(0);
        set_base(SEGBASE_GS_USER, GS_TARGET.as_ptr() as u64);
        let rc = set_base(SEGBASE_GS_USER_SEL, 0);
        let base = rdmsr(MSR_SHADOW_GS_BASE).1;
        let undo = set_base(SEGBASE_GS_USER, old);
        values!(
            "rc={rc} user_gs_base_zero={} undo={undo}",
            base.map_or(-1, |b| i32::from(b == 0))
        )
    });

    s.run("segment.fs_non_canonical", || {
        let rc = set_base(SEGBASE_FS, NON_CANONICAL);
        let undo = set_base(SEGBASE_FS, 0);
        values!("rc={rc} undo={undo}")
    });

    s.run("segment.unknown_which", || values!("{}", set_base(99, 0)));
}

fn stack_switch_cases(s: &mut Suite) {
    // The stack Xen switches to when user mode traps into the kernel: never used by this kernel,
    // which has no user mode, so any value is harmless. Xen fixes up the selector's RPL and
    // never fails.
    s.run("stack_switch.kernel_ss", || {
        let rc = hc::stack_switch(FLAT_KERNEL_SS.into(), kernel_stack_top());
        values!("{rc}")
    });

    s.run("stack_switch.null_selector", || {
        let rc = hc::stack_switch(0, kernel_stack_top());
        let undo = hc::stack_switch(FLAT_KERNEL_SS.into(), kernel_stack_top());
        values!("rc={rc} undo={undo}")
    });
}

/// Roughly where this kernel's stack is (the current stack pointer, 16-byte aligned).
fn kernel_stack_top() -> u64 {
    let sp: u64;
    // SAFETY: reads RSP.
    unsafe { asm!("mov %rsp, {sp}", sp = out(reg) sp, options(att_syntax, nomem, nostack)) };
    sp & !15
}

/// CPUID through Xen's forced-emulation prefix (`ud2; .ascii "xen"; cpuid`): Xen's #UD handler
/// recognises the prefix and answers with the guest's CPUID policy, hypervisor leaves included.
/// Returns the probe (a #UD if the prefix is not recognised) and EAX, EBX, ECX, EDX.
fn forced_cpuid(leaf: u32) -> (Probe, [u32; 4]) {
    let (mut a, mut b, mut c, mut d) = (leaf, 0u32, 0u32, 0u32);
    // SAFETY: CPUID has no side effects. RBX cannot be an asm operand: it is parked in `b`'s
    // register and exchanged back in the epilogue, which runs even if the probe trapped.
    let p = unsafe {
        probe!(
            "mov %rbx, {b:r}\nud2\n.ascii \"xen\"\ncpuid",
            epilogue = "xchg %rbx, {b:r}",
            b = inout(reg) b,
            inout("eax") a,
            inout("ecx") c,
            out("edx") d
        )
    };
    (p, [a, b, c, d])
}

/// Four little-endian registers as text.
fn signature(regs: &[u32]) -> [u8; 12] {
    let mut out = [b'?'; 12];
    for (chunk, r) in out.chunks_mut(4).zip(regs) {
        chunk.copy_from_slice(&r.to_le_bytes());
    }
    out
}

fn cpuid_cases(s: &mut Suite) {
    s.run("cpuid.hypervisor_leaf", || {
        let (p, [a, b, c, d]) = forced_cpuid(0x4000_0000);
        let sig = signature(&[b, c, d]);
        values!(
            "{p} max_leaf={a:#x} signature={}",
            core::str::from_utf8(&sig).unwrap_or("<binary>")
        )
    });

    s.run("cpuid.version_leaf", || {
        let (p, [a, ..]) = forced_cpuid(0x4000_0001);
        values!("{p} version={a:#x}")
    });

    s.run("cpuid.hypercall_page_leaf", || {
        let (p, [a, b, ..]) = forced_cpuid(0x4000_0002);
        values!("{p} pages={a} msr={b:#x}")
    });

    // The PV CPUID policy's feature bits Linux acts on (`xen_cpuid` uses the forced prefix):
    // leaf 1 EDX PSE (3), MCE (7), MCA (14), PSE36 (17); leaf 0x80000001 EDX Page1GB (26).
    // Hidden large pages keep Linux's direct map in 4 KiB pages (no superpage `mmu_update`).
    s.run("cpuid.pv_policy_features", || {
        let (p1, [_, _, _, d1]) = forced_cpuid(1);
        let (p8, [_, _, _, d8]) = forced_cpuid(0x8000_0001);
        let bit = |r: u32, b: u32| (r >> b) & 1;
        values!(
            "{p1} {p8} pse={} mce={} mca={} pse36={} page1gb={}",
            bit(d1, 3),
            bit(d1, 7),
            bit(d1, 14),
            bit(d1, 17),
            bit(d8, 26)
        )
    });

    // A plain CPUID is not trapped by the guest (Xen may fault and emulate it, invisibly, or the
    // CPU answers directly); its answer depends on the CPU QEMU models, so only "it returned".
    s.run("cpuid.native_leaf_0", || {
        // SAFETY: CPUID has no side effects; RBX is saved and restored as in `forced_cpuid`.
        let p = unsafe {
            probe!(
                "mov %rbx, {b:r}\ncpuid",
                epilogue = "xchg %rbx, {b:r}",
                b = out(reg) _,
                inout("eax") 0u32 => _,
                inout("ecx") 0u32 => _,
                out("edx") _
            )
        };
        values!("returned={} {p}", flag(p.trap.is_none()))
    });
}

fn control_register_cases(s: &mut Suite) {
    // A PV guest's CR3 is the machine address of its L4 (PV guests are not translated).
    s.run("cr3.read", || {
        let (p, cr3) = read_cr(3);
        let l4 = mm::l4_mfn();
        values!(
            "{p} matches_l4_machine_address={}",
            flag(cr3.is_some_and(|v| v & PTE_FRAME_MASK == l4 << 12))
        )
    });

    // Writing the current value back is a CR3 reload (Xen's `new_guest_cr3`).
    s.run("cr3.write_current", || {
        let cr3 = mm::l4_mfn() << 12;
        // SAFETY: loads the L4 already in use: nothing changes but a TLB flush.
        let p = unsafe { probe!("mov {v}, %cr3", v = in(reg) cr3) };
        values!("{p}")
    });

    s.run("priv.mov_cr0_write_same", || {
        let (_, cr0) = read_cr(0);
        let Some(cr0) = cr0 else {
            return values!("read_trapped");
        };
        // SAFETY: writes CR0 back unchanged (emulated): no effect.
        let p = unsafe { probe!("mov {v}, %cr0", v = in(reg) cr0) };
        values!("{p}")
    });

    // Xen lets a PV guest change only CR0.TS; any other bit is refused with #GP.
    s.run("priv.mov_cr0_write_other_bit", || {
        let (_, cr0) = read_cr(0);
        let Some(cr0) = cr0 else {
            return values!("read_trapped");
        };
        // SAFETY: asks to flip CR0.MP; the hypervisor refuses (and MP only affects WAIT/FWAIT).
        let p = unsafe { probe!("mov {v}, %cr0", v = in(reg) cr0 ^ CR0_MP) };
        let still = read_cr(0).1 == Some(cr0);
        values!("{p} unchanged={}", flag(still))
    });
}

/// Privileged instructions: at CPL 3 each raises #GP, which Xen either emulates (invisibly) or
/// passes on to the guest. The value is the probe: `no_trap` or the trap delivered.
fn privileged_instruction_cases(s: &mut Suite) {
    s.run("priv.cli", || {
        // SAFETY: if emulated, `cli` would only mask upcalls, which the suite keeps masked.
        values!("{}", unsafe { probe!("cli") })
    });
    s.run("priv.sti", || {
        // SAFETY: Xen does not let `sti` change the upcall mask (it is #GP or ignored).
        values!("{}", unsafe { probe!("sti") })
    });
    s.run("priv.hlt", || {
        // SAFETY: `hlt` is not emulated for PV guests (#GP); were it, the vCPU would block with
        // upcalls masked, which is what the harness's time limit is for.
        values!("{}", unsafe { probe!("hlt") })
    });
    s.run("priv.lidt", || {
        let idtr = [0u8; 10];
        // SAFETY: `lidt` is never emulated for a PV guest: #GP, nothing is loaded.
        values!("{}", unsafe {
            probe!("lidt ({p})", p = in(reg) &raw const idtr)
        })
    });
    s.run("priv.rdmsr_unknown", || values!("{}", rdmsr(UNKNOWN_MSR).0));
    s.run("priv.wrmsr_unknown", || {
        // SAFETY: the MSR does not exist, so nothing can be written.
        let p = unsafe { probe!("wrmsr", in("ecx") UNKNOWN_MSR, in("eax") 0u32, in("edx") 0u32) };
        values!("{p}")
    });
    // dom0 may be granted I/O ports, but not through the I/O bitmap or IOPL by default.
    s.run("priv.outb_port_0x80", || {
        // SAFETY: port 0x80 is the POST-code port: a write has no effect on QEMU's machine.
        values!("{}", unsafe { probe!("outb %al, $0x80", in("al") 0u8) })
    });
    s.run("priv.inb_port_0x80", || {
        // SAFETY: reading port 0x80 has no side effect.
        values!("{}", unsafe { probe!("inb $0x80, %al", out("al") _) })
    });
    s.run("priv.wbinvd", || {
        // SAFETY: a cache flush has no architectural effect (a no-op under TCG).
        values!("{}", unsafe { probe!("wbinvd") })
    });
}

fn set_gdt_cases(s: &mut Suite) {
    let gdt = |frames: u64, entries: u64| {
        // SAFETY: the cases pass frame lists the hypervisor must refuse, or no frames at all
        // (which leaves dom0 with no GDT of its own, as it booted).
        unsafe { hc::hypercall(__HYPERVISOR_set_gdt, frames, entries, 0, 0, 0) }
    };

    s.run("set_gdt.bad_frame_list", || values!("{}", gdt(UNMAPPED, 1)));

    s.run("set_gdt.too_many_entries", || {
        let frames = [0u64; 16];
        values!(
            "{}",
            gdt(gp(frames.as_ptr()), u64::from(FIRST_RESERVED_GDT_ENTRY) + 1)
        )
    });

    // A descriptor-table page may have no writable mapping: an ordinary data page is refused.
    s.run("set_gdt.writable_frame", || {
        let Some(page) = scratch(3) else {
            return values!("scratch_unmapped");
        };
        let frames = [page.mfn];
        values!("{}", gdt(gp(frames.as_ptr()), 1))
    });

    s.run("set_gdt.invalid_frame", || {
        let frames = [0x000f_ffff_ffffu64];
        values!("{}", gdt(gp(frames.as_ptr()), 1))
    });

    // No entries: no frames are read, so even a bad list is accepted.
    s.run("set_gdt.zero_entries_bad_frame_list", || {
        values!("{}", gdt(UNMAPPED, 0))
    });
}

/// `update_descriptor(maddr, desc)` (Xen's `do_update_descriptor`, as Linux's `write_gdt_entry`
/// uses it): `desc` goes through `check_descriptor` (DPL raised to the guest kernel's ring 3,
/// call gates forced to DPL 0 with the DPL kept in the target selector's RPL, system descriptors
/// other than call gates refused) and is written at `maddr`, which must be 8-byte aligned in a
/// frame of the caller that is a descriptor page or may be writable. Each accepted case writes
/// to the second descriptor slot of a scratch page (an ordinary writable page of dom0, cleared
/// first) and prints what landed there.
fn update_descriptor_cases(s: &mut Suite) {
    fn update(maddr: u64, desc: u64) -> i64 {
        // SAFETY: the cases name a scratch page of ours (nothing else lives there), an address
        // the hypervisor must refuse, or one of our page tables, which it must refuse to write.
        unsafe { hc::hypercall(__HYPERVISOR_update_descriptor, maddr, desc, 0, 0, 0) }
    }
    fn write(desc: u64) -> Values {
        let Some(page) = scratch(3) else {
            return values!("scratch_unmapped");
        };
        poke(page.va + 8, 0);
        let rc = update((page.mfn << 12) + 8, desc);
        let stored = peek(page.va + 8);
        poke(page.va + 8, 0);
        values!("rc={rc} stored={stored:#018x}")
    }
    // Code and data segments: all accepted, DPL 0..2 raised to 3.
    s.run("update_descriptor.code64_dpl3", || {
        write(0x00af_fb00_0000_ffff)
    });
    s.run("update_descriptor.code64_dpl0", || {
        write(0x00af_9b00_0000_ffff)
    });
    s.run("update_descriptor.data_dpl1", || {
        write(0x00cf_b300_0000_ffff)
    });
    // The null descriptor and a not-present one of any type are safe as they are.
    s.run("update_descriptor.null", || write(0));
    s.run("update_descriptor.not_present_tss", || {
        write(0x0000_0900_0000_0067)
    });
    // A present 64-bit TSS or LDT descriptor is a system descriptor: refused.
    s.run("update_descriptor.present_tss", || {
        write(0x0000_8900_0000_0067)
    });
    s.run("update_descriptor.present_ldt", || {
        write(0x0000_8200_0000_ffff)
    });
    // A call gate to the guest kernel's code selector: stored with DPL 0 (its DPL, 3, in the
    // selector's RPL). One to the hypervisor's own code selector (0xe008) is refused.
    s.run("update_descriptor.call_gate_kernel_cs", || {
        write(0x0000_ec00_e033_1000)
    });
    s.run("update_descriptor.call_gate_hypervisor_cs", || {
        write(0x0000_ec00_e008_1000)
    });
    s.run("update_descriptor.misaligned", || {
        let Some(page) = scratch(3) else {
            return values!("scratch_unmapped");
        };
        values!("{}", update((page.mfn << 12) + 4, 0))
    });
    s.run("update_descriptor.invalid_frame", || {
        values!("{}", update(0x000f_ffff_ffff_u64 << 12, 0))
    });
    // Our L4 is a page table: it cannot take the writable type, so nothing is written.
    s.run("update_descriptor.page_table_frame", || {
        values!("{}", update(mm::l4_mfn() << 12, 0))
    });
}

fn vm_assist_cases(s: &mut Suite) {
    s.run("vm_assist.4gb_segments", || {
        let on = hc::vm_assist(VMASST_CMD_enable, VMASST_TYPE_4gb_segments);
        let off = hc::vm_assist(VMASST_CMD_disable, VMASST_TYPE_4gb_segments);
        values!("enable={on} disable={off}")
    });

    s.run("vm_assist.runstate_update_flag", || {
        let on = hc::vm_assist(VMASST_CMD_enable, VMASST_TYPE_runstate_update_flag);
        let off = hc::vm_assist(VMASST_CMD_disable, VMASST_TYPE_runstate_update_flag);
        values!("enable={on} disable={off}")
    });

    // The assist is accepted, but has no effect on a 64-bit PV guest: Xen emulates stores to L1
    // tables whether or not it is enabled (the `traps.l1_pagetable_*` cases).
    s.run("vm_assist.writable_pagetables", || {
        let on = hc::vm_assist(VMASST_CMD_enable, VMASST_TYPE_writable_pagetables);
        let with = l1_store_same();
        let off = hc::vm_assist(VMASST_CMD_disable, VMASST_TYPE_writable_pagetables);
        let without = l1_store_same();
        values!("enable={on} with=[{with}] disable={off} without=[{without}]")
    });

    s.run("vm_assist.unknown_type", || {
        let on = hc::vm_assist(VMASST_CMD_enable, 31);
        let off = hc::vm_assist(VMASST_CMD_disable, 31);
        values!("enable={on} disable={off}")
    });

    s.run("vm_assist.type_beyond_word", || {
        values!("{}", hc::vm_assist(VMASST_CMD_enable, 64))
    });

    s.run("vm_assist.unknown_cmd", || {
        values!("{}", hc::vm_assist(BAD_CMD, VMASST_TYPE_4gb_segments))
    });
}
