//! The toolstack's connection to a new domU's two rings, and what it does when that fails.
//!
//! Introducing a domU (dom0's toolstack, `dom0/`) takes dom0 resources in steps: a mapping window for
//! the xenstore ring page, one for the console ring page, then its two event channels bound
//! (`EVTCHNOP_bind_interdomain` on the ports the domain builder left unbound for dom0). Any step
//! can fail because of the domU alone: it may have closed its ports (they are its own to close)
//! or given its ring pages away before dom0 came to it, as a dom0less domU runs before dom0's
//! toolstack does. Then every step already taken is undone, in reverse, and the domain is not
//! tried again: it is destroyed, as libxl destroys a domain whose creation fails
//! (`domcreate_complete` in `tools/libs/light/libxl_create.c`: `retain_domain` is false on an
//! error, and `libxl__domain_destroy` follows). A failure left half done would keep dom0's
//! windows (64 in all) and the domU's frames referenced, and a retry on every scan would leak
//! two more windows each time.
//!
//! The steps are written against [`Resources`], so that host tests can fail each one in turn
//! with a fake and count what is left.

use alloc::collections::BTreeSet;
use core::fmt;

use hypercall_abi::HypercallError;

/// Which of a domU's two rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    /// The xenstore ring (`store_mfn`, `store_evtchn`).
    Store,
    /// The console ring (`console.domU.mfn`, `.evtchn`).
    Console,
}

impl fmt::Display for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ring::Store => "store",
            Ring::Console => "console",
        })
    }
}

/// Why the rings could not be connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectError<E> {
    /// Mapping the ring page failed.
    Map(Ring, E),
    /// Binding the ring's port failed (the hypercall's return code).
    Bind(Ring, HypercallError),
}

impl<E: fmt::Display> fmt::Display for ConnectError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Map(r, e) => write!(f, "{r} ring: {e}"),
            ConnectError::Bind(r, rc) => write!(f, "{r} port: bind_interdomain={rc}"),
        }
    }
}

/// What connecting takes from dom0, and how it is given back.
pub trait Resources {
    /// A mapped foreign page.
    type Page;
    /// Why a page could not be mapped.
    type Error;
    /// Maps frame `mfn` of domain `domid` writable into a window.
    fn map(&mut self, domid: u16, mfn: u64) -> Result<Self::Page, Self::Error>;
    /// Unmaps a page and frees its window.
    fn unmap(&mut self, page: Self::Page);
    /// Binds a local port to `domid`'s unbound port `remote`; the local port or the return code.
    fn bind(&mut self, domid: u16, remote: u32) -> Result<u32, HypercallError>;
    /// Closes a local port.
    fn close(&mut self, port: u32);
}

/// Where a domU's rings are (from `HVMOP_get_param`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingParams {
    /// Machine frame of the xenstore ring.
    pub store_mfn: u64,
    /// The domU's port for xenstore.
    pub store_port: u32,
    /// Machine frame of the console ring.
    pub console_mfn: u64,
    /// The domU's port for the console.
    pub console_port: u32,
}

/// A domU's rings, mapped, with their ports bound.
#[derive(Debug, PartialEq, Eq)]
pub struct Rings<P> {
    /// The xenstore ring page.
    pub store: P,
    /// dom0's port for it.
    pub store_port: u32,
    /// The console ring page.
    pub console: P,
    /// dom0's port for it.
    pub console_port: u32,
}

/// Maps both ring pages and binds both ports of domain `domid`. On failure, what was already
/// taken is given back (in reverse order) before the error is returned.
pub fn connect<R: Resources>(
    r: &mut R,
    domid: u16,
    p: &RingParams,
) -> Result<Rings<R::Page>, ConnectError<R::Error>> {
    let store = r
        .map(domid, p.store_mfn)
        .map_err(|e| ConnectError::Map(Ring::Store, e))?;
    let console = match r.map(domid, p.console_mfn) {
        Ok(c) => c,
        Err(e) => {
            r.unmap(store);
            return Err(ConnectError::Map(Ring::Console, e));
        }
    };
    let store_port = match r.bind(domid, p.store_port) {
        Ok(port) => port,
        Err(rc) => {
            r.unmap(console);
            r.unmap(store);
            return Err(ConnectError::Bind(Ring::Store, rc));
        }
    };
    let console_port = match r.bind(domid, p.console_port) {
        Ok(port) => port,
        Err(rc) => {
            r.close(store_port);
            r.unmap(console);
            r.unmap(store);
            return Err(ConnectError::Bind(Ring::Console, rc));
        }
    };
    Ok(Rings {
        store,
        store_port,
        console,
        console_port,
    })
}

/// Gives back everything [`connect`] took.
pub fn disconnect<R: Resources>(r: &mut R, rings: Rings<R::Page>) {
    r.close(rings.console_port);
    r.close(rings.store_port);
    r.unmap(rings.console);
    r.unmap(rings.store);
}

/// The domains whose introduction failed: not tried again while they exist.
#[derive(Debug, Default)]
pub struct Failed {
    ids: BTreeSet<u16>,
}

impl Failed {
    /// None yet.
    pub fn new() -> Self {
        Failed::default()
    }

