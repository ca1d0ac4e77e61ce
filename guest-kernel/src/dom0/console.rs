//! The domUs' console rings as dom0 reads them: each drained into `(d<id>) text` lines on dom0's
//! console. Shared by the console daemon (`console_daemon.rs`, the service that drains them)
//! and the toolstack (which drains a domain's last words before it destroys it).

use alloc::collections::BTreeMap;

use ring_drivers::console_ring::{self, LinePrefixer};

use crate::kernel::console;
use crate::kernel::events;
use crate::kernel::ring_page::MappedPage;

/// One domU's console ring as dom0 reads it.
struct Ring {
    page: MappedPage,
    port: u32,
    lines: LinePrefixer,
    broken: bool,
}

/// Every domU's console ring.
pub struct Consoles {
    rings: BTreeMap<u16, Ring>,
}

fn print_bytes(b: &[u8]) {
    console::write_bytes(b);
}

impl Consoles {
    /// No ring yet.
    pub fn new() -> Consoles {
        Consoles {
            rings: BTreeMap::new(),
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
                broken: false,
            },
        );
    }

    /// Stops reading `id`'s ring; gives back the page and the port.
    pub fn disconnect(&mut self, id: u16) -> Option<(MappedPage, u32)> {
        self.rings.remove(&id).map(|r| (r.page, r.port))
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
        match console_ring::drain_out(&mut r.page, &mut |b| lines.feed(b, &mut print_bytes)) {
            Ok(0) => {}
            Ok(_) => {
                let _ = events::send(r.port);
            }
            Err(e) => {
                println!("console: d{id} ring broken: {e}");
                r.broken = true;
            }
        }
    }

    /// The domUs whose consoles are read, in id order.
    pub fn ids(&self) -> alloc::vec::Vec<u16> {
        self.rings.keys().copied().collect()
    }
}
