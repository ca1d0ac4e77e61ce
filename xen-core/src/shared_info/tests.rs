//! Tests of the shared_info view: offsets from the ABI's layout, the locked bit operations, and
//! the version protocol of the time records.

use core::mem::size_of;

use hypercall_abi::xen::SharedInfo;
use zerocopy::{FromZeros, IntoBytes};

use super::*;
use crate::time::Clock;

#[test]
fn offsets_follow_the_shared_info_layout() {
    assert_eq!(offsets::pending_word(0), 2048);
    assert_eq!(offsets::pending_word(65), 2056);
    assert_eq!(offsets::mask_word(4095), 2560 + 63 * 8);
    assert_eq!(offsets::pending_sel(0), 8);
    assert_eq!(offsets::pending_sel(1), 72);
    assert_eq!(offsets::upcall_pending(2), 128);
    assert_eq!(offsets::upcall_mask(0), 1);
    assert_eq!(offsets::cr2(0), 16);
    assert_eq!(offsets::vcpu_time(1), 64 + 32);
    assert_eq!(
        (offsets::WC_VERSION, offsets::WC_SEC, offsets::WC_NSEC),
        (3072, 3076, 3080)
    );
}

#[test]
fn the_view_reads_what_it_writes_in_the_named_fields() {
    let mut page = [0u8; 4096];
    let mut v = SharedInfoPage(&mut page);
    assert!(!v.test_and_set_evtchn_pending(70));
    assert!(v.test_and_set_evtchn_pending(70));
    assert!(v.evtchn_pending(70) && !v.evtchn_pending(71));
    assert!(!v.test_and_set_evtchn_mask(5) && v.evtchn_masked(5));
    assert!(v.test_and_clear_evtchn_mask(5) && !v.evtchn_masked(5));
    assert!(!v.test_and_set_pending_sel(1, 3) && v.pending_sel(1, 3));
    assert!(!v.test_and_set_upcall_pending(0) && v.upcall_pending(0));
    v.set_upcall_mask(0, true);
    v.set_cr2(0, 0xdead_b000);
    assert!(v.upcall_mask(0) && v.cr2(0) == 0xdead_b000);
    assert_eq!(page[2048 + 70 / 8], 1 << (70 % 8));
    assert_eq!(page[72], 1 << 3);
    assert_eq!((page[0], page[1]), (1, 1));
}

/// Records every store, to check the order of the version protocol.
struct Recorder {
    bytes: Vec<u8>,
    log: Vec<(usize, u64)>,
}

impl SharedRead for Recorder {
    fn read_u8(&self, offset: usize) -> u8 {
        self.bytes.read_u8(offset)
    }
    fn read_u32(&self, offset: usize) -> u32 {
        self.bytes.read_u32(offset)
    }
    fn read_u64(&self, offset: usize) -> u64 {
        self.bytes.read_u64(offset)
    }
}

impl SharedMemory for Recorder {
    fn write_u8(&mut self, offset: usize, value: u8) {
        self.log.push((offset, value.into()));
        self.bytes.write_u8(offset, value);
    }
    fn write_u32(&mut self, offset: usize, value: u32) {
        self.log.push((offset, value.into()));
        self.bytes.write_u32(offset, value);
    }
    fn write_u64(&mut self, offset: usize, value: u64) {
        self.log.push((offset, value));
        self.bytes.write_u64(offset, value);
    }
    fn test_and_set_bit(&mut self, offset: usize, bit: u32) -> bool {
        self.bytes.test_and_set_bit(offset, bit)
    }
    fn test_and_clear_bit(&mut self, offset: usize, bit: u32) -> bool {
        self.bytes.test_and_clear_bit(offset, bit)
    }
}

#[test]
fn vcpu_time_is_published_odd_version_first_and_even_version_last() {
    let mut page = SharedInfoPage(Recorder {
        bytes: vec![0; size_of::<SharedInfo>()],
        log: Vec::new(),
    });
    let at = offsets::vcpu_time(1);
    assert_eq!(at, 64 + 32);
    let clock = Clock::new(2_500_000_000, 0).unwrap();
    let info = clock.vcpu_time_info(123_456, 0x1);
    page.publish_vcpu_time(1, &info);
    let first = page.0.log.first().copied().unwrap();
    let last = page.0.log.last().copied().unwrap();
    assert_eq!(first, (at, 1), "version goes odd before anything else");
    assert_eq!(last, (at, 2), "version goes even after everything else");
    assert_eq!(page.0.log.len(), 6);

    let mut back = VcpuTimeInfo::new_zeroed();
    back.as_mut_bytes()
        .copy_from_slice(&page.0.bytes[at..at + size_of::<VcpuTimeInfo>()]);
    assert_eq!(back, VcpuTimeInfo { version: 2, ..info });

    // A second update advances by two, and from an odd (torn) value to the next odd one.
    SharedInfoPage(&mut page.0.bytes[..]).publish_vcpu_time(1, &info);
    assert_eq!(page.0.bytes.read_u32(at), 4);
    page.0.bytes.write_u32(at, 7);
    page.0.log.clear();
    page.publish_vcpu_time(1, &info);
    assert_eq!(page.0.log.first().copied(), Some((at, 9)));
    assert_eq!(page.0.log.last().copied(), Some((at, 10)));
}

