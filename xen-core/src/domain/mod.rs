//! Domains and virtual CPUs: the per-guest state hypercalls read and change.
//!
//! A domain holds up to [`MAX_VCPUS`] vCPUs; code that means "the vCPU running now" (the caller
//! of a hypercall, the one an exception came from) goes through [`Domain::vcpu`] /
//! [`Domain::vcpu_mut`], which follow [`Domain::cur_vcpu`]. Everything here is plain data; the
//! arch layer loads the parts the CPU must see (segment bases, CR0.TS, CR3) when it runs a vCPU.

pub mod build;
pub mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
pub mod pool;
pub mod set;

use hypercall_abi::arch_x86_64::TrapInfo;
use hypercall_abi::errno::Errno;

use crate::mm::Mfn;

/// Bytes of one packed trap-table entry: the handler's address (6), code selector (2), flags (1).
const TRAP_ENTRY_BYTES: usize = 9;

/// A vCPU's virtual trap table (Xen's `trap_ctxt`, 256 `trap_info`s), packed: every handler
/// address in it is canonical (`set_trap_table`, `CALLBACKOP_register` and `VCPUOP_initialise`
/// refuse others), so its low 48 bits keep it whole, and the vector is the entry's index. 2,304
/// bytes a vCPU instead of 4,096, in every slot's 8 vCPUs (issue 17's memory per domain).
#[derive(Clone, PartialEq, Eq)]
pub struct TrapTable([[u8; TRAP_ENTRY_BYTES]; 256]);

impl TrapTable {
    /// No handler for any vector.
    pub const fn new() -> TrapTable {
        TrapTable([[0; TRAP_ENTRY_BYTES]; 256])
    }

    /// Vector `vector`'s entry (its `vector` field is `vector`).
    #[inline]
    pub fn get(&self, vector: u8) -> TrapInfo {
        let e = &self.0[usize::from(vector)];
        let mut a = [0u8; 8];
        a[..6].copy_from_slice(&e[..6]);
        // Sign-extend bit 47: the canonical address back.
        let address = ((u64::from_le_bytes(a) << 16) as i64 >> 16) as u64;
        TrapInfo {
            vector,
            flags: e[8],
            cs: u16::from_le_bytes([e[6], e[7]]),
            _pad0: [0; 4],
            address,
        }
    }

    /// Sets vector `vector`'s entry to `ti` (its `vector` field aside). A non-canonical
    /// address, which the packed entry could not hold, is -EINVAL with the entry unchanged (as
    /// Xen refuses a guest's non-canonical handler).
    pub fn set(&mut self, vector: u8, ti: &TrapInfo) -> Result<(), Errno> {
        if ((ti.address << 16) as i64 >> 16) as u64 != ti.address {
            return Err(Errno::EINVAL);
        }
        let e = &mut self.0[usize::from(vector)];
        e[..6].copy_from_slice(&ti.address.to_le_bytes()[..6]);
        e[6..8].copy_from_slice(&ti.cs.to_le_bytes());
        e[8] = ti.flags;
        Ok(())
    }

    /// Changes vector `vector`'s entry with `f` (as [`TrapTable::set`]).
    pub fn update(&mut self, vector: u8, f: impl FnOnce(&mut TrapInfo)) -> Result<(), Errno> {
        let mut ti = self.get(vector);
        f(&mut ti);
        self.set(vector, &ti)
    }

    /// Every entry, by vector.
    pub fn iter(&self) -> impl Iterator<Item = TrapInfo> + '_ {
        (0..=255u8).map(|v| self.get(v))
    }

    /// No handler any more (a null `set_trap_table`).
    pub fn clear(&mut self) {
        *self = TrapTable::new();
    }
}

impl Default for TrapTable {
    fn default() -> Self {
        TrapTable::new()
    }
}

