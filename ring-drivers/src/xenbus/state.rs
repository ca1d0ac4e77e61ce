//! The XenbusState handshake of a split device, both ends, as pure state machines.
//!
//! Each end calls `on_other_end_changed(own, other)` whenever its watch on the peer's `state`
//! node fires (spurious or repeated firings are harmless: the answer depends only on the two
//! states) and performs the returned actions in order. The machines never touch xenstore
//! themselves: the kernel reads and writes the device's keys (for the block device
//! `blkif::keys`, `blkif::BackendInfo`, `blkif::FrontendTransport`) with its xenbus client. The
//! machines know no device: `blkif` uses this module, never the other way round.
//!
//! ```text
//! front                                   back
//! Initialising                            Initialising
//!                                          start: PublishBackendInfo, -> InitWait
//!  back InitWait: PublishTransport,
//!                 -> Initialised
//!                                          front Initialised: ReadFrontendTransport, Connect,
//!                                                             -> Connected
//!  back Connected: ReadBackendInfo,
//!                  Connect, -> Connected
//!  close: -> Closing
//!                                          front Closing: Disconnect, -> Closing
//!  back Closing: Disconnect, -> Closed
//!                                          front Closed: Disconnect, -> Closed
//!  reconnect: -> Initialising
//!                                          front Initialising (own Closed): PublishBackendInfo,
//!                                                             -> InitWait
//!  back InitWait: ... as above
//! ```
//!
//! The rules follow Linux's `blkfront`/`blkback` `*_changed` handlers: a front end may find
//! the back end already `Connected` (it skipped `InitWait`) and does both steps at once; a back
//! end closes by disconnecting first (so the ring page is unmapped before the front end ends its
//! grant) and then writing `Closing`; `Disconnect` is idempotent (tear down what exists).

use alloc::vec;
use alloc::vec::Vec;

use hypercall_abi::io::xenbus::XenbusState;

/// A step for the front end's kernel glue, in the order returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontendAction {
    /// Initialise the ring page (`blkif::BlkFront::new`), grant it and the data pages
    /// to the back end, allocate an unbound event channel for it, and write
    /// the transport keys (`blkif::FrontendTransport::to_keys`) in the own directory.
    PublishTransport,
    /// Read the back end's directory (`blkif::BackendInfo::from_keys`).
    ReadBackendInfo,
    /// Start I/O (`blkif::BlkFront::connect`).
    Connect,
    /// Stop I/O and tear down whatever exists: end the grants, close the event channel.
    Disconnect,
    /// Write this state in the own `state` node.
    SwitchState(XenbusState),
}

/// A step for the back end's kernel glue, in the order returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendAction {
    /// Write the device's properties (`blkif::BackendInfo::to_keys`) in the own directory.
    PublishBackendInfo,
    /// Read the front end's directory (`blkif::FrontendTransport::from_keys`).
    ReadFrontendTransport,
    /// Map the ring page, bind the event channel, start serving (`blkif::BlkBack::new`).
    Connect,
    /// Stop serving and tear down whatever exists: unmap the ring, unbind the event channel.
    Disconnect,
    /// Write this state in the own `state` node.
    SwitchState(XenbusState),
}

use XenbusState as S;

/// The front end's reaction to the back end's state `backend`, the front end being in `own`.
pub fn frontend_on_other_end_changed(
    own: XenbusState,
    backend: XenbusState,
) -> Vec<FrontendAction> {
    use FrontendAction as A;
    let publish = [A::PublishTransport, A::SwitchState(S::Initialised)];
    let connect = [A::ReadBackendInfo, A::Connect, A::SwitchState(S::Connected)];
    let closed = vec![A::Disconnect, A::SwitchState(S::Closed)];
    match (own, backend) {
        (S::Initialising, S::InitWait) => publish.to_vec(),
        // The back end came back after a close: start over.
        (S::Closed, S::InitWait) => [&[A::SwitchState(S::Initialising)][..], &publish].concat(),
        // The back end skipped InitWait.
        (S::Initialising, S::Connected) => [&publish[..], &connect].concat(),
        (S::Initialised, S::Connected) => connect.to_vec(),
        (S::Closed, S::Closing | S::Closed) => vec![],
        (_, S::Closing) => closed,
        // Closed: close too, unless we are waiting for the back end to come back.
        (S::Initialising, S::Closed) => vec![],
        (_, S::Closed) => closed,
        // The back end's directory vanished.
        (S::Initialised | S::Connected | S::Closing, S::Unknown) => closed,
        _ => vec![],
    }
}

