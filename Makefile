# The project's commands. `make run` and `make test` are the README's two commands: on a fresh
# machine they install what they need first (scripts/setup.sh), then build and boot or test.
#
#   make run            boot our hypervisor with the guest kernel as dom0 and one domU in QEMU
#                       (DOMUS=<n> domUs, DOMU_CMDLINE='...' for each, DOMU_MEM=16M each;
#                       DISK=<raw image> is dom0's virtio disk, build/disk.img by default;
#                       every domU reaches it as vbd 51712, e.g.
#                       DOMU_CMDLINE='blk-selftest=<seed>,<start_sector>,<sectors>')
#   make run-linux      our hypervisor, our dom0 and Debian's Linux 6.1 as domU1 with an initramfs
#                       built from Debian packages (busybox-static, xen-blkfront, xen-netfront),
#                       the serial line attached to Linux's shell (CTRL-] detaches to dom0's shell);
#                       LINUX=<vmlinuz or vmlinux> boots another PV kernel, LINUX_MEM=160M,
#                       LINUX_CMDLINE='console=hvc0'; DISK is its /dev/xvda; its eth0 (netfront,
#                       DHCP 10.0.2.21) serves a page: curl http://127.0.0.1:8080/ (NET=none: no NIC)
#   make run-xen        the same guest pair on Debian's Xen 4.17 (the reference): our dom0 builds
#                       one domU itself (build-domu; DOMU_CMDLINE, DOMU_MEM; DOMUS=0: dom0 alone)
#                       run, run-xen and bench take ACCEL=auto (default: KVM if a probe boot finds
#                       that /dev/kvm can host a ring-0 hypervisor, else TCG), ACCEL=kvm, ACCEL=tcg
#   make bench          boot time, null-hypercall cost next to the bare syscall round trip, ours
#                       next to Xen 4.17 (under KVM too when ACCEL picks it; ACCEL=auto|kvm|tcg),
#                       two domains, block I/O, network, and scale: dom0 + 64 domUs of 4 MiB
#                       (BENCH_ARGS=--scale, --blk, --net, --icount or --boot: that section alone;
#                       --blk-emulator: QEMU's own work per random read, counted with perf uprobes)
#   make lab            the page-table batching lab: build/lab/{results.csv,report.md,*.svg,*.png}
#   make lab-check      rerun the lab's icount mode and require the same CSV rows
#   make test           host unit tests, ABI-vs-C-headers conformance, lints, QEMU tests on Xen 4.17
#                       (under TCG, then again under KVM when it can host us: `make kvm-pass`)
#   make fuzz-mm        the frame-table property test, long: 10^7 random operations (release mode)
#   make fuzz           the hypercall-sequence fuzzer, long: 10^7 operations from a random seed
#                       (FUZZ_SEED=<seed> replays one; FUZZ_OPS, FUZZ_THREADS; release mode)
#   make debug          `make run`'s boot stopped under QEMU's gdb stub, gdb attached with both
#                       images' symbols (scripts/debug.gdb; README "Debugging with gdb")
#   make profile        instructions of one null hypercall in our hypervisor, per function (TCG
#                       with -icount, gdb single-stepping; docs/performance.md)
#   make images         build/xen (our hypervisor) and build/guest-kernel (the PV guest ELF)
#   make xen-reference  boot `guest-kernel suite=conformance` as dom0 on Xen 4.17, print the cases
#   make clean

SHELL      := /bin/bash
BUILD      ?= build
TARGET     := x86_64-unknown-none
KDIR       := target/$(TARGET)/kernel
QEMU       := qemu-system-x86_64
# The accelerator: ACCEL=auto (default: KVM when /dev/kvm can host a ring-0 hypervisor, found by
# a probe boot, else TCG; scripts/accel.sh says which and why), ACCEL=kvm or ACCEL=tcg to force.
ACCEL      ?= auto
# KVM's CPU model comes from scripts/kvm-cpu.sh: `host`, less what this host's KVM refuses.
ACCEL_FLAGS_kvm  = -accel kvm -cpu $$(bash scripts/kvm-cpu.sh)
ACCEL_FLAGS_tcg := -accel tcg -cpu max
# Sets the shell variable `aflags` to the chosen accelerator's flags (and `accel` to its name).
PICK_ACCEL  = accel=$$(bash scripts/accel.sh "$(ACCEL)") || exit 2; \
              if [ "$$accel" = kvm ]; then aflags="$(ACCEL_FLAGS_kvm)"; else aflags="$(ACCEL_FLAGS_tcg)"; fi
