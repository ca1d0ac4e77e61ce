//! Domains and virtual CPUs: the per-guest state hypercalls read and change.
//!
//! One domain has one vCPU for now (the scheduler and SMP guests come later). Everything here is
//! plain data; the arch layer loads the parts the CPU must see (segment bases, CR0.TS, CR3) when it
//! runs the vCPU.

use hypercall_abi::arch_x86_64::TrapInfo;

use crate::mm::Mfn;

/// A domain id (`domid_t`).
#[doc(alias = "domid_t")]
pub type DomainId = u16;

/// Why a domain stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// The guest asked (`SCHEDOP_shutdown`) with this SHUTDOWN_* code.
    Requested(u32),
    /// The hypervisor crashed it for breaking the rules; the text says why.
    Crashed(&'static str),
}

/// Per-vCPU state, as far as the ABI defines it.
#[derive(Clone, Debug)]
pub struct Vcpu {
    /// The virtual trap table (`set_trap_table`), indexed by vector; `address == 0` is "none".
    pub trap_ctxt: [TrapInfo; 256],
    /// Guest kernel stack for traps from guest user mode (`stack_switch`).
    pub kernel_ss: u64,
    /// See `kernel_ss`.
    pub kernel_sp: u64,
    /// Event upcall entry (`CALLBACKTYPE_event`).
    pub event_callback: u64,
    /// Failsafe entry (`CALLBACKTYPE_failsafe`).
    pub failsafe_callback: u64,
    /// Guest-user `syscall` entry (`CALLBACKTYPE_syscall`).
    pub syscall_callback: u64,
    /// VGCF_* bits: failsafe/syscall disable events.
    pub callback_flags: u64,
    /// FS base (`set_segment_base(SEGBASE_FS)`).
    pub fs_base: u64,
    /// Kernel GS base (`SEGBASE_GS_KERNEL`).
    pub gs_base_kernel: u64,
    /// User GS base (`SEGBASE_GS_USER`).
    pub gs_base_user: u64,
    /// The guest's virtual CR0.TS (`fpu_taskswitch`).
    pub fpu_ts: bool,
    /// Single-shot timer deadline in system time ns (`set_timer_op`), if armed.
    pub timer_deadline: Option<u64>,
    /// Periodic timer period in ns, 0 = stopped (`VCPUOP_{set,stop}_periodic_timer`).
    pub periodic_period: u64,
    /// Blocked in `SCHEDOP_block` until an event is pending.
    pub blocked: bool,
    /// Running in guest kernel mode (always, until user mode arrives with the memory issue).
    pub kernel_mode: bool,
    /// System time of the next periodic tick (meaningful while `periodic_period` != 0).
    pub next_periodic: u64,
    /// Waiting in `SCHEDOP_poll` for one of these ports, until the deadline if any.
    pub poll: Option<Poll>,
    /// Virtual debug registers DR0..DR3.
    pub dr: [u64; 4],
    /// Virtual DR6: what the last #DB reported (`X86_DR6_DEFAULT` when clear).
    pub dr6: u64,
    /// Virtual DR7.
    pub dr7: u64,
    /// Guest address of its runstate area (`VCPUOP_register_runstate_memory_area`), 0 for none.
    pub runstate_area: u64,
}

/// DR6 with no event recorded (`X86_DR6_DEFAULT`).
pub const DR6_DEFAULT: u64 = 0xffff_0ff0;

/// A `SCHEDOP_poll` in progress.
#[derive(Clone, Debug, Default)]
pub struct Poll {
    /// Ports to wait for.
    pub ports: heapless::Vec<u32, 128>,
    /// System time at which to give up, if any.
    pub deadline: Option<u64>,
}

impl Default for Vcpu {
    fn default() -> Self {
        Vcpu {
            trap_ctxt: [TrapInfo::default(); 256],
            kernel_ss: 0,
            kernel_sp: 0,
            event_callback: 0,
            failsafe_callback: 0,
            syscall_callback: 0,
            callback_flags: 0,
            fs_base: 0,
            gs_base_kernel: 0,
            gs_base_user: 0,
            fpu_ts: false,
            timer_deadline: None,
            // Xen starts every PV vCPU with a 10 ms periodic VIRQ_TIMER (`vcpu_initialise`).
            periodic_period: 10_000_000,
            blocked: false,
            kernel_mode: true,
            next_periodic: 10_000_000,
            poll: None,
            dr: [0; 4],
            dr6: DR6_DEFAULT,
            dr7: 0x400,
            runstate_area: 0,
        }
    }
}

/// A domain.
#[derive(Clone, Debug)]
pub struct Domain {
    /// Its id (0 for dom0).
    pub id: DomainId,
    /// Privileged (dom0): may query machine-wide information.
    pub privileged: bool,
    /// Pages it holds (`XENMEM_current_reservation`).
    pub nr_pages: u64,
    /// Pages it may hold (`XENMEM_maximum_reservation`); dom0 is unlimited (`~0U`).
    pub max_pages: u64,
    /// The shared_info frame (hypervisor-owned, guest-writable).
    pub shared_info: Mfn,
    /// The current top-level page table.
    pub l4: Mfn,
    /// The code the domain reports at shutdown, if set early (`SCHEDOP_shutdown_code`).
    pub shutdown_code: Option<u32>,
    /// Set once the domain has stopped.
    pub shutdown: Option<Shutdown>,
    /// VM assists enabled (`vm_assist`), one bit per VMASST_TYPE_*.
    pub vm_assist: u64,
    /// Watchdog deadlines (`SCHEDOP_watchdog`), by id - 1; `None` is a free slot.
    pub watchdogs: [Option<u64>; 2],
    /// Its only vCPU.
    pub vcpu: Vcpu,
}

/// Facts about the machine that hypercalls report.
#[derive(Clone, Copy, Debug)]
pub struct MachineInfo {
    /// One past the highest RAM frame (`XENMEM_maximum_ram_page`).
    pub max_ram_page: u64,
}