impl core::fmt::Debug for TrapTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .filter(|t| t.address != 0)
                    .map(|t| (t.vector, (t.address, t.cs, t.flags))),
            )
            .finish()
    }
}

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
    /// Its kernel top-level page table (Xen's `guest_table`, CR3 in guest kernel mode): holds a
    /// general and an L4 type reference while set; `Mfn(0)` until the domain's page tables are
    /// validated (vCPU 0) or `VCPUOP_initialise` gives it one.
    pub l4: Mfn,
    /// Its guest registers while it does not run (Xen's `user_regs`); the running vCPU's are in
    /// the CPU (or the arch layer's entry frame).
    pub regs: crate::regs::Regs,
    /// The virtual trap table (`set_trap_table`), indexed by vector; `address == 0` is "none".
    pub trap_ctxt: TrapTable,
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
    /// Entry for `syscall` from 32-bit code (`CALLBACKTYPE_syscall32`, Xen's
    /// `syscall32_callback_eip`); 0 for none.
    pub syscall32_callback: u64,
    /// VGCF_* bits: failsafe/syscall disable events.
    pub callback_flags: u64,
    /// FS base (`set_segment_base(SEGBASE_FS)`).
    pub fs_base: u64,
    /// The guest kernel's GS base (`SEGBASE_GS_KERNEL`), whatever the mode: as in Xen, the two GS
    /// fields keep their meaning and a mode toggle swaps which one the CPU's GS base holds
    /// ([`Vcpu::gs_bases`]).
    pub gs_base_kernel: u64,
    /// Guest user's GS base (`SEGBASE_GS_USER`).
    pub gs_base_user: u64,
    /// Counts the guest's explicit base writes (`set_segment_base`, an emulated `wrmsr`). The
    /// guest can also change the CPU's FS/GS base behind the hypervisor's back by loading a
    /// selector (`mov %eax,%gs` zeroes it), so a write of the value last loaded must still reach
    /// the CPU: the arch layer rewrites every base when this count moves.
    pub base_writes: u64,
    /// The guest's virtual CR0.TS (`fpu_taskswitch`).
    pub fpu_ts: bool,
    /// The CR4 bits the guest controls in its view of CR4 (`PV_CR4_GUEST_MASK` within its CPUID
    /// policy: TSD, DE, FSGSBASE where the CPU has it, see `emulate::pv_cr4_writable`), as it last
    /// wrote them. Of these only FSGSBASE is loaded into the CPU while the guest runs.
    pub cr4: u64,
    /// Single-shot timer deadline in system time ns (`set_timer_op`), if armed.
    pub timer_deadline: Option<u64>,
    /// Periodic timer period in ns, 0 = stopped (`VCPUOP_{set,stop}_periodic_timer`).
    pub periodic_period: u64,
    /// Blocked in `SCHEDOP_block` until an event is pending.
    pub blocked: bool,
    /// Gave up the rest of its time slice (`SCHEDOP_yield`).
    pub yielded: bool,
    /// Running in guest kernel mode (Xen's `TF_kernel_mode`). Both guest modes run in ring 3;
    /// this flag is what tells them apart. It changes only through
    /// [`Domain::toggle_guest_mode`]: the `iret` hypercall enters user mode, and any bounce
    /// (exception, event, `syscall` from user mode) leaves it.
    pub kernel_mode: bool,
    /// System time of the next periodic tick (meaningful while `periodic_period` != 0).
    pub next_periodic: u64,
    /// Waiting in `SCHEDOP_poll` for one of these ports, until the deadline if any.
    pub poll: Option<Poll>,
    /// Virtual debug registers DR0..DR3.
    pub dr: [u64; 4],
    /// Virtual DR6: what the last #DB reported (`X86_DR6_DEFAULT` when clear).
    pub dr6: u64,
    /// Virtual DR7, without the enable bits of I/O breakpoints.
    pub dr7: u64,
    /// The enable bits of I/O breakpoints (R/W = 10b, allowed with CR4.DE; Xen's
    /// `arch.pv.dr7_emul`): part of the DR7 the guest reads, never loaded into the CPU.
    pub dr7_emul: u64,
    /// vMCE's MCG_STATUS as the guest last wrote it (`arch.vmce.mcg_status`).
    pub mcg_status: u64,
    /// vMCE's MCi_CTL2 of the guest's two banks (Intel CPUs only).
    pub mci_ctl2: [u64; 2],
    /// TSC_AUX as the guest wrote it (what `rdtscp` returns in ECX while it runs).
    pub tsc_aux: u64,
    /// Guest address of its runstate area (`VCPUOP_register_runstate_memory_area`), 0 for none.
    pub runstate_area: u64,
    /// Where the guest moved this vCPU's `vcpu_info` (`VCPUOP_register_vcpu_info`): the frame,
    /// which holds a general and a writable type reference while registered, and the offset in
    /// it. `None`: `vcpu_info[0]` of shared_info.
    pub vcpu_info: Option<(Mfn, u32)>,
    /// Frames of the guest's own GDT (`set_gdt`), each holding a segment-descriptor type
    /// reference while installed.
    pub gdt_frames: heapless::Vec<Mfn, 16>,
    /// Number of entries of that GDT.
    pub gdt_ents: u32,
    /// The user-mode top-level table (`MMUEXT_NEW_USER_BASEPTR`, Xen's `guest_table_user`),
    /// loaded into CR3 while the guest runs in user mode. Holds a general and an L4 type
    /// reference in the frame table while set. Always `Some` in user mode: the only way into
    /// user mode (`iret`) refuses to go there without one, and user mode cannot make hypercalls
    /// that would clear it.
    pub user_l4: Option<Mfn>,
    /// The LDT the guest installed (`MMUEXT_SET_LDT`): linear base and number of entries.
    pub ldt_base: u64,
    /// See `ldt_base`; 0 means no LDT.
    pub ldt_ents: u32,
    /// TLB and CR3 work this vCPU is owed before it runs again (see [`FlushRequest`]): what its
    /// last hypercall's outcome asked for, and the CR3 load of a guest mode toggle.
    pub flush: FlushRequest,
    /// Event counters, read by the teaching lab ([`Domain::perf`]).
    pub perf: PerfCounters,
    /// Initialised: vCPU 0 by the domain builder, the others by `VCPUOP_initialise` (Xen's
    /// `is_initialised`). Only an initialised vCPU can be brought up.
    pub initialised: bool,
    /// Up (online): not `_VPF_down`. Only an up vCPU runs; the domain shuts down when the
    /// last one goes down (`VCPUOP_down`).
    pub up: bool,
    /// An NMI is waiting for delivery (`VCPUOP_send_nmi`, Xen's `nmi_pending`).
    pub nmi_pending: bool,
    /// An NMI is being handled: no other is delivered until the guest's `iret` (Xen's
    /// `async_exception_mask` bit for NMIs).
    pub nmi_masked: bool,
    /// Its runstate (`vcpu_runstate_info`): the state, since when, and the time spent in each.
    pub runstate: Runstate,
    /// The virtual I/O privilege level, 0..=3 (`PHYSDEVOP_set_iopl`, Xen's `arch.pv.iopl`):
    /// port I/O from the guest kernel is emulated when it is at least 1, from guest user mode
    /// when it is 3 (`emulate::iopl_ok`). The real RFLAGS.IOPL stays 0, so every port access
    /// faults into the hypervisor.
    pub iopl: u8,
    /// The L4 slot the last `mmu_update` found safe to copy through the MMU, kept for the next
    /// call (see [`crate::mm::SlotMemo`]).
    pub mmu_slot: crate::mm::SlotMemo,
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

