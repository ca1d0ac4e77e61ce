//! What a hypercall did, as data: its result or continuation, and its effects on the world
//! (crash the caller, wake these domains, TLB work before the caller runs again).
//!
//! Handlers record effects in the call's [`Effects`] (`Ctx::fx`): a continuation with
//! `Ctx::create_continuation`, TLB work through the frame-table context they borrow, the domains
//! an event woke ([`Kicks`], from the event-channel code's `Kick`s), a crash. `crate::hypercall::dispatch`
//! hands them back as the [`Outcome`], which the caller applies ([`Outcome::apply`]: RAX or the
//! continuation into the guest's registers, the crash, the TLB work owed by the vCPU) and the
//! scheduler reads: an entry whose outcome kicked nobody leaves every other domain as it was, so
//! the way out need not look at them (`crate::sched::core`).

use crate::bounce::CrashReason;
use crate::domain::{Domain, DomainId, FlushRequest, Shutdown};
use crate::regs::Regs;

/// What a preempted hypercall asks for instead of a result (Xen's
/// `hypercall_create_continuation`): to be issued again with these arguments, the first `nargs`
/// of them rewritten (Xen's format string has one letter per argument it sets; the others keep
/// what the guest passed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Continuation {
    /// The new arguments.
    pub args: [u64; 5],
    /// How many of them the continuation sets.
    pub nargs: usize,
}

impl Continuation {
    /// A continuation that sets the first `args.len()` arguments.
    pub fn new(args: &[u64]) -> Continuation {
        let mut a = [0; 5];
        a[..args.len()].copy_from_slice(args);
        Continuation {
            args: a,
            nargs: args.len(),
        }
    }
}

/// Domains whose state a hypercall changed so that the scheduler must look at them again: an
/// event made pending for them (Xen's `vcpu_kick`), or they were shut down or destroyed.
/// The first [`Kicks::CAPACITY`] are named; past them the list only says that there were more
/// ([`Kicks::overflowed`]), and the way out then looks at every domain (the full scheduling
/// pass), which is what a kick asks and more. Small, so that a call's record is cheap to move.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kicks {
    ids: heapless::Vec<DomainId, { Kicks::CAPACITY }>,
    overflow: bool,
}

impl Kicks {
    /// Domains named at most (a send kicks one, a multicall of sends a few).
    pub const CAPACITY: usize = 8;

    /// Nobody kicked.
    pub const NONE: Kicks = Kicks {
        ids: heapless::Vec::new(),
        overflow: false,
    };

    /// Adds domain `id` (once).
    pub fn add(&mut self, id: DomainId) {
        if !self.ids.contains(&id) && self.ids.push(id).is_err() {
            self.overflow = true;
        }
    }

    /// Adds every domain of `other`.
    pub fn merge(&mut self, other: &Kicks) {
        for &id in &other.ids {
            self.add(id);
        }
        self.overflow |= other.overflow;
    }

    /// Whether domain `id` may have been kicked (always, once the list overflowed).
    pub fn contains(&self, id: DomainId) -> bool {
        self.overflow || self.ids.contains(&id)
    }

    /// Whether nobody was kicked.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && !self.overflow
    }

    /// Whether more domains were kicked than the list names: [`Kicks::iter`] is not all of them.
    #[inline]
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The kicked domains it names, in the order they were first kicked.
    pub fn iter(&self) -> impl Iterator<Item = DomainId> + '_ {
        self.ids.iter().copied()
    }
}

/// What a call recorded while it ran (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Set by a handler that stopped part-way: the arguments to issue it again with.
    pub continuation: Option<Continuation>,
    /// Domains to look at again.
    pub kicks: Kicks,
    /// TLB, cache and CR3 work to do before the caller runs again.
    pub flush: FlushRequest,
    /// The caller broke the rules: crash it.
    pub crash: Option<CrashReason>,
    /// A call ran that needs the full way out (its row's `Exit::Full` in the hypercall table, or
    /// a handler that changed state the way out acts on).
    pub full_exit: bool,
}

