//! Conformance cases for a domain's second vCPU: `vcpu_op`'s argument checks on a vCPU that is
//! neither initialised nor up (`VCPUOP_initialise` against hostile contexts, as Xen's
//! `arch_set_info_guest` checks them), per-vCPU rules of the other sub-ops, and event channels
//! bound to it. The harness gives dom0 two vCPUs on both hypervisors (Xen's `dom0_max_vcpus=2`,
//! our `vcpus=2`); with one vCPU the group prints a single case saying so.
//!
//! vCPU 1 is never brought up here: the last case initialises it offline.

use hypercall_abi::arch_x86_64::{
    VGCF_in_kernel, VcpuGuestContext, FLAT_KERNEL_CS, FLAT_KERNEL_SS,
};
use hypercall_abi::event_channel::{EvtchnBindIpi, EvtchnBindVirq, EvtchnClose};
use hypercall_abi::vcpu::{
    VCPUOP_initialise, VCPUOP_send_nmi, VCPUOP_set_singleshot_timer, VcpuNoArg,
    VcpuRegisterVcpuInfo, VcpuRunstateInfo,
};
use hypercall_abi::xen::{__HYPERVISOR_vcpu_op, VIRQ_TIMER};

use super::{scratch_va, values, Suite, UNMAPPED};
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::mm;

/// The vCPU the cases look at.
const SECOND: u32 = 1;

/// A context that passes every check: kernel mode, offline, the running L4, no GDT frames.
fn good_context() -> VcpuGuestContext {
    let mut c = VcpuGuestContext {
        flags: VGCF_in_kernel,
        kernel_ss: FLAT_KERNEL_SS.into(),
        kernel_sp: scratch_va(7) + 4096,
        ..Default::default()
    };
    c.user_regs.rip = good_context as *const () as u64;
    c.user_regs.rsp = scratch_va(7) + 4096;
    c.user_regs.cs = FLAT_KERNEL_CS;
    c.user_regs.ss = FLAT_KERNEL_SS;
    c.user_regs.rflags = 0x202;
    c.ctrlreg[3] = mm::l4_mfn() << 12;
    c
}

/// `VCPUOP_initialise` of `vcpu` with `c`.
fn initialise(vcpu: u32, c: &mut VcpuGuestContext) -> i64 {
    // SAFETY: a valid context for the length of the call; the cases that succeed leave the vCPU
    // offline, so it never runs with it.
    unsafe {
        hc::hypercall(
            __HYPERVISOR_vcpu_op,
            VCPUOP_initialise.into(),
            vcpu.into(),
            gp(c as *mut VcpuGuestContext),
            0,
            0,
        )
    }
}

/// A good context changed by `f`, given to vCPU 1.
fn initialise_with(f: impl FnOnce(&mut VcpuGuestContext)) -> i64 {
    let mut c = good_context();
    f(&mut c);
    initialise(SECOND, &mut c)
}

