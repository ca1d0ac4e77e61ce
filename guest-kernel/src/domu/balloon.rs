//! The domU's balloon: follows xenstore's `memory/target` (KiB, as Linux's balloon reads it),
//! giving pages back to the hypervisor and taking them again.
//!
//! A lingering domU watches `memory/target` (relative: `/local/domain/<id>/memory/target`,
//! which dom0's toolstack writes at introduction and with `mem-set`). Below the pages it holds,
//! it takes free pages from its frame allocator, unmaps each (the direct map is the only
//! mapping of a free page), gives the machine frames back with `XENMEM_decrease_reservation`
//! and marks their p2m entries invalid, as Linux's `decrease_reservation` does. Above, it gets
//! frames for those same pfns with `XENMEM_populate_physmap`, puts them in the p2m, maps them
//! again and frees the pfns into its allocator. It never goes above the pages it booted with
//! (no memory hotplug), nor gives away the last [`RESERVE`] free pages.
//!
//! Each time it reaches a target it prints `balloon: now <pages> pages ...` and proves it still
//! works: a buffer it filled before any ballooning still holds its pattern, and its block
//! device (reconnected after the demo closed it) reads sector 0 as it did at the start.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use guest_kernel::paging::{Pfn, PTE_FRAME_MASK, PTE_P};
use hypercall_abi::memory::{DecreaseReservation, PopulatePhysmap, XenMemoryReservation};
use hypercall_abi::xen::{DOMID_SELF, UVMF_INVLPG};
use ring_drivers::xenbus::Request;

use super::blkfront::Blkfront;
use super::client::Client;
use super::error::DomuError;
use super::xenbus_front::XenbusDevice;
use crate::kernel::hypercall::{self as hc, ptr as gp};
use crate::kernel::{console, direct_map, mm};

/// Free pages the balloon always leaves to the kernel.
pub const RESERVE: u64 = 256;
/// Extents per `memory_op` call.
const BATCH: usize = 256;
/// The watch token.
const TOKEN: &str = "balloon";
/// Bytes of the buffer whose pattern is checked after each target.
const CANARY_BYTES: usize = 64 * 1024;

/// A page given back: its pfn and the flags of the direct-map entry that mapped it.
#[derive(Clone, Copy)]
struct Out {
    pfn: Pfn,
    flags: u64,
}

/// The pages given back, and what the domain booted with.
pub struct Balloon {
    out: Vec<Out>,
    booted: u64,
}

fn reservation(list: &mut [u64]) -> XenMemoryReservation {
    XenMemoryReservation {
        extent_start: gp(list.as_mut_ptr()),
        nr_extents: list.len() as u64,
        extent_order: 0,
        mem_flags: 0,
        domid: DOMID_SELF,
        ..Default::default()
    }
}

/// Maps `pfn` at its direct-map address with PTE `pte` (0: unmapped).
fn map(pfn: Pfn, pte: u64) -> i64 {
    // SAFETY: `pfn` is a page the balloon owns (taken from the frame allocator, or given back
    // and not yet returned to it): no Rust reference points into it.
    unsafe { hc::update_va_mapping(pfn.0 << 12, pte, UVMF_INVLPG) }
}

impl Balloon {
    /// Nothing given back yet.
    pub fn new() -> Balloon {
        Balloon {
            out: Vec::new(),
            booted: mm::layout().nr_pages,
        }
    }

    /// Pages the domain holds (by its own count).
    pub fn pages(&self) -> u64 {
        self.booted - self.out.len() as u64
    }

    /// Moves towards `target` pages; returns the pages held afterwards.
    pub fn set_target(&mut self, target: u64) -> u64 {
        let target = target.min(self.booted);
        let now = self.pages();
        if target < now {
            self.give_back(now - target);
        } else if target > now {
            self.take_again(target - now);
        }
        self.pages()
    }

    /// Gives up to `n` free pages back to the hypervisor.
    fn give_back(&mut self, mut n: u64) {
        while n > 0 {
            let mut batch: Vec<Out> = Vec::new();
            while (batch.len() as u64) < n.min(BATCH as u64) && mm::free_frames() > RESERVE {
                let Some(pfn) = mm::alloc_frame() else { break };
                let old = mm::l1_slot(pfn.0 << 12).map_or(0, |s| s.value);
                if old & PTE_P == 0 || map(pfn, 0) != 0 {
                    let _ = mm::free_frame(pfn);
                    break;
                }
                batch.push(Out {
                    pfn,
                    flags: old & !PTE_FRAME_MASK,
                });
            }
            if batch.is_empty() {
                return;
            }
            let mut mfns: Vec<u64> = batch
                .iter()
                .map(|o| mm::pfn_to_mfn(o.pfn.0).unwrap_or(u64::MAX))
                .collect();
            let done = hc::memory_op(&mut DecreaseReservation(reservation(&mut mfns)));
            let done = usize::try_from(done).unwrap_or(0).min(batch.len());
            for o in &batch[..done] {
                mm::set_p2m(o.pfn.0, u64::MAX);
            }
            // What the hypervisor did not take is ours again: mapped back, freed.
            for (o, &mfn) in batch[done..].iter().zip(&mfns[done..]) {
                let _ = map(o.pfn, (mfn << 12) | o.flags);
                let _ = mm::free_frame(o.pfn);
            }
            self.out.extend_from_slice(&batch[..done]);
            n -= done as u64;
            if done < batch.len() {
                return;
            }
        }
    }

