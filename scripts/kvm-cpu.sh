#!/usr/bin/env bash
# Prints the `-cpu` model for KVM boots: `host`, or `host,-arch-capabilities` on a host whose
# KVM refuses the IA32_ARCH_CAPABILITIES value QEMU writes for `-cpu host` (seen with kvm_pvm:
# "failed to set MSR 0x10a to 0xc000069", after which QEMU aborts before the guest runs a single
# instruction). The probe starts QEMU paused (-S): the MSRs are written while the machine is
# built, so a refusal ends it at once (~50 ms); a QEMU still paused after a second accepted them.
#
#   scripts/kvm-cpu.sh      (QEMU=<binary> to probe another QEMU)
set -u
qemu=${QEMU:-qemu-system-x86_64}
probe() {
    timeout 1 "$qemu" -accel kvm -cpu "$1" -S -m 16 -nodefaults -display none -serial none \
        -monitor none </dev/null 2>&1 | grep -q 'failed to set MSR'
}
if probe host && ! probe host,-arch-capabilities; then
    echo host,-arch-capabilities
else
    echo host
fi