QEMU_FLAGS := -m 512 -display none -serial stdio -monitor none -no-reboot \
              -device isa-debug-exit,iobase=0xf4,iosize=0x04
DOM0_MEM   ?= 64M
XEN_CMDLINE := console=com1 com1=115200,8n1 dom0_mem=$(DOM0_MEM) loglvl=all guest_loglvl=all
# Extra options for our hypervisor only (`make run`), e.g. XEN_OPTS=selftest=native-pte.
XEN_OPTS   ?=
DOM0_CMDLINE ?=
# The domUs of `make run`: how many, each one's memory, and a command line passed to each.
DOMUS      ?= 1
DOMU_MEM   ?= 16M
DOMU_CMDLINE ?=
# dom0's disk: a raw image attached as a virtio-blk PCI device (created, 64 MiB of zeros, if
# missing), on both hypervisors. `make run DOM0_CMDLINE=blkdev-selftest=<sector>` exercises it.
DISK       ?= $(BUILD)/disk.img
DISK_SIZE  ?= 64M
DISK_ARGS   = -drive file=$(DISK),format=raw,if=none,id=disk0 -device virtio-blk-pci,drive=disk0
# dom0's NIC (`make run`): a virtio-net PCI card on QEMU's user-mode network (10.0.2.0/24,
# gateway 10.0.2.2, DHCP from 10.0.2.15), host ports forwarded from 127.0.0.1 only:
#   dom0 (DHCP, 10.0.2.15)        127.0.0.1:$(DOM0_HTTP_PORT) -> :80 (HTTP), :$(DOM0_ECHO_PORT) -> :7 (echo)
#   domU N (DHCP, asks 10.0.2.(20+N)) 127.0.0.1:$(NET_HTTP_PORT)+N-1 -> :80, :$(NET_ECHO_PORT)+N-1 -> :7
# dom0 prints the `curl` line to try. NET=none leaves the NIC out.
NET            ?= user
DOM0_HTTP_PORT ?= 8000
DOM0_ECHO_PORT ?= 8001
NET_HTTP_PORT  ?= 8080
NET_ECHO_PORT  ?= 8007
NET_FWD     = hostfwd=tcp:127.0.0.1:$(DOM0_HTTP_PORT)-10.0.2.15:80,hostfwd=tcp:127.0.0.1:$(DOM0_ECHO_PORT)-10.0.2.15:7$(subst $(space),,$(foreach i,$(shell seq 1 $(DOMUS)),$(comma)hostfwd=tcp:127.0.0.1:$(shell echo $$(($(NET_HTTP_PORT)+$(i)-1)))-10.0.2.$(shell echo $$((20+$(i)))):80$(comma)hostfwd=tcp:127.0.0.1:$(shell echo $$(($(NET_ECHO_PORT)+$(i)-1)))-10.0.2.$(shell echo $$((20+$(i)))):7))
NET_ARGS    = $(if $(filter user,$(NET)),-netdev user$(comma)id=net0$(comma)$(NET_FWD) -device virtio-net-pci$(comma)netdev=net0$(comma)addr=5,-nic none)
NET_DOM0    = $(if $(filter user,$(NET)),net-fwd=$(DOM0_HTTP_PORT)/$(DOM0_ECHO_PORT)/$(NET_HTTP_PORT)/$(NET_ECHO_PORT))
# QEMU's -initrd list: dom0, then the domUs (a comma inside a command line is doubled, QEMU's
# escape).
comma      := ,
space      := $() $()
DOMU_MODULES = $(foreach i,$(shell seq 1 $(DOMUS)),$(comma)$(strip $(BUILD)/guest-kernel name=domU$(i) mem=$(DOMU_MEM) $(subst $(comma),$(comma)$(comma),$(DOMU_CMDLINE))))
# Options for the lab runner (`make lab`, `make lab-check`), e.g. LAB_ARGS="--pages 512,4096".
LAB_ARGS   ?=

export BUILD

.PHONY: all setup images run run-linux run-xen bench lab lab-check test kvm-pass debug profile lint fuzz-mm fuzz xen-reference clean

all: images

setup:
	@bash scripts/setup.sh

