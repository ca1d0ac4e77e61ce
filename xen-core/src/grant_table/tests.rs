//! Host tests of the grant table state machine.