/// Most single-address invalidations a [`FlushRequest`] records before it falls back to a full
/// flush.
pub const MAX_INVLPG: usize = 8;

/// TLB and CR3 maintenance a hypercall asks for. Flushing is an arch effect: the portable handlers
/// only record what Xen would do at that point, and the arch layer performs it after the
/// hypercall (or the whole multicall) returns and before the guest runs again, then clears the
/// request ([`FlushRequest::take`]). That is as safe as Xen's immediate flush because the
/// hypervisor never reaches guest memory through the TLB while a request is pending: guest copies
/// go through the MMU only while nothing is owed ([`FlushRequest::owes_tlb_work`]), and walk the
/// tables in software otherwise (`crate::guest_access`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlushRequest {
    /// Flush the whole TLB of this CPU, global entries included (Xen sets `_PAGE_GLOBAL` on guest
    /// user mappings, `adjust_guest_l1e`).
    pub local_flush: bool,
    /// Invalidate these linear addresses (`invlpg`); meaningless when `local_flush` is set.
    pub invlpg: heapless::Vec<u64, MAX_INVLPG>,
    /// Reload CR3 on the way out, even if the table is the one loaded (a CR3 write also flushes
    /// the non-global TLB entries): a guest mode toggle asks for the other mode's table. The arch
    /// layer loads the vCPU's current table ([`Domain::current_l4`], which holds a type
    /// reference), not necessarily this one. `MMUEXT_NEW_BASEPTR` does not come here: it switches
    /// CR3 at once (`Machine::write_ptbase`).
    pub new_cr3: Option<Mfn>,
    /// Write back and invalidate the caches (`wbinvd`, `MMUEXT_FLUSH_CACHE[_GLOBAL]`).
    pub cache_flush: bool,
}

impl FlushRequest {
    /// Asks for a full TLB flush (counted once however often it is asked before being done).
    pub fn flush_all(&mut self, perf: &mut PerfCounters) {
        if !self.local_flush {
            self.local_flush = true;
            self.invlpg.clear();
            perf.tlb_flushes += 1;
        }
    }

    /// Asks for one linear address to be invalidated; too many become a full flush.
    pub fn invlpg(&mut self, va: u64, perf: &mut PerfCounters) {
        if self.local_flush || self.invlpg.contains(&va) {
            return;
        }
        if self.invlpg.push(va).is_err() {
            self.flush_all(perf);
        } else {
            perf.invlpgs += 1;
        }
    }

    /// Asks for CR3 to be (re)loaded with `l4`.
    pub fn load_cr3(&mut self, l4: Mfn) {
        self.new_cr3 = Some(l4);
    }