images: setup
	cargo build --profile kernel -p guest-kernel --target $(TARGET)
	cargo build --profile kernel -p xen-core --bin xen --target $(TARGET)
	@mkdir -p $(BUILD)
	@# The boot module without its DWARF (1.8 MB instead of 19: every boot loads it through
	@# QEMU's firmware); the function symbols stay. gdb reads guest-kernel-syms.
	cp $(KDIR)/guest-kernel $(BUILD)/guest-kernel-syms
	strip --strip-debug -o $(BUILD)/guest-kernel $(KDIR)/guest-kernel
	cp $(KDIR)/xen $(BUILD)/xen-syms
	objcopy -O binary $(KDIR)/xen $(BUILD)/xen
	python3 scripts/embed-symbols.py $(BUILD)/xen-syms $(BUILD)/xen
	@echo "images: $(BUILD)/xen ($$(stat -c %s $(BUILD)/xen) bytes), $(BUILD)/guest-kernel ($$(stat -c %s $(BUILD)/guest-kernel) bytes)"

$(DISK):
	@mkdir -p $(dir $(DISK))
	truncate -s $(DISK_SIZE) $(DISK)

run: images $(DISK)
	@$(PICK_ACCEL); \
	echo "==== our hypervisor: $(BUILD)/xen with $(BUILD)/guest-kernel as dom0 and $(DOMUS) domU(s) ===="; \
	set -x; $(QEMU) $$aflags $(QEMU_FLAGS) $(DISK_ARGS) $(NET_ARGS) -kernel $(BUILD)/xen -append "$(strip $(XEN_CMDLINE) $(XEN_OPTS))" \
	    -initrd "$(strip $(BUILD)/guest-kernel $(NET_DOM0) $(subst $(comma),$(comma)$(comma),$(DOM0_CMDLINE)))$(subst $(space)$(comma),$(comma),$(strip $(DOMU_MODULES)))"; \
	    { status=$$?; set +x; } 2>/dev/null; echo "==== QEMU exited with status $$status ===="; exit $$status

# Debian's Linux as domU1 (scripts/fetch-linux.sh, scripts/make-initramfs.sh fetch what is
# missing with apt-get download); dom0 attaches the serial line to its console
# (`attach-console=1`) and powers off when Linux does. CTRL-C goes to Linux, not to QEMU
# (`signal=off`): leave with `poweroff` in Linux, or CTRL-] and `shutdown 1` in dom0's shell.
LINUX         ?=
LINUX_MODULES ?=
LINUX_MEM     ?= 160M
LINUX_CMDLINE ?= console=hvc0
run-linux: images $(DISK)
	@kernel=$$(LINUX="$(LINUX)" bash scripts/fetch-linux.sh) || { echo "run-linux: cannot fetch or extract the kernel" >&2; exit 2; }; \
	mods="$(LINUX_MODULES)"; \
	if [ -z "$$mods" ] && [ -n "$(LINUX)" ]; then \
	    v=$$(basename "$(LINUX)" | sed -n 's/^vmlinu[xz]-//p'); d="$$(dirname "$(LINUX)")/../lib/modules/$$v"; \
	    if [ -n "$$v" ] && [ -d "$$d" ]; then mods=$$(cd "$$d" && pwd); \
	    else echo "run-linux: no lib/modules/$$v beside $(LINUX): the initramfs has the default kernel's modules (LINUX_MODULES=<dir> to name them)" >&2; fi; \
	fi; \
	initrd=$$(LINUX_MODULES="$$mods" bash scripts/make-initramfs.sh) || { echo "run-linux: cannot build the initramfs" >&2; exit 2; }; \
	$(PICK_ACCEL); \
	echo "==== our hypervisor: $(BUILD)/xen, $(BUILD)/guest-kernel as dom0, $$kernel as domU1 with $$initrd (CTRL-] detaches) ===="; \
	set -x; $(QEMU) $$aflags $(subst -serial stdio,-chardev stdio$(comma)id=serial0$(comma)signal=off -serial chardev:serial0,$(QEMU_FLAGS)) \
	    $(DISK_ARGS) $(NET_ARGS) -kernel $(BUILD)/xen -append "$(strip $(XEN_CMDLINE) $(XEN_OPTS))" \
	    -initrd "$(strip $(BUILD)/guest-kernel attach-console=1 $(NET_DOM0) $(subst $(comma),$(comma)$(comma),$(DOM0_CMDLINE))),$(strip $$kernel name=linux mem=$(LINUX_MEM) $(if $(filter user,$(NET)),dhcp-ip=10.0.2.21) $(subst $(comma),$(comma)$(comma),$(LINUX_CMDLINE))),$$initrd initrd"; \
	    { status=$$?; set +x; } 2>/dev/null; echo "==== QEMU exited with status $$status ===="; exit $$status

