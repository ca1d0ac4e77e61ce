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
//! dom0's rounds run inside the asking domU's own part of the disk (its vbd's window, from
//! sector `start` of it), so they touch only sectors that domU may write itself. A domU's text
//! is checked (two numbers, a pass number below [`MAX_PASSES`], rounds in order, one domU's pass
//! at a time, [`MAX_PASSES_IN_ALL`] passes started in all); anything else is answered with
//! `<text> refused`, and dom0 says why on its console.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use guest_kernel::rates::{
    parse_round, phase_fields, Phases, Rounds, RAND_QD_ROUND_OPS, RAND_ROUND_OPS, ROUNDS,
    SEQ_RANGE_BYTES, SEQ_ROUND_BYTES,
};
use hypercall_abi::domctl::BootHandle;
use ring_drivers::blkif::{Disk, DiskIo, IoData};

use super::blkback::{disk_counts, Slots, VbdDisk};
use super::service::{Ctx, Service};
use super::xenstore::Store;

/// Pass numbers a domU may ask for (`blk-bench` makes two: persistent grants, then none).
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
    /// The asking domU's part of the disk; `start` is a sector of it.
    disk: VbdDisk,
    start: u64,
    buf: Vec<u8>,
    /// The random places' generator.
    x: u64,
    /// Sequential write, sequential read, random one at a time, random 16 in flight.
    phases: [Rounds; 4],
    /// The phases run (`bench-phases=`).
    which: Phases,
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

/// Nanoseconds since `t0` (0 if the clock went back or failed).
fn since(t0: u64) -> u64 {
    now().saturating_sub(t0)
}

impl DirectPass {
    /// A pass from sector `start` of `disk`, warmed up; `Err` if `disk` is too small or fails.
    pub fn new(mut disk: VbdDisk, start: u64, which: Phases) -> Result<DirectPass, &'static str> {
        if start.saturating_add(SEQ_RANGE_BYTES / 512) > disk.sectors() {
            return Err("its part of the disk is too small");
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
            disk,
            start,
            buf,
            x: 0x9e37_79b9_7f4a_7c15,
            phases: [Rounds::default(); 4],
            which,
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
        let disk = &mut self.disk;
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
        let which = self.which;
        if which.has(0) {
            let t0 = now();
            for c in 0..chunks {
                disk.write(sector(c), &self.buf)
                    .map_err(|_| "write failed")?;
            }
            let _ = disk.flush();
            write.add(since(t0));
        }
        if which.has(1) {
            let t0 = now();
            for c in 0..chunks {
                disk.read(sector(c), &mut self.buf)
                    .map_err(|_| "read failed")?;
            }
            read.add(since(t0));
        }
        if which.has(2) {
            let t0 = now();
            for _ in 0..RAND_ROUND_OPS {
                let place = next();
                disk.read(place, &mut self.buf[..4096])
                    .map_err(|_| "random read failed")?;
            }
            rand.add(since(t0));
        }
        if which.has(3) {
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
            rand_qd.add(since(t0));
        }
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
    /// How the disk is cut into the domUs' parts (as blkback cuts it).
    slots: Slots,
    /// The domU being paired with, its pass number and dom0's side of that pass.
    pass: Option<(u16, u32, DirectPass)>,
    /// Passes started (all domUs).
    passes: u32,
    /// The phases each round runs (`bench-phases=`).
    which: Phases,
}

fn node(id: u16, leaf: &str) -> String {
    format!("/local/domain/{id}/data/{leaf}")
}

fn token(id: u16) -> String {
    format!("blkbench{id}")
}

impl DirectBench {
    /// Pairs from sector `start` of each asking domU's part of the disk, cut as `vbd-slots=`
    /// (`slots`) says, running the phases `which` names in each round.
    pub fn new(start: u64, slots: Option<&str>, which: Phases) -> DirectBench {
        DirectBench {
            start,
            slots: Slots::new(slots),
            pass: None,
            passes: 0,
            which,
        }
    }

    /// Round `k` of pass `n`, as domU `id` (booted as `boot`) asks; `Err`: why not.
    fn run(&mut self, id: u16, boot: Option<BootHandle>, n: u32, k: u64) -> Result<(), String> {
        if n >= MAX_PASSES || k >= ROUNDS {
            return Err(String::from("no such pass or round"));
        }
        // A pass starts at round 0, unless another domU's is under way; every start counts
        // towards the limit, finished or not, so that no domU keeps dom0 on its disk forever
        // by starting over.
        if let Some((other, ..)) = self.pass.as_ref().filter(|p| p.0 != id) {
            return Err(format!("d{other}'s pass is under way"));
        }
        if k == 0 {
            self.pass = None;
            if self.passes >= MAX_PASSES_IN_ALL {
                return Err(format!("{MAX_PASSES_IN_ALL} passes were started already"));
            }
            self.passes += 1;
            let disk = self.slots.window(boot)?;
            let pass = DirectPass::new(disk, self.start, self.which).map_err(String::from)?;
            self.pass = Some((id, n, pass));
        }
        let Some((_, pn, pass)) = self.pass.as_mut() else {
            return Err(String::from("no pass under way"));
        };
        if *pn != n || pass.rounds() != k {
            return Err(format!("pass {pn} is at round {}", pass.rounds()));
        }
        if let Err(why) = pass.round() {
            self.pass = None;
            return Err(String::from(why));
        }
        if pass.rounds() == ROUNDS {
            println!("bench blkdev pass={n} dom={id} {}", pass.fields());
            self.pass = None;
        }
        Ok(())
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
        if ctx
            .xs
            .read(&node(id, "blk-bench-done"))
            .is_some_and(|done| done == text || done == format!("{text} refused"))
        {
            return true;
        }
        let boot = ctx.doms.get(&id).and_then(|d| d.boot);
        let ran = parse_round(&text)
            .ok_or_else(|| String::from("not <pass>.<round>"))
            .and_then(|(n, k)| self.run(id, boot, n, k));
        // Answered whatever it was, so that no domU waits on dom0.
        let answer = match ran {
            Ok(()) => text,
            Err(why) => {
                println!("bench blkdev: d{id}'s round {text:?} refused: {why}");
                format!("{text} refused")
            }
        };
        ctx.xs.write(&node(id, "blk-bench-done"), &answer);
        true
    }
}