    /// Whether nothing is asked.
    #[inline]
    pub fn is_empty(&self) -> bool {
        // Field by field (a comparison with `default()` would build one and compare the
        // vectors): asked on every hypercall's way out.
        let FlushRequest {
            local_flush,
            invlpg,
            new_cr3,
            cache_flush,
        } = self;
        !*local_flush && invlpg.is_empty() && new_cr3.is_none() && !*cache_flush
    }

    /// Whether TLB or CR3 work is owed: while it is, the CPU's TLB may hold translations the
    /// guest's tables no longer allow (a frame retyped or freed, a grant unmapped: every such
    /// change asks for a flush before the guest runs again), so the hypervisor must not reach
    /// guest memory through the MMU ([`crate::guest_access::MmuGuest`]).
    #[inline]
    pub fn owes_tlb_work(&self) -> bool {
        self.local_flush || !self.invlpg.is_empty() || self.new_cr3.is_some()
    }

    /// Adds what `other` asks (already counted where it was asked).
    pub fn merge(&mut self, other: &FlushRequest) {
        if other.local_flush {
            self.local_flush = true;
        }
        if self.local_flush {
            self.invlpg.clear();
        } else {
            for &va in &other.invlpg {
                if !self.invlpg.contains(&va) && self.invlpg.push(va).is_err() {
                    self.local_flush = true;
                    self.invlpg.clear();
                    break;
                }
            }
        }
        if other.new_cr3.is_some() {
            self.new_cr3 = other.new_cr3;
        }
        self.cache_flush |= other.cache_flush;
    }

    /// Hands the request to the arch layer and leaves an empty one.
    pub fn take(&mut self) -> FlushRequest {
        core::mem::take(self)
    }

    /// Empties the request in place (every field: `heapless::Vec`'s default writes only its
    /// length, so this is a few stores).
    #[inline]
    pub fn clear(&mut self) {
        *self = FlushRequest::default();
    }
}

/// Counters of memory-management work, per vCPU (a domain's figures are its vCPUs' sum,
/// [`Domain::perf`]). Plain numbers for the teaching lab: they show what batching saves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerfCounters {
    /// Hypercalls dispatched, multicall entries included (Xen's `calls_to_*` perf counters).
    pub hypercalls: u64,
    /// Page-table entries validated: present entries checked while promoting a table or
    /// written by `mmu_update`/`update_va_mapping` (Xen counts `num_page_updates`).
    pub ptes_validated: u64,
    /// `mmu_update` requests completed (`num_page_updates`).
    pub page_updates: u64,
    /// `mmu_update` requests aimed at ordinary writable pages, done as plain writes
    /// (`writable_mmu_updates`).
    pub writable_mmu_updates: u64,
    /// Full TLB flushes asked for (coalesced: at most one per hypercall).
    pub tlb_flushes: u64,
    /// Single-address invalidations asked for.
    pub invlpgs: u64,
    /// Reference-count operations on the frame table: general (`get_page`/`put_page`) and type
    /// (`get_page_type`/`put_page_type`) references taken or dropped.
    pub ref_ops: u64,
    /// Exceptions the guest raised (emulated or bounced) and interrupts taken while it ran.
    pub traps: u64,
    /// Hypercalls that went straight back to the guest (the fast path: `hypercall::table::Exit`).
    pub fast_exits: u64,
    /// Times the scheduler switched the CPU to this vCPU (context switches into it).
    pub dispatches: u64,
}

impl PerfCounters {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &PerfCounters) {
        self.hypercalls += other.hypercalls;
        self.ptes_validated += other.ptes_validated;
        self.page_updates += other.page_updates;
        self.writable_mmu_updates += other.writable_mmu_updates;
        self.tlb_flushes += other.tlb_flushes;
        self.invlpgs += other.invlpgs;
        self.ref_ops += other.ref_ops;
        self.traps += other.traps;
        self.fast_exits += other.fast_exits;
        self.dispatches += other.dispatches;
    }

    /// The counters with their names, in the order `XEN_SYSCTL_perfc_op` reports them.
    pub fn named(&self) -> [(&'static str, u64); 10] {
        [
            ("hypercalls", self.hypercalls),
            ("traps", self.traps),
            ("ptes_validated", self.ptes_validated),
            ("page_updates", self.page_updates),
            ("writable_mmu_updates", self.writable_mmu_updates),
            ("tlb_flushes", self.tlb_flushes),
            ("invlpgs", self.invlpgs),
            ("ref_ops", self.ref_ops),
            ("fast_exits", self.fast_exits),
            ("dispatches", self.dispatches),
        ]
    }
}

