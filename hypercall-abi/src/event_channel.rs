//! Event channel operations for `HYPERVISOR_event_channel_op`, mirroring `event_channel.h`.
#![allow(non_upper_case_globals)] // Xen spells these in mixed case (`EVTCHNOP_send`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::assert_layout;
use crate::xen::DomId;

/// `evtchn_port_t`: an event channel port number.
#[doc(alias = "evtchn_port_t")]
pub type EvtchnPort = u32;

/// `event_word_t`: one FIFO event word.
#[doc(alias = "event_word_t")]
pub type EventWord = u32;

/// Connect a local port to a remote domain's unbound port; [`EvtchnBindInterdomain`].
pub const EVTCHNOP_bind_interdomain: u32 = 0;
/// Bind a VIRQ on a vCPU; [`EvtchnBindVirq`].
pub const EVTCHNOP_bind_virq: u32 = 1;
/// Bind a physical IRQ; [`EvtchnBindPirq`].
pub const EVTCHNOP_bind_pirq: u32 = 2;
/// Close a port; [`EvtchnClose`].
pub const EVTCHNOP_close: u32 = 3;
/// Notify the remote end; [`EvtchnSend`].
pub const EVTCHNOP_send: u32 = 4;
/// Query a port; [`EvtchnStatus`].
pub const EVTCHNOP_status: u32 = 5;
/// Allocate a port a remote domain may bind to; [`EvtchnAllocUnbound`].
pub const EVTCHNOP_alloc_unbound: u32 = 6;
/// Bind an inter-vCPU IPI port; [`EvtchnBindIpi`].
pub const EVTCHNOP_bind_ipi: u32 = 7;
/// Change the vCPU a port notifies; [`EvtchnBindVcpu`].
pub const EVTCHNOP_bind_vcpu: u32 = 8;
/// Unmask a port, re-delivering it if pending; [`EvtchnUnmask`].
pub const EVTCHNOP_unmask: u32 = 9;
/// Close all ports of a domain; [`EvtchnReset`].
pub const EVTCHNOP_reset: u32 = 10;
/// Switch to the FIFO ABI; [`EvtchnInitControl`].
pub const EVTCHNOP_init_control: u32 = 11;
/// Add a FIFO event array page; [`EvtchnExpandArray`].
pub const EVTCHNOP_expand_array: u32 = 12;
/// Set a FIFO port priority; [`EvtchnSetPriority`].
pub const EVTCHNOP_set_priority: u32 = 13;

/// `evtchn_status.status`: the port is not in use.
pub const EVTCHNSTAT_closed: u32 = 0;
/// Waiting for an inter-domain connection.
pub const EVTCHNSTAT_unbound: u32 = 1;
/// Connected to a remote domain.
pub const EVTCHNSTAT_interdomain: u32 = 2;
/// Bound to a physical IRQ.
pub const EVTCHNSTAT_pirq: u32 = 3;
/// Bound to a VIRQ.
pub const EVTCHNSTAT_virq: u32 = 4;
/// Bound to an IPI.
pub const EVTCHNSTAT_ipi: u32 = 5;

/// `evtchn_bind_pirq.flags`: the PIRQ may be shared with other domains.
pub const BIND_PIRQ__WILL_SHARE: u32 = 1;

/// Ports of the 2-level ABI on 64-bit: 64 selector bits x 64 pending bits.
pub const EVTCHN_2L_NR_CHANNELS: u32 = 64 * 64;
/// FIFO: highest priority.
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
/// FIFO: default priority.
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
/// FIFO: lowest priority.
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// FIFO: number of priority queues.
pub const EVTCHN_FIFO_MAX_QUEUES: usize = EVTCHN_FIFO_PRIORITY_MIN as usize + 1;
/// FIFO event word: pending bit.
pub const EVTCHN_FIFO_PENDING: u32 = 31;
/// FIFO event word: masked bit.
pub const EVTCHN_FIFO_MASKED: u32 = 30;
/// FIFO event word: linked bit.
pub const EVTCHN_FIFO_LINKED: u32 = 29;
/// FIFO event word: busy bit.
pub const EVTCHN_FIFO_BUSY: u32 = 28;
/// FIFO event word: width of the link field.
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
/// FIFO event word: mask of the link field.
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
/// Ports of the FIFO ABI.
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;

/// `EVTCHNOP_alloc_unbound`.
#[doc(alias = "evtchn_alloc_unbound_t")]
#[doc(alias = "evtchn_alloc_unbound")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnAllocUnbound {
    /// IN: domain allocating the port (`DOMID_SELF`).
    pub dom: DomId,
    /// IN: domain allowed to bind it.
    pub remote_dom: DomId,
    /// OUT: the new port.
    pub port: EvtchnPort,
}
assert_layout!(EvtchnAllocUnbound, 8, { dom: 0, remote_dom: 2, port: 4 });