/// The back end's reaction to the front end's state `frontend`, the back end being in `own`.
pub fn backend_on_other_end_changed(own: XenbusState, frontend: XenbusState) -> Vec<BackendAction> {
    use BackendAction as A;
    let closed = vec![A::Disconnect, A::SwitchState(S::Closed)];
    match (own, frontend) {
        (S::InitWait, S::Initialised | S::Connected) => vec![
            A::ReadFrontendTransport,
            A::Connect,
            A::SwitchState(S::Connected),
        ],
        // The front end starts over after a close: prepare for a reconnect.
        (S::Closed, S::Initialising) => {
            vec![A::PublishBackendInfo, A::SwitchState(S::InitWait)]
        }
        (S::Closing | S::Closed, S::Closing) => vec![],
        (_, S::Closing) => vec![A::Disconnect, A::SwitchState(S::Closing)],
        (S::Closed, S::Closed | S::Unknown) => vec![],
        (_, S::Closed) => closed,
        // The front end's directory vanished (the integrator removes the device).
        (S::InitWait | S::Connected | S::Closing, S::Unknown) => closed,
        _ => vec![],
    }
}

/// A front end's handshake state, driven by the back end's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenbusFrontend {
    state: XenbusState,
}

/// A back end's handshake state, driven by the front end's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenbusBackend {
    state: XenbusState,
}

fn track<A: Copy>(state: &mut XenbusState, actions: &[A], switch: impl Fn(A) -> Option<S>) {
    for &a in actions {
        if let Some(s) = switch(a) {
            *state = s;
        }
    }
}

fn front_switch(a: FrontendAction) -> Option<S> {
    match a {
        FrontendAction::SwitchState(s) => Some(s),
        _ => None,
    }
}

fn back_switch(a: BackendAction) -> Option<S> {
    match a {
        BackendAction::SwitchState(s) => Some(s),
        _ => None,
    }
}

impl Default for XenbusFrontend {
    fn default() -> Self {
        Self::new()
    }
}

impl XenbusFrontend {
    /// A front end in `Initialising` (as the toolstack created it).
    pub fn new() -> Self {
        XenbusFrontend {
            state: S::Initialising,
        }
    }

    /// The state last switched to (what the own `state` node should say).
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The back end's `state` node changed (or the watch fired): the actions to perform.
    pub fn on_other_end_changed(&mut self, backend: XenbusState) -> Vec<FrontendAction> {
        let actions = frontend_on_other_end_changed(self.state, backend);
        track(&mut self.state, &actions, front_switch);
        actions
    }

    /// Starts closing (device unplug, shutdown): `Closing`; the ring stays up until the back
    /// end has closed (it may still be using it). From `Initialising`, straight to `Closed`.
    pub fn close(&mut self) -> Vec<FrontendAction> {
        let actions = match self.state {
            S::Initialising => vec![FrontendAction::SwitchState(S::Closed)],
            S::Initialised | S::Connected => vec![FrontendAction::SwitchState(S::Closing)],
            _ => vec![],
        };
        track(&mut self.state, &actions, front_switch);
        actions
    }

    /// After `Closed`: starts over (`Initialising`) and reacts to the back end's current state
    /// `backend` (if it is already back in `InitWait`, the transport is published at once).
    pub fn reconnect(&mut self, backend: XenbusState) -> Vec<FrontendAction> {
        if self.state != S::Closed {
            return vec![];
        }
        self.state = S::Initialising;
        let mut actions = vec![FrontendAction::SwitchState(S::Initialising)];
        actions.extend(self.on_other_end_changed(backend));
        actions
    }
}

impl Default for XenbusBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl XenbusBackend {
    /// A back end in `Initialising` (as the toolstack created it).
    pub fn new() -> Self {
        XenbusBackend {
            state: S::Initialising,
        }
    }