impl Default for Vcpu {
    fn default() -> Self {
        Vcpu {
            l4: Mfn(0),
            regs: crate::regs::Regs::default(),
            trap_ctxt: TrapTable::new(),
            kernel_ss: 0,
            kernel_sp: 0,
            event_callback: 0,
            failsafe_callback: 0,
            syscall_callback: 0,
            syscall32_callback: 0,
            callback_flags: 0,
            fs_base: 0,
            gs_base_kernel: 0,
            gs_base_user: 0,
            base_writes: 0,
            fpu_ts: false,
            cr4: 0,
            timer_deadline: None,
            // Xen starts every PV vCPU with a 10 ms periodic VIRQ_TIMER (`vcpu_initialise`).
            periodic_period: 10_000_000,
            blocked: false,
            yielded: false,
            kernel_mode: true,
            next_periodic: 10_000_000,
            poll: None,
            dr: [0; 4],
            dr6: DR6_DEFAULT,
            dr7: 0x400,
            dr7_emul: 0,
            mcg_status: 0,
            mci_ctl2: [0; 2],
            tsc_aux: 0,
            runstate_area: 0,
            vcpu_info: None,
            gdt_frames: heapless::Vec::new(),
            gdt_ents: 0,
            user_l4: None,
            ldt_base: 0,
            ldt_ents: 0,
            flush: FlushRequest::default(),
            perf: PerfCounters::default(),
            iopl: 0,
            mmu_slot: crate::mm::SlotMemo::NONE,
            initialised: false,
            up: false,
            nmi_pending: false,
            nmi_masked: false,
            runstate: Runstate::default(),
        }
    }
}

/// A vCPU's runstate accounting (`struct vcpu_runstate_info`, `public/vcpu.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runstate {
    /// RUNSTATE_* it is in.
    pub state: i32,
    /// System time it entered that state.
    pub entry: u64,
    /// Time spent in each RUNSTATE_* (running, runnable, blocked, offline), not counting the
    /// current stretch.
    pub time: [u64; 4],
}

impl Default for Runstate {
    fn default() -> Self {
        Runstate {
            state: hypercall_abi::vcpu::RUNSTATE_offline,
            entry: 0,
            time: [0; 4],
        }
    }
}

impl Runstate {
    /// Moves to `state` at `now` (nothing if it is in it already), adding the time spent in the
    /// old one.
    pub fn set(&mut self, state: i32, now: u64) {
        if state == self.state {
            return;
        }
        if let Some(t) = usize::try_from(self.state)
            .ok()
            .and_then(|i| self.time.get_mut(i))
        {
            *t += now.saturating_sub(self.entry);
        }
        self.state = state;
        self.entry = now;
    }

