//! Negative `update_va_mapping` cases, the cache-attribute sweep, multicalls of the memory
//! hypercalls, and the I/O-frame policy (which frames a domain may map, and how).

use guest_kernel::paging::{make_entry, PTE_A, PTE_P};
use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_END;
use hypercall_abi::xen::{
    __HYPERVISOR_mmu_update, __HYPERVISOR_mmuext_op, __HYPERVISOR_update_va_mapping, DOMID_IO,
    DOMID_SELF, MMUEXT_PIN_L2_TABLE, MMUEXT_TLB_FLUSH_LOCAL, UVMF_INVLPG, UVMF_TLB_FLUSH,
};

use super::*;
use crate::kernel::hypercall::{self as hc, ptr as gp};

pub(super) fn update_va_mapping_cases(s: &mut Suite, e: &Env) {
    let [a, b, ..] = e.p;

    s.run("update_va_mapping.map_unowned_frame", || {
        let rc = uvm(a.va, data_pte(e.unowned, a.pte), UVMF_INVLPG);
        let r = restore(&a);
        values!("rc={rc}{r}")
    });

    s.run("update_va_mapping.own_l1_writable", || {
        let rc = uvm(b.va, make_entry(e.l1, DATA_FLAGS), UVMF_INVLPG);
        let r = restore(&b);
        values!("rc={rc}{r}")
    });

    // Frames beyond RAM are I/O: dom0 may map them, made uncachable.
    s.run("update_va_mapping.beyond_ram_frame", || {
        let rc = uvm(b.va, make_entry(e.max_ram, PTE_P | PTE_A), UVMF_INVLPG);
        let flags = flags_of(l1_value(&b));
        let r = restore(&b);
        values!("rc={rc} flags={flags:#x}{r}")
    });

    s.run("update_va_mapping.vga_frame_writable", || {
        let rc = uvm(b.va, make_entry(VGA_MFN, DATA_FLAGS), UVMF_INVLPG);
        let flags = flags_of(l1_value(&b));
        let r = restore(&b);
        values!("rc={rc} flags={flags:#x}{r}")
    });

    // The eight PAT indexes (PWT, PCD, PAT bits) on an I/O frame: cachable types become UC.
    s.run("update_va_mapping.io_frame_cache_attrs", || {
        let (rcs, idx) = cache_attr_sweep(&b, VGA_MFN);
        let r = restore(&b);
        values!("rc={rcs} pat_index={idx}{r}")
    });

    // ... and on our own RAM, where dom0 (which has I/O capabilities) may choose any.
    s.run("update_va_mapping.ram_cache_attrs", || {
        let (rcs, idx) = cache_attr_sweep(&b, b.mfn);
        let r = restore(&b);
        values!("rc={rcs} pat_index={idx}{r}")
    });

    // shared_info is a Xen heap page: only write-back mappings ("Attempt to change cache
    // attributes of Xen heap page").
    s.run("update_va_mapping.shared_info_cache_attrs", || {
        let map = |attrs| uvm(b.va, make_entry(e.shinfo, DATA_FLAGS | attrs), UVMF_INVLPG);
        let pcd = map(PCD);
        let wc = map(PAT);
        let wb = map(0);
        let r = restore(&b);
        values!("uc_minus={pcd} wc={wc} wb={wb}{r}")
    });

    s.run("update_va_mapping.local_apic_frame", || {
        let rc = uvm(
            b.va,
            make_entry(LAPIC_MFN, PTE_P | PTE_A | PCD | PWT),
            UVMF_INVLPG,
        );
        let r = restore(&b);
        values!("rc={rc}{r}")
    });

    s.run("update_va_mapping.ioapic_frame", || {
        let rc = uvm(
            b.va,
            make_entry(IOAPIC_MFN, PTE_P | PTE_A | PCD | PWT),
            UVMF_INVLPG,
        );
        let r = restore(&b);
        values!("rc={rc}{r}")
    });

    s.run("update_va_mapping.beyond_paddr_bits", || {
        let rc = uvm(
            b.va,
            make_entry(BEYOND_PADDR_MFN, PTE_P | PTE_A),
            UVMF_INVLPG,
        );
        let r = restore(&b);
        values!("rc={rc}{r}")
    });

    // The all-ones frame is INVALID_MFN: -EINVAL rather than -EPERM.
    s.run("update_va_mapping.all_ones_frame", || {
        let rc = uvm(b.va, make_entry(ALL_ONES_MFN, PTE_P | PTE_A), UVMF_INVLPG);
        let r = restore(&b);
        values!("rc={rc}{r}")
    });

    // A not-present entry is not checked at all: stored as given.
    s.run("update_va_mapping.not_present_garbage", || {
        let garbage = 0x7ff0_0dea_dbee_f000 | 0xffe;
        let rc = uvm(b.va, garbage, UVMF_INVLPG);
        let stored = l1_value(&b) == garbage;
        let r = restore(&b);
        values!("rc={rc} stored_as_given={}{r}", u8::from(stored))
    });

    // Flush type 3 is neither TLB_FLUSH nor INVLPG: no flush, and the bits above are not read.
    s.run("update_va_mapping.flush_type_3", || {
        let rc = uvm(a.va, data_pte(a.mfn, a.pte), 3 | UNMAPPED);
        values!("{rc}")
    });

    s.run("update_va_mapping.no_flush_garbage_mask", || {
        let rc = uvm(a.va, data_pte(a.mfn, a.pte), UNMAPPED);
        values!("{rc}")
    });

    // The flush runs even after a failed update, and a vCPU mask's result replaces the
    // update's error (`__do_update_va_mapping`).
    s.run("update_va_mapping.failed_update_mask_ok", || {
        let mask = 1u64;
        let rc = uvm(UNMAPPED, data_pte(a.mfn, 0), UVMF_INVLPG | gp(&mask));
        values!("{rc}")
    });

    s.run("update_va_mapping.failed_update_mask_unmapped", || {
        let rc = uvm(UNMAPPED, data_pte(a.mfn, 0), UVMF_TLB_FLUSH | UNMAPPED);
        values!("{rc}")
    });

    s.run("update_va_mapping.hypervisor_virt_end", || {
        let rc = uvm(HYPERVISOR_VIRT_END, data_pte(a.mfn, 0), UVMF_INVLPG);
        values!("{rc}")
    });

    s.run("update_va_mapping_otherdomain.no_such_domain", || {
        let rc = uvm_other(&b, data_pte(b.mfn, b.pte), NO_SUCH_DOMAIN);
        let r = restore(&b);
        values!("rc={rc}{r}")
    });

    s.run("update_va_mapping_otherdomain.own_id", || {
        let rc = uvm_other(&b, data_pte(b.mfn, b.pte), 0);
        let r = restore(&b);
        values!("rc={rc}{r}")
    });

    s.run("update_va_mapping_otherdomain.domid_io_own_frame", || {
        let rc = uvm_other(&b, make_entry(b.mfn, PTE_P | PTE_A), DOMID_IO);
        let r = restore(&b);
        values!("rc={rc}{r}")
    });

    s.run("update_va_mapping_otherdomain.domid_io_vga_frame", || {
        let rc = uvm_other(&b, make_entry(VGA_MFN, PTE_P | PTE_A), DOMID_IO);
        let r = restore(&b);
        values!("rc={rc}{r}")
    });
}

