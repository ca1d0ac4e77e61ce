//! The xenstore wire protocol and ring page, mirroring `io/xs_wire.h`.
//!
//! A message is an [`XsdSockmsg`] header followed by `len` (at most [`XENSTORE_PAYLOAD_MAX`])
//! payload bytes. Paths and values are NUL-terminated strings; errors come back as `XS_ERROR`
//! with the errno name (`"ENOENT"`) as payload. The ring page ([`XenstoreDomainInterface`]) holds
//! two byte-stream rings with free-running indices, masked with [`mask_xenstore_idx`].

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::errno::Errno;
use crate::{assert_layout, zeroed_default};

// --- enum xsd_sockmsg_type. ---

/// Control command (also `XS_DEBUG`).
pub const XS_CONTROL: u32 = 0;
/// Old name of [`XS_CONTROL`].
pub const XS_DEBUG: u32 = XS_CONTROL;
/// List a directory.
pub const XS_DIRECTORY: u32 = 1;
/// Read a node.
pub const XS_READ: u32 = 2;
/// Read a node's permissions.
pub const XS_GET_PERMS: u32 = 3;
/// Set a watch (`path\0token\0`).
pub const XS_WATCH: u32 = 4;
/// Remove a watch.
pub const XS_UNWATCH: u32 = 5;
/// Start a transaction; the reply carries the id.
pub const XS_TRANSACTION_START: u32 = 6;
/// End a transaction (`"T"` commit / `"F"` abort).
pub const XS_TRANSACTION_END: u32 = 7;
/// Introduce a domain (privileged).
pub const XS_INTRODUCE: u32 = 8;
/// Release a domain (privileged).
pub const XS_RELEASE: u32 = 9;
/// Get a domain's home path.
pub const XS_GET_DOMAIN_PATH: u32 = 10;
/// Write a node (`path\0value`).
pub const XS_WRITE: u32 = 11;
/// Create a directory node.
pub const XS_MKDIR: u32 = 12;
/// Remove a node and its children.
pub const XS_RM: u32 = 13;
/// Set a node's permissions.
pub const XS_SET_PERMS: u32 = 14;
/// Watch fired (server to client, `path\0token\0`).
pub const XS_WATCH_EVENT: u32 = 15;
/// Error reply; payload is the errno name.
pub const XS_ERROR: u32 = 16;
/// Is a domain introduced?
pub const XS_IS_DOMAIN_INTRODUCED: u32 = 17;
/// Resume a domain.
pub const XS_RESUME: u32 = 18;
/// Make a domain the target of another.
pub const XS_SET_TARGET: u32 = 19;
/// Remove all watches and transactions of the caller.
pub const XS_RESET_WATCHES: u32 = XS_SET_TARGET + 2;
/// List part of a large directory.
pub const XS_DIRECTORY_PART: u32 = 22;
/// Number of message types.
pub const XS_TYPE_COUNT: u32 = 23;
/// Guaranteed to remain an invalid type.
pub const XS_INVALID: u32 = 0xffff;

// --- enum xs_watch_type: fields of an XS_WATCH_EVENT payload. ---

/// Index of the path in a watch event.
pub const XS_WATCH_PATH: u32 = 0;
/// Index of the token in a watch event.
pub const XS_WATCH_TOKEN: u32 = 1;

/// Historical write mode string.
pub const XS_WRITE_NONE: &str = "NONE";
/// Historical write mode string.
pub const XS_WRITE_CREATE: &str = "CREATE";
/// Historical write mode string.
pub const XS_WRITE_CREATE_EXCL: &str = "CREATE|EXCL";

/// The errors xenstored sends (`xsd_errors[]`), by the name carried in `XS_ERROR`.
#[doc(alias = "xsd_errors")]
pub const XSD_ERRORS: [Errno; 16] = [
    Errno::EINVAL,
    Errno::EACCES,
    Errno::EEXIST,
    Errno::EISDIR,
    Errno::ENOENT,
    Errno::ENOMEM,
    Errno::ENOSPC,
    Errno::EIO,
    Errno::ENOTEMPTY,
    Errno::ENOSYS,
    Errno::EROFS,
    Errno::EBUSY,
    Errno::EAGAIN,
    Errno::EISCONN,
    Errno::E2BIG,
    Errno::EPERM,
];

/// The [`XSD_ERRORS`] entry named by an `XS_ERROR` payload (without its NUL).
pub fn xsd_error_from_name(name: &[u8]) -> Option<Errno> {
    XSD_ERRORS
        .iter()
        .copied()
        .find(|e| e.name().as_bytes() == name)
}

/// Header of every xenstore message.
#[doc(alias = "xsd_sockmsg")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XsdSockmsg {
    /// `XS_*` message type.
    pub r#type: u32,
    /// Echoed in the reply.
    pub req_id: u32,
    /// Transaction id (0 = none).
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}
assert_layout!(XsdSockmsg, 16, { r#type: 0, req_id: 4, tx_id: 8, len: 12 });

/// `XENSTORE_RING_IDX`: a free-running xenstore ring index.
#[doc(alias = "XENSTORE_RING_IDX")]
pub type XenstoreRingIdx = u32;

/// Size of each xenstore ring.
pub const XENSTORE_RING_SIZE: usize = 1024;
/// Largest message payload.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Longest absolute path.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Longest relative path.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;
/// `server_features`: the server supports the `connection` reconnect handshake.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `server_features`: the server reports errors in `error`.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `connection`: connected.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `connection`: the guest asks the server to reset the rings.
pub const XENSTORE_RECONNECT: u32 = 1;
/// `error`: no error.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `error`: communication problem.
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `error`: invalid ring index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `error`: protocol violation.
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// `MASK_XENSTORE_IDX`: the ring offset of a free-running index.
#[doc(alias = "MASK_XENSTORE_IDX")]
pub const fn mask_xenstore_idx(idx: XenstoreRingIdx) -> usize {
    idx as usize & (XENSTORE_RING_SIZE - 1)
}

/// The xenstore ring page shared between a guest and xenstored.
#[doc(alias = "xenstore_domain_interface")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenstoreDomainInterface {
    /// Requests to xenstored.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events from xenstored.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    /// xenstored's consumer index into `req`.
    pub req_cons: XenstoreRingIdx,
    /// Guest's producer index into `req`.
    pub req_prod: XenstoreRingIdx,
    /// Guest's consumer index into `rsp`.
    pub rsp_cons: XenstoreRingIdx,
    /// xenstored's producer index into `rsp`.
    pub rsp_prod: XenstoreRingIdx,
    /// `XENSTORE_SERVER_FEATURE_*`, written by the server.
    pub server_features: u32,
    /// `XENSTORE_CONNECTED` / `XENSTORE_RECONNECT`.
    pub connection: u32,
    /// `XENSTORE_ERROR_*`, written by the server.
    pub error: u32,
}
assert_layout!(XenstoreDomainInterface, 2076, {
    req: 0, rsp: 1024, req_cons: 2048, req_prod: 2052, rsp_cons: 2056, rsp_prod: 2060,
    server_features: 2064, connection: 2068, error: 2072,
});
zeroed_default!(XenstoreDomainInterface);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_and_error_names() {
        assert_eq!(mask_xenstore_idx(1023), 1023);
        assert_eq!(mask_xenstore_idx(1024), 0);
        assert_eq!(mask_xenstore_idx(u32::MAX), 1023);
        assert_eq!(xsd_error_from_name(b"ENOENT"), Some(Errno::ENOENT));
        assert_eq!(xsd_error_from_name(b"ENOTSOCK"), None);
    }
}
