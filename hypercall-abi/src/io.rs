//! Split-driver protocols, mirroring `io/*.h`: the generic ring, block, network, xenstore, console.

pub mod blkif;
pub mod console;
pub mod netif;
pub mod ring;
pub mod xenbus;
pub mod xs_wire;