run-xen: images $(DISK)
	@$(PICK_ACCEL); \
	if [ "$(DOMUS)" = 0 ]; then \
	    echo "==== reference: Debian's Xen 4.17 with $(BUILD)/guest-kernel as dom0 ===="; \
	    initrd="$(strip $(BUILD)/guest-kernel exit=reboot $(subst $(comma),$(comma)$(comma),$(DOM0_CMDLINE)))"; \
	else \
	    echo "==== reference: Debian's Xen 4.17 with $(BUILD)/guest-kernel as dom0, which builds one domU from it (build-domu) ===="; \
	    initrd="$(strip $(BUILD)/guest-kernel exit=reboot build-domu $(subst $(comma),$(comma)$(comma),$(DOM0_CMDLINE)) -- name=domU1 mem=$(DOMU_MEM) $(subst $(comma),$(comma)$(comma),$(DOMU_CMDLINE))),$(BUILD)/guest-kernel"; \
	fi; \
	set -x; $(QEMU) $$aflags $(QEMU_FLAGS) $(DISK_ARGS) -kernel $(BUILD)/xen-4.17/xen -append "$(XEN_CMDLINE)" \
	    -initrd "$$initrd"; \
	    { status=$$?; set +x; } 2>/dev/null; echo "==== QEMU exited with status $$status ===="

# QEMU's gdb stub with both images' symbols (scripts/debug.gdb): QEMU starts stopped, its serial
# console in $(BUILD)/debug-serial.log (`tail -f` it), and gdb attaches in the foreground; QEMU
# ends with gdb. The same boot as `make run` (DOMUS, DOM0_CMDLINE, ..., ACCEL). GDB_ARGS adds
# gdb options, e.g. GDB_ARGS='-batch -ex "break xen::start_xen" -ex continue -ex bt'.
GDB_PORT ?= 1234
GDB_ARGS ?=
debug: images $(DISK)
	@$(PICK_ACCEL); \
	echo "==== make debug: QEMU stopped at reset, gdb stub on localhost:$(GDB_PORT), serial console in $(BUILD)/debug-serial.log ===="; \
	$(QEMU) $$aflags $(subst -serial stdio,-serial file:$(BUILD)/debug-serial.log,$(QEMU_FLAGS)) $(DISK_ARGS) \
	    -gdb tcp:localhost:$(GDB_PORT) -S -kernel $(BUILD)/xen -append "$(strip $(XEN_CMDLINE) $(XEN_OPTS))" \
	    -initrd "$(strip $(BUILD)/guest-kernel $(subst $(comma),$(comma)$(comma),$(DOM0_CMDLINE)))$(subst $(space)$(comma),$(comma),$(strip $(DOMU_MODULES)))" \
	    </dev/null & qemu=$$!; \
	for i in $$(seq 50); do ss -ltn 2>/dev/null | grep -q ":$(GDB_PORT) " && break; sleep 0.1; done; \
	gdb -q -x scripts/debug.gdb -ex "target remote localhost:$(GDB_PORT)" $(GDB_ARGS); \
	status=$$?; kill $$qemu 2>/dev/null; wait $$qemu 2>/dev/null; exit $$status

# Instructions of one null hypercall, per function (docs/performance.md): TCG, -icount, gdb.
profile: images
	@bash scripts/profile-hypercall.sh

# Under KVM (when picked) and then under TCG, in one run.
bench: images
	@$(PICK_ACCEL); \
	for a in $$([ "$$accel" = kvm ] && echo kvm) tcg; do \
	    XTESTS_ACCEL=$$a cargo run -q --release -p xtests --bin bench -- $(BENCH_ARGS) || exit 1; \
	done

# The teaching lab (docs/lab-page-table-batching.md): both hypervisors, wall and icount mode.
# Its kvm mode (real cycles) is not built yet: the line before the run says so, or why KVM is
# unusable here.
lab: images
	@accel=$$(bash scripts/accel.sh auto 2>$(BUILD)/accel.why) || exit 2; \
	if [ "$$accel" = kvm ]; then echo "lab: kvm mode: skipped: not implemented yet (KVM is usable here)"; \
	else echo "lab: kvm mode: skipped: $$(sed -e 's/^accel: tcg (auto: //' -e 's/; ACCEL=kvm to try anyway)$$//' $(BUILD)/accel.why)"; fi
	cargo run -q --release -p lab -- run $(LAB_ARGS)

