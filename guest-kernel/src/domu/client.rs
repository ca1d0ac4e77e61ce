//! The domU's xenstore client: the store ring, its port, the replies and watch events that came
//! back, and the event loop's step that moves them (the demo in `mod.rs` and the block front end
//! in `blkfront.rs` both wait through it).

use alloc::collections::VecDeque;
use alloc::format;
use alloc::vec::Vec;

use hypercall_abi::errno::Errno;
use ring_drivers::xenbus::{Event, Reply, Request, WatchEvent, XenbusClient, XenbusError};

use super::error::DomuError;

use crate::kernel::events::{self, Channel};
use crate::kernel::ring_page::MappedPage;
use crate::kernel::time;

/// How long to wait for dom0 at most (system time).
const GIVE_UP_NS: u64 = 120_000 * time::MS;

/// The xenstore connection and everything the event loop counts.
pub struct Client {
    xs: XenbusClient,
    store: MappedPage,
    store_port: u32,
    replies: VecDeque<(u32, Reply)>,
    pub watches: VecDeque<WatchEvent>,
    pings: u32,
    broken: Option<XenbusError>,
}

impl Client {
    /// A client on the store ring `store`, whose event channel is `store_port`.
    pub fn new(store: MappedPage, store_port: u32) -> Client {
        Client {
            xs: XenbusClient::new(),
            store,
            store_port,
            replies: VecDeque::new(),
            watches: VecDeque::new(),
            pings: 0,
            broken: None,
        }
    }

    /// Pings received on the demo's channel so far.
    pub fn pings(&self) -> u32 {
        self.pings
    }

    /// Moves requests and replies through the store ring; notifies dom0 if requests moved.
    fn pump(&mut self) {
        if self.broken.is_some() {
            return;
        }
        let mut replies = Vec::new();
        let mut watches = Vec::new();
        let r = self.xs.pump(&mut self.store, &mut |ev| match ev {
            Event::Reply { req_id, reply, .. } => replies.push((req_id, reply)),
            Event::Watch(w) => watches.push(w),
        });
        match r {
            Ok(n) if n > 0 => {
                let _ = events::send(self.store_port);
            }
            Ok(_) => {}
            Err(e) => self.broken = Some(e),
        }
        // dom0 waits for room in the response ring only if it is full; tell it we consumed.
        if !replies.is_empty() || !watches.is_empty() {
            let _ = events::send(self.store_port);
        }
        if !replies.is_empty() {
            self.replies.extend(replies);
        }
        if !watches.is_empty() {
            self.watches.extend(watches);
        }
    }

    /// Waits for events and handles them.
    pub fn step(&mut self) {
        self.step_within(1000 * time::MS);
    }

    /// Waits for events, at most `ns` nanoseconds, and handles them.
    pub fn step_within(&mut self, ns: u64) {
        events::wait(Some(ns));
        let mut pings = 0;
        events::dispatch(|_, h| {
            if let Some(Channel::Ping(_)) = h {
                pings += 1;
            }
        });
        self.pings += pings;
        self.pump();
    }

    pub fn timed_out(&self, since: u64) -> Result<(), DomuError> {
        if let Some(e) = self.broken {
            return Err(DomuError::Xenbus(e));
        }
        match time::now_ns() {
            Some(now) if now > since + GIVE_UP_NS => Err(DomuError::TimedOut),
            _ => Ok(()),
        }
    }

    /// Sends `req` and waits for its reply.
    pub fn request(&mut self, tx: u32, req: &Request<'_>) -> Result<Reply, DomuError> {
        let id = self.xs.send(tx, req).map_err(DomuError::Send)?;
        let start = time::now_ns().unwrap_or(0);
        loop {
            self.pump();
            if let Some(i) = self.replies.iter().position(|(r, _)| *r == id) {
                return Ok(self.replies.remove(i).expect("found").1);
            }
            self.timed_out(start)?;
            self.step();
        }
    }

    pub fn read(&mut self, path: &str) -> Result<Result<Vec<u8>, Errno>, DomuError> {
        Ok(match self.request(0, &Request::Read(path))? {
            Reply::Value(v) => Ok(v),
            Reply::Error(e) => Err(e),
            other => return Err(DomuError::Unexpected(format!("read {path}"), other)),
        })
    }

    pub fn ok(&mut self, tx: u32, req: &Request<'_>) -> Result<Result<(), Errno>, DomuError> {
        Ok(match self.request(tx, req)? {
            Reply::Ok => Ok(()),
            Reply::Error(e) => Err(e),
            other => return Err(DomuError::Unexpected(format!("{req:?}"), other)),
        })
    }
}
