//! dom0's direct block benchmark (`bench-blkdev`), paired round by round with a domU's
//! `blk-bench`, so that both sides of each same-run ratio are measured at the same time.
//!
//! The host these benchmarks run on gives the emulator's CPU thread a half-speed core for 20 ms
//! to a second at a time (docs/performance.md, "The host's speed, and rounds"). dom0's direct
//! pass used to run alone at boot and the domU's pass later, each drawing its own host speed.
//! Now the domU asks for each round: it writes `<n>.<k>` (pass `n`, round `k`) into its
//! `data/blk-bench-round`; dom0, watching that node, runs its own round `k` of every phase on
//! the disk directly and answers by writing the same text into `data/blk-bench-done`; then the
//! domU runs its round `k` through the split driver. dom0 writes `data/blk-bench-direct` when
//! it attaches a domU, so that a domU knows whether to ask.
//!
//! A domU's text is checked (two numbers, rounds in order, at most [`MAX_PASSES`] passes, one
//! domU at a time); anything else is answered without running a round.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use guest_kernel::rates::{
    parse_round, phase_fields, Rounds, RAND_QD_ROUND_OPS, RAND_ROUND_OPS, ROUNDS, SEQ_RANGE_BYTES,
    SEQ_ROUND_BYTES,
};
use ring_drivers::blkif::{Disk, DiskIo, IoData};

use super::blkback::{disk_counts, SharedDisk};
use super::service::{Ctx, Service};
use super::xenstore::Store;

/// Passes a domU may ask for (`blk-bench` makes two: persistent grants, then none).
pub const MAX_PASSES: u32 = 2;

/// Passes dom0 starts in all, whoever asks: a domU asking for round 0 again and again gets no
/// more.
const MAX_PASSES_IN_ALL: u32 = 8;

/// Random reads in flight at once in the phase of 16 in flight.
const QD: usize = 16;

/// One pass of the direct benchmark: after a warm-up (1 MiB written and read, not timed),
/// [`ROUNDS`] rounds of each phase, one round of each at a time: sequential writes and then
/// reads of [`SEQ_ROUND_BYTES`] in 64 KiB requests, going round [`SEQ_RANGE_BYTES`] from its
/// start sector; [`RAND_ROUND_OPS`] 4 KiB reads at random 4 KiB-aligned places in that range one
/// at a time; [`RAND_QD_ROUND_OPS`] more 16 at a time (one `Disk::transfer` of 16 pieces, as a
/// domU's `blk-bench` asks through blkfront).
pub struct DirectPass {
    start: u64,
    buf: Vec<u8>,
    /// The random places' generator.
    x: u64,
    /// Sequential write, sequential read, random one at a time, random 16 in flight.
    phases: [Rounds; 4],
    rounds: u64,
    /// Virtio interrupts and poll timeouts during the rounds (not between them: dom0 serves
    /// the domU's requests there).
    interrupts: u64,
    timeouts: u64,
}

/// Bytes a sequential request moves.
const CHUNK: usize = 64 * 1024;

fn now() -> u64 {
    crate::kernel::time::now_ns().unwrap_or(0)
}

impl DirectPass {
    /// A pass from sector `start`, warmed up; `Err` if the disk is too small or fails.
    pub fn new(start: u64) -> Result<DirectPass, &'static str> {
        let mut disk = SharedDisk;
        if start.saturating_add(SEQ_RANGE_BYTES / 512) > disk.sectors() {
            return Err("the disk is too small");
        }
        let mut buf = alloc::vec![0u8; CHUNK];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i * 31 + 7) as u8;
        }
        for c in 0..(1u64 << 20) / CHUNK as u64 {
            let sector = start + c * (CHUNK as u64 / 512);
            if disk.write(sector, &buf).is_err() || disk.read(sector, &mut buf).is_err() {
                return Err("warm-up failed");
            }
        }
        Ok(DirectPass {
            start,
            buf,
            x: 0x9e37_79b9_7f4a_7c15,
            phases: [Rounds::default(); 4],
            rounds: 0,
            interrupts: 0,
            timeouts: 0,
        })
    }

    /// Rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// The next round of each phase.
    pub fn round(&mut self) -> Result<(), &'static str> {
        let mut disk = SharedDisk;
        let (irq0, to0) = disk_counts();
        let chunks = SEQ_ROUND_BYTES / CHUNK as u64;
        let slots = SEQ_RANGE_BYTES / SEQ_ROUND_BYTES;
        let first = self.start + (self.rounds % slots) * (SEQ_ROUND_BYTES / 512);
        let sector = |c: u64| first + c * (CHUNK as u64 / 512);
        let pages = SEQ_RANGE_BYTES / 4096;
        let [write, read, rand, rand_qd] = &mut self.phases;
        let x = &mut self.x;
        let mut next = || {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            self.start + (*x % pages) * 8
        };
        let t0 = now();
        for c in 0..chunks {
            disk.write(sector(c), &self.buf)
                .map_err(|_| "write failed")?;
        }
        let _ = disk.flush();
        write.add(now() - t0);
        let t0 = now();
        for c in 0..chunks {
            disk.read(sector(c), &mut self.buf)
                .map_err(|_| "read failed")?;
        }
        read.add(now() - t0);
        let t0 = now();
        for _ in 0..RAND_ROUND_OPS {
            let place = next();
            disk.read(place, &mut self.buf[..4096])
                .map_err(|_| "random read failed")?;
        }
        rand.add(now() - t0);
        let t0 = now();
        for _ in 0..RAND_QD_ROUND_OPS / QD as u64 {
            let mut ios: Vec<DiskIo<'_>> = self.buf[..QD * 4096]
                .chunks_mut(4096)
                .map(|piece| DiskIo {
                    sector: next(),
                    write: false,
                    data: IoData::Buf(piece),
                    result: Ok(()),
                })
                .collect();
            disk.transfer(&mut ios);
            if ios.iter().any(|io| io.result.is_err()) {
                return Err("random read failed");
            }
        }
        rand_qd.add(now() - t0);
        let (irq1, to1) = disk_counts();
        self.interrupts += irq1.wrapping_sub(irq0);
        self.timeouts += to1.wrapping_sub(to0);
        self.rounds += 1;
        Ok(())
    }

    /// The `bench blkdev ...` line's fields.
    pub fn fields(&self) -> String {
        format!(
            "{} qd16_batch_ns={} interrupts={} poll_timeouts={}",
            phase_fields(self.phases),
            self.phases[3].total_ns / (RAND_QD_ROUND_OPS / QD as u64 * self.rounds.max(1)),
            self.interrupts,
            self.timeouts
        )
    }
}