    /// Whether `id` may be introduced (its introduction never failed).
    pub fn may_try(&self, id: u16) -> bool {
        !self.ids.contains(&id)
    }

    /// Records that introducing `id` failed.
    pub fn record(&mut self, id: u16) {
        self.ids.insert(id);
    }

    /// Forgets the domains that no longer exist (`present` are those that do), so that an id
    /// used again by a new domain is tried afresh.
    pub fn retain_present(&mut self, present: impl Fn(u16) -> bool) {
        self.ids.retain(|&id| present(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use hypercall_abi::Errno;

    /// Which call of the fake fails, if any.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Step {
        MapStore,
        MapConsole,
        BindStore,
        BindConsole,
    }

    /// Windows and ports as dom0 has them: a bounded pool of windows, as `ring_page`'s.
    #[derive(Default)]
    struct Fake {
        fail: Option<Step>,
        windows_in_use: BTreeSet<u64>,
        ports_bound: BTreeSet<u32>,
        next_port: u32,
        maps: usize,
        binds: usize,
    }

    impl Resources for Fake {
        type Page = u64;
        type Error = &'static str;
        fn map(&mut self, _domid: u16, mfn: u64) -> Result<u64, &'static str> {
            self.maps += 1;
            let step = if self.maps % 2 == 1 {
                Step::MapStore
            } else {
                Step::MapConsole
            };
            if self.fail == Some(step) {
                return Err("refused");
            }
            assert!(self.windows_in_use.insert(mfn), "mapped twice");
            Ok(mfn)
        }
        fn unmap(&mut self, page: u64) {
            assert!(self.windows_in_use.remove(&page), "unmapped twice");
        }
        fn bind(&mut self, _domid: u16, _remote: u32) -> Result<u32, HypercallError> {
            self.binds += 1;
            let step = if self.binds % 2 == 1 {
                Step::BindStore
            } else {
                Step::BindConsole
            };
            if self.fail == Some(step) {
                return Err(Errno::EINVAL.into());
            }
            self.next_port += 1;
            self.ports_bound.insert(self.next_port);
            Ok(self.next_port)
        }
        fn close(&mut self, port: u32) {
            assert!(self.ports_bound.remove(&port), "closed twice");
        }
    }

    const PARAMS: RingParams = RingParams {
        store_mfn: 0x1000,
        store_port: 1,
        console_mfn: 0x1001,
        console_port: 2,
    };

    #[test]
    fn connecting_takes_two_windows_and_two_ports_and_gives_them_back() {
        let mut f = Fake::default();
        let rings = connect(&mut f, 1, &PARAMS).unwrap();
        assert_eq!((f.windows_in_use.len(), f.ports_bound.len()), (2, 2));
        assert_eq!((rings.store, rings.console), (0x1000, 0x1001));
        disconnect(&mut f, rings);
        assert!(f.windows_in_use.is_empty() && f.ports_bound.is_empty());
    }

    #[test]
    fn a_failure_at_any_step_leaves_nothing_taken() {
        for step in [
            Step::MapStore,
            Step::MapConsole,
            Step::BindStore,
            Step::BindConsole,
        ] {
            let mut f = Fake {
                fail: Some(step),
                ..Fake::default()
            };
            let err = connect(&mut f, 1, &PARAMS).unwrap_err();
            let want = match step {
                Step::MapStore => ConnectError::Map(Ring::Store, "refused"),
                Step::MapConsole => ConnectError::Map(Ring::Console, "refused"),
                Step::BindStore => ConnectError::Bind(Ring::Store, Errno::EINVAL.into()),
                Step::BindConsole => ConnectError::Bind(Ring::Console, Errno::EINVAL.into()),
            };
            assert_eq!(err, want);
            assert!(
                f.windows_in_use.is_empty(),
                "{step:?}: windows left mapped: {:?}",
                f.windows_in_use
            );
            assert!(
                f.ports_bound.is_empty(),
                "{step:?}: ports left bound: {:?}",
                f.ports_bound
            );
        }
        assert_eq!(
            ConnectError::<&str>::Bind(Ring::Console, Errno::EINVAL.into()).to_string(),
            "console port: bind_interdomain=-22"
        );
    }

    #[test]
    fn a_domain_that_failed_is_not_tried_again_until_it_is_gone() {
        // The scan loop runs on every VIRQ_DOM_EXC: a domain whose introduction failed must not
        // be retried (and leak again) each time.
        let mut failed = Failed::new();
        let mut f = Fake {
            fail: Some(Step::BindStore),
            ..Fake::default()
        };
        let mut attempts = Vec::new();
        for _scan in 0..40 {
            for id in [1u16, 2] {
                if !failed.may_try(id) {
                    continue;
                }
                attempts.push(id);
                if connect(&mut f, id, &PARAMS).is_err() {
                    failed.record(id);
                }
            }
        }
        assert_eq!(attempts, [1, 2], "each tried once");
        assert!(f.windows_in_use.is_empty());
        // Once a domain is gone its id may be used again by a new one, which is tried afresh.
        failed.retain_present(|id| id == 2);
        assert!(failed.may_try(1));
        assert!(!failed.may_try(2));
    }
}
