//! The GDT with Xen's flat selectors at byte offset 0xE000, and the TSS.
//!
//! Xen reserves the last entries of a 16-page GDT for itself (`arch-x86/xen-x86_64.h`): guests see
//! and use `FLAT_RING3_CS32` 0xe023, `FLAT_RING3_SS` 0xe02b and `FLAT_RING3_CS64` 0xe033, and the
//! hypervisor runs on `__HYPERVISOR_CS` 0xe008 / `__HYPERVISOR_DS` 0xe010. `STAR` is set so that
//! `syscall` lands on 0xe008 and `sysret` on 0xe033/0xe02b. The TSS gives the CPU the stack to use
//! when an interrupt or exception arrives from ring 3 (RSP0) and separate known-good stacks for
//! double faults, NMIs, debug exceptions and machine checks (IST1..IST4), as Xen has.
//!
//! Below the reserved block lie the guest's own descriptors: the GDT's first 14 pages are a
//! window onto the running vCPU's `set_gdt` frames ([`load_guest_frames`]), as Xen maps them into
//! the per-vCPU GDT area it loads (`pv_set_gdt`, `write_full_gdt_ptes`), so a guest's own
//! selectors (Linux's `__USER_DS` 0x2b, ...) work. A page the guest did not give maps a page of
//! zeros read-only (Xen's `zero_l1e`): a selector there is a null descriptor, #GP(selector).

use core::arch::asm;
use core::mem::size_of;

use xen_core::layout::XEN_VIRT_START;
use xen_core::mm::Mfn;

/// Hypervisor 64-bit code selector.
pub const HYPERVISOR_CS: u16 = 0xe008;
/// Hypervisor data/stack selector.
pub const HYPERVISOR_DS: u16 = 0xe010;
/// Guest 32-bit code selector (ring 3).
pub const GUEST_CS32: u16 = 0xe023;
/// Guest data/stack selector (ring 3).
pub const GUEST_DS: u16 = 0xe02b;
/// Guest 64-bit code selector (ring 3).
pub const GUEST_CS64: u16 = 0xe033;
/// The TSS selector.
pub const TSS_SEL: u16 = 0xe040;

/// First GDT index of Xen's reserved block (byte offset 0xE000).
const FIRST_RESERVED: usize = 0xe000 / 8;
/// Number of 8-byte GDT slots: up to and including the 16-byte TSS descriptor at 0xe040.
const ENTRIES: usize = FIRST_RESERVED + 16;

/// Size of each of the IST stacks.
pub const STACK_SIZE: usize = 32 * 1024;

/// Size of the entry stack: every hypercall, exception and interrupt from a guest runs on it,
/// scheduling and domain teardown included.
pub const ENTRY_STACK_SIZE: usize = 256 * 1024;

/// Pages of the GDT below the reserved block: the guest's (`FIRST_RESERVED_GDT_PAGE`).
pub const GUEST_PAGES: usize = FIRST_RESERVED * 8 / 4096;

#[repr(C, align(4096))]
struct Gdt([u64; ENTRIES]);

extern "C" {
    /// The image window's L1 entries (`boot.rs`), the first one mapping `__image_start`.
    static mut boot_l1_xen: [u64; 0];
    /// First byte of the image (`xen.ld`).
    static __image_start: u8;
}

/// What each guest page of the GDT window maps now: a guest frame, or `None` for the image's own
/// page of zeros; and how many leading pages map guest frames (the rest map zeros), so that the
/// usual case, the frames already in place, is one short comparison.
static WINDOW: spin::Mutex<([Option<Mfn>; GUEST_PAGES], usize)> =
    spin::Mutex::new(([None; GUEST_PAGES], 0));

const PTE_P: u64 = 1;
const PTE_RW: u64 = 2;
const PTE_NX: u64 = 1 << 63;

/// The 64-bit TSS (Intel SDM vol. 3, 8.7).
#[repr(C, packed(4))]
#[derive(Default)]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

#[repr(C, align(16))]
struct EntryStack([u8; ENTRY_STACK_SIZE]);

static mut GDT: Gdt = Gdt([0; ENTRIES]);
static mut TSS: Tss = Tss {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: 0,
};
/// The stack every entry from a guest runs on (TSS.RSP0, and the `syscall` entry's stack).
static mut ENTRY_STACK: EntryStack = EntryStack([0; ENTRY_STACK_SIZE]);
static mut DOUBLE_FAULT_STACK: Stack = Stack([0; STACK_SIZE]);
static mut NMI_STACK: Stack = Stack([0; STACK_SIZE]);
static mut DEBUG_STACK: Stack = Stack([0; STACK_SIZE]);
static mut MACHINE_CHECK_STACK: Stack = Stack([0; STACK_SIZE]);

/// IST index (1-based, as IDT entries name it) of the double-fault stack.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST index of the NMI stack.
pub const IST_NMI: u8 = 2;
/// IST index of the #DB stack (XSA-260: a #DB can hit the `syscall` entry before it switches
/// stacks).
pub const IST_DEBUG: u8 = 3;
/// IST index of the #MC stack.
pub const IST_MACHINE_CHECK: u8 = 4;

/// Top of the entry stack.
pub fn entry_stack_top() -> u64 {
    entry_stack_bottom() + ENTRY_STACK_SIZE as u64
}

/// Lowest address of the entry stack.
pub fn entry_stack_bottom() -> u64 {
    (&raw const ENTRY_STACK) as u64
}