#[test]
fn publishing_into_a_struct_through_its_bytes() {
    let mut s = SharedInfo::new_zeroed();
    let info = Clock::new(1_000_000_000, 0).unwrap().vcpu_time_info(42, 0);
    SharedInfoPage(s.as_mut_bytes()).publish_vcpu_time(0, &info);
    let t = s.vcpu_info[0].time;
    assert_eq!(t.version, 2);
    assert_eq!(
        (t.tsc_timestamp, t.tsc_shift, t.tsc_to_system_mul),
        (42, 1, 1 << 31)
    );
    assert_eq!(SharedInfoPage(s.as_bytes()).vcpu_time(0), t);
}

#[test]
fn the_wallclock_is_published_with_its_own_version() {
    let mut page = SharedInfoPage(Recorder {
        bytes: vec![0; size_of::<SharedInfo>()],
        log: Vec::new(),
    });
    let wc = Wallclock {
        sec: 0x1_2345_6789,
        nsec: 999_999_999,
    };
    page.publish_wallclock(wc);
    assert_eq!(
        page.0.log,
        vec![
            (3072, 1),
            (3076, 0x2345_6789),
            (3080, 999_999_999),
            (3084, 1),
            (3072, 2)
        ]
    );
}

/// The way out's upcall question placed from the running vCPU's registration alone answers as
/// the full view does, for vCPUs in shared_info and with a registered `vcpu_info`.
#[test]
fn a_vcpus_upcall_pending_is_read_where_the_full_view_looks() {
    use crate::domain::Domain;
    use crate::mm::{FakeMemory, MachineMemoryMut, Mfn};
    let mut dom = Domain::new(0, true, 16, 16, Mfn(2), Mfn(1));
    dom.set_max_vcpus(3);
    dom.vcpus[1].vcpu_info = Some((Mfn(5), 0x40));
    // Each vCPU's flag set alone, in the shared_info slot or the registered vcpu_info; and a
    // vCPU id beyond the domain's vCPUs, read in the shared_info slots as the full view does.
    for vcpu in 0..4u32 {
        for set in 0..4u32 {
            let mut m = FakeMemory::new(0, 8 * 4096);
            let mut view = SharedInfoPage::of_domain_mut(&mut m, &dom);
            let _ = view.test_and_set_upcall_pending(set);
            let full = SharedInfoPage::of_domain(&m, &dom).upcall_pending(vcpu);
            assert_eq!(full, vcpu == set, "vCPU {vcpu}, flag of {set}");
            assert_eq!(
                super::upcall_pending_of(&m, &dom, vcpu),
                full,
                "vCPU {vcpu}, flag of {set}"
            );
        }
    }
    // The registered vcpu_info is read, not the slot it left.
    let mut m = FakeMemory::new(0, 8 * 4096);
    let slot =
        crate::mm::Maddr(dom.shared_info.maddr().0 + super::offsets::upcall_pending(1) as u64);
    m.write(slot, &[1]).unwrap();
    assert!(!super::upcall_pending_of(&m, &dom, 1));
}

#[test]
fn the_running_upcall_word_is_where_the_full_view_looks() {
    use crate::domain::Domain;
    use crate::mm::{FakeMemory, MachineMemoryMut, Mfn};
    let mut dom = Domain::new(0, true, 16, 16, Mfn(2), Mfn(1));
    dom.set_max_vcpus(3);
    dom.vcpus[2].vcpu_info = Some((Mfn(5), 0x40));
    for cur in 0..3 {
        dom.cur_vcpu = cur;
        let at = super::running_upcall_word(&dom);
        for (pending, mask) in [(0u8, 0u8), (1, 0), (1, 1), (0, 1)] {
            let mut m = FakeMemory::new(0, 8 * 4096);
            m.write(at, &[pending, mask]).unwrap();
            let view = SharedInfoPage::of_domain(&m, &dom);
            assert_eq!(view.upcall_pending(cur as u32), pending != 0, "vCPU {cur}");
            assert_eq!(view.upcall_mask(cur as u32), mask != 0, "vCPU {cur}");
            assert_eq!(
                super::upcall_deliverable(&m, &dom),
                view.upcall_deliverable(cur as u32),
                "vCPU {cur}"
            );
        }
    }
}