/// `EVTCHNOP_bind_interdomain`.
#[doc(alias = "evtchn_bind_interdomain_t")]
#[doc(alias = "evtchn_bind_interdomain")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindInterdomain {
    /// IN: remote domain.
    pub remote_dom: DomId,
    /// Implicit C padding before `remote_port`.
    pub _pad0: [u8; 2],
    /// IN: remote domain's unbound port.
    pub remote_port: EvtchnPort,
    /// OUT: the local port.
    pub local_port: EvtchnPort,
}
assert_layout!(EvtchnBindInterdomain, 12, {
    remote_dom: 0, _pad0: 2, remote_port: 4, local_port: 8,
});

/// `EVTCHNOP_bind_virq`.
#[doc(alias = "evtchn_bind_virq_t")]
#[doc(alias = "evtchn_bind_virq")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindVirq {
    /// IN: `VIRQ_*`.
    pub virq: u32,
    /// IN: vCPU to notify.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}
assert_layout!(EvtchnBindVirq, 12, { virq: 0, vcpu: 4, port: 8 });

/// `EVTCHNOP_bind_pirq`.
#[doc(alias = "evtchn_bind_pirq_t")]
#[doc(alias = "evtchn_bind_pirq")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindPirq {
    /// IN: physical IRQ.
    pub pirq: u32,
    /// IN: `BIND_PIRQ__*`.
    pub flags: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}
assert_layout!(EvtchnBindPirq, 12, { pirq: 0, flags: 4, port: 8 });

/// `EVTCHNOP_bind_ipi`.
#[doc(alias = "evtchn_bind_ipi_t")]
#[doc(alias = "evtchn_bind_ipi")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindIpi {
    /// IN: vCPU to notify.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}
assert_layout!(EvtchnBindIpi, 8, { vcpu: 0, port: 4 });

/// `EVTCHNOP_close`.
#[doc(alias = "evtchn_close_t")]
#[doc(alias = "evtchn_close")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnClose {
    /// IN: port to close.
    pub port: EvtchnPort,
}
assert_layout!(EvtchnClose, 4, { port: 0 });

/// `EVTCHNOP_send`.
#[doc(alias = "evtchn_send_t")]
#[doc(alias = "evtchn_send")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnSend {
    /// IN: local port whose remote end is notified.
    pub port: EvtchnPort,
}
assert_layout!(EvtchnSend, 4, { port: 0 });

/// `EVTCHNOP_status`. `u` is a C union, kept as two 32-bit words; see the accessors.
#[doc(alias = "evtchn_status_t")]
#[doc(alias = "evtchn_status")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnStatus {
    /// IN: domain owning the port.
    pub dom: DomId,
    /// Implicit C padding before `port`.
    pub _pad0: [u8; 2],
    /// IN: port to query.
    pub port: EvtchnPort,
    /// OUT: `EVTCHNSTAT_*`.
    pub status: u32,
    /// OUT: vCPU notified.
    pub vcpu: u32,
    /// OUT: union `{ unbound { dom }; interdomain { dom, port }; pirq; virq; }`.
    pub u: [u32; 2],
}
assert_layout!(EvtchnStatus, 24, { dom: 0, _pad0: 2, port: 4, status: 8, vcpu: 12, u: 16 });

impl EvtchnStatus {
    /// `u.unbound.dom` / `u.interdomain.dom`: the remote domain (low 16 bits of word 0).
    pub const fn remote_dom(&self) -> DomId {
        self.u[0] as DomId
    }

    /// `u.interdomain.port`: the remote port.
    pub const fn remote_port(&self) -> EvtchnPort {
        self.u[1]
    }

    /// `u.pirq`.
    pub const fn pirq(&self) -> u32 {
        self.u[0]
    }

    /// `u.virq`.
    pub const fn virq(&self) -> u32 {
        self.u[0]
    }

    /// Sets `u.unbound.dom` (clearing the rest of the union).
    pub fn set_unbound(&mut self, dom: DomId) {
        self.u = [u32::from(dom), 0];
    }

    /// Sets `u.interdomain`.
    pub fn set_interdomain(&mut self, dom: DomId, port: EvtchnPort) {
        self.u = [u32::from(dom), port];
    }

    /// Sets `u.pirq` (or, identically placed, `u.virq`).
    pub fn set_irq(&mut self, irq: u32) {
        self.u = [irq, 0];
    }
}

/// `EVTCHNOP_bind_vcpu`.
#[doc(alias = "evtchn_bind_vcpu_t")]
#[doc(alias = "evtchn_bind_vcpu")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindVcpu {
    /// IN: port.
    pub port: EvtchnPort,
    /// IN: new vCPU to notify.
    pub vcpu: u32,
}
assert_layout!(EvtchnBindVcpu, 8, { port: 0, vcpu: 4 });

/// `EVTCHNOP_unmask`.
#[doc(alias = "evtchn_unmask_t")]
#[doc(alias = "evtchn_unmask")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnUnmask {
    /// IN: port to unmask.
    pub port: EvtchnPort,
}
assert_layout!(EvtchnUnmask, 4, { port: 0 });

