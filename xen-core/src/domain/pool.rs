//! Free memory and what each domain took from it (the [`Pool`]): the frames a domain was given,
//! the boot modules a domain can be rebuilt from, and the dead domains (zombies) whose frames are
//! still referenced. What happens to them over a domain's life is `super::lifecycle`'s.

use crate::domain::set::MAX_DOMAINS;
use crate::mm::frame_alloc::{BootFrameAllocator, FrameAllocator, FramePool, FrameRange};
use crate::mm::{MachineMemoryMut, Maddr, Mfn};

pub use crate::mm::frame_table::INVALID_M2P_ENTRY;

/// Dead domains whose frames are still referenced, at most (a push beyond would lose them).
pub const MAX_ZOMBIES: usize = 64;

/// A boot module, remembered so that a domain can be rebuilt from it.
#[derive(Clone, Debug)]
pub struct BootModule {
    /// Its bytes in machine memory (reserved for the hypervisor's lifetime).
    pub start: Maddr,
    /// Length in bytes.
    pub len: usize,
    /// Its string: path, then command line.
    pub string: heapless::String<512>,
}

/// The memory a domain was given: its pages and its shared_info frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alloc {
    /// The domain.
    pub domid: u16,
    /// Its pages.
    pub pages: FrameRange,
    /// Its shared_info frame.
    pub shared_info: Mfn,
    /// How many frames its grant table took (at build, then as the domain grew it; brought up to
    /// date when it is destroyed, [`super::lifecycle::destroy`]).
    pub grant_taken: u32,
    /// How many frames its event-channel table held (its channel pages, taken as it bound
    /// ports; given back to the pool when it is destroyed, counted here for the line that says
    /// all its frames are back).
    pub port_taken: u32,
    /// Its grant-table frames something still referenced when it was destroyed (another domain
    /// mapping a shared frame): the reaper gives them back with its pages. The others go back to
    /// the pool at once. Empty while it lives.
    pub grant_frames: HeldGrantFrames,
}

/// A dead domain's grant-table frames still referenced, at most (more are lost, with a line).
pub const MAX_HELD_GRANT_FRAMES: usize = 4;

/// The grant-table frames a dead domain's [`Alloc`] keeps for the reaper.
pub type HeldGrantFrames = heapless::Vec<Mfn, MAX_HELD_GRANT_FRAMES>;

/// A grant table's frames ([`crate::gnttab::GrantTable::frames`]), all of them.
pub type GrantFrames = heapless::Vec<Mfn, { crate::gnttab::MAX_TABLE_FRAMES }>;

impl Alloc {
    /// How many frames it holds.
    pub fn frames(&self) -> u64 {
        self.pages.len() + 1 + u64::from(self.grant_taken) + u64::from(self.port_taken)
    }
}

/// Free memory, and what each domain took from it.
pub struct Pool {
    /// The free frames, as runs.
    pub frames: BootFrameAllocator,
    /// Free single frames the run list had no room for (a domain that gave back every other
    /// page): a list linked through the frames themselves, each holding the next one's number
    /// plus one in its first eight bytes (0 ends the list). Nothing maps a free frame, so only
    /// the hypervisor writes there; and should a link ever be wrong, the frame table stays the
    /// gate: `Mm::assign` gives a domain only a frame that is free and reclaimed, and every
    /// frame the hypervisor uses (its image, the M2P and the tables mapping it, the frame
    /// table, the boot modules, grant-table frames) is marked `Owner::Xen`.
    singles: Option<Mfn>,
    /// How many frames that list holds.
    nr_singles: u64,
    pub(super) allocs: [Option<Alloc>; MAX_DOMAINS],
    pub(super) zombies: heapless::Vec<Alloc, MAX_ZOMBIES>,
    /// Where the M2P table is (machine address).
    pub m2p_base: u64,
    /// The boot modules.
    pub modules: heapless::Vec<BootModule, 16>,
    /// The id the next domain built gets.
    pub next_domid: u16,
    /// The frames dom0's event-channel and grant tables held when the pool was made (taken
    /// before it, from the boot allocator): what they hold beyond that came from the pool.
    pub dom0_table_frames_at_boot: u32,
    /// The frame table's free count ([`crate::mm::frame_table::FrameTable::frees`]) when the
    /// reaper last found every zombie still holding frames: until a frame is freed again (or a
    /// zombie joins) there is nothing new to find, and the walk is skipped.
    pub reaped_at: Option<u64>,
}

impl Pool {
    /// The pool over `frames`, with the M2P at `m2p_base`.
    pub fn new(frames: BootFrameAllocator, m2p_base: u64) -> Pool {
        Pool {
            frames,
            singles: None,
            nr_singles: 0,
            allocs: [const { None }; MAX_DOMAINS],
            zombies: heapless::Vec::new(),
            reaped_at: None,
            m2p_base,
            modules: heapless::Vec::new(),
            next_domid: 1,
            dom0_table_frames_at_boot: 0,
        }
    }

    /// Free frames.
    pub fn free_frames(&self) -> u64 {
        self.frames.free_frames() + self.nr_singles
    }

    /// Records that domain `domid` in `slot` owns `pages`, `shared_info` and `grant_taken`
    /// grant-table frames (its table lists them).
    pub fn record(
        &mut self,
        slot: usize,
        domid: u16,
        pages: FrameRange,
        shared_info: Mfn,
        grant_taken: u32,
    ) {
        self.allocs[slot] = Some(Alloc {
            domid,
            pages,
            shared_info,
            grant_taken,
            port_taken: 0,
            grant_frames: HeldGrantFrames::new(),
        });
    }

    /// What the domain in `slot` was given.
    pub fn alloc(&self, slot: usize) -> Option<&Alloc> {
        self.allocs.get(slot)?.as_ref()
    }

    /// Dead domains whose memory is not all back yet.
    pub fn zombies(&self) -> &[Alloc] {
        &self.zombies
    }
}

impl FramePool for Pool {
    fn take(
        &mut self,
        mem: &mut dyn MachineMemoryMut,
        order: u32,
        limit: Option<Mfn>,
    ) -> Option<Mfn> {
        if order == 0 {
            if let Some(head) = self.singles.filter(|h| limit.is_none_or(|l| *h < l)) {
                // The link lives in the free frame itself: no guest can reach a free frame (every
                // path that frees one flushes the TLB before a guest runs again), but a bad link
                // must still not underflow the count.
                let link = mem.read_u64(head.maddr()).unwrap_or(0);
                self.singles = link.checked_sub(1).map(Mfn);
                self.nr_singles = self.nr_singles.saturating_sub(1);
                if self.singles.is_none() && self.nr_singles != 0 {
                    // The list lost its tail (a link went missing): those frames are lost,
                    // but never handed out twice.
                    self.nr_singles = 0;
                }
                return Some(head);
            }
            if limit.is_none() {
                return self.frames.alloc_frame();
            }
        }
        FramePool::take(&mut self.frames, mem, order, limit)
    }

    fn give_back(&mut self, mem: &mut dyn MachineMemoryMut, mfn: Mfn) {
        if self.frames.free(one(mfn)).is_ok() {
            return;
        }
        let link = self.singles.map_or(0, |h| h.0 + 1);
        if mem.write_u64(mfn.maddr(), link).is_some() {
            self.singles = Some(mfn);
            self.nr_singles += 1;
        }
    }

    fn free_frames(&self) -> u64 {
        Pool::free_frames(self)
    }
}

/// The one frame `mfn`, as a range.
pub fn one(mfn: Mfn) -> FrameRange {
    FrameRange {
        start: mfn,
        end: Mfn(mfn.0 + 1),
    }
}