    /// The state last switched to.
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The device is open: publish its properties and wait for the front end (`InitWait`).
    pub fn start(&mut self) -> Vec<BackendAction> {
        let actions = match self.state {
            S::Initialising => vec![
                BackendAction::PublishBackendInfo,
                BackendAction::SwitchState(S::InitWait),
            ],
            _ => vec![],
        };
        track(&mut self.state, &actions, back_switch);
        actions
    }

    /// The front end's `state` node changed (or the watch fired): the actions to perform.
    pub fn on_other_end_changed(&mut self, frontend: XenbusState) -> Vec<BackendAction> {
        let actions = backend_on_other_end_changed(self.state, frontend);
        track(&mut self.state, &actions, back_switch);
        actions
    }

    /// Closes from the back end's side (device removed, ring overrun, a key that would not
    /// parse): disconnect first, so the ring page is unmapped before the front end ends its
    /// grant, then `Closing`.
    pub fn close(&mut self) -> Vec<BackendAction> {
        let actions = match self.state {
            S::Closing | S::Closed => vec![],
            _ => vec![
                BackendAction::Disconnect,
                BackendAction::SwitchState(S::Closing),
            ],
        };
        track(&mut self.state, &actions, back_switch);
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_state<A: Copy>(own: S, actions: &[A], switch: impl Fn(A) -> Option<S>) -> S {
        let mut s = own;
        track(&mut s, actions, switch);
        s
    }

    #[test]
    fn reactions_are_idempotent_for_every_pair_of_states() {
        // A watch may fire again with nothing changed: the second reaction must be empty.
        for own in S::ALL {
            for other in S::ALL {
                let a = frontend_on_other_end_changed(own, other);
                let next = last_state(own, &a, front_switch);
                assert_eq!(
                    frontend_on_other_end_changed(next, other),
                    vec![],
                    "front {own:?} -> {next:?} on {other:?}"
                );
                let a = backend_on_other_end_changed(own, other);
                let next = last_state(own, &a, back_switch);
                assert_eq!(
                    backend_on_other_end_changed(next, other),
                    vec![],
                    "back {own:?} -> {next:?} on {other:?}"
                );
            }
        }
    }

    #[test]
    fn front_end_copes_with_a_back_end_that_skips_initwait() {
        use FrontendAction as A;
        assert_eq!(
            frontend_on_other_end_changed(S::Initialising, S::Connected),
            vec![
                A::PublishTransport,
                A::SwitchState(S::Initialised),
                A::ReadBackendInfo,
                A::Connect,
                A::SwitchState(S::Connected),
            ]
        );
        // Waiting for a closed back end to come back is not a reason to close.
        assert_eq!(
            frontend_on_other_end_changed(S::Initialising, S::Closed),
            vec![]
        );
        let mut f = XenbusFrontend::new();
        assert_eq!(f.close(), vec![A::SwitchState(S::Closed)]);
        assert_eq!(f.reconnect(S::InitWait).len(), 3);
        assert_eq!(f.state(), S::Initialised);
    }

    #[test]
    fn back_end_connects_on_initialised_or_connected() {
        use BackendAction as A;
        let connect = vec![
            A::ReadFrontendTransport,
            A::Connect,
            A::SwitchState(S::Connected),
        ];
        assert_eq!(
            backend_on_other_end_changed(S::InitWait, S::Initialised),
            connect
        );
        assert_eq!(
            backend_on_other_end_changed(S::InitWait, S::Connected),
            connect
        );
        assert_eq!(
            backend_on_other_end_changed(S::Initialising, S::Initialised),
            vec![]
        );
        let mut b = XenbusBackend::new();
        assert_eq!(
            b.on_other_end_changed(S::Initialised),
            vec![],
            "not started"
        );
        assert_eq!(b.start().len(), 2);
        assert_eq!(b.on_other_end_changed(S::Initialised), connect);
        assert_eq!(
            b.close()[0],
            A::Disconnect,
            "unmap before the front end ends its grant"
        );
        assert_eq!(b.state(), S::Closing);
    }
}
