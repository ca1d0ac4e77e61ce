//! Tests of the emulated instructions: forced CPUID, control registers, privileged ops, port I/O.

use super::*;

fn native(_leaf: u32, _sub: u32) -> [u32; 4] {
    [1, 2, 3, 4]
}

pub(super) use super::privop_tests::FakeHost;

#[test]
fn forced_cpuid_gives_xen_signature_and_advances() {
    let mut regs = Regs {
        rax: 0x4000_0000,
        rip: 0x1000,
        ..Regs::default()
    };
    assert!(forced_cpuid(
        &mut regs,
        &[0x0f, 0x0b, b'x', b'e', b'n', 0x0f, 0xa2, 0x90],
        native
    ));
    assert_eq!(regs.rip, 0x1007);
    let sig: Vec<u8> = [regs.rbx, regs.rcx, regs.rdx]
        .iter()
        .flat_map(|r| (*r as u32).to_le_bytes())
        .collect();
    assert_eq!(&sig, b"XenVMMXenVMM");
    assert_eq!(regs.rax, 0x4000_0005);
    let mut regs = Regs {
        rax: 0x4000_0001,
        ..Regs::default()
    };
    assert!(forced_cpuid(&mut regs, &FORCED_CPUID, native));
    assert_eq!(regs.rax, 0x4_0011);
    let mut regs = Regs::default();
    assert!(!forced_cpuid(&mut regs, &[0x0f, 0x0b, 0x90], native));
    assert_eq!(regs.rip, 0);
}

#[test]
fn mov_from_cr3_and_cr0_with_rex() {
    let crs = GuestCrs {
        cr0: 0x8005_003b,
        cr2: 0x42,
        cr3: 0x1234_5000,
        cr4: guest_cr4(0, 0x0030_06a0),
        cr4_writable: CR4_TSD | CR4_DE,
    };
    let mut regs = Regs::default();
    assert!(mov_from_cr(&mut regs, &[0x0f, 0x20, 0xd8], crs)); // mov %cr3, %rax
    assert_eq!((regs.rax, regs.rip), (0x1234_5000, 3));
    let mut regs = Regs::default();
    assert!(mov_from_cr(&mut regs, &[0x41, 0x0f, 0x20, 0xc7], crs)); // mov %cr0, %r15
    assert_eq!((regs.r15, regs.rip), (0x8005_003b, 4));
    let mut regs = Regs::default();
    assert!(
        !mov_from_cr(&mut regs, &[0x0f, 0x22, 0xd8], crs),
        "writes are not emulated"
    );
    // mov %cr4, %rbp (Linux's `cr4_init_shadow`): the host's PAE, OSFXSR and OSXMMEXCPT only,
    // not its PGE, SMEP or SMAP.
    let mut regs = Regs::default();
    assert!(mov_from_cr(&mut regs, &[0x0f, 0x20, 0xe5], crs));
    assert_eq!((regs.rbp, regs.rip), (0x620, 3));
    // CR8 and other registers are not.
    assert!(!mov_from_cr(&mut regs, &[0x44, 0x0f, 0x20, 0xc0], crs));
    assert!(!mov_from_cr(&mut regs, &[0x0f, 0x20, 0xe8], crs));
    assert!(!mov_from_cr(&mut regs, &[0x0f], crs));
}

#[test]
fn the_guest_view_of_cr4_is_xens() {
    let host = (1 << 5) | (1 << 7) | (1 << 9) | (1 << 10) | (1 << 20) | (1 << 21);
    assert_eq!(guest_cr4(0, host), 0x620);
    assert_eq!(guest_cr4(CR4_DE, host), 0x628);
    // Bits the guest may not own are not in its view, whatever it wrote.
    assert_eq!(guest_cr4(u64::MAX, 0), PV_CR4_GUEST_MASK);
    let crs = GuestCrs {
        cr0: 0x8005_003b,
        cr2: 0,
        cr3: 0x5000,
        cr4: 0x620,
        cr4_writable: CR4_TSD | CR4_DE | CR4_FSGSBASE,
    };
    let mut v = crate::domain::Vcpu::default();
    // mov %rax, %cr4 with DE, PGE, PSE, OSXSAVE and FSGSBASE: DE and FSGSBASE (the policy has
    // them) are kept, OSXSAVE (hidden XSAVE) and the rest discarded, and it never faults (Xen's
    // `write_cr(4)`).
    let mut regs = Regs {
        rax: CR4_DE | (1 << 7) | (1 << 4) | (1 << 18) | (1 << 16),
        ..Regs::default()
    };
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x22, 0xe0], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::Done
    );
    assert_eq!((v.cr4, regs.rip), (CR4_DE | CR4_FSGSBASE, 3));
    let mut regs = Regs::default();
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x22, 0xe0], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::Done
    );
    assert_eq!(v.cr4, 0);
}

