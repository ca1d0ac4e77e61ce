//! How the hypervisor ends a run, and what QEMU's exit status says about it.
//!
//! Under QEMU a clean power-off (ACPI S5, see `arch/x86_64/power.rs`) makes QEMU exit with status 0.
//! Failures write a [`FailCode`] to the `isa-debug-exit` device, which makes QEMU exit with
//! `(code << 1) | 1`: always odd, so never mistaken for a clean power-off. The host test harness
//! can decode the status with [`FailCode::from_qemu_exit_status`].
//!
//! Caveat for harnesses: with `-no-reboot`, a triple fault (or any CPU reset) also makes QEMU exit
//! 0. A run counts as clean only if the console also shows [`POWEROFF_MESSAGE`].

/// The last console line (after the `(XEN) ` prefix) of a clean power-off.
pub const POWEROFF_MESSAGE: &str = "Powering off.";

/// Why the hypervisor gave up; the value written to QEMU's `isa-debug-exit` port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FailCode {
    /// A Rust panic in the hypervisor (QEMU exits 3).
    Panic = 1,
    /// An unexpected CPU exception in the hypervisor (QEMU exits 5).
    Trap = 2,
    /// The boot environment is unusable: no long mode or NX, or the loader's magic is wrong
    /// (QEMU exits 7). The 32-bit boot stub writes this value itself.
    BadBoot = 3,
    /// dom0 crashed (or shut down with `SHUTDOWN_crash`): the run cannot go on without it.
    Dom0Crashed = 4,
    /// The hypervisor does not run in ring 0: a `syscall` from ring 3 entered it at CPL 3, as on
    /// a KVM that runs guests in hardware ring 3 (`kvm_pvm`); see `arch/x86_64/ring3.rs`
    /// (QEMU exits 11).
    NotRing0 = 5,
}

impl FailCode {
    /// The status QEMU exits with when this code is written to `isa-debug-exit`.
    pub const fn qemu_exit_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }

    /// The failure a QEMU exit status reports, if it is one of ours.
    pub fn from_qemu_exit_status(status: i32) -> Option<FailCode> {
        [
            FailCode::Panic,
            FailCode::Trap,
            FailCode::BadBoot,
            FailCode::Dom0Crashed,
            FailCode::NotRing0,
        ]
        .into_iter()
        .find(|code| code.qemu_exit_status() == status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_odd_and_round_trip() {
        for code in [
            FailCode::Panic,
            FailCode::Trap,
            FailCode::BadBoot,
            FailCode::Dom0Crashed,
            FailCode::NotRing0,
        ] {
            let status = code.qemu_exit_status();
            assert_eq!(
                status % 2,
                1,
                "a failure must never look like a clean exit 0"
            );
            assert_eq!(FailCode::from_qemu_exit_status(status), Some(code));
        }
        assert_eq!(FailCode::Panic.qemu_exit_status(), 3);
        assert_eq!(FailCode::from_qemu_exit_status(0), None);
    }
}
