//! Boot: from the multiboot1 loader's 32-bit protected mode to 64-bit Rust at the image's link
//! address.
//!
//! The image is linked at `XEN_VIRT_START + 2 MiB` (see `xen.ld` and `xen_core::layout`) and loaded
//! by the boot loader at machine address 2 MiB. The 32-bit stub below runs with paging off, so it
//! uses machine addresses: `sym - XEN_VIRT_START` (Xen's `sym_offs()`). It
//!
//! 1. checks for long mode and NX (and reports their absence on COM1, exit code `BadBoot`),
//! 2. zeroes `.bss`,
//! 3. builds the boot page tables:
//!    - L4 slot 0: identity map of machine 0..1 GiB with 2 MiB read-write executable pages, only
//!      until we run at the high address;
//!    - L4 slot 261: the image window, `XEN_VIRT_START + x` -> machine `x` for the image alone, with
//!      4 KiB pages and W^X as in Xen: `.text` read-only and executable, `.rodata` and
//!      `.xen_symbols` read-only and no-execute, `.data` and `.bss` read-write and no-execute (the
//!      boundaries are `xen.ld`'s `__text_end` and `__rodata_end`); the rest of the window is
//!      unmapped;
//!    - L4 slot 262: the direct map, `DIRECTMAP_VIRT_START + x` -> machine `x` for x in 0..4 GiB,
//!      read-write and no-execute with 2 MiB pages, except that the 2 MiB pages holding the image
//!      are split into 4 KiB pages and the image's own frames are read-only there: the alias can
//!      read the image but never write it (its code or its data);
//! 4. enables PAE and PGE, EFER.LME/NXE/SCE, then paging with CR0.WP (ring 0 honours read-only),
//! 5. loads a boot GDT and far-jumps to 64-bit code, still at the low (identity) alias,
//! 6. jumps to the high alias, reloads the GDT from there, sets the stack, drops the identity
//!    map, and calls [`start`] with the loader's EAX and EBX.
//!
//! With CR0.WP set, a write to `.text` or `.rodata` from ring 0 is a page fault: nothing is written
//! there after the link (`scripts/embed-symbols.py` fills `.xen_symbols` in the file), and
//! `selftest=wx` checks that such a write is fatal.

use core::arch::global_asm;

use xen_core::layout::{
    l2_index, l3_index, l4_index, BOOT_DIRECTMAP_SIZE, DIRECTMAP_VIRT_START, GIB, SUPERPAGE_SIZE,
    XEN_IMG_MAX_SIZE, XEN_IMG_OFFSET, XEN_VIRT_START,
};
use xen_core::mm::Maddr;
use xen_core::multiboot;
use xen_core::power::FailCode;

use super::console;

/// Code selector of the boot GDT (64-bit, ring 0).
pub const BOOT_CS: u16 = 0x08;
/// Data selector of the boot GDT (ring 0).
const BOOT_DS: u16 = 0x10;

/// Size of the boot stack, the only stack until the next issue adds per-CPU stacks.
const BOOT_STACK_SIZE: usize = 256 * 1024;

/// Page-table entry bits (Intel SDM vol. 3, "Paging").
const PTE_PRESENT: u32 = 1 << 0;
const PTE_WRITABLE: u32 = 1 << 1;
const PTE_PSE: u32 = 1 << 7;
/// The no-execute bit (63), as seen in the upper 32-bit half of an entry.
const PTE_NX_HIGH: u32 = 1 << (63 - 32);
/// Flags of an entry pointing to a next-level table.
const PTE_TABLE: u32 = PTE_PRESENT | PTE_WRITABLE;
/// Flags of a read-write 4 KiB leaf.
const PTE_PAGE_RW: u32 = PTE_PRESENT | PTE_WRITABLE;
/// Flags of a 2 MiB leaf.
const PTE_SUPERPAGE: u32 = PTE_PRESENT | PTE_WRITABLE | PTE_PSE;

const CR0_WP: u32 = 1 << 16;
const CR0_PG: u32 = 1 << 31;
const CR4_PAE: u32 = 1 << 5;
const CR4_PGE: u32 = 1 << 7;
const MSR_EFER: u32 = 0xC000_0080;
const EFER_SCE: u32 = 1 << 0;
const EFER_LME: u32 = 1 << 8;
const EFER_NXE: u32 = 1 << 11;

