//! `MmuBatch`: page-table updates queued and sent to the hypervisor as one `mmu_update` call.
//!
//! A PV guest never writes a page-table entry itself: it asks the hypervisor, which validates
//! each entry. One hypercall per entry pays the guest/hypervisor round trip, and for L2..L4
//! changes a TLB flush, every time; `mmu_update` takes an array, and Xen flushes once after the
//! loop (`xen-abi.md`, "Batches"). XenoLinux queues its updates the same way
//! (`xen_mc_batch`/`xen_mc_issue`).
//!
//! Xen processes a batch in order and stops at the first failure, returning its error with
//! `*done` = the number of requests it completed; the rest of the batch is not applied. The
//! batch reports that as [`MmuError`] with the failed request's index counted from the batch's
//! creation, so a caller that queued N updates knows exactly which one was refused.
//!
//! The queueing is portable; the hypercall is behind [`MmuUpdateSink`], which the kernel
//! implements with the real `mmu_update` and the host tests with a fake page-table store.

use core::fmt;

use hypercall_abi::xen::{MmuUpdate, MMU_NORMAL_PT_UPDATE};

/// The largest batch: one page table's worth of entries.
pub const MAX_BATCH: usize = 512;

/// Issues one `mmu_update(reqs, count, &done, DOMID_SELF)`.
pub trait MmuUpdateSink {
    /// Sends `reqs` as one hypercall; returns (return code, done).
    fn mmu_update(&mut self, reqs: &[MmuUpdate]) -> (i64, u32);
}

/// How updates reach the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One hypercall per update, issued as it is queued (the teaching lab's baseline).
    PerUpdate,
    /// Up to `n` updates per hypercall (1..=[`MAX_BATCH`]): flushed when full or on `flush`.
    Batched(usize),
}

impl Mode {
    /// The number of updates sent per hypercall.
    pub const fn batch_size(self) -> usize {
        match self {
            Mode::PerUpdate => 1,
            Mode::Batched(n) => n,
        }
    }
}

/// A batch size outside 1..=[`MAX_BATCH`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadBatchSize(pub usize);

impl fmt::Display for BadBatchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch size {} is not in 1..={MAX_BATCH}", self.0)
    }
}

/// An update the hypervisor refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmuError {
    /// The hypercall's return code (a negative errno).
    pub rc: i64,
    /// Index of the refused update, counting every update queued since the batch was created.
    pub index: u64,
    /// The refused request itself.
    pub request: MmuUpdate,
    /// Updates of the same hypercall after the refused one, not applied and dropped.
    pub dropped: usize,
}

impl fmt::Display for MmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mmu_update={} at update {} (ptr={:#x} val={:#x}, {} dropped)",
            self.rc, self.index, self.request.ptr, self.request.val, self.dropped
        )
    }
}

/// A queue of `mmu_update` requests in front of a [`MmuUpdateSink`].
pub struct MmuBatch<S: MmuUpdateSink> {
    sink: S,
    size: usize,
    queue: [MmuUpdate; MAX_BATCH],
    len: usize,
    /// Updates the hypervisor has applied (or refused) so far: the index of `queue[0]`.
    sent: u64,
    hypercalls: u64,
}

impl<S: MmuUpdateSink> MmuBatch<S> {
    /// A batch sending through `sink` in `mode`.
    pub fn new(sink: S, mode: Mode) -> Result<Self, BadBatchSize> {
        let size = mode.batch_size();
        if !(1..=MAX_BATCH).contains(&size) {
            return Err(BadBatchSize(size));
        }
        Ok(MmuBatch {
            sink,
            size,
            queue: [MmuUpdate::default(); MAX_BATCH],
            len: 0,
            sent: 0,
            hypercalls: 0,
        })
    }

