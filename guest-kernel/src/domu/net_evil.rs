//! `net-evil`: a netfront that breaks the rules, for dom0's netback to survive. It connects vif 0
//! like a good front end, then, on the raw tx ring: one bad packet per kind (each must come back
//! `NETIF_RSP_ERROR` on every data slot, extras `NETIF_RSP_NULL`), a flood of valid frames
//! addressed to itself (the bridge drops them: only netback's fairness is tested) for
//! `net-evil-flood=<ms>` (default 3000), never a refill of the rx ring, and last a producer
//! overrun, after which the back end must close the vif (`Closing` or `Closed`).
//!
//! Lines: `net-evil: <case> -> <statuses>`, `net-evil: <k> of <n> refused`,
//! `net-evil: flood <frames> frames in <ms> ms`, `net-evil: back end closed the vif (state <s>)`.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use guest_kernel::cmdline::Cmdline;
use hypercall_abi::io::netif::{
    NETTXF_extra_info, NETTXF_more_data, NetifExtraInfo, NetifTxRequest, NETIF_RSP_ERROR,
    NETIF_RSP_NULL, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_GSO_TYPE_TCPV4,
};
use hypercall_abi::io::xenbus::XenbusState;
use ring_drivers::netif::{GrantPages, NetTxFrontRing, Notify};
use ring_drivers::shared_page::SharedPage;
use zerocopy::IntoBytes;

use super::client::Client;
use super::error::DomuError;
use super::netfront::Netfront;
use super::xenbus_front::XenbusDevice;
use crate::kernel::time;

/// One slot of a hostile packet: a data request, or an extra-info slot's bytes.
enum Slot {
    Data(NetifTxRequest),
    Extra(NetifExtraInfo),
}

fn data(gref: u32, offset: u16, size: u16, flags: u16) -> Slot {
    Slot::Data(NetifTxRequest {
        gref,
        offset,
        flags,
        id: 0,
        size,
    })
}

/// Runs the attack; `Ok` if every bad packet was refused and the overrun closed the vif.
pub fn run(d: &mut Client, cmdline: &Cmdline<'_>) -> Result<(), DomuError> {
    let Some(mut nf) = Netfront::discover(d)? else {
        return Err(DomuError::Check(String::from("net-evil: no vif")));
    };
    nf.connect(d)?;
    let mac = nf.mac;
    let (mut page, _rx_page, mut pages, _rx_pages, mut notify) = nf.take_raw().ok_or(
        DomuError::Check(String::from("net-evil: vif not connected")),
    )?;
    // Nothing was sent yet: every tx index is 0, and initialising again keeps them so.
    let mut ring = NetTxFrontRing::init(&mut page);
    let good = pages.gref(0);
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&mac);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]); // IEEE local experimental ethertype
    pages.write(0, 0, &frame);
    let mut gso = NetifExtraInfo {
        r#type: XEN_NETIF_EXTRA_TYPE_GSO,
        ..Default::default()
    };
    gso.set_gso(1448, XEN_NETIF_GSO_TYPE_TCPV4, 0);
    let chain = |n: u16| -> Vec<Slot> {
        (0..n)
            .map(|i| {
                let flags = if i + 1 < n { NETTXF_more_data } else { 0 };
                data(good, 0, if i == 0 { n * 100 } else { 100 }, flags)
            })
            .collect()
    };
    let cases: Vec<(&str, Vec<Slot>)> = vec![
        ("size-0", vec![data(good, 0, 0, 0)]),
        ("runt", vec![data(good, 0, 13, 0)]),
        ("past-the-page", vec![data(good, 4000, 200, 0)]),
        ("bad-gref", vec![data(0x00ff_ffff, 0, 60, 0)]),
        (
            "fragment-too-big",
            vec![data(good, 0, 100, NETTXF_more_data), data(good, 0, 4096, 0)],
        ),
        ("19-slots", chain(19)),
        (
            "bad-extra",
            vec![
                data(good, 0, 60, NETTXF_extra_info),
                Slot::Extra(NetifExtraInfo::default()),
            ],
        ),
        (
            "gso",
            vec![data(good, 0, 60, NETTXF_extra_info), Slot::Extra(gso)],
        ),
    ];
    let mut refused = 0;
    let mut next_id = 0x100u16;
    for (name, slots) in &cases {
        for s in slots {
            match s {
                Slot::Data(r) => {
                    let mut r = *r;
                    r.id = next_id;
                    next_id += 1;
                    ring.push_request(&mut page, &r);
                }
                Slot::Extra(e) => {
                    ring.push_request_bytes(&mut page, e.as_bytes());
                }
            }
        }
        if ring.push_requests_and_check_notify(&mut page) {
            notify.notify();
        }
        let mut statuses = Vec::new();
        let since = time::now_ns().unwrap_or(0);
        while statuses.len() < slots.len() {
            match ring.get_response(&page).map_err(DomuError::Ring)? {
                Some(r) => statuses.push(r.status),
                None => {
                    if !ring
                        .final_check_for_responses(&mut page)
                        .map_err(DomuError::Ring)?
                    {
                        d.timed_out(since)?;
                        d.step();
                    }
                }
            }
        }
        let extras = slots.iter().filter(|s| matches!(s, Slot::Extra(_))).count();
        let ok = statuses.iter().filter(|&&s| s == NETIF_RSP_ERROR).count() == slots.len() - extras
            && statuses.iter().filter(|&&s| s == NETIF_RSP_NULL).count() == extras;
        println!("net-evil: {name} -> {statuses:?}");
        refused += usize::from(ok);
    }
    println!("net-evil: {refused} of {} refused", cases.len());

    // The flood: valid frames to ourselves, as fast as the ring takes them.
    let flood_ms: u64 = cmdline
        .get("net-evil-flood")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let start = time::now_ns().unwrap_or(0);
    let mut sent = 0u64;
    let req = NetifTxRequest {
        gref: good,
        offset: 0,
        flags: 0,
        id: 0,
        size: 60,
    };
    while time::now_ns().unwrap_or(0) < start + flood_ms * time::MS {
        while !ring.is_full() {
            ring.push_request(&mut page, &req);
            sent += 1;
        }
        if ring.push_requests_and_check_notify(&mut page) {
            notify.notify();
        }
        let mut got = false;
        while ring.get_response(&page).map_err(DomuError::Ring)?.is_some() {
            got = true;
        }
        if !got
            && !ring
                .final_check_for_responses(&mut page)
                .map_err(DomuError::Ring)?
        {
            d.step();
        }
    }
    let ms = (time::now_ns().unwrap_or(0) - start) / time::MS;
    println!("net-evil: flood {sent} frames in {ms} ms");

    // The overrun: the producer index far beyond anything the back end could answer.
    let prod = ring.req_prod_pvt().wrapping_add(1000);
    page.store_release_u32(0, prod);
    notify.notify();
    println!("net-evil: overrun sent");
    let closed = nf.wait_for_backend(d, &[XenbusState::Closing, XenbusState::Closed])?;
    println!("net-evil: back end closed the vif (state {})", closed.raw());
    if refused == cases.len() {
        Ok(())
    } else {
        Err(DomuError::Check(format!(
            "net-evil: {} bad packet(s) not refused",
            cases.len() - refused
        )))
    }
}