#[test]
fn privileged_instructions_xen_emulates() {
    let crs = GuestCrs {
        cr0: 0x8005_003b,
        cr2: 0,
        cr3: 0x5000,
        cr4: 0x620,
        cr4_writable: CR4_TSD | CR4_DE | CR4_FSGSBASE,
    };
    let mut v = crate::domain::Vcpu {
        fpu_ts: true,
        fs_base: 0x1234,
        ..Default::default()
    };
    let mut regs = Regs::default();
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x06], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::Done
    );
    assert!(!v.fpu_ts);
    assert_eq!(regs.rip, 2);
    // mov %rax, %cr0 with only TS changed: accepted; with PG cleared: refused.
    let mut regs = Regs {
        rax: 0x8005_003b | CR0_TS,
        ..Regs::default()
    };
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x22, 0xc0], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::Done
    );
    assert!(v.fpu_ts);
    let mut regs = Regs {
        rax: 0x0005_003b,
        ..Regs::default()
    };
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x22, 0xc0], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::No
    );
    let mut regs = Regs {
        rbx: 0x5000,
        ..Regs::default()
    };
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x22, 0xdb], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::NewCr3(0x5000)
    );
    // rdmsr FS_BASE; rdmsr of an MSR Xen does not answer is not emulated.
    let mut regs = Regs {
        rcx: 0xc000_0100,
        ..Regs::default()
    };
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x32], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::Done
    );
    assert_eq!((regs.rax, regs.rdx), (0x1234, 0));
    let mut regs = Regs {
        rcx: 0x1234_5678,
        ..Regs::default()
    };
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x32], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::No
    );
    // wrmsr SHADOW_GS_BASE, non-canonical refused.
    let mut regs = Regs {
        rcx: 0xc000_0102,
        rax: 0x5000,
        rdx: 0,
        ..Regs::default()
    };
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x30], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::Done
    );
    assert_eq!(v.gs_base_user, 0x5000);
    // Each accepted base write is counted, even of the value already there: after a selector
    // load zeroed the CPU's base (`mov %eax,%gs`), Linux writes the same base again.
    let writes = v.base_writes;
    let mut regs = Regs {
        rcx: 0xc000_0102,
        rax: 0x5000,
        ..Regs::default()
    };
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x30], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::Done
    );
    assert_eq!(v.base_writes, writes + 1);
    let mut regs = Regs {
        rcx: 0xc000_0102,
        rax: 0,
        rdx: 0x8000,
        ..Regs::default()
    };
    assert_eq!(
        privileged(&mut regs, &[0x0f, 0x30], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::No
    );
    // cli, hlt: not emulated.
    assert_eq!(
        privileged(&mut Regs::default(), &[0xfa], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::No
    );
    assert_eq!(
        privileged(&mut Regs::default(), &[0xf4], &mut v, crs, &mut {
            FakeHost::AMD
        }),
        Emulated::No
    );
}

/// A port space that records accesses and answers `0x1234_5678 + port`.
#[derive(Default)]
struct FakeBus {
    writes: Vec<(u16, u8, u32)>,
    reads: Vec<(u16, u8)>,
}

impl PortBus for FakeBus {
    fn port_read(&mut self, port: u16, bytes: u8) -> u32 {
        self.reads.push((port, bytes));
        0x1234_5678 + u32::from(port)
    }
    fn port_write(&mut self, port: u16, bytes: u8, value: u32) {
        self.writes.push((port, bytes, value));
    }
}

#[test]
fn port_io_decoding_covers_every_in_out_form() {
    let d = |code: &[u8]| decode_port_io(code, 0xcfc).map(|a| (a.port, a.bytes, a.dir, a.len));
    use IoDirection::{In, Out};
    assert_eq!(d(&[0xe4, 0x80]), Some((0x80, 1, In, 2)));
    assert_eq!(d(&[0xe5, 0x80]), Some((0x80, 4, In, 2)));
    assert_eq!(d(&[0x66, 0xe5, 0x80]), Some((0x80, 2, In, 3)));
    assert_eq!(d(&[0xe6, 0x80]), Some((0x80, 1, Out, 2)));
    assert_eq!(d(&[0xe7, 0x80]), Some((0x80, 4, Out, 2)));
    assert_eq!(d(&[0xec]), Some((0xcfc, 1, In, 1)));
    assert_eq!(d(&[0xed]), Some((0xcfc, 4, In, 1)));
    assert_eq!(d(&[0x66, 0xed]), Some((0xcfc, 2, In, 2)));
    assert_eq!(d(&[0xee]), Some((0xcfc, 1, Out, 1)));
    assert_eq!(d(&[0x66, 0xef]), Some((0xcfc, 2, Out, 2)));
    assert_eq!(
        d(&[0x48, 0xef]),
        Some((0xcfc, 4, Out, 2)),
        "REX.W changes nothing"
    );
    // Truncated imm8, ins/outs, other instructions: not decoded.
    assert_eq!(d(&[0xe4]), None);
    assert_eq!(d(&[0x6c]), None);
    assert_eq!(d(&[0x6f]), None);
    assert_eq!(d(&[0x0f, 0x06]), None);
    assert_eq!(d(&[0x66, 0x66, 0x66, 0x66, 0x66, 0xed]), None);
}

#[test]
fn iopl_levels_by_mode() {
    // Kernel mode is ring 1 (ring 0 with VMASST_TYPE_architectural_iopl); user mode ring 3.
    assert!(!iopl_ok(0, true, false) && iopl_ok(1, true, false) && iopl_ok(3, true, false));
    assert!(iopl_ok(0, true, true));
    assert!(!iopl_ok(2, false, false) && iopl_ok(3, false, false));
}

#[test]
fn hypervisor_ports_are_withheld_from_dom0_and_everything_from_domus() {
    for port in [
        0x20, 0x21, 0x40, 0x43, 0x61, 0x70, 0x71, 0xa0, 0xf4, 0x3f8, 0x3ff,
    ] {
        assert!(!ioports_access_permitted(true, port, 1), "{port:#x}");
    }
    assert!(ioports_access_permitted(true, 0x80, 1));
    assert!(ioports_access_permitted(true, 0xcf8, 4));
    // CONFIG_DATA is accessed for dom0 by the hypervisor, after its filter; a dword at
    // CONFIG_ADDRESS is dom0's own virtual register (Xen's `admin_io_okay`).
    assert!(!ioports_access_permitted(true, 0xcfc, 4));
    assert!(!ioports_access_permitted(true, 0xcff, 1));
    assert!(!admin_io_okay(true, 0xcf8, 4));
    assert!(admin_io_okay(true, 0xcf8, 2) && admin_io_okay(true, 0xcf9, 1));
    assert!(ioports_access_permitted(true, 0x3f0, 4));
    // A wide access that straddles a withheld port is refused whole.
    assert!(!ioports_access_permitted(true, 0x3f6, 4));
    assert!(!ioports_access_permitted(true, 0x1e, 4));
    assert!(
        !ioports_access_permitted(true, 0xfffe, 4),
        "past the port space"
    );
    assert!(!ioports_access_permitted(false, 0x80, 1));
}

#[test]
fn port_io_needs_iopl_then_reads_or_masks() {
    let mut bus = FakeBus::default();
    let mut dom0 = io_dom(true);
    dom0.vcpu_mut().iopl = 0;
    let mut regs = Regs {
        rax: 0xffff_ffff_ffff_ffff,
        rdx: 0x3f0,
        rip: 0x1000,
        ..Regs::default()
    };
    // IOPL 0: the #GP is the guest's.
    assert_eq!(
        port_io(&mut regs, &[0xed], &mut dom0, &mut bus),
        Emulated::No
    );
    assert_eq!(regs.rip, 0x1000);
    dom0.vcpu_mut().iopl = 1;
    // in %dx, %eax: real read, zero-extended into RAX.
    assert_eq!(
        port_io(&mut regs, &[0xed], &mut dom0, &mut bus),
        Emulated::Done
    );
    assert_eq!((regs.rax, regs.rip), (0x1234_5678 + 0x3f0, 0x1001));
    // in $0x80, %al keeps the upper bits.
    regs.rax = 0xaaaa_bbbb_cccc_dd00;
    assert_eq!(
        port_io(&mut regs, &[0xe4, 0x80], &mut dom0, &mut bus),
        Emulated::Done
    );
    assert_eq!(regs.rax, 0xaaaa_bbbb_cccc_ddf8);
    // A withheld port reads all-ones without touching the machine; writes are dropped.
    let before = bus.reads.len();
    regs.rax = 0;
    assert_eq!(
        port_io(&mut regs, &[0x66, 0xe5, 0x40], &mut dom0, &mut bus),
        Emulated::Done
    );
    assert_eq!((regs.rax, bus.reads.len()), (0xffff, before));
    regs.rdx = 0x3f8;
    regs.rax = 0x41;
    assert_eq!(
        port_io(&mut regs, &[0xee], &mut dom0, &mut bus),
        Emulated::Done
    );
    assert!(bus.writes.is_empty());
    // out %eax, %dx to the PCI configuration address: the domain's own, not the machine's.
    regs.rdx = 0xcf8;
    regs.rax = 0x1_8000_0000;
    assert_eq!(
        port_io(&mut regs, &[0xef], &mut dom0, &mut bus),
        Emulated::Done
    );
    assert!(bus.writes.is_empty());
    assert_eq!(dom0.pci_cf8, 0x8000_0000);
    // A domU with IOPL: every port reads all-ones.
    let mut domu = io_dom(false);
    regs.rax = 0;
    assert_eq!(
        port_io(&mut regs, &[0xe4, 0x80], &mut domu, &mut bus),
        Emulated::Done
    );
    assert_eq!(regs.rax, 0xff);
    // User mode needs IOPL 3.
    dom0.vcpu_mut().kernel_mode = false;
    assert_eq!(
        port_io(&mut regs, &[0xe4, 0x80], &mut dom0, &mut bus),
        Emulated::No
    );
    dom0.vcpu_mut().iopl = 3;
    assert_eq!(
        port_io(&mut regs, &[0xe4, 0x80], &mut dom0, &mut bus),
        Emulated::Done
    );
}

// -----------------------------------------------------------------------------------------
// PCI configuration space through 0xCF8/0xCFC: the write filter (`pci_cfg_ok`).

/// Bus:device.function 00:04.0 and 00:05.0 as CF8's bits 8..23 hold them.
const DEV4: u16 = 4 << 3;
const DEV5: u16 = 5 << 3;
/// Where the fake device 00:04.0 keeps its capabilities: a vendor-specific one, then MSI
/// (64-bit addresses, no per-vector masking: 14 bytes), then MSI-X (12 bytes).
const VNDR_POS: usize = 0x40;
const MSI_POS: usize = 0x50;
const MSIX_POS: usize = 0x70;

/// A machine's configuration mechanism #1 as QEMU's i440fx host bridge implements it
/// (`pci_host_config_write`, `pci_data_write`): CONFIG_ADDRESS takes dword writes only, and a
/// data access reaches register `(CONFIG_ADDRESS | port & 3) & 0xff` of the addressed
/// function, CONFIG_ADDRESS's low two bits included. Other ports answer as `FakeBus` does.
struct FakePci {
    cf8: u32,
    devices: Vec<(u16, [u8; 256])>,
    /// Every configuration write that reached a device: bdf, register, width, value.
    config_writes: Vec<(u16, u8, u8, u32)>,
    /// Writes to ports other than 0xCF8..0xCFF.
    other_writes: Vec<(u16, u8, u32)>,
    /// Port accesses of any kind, to bound the filter's work.
    accesses: usize,
}

impl FakePci {
    fn new() -> FakePci {
        FakePci {
            cf8: 0,
            devices: Vec::new(),
            config_writes: Vec::new(),
            other_writes: Vec::new(),
            accesses: 0,
        }
    }

    /// 00:04.0, a virtio-blk-like function with an I/O BAR, a vendor-specific capability,
    /// MSI and MSI-X; 00:05.0, a function without a capability list.
    fn with_msi_and_msix() -> FakePci {
        let mut d = [0u8; 256];
        d[0..4].copy_from_slice(&0x1001_1af4u32.to_le_bytes());
        d[0x04] = 0x05; // command: I/O, bus master
        d[0x06] = 0x10; // status: capability list
        d[0x10..0x14].copy_from_slice(&0xc001u32.to_le_bytes()); // BAR0, I/O
        d[0x34] = VNDR_POS as u8;
        d[VNDR_POS] = 0x09;
        d[VNDR_POS + 1] = MSI_POS as u8;
        d[MSI_POS] = 0x05;
        d[MSI_POS + 1] = MSIX_POS as u8;
        d[MSI_POS + 2] = 0x80; // control: 64-bit address capable, MSI disabled
        d[MSIX_POS] = 0x11;
        d[MSIX_POS + 1] = 0;
        d[MSIX_POS + 2] = 0x03; // control: table size 4, MSI-X disabled
        d[MSIX_POS + 4] = 0x01; // table in BAR1 at 0
        d[MSIX_POS + 8] = 0x01; // PBA in BAR1 at 0x800
        d[MSIX_POS + 9] = 0x08;
        let mut plain = [0u8; 256];
        plain[0..4].copy_from_slice(&0x1237_8086u32.to_le_bytes());
        let mut pci = FakePci::new();
        pci.devices.push((DEV4, d));
        pci.devices.push((DEV5, plain));
        pci
    }

    fn config(&self, bdf: u16) -> &[u8; 256] {
        &self
            .devices
            .iter()
            .find(|(b, _)| *b == bdf)
            .expect("device")
            .1
    }

    fn msi_and_msix_bytes(&self) -> Vec<u8> {
        let d = self.config(DEV4);
        [&d[MSI_POS..MSI_POS + 14], &d[MSIX_POS..MSIX_POS + 12]].concat()
    }

    /// The function and register a data-port access at `port` reaches, if any.
    fn target(&mut self, port: u16) -> Option<(usize, usize)> {
        if self.cf8 & 0x8000_0000 == 0 {
            return None;
        }
        let bdf = ((self.cf8 >> 8) & 0xffff) as u16;
        let reg = ((self.cf8 | u32::from(port & 3)) & 0xff) as usize;
        let i = self.devices.iter().position(|(b, _)| *b == bdf)?;
        Some((i, reg))
    }
}

impl PortBus for FakePci {
    fn port_read(&mut self, port: u16, bytes: u8) -> u32 {
        self.accesses += 1;
        match port {
            0xcf8 if bytes == 4 => self.cf8,
            0xcfc..=0xcff => match self.target(port) {
                Some((i, reg)) => {
                    let d = &self.devices[i].1;
                    (0..usize::from(bytes)).fold(0, |v, k| {
                        v | u32::from(*d.get(reg + k).unwrap_or(&0xff)) << (8 * k)
                    })
                }
                None => u32::MAX >> (32 - 8 * u32::from(bytes)),
            },
            _ => 0x1234_5678 + u32::from(port),
        }
    }

    fn port_write(&mut self, port: u16, bytes: u8, value: u32) {
        self.accesses += 1;
        match port {
            0xcf8 if bytes == 4 => self.cf8 = value,
            0xcfc..=0xcff => {
                if let Some((i, reg)) = self.target(port) {
                    let (bdf, d) = &mut self.devices[i];
                    for k in 0..usize::from(bytes) {
                        if let Some(b) = d.get_mut(reg + k) {
                            *b = (value >> (8 * k)) as u8;
                        }
                    }
                    let value = value & (u32::MAX >> (32 - 8 * u32::from(bytes)));
                    self.config_writes.push((*bdf, reg as u8, bytes, value));
                }
            }
            _ => self.other_writes.push((port, bytes, value)),
        }
    }
}

/// dom0 with its virtual IOPL raised, as after `PHYSDEVOP_set_iopl(1)`.
fn io_dom(privileged: bool) -> crate::domain::Domain {
    let mut d = crate::domain::Domain::new(
        u16::from(!privileged),
        privileged,
        16,
        16,
        crate::mm::Mfn(5),
        crate::mm::Mfn(6),
    );
    d.vcpu_mut().iopl = 1;
    d
}

/// Runs one `in`/`out` (`code`) with DX = `dx` and RAX = `rax`; returns RAX after it.
fn io(
    dom: &mut crate::domain::Domain,
    bus: &mut dyn PortBus,
    code: &[u8],
    dx: u16,
    rax: u32,
) -> u32 {
    let mut regs = Regs {
        rax: rax.into(),
        rdx: dx.into(),
        ..Regs::default()
    };
    assert_eq!(port_io(&mut regs, code, dom, bus), Emulated::Done);
    assert_eq!(regs.rip, code.len() as u64);
    regs.rax as u32
}

const OUTL: &[u8] = &[0xef];
const OUTW: &[u8] = &[0x66, 0xef];
const OUTB: &[u8] = &[0xee];
const INL: &[u8] = &[0xed];
const INW: &[u8] = &[0x66, 0xed];

/// `out` of `value` (`code` gives the width) to register `reg` of `bdf`, through 0xCF8 and
/// the data port that selects `reg`'s byte in its dword.
fn conf_out(
    dom: &mut crate::domain::Domain,
    bus: &mut dyn PortBus,
    bdf: u16,
    reg: usize,
    code: &[u8],
    value: u32,
) {
    let cf8 = 0x8000_0000 | u32::from(bdf) << 8 | (reg as u32 & 0xfc);
    io(dom, bus, OUTL, 0xcf8, cf8);
    io(dom, bus, code, 0xcfc + (reg as u16 & 3), value);
}

fn conf_in(
    dom: &mut crate::domain::Domain,
    bus: &mut dyn PortBus,
    bdf: u16,
    reg: usize,
    code: &[u8],
) -> u32 {
    let cf8 = 0x8000_0000 | u32::from(bdf) << 8 | (reg as u32 & 0xfc);
    io(dom, bus, OUTL, 0xcf8, cf8);
    io(dom, bus, code, 0xcfc + (reg as u16 & 3), 0)
}

#[test]
fn dom0_writes_to_msi_and_msix_capabilities_are_dropped() {
    let mut pci = FakePci::with_msi_and_msix();
    let mut dom0 = io_dom(true);
    let before = pci.msi_and_msix_bytes();
    // MSI: address (low, high), data (aimed at the NMI delivery mode), then the enable bit,
    // as a word and as the control register's low byte alone.
    conf_out(&mut dom0, &mut pci, DEV4, MSI_POS + 4, OUTL, 0xfee0_0000);
    conf_out(&mut dom0, &mut pci, DEV4, MSI_POS + 8, OUTL, 0);
    conf_out(&mut dom0, &mut pci, DEV4, MSI_POS + 0xc, OUTW, 0x0402);
    conf_out(&mut dom0, &mut pci, DEV4, MSI_POS + 2, OUTW, 0x0081);
    conf_out(&mut dom0, &mut pci, DEV4, MSI_POS + 2, OUTB, 0x81);
    conf_out(&mut dom0, &mut pci, DEV4, MSI_POS, OUTL, 0x0081_7005);
    // MSI-X: the control word (enable, function mask clear), its high byte, the whole
    // first dword, the table and PBA offsets.
    conf_out(&mut dom0, &mut pci, DEV4, MSIX_POS + 2, OUTW, 0x8003);
    conf_out(&mut dom0, &mut pci, DEV4, MSIX_POS + 3, OUTB, 0x80);
    conf_out(&mut dom0, &mut pci, DEV4, MSIX_POS, OUTL, 0x8003_0011);
    conf_out(&mut dom0, &mut pci, DEV4, MSIX_POS + 4, OUTL, 0x100);
    conf_out(&mut dom0, &mut pci, DEV4, MSIX_POS + 8, OUTL, 0x100);
    assert_eq!(pci.msi_and_msix_bytes(), before, "{:x?}", pci.config_writes);
    assert!(pci.config_writes.is_empty(), "{:x?}", pci.config_writes);
    // Reads still give the device's registers.
    assert_eq!(
        conf_in(&mut dom0, &mut pci, DEV4, MSI_POS, INL),
        0x0080_7005
    );
    assert_eq!(
        conf_in(&mut dom0, &mut pci, DEV4, MSIX_POS + 2, INW),
        0x0003
    );
}

#[test]
fn dom0_writes_elsewhere_in_configuration_space_pass() {
    let mut pci = FakePci::with_msi_and_msix();
    let mut dom0 = io_dom(true);
    // A BAR (sized as a driver does), the command register, the vendor-specific
    // capability, the bytes after the 14-byte MSI structure, another function's registers.
    conf_out(&mut dom0, &mut pci, DEV4, 0x10, OUTL, 0xffff_ffff);
    conf_out(&mut dom0, &mut pci, DEV4, 0x10, OUTL, 0xc041);
    conf_out(&mut dom0, &mut pci, DEV4, 0x04, OUTW, 0x0407);
    conf_out(&mut dom0, &mut pci, DEV4, VNDR_POS + 4, OUTL, 0xabcd);
    conf_out(&mut dom0, &mut pci, DEV4, MSI_POS + 0xe, OUTW, 0x1234);
    conf_out(&mut dom0, &mut pci, DEV5, 0x50, OUTL, 0x5555_aaaa);
    assert_eq!(
        pci.config_writes,
        vec![
            (DEV4, 0x10, 4, 0xffff_ffff),
            (DEV4, 0x10, 4, 0xc041),
            (DEV4, 0x04, 2, 0x0407),
            (DEV4, 0x44, 4, 0xabcd),
            (DEV4, 0x5e, 2, 0x1234),
            (DEV5, 0x50, 4, 0x5555_aaaa),
        ]
    );
    assert_eq!(conf_in(&mut dom0, &mut pci, DEV4, 0x10, INL), 0xc041);
    assert_eq!(conf_in(&mut dom0, &mut pci, DEV4, 0x04, INW), 0x0407);
}

#[test]
fn a_looping_capability_list_does_not_hang_the_filter() {
    // 00:04.0's list runs 0x40 -> 0x48 -> 0x40 -> ... and never names MSI or MSI-X.
    let mut d = [0u8; 256];
    d[0x06] = 0x10;
    d[0x34] = 0x40;
    d[0x40] = 0x09;
    d[0x41] = 0x48;
    d[0x48] = 0x01;
    d[0x49] = 0x40;
    let mut pci = FakePci::new();
    pci.devices.push((DEV4, d));
    let mut dom0 = io_dom(true);
    conf_out(&mut dom0, &mut pci, DEV4, 0x4c, OUTL, 0x1111_2222);
    assert_eq!(pci.config_writes, vec![(DEV4, 0x4c, 4, 0x1111_2222)]);
    // Xen's `pci_find_cap_offset` follows at most 48 links: a few hundred port accesses.
    assert!(pci.accesses < 500, "{} port accesses", pci.accesses);
    // A list that points below the header, or at all-ones, ends at once.
    pci.devices[0].1[0x49] = 0x10;
    conf_out(&mut dom0, &mut pci, DEV4, 0x4c, OUTL, 0x3333_4444);
    assert_eq!(pci.config_writes.len(), 2);
}

#[test]
fn config_address_is_per_domain_and_its_spare_bits_cannot_aim_a_write_into_msi() {
    let mut pci = FakePci::with_msi_and_msix();
    let mut dom0 = io_dom(true);
    let before = pci.msi_and_msix_bytes();
    // CF8 = the dword just below MSI's, with the two reserved low bits set: QEMU adds them
    // to the register number, so a dword write would land on 0x4f..0x52, the MSI control
    // register's enable bit included. The filter must judge the register the write reaches.
    let cf8 = 0x8000_0000 | u32::from(DEV4) << 8 | (MSI_POS as u32 - 4) | 3;
    io(&mut dom0, &mut pci, OUTL, 0xcf8, cf8);
    io(&mut dom0, &mut pci, OUTL, 0xcfc, 0x0101_0101);
    assert_eq!(pci.msi_and_msix_bytes(), before, "{:x?}", pci.config_writes);
    // dom0 reads back the CONFIG_ADDRESS it wrote (Xen's per-domain `pci_cf8`).
    assert_eq!(io(&mut dom0, &mut pci, INL, 0xcf8, 0), cf8);
    // Bits 24..27 (AMD's extended register number) do not move the write out of the
    // filter's sight either.
    let cf8 = 0x8f00_0000 | u32::from(DEV4) << 8 | (MSIX_POS as u32);
    io(&mut dom0, &mut pci, OUTL, 0xcf8, cf8);
    io(&mut dom0, &mut pci, OUTW, 0xcfe, 0x8003);
    assert_eq!(pci.msi_and_msix_bytes(), before, "{:x?}", pci.config_writes);
}

#[test]
fn partial_and_straddling_data_port_writes_are_filtered_piece_by_piece() {
    let mut pci = FakePci::with_msi_and_msix();
    let mut dom0 = io_dom(true);
    let before = pci.msi_and_msix_bytes();
    // A dword at 0xcfd is split as Xen's `guest_io_write` splits it: a word at register
    // +1, a byte at +3 (each judged on its own), and a byte for port 0xd00, dropped.
    let cf8 = 0x8000_0000 | u32::from(DEV4) << 8 | MSI_POS as u32;
    io(&mut dom0, &mut pci, OUTL, 0xcf8, cf8);
    io(&mut dom0, &mut pci, &[0xef], 0xcfd, 0x0101_0101);
    assert_eq!(pci.msi_and_msix_bytes(), before, "{:x?}", pci.config_writes);
    let cf8 = 0x8000_0000 | u32::from(DEV4) << 8 | 0x10;
    io(&mut dom0, &mut pci, OUTL, 0xcf8, cf8);
    io(&mut dom0, &mut pci, &[0xef], 0xcfd, 0xaabb_ccdd);
    assert_eq!(
        pci.config_writes,
        vec![(DEV4, 0x11, 2, 0xccdd), (DEV4, 0x13, 1, 0xbb)]
    );
    assert!(pci.other_writes.is_empty(), "{:x?}", pci.other_writes);
}

#[test]
fn a_domu_with_iopl_has_a_config_address_but_no_configuration_space() {
    let mut pci = FakePci::with_msi_and_msix();
    let mut domu = io_dom(false);
    let cf8 = 0x8000_0000 | u32::from(DEV4) << 8;
    io(&mut domu, &mut pci, OUTL, 0xcf8, cf8);
    assert_eq!(io(&mut domu, &mut pci, INL, 0xcf8, 0), cf8);
    assert_eq!(io(&mut domu, &mut pci, INL, 0xcfc, 0), 0xffff_ffff);
    io(&mut domu, &mut pci, OUTL, 0xcfc, 0);
    assert!(pci.config_writes.is_empty());
    assert_eq!(pci.accesses, 0, "a domU never reaches the machine's ports");
}

#[test]
fn the_msi_structure_is_as_long_as_its_control_word_says() {
    // 32-bit addresses with per-vector masking: control, address, data, mask bits at +0xc,
    // pending bits at +0x10; the structure ends at +0x14.
    let mut pci = FakePci::with_msi_and_msix();
    pci.devices[0].1[MSI_POS + 2] = 0x00;
    pci.devices[0].1[MSI_POS + 3] = 0x01;
    let mut dom0 = io_dom(true);
    conf_out(&mut dom0, &mut pci, DEV4, MSI_POS + 0xc, OUTL, 0);
    conf_out(&mut dom0, &mut pci, DEV4, MSI_POS + 0x10, OUTL, 0);
    assert!(pci.config_writes.is_empty(), "{:x?}", pci.config_writes);
    conf_out(&mut dom0, &mut pci, DEV4, MSI_POS + 0x14, OUTL, 7);
    assert_eq!(pci.config_writes, vec![(DEV4, 0x64, 4, 7)]);
    // Without a capability list (status bit clear) nothing is an MSI structure.
    pci.devices[0].1[0x06] = 0;
    conf_out(&mut dom0, &mut pci, DEV4, MSI_POS + 4, OUTL, 0xfee0_0000);
    assert_eq!(pci.config_writes.len(), 2);
}

#[test]
fn soft_int_decoding() {
    assert_eq!(soft_int_vector(0x80 * 8 + 2), Some(0x80));
    assert_eq!(soft_int_vector(0), None);
    assert_eq!(soft_int_vector(0x80 * 8 + 3), None);
    // Kernel mode may raise DPL 1..3 vectors, user mode only DPL 3 (Xen's `permit_softint`).
    assert!(!permit_softint(0, true) && permit_softint(1, true) && permit_softint(3, true));
    assert!(!permit_softint(2, false) && permit_softint(3, false));
}

fn all_ones(_leaf: u32, _subleaf: u32) -> [u32; 4] {
    [u32::MAX; 4]
}

#[test]
fn the_pv_cpuid_policy_hides_what_xen_hides_from_pv_guests() {
    let bit = |n: u32| 1u32 << n;
    let [_, b, c, d] = cpuid(1, 0, all_ones);
    // PSE, PGE, PSE36, MTRR, VME hidden (Xen's "S"); APIC hidden too; MCE, MCA shown (vMCE).
    for n in [1, 3, 9, 12, 13, 17, 21, 29, 31] {
        assert_eq!(d & bit(n), 0, "leaf 1 edx bit {n}");
    }
    for n in [0, 4, 5, 6, 7, 8, 11, 14, 15, 16, 19, 23, 24, 25, 26] {
        assert_ne!(d & bit(n), 0, "leaf 1 edx bit {n}");
    }
    // MONITOR, VMX, SMX, PCID, X2APIC, TSC_DEADLINE, XSAVE, OSXSAVE, AVX hidden; SSE3..SSE4.2,
    // CX16, POPCNT, HYPERVISOR shown.
    for n in [3, 5, 6, 17, 21, 24, 26, 27, 28] {
        assert_eq!(c & bit(n), 0, "leaf 1 ecx bit {n}");
    }
    for n in [0, 9, 13, 19, 20, 23, 31] {
        assert_ne!(c & bit(n), 0, "leaf 1 ecx bit {n}");
    }
    assert_eq!(b >> 24, 0, "no APIC ID");
    // 1 GiB pages and SVM hidden; SYSCALL, NX, LM shown.
    let [_, _, c, d] = cpuid(0x8000_0001, 0, all_ones);
    assert_eq!(d & bit(26), 0);
    assert_eq!(c & bit(2), 0);
    assert_eq!(
        d & (bit(11) | bit(20) | bit(29)),
        bit(11) | bit(20) | bit(29)
    );
    // AMD's copy of PSE and PGE follows leaf 1.
    assert_eq!(d & (bit(3) | bit(13)), 0);
    // Leaf 7: FSGSBASE shown (as Xen's "A"); no SMEP, SMAP, INVPCID, AVX2; no subleaf 1.
    let [a, b, ..] = cpuid(7, 0, all_ones);
    assert_eq!(a, 0);
    assert_ne!(b & bit(0), 0, "leaf 7 ebx FSGSBASE");
    for n in [5, 7, 10, 20] {
        assert_eq!(b & bit(n), 0, "leaf 7 ebx bit {n}");
    }
    assert_eq!(cpuid(7, 1, all_ones), [0; 4]);
    // Emptied leaves.
    for leaf in [5, 6, 0xa, 0xb, 0xd, 0x8000_0007, 0x8000_000a] {
        assert_eq!(cpuid(leaf, 0, all_ones), [0; 4], "leaf {leaf:#x}");
    }
    // Untouched leaves are the CPU's; hypervisor leaves are Xen's.
    assert_eq!(cpuid(0, 0, all_ones), [u32::MAX; 4]);
    assert_eq!(cpuid(0x8000_0002, 0, all_ones), [u32::MAX; 4]);
    assert_eq!(cpuid(0x4000_0001, 0, all_ones), [(4 << 16) | 17, 0, 0, 0]);
}

#[test]
fn cli_and_sti_are_no_ops_when_the_virtual_iopl_allows_them() {
    let mut d = io_dom(false);
    let at = |rip| Regs {
        rip,
        rflags: 0x202,
        ..Regs::default()
    };
    // Linux raises its IOPL to 1 (`PHYSDEVOP_set_iopl`): its kernel's cli/sti are skipped.
    for code in [&[0xfa, 0x65][..], &[0xfb], &[0x48, 0xfa]] {
        let mut regs = at(0x1000);
        assert_eq!(cli_sti(&mut regs, code, &d), Emulated::Done, "{code:x?}");
        let len = if code[0] == 0x48 { 2 } else { 1 };
        assert_eq!(
            regs,
            Regs {
                rip: 0x1000 + len,
                ..at(0x1000)
            }
        );
    }
    // Not cli/sti, or a truncated fetch.
    for code in [&[0xf4][..], &[0x48], &[], &[0x66, 0xfa]] {
        assert_eq!(cli_sti(&mut at(0x1000), code, &d), Emulated::No);
    }
    // User mode needs IOPL 3; kernel mode at IOPL 0 needs `architectural_iopl`.
    d.vcpu_mut().kernel_mode = false;
    assert_eq!(cli_sti(&mut at(0x1000), &[0xfa], &d), Emulated::No);
    d.vcpu_mut().iopl = 3;
    assert_eq!(cli_sti(&mut at(0x1000), &[0xfa], &d), Emulated::Done);
    d.vcpu_mut().kernel_mode = true;
    d.vcpu_mut().iopl = 0;
    let mut regs = at(0x1000);
    assert_eq!(cli_sti(&mut regs, &[0xfb], &d), Emulated::No);
    assert_eq!(
        regs.rip, 0x1000,
        "refused: the #GP is the guest's, at the instruction"
    );
    d.vm_assist |= 1 << hypercall_abi::xen::VMASST_TYPE_architectural_iopl;
    assert_eq!(cli_sti(&mut at(0x1000), &[0xfb], &d), Emulated::Done);
}
