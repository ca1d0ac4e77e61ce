# gdb script for `make debug` (README "Debugging with gdb"): loads the hypervisor's symbols
# (build/xen-syms, the ELF of build/xen, linked at 0xffff82d040200000) and the guest kernel's
# (build/guest-kernel-syms: build/guest-kernel with its DWARF; linked at 0x100000, the address
# dom0 and every domU run it at: guests own the low half, the hypervisor the slots above, so both
# symbol sets coexist). `make debug` then
# attaches (`target remote localhost:$(GDB_PORT)`) to QEMU's gdb stub, which waits stopped at
# the first instruction (-S).
set pagination off
set confirm off
set architecture i386:x86-64
file build/xen-syms
add-symbol-file build/guest-kernel-syms
echo \nsymbols of build/xen-syms and build/guest-kernel-syms loaded\n
echo Examples (generic Rust functions take their type argument; file:line works too):\n
echo - break xen_core::hypercall::console::console_io<xen::arch::x86_64::machine::HvMachine>\n
echo - break xen::arch::x86_64::dispatch::handle_entry   (every entry into the hypervisor)\n
echo - break _start                                      (the guest kernel's entry, ring 3)\n
echo - continue, then bt, info registers rip cs, x/8i $pc, stepi, finish\n