    /// The record as the guest reads it at `now` (Xen's `vcpu_runstate_get`: the current
    /// stretch counted in).
    pub fn info(&self, now: u64) -> hypercall_abi::vcpu::VcpuRunstateInfo {
        let mut time = self.time;
        if let Some(t) = usize::try_from(self.state)
            .ok()
            .and_then(|i| time.get_mut(i))
        {
            *t += now.saturating_sub(self.entry);
        }
        hypercall_abi::vcpu::VcpuRunstateInfo {
            state: self.state,
            state_entry_time: self.entry,
            time,
            ..Default::default()
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
    /// The code the domain reports at shutdown, if set early (`SCHEDOP_shutdown_code`).
    pub shutdown_code: Option<u32>,
    /// Set once the domain has stopped.
    pub shutdown: Option<Shutdown>,
    /// VM assists enabled (`vm_assist`), one bit per VMASST_TYPE_*.
    pub vm_assist: u64,
    /// Watchdog deadlines (`SCHEDOP_watchdog`), by id - 1; `None` is a free slot.
    pub watchdogs: [Option<u64>; 2],
    /// Its vCPUs, by id: `vcpus.len()` is Xen's `d->max_vcpus` (fixed when the domain is built,
    /// at least 1). Reach the running one through [`Domain::vcpu`].
    pub vcpus: heapless::Vec<Vcpu, MAX_VCPUS>,
    /// The id of the vCPU running now (or that ran last): the one hypercalls and exceptions of
    /// this domain act on. Always `< vcpus.len()`.
    pub cur_vcpu: usize,
    /// Its PCI CONFIG_ADDRESS (port 0xCF8), written and read as a dword through port I/O
    /// emulation and loaded into the real register for each configuration access the
    /// hypervisor performs for it (Xen's `d->arch.pci_cf8`, `emulate::port_io`).
    pub pci_cf8: u32,
    /// Frames the FIFO event-channel ABI uses (control blocks from `EVTCHNOP_init_control`,
    /// event array pages from `EVTCHNOP_expand_array`): each holds a general and a writable
    /// type reference until the domain goes back to 2-level (`EVTCHNOP_reset`) or dies.
    pub evtchn_frames: heapless::Vec<Mfn, EVTCHN_FRAMES>,
    /// Its handle (`xen_domain_handle_t`, reported by `getdomaininfo`): zero, or for a
    /// boot-time domU its `hypercall_abi::domctl::BootHandle`, which a reboot keeps.
    pub handle: hypercall_abi::version::XenDomainHandle,
}

/// Most vCPUs of one domain. Small on purpose: the hypervisor runs on one physical CPU, so more
/// vCPUs only time-share it; each [`Vcpu`] is about 5 KiB (its 256-entry virtual trap table) and
/// every domain slot reserves room for all of them; and 8 stays below `XEN_LEGACY_MAX_VCPUS`
/// (32), so every vCPU has its `vcpu_info` in shared_info without `VCPUOP_register_vcpu_info`.
pub const MAX_VCPUS: usize = 8;

/// Where each vCPU's `vcpu_info` lives once the guest moved it out of shared_info
/// (`VCPUOP_register_vcpu_info`), by vCPU id; `None`: in its `vcpu_info[]` slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfoMap(pub [Option<crate::mm::Maddr>; MAX_VCPUS]);

/// Most frames the FIFO ABI can hold for a domain: a control block per legacy vCPU slot and
/// every event array page (`EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES`).
pub const EVTCHN_FRAMES: usize = hypercall_abi::arch_x86_64::XEN_LEGACY_MAX_VCPUS
    + (hypercall_abi::event_channel::EVTCHN_FIFO_NR_CHANNELS / 1024) as usize;

impl Vcpu {
    /// The machine address of the `vcpu_info` the guest registered, if it moved it.
    #[inline]
    pub fn vcpu_info_maddr(&self) -> Option<crate::mm::Maddr> {
        self.vcpu_info
            .map(|(mfn, off)| crate::mm::Maddr(mfn.maddr().0 + u64::from(off)))
    }

    /// The GS bases as the CPU must hold them now: `(GS_BASE, SHADOW_GS_BASE)`. In kernel mode
    /// the kernel's base is live and the user's waits in the shadow register (where the guest
    /// kernel's own view of `swapgs` would put it); in user mode the other way round. Xen keeps
    /// the same arrangement by executing `swapgs` on every mode toggle (`toggle_guest_mode`).
    pub fn gs_bases(&self) -> (u64, u64) {
        if self.kernel_mode {
            (self.gs_base_kernel, self.gs_base_user)
        } else {
            (self.gs_base_user, self.gs_base_kernel)
        }
    }
}

/// Why [`Domain::toggle_guest_mode`] refused: Xen's message when `iret` asks for user mode
/// before the guest installed user page tables (`do_iret`).
pub const NO_USER_PAGE_TABLES: &str = "guest switching to user mode with no user page tables";

impl Domain {
    /// A new domain with one vCPU in its initial state, not shut down, no VM assists or
    /// watchdogs, running on `l4` (0 until its page tables are validated).
    pub fn new(
        id: DomainId,
        privileged: bool,
        nr_pages: u64,
        max_pages: u64,
        shared_info: Mfn,
        l4: Mfn,
    ) -> Domain {
        Domain {
            id,
            privileged,
            nr_pages,
            max_pages,
            shared_info,
            shutdown_code: None,
            shutdown: None,
            vm_assist: 0,
            watchdogs: [None; 2],
            vcpus: one_vcpu(Vcpu {
                l4,
                initialised: true,
                up: true,
                runstate: Runstate {
                    state: hypercall_abi::vcpu::RUNSTATE_running,
                    ..Runstate::default()
                },
                ..Vcpu::default()
            }),
            cur_vcpu: 0,
            pci_cf8: 0,
            evtchn_frames: heapless::Vec::new(),
            handle: [0; 16],
        }
    }

    /// The vCPU running now (the caller of a hypercall, the one an exception came from).
    #[inline]
    pub fn vcpu(&self) -> &Vcpu {
        &self.vcpus[self.cur_vcpu]
    }

    /// The vCPU running now, mutably.
    #[inline]
    pub fn vcpu_mut(&mut self) -> &mut Vcpu {
        &mut self.vcpus[self.cur_vcpu]
    }

    /// The id of the vCPU running now (`current->vcpu_id`).
    #[inline]
    pub fn vcpu_id(&self) -> u32 {
        self.cur_vcpu as u32
    }

    /// Gives the domain `n` vCPUs in all (Xen's `max_vcpus`, at most [`MAX_VCPUS`]; at least
    /// the one it has): the new ones are neither initialised nor up, as Xen's `vcpu_create`
    /// leaves them until `VCPUOP_initialise` and `VCPUOP_up`.
    pub fn set_max_vcpus(&mut self, n: usize) {
        while self.vcpus.len() < n.min(MAX_VCPUS) {
            // Cannot fail: below MAX_VCPUS.
            let _ = self.vcpus.push(Vcpu::default());
        }
    }

    /// vCPU `id`, if the domain has it (Xen's `domain_vcpu`).
    pub fn vcpu_by_id(&self, id: u32) -> Option<&Vcpu> {
        self.vcpus.get(usize::try_from(id).ok()?)
    }

    /// vCPU `id`, mutably.
    pub fn vcpu_by_id_mut(&mut self, id: u32) -> Option<&mut Vcpu> {
        self.vcpus.get_mut(usize::try_from(id).ok()?)
    }

    /// How many vCPUs are up (`nr_online_vcpus`).
    pub fn nr_online(&self) -> u32 {
        self.vcpus.iter().filter(|v| v.up).count() as u32
    }

    /// Where each vCPU's `vcpu_info` is, if the guest moved it out of shared_info.
    pub fn vcpu_info_map(&self) -> VcpuInfoMap {
        let mut map = VcpuInfoMap::default();
        for (slot, v) in map.0.iter_mut().zip(self.vcpus.iter()) {
            *slot = v.vcpu_info_maddr();
        }
        map
    }

    /// The top-level table the vCPU runs on in its current mode (Xen's `update_cr3`: the kernel's
    /// `guest_table` or the user's `guest_table_user`). Guest user mode never runs on the kernel's
    /// table, so it never sees the kernel's mappings.
    pub fn current_l4(&self) -> Mfn {
        match (self.vcpu().kernel_mode, self.vcpu().user_l4) {
            (false, Some(user)) => user,
            // User mode without a user table cannot happen (see `Vcpu::user_l4`).
            _ => self.vcpu().l4,
        }
    }

    /// `toggle_guest_mode`: flips between guest kernel and guest user mode. The GS bases swap
    /// roles ([`Vcpu::gs_bases`], Xen's `swapgs`) and CR3 is reloaded with the other mode's
    /// table through the vCPU's [`FlushRequest`] (a CR3 write without flushing global entries:
    /// user mappings are global, the kernel's are not, as Xen arranges with `adjust_guest_l1e`).
    /// Entering user mode without a user table is refused (the caller crashes the domain).
    pub fn toggle_guest_mode(&mut self) -> Result<(), &'static str> {
        if self.vcpu().kernel_mode && self.vcpu().user_l4.is_none() {
            return Err(NO_USER_PAGE_TABLES);
        }
        self.vcpu_mut().kernel_mode = !self.vcpu().kernel_mode;
        let l4 = self.current_l4();
        self.vcpu_mut().flush.load_cr3(l4);
        Ok(())
    }

    /// What the frame table needs to know about this domain.
    pub fn info(&self) -> DomainInfo {
        DomainInfo {
            id: self.id,
            privileged: self.privileged,
        }
    }

    /// The domain's memory-management counters: the sum of its vCPUs'.
    pub fn perf(&self) -> PerfCounters {
        let mut sum = PerfCounters::default();
        for v in &self.vcpus {
            sum.add(&v.perf);
        }
        sum
    }
}

/// A vCPU list holding `v` alone (vCPU 0).
pub fn one_vcpu(v: Vcpu) -> heapless::Vec<Vcpu, MAX_VCPUS> {
    let mut vcpus = heapless::Vec::new();
    // Cannot fail: MAX_VCPUS >= 1.
    let _ = vcpus.push(v);
    vcpus
}

/// A domain as the frame table knows it: its id and whether it holds I/O privileges (dom0 has all
/// of machine I/O memory in its `iomem_caps`; other domains have none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    /// The domain id.
    pub id: DomainId,
    /// Privileged: may map I/O memory, use cache attributes, name other domains' pages.
    pub privileged: bool,
}