pub(super) fn cases(s: &mut Suite) {
    let is_up = hc::vcpu_op_noarg(VcpuNoArg::IsUp, SECOND);
    if is_up < 0 {
        s.case("vcpu_smp.one_vcpu", format_args!("{is_up}"));
        return;
    }
    s.run("vcpu_smp.second_is_down", || values!("{is_up}"));
    s.run("vcpu_smp.up_uninitialised", || {
        values!("{}", hc::vcpu_op_noarg(VcpuNoArg::Up, SECOND))
    });
    s.run("vcpu_smp.down_while_down", || {
        values!("{}", hc::vcpu_op_noarg(VcpuNoArg::Down, SECOND))
    });
    s.run("vcpu_smp.runstate_offline", || {
        let mut info = VcpuRunstateInfo::default();
        let rc = hc::vcpu_op(SECOND, &mut info);
        values!("rc={rc} state={}", info.state)
    });
    s.run("vcpu_smp.no_such_vcpu", || {
        let mut c = good_context();
        values!(
            "initialise={} is_up={}",
            initialise(2, &mut c),
            hc::vcpu_op_noarg(VcpuNoArg::IsUp, 2)
        )
    });
    s.run("vcpu_smp.initialise_bad_pointer", || {
        // SAFETY: an unmapped context: the copy fails before anything else happens.
        let rc = unsafe {
            hc::hypercall(
                __HYPERVISOR_vcpu_op,
                VCPUOP_initialise.into(),
                SECOND.into(),
                UNMAPPED,
                0,
                0,
            )
        };
        values!("{rc}")
    });
    // `arch_set_info_guest`'s refusals, one field at a time.
    let nc = 0x0000_8000_0000_0000;
    s.run("vcpu_smp.initialise_rip_noncanonical", || {
        values!("{}", initialise_with(|c| c.user_regs.rip = nc))
    });
    s.run("vcpu_smp.initialise_callback_noncanonical", || {
        values!("{}", initialise_with(|c| c.event_callback_eip = nc))
    });
    s.run("vcpu_smp.initialise_trap_noncanonical", || {
        values!("{}", initialise_with(|c| c.trap_ctxt[14].address = nc))
    });
    s.run("vcpu_smp.initialise_ldt_in_xen", || {
        values!(
            "{}",
            initialise_with(|c| c.ldt_base = 0xffff_8000_0000_0000)
        )
    });
    s.run("vcpu_smp.initialise_ldt_unaligned", || {
        values!("{}", initialise_with(|c| c.ldt_base = 0x1234))
    });
    s.run("vcpu_smp.initialise_ldt_too_big", || {
        values!("{}", initialise_with(|c| c.ldt_ents = 8193))
    });
    s.run("vcpu_smp.initialise_user_mode_no_user_l4", || {
        values!("{}", initialise_with(|c| c.flags = 0))
    });
    s.run("vcpu_smp.initialise_gdt_too_big", || {
        values!("{}", initialise_with(|c| c.gdt_ents = 0xe000 / 8 + 1))
    });
    s.run("vcpu_smp.initialise_gdt_frame_writable", || {
        let mfn = mm::va_to_mfn(scratch_va(6)).unwrap_or(0);
        values!(
            "{}",
            initialise_with(|c| {
                c.gdt_ents = 16;
                c.gdt_frames[0] = mfn;
            })
        )
    });
    s.run("vcpu_smp.initialise_cr3_writable_page", || {
        let mfn = mm::va_to_mfn(scratch_va(6)).unwrap_or(0);
        values!("{}", initialise_with(|c| c.ctrlreg[3] = mfn << 12))
    });
    s.run("vcpu_smp.initialise_cr3_beyond_ram", || {
        values!("{}", initialise_with(|c| c.ctrlreg[3] = 1 << 52))
    });
    s.run("vcpu_smp.initialise_user_l4_writable_page", || {
        let mfn = mm::va_to_mfn(scratch_va(6)).unwrap_or(0);
        values!("{}", initialise_with(|c| c.ctrlreg[1] = mfn << 12))
    });
    s.run("vcpu_smp.still_down", || {
        values!("{}", hc::vcpu_op_noarg(VcpuNoArg::IsUp, SECOND))
    });
    // Per-vCPU rules of the other sub-ops.
    s.run("vcpu_smp.singleshot_of_another_vcpu", || {
        // SAFETY: an unmapped argument: Xen refuses another vCPU before reading it.
        let set = unsafe {
            hc::hypercall(
                __HYPERVISOR_vcpu_op,
                VCPUOP_set_singleshot_timer.into(),
                SECOND.into(),
                UNMAPPED,
                0,
                0,
            )
        };
        let stop = hc::vcpu_op_noarg(VcpuNoArg::StopSingleshotTimer, SECOND);
        values!("set={set} stop={stop}")
    });
    s.run("vcpu_smp.stop_periodic_of_another_vcpu", || {
        values!(
            "{}",
            hc::vcpu_op_noarg(VcpuNoArg::StopPeriodicTimer, SECOND)
        )
    });
    s.run("vcpu_smp.send_nmi_with_argument", || {
        // SAFETY: Xen refuses a non-null argument without reading it.
        let rc = unsafe {
            hc::hypercall(
                __HYPERVISOR_vcpu_op,
                VCPUOP_send_nmi.into(),
                SECOND.into(),
                scratch_va(5),
                0,
                0,
            )
        };
        values!("{rc}")
    });
    s.run("vcpu_smp.register_vcpu_info_bad_frame", || {
        let mut info = VcpuRegisterVcpuInfo {
            mfn: 1 << 40,
            offset: 0,
            rsvd: 0,
        };
        values!("{}", hc::vcpu_op(SECOND, &mut info))
    });
    // Event channels bound to vCPU 1 (it need not be up).
    s.run("vcpu_smp.bind_ipi", || {
        let mut ipi = EvtchnBindIpi {
            vcpu: SECOND,
            port: 0,
        };
        let rc = hc::event_channel_op(&mut ipi);
        let mut close = EvtchnClose { port: ipi.port };
        let closed = if rc == 0 {
            hc::event_channel_op(&mut close)
        } else {
            rc
        };
        let mut bad = EvtchnBindIpi { vcpu: 2, port: 0 };
        values!(
            "rc={rc} close={closed} vcpu2={}",
            hc::event_channel_op(&mut bad)
        )
    });
    s.run("vcpu_smp.bind_virq_timer", || {
        let mut virq = EvtchnBindVirq {
            virq: VIRQ_TIMER,
            vcpu: SECOND,
            port: 0,
        };
        let rc = hc::event_channel_op(&mut virq);
        let mut close = EvtchnClose { port: virq.port };
        let closed = if rc == 0 {
            hc::event_channel_op(&mut close)
        } else {
            rc
        };
        values!("rc={rc} close={closed}")
    });
    // Last: a good context initialises it, offline; once only.
    s.run("vcpu_smp.initialise_offline", || {
        let mut c = good_context();
        let rc = initialise(SECOND, &mut c);
        let again = initialise(SECOND, &mut c);
        let up = hc::vcpu_op_noarg(VcpuNoArg::IsUp, SECOND);
        let mut info = VcpuRunstateInfo::default();
        let _ = hc::vcpu_op(SECOND, &mut info);
        values!("rc={rc} again={again} is_up={up} state={}", info.state)
    });
}
