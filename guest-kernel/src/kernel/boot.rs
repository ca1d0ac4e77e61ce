//! Boot glue: the Xen ELF notes, the entry point, the hypercall page and the boot stack.
//!
//! Xen's domain builder reads the notes from the PT_NOTE segment (`elfnote.h`): it refuses an
//! image without LOADER "generic" (or GUEST_OS "linux") and XEN_VERSION "xen-3.0". Xen enters at
//! ENTRY in 64-bit ring 3 with RSI = start_info and event upcalls masked.

use core::arch::global_asm;

// The notes. Each is { namesz, descsz, type, "Xen\0", desc } with 4-byte alignment.
global_asm!(
    r#"
    .macro xen_note type, desc_start, desc_end
    .balign 4
    .long 4
    .long \desc_end - \desc_start
    .long \type
    .asciz "Xen"
    .balign 4
    .endm

    .section .note.Xen, "a", @note
    xen_note 6, 10f, 11f        /* XEN_ELFNOTE_GUEST_OS */
10: .asciz "rust-pv-guest"
11:
    xen_note 7, 12f, 13f        /* XEN_ELFNOTE_GUEST_VERSION */
12: .asciz "0.1"
13:
    xen_note 5, 14f, 15f        /* XEN_ELFNOTE_XEN_VERSION: must start "xen-3.0" */
14: .asciz "xen-3.0"
15:
    xen_note 8, 16f, 17f        /* XEN_ELFNOTE_LOADER: "generic" */
16: .asciz "generic"
17:
    xen_note 3, 18f, 19f        /* XEN_ELFNOTE_VIRT_BASE: 0, virtual == pseudo-physical */
18: .quad 0
19:
    xen_note 4, 20f, 21f        /* XEN_ELFNOTE_PADDR_OFFSET */
20: .quad 0
21:
    xen_note 1, 22f, 23f        /* XEN_ELFNOTE_ENTRY */
22: .quad _start
23:
    xen_note 2, 24f, 25f        /* XEN_ELFNOTE_HYPERCALL_PAGE */
24: .quad hypercall_page
25:
    xen_note 10, 26f, 27f       /* XEN_ELFNOTE_FEATURES: none required */
26: .asciz ""
27:
    xen_note 17, 28f, 29f       /* XEN_ELFNOTE_SUPPORTED_FEATURES: XENFEAT_dom0 (bit 11) */
28: .long 1 << 11
29:
    "#
);

// Entry: switch to our own stack (Xen's boot stack is fine, but ours has a known size) and call
// Rust with start_info as the first argument.
global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    lea {stack}+{stack_size}(%rip), %rsp
    xor %ebp, %ebp
    mov %rsi, %rdi
    call {main}
    ud2

    .section .text.hypercall_page, "ax"
    .balign 4096
    .global hypercall_page
hypercall_page:
    .fill 4096, 1, 0xcc    /* int3 until the hypervisor writes its stubs here */
    "#,
    stack = sym BOOT_STACK,
    stack_size = const BOOT_STACK_SIZE,
    main = sym guest_main,
    options(att_syntax)
);

/// Size of the boot stack: 256 KiB. smoltcp builds its interface and sockets on the stack, and
/// with dom0's network 64 KiB overflowed (73 KiB deep, found when the overflow reached
/// `mm::LAYOUT`, the static just below the stack, after an unrelated layout change).
const BOOT_STACK_SIZE: usize = 256 * 1024;

#[repr(C, align(4096))]
struct Stack([u8; BOOT_STACK_SIZE]);

/// The boot stack; only the entry code names it (it is never accessed from Rust).
static mut BOOT_STACK: Stack = Stack([0; BOOT_STACK_SIZE]);

extern "C" {
    /// The Rust entry: `modes::guest_main`, found by its unmangled name so the kernel does not
    /// import the programs that run on it.
    fn guest_main(start_info: *const hypercall_abi::xen::StartInfo) -> !;
    /// The page the hypervisor fills with hypercall stubs (defined in the asm above).
    pub static hypercall_page: [u8; 4096];
}