/// Facts about the machine that hypercalls report.
#[derive(Clone, Copy, Debug)]
pub struct MachineInfo {
    /// One past the highest RAM frame (`XENMEM_maximum_ram_page`).
    pub max_ram_page: u64,
    /// The CR4 bits a PV guest may set in its view on this CPU (`emulate::pv_cr4_writable` of
    /// the CPU's CPUID, worked out once at boot): `VCPUOP_initialise` keeps only these of a
    /// context's `ctrlreg[4]`, as the emulated `mov %reg,%cr4` does.
    pub pv_cr4_writable: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Domain {
        Domain {
            id: 1,
            privileged: false,
            nr_pages: 16,
            max_pages: 16,
            shared_info: Mfn(5),
            shutdown_code: None,
            shutdown: None,
            vm_assist: 0,
            watchdogs: [None; 2],
            vcpus: one_vcpu(Vcpu {
                l4: Mfn(0x10),
                gs_base_kernel: 0xffff_8880_0000_0000,
                gs_base_user: 0x7f00_0000_1000,
                ..Vcpu::default()
            }),
            cur_vcpu: 0,
            pci_cf8: 0,
            evtchn_frames: heapless::Vec::new(),
            handle: [0; 16],
        }
    }

    #[test]
    fn entering_user_mode_needs_user_page_tables() {
        let mut d = domain();
        assert_eq!(d.toggle_guest_mode(), Err(NO_USER_PAGE_TABLES));
        assert!(d.vcpu().kernel_mode, "refused: still in kernel mode");
        assert!(d.vcpu().flush.is_empty(), "refused: no CR3 load");
        assert_eq!(d.current_l4(), Mfn(0x10));
    }