impl Effects {
    /// Applies what hypercall `nr`, which returned `v`, recorded to its caller, as
    /// [`Outcome::apply`] does with [`Outcome::from_effects`], and empties the record in place
    /// for the next call (no copy of it is made: the way out of every hypercall that did
    /// something goes through here); returns the domains it kicked.
    pub fn apply_and_clear(&mut self, v: i64, nr: u64, dom: &mut Domain, regs: &mut Regs) -> Kicks {
        // Every field by name: one added later must be emptied here too.
        let Effects {
            continuation,
            kicks,
            flush,
            crash,
            full_exit,
        } = self;
        let ret = match continuation.take() {
            Some(c) => Ret::Continue(c),
            None => Ret::Value(v),
        };
        apply_to_caller(ret, flush, crash.take(), nr, dom, regs);
        flush.clear();
        *full_exit = false;
        core::mem::take(kicks)
    }

    /// Whether the call left nothing for the way out to do, so that its caller may go straight
    /// back to its guest: only `Exit::Fast` rows ran (the hypercall table), it finished (no
    /// continuation), kicked no domain, owes no TLB work and broke no rule.
    #[inline]
    pub fn nothing_to_do(&self) -> bool {
        !self.full_exit
            && self.continuation.is_none()
            && self.kicks.is_empty()
            && self.flush.is_empty()
            && self.crash.is_none()
    }
}

/// A hypercall's result for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// The value for RAX: non-negative on success, `-errno` on failure.
    Value(i64),
    /// Preempted: issue the same hypercall again with these arguments (Xen's
    /// `hypercall_create_continuation`); no value is written.
    Continue(Continuation),
}

/// What a hypercall did (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Its result, or its continuation.
    pub ret: Ret,
    /// Domains to look at again.
    pub kicks: Kicks,
    /// TLB, cache and CR3 work owed before the caller runs again.
    pub flush: FlushRequest,
    /// Crash the caller, for this reason.
    pub crash: Option<CrashReason>,
    /// The way out must be the full one (see [`Effects::full_exit`]).
    pub full_exit: bool,
}

impl Outcome {
    /// A plain result with no effects.
    pub fn value(v: i64) -> Outcome {
        Outcome {
            ret: Ret::Value(v),
            kicks: Kicks::default(),
            flush: FlushRequest::default(),
            crash: None,
            full_exit: false,
        }
    }

    /// The outcome of a call that returned `v` (meaningless if it continues) having recorded
    /// `fx`.
    pub fn from_effects(v: i64, fx: Effects) -> Outcome {
        Outcome {
            ret: match fx.continuation {
                Some(c) => Ret::Continue(c),
                None => Ret::Value(v),
            },
            kicks: fx.kicks,
            flush: fx.flush,
            crash: fx.crash,
            full_exit: fx.full_exit,
        }
    }

    /// The value for RAX (0 for a continuation, which writes none).
    pub fn rax(&self) -> i64 {
        match self.ret {
            Ret::Value(v) => v,
            Ret::Continue(_) => 0,
        }
    }

    /// The continuation, if the call was preempted.
    pub fn continuation(&self) -> Option<Continuation> {
        match self.ret {
            Ret::Continue(c) => Some(c),
            Ret::Value(_) => None,
        }
    }

    /// Applies the effects on the caller itself: the TLB work becomes the vCPU's to owe, a crash
    /// shuts it down.
    pub fn apply_effects(&self, dom: &mut Domain) {
        apply_effects_to(&self.flush, self.crash, dom);
    }

    /// Applies the outcome of hypercall `nr` to its caller (see [`apply_to_caller`]).
    pub fn apply(&self, nr: u64, dom: &mut Domain, regs: &mut Regs) {
        apply_to_caller(self.ret, &self.flush, self.crash, nr, dom, regs);
    }
}