/// Maps scratch page `m` to `mfn` with each of the 8 PAT indexes; the return codes and the index
/// each entry ended up with.
pub(super) fn cache_attr_sweep(m: &ScratchMap, mfn: u64) -> (Values, Values) {
    let mut rcs = Values::new();
    let mut idx = Values::new();
    for k in 0..8u64 {
        let attrs = (if k & 1 != 0 { PWT } else { 0 })
            | (if k & 2 != 0 { PCD } else { 0 })
            | (if k & 4 != 0 { PAT } else { 0 });
        let rc = uvm(m.va, make_entry(mfn, DATA_FLAGS | attrs), UVMF_INVLPG);
        let sep = if k == 0 { "" } else { "," };
        let _ = core::fmt::Write::write_fmt(&mut rcs, format_args!("{sep}{rc}"));
        let got = pat_index(l1_value(m));
        let _ = core::fmt::Write::write_fmt(&mut idx, format_args!("{sep}{got}"));
    }
    (rcs, idx)
}

pub(super) fn multicall_cases(s: &mut Suite, e: &Env) {
    let [a, b, c, ..] = e.p;

    // Page-table calls in a multicall: each entry's result and `*done`, failures do not stop it.
    s.run("multicall.memory_ops_mixed", || {
        let ok = [normal(a.pte_maddr, data_pte(a.mfn, a.pte))];
        let bad = [normal(b.pte_maddr, make_entry(e.l4, DATA_FLAGS))];
        let pin = [ext(MMUEXT_PIN_L2_TABLE, c.mfn, 0)];
        let flush = [ext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0)];
        let mut done = [SENTINEL; 4];
        let args =
            |list: u64, done: &mut u32, fd: u16| [list, 1, gp(done as *mut u32), fd.into(), 0, 0];
        let mut calls = [
            entry(
                __HYPERVISOR_mmu_update,
                args(gp(ok.as_ptr()), &mut done[0], DOMID_SELF),
            ),
            entry(
                __HYPERVISOR_mmu_update,
                args(gp(bad.as_ptr()), &mut done[1], DOMID_SELF),
            ),
            entry(
                __HYPERVISOR_mmuext_op,
                args(gp(pin.as_ptr()), &mut done[2], DOMID_SELF),
            ),
            entry(
                __HYPERVISOR_update_va_mapping,
                [UNMAPPED, data_pte(a.mfn, 0), UVMF_INVLPG, 0, 0, 0],
            ),
            entry(
                __HYPERVISOR_mmuext_op,
                args(gp(flush.as_ptr()), &mut done[3], DOMID_SELF),
            ),
            entry(
                __HYPERVISOR_mmu_update,
                [UNMAPPED, 1, 0, DOMID_SELF.into(), 0, 0],
            ),
        ];
        // SAFETY: every list and `done` pointer is live for the call (or deliberately unmapped);
        // the only mapping that can change is scratch page a's, which is put back as it was.
        let rc = unsafe { hc::multicall(&mut calls) };
        let r = restore(&a).and(restore(&b));
        let res: [i64; 6] = core::array::from_fn(|i| calls[i].result as i64);
        values!(
            "rc={rc} results={},{},{},{},{},{} done={},{},{},{}{r}",
            res[0],
            res[1],
            res[2],
            res[3],
            res[4],
            res[5],
            done[0],
            done[1],
            done[2],
            done[3]
        )
    });
}