/// Maps the vCPU's GDT frames (`set_gdt`, each holding a descriptor-page type reference, so
/// every descriptor in them is checked) into the GDT's guest pages, and zeros where it gave none.
/// Only changed pages are rewritten and invalidated; call before anything may load a guest
/// selector for this vCPU (its data segments, an `iretq` to it).
pub fn load_guest_frames(frames: &[Mfn]) {
    let mut guard = WINDOW.lock();
    let (window, used) = &mut *guard;
    // Already in place (every context switch back to the same vCPU, every way out): pages
    // `0..used` map exactly `frames`, and the others zeros.
    if *used == frames.len()
        && window
            .iter()
            .zip(frames)
            .all(|(slot, &mfn)| *slot == Some(mfn))
    {
        return;
    }
    let gdt = (&raw const GDT) as u64;
    // Only the addresses of the L1 array and of the image's first byte are taken.
    let (l1, image) = (
        (&raw mut boot_l1_xen) as *mut u64,
        (&raw const __image_start) as u64,
    );
    for (page, slot) in window.iter_mut().enumerate() {
        let want = frames.get(page).copied();
        if *slot == want {
            continue;
        }
        let va = gdt + (page * 4096) as u64;
        let pte = match want {
            // Writable for the CPU's own accessed-bit updates, as Xen maps them
            // (`__PAGE_HYPERVISOR_RW`); the guest has no writable mapping of them.
            Some(mfn) => (mfn.0 << 12) | PTE_P | PTE_RW | PTE_NX,
            None => (va - XEN_VIRT_START) | PTE_P | PTE_NX,
        };
        // SAFETY: `va` is a page of the GDT static inside the image window, so its L1 entry is
        // `boot_l1_xen[(va - __image_start) / 4096]`; only the CPU's descriptor-table accesses
        // use these pages (Rust never touches the GDT below the reserved block), and the
        // `invlpg` drops the old translation before any of them can.
        unsafe {
            l1.add(((va - image) >> 12) as usize).write_volatile(pte);
            asm!("invlpg [{}]", in(reg) va, options(nostack));
        }
        *slot = want;
    }
    *used = frames.len().min(GUEST_PAGES);
}

const fn segment(flags_hi: u64, access: u64) -> u64 {
    // Base 0, limit 0xfffff (4 GiB with G=1; ignored in 64-bit mode), accessed bit preset.
    0xffff | (0xf << 48) | (access << 40) | (flags_hi << 52)
}

/// Installs the GDT and TSS and reloads every segment register.
pub fn init() {
    let tss_base = (&raw const TSS) as u64;
    let tss_limit = (size_of::<Tss>() - 1) as u64;
    // SAFETY: called once on the boot CPU before any guest exists; nothing else references GDT or
    // TSS yet, so these raw writes race with nothing.
    unsafe {
        let g = &raw mut GDT.0;
        let set = |slot: usize, v: u64| (*g)[FIRST_RESERVED + slot] = v;
        set(1, segment(0xa, 0x9b)); // 0xe008: 64-bit code, DPL 0
        set(2, segment(0xc, 0x93)); // 0xe010: data, DPL 0
        set(3, segment(0xc, 0x9b)); // 0xe018: 32-bit code, DPL 0 (unused, as in Xen)
        set(4, segment(0xc, 0xfb)); // 0xe023: 32-bit code, DPL 3
        set(5, segment(0xc, 0xf3)); // 0xe02b: data, DPL 3
        set(6, segment(0xa, 0xfb)); // 0xe033: 64-bit code, DPL 3
                                    // 0xe040: 64-bit available TSS (type 9, present), a 16-byte descriptor.
        let low = (tss_limit & 0xffff)
            | ((tss_base & 0xff_ffff) << 16)
            | (0x89 << 40)
            | (((tss_limit >> 16) & 0xf) << 48)
            | (((tss_base >> 24) & 0xff) << 56);
        set(8, low);
        set(9, tss_base >> 32);

        let t = &raw mut TSS;
        (*t).rsp[0] = entry_stack_top();
        (*t).ist[usize::from(IST_DOUBLE_FAULT) - 1] =
            (&raw const DOUBLE_FAULT_STACK) as u64 + STACK_SIZE as u64;
        (*t).ist[usize::from(IST_NMI) - 1] = (&raw const NMI_STACK) as u64 + STACK_SIZE as u64;
        (*t).ist[usize::from(IST_DEBUG) - 1] = (&raw const DEBUG_STACK) as u64 + STACK_SIZE as u64;
        (*t).ist[usize::from(IST_MACHINE_CHECK) - 1] =
            (&raw const MACHINE_CHECK_STACK) as u64 + STACK_SIZE as u64;
        // No I/O bitmap: every port access from ring 3 without IOPL faults into the hypervisor.
        (*t).iomap_base = size_of::<Tss>() as u16;
    }

    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let ptr = Pointer {
        limit: (ENTRIES * 8 - 1) as u16,
        base: (&raw const GDT) as u64,
    };
    // SAFETY: the GDT holds valid descriptors for every selector loaded below and lives in .bss for
    // the hypervisor's lifetime. The far return reloads CS with the new hypervisor code selector;
    // the data selectors follow; TR points at the TSS descriptor just written.
    unsafe {
        asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ss, {ds:x}",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "ltr {tss:x}",
            ptr = in(reg) &raw const ptr,
            cs = in(reg) u64::from(HYPERVISOR_CS),
            ds = in(reg) u64::from(HYPERVISOR_DS),
            tss = in(reg) u64::from(TSS_SEL),
            tmp = out(reg) _,
        );
    }
}
