//! Several vCPUs: which vCPU runs this code ([`this_vcpu`]), each vCPU's `vcpu_info` in a page of
//! our own ([`register_vcpu_info`]), and bringing another vCPU up ([`start`]) as Linux's
//! `cpu_initialize_context` does.
//!
//! A PV guest starts on vCPU 0; the others exist (`VCPUOP_is_up` answers 0 rather than -ENOENT)
//! but have no registers until the guest hands the hypervisor a `vcpu_guest_context`
//! (`VCPUOP_initialise`) and says go (`VCPUOP_up`). The context names what a real CPU would get
//! from its boot code: RIP and RSP (here a Rust function and a stack of its own), the page tables
//! (`ctrlreg[3]`: our kernel L4 as `xen_pfn_to_cr3`), the virtual IDT (`trap_ctxt`), the event and
//! failsafe callbacks, and the kernel stack for user-to-kernel transitions. No GDT frames: this
//! kernel only uses the flat selectors in Xen's own part of the GDT.
//!
//! **Which vCPU am I?** Linux keeps a per-CPU pointer in the GS base. This kernel's cases play
//! with the GS base, so it uses the other classic answer: the stack. vCPU 0 runs on the boot
//! stack (or the stacks `user/` switches to); every other vCPU runs on its own slot of
//! [`STACKS`], so the stack pointer says which vCPU this is, in any context (an upcall or a trap
//! runs on the stack it interrupted).
//!
//! Everything kept per vCPU is an array indexed by [`this_vcpu`]: the trap depth (`traps.rs`),
//! the ports each vCPU's upcall saw and its FIFO queues (`events.rs`), the `vcpu_info`
//! (`shared_info.rs`).

use core::arch::asm;
use core::sync::atomic::{AtomicU32, Ordering};

use hypercall_abi::arch_x86_64::{
    VGCF_in_kernel, VcpuGuestContext, FLAT_KERNEL_CS, FLAT_KERNEL_SS,
};
use hypercall_abi::vcpu::{VCPUOP_initialise, VcpuNoArg, VcpuRegisterVcpuInfo};
use hypercall_abi::xen::{__HYPERVISOR_vcpu_op, VcpuInfo};

use super::hypercall as hc;
use super::{mm, traps};

/// vCPUs this kernel can run (the hypervisor allows 8; 4 keeps the stacks small).
pub const MAX_VCPUS: usize = 4;

/// Stack of each vCPU other than 0.
const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(4096))]
struct Stack([u8; STACK_SIZE]);

/// The stacks of vCPUs 1.. (slot `i` is vCPU `i + 1`'s). Only their addresses are used from Rust.
static mut STACKS: [Stack; MAX_VCPUS - 1] = [const { Stack([0; STACK_SIZE]) }; MAX_VCPUS - 1];

/// The vCPU running this code: the one whose stack holds the stack pointer, 0 off every
/// secondary stack.
#[inline]
pub fn this_vcpu() -> u32 {
    let rsp: u64;
    // SAFETY: reads the stack pointer; no memory access.
    unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    let base = (&raw const STACKS) as u64;
    match rsp.checked_sub(base) {
        Some(off) if off < (STACK_SIZE * (MAX_VCPUS - 1)) as u64 => {
            (off / STACK_SIZE as u64) as u32 + 1
        }
        _ => 0,
    }
}