/// The effects of a call on its caller itself: the TLB work becomes the vCPU's to owe, a crash
/// shuts it down.
fn apply_effects_to(flush: &FlushRequest, crash: Option<CrashReason>, dom: &mut Domain) {
    dom.vcpu_mut().flush.merge(flush);
    if let Some(why) = crash {
        dom.shutdown = Some(Shutdown::Crashed(why));
    }
}

/// Applies the outcome of hypercall `nr` (`ret`, `flush`, `crash`) to its caller: the TLB work
/// becomes the vCPU's to owe, a crash shuts it down, and the result goes into RAX, or, for a
/// continuation, the guest is made to issue the same hypercall again from its `syscall`
/// instruction (2 bytes) with the arguments the handler set (Xen's
/// `hypercall_create_continuation`: `regs->rip -= 2`, the format's registers rewritten, the
/// others left as the guest had them).
fn apply_to_caller(
    ret: Ret,
    flush: &FlushRequest,
    crash: Option<CrashReason>,
    nr: u64,
    dom: &mut Domain,
    regs: &mut Regs,
) {
    apply_effects_to(flush, crash, dom);
    match ret {
        Ret::Continue(c) => {
            regs.rip = regs.rip.wrapping_sub(2);
            regs.rax = nr;
            let arg_regs = [
                &mut regs.rdi,
                &mut regs.rsi,
                &mut regs.rdx,
                &mut regs.r10,
                &mut regs.r8,
            ];
            for (r, &v) in arg_regs.into_iter().zip(&c.args).take(c.nargs) {
                *r = v;
            }
        }
        Ret::Value(v) => regs.rax = v as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::Mfn;

    #[test]
    fn a_kick_list_past_its_capacity_says_so_and_then_contains_everyone() {
        let mut k = Kicks::default();
        for id in 1..=Kicks::CAPACITY as DomainId {
            k.add(id);
            k.add(id);
        }
        assert!(!k.overflowed() && !k.contains(100));
        assert_eq!(k.iter().count(), Kicks::CAPACITY);
        k.add(100);
        assert!(k.overflowed() && !k.is_empty());
        assert!(
            k.contains(100) && k.contains(4000),
            "any domain may have been kicked"
        );
        let mut merged = Kicks::default();
        merged.add(1);
        merged.merge(&k);
        assert!(merged.overflowed(), "merging keeps the overflow");
    }

    /// A record with a result, a continuation or not, TLB work and a crash, and kicks.
    fn record(continuation: bool) -> Effects {
        let mut fx = Effects {
            continuation: continuation.then(|| Continuation::new(&[7, 8])),
            crash: Some("test"),
            full_exit: true,
            ..Effects::default()
        };
        fx.flush.load_cr3(Mfn(9));
        fx.flush.cache_flush = true;
        fx.kicks.add(3);
        fx
    }

    #[test]
    fn applying_a_record_in_place_does_what_its_outcome_does_and_empties_it() {
        for continuation in [false, true] {
            let (mut a, mut b) = (
                crate::hypercall::testing::guest(1),
                crate::hypercall::testing::guest(1),
            );
            let (mut ra, mut rb) = (Regs::default(), Regs::default());
            ra.rip = 0x1000;
            rb.rip = 0x1000;
            let out = Outcome::from_effects(-22, record(continuation));
            out.apply(24, &mut a.dom, &mut ra);
            let mut fx = record(continuation);
            let kicks = fx.apply_and_clear(-22, 24, &mut b.dom, &mut rb);
            assert_eq!(ra, rb, "the same registers");
            assert_eq!(
                a.dom.vcpu().flush,
                b.dom.vcpu().flush,
                "the same TLB work owed"
            );
            assert_eq!(a.dom.shutdown, b.dom.shutdown, "the same crash");
            assert_eq!(kicks, out.kicks);
            assert_eq!(fx, Effects::default(), "the record is empty again");
            assert!(fx.nothing_to_do());
        }
    }
}