    #[test]
    fn a_toggle_swaps_page_tables_and_gs_bases_both_ways() {
        let mut d = domain();
        d.vcpu_mut().user_l4 = Some(Mfn(0x20));
        let (kernel_gs, user_gs) = (d.vcpu().gs_base_kernel, d.vcpu().gs_base_user);
        assert_eq!(d.vcpu().gs_bases(), (kernel_gs, user_gs));

        d.toggle_guest_mode().unwrap();
        assert!(!d.vcpu().kernel_mode);
        assert_eq!(d.current_l4(), Mfn(0x20), "user mode runs on the user L4");
        assert_eq!(d.vcpu_mut().flush.take().new_cr3, Some(Mfn(0x20)));
        assert_eq!(d.vcpu().gs_bases(), (user_gs, kernel_gs), "swapgs");
        // The fields keep their meaning (Xen's `gs_base_kernel`/`gs_base_user`).
        assert_eq!(
            (d.vcpu().gs_base_kernel, d.vcpu().gs_base_user),
            (kernel_gs, user_gs)
        );

        d.toggle_guest_mode().unwrap();
        assert!(d.vcpu().kernel_mode);
        assert_eq!(d.current_l4(), Mfn(0x10));
        assert_eq!(d.vcpu_mut().flush.take().new_cr3, Some(Mfn(0x10)));
        assert_eq!(d.vcpu().gs_bases(), (kernel_gs, user_gs));
    }

    #[test]
    fn only_the_last_toggle_of_an_entry_reaches_cr3() {
        // An `iret` to user mode followed by an upcall bounce in the same exit: the flush request
        // ends with the kernel table, once.
        let mut d = domain();
        d.vcpu_mut().user_l4 = Some(Mfn(0x20));
        d.toggle_guest_mode().unwrap();
        d.toggle_guest_mode().unwrap();
        let req = d.vcpu_mut().flush.take();
        assert_eq!(req.new_cr3, Some(Mfn(0x10)));
        assert!(
            !req.local_flush,
            "a mode switch keeps global (user) TLB entries"
        );
    }

    #[test]
    fn a_packed_trap_table_keeps_every_canonical_handler_cs_and_flags_whole() {
        let mut t = TrapTable::new();
        assert!(t.iter().all(|e| e
            == TrapInfo {
                vector: e.vector,
                ..TrapInfo::default()
            }));
        let cases = [
            (0u8, 0x1000u64, 0xe033u16, 0u8),
            (14, 0x7fff_ffff_f000, 0xe033, 4),
            (0x80, 0xffff_8000_0000_0000, 0xe02b, 3),
            (255, 0xffff_ffff_ffff_fff0, 0xffff, 0xff),
            (2, 0xffff_8000_dead_beef, 0x10, 1 | 4),
        ];
        for (v, address, cs, flags) in cases {
            let ti = TrapInfo {
                vector: 99, // the table's index is the vector
                flags,
                cs,
                address,
                ..Default::default()
            };
            t.set(v, &ti).unwrap();
            let got = t.get(v);
            assert_eq!(
                (got.vector, got.address, got.cs, got.flags),
                (v, address, cs, flags),
                "vector {v}"
            );
        }
        // Neighbours untouched; an update changes one field; a clear empties it all.
        assert_eq!(
            t.get(13),
            TrapInfo {
                vector: 13,
                ..Default::default()
            }
        );
        t.update(14, |e| e.address = 0).unwrap();
        assert_eq!((t.get(14).address, t.get(14).flags), (0, 4));
        // A non-canonical handler cannot be packed: -EINVAL, the entry as it was.
        let was = t.get(2);
        assert_eq!(
            t.update(2, |e| e.address = 0x0000_8000_0000_0000),
            Err(Errno::EINVAL)
        );
        assert_eq!(t.get(2), was);
        assert_eq!(t.iter().filter(|e| e.address != 0).count(), 4);
        t.clear();
        assert!(t
            .iter()
            .all(|e| e.address == 0 && e.cs == 0 && e.flags == 0));
        assert_eq!(core::mem::size_of::<TrapTable>(), 256 * 9);
    }
}