/// How many vCPUs the domain has (at most [`MAX_VCPUS`]): `VCPUOP_is_up` is -ENOENT past the last.
pub fn count() -> u32 {
    (1..MAX_VCPUS as u32)
        .find(|&id| hc::vcpu_op_noarg(VcpuNoArg::IsUp, id) < 0)
        .unwrap_or(MAX_VCPUS as u32)
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// Each vCPU's `vcpu_info` once registered: a 64-byte slot per vCPU, in one page. The hypervisor
/// writes it at any time, so it is only reached through raw pointers.
static mut INFO: Page = Page([0; 4096]);

/// The address of vCPU `id`'s slot in [`INFO`] (`id` < [`MAX_VCPUS`]).
fn info_slot(id: u32) -> *mut VcpuInfo {
    // SAFETY: an address inside the static page (MAX_VCPUS * 64 <= 4096); nothing is
    // dereferenced.
    unsafe {
        (&raw mut INFO)
            .cast::<u8>()
            .add(id as usize * core::mem::size_of::<VcpuInfo>())
            .cast()
    }
}

/// Bit `i`: vCPU `i`'s `vcpu_info` lives in [`INFO`] (else in shared_info).
static REGISTERED: AtomicU32 = AtomicU32::new(0);

/// vCPU `id`'s `vcpu_info` in [`INFO`], if it was registered there.
pub fn registered_vcpu_info(id: u32) -> Option<*mut VcpuInfo> {
    let registered =
        (id as usize) < MAX_VCPUS && REGISTERED.load(Ordering::Acquire) & (1 << id) != 0;
    registered.then(|| info_slot(id))
}

/// `VCPUOP_register_vcpu_info`: moves vCPU `id`'s `vcpu_info` out of shared_info into its slot of
/// our page (Linux's `xen_vcpu_setup`). Allowed for the calling vCPU, or another one while it is
/// down. The hypervisor copies the old contents over and marks every event pending, so nothing
/// is lost. Returns the hypercall's result.
pub fn register_vcpu_info(id: u32) -> i64 {
    if id as usize >= MAX_VCPUS {
        return -22;
    }
    let va = info_slot(id) as u64;
    let Some(mfn) = mm::va_to_mfn(va) else {
        return -22;
    };
    let mut reg = VcpuRegisterVcpuInfo {
        mfn,
        offset: (va & 0xfff) as u32,
        rsvd: 0,
    };
    let rc = hc::vcpu_op(id, &mut reg);
    if rc == 0 {
        REGISTERED.fetch_or(1 << id, Ordering::Release);
    }
    rc
}

/// Starts vCPU `id` (not vCPU 0, not yet initialised) at `entry(id)` on its own stack, with our
/// page tables, trap table and callbacks, event upcalls masked until it unmasks them. Its
/// `vcpu_info` (and, with FIFO events, its control block) should be set up first. Returns
/// `VCPUOP_initialise`'s or `VCPUOP_up`'s error.
pub fn start(id: u32, entry: extern "C" fn(u32) -> !) -> Result<(), i64> {
    if id == 0 || id as usize >= MAX_VCPUS {
        return Err(-22);
    }
    // SAFETY: the address one past the vCPU's stack; nothing is dereferenced.
    let top = unsafe { (&raw mut STACKS[id as usize - 1]) as u64 } + STACK_SIZE as u64;
    let mut c = VcpuGuestContext {
        flags: VGCF_in_kernel,
        kernel_ss: FLAT_KERNEL_SS.into(),
        kernel_sp: top,
        event_callback_eip: traps::upcall_entry(),
        failsafe_callback_eip: traps::failsafe_entry_address(),
        ..Default::default()
    };
    // The boot trap table, indexed by vector (as Linux's `xen_copy_trap_info`).
    for t in traps::base_table().iter().filter(|t| t.address != 0) {
        c.trap_ctxt[usize::from(t.vector)] = *t;
    }
    // Entered as if called: the ABI wants RSP + 8 16-byte aligned at a function's first
    // instruction; the argument in RDI.
    c.user_regs.rip = entry as *const () as u64;
    c.user_regs.rsp = top - 8;
    c.user_regs.rdi = id.into();
    c.user_regs.cs = FLAT_KERNEL_CS;
    c.user_regs.ss = FLAT_KERNEL_SS;
    c.user_regs.rflags = 0x202; // IF: events are governed by the upcall mask
    c.ctrlreg[3] = mm::l4_mfn() << 12; // xen_pfn_to_cr3
                                       // Masked until the vCPU unmasks them itself (`SCHEDOP_block` does).
    if let Some(v) = registered_vcpu_info(id) {
        // SAFETY: a byte of that vCPU's vcpu_info, which is down: only we write it.
        unsafe { core::ptr::write_volatile(&raw mut (*v).evtchn_upcall_mask, 1) };
    }
    // SAFETY: the context is valid for the call; the vCPU it starts runs `entry` on a stack
    // nobody else uses, with this kernel's tables.
    let rc = unsafe {
        hc::hypercall(
            __HYPERVISOR_vcpu_op,
            VCPUOP_initialise.into(),
            id.into(),
            hc::ptr(&raw const c),
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(rc);
    }
    match hc::vcpu_op_noarg(VcpuNoArg::Up, id) {
        0 => Ok(()),
        rc => Err(rc),
    }
}