lab-check: images
	cargo run -q --release -p lab -- check $(LAB_ARGS)

# Every cargo test result line is collected so the run ends with one total.
test: images
	@rm -f $(BUILD)/test.log
	@$(MAKE) --no-print-directory lint
	@set -o pipefail; cargo test --workspace 2>&1 | tee -a $(BUILD)/test.log
	@set -o pipefail; FUZZ_OPS=100000 FUZZ_SEED= FUZZ_THREADS= $(FUZZ_ENV) \
	    cargo test --release -p xen-core --lib sequence_fuzz -- --nocapture 2>&1 | tee -a $(BUILD)/test.log
	@set -o pipefail; cargo test -p xtests --test '*' -- --ignored --nocapture 2>&1 | tee -a $(BUILD)/test.log
	@set -o pipefail; cargo test -p lab --test '*' -- --ignored --nocapture 2>&1 | tee -a $(BUILD)/test.log
	@$(MAKE) --no-print-directory kvm-pass
	@bash scripts/test-summary.sh $(BUILD)/test.log

# The QEMU tests again under KVM (`XTESTS_ACCEL=kvm`: `-accel kvm -cpu host`), when
# scripts/accel.sh's probe boot finds a KVM that can host a ring-0 hypervisor; otherwise one line
# says it was skipped and why. Never silent.
kvm-pass:
	@accel=$$(bash scripts/accel.sh auto 2>$(BUILD)/accel.why) || exit 2; \
	if [ "$$accel" = kvm ]; then \
	    echo "KVM pass: $$(cat $(BUILD)/accel.why)"; \
	    set -o pipefail; XTESTS_ACCEL=kvm cargo test -p xtests --test '*' -- --ignored --nocapture 2>&1 \
	        | tee -a $(BUILD)/test.log; \
	else \
	    echo "KVM pass: skipped: $$(sed -e 's/^accel: tcg (auto: //' -e 's/; ACCEL=kvm to try anyway)$$//' $(BUILD)/accel.why)"; \
	fi

lint:
	cargo fmt --all -- --check
	bash scripts/check-layers.sh
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p guest-kernel -p xen-core -p hypercall-abi -p ring-drivers --target $(TARGET) -- -D warnings

# The frame-table property test at length: FUZZ_MM_OPS operations (default 10^7) from a random seed
# unless FUZZ_MM_SEEDS names some (the test prints every seed it ran and how to replay a failure).
# Release mode for speed, with debug assertions and overflow checks kept on; a target directory of
# its own, so those settings never force a rebuild of `make bench`'s release artifacts.
FUZZ_MM_OPS   ?= 10000000
FUZZ_MM_SEEDS ?= 0x$(shell od -An -N8 -tx8 /dev/urandom | tr -d ' \n')

fuzz-mm:
	FUZZ_MM_OPS=$(FUZZ_MM_OPS) FUZZ_MM_SEEDS=$(FUZZ_MM_SEEDS) \
	CARGO_TARGET_DIR=target/fuzz-mm \
	CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true \
	    cargo test --release -p xen-core property -- --nocapture

# The hypercall-sequence fuzzer at length (xen-core/src/hypercall/sequence_fuzz): FUZZ_OPS
# operations (default 10^7) from FUZZ_SEED (default: a random one; the run prints it, and a
# failure prints its minimal sequence and the command that replays it). Same build settings and
# target directory as fuzz-mm; `make test` runs it with 10^5 operations from a fixed seed.
FUZZ_OPS  ?= 10000000
FUZZ_SEED ?= 0x$(shell od -An -N8 -tx8 /dev/urandom | tr -d ' \n')
FUZZ_THREADS ?=
FUZZ_ENV  := CARGO_TARGET_DIR=target/fuzz-mm \
             CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true

fuzz:
	FUZZ_OPS=$(FUZZ_OPS) FUZZ_SEED=$(FUZZ_SEED) FUZZ_THREADS=$(FUZZ_THREADS) $(FUZZ_ENV) \
	    cargo test --release -p xen-core --lib sequence_fuzz -- --nocapture

xen-reference: images
	cargo run -q --release -p xtests --bin xen-reference -- --runs 2

clean:
	cargo clean
	rm -rf $(BUILD)/xen $(BUILD)/guest-kernel $(BUILD)/lab $(BUILD)/*.log $(BUILD)/*.cases
