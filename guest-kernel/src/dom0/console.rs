//! The domUs' console rings as dom0 reads them: each drained into `(d<id>) text` lines on dom0's
//! console, a partial line (a shell prompt) printed once the domain has been quiet for
//! [`IDLE_FLUSH_NS`]. One domU's console may be **attached** (the shell's `console <id>`, like
//! `xl console`): its output then goes to the serial line as it comes, unprefixed, and what is
//! typed goes into its ring's `in` side. Shared by the console daemon (`console_daemon.rs`, the
//! service that drains them), the shell (attaching, input) and the toolstack (which drains a
//! domain's last words before it destroys it).

use alloc::collections::{BTreeMap, VecDeque};

use ring_drivers::console_ring::{self, LinePrefixer};

use crate::kernel::console;
use crate::kernel::events;
use crate::kernel::ring_page::MappedPage;
use crate::kernel::time;

/// A partial line is printed after the domain wrote nothing for this long (50 ms).
pub const IDLE_FLUSH_NS: u64 = 50 * time::MS;
/// Input queued for an attached console whose `in` ring is full, at most (more is dropped).
pub const INPUT_QUEUE_MAX: usize = 4096;

/// One domU's console ring as dom0 reads it.
struct Ring {
    page: MappedPage,
    port: u32,
    lines: LinePrefixer,
    /// When the domain last wrote while a partial line was waiting.
    partial_since: Option<u64>,
    /// Typed input not yet in the ring (it was full).
    input: VecDeque<u8>,
    broken: bool,
}

/// Every domU's console ring.
pub struct Consoles {
    rings: BTreeMap<u16, Ring>,
    /// The domU whose console the serial line is attached to.
    attached: Option<u16>,
    /// [`Consoles::poll`]'s list of the rings to serve (kept: no allocation per pass).
    due: alloc::vec::Vec<u16>,
}

fn print_bytes(b: &[u8]) {
    console::write_bytes(b);
}

impl Consoles {
    /// No ring yet.
    pub fn new() -> Consoles {
        Consoles {
            rings: BTreeMap::new(),
            attached: None,
            due: alloc::vec::Vec::new(),
        }
    }

    /// Reads `id`'s console ring `page` (event channel `port`) from now on.
    pub fn connect(&mut self, id: u16, page: MappedPage, port: u32) {
        let lines = LinePrefixer::new(id);
        self.rings.insert(
            id,
            Ring {
                page,
                port,
                lines,
                partial_since: None,
                input: VecDeque::new(),
                broken: false,
            },
        );
    }

    /// Stops reading `id`'s ring; gives back the page and the port.
    pub fn disconnect(&mut self, id: u16) -> Option<(MappedPage, u32)> {
        if self.attached == Some(id) {
            self.attached = None;
            println!("\nconsole: d{id} is gone: detached");
        }
        self.rings.remove(&id).map(|r| (r.page, r.port))
    }

    /// Attaches the serial line to `id`'s console (what is waiting of a partial line is printed
    /// first); false if dom0 does not read that domain's console.
    pub fn attach(&mut self, id: u16) -> bool {
        let Some(r) = self.rings.get_mut(&id) else {
            return false;
        };
        r.lines.flush(&mut print_bytes);
        r.partial_since = None;
        self.attached = Some(id);
        true
    }

    /// Detaches the serial line; returns the domain it was attached to.
    pub fn detach(&mut self) -> Option<u16> {
        self.attached.take()
    }

    /// The domain the serial line is attached to.
    pub fn attached(&self) -> Option<u16> {
        self.attached
    }

    /// Typed input for the attached console: into its ring's `in` side as far as it fits (the
    /// rest waits, up to [`INPUT_QUEUE_MAX`] bytes, for [`Consoles::pump_input`]).
    pub fn input(&mut self, bytes: &[u8]) {
        let Some(id) = self.attached else {
            return;
        };
        if let Some(r) = self.rings.get_mut(&id) {
            let room = INPUT_QUEUE_MAX.saturating_sub(r.input.len());
            r.input.extend(bytes.iter().take(room));
        }
        self.pump_input(id);
    }

    /// Moves queued input of `id` into its ring and notifies the domain when any went in.
    pub fn pump_input(&mut self, id: u16) {
        let Some(r) = self.rings.get_mut(&id) else {
            return;
        };
        if r.broken || r.input.is_empty() {
            return;
        }
        let mut sent = 0;
        while !r.input.is_empty() {
            let (a, _) = r.input.as_slices();
            match console_ring::push_in(&mut r.page, a) {
                Ok(0) => break,
                Ok(n) => {
                    r.input.drain(..n);
                    sent += n;
                }
                Err(e) => {
                    println!("console: d{id} ring broken: {e}");
                    r.broken = true;
                    return;
                }
            }
        }
        if sent > 0 {
            let _ = events::send(r.port);
        }
    }

    /// Prints each partial line whose domain has been quiet for [`IDLE_FLUSH_NS`] at `now_ns`.
    pub fn flush_idle(&mut self, now_ns: u64) {
        for r in self.rings.values_mut() {
            if r.partial_since
                .is_some_and(|t| now_ns.saturating_sub(t) >= IDLE_FLUSH_NS)
            {
                r.lines.flush(&mut print_bytes);
                r.partial_since = None;
            }
        }
    }

    /// When the next partial line is due to be printed, if one waits.
    pub fn next_flush_ns(&self) -> Option<u64> {
        self.rings
            .values()
            .filter_map(|r| r.partial_since.map(|t| t + IDLE_FLUSH_NS))
            .min()
    }

    /// Prints what is left of `id`'s last line (a line the domain did not end).
    pub fn flush(&mut self, id: u16) {
        if let Some(r) = self.rings.get_mut(&id) {
            r.lines.flush(&mut print_bytes);
        }
    }

    /// Prints every complete line waiting in `id`'s console ring.
    pub fn drain(&mut self, id: u16) {
        let Some(r) = self.rings.get_mut(&id) else {
            return;
        };
        if r.broken {
            return;
        }
        let lines = &mut r.lines;
        let attached = self.attached == Some(id);
        // Attached, the bytes go out as they are (as `xl console` relays them); otherwise
        // as escaped, prefixed lines.
        let mut sink = |b: &[u8]| {
            if attached {
                print_bytes(b)
            } else {
                lines.feed(b, &mut print_bytes)
            }
        };
        match console_ring::drain_out(&mut r.page, &mut sink) {
            Ok(0) => {}
            Ok(_) => {
                r.partial_since =
                    (!attached && r.lines.has_partial()).then(|| time::now_ns().unwrap_or(0));
                let _ = events::send(r.port);
            }
            Err(e) => {
                println!("console: d{id} ring broken: {e}");
                r.broken = true;
            }
        }
    }

    /// [`Consoles::drain`] and [`Consoles::pump_input`] of every ring, in one walk (the console
    /// daemon's poll, every pass): only the rings with output waiting (or bad indices, which
    /// `drain` reports) or input queued for them; the others, and broken rings, are left alone
    /// as those would leave them. Returns whether a partial line waits in some ring.
    pub fn poll(&mut self) -> bool {
        let mut due = core::mem::take(&mut self.due);
        due.clear();
        for (&id, r) in &self.rings {
            if r.broken {
                continue;
            }
            if console_ring::out_waiting(&r.page).map_or(true, |n| n > 0) || !r.input.is_empty() {
                due.push(id);
            }
        }
        for &id in &due {
            self.drain(id);
            self.pump_input(id);
        }
        self.due = due;
        self.rings.values().any(|r| r.partial_since.is_some())
    }
}