/// `EVTCHNOP_reset`.
#[doc(alias = "evtchn_reset_t")]
#[doc(alias = "evtchn_reset")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnReset {
    /// IN: domain whose ports are closed (`DOMID_SELF`).
    pub dom: DomId,
}
assert_layout!(EvtchnReset, 2, { dom: 0 });

/// `EVTCHNOP_init_control`.
#[doc(alias = "evtchn_init_control_t")]
#[doc(alias = "evtchn_init_control")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnInitControl {
    /// IN: frame of the control block.
    pub control_gfn: u64,
    /// IN: offset of the control block in the frame.
    pub offset: u32,
    /// IN: vCPU.
    pub vcpu: u32,
    /// OUT: `EVTCHN_FIFO_LINK_BITS`.
    pub link_bits: u8,
    /// Padding (named in C).
    pub _pad: [u8; 7],
}
assert_layout!(EvtchnInitControl, 24, {
    control_gfn: 0, offset: 8, vcpu: 12, link_bits: 16, _pad: 17,
});

/// `EVTCHNOP_expand_array`.
#[doc(alias = "evtchn_expand_array_t")]
#[doc(alias = "evtchn_expand_array")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnExpandArray {
    /// IN: frame of the new event array page.
    pub array_gfn: u64,
}
assert_layout!(EvtchnExpandArray, 8, { array_gfn: 0 });

/// `EVTCHNOP_set_priority`.
#[doc(alias = "evtchn_set_priority_t")]
#[doc(alias = "evtchn_set_priority")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnSetPriority {
    /// IN: port.
    pub port: EvtchnPort,
    /// IN: `EVTCHN_FIFO_PRIORITY_*`.
    pub priority: u32,
}
assert_layout!(EvtchnSetPriority, 8, { port: 0, priority: 4 });

/// Argument of the compat `__HYPERVISOR_event_channel_op_compat`: a command plus a union of the
/// argument structs, kept as six 32-bit words (the size of [`EvtchnStatus`]).
#[doc(alias = "evtchn_op_t")]
#[doc(alias = "evtchn_op")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnOp {
    /// An `EVTCHNOP_*` command.
    pub cmd: u32,
    /// The argument struct, byte-for-byte (read it with `zerocopy::FromBytes::read_from_prefix`).
    pub u: [u32; 6],
}
assert_layout!(EvtchnOp, 28, { cmd: 0, u: 4 });

/// FIFO control block, one per vCPU.
#[doc(alias = "evtchn_fifo_control_block_t")]
#[doc(alias = "evtchn_fifo_control_block")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnFifoControlBlock {
    /// Bitmap of queues with events.
    pub ready: u32,
    /// Reserved (named in C).
    pub _rsvd: u32,
    /// Head of each priority queue.
    pub head: [EventWord; EVTCHN_FIFO_MAX_QUEUES],
}
assert_layout!(EvtchnFifoControlBlock, 72, { ready: 0, _rsvd: 4, head: 8 });

/// An argument of `HYPERVISOR_event_channel_op`, paired with the one command that takes it, so a
/// wrapper generic over it cannot hand the hypervisor a structure smaller than the command writes.
///
/// ```
/// use hypercall_abi::event_channel::{EvtchnOpArg, EvtchnSend, EVTCHNOP_send};
/// fn cmd_of<A: EvtchnOpArg>(_: &mut A) -> u32 {
///     A::CMD
/// }
/// assert_eq!(cmd_of(&mut EvtchnSend { port: 3 }), EVTCHNOP_send);
/// ```
///
/// Another family's argument does not compile:
///
/// ```compile_fail,E0277
/// use hypercall_abi::event_channel::EvtchnOpArg;
/// fn cmd_of<A: EvtchnOpArg>(_: &mut A) -> u32 {
///     A::CMD
/// }
/// cmd_of(&mut hypercall_abi::sched::SchedPoll::default());
/// ```
pub trait EvtchnOpArg {
    /// The `EVTCHNOP_*` command whose argument this is (`event_channel.h`).
    const CMD: u32;
}
crate::sub_ops!(EvtchnOpArg:
    EvtchnBindInterdomain => EVTCHNOP_bind_interdomain,
    EvtchnBindVirq => EVTCHNOP_bind_virq,
    EvtchnBindPirq => EVTCHNOP_bind_pirq,
    EvtchnClose => EVTCHNOP_close,
    EvtchnSend => EVTCHNOP_send,
    EvtchnStatus => EVTCHNOP_status,
    EvtchnAllocUnbound => EVTCHNOP_alloc_unbound,
    EvtchnBindIpi => EVTCHNOP_bind_ipi,
    EvtchnBindVcpu => EVTCHNOP_bind_vcpu,
    EvtchnUnmask => EVTCHNOP_unmask,
    EvtchnReset => EVTCHNOP_reset,
    EvtchnInitControl => EVTCHNOP_init_control,
    EvtchnExpandArray => EVTCHNOP_expand_array,
    EvtchnSetPriority => EVTCHNOP_set_priority,
);