/// CPUID leaf 0x8000_0001 EDX: NX and long mode.
const CPUID_EDX_NX_BIT: u32 = 20;
const CPUID_EDX_LM_BIT: u32 = 29;

global_asm!(
    r#"
    /* ---- The multiboot1 header: must sit in the first 8 KiB of the file (xen.ld puts it first).
       With the a.out kludge (flag 16) QEMU copies the file from load_addr to bss_end_addr and
       enters at entry_addr, all machine addresses, without looking at the ELF headers. */
    .section .text.header, "ax", @progbits
    .code32
    .balign 4
multiboot1_header:
    .long {mb_magic}
    .long {mb_flags}
    .long {mb_checksum}
    .long multiboot1_header - {virt}    /* header_addr */
    .long __image_start - {virt}        /* load_addr */
    .long __data_end - {virt}           /* load_end_addr: end of the file's contents */
    .long __bss_end - {virt}            /* bss_end_addr: the loader zeroes up to here */
    .long start32 - {virt}              /* entry_addr */

    /* xen.ld checks that it and xen_core::layout agree on XEN_VIRT_START, and that the image fits
       in the 4 KiB-page tables below. */
    .globl __layout_xen_virt_start
    .set __layout_xen_virt_start, {virt}
    .globl __layout_xen_img_max_size
    .set __layout_xen_img_max_size, {img_max}

    /* ---- 32-bit entry. EAX = multiboot magic, EBX = multiboot info; flat 4 GiB segments, paging
       off, interrupts off, no stack. */
    .section .text.boot32, "ax", @progbits
    .code32
    .globl start32
start32:
    cli
    cld
    /* Keep the loader's EAX and EBX: CPUID clobbers both. */
    mov %eax, %ebp
    mov %ebx, %esi

    /* Long mode and NX are required. */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb .Lbad_cpu
    mov $0x80000001, %eax
    cpuid
    bt ${cpuid_lm_bit}, %edx
    jnc .Lbad_cpu
    bt ${cpuid_nx_bit}, %edx
    jnc .Lbad_cpu

    /* Zero .bss: the page tables below assume empty tables. */
    mov $(__bss_start - {virt}), %edi
    mov $(__bss_end - {virt}), %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    /* L2 for the identity map of machine 0..1 GiB, executable (the stub runs there). */
    mov $(boot_l2_low - {virt}), %edi
    mov ${pte_superpage}, %eax
    mov $512, %ecx
1:  mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 1b

    /* L2s for the direct map of machine 0..4 GiB, no-execute. */
    mov $(boot_l2_directmap - {virt}), %edi
    mov ${pte_superpage}, %eax
    mov $({directmap_gib} * 512), %ecx
1:  mov %eax, (%edi)
    movl ${pte_nx_high}, 4(%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 1b

    /* L1s of the image window, W^X: .text present (read-only, executable); .rodata and
       .xen_symbols present and no-execute; .data and .bss also writable. EAX = machine address of
       the page, EDI = its L1 entry, EDX:EBX = the entry's low and high halves. */
    mov $(__image_start - {virt}), %eax
    mov $(boot_l1_xen - {virt}), %edi
1:  mov ${pte_present}, %edx
    xor %ebx, %ebx
    cmp $(__text_end - {virt}), %eax
    jb 2f
    mov ${pte_nx_high}, %ebx
    cmp $(__rodata_end - {virt}), %eax
    jb 2f
    or ${pte_writable}, %edx
2:  or %eax, %edx
    mov %edx, (%edi)
    mov %ebx, 4(%edi)
    add $4096, %eax
    add $8, %edi
    cmp $(__image_end - {virt}), %eax
    jb 1b

    /* L1s of the direct map's 2 MiB pages that hold the image: the image's frames read-only, the
       rest of those 2 MiB pages read-write as before, all no-execute. */
    mov $(__image_start - {virt}), %eax
    mov $(boot_l1_directmap - {virt}), %edi
1:  mov ${pte_page_rw}, %edx
    cmp $(__image_end - {virt}), %eax
    jae 2f
    mov ${pte_present}, %edx
2:  or %eax, %edx
    mov %edx, (%edi)
    movl ${pte_nx_high}, 4(%edi)
    add $4096, %eax
    add $8, %edi
    test $0x1fffff, %eax
    jnz 1b
    cmp $(__image_end - {virt}), %eax
    jb 1b

    /* L2 entries for those L1s, one per 2 MiB of image: in the image window's L2 and in the
       direct map's (whose entries keep the no-execute bit written above). EDX = machine address
       of the 2 MiB page. */
    mov $(boot_l1_xen - {virt} + {pte_table}), %eax
    mov $(boot_l2_xen - {virt} + {img_l2} * 8), %edi
    mov $(__image_start - {virt}), %edx
1:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    add $0x200000, %edx
    cmp $(__image_end - {virt}), %edx
    jb 1b
    mov $(boot_l1_directmap - {virt} + {pte_table}), %eax
    mov $(boot_l2_directmap - {virt} + {img_l2_directmap} * 8), %edi
    mov $(__image_start - {virt}), %edx
1:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    add $0x200000, %edx
    cmp $(__image_end - {virt}), %edx
    jb 1b

    /* L3s. */
    movl $(boot_l2_low - {virt} + {pte_table}), (boot_l3_ident - {virt})
    movl $(boot_l2_xen - {virt} + {pte_table}), (boot_l3_xen - {virt} + {xen_l3} * 8)
    mov $(boot_l2_directmap - {virt} + {pte_table}), %eax
    mov $(boot_l3_directmap - {virt} + {directmap_l3} * 8), %edi
    mov ${directmap_gib}, %ecx
1:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    loop 1b

    /* L4. */
    movl $(boot_l3_ident - {virt} + {pte_table}), (boot_l4 - {virt})
    movl $(boot_l3_xen - {virt} + {pte_table}), (boot_l4 - {virt} + {xen_l4} * 8)
    movl $(boot_l3_directmap - {virt} + {pte_table}), (boot_l4 - {virt} + {directmap_l4} * 8)

    /* Long mode: CR3, CR4.PAE, EFER.LME (plus NXE for the NX bits above, SCE for syscall later),
       then CR0.PG activates it. */
    mov $(boot_l4 - {virt}), %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $({cr4_pae} | {cr4_pge}), %eax
    mov %eax, %cr4
    mov ${msr_efer}, %ecx
    rdmsr
    or $({efer_lme} | {efer_nxe} | {efer_sce}), %eax
    wrmsr
    mov %cr0, %eax
    or $({cr0_pg} | {cr0_wp}), %eax
    mov %eax, %cr0

    /* Now in compatibility mode: load a GDT with a 64-bit code segment and jump into it. */
    lgdt (boot_gdtr32 - {virt})
    ljmp ${boot_cs}, $(start64_low - {virt})

.Lbad_cpu:
    /* No long mode or no NX: say so on COM1 (usable without setup under QEMU) and fail. */
    mov $(.Lbad_cpu_msg - {virt}), %esi
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  mov ${fail_bad_boot}, %al
    out %al, $0xf4
3:  hlt
    jmp 3b
.Lbad_cpu_msg:
    .asciz "(XEN) ERR: this CPU has no long mode or no NX: cannot boot\r\n"

    .code64
start64_low:
    /* 64-bit code, but still at the identity-mapped low address: go to the link address. */
    movabs $start64_high, %rax
    jmp *%rax

    /* ---- 64-bit code at the high, linked address. */
    .section .text.boot64, "ax", @progbits
start64_high:
    /* Reload the GDT through its high address, so that it stays reachable without the identity
       map, and the data segments. */
    lgdt boot_gdtr64(%rip)
    mov ${boot_ds}, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    lea boot_stack_top(%rip), %rsp

    /* The lower half belongs to guests from now on: drop the identity map. */
    movq $0, boot_l4(%rip)
    mov %cr3, %rax
    mov %rax, %cr3

    /* start(magic, info): 32-bit moves zero the upper halves, which are undefined after the
       switch from 32-bit mode. RBP = 0 ends the frame-pointer chain. */
    mov %ebp, %edi
    mov %esi, %esi
    xor %ebp, %ebp
    call {start}
    ud2

    /* ---- The boot GDT. Descriptors have the accessed bit preset, so the CPU never writes them. */
    .section .data.boot_gdt, "aw", @progbits
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9b000000ffff    /* 0x08: 64-bit code, ring 0 */
    .quad 0x00cf93000000ffff    /* 0x10: data, ring 0 */
.Lboot_gdt_end:
    .balign 8
    .word 0, 0, 0
boot_gdtr32:                    /* for 32-bit lgdt: limit, 32-bit machine address */
    .word .Lboot_gdt_end - boot_gdt - 1
    .long boot_gdt - {virt}
    .balign 8
    .word 0, 0, 0
boot_gdtr64:                    /* for 64-bit lgdt: limit, 64-bit virtual address */
    .word .Lboot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    /* ---- Boot page tables and stack, zeroed by the stub above. */
    .section .bss.boot, "aw", @nobits
    .balign 4096
    .globl boot_l4
boot_l4:            .skip 4096
boot_l3_ident:      .skip 4096
boot_l3_xen:        .skip 4096
boot_l3_directmap:  .skip 4096
boot_l2_low:        .skip 4096
boot_l2_xen:        .skip 4096
boot_l2_directmap:  .skip 4096 * {directmap_gib}
    .globl boot_l1_xen
boot_l1_xen:        .skip 4096 * {img_l1s}
boot_l1_directmap:  .skip 4096 * {img_l1s}
    .balign 16
    .globl boot_stack
boot_stack:         .skip {stack_size}
boot_stack_top:
    "#,
    virt = const XEN_VIRT_START,
    mb_magic = const multiboot::HEADER_MAGIC,
    mb_flags = const multiboot::HEADER_FLAGS,
    mb_checksum = const multiboot::HEADER_CHECKSUM,
    cpuid_lm_bit = const CPUID_EDX_LM_BIT,
    cpuid_nx_bit = const CPUID_EDX_NX_BIT,
    pte_table = const PTE_TABLE,
    pte_superpage = const PTE_SUPERPAGE,
    pte_present = const PTE_PRESENT,
    pte_writable = const PTE_WRITABLE,
    pte_page_rw = const PTE_PAGE_RW,
    img_max = const XEN_IMG_MAX_SIZE,
    img_l1s = const XEN_IMG_MAX_SIZE / SUPERPAGE_SIZE,
    img_l2 = const l2_index(XEN_VIRT_START + XEN_IMG_OFFSET),
    img_l2_directmap = const XEN_IMG_OFFSET / SUPERPAGE_SIZE,
    pte_nx_high = const PTE_NX_HIGH,
    directmap_gib = const BOOT_DIRECTMAP_SIZE / GIB,
    xen_l4 = const l4_index(XEN_VIRT_START),
    xen_l3 = const l3_index(XEN_VIRT_START),
    directmap_l4 = const l4_index(DIRECTMAP_VIRT_START),
    directmap_l3 = const l3_index(DIRECTMAP_VIRT_START),
    cr0_pg = const CR0_PG,
    cr0_wp = const CR0_WP,
    cr4_pae = const CR4_PAE,
    cr4_pge = const CR4_PGE,
    msr_efer = const MSR_EFER,
    efer_lme = const EFER_LME,
    efer_nxe = const EFER_NXE,
    efer_sce = const EFER_SCE,
    boot_cs = const BOOT_CS,
    boot_ds = const BOOT_DS,
    fail_bad_boot = const FailCode::BadBoot as u8,
    stack_size = const BOOT_STACK_SIZE,
    start = sym start,
    options(att_syntax)
);

/// The first Rust code: called by the boot stub on the boot stack, at the high address, with the
/// multiboot loader's EAX (`mb_magic`) and EBX (`mb_info_paddr`, a machine address).
extern "C" fn start(mb_magic: u32, mb_info_paddr: u32) -> ! {
    console::init();
    // The real GDT and IDT at once: from here on any exception is reported (`traps.rs`)
    // instead of triple-faulting.
    super::gdt::init();
    super::entry::init();
    // Before SMAP: on a KVM that cannot host us, the entry path's `clac` is not even emulated.
    super::ring3::check_ring0();
    let (smep, smap) = super::entry::enable_smep_smap();
    super::entry::enable_sse();
    super::entry::init_cr4_mce_and_pat();
    console::printk!(
        "SMEP {}, SMAP {}\n",
        if smep { "enabled" } else { "not available" },
        if smap { "enabled" } else { "not available" }
    );
    super::pic::disable();
    crate::start_xen(mb_magic, Maddr(mb_info_paddr.into()))
}