    /// Takes up to `n` of the pages given back again.
    fn take_again(&mut self, mut n: u64) {
        while n > 0 && !self.out.is_empty() {
            let k = self.out.len().min(BATCH).min(n as usize);
            let batch: Vec<Out> = self.out[self.out.len() - k..].to_vec();
            let mut list: Vec<u64> = batch.iter().map(|o| o.pfn.0).collect();
            let done = hc::memory_op(&mut PopulatePhysmap(reservation(&mut list)));
            let done = usize::try_from(done).unwrap_or(0).min(k);
            for (o, &mfn) in batch[..done].iter().zip(&list[..done]) {
                mm::set_p2m(o.pfn.0, mfn);
                if map(o.pfn, (mfn << 12) | o.flags) == 0 {
                    let _ = mm::free_frame(o.pfn);
                }
            }
            // The populated ones leave the list (the last `k` entries, in order).
            let keep = self.out.len() - k;
            let undone: Vec<Out> = batch[done..].to_vec();
            self.out.truncate(keep);
            self.out.extend_from_slice(&undone);
            n -= done as u64;
            if done < k {
                return;
            }
        }
    }
}

/// A buffer filled with a pattern before any ballooning, checked after each target.
fn canary() -> Vec<u8> {
    let mut v = vec![0u8; CANARY_BYTES];
    for (i, b) in v.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
    }
    v
}

fn canary_ok(v: &[u8]) -> bool {
    canary() == v
}

/// The target in pages from `memory/target` (KiB), if it is there and a number.
fn read_target(d: &mut Client) -> Result<Option<u64>, DomuError> {
    Ok(match d.read("memory/target")? {
        Ok(v) => core::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|kib| kib / 4),
        Err(_) => None,
    })
}

/// Reads sector 0 of the vbd, if there is one.
fn read_sector0(d: &mut Client, vbd: &mut Option<Blkfront>) -> Option<Vec<u8>> {
    let b = vbd.as_mut()?;
    let mut buf = vec![0u8; 512];
    b.read(d, 0, &mut buf).ok()?;
    Some(buf)
}

/// Follows `memory/target` until dom0 shuts the domain down (reading sector 0 of `vbd`, if
/// dom0 gave us one, after each change): never returns but on a xenstore failure.
pub fn serve(d: &mut Client, mut vbd: Option<Blkfront>) -> Result<(), DomuError> {
    direct_map::init_memory().map_err(|_| DomuError::NoFrame("direct map"))?;
    let keep = canary();
    if let Some(v) = vbd.as_mut() {
        v.reconnect(d)?;
    }
    let sector0 = read_sector0(d, &mut vbd);
    let mut b = Balloon::new();
    d.ok(
        0,
        &Request::Watch {
            path: "memory/target",
            token: TOKEN,
        },
    )?
    .map_err(|e| DomuError::Refused(String::from("watch memory/target"), e))?;
    println!(
        "balloon: ready, {} pages, {} free",
        b.pages(),
        mm::free_frames()
    );
    console::flush();
    loop {
        while let Some(w) = d.watches.pop_front() {
            if w.token != TOKEN {
                continue;
            }
            let Some(target) = read_target(d)? else {
                continue;
            };
            if target.min(b.booted) == b.pages() {
                continue;
            }
            let now = b.set_target(target);
            let vbd_state = match (&sector0, read_sector0(d, &mut vbd)) {
                (Some(a), Some(b)) if *a == b => "vbd read ok",
                (Some(_), Some(_)) => "vbd read DIFFERS",
                (Some(_), None) => "vbd read FAILED",
                (None, _) => "no vbd",
            };
            let short = target.min(b.booted).abs_diff(now);
            let short = if short == 0 {
                String::new()
            } else {
                format!(", {short} short")
            };
            println!(
                "balloon: now {now} pages (target {} KiB{short}), {} free, memory {}, {vbd_state}",
                target * 4,
                mm::free_frames(),
                if canary_ok(&keep) {
                    "intact"
                } else {
                    "CORRUPTED"
                }
            );
            console::flush();
        }
        d.step();
        console::flush();
    }
}