/// The direct benchmark as one of dom0's services (`bench-blkdev=<start sector>`).
pub struct DirectBench {
    start: u64,
    /// The domU being paired with, its pass number and dom0's side of that pass.
    pass: Option<(u16, u32, DirectPass)>,
    /// Passes started (all domUs).
    passes: u32,
}

fn node(id: u16, leaf: &str) -> String {
    format!("/local/domain/{id}/data/{leaf}")
}

fn token(id: u16) -> String {
    format!("blkbench{id}")
}

impl DirectBench {
    /// Pairs from sector `start`.
    pub fn new(start: u64) -> DirectBench {
        DirectBench {
            start,
            pass: None,
            passes: 0,
        }
    }

    /// Round `k` of pass `n`, as domU `id` asks; whether it ran.
    fn run(&mut self, id: u16, n: u32, k: u64) -> bool {
        if n >= MAX_PASSES || k >= ROUNDS {
            return false;
        }
        // A pass starts at round 0, unless another domU's is under way; every start counts
        // towards the limit, finished or not, so that no domU keeps dom0 on its disk forever
        // by starting over.
        let free = self.pass.as_ref().is_none_or(|p| p.0 == id);
        if k == 0 && free {
            self.pass = None;
            if self.passes >= MAX_PASSES_IN_ALL {
                return false;
            }
            self.passes += 1;
            match DirectPass::new(self.start) {
                Ok(p) => self.pass = Some((id, n, p)),
                Err(why) => {
                    println!("bench blkdev: {why}");
                    return false;
                }
            }
        }
        let Some((pid, pn, pass)) = self.pass.as_mut() else {
            return false;
        };
        if *pid != id || *pn != n || pass.rounds() != k {
            return false;
        }
        if let Err(why) = pass.round() {
            println!("bench blkdev: {why}");
            self.pass = None;
            return false;
        }
        if pass.rounds() == ROUNDS {
            println!("bench blkdev pass={n} dom={id} {}", pass.fields());
            self.pass = None;
        }
        true
    }
}

impl Service for DirectBench {
    fn attach(&mut self, ctx: &mut Ctx, id: u16) {
        ctx.xs.write(&node(id, "blk-bench-direct"), "1");
        ctx.xs.watch(&node(id, "blk-bench-round"), &token(id));
    }

    fn detach(&mut self, ctx: &mut Ctx, id: u16) {
        ctx.xs.unwatch(&node(id, "blk-bench-round"), &token(id));
        if self.pass.as_ref().is_some_and(|p| p.0 == id) {
            self.pass = None;
        }
    }

    fn watch(&mut self, ctx: &mut Ctx, token: &str) -> bool {
        let Some(id) = token.strip_prefix("blkbench").and_then(|t| t.parse().ok()) else {
            return false;
        };
        // The watch also fires when it is set, before the node exists.
        let Some(text) = ctx.xs.read(&node(id, "blk-bench-round")) else {
            return true;
        };
        if ctx.xs.read(&node(id, "blk-bench-done")).as_deref() == Some(text.as_str()) {
            return true;
        }
        if let Some((n, k)) = parse_round(&text) {
            self.run(id, n, k);
        }
        // Answered whatever it was, so that no domU waits on dom0.
        ctx.xs.write(&node(id, "blk-bench-done"), &text);
        true
    }
}
