//! Host tests for the xenstore server.