    /// Queues "set the page-table entry at machine address `pte_maddr` to `val`"
    /// (MMU_NORMAL_PT_UPDATE); sends the batch if that filled it. An error is the first refusal
    /// of that hypercall.
    ///
    /// # Panics
    /// If `pte_maddr` is not 8-byte aligned: its low bits would change the command.
    pub fn set_pte(&mut self, pte_maddr: u64, val: u64) -> Result<(), MmuError> {
        assert_eq!(
            pte_maddr & 7,
            0,
            "a PTE's machine address is 8-byte aligned"
        );
        self.queue[self.len] = MmuUpdate {
            ptr: pte_maddr | MMU_NORMAL_PT_UPDATE,
            val,
        };
        self.len += 1;
        if self.len == self.size {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Sends what is queued (nothing to do if the queue is empty).
    pub fn flush(&mut self) -> Result<(), MmuError> {
        if self.len == 0 {
            return Ok(());
        }
        let count = self.len;
        self.len = 0;
        self.hypercalls += 1;
        let (rc, done) = self.sink.mmu_update(&self.queue[..count]);
        if rc == 0 {
            self.sent += count as u64;
            return Ok(());
        }
        // A refusal names request `done` of this call; a hypervisor claiming more than it was
        // given is clamped to the last one.
        let failed = (done as usize).min(count - 1);
        let err = MmuError {
            rc,
            index: self.sent + failed as u64,
            request: self.queue[failed],
            dropped: count - failed - 1,
        };
        self.sent += count as u64;
        Err(err)
    }

    /// Updates queued and not yet sent.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Hypercalls issued so far.
    pub fn hypercalls(&self) -> u64 {
        self.hypercalls
    }

    /// Updates sent so far (applied, refused or dropped after a refusal).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The number of updates per hypercall.
    pub fn batch_size(&self) -> usize {
        self.size
    }

    /// The sink, to inspect it.
    pub fn sink(&self) -> &S {
        &self.sink
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercall_abi::errno::Errno;
    use std::collections::HashMap;

    /// A fake hypervisor: applies updates to a map of machine addresses, refusing any update whose
    /// address is in `refuse`, and stopping there as Xen does.
    #[derive(Default)]
    struct FakeXen {
        memory: HashMap<u64, u64>,
        refuse: Vec<u64>,
        calls: Vec<usize>,
    }

    impl MmuUpdateSink for FakeXen {
        fn mmu_update(&mut self, reqs: &[MmuUpdate]) -> (i64, u32) {
            self.calls.push(reqs.len());
            for (done, r) in reqs.iter().enumerate() {
                if r.ptr & 3 != MMU_NORMAL_PT_UPDATE {
                    return (Errno::ENOSYS.neg(), done as u32);
                }
                if self.refuse.contains(&r.ptr) {
                    return (Errno::EINVAL.neg(), done as u32);
                }
                self.memory.insert(r.ptr, r.val);
            }
            (0, reqs.len() as u32)
        }
    }

    #[test]
    fn sizes_outside_one_to_512_are_refused() {
        assert_eq!(
            MmuBatch::new(FakeXen::default(), Mode::Batched(0)).err(),
            Some(BadBatchSize(0))
        );
        assert_eq!(
            MmuBatch::new(FakeXen::default(), Mode::Batched(513)).err(),
            Some(BadBatchSize(513))
        );
        assert!(MmuBatch::new(FakeXen::default(), Mode::Batched(512)).is_ok());
        assert!(MmuBatch::new(FakeXen::default(), Mode::PerUpdate).is_ok());
    }

    #[test]
    fn a_full_batch_is_sent_and_the_rest_on_flush() {
        let mut b = MmuBatch::new(FakeXen::default(), Mode::Batched(8)).unwrap();
        for i in 0..20u64 {
            b.set_pte(0x1000 + 8 * i, i).unwrap();
        }
        assert_eq!(b.sink().calls, vec![8, 8]);
        assert_eq!(b.pending(), 4);
        b.flush().unwrap();
        b.flush().unwrap(); // nothing queued: no hypercall
        assert_eq!(b.sink().calls, vec![8, 8, 4]);
        assert_eq!(b.hypercalls(), 3);
        assert_eq!(b.sent(), 20);
        assert_eq!(b.sink().memory.len(), 20);
        assert_eq!(b.sink().memory[&(0x1000 + 8 * 19)], 19);
    }

    #[test]
    fn per_update_mode_makes_one_hypercall_per_update() {
        let mut b = MmuBatch::new(FakeXen::default(), Mode::PerUpdate).unwrap();
        for i in 0..5u64 {
            b.set_pte(0x2000 + 8 * i, i).unwrap();
            assert_eq!(b.pending(), 0);
        }
        assert_eq!(b.sink().calls, vec![1; 5]);
        assert_eq!(b.hypercalls(), 5);
    }

    #[test]
    fn requests_carry_the_normal_update_command() {
        struct Capture(Vec<MmuUpdate>);
        impl MmuUpdateSink for Capture {
            fn mmu_update(&mut self, reqs: &[MmuUpdate]) -> (i64, u32) {
                self.0.extend_from_slice(reqs);
                (0, reqs.len() as u32)
            }
        }
        let mut b = MmuBatch::new(Capture(Vec::new()), Mode::Batched(2)).unwrap();
        b.set_pte(0xabc_d008, 0x5063).unwrap();
        b.flush().unwrap();
        assert_eq!(
            b.sink().0,
            vec![MmuUpdate {
                ptr: 0xabc_d008,
                val: 0x5063
            }]
        );
    }

    #[test]
    fn a_refusal_names_the_update_that_failed() {
        let mut xen = FakeXen::default();
        // The 11th update overall (index 10) is refused: the second call, third request.
        xen.refuse.push(0x1000 + 8 * 10);
        let mut b = MmuBatch::new(xen, Mode::Batched(8)).unwrap();
        let mut errors = Vec::new();
        for i in 0..16u64 {
            if let Err(e) = b.set_pte(0x1000 + 8 * i, i) {
                errors.push(e);
            }
        }
        assert_eq!(errors.len(), 1);
        let e = errors[0];
        assert_eq!(e.rc, Errno::EINVAL.neg());
        assert_eq!(e.index, 10);
        assert_eq!(e.request.ptr, 0x1000 + 8 * 10);
        assert_eq!(e.dropped, 5);
        // Updates before the refused one were applied, the ones after it were not.
        assert!(b.sink().memory.contains_key(&(0x1000 + 8 * 9)));
        assert!(!b.sink().memory.contains_key(&(0x1000 + 8 * 11)));
        assert_eq!(b.sent(), 16);
    }

    #[test]
    fn a_refusal_on_flush_counts_from_the_first_update() {
        let mut xen = FakeXen::default();
        xen.refuse.push(0x3000);
        let mut b = MmuBatch::new(xen, Mode::Batched(512)).unwrap();
        b.set_pte(0x2ff8, 1).unwrap();
        b.set_pte(0x3000, 2).unwrap();
        b.set_pte(0x3008, 3).unwrap();
        let e = b.flush().unwrap_err();
        assert_eq!((e.index, e.dropped), (1, 1));
        assert_eq!(b.pending(), 0);
        // The batch goes on after a refusal: indices keep counting.
        b.set_pte(0x4000, 4).unwrap();
        b.flush().unwrap();
        assert_eq!(b.sent(), 4);
    }

    #[test]
    fn a_hypervisor_overstating_done_is_clamped() {
        struct Liar;
        impl MmuUpdateSink for Liar {
            fn mmu_update(&mut self, _reqs: &[MmuUpdate]) -> (i64, u32) {
                (Errno::EFAULT.neg(), 1000)
            }
        }
        let mut b = MmuBatch::new(Liar, Mode::Batched(4)).unwrap();
        b.set_pte(0, 0).unwrap();
        b.set_pte(8, 0).unwrap();
        let e = b.flush().unwrap_err();
        assert_eq!((e.rc, e.index, e.dropped), (Errno::EFAULT.neg(), 1, 0));
    }

    #[test]
    #[should_panic(expected = "8-byte aligned")]
    fn unaligned_entry_addresses_are_a_bug() {
        let mut b = MmuBatch::new(FakeXen::default(), Mode::Batched(4)).unwrap();
        let _ = b.set_pte(0x1001, 0);
    }
}
