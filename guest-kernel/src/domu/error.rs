//! Why the domU's program stopped: it prints `domU: FAILED: <error>` and crashes. One variant
//! per way of failing, each printed as the message it stands for.

use alloc::string::String;
use core::fmt;

use hypercall_abi::errno::Errno;
use hypercall_abi::HypercallError;
use ring_drivers::blkif::{BlkFrontError, KeyError};
use ring_drivers::xenbus::{Reply, XenbusError};
use ring_drivers::RingError;

use crate::kernel::grant::GrantError;
use crate::kernel::shared_info::MapError;

/// Why the domU's program failed.
#[derive(Debug)]
pub enum DomuError {
    /// shared_info could not be mapped.
    SharedInfo(MapError),
    /// The trap table or the event callback was refused.
    Handlers,
    /// start_info names a ring page (which) outside our initial region.
    NotOurPage(&'static str),
    /// A page of ours (which) has no machine frame.
    NoFrame(&'static str),
    /// The store ring broke.
    Xenbus(XenbusError),
    /// A xenstore request could not be sent.
    Send(XenbusError),
    /// dom0 did not answer in time.
    TimedOut,
    /// xenstore refused a request (what it was).
    Refused(String, Errno),
    /// xenstore answered a request (what it was) with a reply of the wrong kind.
    Unexpected(String, Reply),
    /// A node (path) holds something else than it must (what).
    BadNode(String, &'static str),
    /// The grant table could not be set up.
    GrantTable(GrantError),
    /// A grant operation failed.
    Grant(GrantError),
    /// An event-channel hypercall (which) failed.
    Evtchn(&'static str, HypercallError),
    /// A mode's argument (`mode=arg`) is not what the mode wants.
    Arg(&'static str, String, &'static str),
    /// No vbd under `device/vbd`.
    NoVbd,
    /// The vbd is not connected.
    NotConnected,
    /// A read, write or flush (what, at which sector) failed.
    Io(&'static str, Option<u64>, BlkFrontError),
    /// The ring's indexes are broken.
    Ring(RingError),
    /// The back end published keys the front end cannot use.
    BackendKeys(KeyError),
    /// A check of the mode failed (what did not hold).
    Check(String),
    /// A suite run in the domU (fuzz, hostile) failed.
    Suite(&'static str),
}

impl fmt::Display for DomuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomuError::SharedInfo(e) => write!(f, "shared_info: {e}"),
            DomuError::Handlers => write!(f, "cannot install trap table / event callback"),
            DomuError::NotOurPage(page) => write!(f, "{page} page not in our region"),
            DomuError::NoFrame(page) => write!(f, "{page} has no frame"),
            DomuError::Xenbus(e) => write!(f, "xenbus: {e:?}"),
            DomuError::Send(e) => write!(f, "xenbus send: {e:?}"),
            DomuError::TimedOut => write!(f, "timed out waiting for dom0"),
            DomuError::Refused(what, e) => write!(f, "{what}: {}", e.name()),
            DomuError::Unexpected(what, reply) => write!(f, "{what}: unexpected {reply:?}"),
            DomuError::BadNode(path, what) => write!(f, "{path}: {what}"),
            DomuError::GrantTable(e) => write!(f, "grant table: {e}"),
            DomuError::Grant(e) => write!(f, "{e}"),
            DomuError::Evtchn(op, rc) => write!(f, "{op}={rc}"),
            DomuError::Arg(mode, arg, want) => write!(f, "{mode}={arg}: {want}"),
            DomuError::NoVbd => write!(f, "no vbd in device/vbd"),
            DomuError::NotConnected => write!(f, "vbd not connected"),
            DomuError::Io(op, Some(sector), e) => write!(f, "{op} at {sector}: {e:?}"),
            DomuError::Io(op, None, e) => write!(f, "{op}: {e:?}"),
            DomuError::Ring(e) => write!(f, "{e:?}"),
            DomuError::BackendKeys(e) => write!(f, "back-end keys: {e:?}"),
            DomuError::Check(what) => write!(f, "{what}"),
            DomuError::Suite(what) => write!(f, "{what}"),
        }
    }
}
