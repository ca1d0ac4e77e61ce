//! XenBus device states, mirroring `io/xenbus.h`.
//!
//! Each end of a split device publishes its state in its `state` xenstore node; see
//! [`super::blkif`] for the handshake.

/// `enum xenbus_state`.
#[doc(alias = "xenbus_state")]
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum XenbusState {
    /// No state node, or an unparseable one.
    #[doc(alias = "XenbusStateUnknown")]
    #[default]
    Unknown = 0,
    /// Setting up (initial state written by the toolstack).
    #[doc(alias = "XenbusStateInitialising")]
    Initialising = 1,
    /// Back end: features published, waiting for the front end's transport details.
    #[doc(alias = "XenbusStateInitWait")]
    InitWait = 2,
    /// Front end: ring and event channel published.
    #[doc(alias = "XenbusStateInitialised")]
    Initialised = 3,
    /// Ready for I/O.
    #[doc(alias = "XenbusStateConnected")]
    Connected = 4,
    /// Shutting down; the peer should follow.
    #[doc(alias = "XenbusStateClosing")]
    Closing = 5,
    /// Closed.
    #[doc(alias = "XenbusStateClosed")]
    Closed = 6,
    /// Reconfiguration requested.
    #[doc(alias = "XenbusStateReconfiguring")]
    Reconfiguring = 7,
    /// Reconfiguration done.
    #[doc(alias = "XenbusStateReconfigured")]
    Reconfigured = 8,
}

impl XenbusState {
    /// Every state, in value order.
    pub const ALL: [XenbusState; 9] = [
        Self::Unknown,
        Self::Initialising,
        Self::InitWait,
        Self::Initialised,
        Self::Connected,
        Self::Closing,
        Self::Closed,
        Self::Reconfiguring,
        Self::Reconfigured,
    ];

    /// The state with numeric value `raw`.
    pub const fn from_raw(raw: u32) -> Option<XenbusState> {
        Some(match raw {
            0 => Self::Unknown,
            1 => Self::Initialising,
            2 => Self::InitWait,
            3 => Self::Initialised,
            4 => Self::Connected,
            5 => Self::Closing,
            6 => Self::Closed,
            7 => Self::Reconfiguring,
            8 => Self::Reconfigured,
            _ => return None,
        })
    }

    /// The state written as a decimal string in a `state` node (`b"4"`), as xenstore stores it.
    pub fn from_node(value: &[u8]) -> Option<XenbusState> {
        match value {
            [d @ b'0'..=b'8'] => Self::from_raw(u32::from(d - b'0')),
            _ => None,
        }
    }

    /// The numeric value.
    pub const fn raw(self) -> u32 {
        self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_raw_round_trips() {
        for s in XenbusState::ALL {
            assert_eq!(XenbusState::from_raw(s.raw()), Some(s));
        }
        assert_eq!(XenbusState::from_raw(4), Some(XenbusState::Connected));
        assert_eq!(XenbusState::from_raw(9), None);
        assert_eq!(XenbusState::from_node(b"6"), Some(XenbusState::Closed));
        assert_eq!(XenbusState::from_node(b"9"), None);
        assert_eq!(XenbusState::from_node(b"04"), None);
        assert_eq!(XenbusState::from_node(b""), None);
    }
}
