//! Random operation sequences, checked against the invariants of the port tables and the shared bitmaps.

use super::*;

/// Marsaglia's xorshift64: reproducible randomness without a crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Checks the invariants of the whole world: over every port of the ABI if `full`, otherwise up to
/// the bucket boundary and a little beyond (cheaper, for use after every step).
fn check_invariants(w: &World, full: bool) {
    for d in w {
        let t = &d.ports;
        assert!(
            t.valid_ports() as usize <= NR_PORTS,
            "dom{}: table too large",
            d.id
        );
        assert_eq!(t.valid_ports() % PORTS_PER_BUCKET, 0);
        assert_eq!(
            t.stored(0).map(|c| c.state),
            Some(ChannelState::Reserved),
            "port 0 stays reserved"
        );
        let end = if full {
            NR_PORTS as u32
        } else {
            (t.valid_ports() + PORTS_PER_BUCKET).min(NR_PORTS as u32)
        };
        for port in 0..end {
            let Some(chan) = t.stored(port) else {
                assert!(
                    port >= t.valid_ports(),
                    "dom{} port {port} has no page",
                    d.id
                );
                continue;
            };
            if port >= t.valid_ports() || port > t.max_port() {
                assert_eq!(
                    chan,
                    Channel::FREE,
                    "dom{} port {port} beyond the bound",
                    d.id
                );
            }
            let pend = SharedInfoPage(&d.shared).evtchn_pending(port);
            match chan.state {
                ChannelState::Free => {
                    assert_eq!(chan.notify_vcpu, 0, "dom{} free port {port}", d.id);
                    assert!(!pend, "dom{} free port {port} is pending", d.id);
                }
                ChannelState::Reserved => assert_eq!(port, 0),
                ChannelState::Pirq { pirq } => {
                    assert_eq!(
                        d.ports.pirqs.port(pirq),
                        Some(port),
                        "dom{} pirq {pirq}",
                        d.id
                    );
                }
                ChannelState::Interdomain {
                    remote_dom,
                    remote_port,
                } => {
                    let r = dom(w, remote_dom);
                    assert_eq!(
                        r.ports.channel(remote_port).map(|c| c.state),
                        Some(ChannelState::Interdomain {
                            remote_dom: d.id,
                            remote_port: port
                        }),
                        "dom{} port {port} and its peer disagree",
                        d.id
                    );
                }
                ChannelState::Virq { virq } => {
                    let vcpu = if virq_is_global(virq) {
                        0
                    } else {
                        chan.notify_vcpu
                    };
                    assert_eq!(t.virq_port(vcpu, virq), Some(port));
                }
                ChannelState::Unbound { .. } | ChannelState::Ipi => {}
            }
            if chan.state != ChannelState::Free {
                assert!(chan.notify_vcpu < t.vcpus());
            }
        }
        for vcpu in 0..t.vcpus() {
            for virq in 0..NR_VIRQS {
                if let Some(port) = t.virq_port(vcpu, virq) {
                    assert_eq!(
                        t.channel(port).map(|c| c.state),
                        Some(ChannelState::Virq { virq }),
                        "dom{} vcpu {vcpu} virq {virq}",
                        d.id
                    );
                }
            }
        }
    }
}

/// The channels a failed operation could have touched (ports below `end`) and the VIRQ bindings.
fn snapshot(d: &EvtchnDomain<Page>, end: usize) -> (Vec<Option<Channel>>, VirqTable) {
    let chans = (0..end as u32).map(|p| d.ports.stored(p)).collect();
    (chans, d.ports.virq_to_port)
}

type VirqTable = [[EvtchnPort; NR_VIRQS as usize]; MAX_VCPUS];

/// One bucket past the valid ports: as far as one operation can reach.
fn reach(d: &EvtchnDomain<Page>) -> usize {
    (d.ports.valid_ports() + PORTS_PER_BUCKET).min(NR_PORTS as u32) as usize
}

#[test]
fn random_operation_sequences_keep_the_invariants() {
    let ids = [DOM0, DOM1, DOM2];
    for seed in 1..=32u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut w = world();
        for step in 0..1500 {
            let caller = ids[rng.below(3) as usize];
            let other = ids[rng.below(3) as usize];
            // Mostly ports that may exist, sometimes wild ones.
            let port = if rng.below(10) == 0 {
                rng.next() as u32
            } else {
                rng.below(140) as u32
            };
            let vcpu = rng.below(3) as u32;
            let virq = rng.below(NR_VIRQS as u64 + 2) as u32;
            let before = w
                .iter()
                .map(|d| (reach(d), snapshot(d, reach(d))))
                .collect::<Vec<_>>();
            let op = rng.below(11);
            let result: Result<(), Errno> = match op {
                0 | 1 => alloc_unbound(w.as_mut_slice(), caller, DOMID_SELF, other).map(drop),
                2 | 3 => bind_interdomain(w.as_mut_slice(), caller, other, port).map(drop),
                4 => bind_virq(w.as_mut_slice(), caller, virq, vcpu).map(drop),
                5 => bind_ipi(w.as_mut_slice(), caller, vcpu).map(drop),
                6 | 7 => {
                    let r = close(w.as_mut_slice(), caller, port);
                    if r.is_ok() {
                        let c = *dom(&w, caller).ports.channel(port).unwrap();
                        assert_eq!(c, Channel::FREE, "a closed port is free");
                        assert!(!pending(&w, caller, port));
                        assert_eq!(
                            status_of(&mut w, caller, DOMID_SELF, port),
                            Ok(EVTCHNSTAT_closed)
                        );
                    }
                    r
                }
                8 => send(w.as_mut_slice(), caller, port).map(drop),
                9 => bind_vcpu(w.as_mut_slice(), caller, port, vcpu),
                _ => {
                    if rng.below(2) == 0 {
                        set_mask(&mut w, caller, port % NR_PORTS as u32);
                    }
                    unmask(w.as_mut_slice(), caller, port).map(drop)
                }
            };
            if result.is_err() {
                // A failed operation changes no channel (only bucket growth may persist).
                for (d, (end, old)) in w.iter().zip(&before) {
                    assert!(
                        snapshot(d, *end) == *old,
                        "seed {seed} step {step} op {op}: {result:?} changed dom{}",
                        d.id
                    );
                }
            }
            if rng.below(50) == 0 {
                let id = ids[rng.below(3) as usize];
                guest_acknowledges(&mut w, id, rng.below(2) as u32);
            }
            check_invariants(&w, step % 100 == 99);
        }
        // Every domain can always close everything, and then nothing is left open.
        for id in ids {
            reset(w.as_mut_slice(), id, DOMID_SELF).unwrap();
        }
        check_invariants(&w, true);
        let open: BTreeSet<_> = w
            .iter()
            .flat_map(|d| {
                (1..NR_PORTS as u32)
                    .filter(move |&p| {
                        d.ports
                            .stored(p)
                            .is_some_and(|c| c.state != ChannelState::Free)
                    })
                    .map(move |p| (d.id, p))
            })
            .collect();
        assert!(
            open.is_empty(),
            "seed {seed}: still open after reset: {open:?}"
        );
    }
}