/// The I/O frames dom0 may not map although they are inside its I/O range: the MSI window
/// (withheld on every machine by `dom0_setup_permissions`).
///
/// Not here, because our hypervisor's arch layer does not register them yet: Xen 4.17 on this
/// QEMU machine also withholds the HyperTransport window below 1 TiB (an AMD CPU of family < 0x17)
/// and maps the I/O APIC and the HPET read-only when asked for writable (`mmio_ro_ranges`).
pub(super) fn io_policy_cases(s: &mut Suite, e: &Env) {
    let b = e.p[1];
    // Xen maps the I/O APIC and the HPET read-only for dom0 even when asked for writable
    // (`mmio_ro_ranges`): the request succeeds with RW dropped.
    s.run("update_va_mapping.ioapic_frame_writable", || {
        let rc = uvm(
            b.va,
            make_entry(IOAPIC_MFN, DATA_FLAGS | PCD | PWT),
            UVMF_INVLPG,
        );
        let flags = flags_of(l1_value(&b));
        let r = restore(&b);
        values!("rc={rc} flags={flags:#x}{r}")
    });

    s.run("update_va_mapping.hpet_frame_writable", || {
        let rc = uvm(
            b.va,
            make_entry(0xfed00, DATA_FLAGS | PCD | PWT),
            UVMF_INVLPG,
        );
        let flags = flags_of(l1_value(&b));
        let r = restore(&b);
        values!("rc={rc} flags={flags:#x}{r}")
    });

    // The HyperTransport window (0xfd_0000_0000..) is withheld from dom0 on the AMD CPU family
    // QEMU's `-cpu max` reports under TCG.
    s.run("update_va_mapping.ht_range_frame", || {
        let rc = uvm(
            b.va,
            make_entry(0xfd_0000_0000 >> 12, PTE_P | PTE_A),
            UVMF_INVLPG,
        );
        let r = restore(&b);
        values!("rc={rc}{r}")
    });

    s.run("update_va_mapping.msi_window_frame", || {
        let rc = uvm(
            b.va,
            make_entry(0xfeef0, PTE_P | PTE_A | PCD | PWT),
            UVMF_INVLPG,
        );
        let r = restore(&b);
        values!("rc={rc}{r}")
    });
}
