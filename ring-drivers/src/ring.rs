//! The generic request/response shared ring of `io/ring.h`, over a [`SharedPage`].
//!
//! Layout (one 4 KiB page): the 64-byte [`SharedRingHeader`] (`req_prod`, `req_event`,
//! `rsp_prod`, `rsp_event`, `pvt`, `pad`), then [`FrontRing::SIZE`] slots of the request/response
//! union, the size of the larger type; the slot count is the largest power of two that fits
//! (`__RING_SIZE`). Indices are free-running `u32`s, masked only to address a slot.
//!
//! The front end produces requests and consumes responses ([`FrontRing`]); the back end does the
//! opposite ([`BackRing`]). Each keeps its private indices (`req_prod_pvt`/`rsp_cons`,
//! `rsp_prod_pvt`/`req_cons`) in its own memory: the page's indices are only ever *published*
//! by their owner and *read* by the peer, and what the peer writes is checked before use.
//!
//! Ordering follows the C macros: entries are written before the producer index is published
//! (release store: `wmb()`), the peer's producer index is loaded before its entries are read
//! (acquire load: `rmb()`), and the push-and-check / final-check sequences put a full barrier
//! ([`SharedPage::full_barrier`], `mb()`) between storing one index and loading the peer's event
//! index, so a notification cannot be lost.
//!
//! Only the front end initialises the page ([`FrontRing::init`], `SHARED_RING_INIT` +
//! `FRONT_RING_INIT`); the back end attaches to whatever it finds ([`BackRing::attach`],
//! `BACK_RING_ATTACH`) and treats the request producer as hostile: a `req_prod` more than a ring
//! ahead of the responses is `RING_REQUEST_PROD_OVERFLOW`, and the back end stops serving the ring.

use core::marker::PhantomData;
use core::mem::{offset_of, size_of};

use hypercall_abi::io::ring::{need_notify, ring_size, RingIdx, SharedRingHeader};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::byte_ring::RingError;
use crate::shared_page::{SharedPage, PAGE_SIZE};

const REQ_PROD: usize = offset_of!(SharedRingHeader, req_prod);
const REQ_EVENT: usize = offset_of!(SharedRingHeader, req_event);
const RSP_PROD: usize = offset_of!(SharedRingHeader, rsp_prod);
const RSP_EVENT: usize = offset_of!(SharedRingHeader, rsp_event);
const ENTRIES: usize = size_of::<SharedRingHeader>();

/// Bytes in one slot: the size of the request/response union.
pub const fn entry_size<Req, Rsp>() -> usize {
    let (a, b) = (size_of::<Req>(), size_of::<Rsp>());
    if a > b {
        a
    } else {
        b
    }
}

/// Slots in a one-page ring of `Req`/`Rsp` (`__CONST_RING_SIZE`).
pub const fn slots<Req, Rsp>() -> u32 {
    ring_size(PAGE_SIZE, entry_size::<Req, Rsp>()) as u32
}

/// Byte offset of the slot addressed by free-running index `idx`.
fn slot_offset<Req, Rsp>(idx: RingIdx) -> usize {
    ENTRIES + (idx & (slots::<Req, Rsp>() - 1)) as usize * entry_size::<Req, Rsp>()
}

/// Zeros for padding a short entry to the whole slot.
const ZEROS: [u8; 128] = [0; 128];

/// Writes `bytes` into the slot at `idx`, zero-filling the rest of the slot so no stale bytes
/// from an earlier entry remain behind a shorter one.
fn write_slot<Req, Rsp, P: SharedPage + ?Sized>(page: &mut P, idx: RingIdx, bytes: &[u8]) {
    let size = entry_size::<Req, Rsp>();
    assert!(bytes.len() <= size, "entry larger than a ring slot");
    let off = slot_offset::<Req, Rsp>(idx);
    page.write_bytes(off, bytes);
    let mut at = bytes.len();
    while at < size {
        let n = (size - at).min(ZEROS.len());
        page.write_bytes(off + at, &ZEROS[..n]);
        at += n;
    }
}

/// The front end's side of a ring: produces `Req`, consumes `Rsp`.
#[doc(alias = "front_ring")]
#[derive(Debug)]
pub struct FrontRing<Req, Rsp> {
    /// Next request slot to fill (`req_prod_pvt`); published by the push calls.
    req_prod_pvt: RingIdx,
    /// Next response to consume (`rsp_cons`).
    rsp_cons: RingIdx,
    _entries: PhantomData<fn(Req) -> Rsp>,
}

impl<Req, Rsp> FrontRing<Req, Rsp>
where
    Req: IntoBytes + Immutable,
    Rsp: FromBytes + IntoBytes,
{
    /// Slots in the ring (`RING_SIZE`).
    pub const SIZE: u32 = slots::<Req, Rsp>();

    /// Initialises the shared page (`SHARED_RING_INIT`: producers 0, events 1, the rest of the
    /// header zeroed) and returns the front end's private state (`FRONT_RING_INIT`). Only the
    /// front end does this, before granting the page to the back end.
    #[doc(alias = "SHARED_RING_INIT")]
    #[doc(alias = "FRONT_RING_INIT")]
    pub fn init<P: SharedPage + ?Sized>(page: &mut P) -> Self {
        Self::init_at(page, 0)
    }

    /// As [`FrontRing::init`], with every index starting at `start` instead of 0 (events at
    /// `start + 1`). Xen always starts at 0; tests use this to cross the `u32` wrap quickly.
    pub fn init_at<P: SharedPage + ?Sized>(page: &mut P, start: RingIdx) -> Self {
        const { assert!(slots::<Req, Rsp>() > 0, "entries do not fit in a page") };
        let header = SharedRingHeader {
            req_prod: start,
            req_event: start.wrapping_add(1),
            rsp_prod: start,
            rsp_event: start.wrapping_add(1),
            ..SharedRingHeader::INIT
        };
        page.write_bytes(0, header.as_bytes());
        page.full_barrier();
        FrontRing {
            req_prod_pvt: start,
            rsp_cons: start,
            _entries: PhantomData,
        }
    }

    /// Slots free for new requests (`RING_FREE_REQUESTS`): a request's slot is reused only
    /// after its response has been consumed.
    #[doc(alias = "RING_FREE_REQUESTS")]
    pub fn space(&self) -> u32 {
        Self::SIZE - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Whether no slot is free (`RING_FULL`).
    #[doc(alias = "RING_FULL")]
    pub fn is_full(&self) -> bool {
        self.space() == 0
    }

    /// Requests pushed whose responses have not been consumed yet.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// The private request producer (`req_prod_pvt`).
    pub fn req_prod_pvt(&self) -> RingIdx {
        self.req_prod_pvt
    }

    /// The private response consumer (`rsp_cons`).
    pub fn rsp_cons(&self) -> RingIdx {
        self.rsp_cons
    }

    /// Copies `req` into the next free slot (`RING_GET_REQUEST` + `req_prod_pvt++`) without
    /// publishing it. Returns `false`, writing nothing, when the ring is full.
    pub fn push_request<P: SharedPage + ?Sized>(&mut self, page: &mut P, req: &Req) -> bool {
        self.push_request_bytes(page, req.as_bytes())
    }

    /// As [`FrontRing::push_request`] for another entry type sharing the slot (for blkif, a
    /// `blkif_request_discard` in a `blkif_request` slot), given as bytes no longer than a slot;
    /// the rest of the slot is zeroed.
    pub fn push_request_bytes<P: SharedPage + ?Sized>(&mut self, page: &mut P, req: &[u8]) -> bool {
        if self.is_full() {
            return false;
        }
        write_slot::<Req, Rsp, P>(page, self.req_prod_pvt, req);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        true
    }

    /// Publishes every pushed request (`RING_PUSH_REQUESTS`): the release store orders the
    /// slot writes before the new `req_prod`.
    #[doc(alias = "RING_PUSH_REQUESTS")]
    pub fn push_requests<P: SharedPage + ?Sized>(&mut self, page: &mut P) {
        page.store_release_u32(REQ_PROD, self.req_prod_pvt);
    }

    /// Publishes every pushed request and says whether the back end must be notified
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`): only if its `req_event` lies in the range just
    /// published, i.e. it went to sleep waiting for one of these requests.
    #[doc(alias = "RING_PUSH_REQUESTS_AND_CHECK_NOTIFY")]
    pub fn push_requests_and_check_notify<P: SharedPage + ?Sized>(&mut self, page: &mut P) -> bool {
        let old = page.load_acquire_u32(REQ_PROD);
        let new = self.req_prod_pvt;
        page.store_release_u32(REQ_PROD, new);
        // mb(): our req_prod store must be visible before we read req_event, or a back end
        // that just set req_event and saw no new request would sleep without a notification.
        page.full_barrier();
        need_notify(old, new, page.load_acquire_u32(REQ_EVENT))
    }

    /// The published response producer, checked: the back end can only have answered requests
    /// we pushed, so more responses than outstanding requests is an overrun.
    fn rsp_prod<P: SharedPage + ?Sized>(&self, page: &P) -> Result<RingIdx, RingError> {
        let prod = page.load_acquire_u32(RSP_PROD);
        if prod.wrapping_sub(self.rsp_cons) > self.outstanding() {
            return Err(RingError::IndexOverrun {
                prod,
                cons: self.rsp_cons,
                size: Self::SIZE as usize,
            });
        }
        Ok(prod)
    }

    /// Responses published but not consumed yet (`RING_HAS_UNCONSUMED_RESPONSES`).
    #[doc(alias = "RING_HAS_UNCONSUMED_RESPONSES")]
    pub fn unconsumed_responses<P: SharedPage + ?Sized>(&self, page: &P) -> Result<u32, RingError> {
        Ok(self.rsp_prod(page)?.wrapping_sub(self.rsp_cons))
    }

    /// Copies the next response out of the ring and frees its slot (`RING_COPY_RESPONSE` +
    /// `rsp_cons++`), or `None` when none is waiting.
    #[doc(alias = "RING_COPY_RESPONSE")]
    pub fn get_response<P: SharedPage + ?Sized>(
        &mut self,
        page: &P,
    ) -> Result<Option<Rsp>, RingError> {
        if self.rsp_prod(page)? == self.rsp_cons {
            return Ok(None);
        }
        let mut rsp = Rsp::new_zeroed();
        page.read_bytes(
            slot_offset::<Req, Rsp>(self.rsp_cons),
            &mut rsp.as_mut_bytes()[..],
        );
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(rsp))
    }

    /// Before sleeping: asks for a notification at the next response (`rsp_event = rsp_cons +
    /// 1`) and re-checks, so a response that raced with the request is not missed
    /// (`RING_FINAL_CHECK_FOR_RESPONSES`). `true`: responses are waiting, do not sleep.
    #[doc(alias = "RING_FINAL_CHECK_FOR_RESPONSES")]
    pub fn final_check_for_responses<P: SharedPage + ?Sized>(
        &mut self,
        page: &mut P,
    ) -> Result<bool, RingError> {
        if self.unconsumed_responses(page)? > 0 {
            return Ok(true);
        }
        page.store_release_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1));
        page.full_barrier();
        Ok(self.unconsumed_responses(page)? > 0)
    }
}

/// The back end's side of a ring: consumes `Req`, produces `Rsp`.
#[doc(alias = "back_ring")]
#[derive(Debug)]
pub struct BackRing<Req, Rsp> {
    /// Next response slot to fill (`rsp_prod_pvt`).
    rsp_prod_pvt: RingIdx,
    /// Next request to consume (`req_cons`).
    req_cons: RingIdx,
    /// Set once the front end overran the ring: the ring is not served any more.
    broken: Option<RingError>,
    _entries: PhantomData<fn(Rsp) -> Req>,
}

impl<Req, Rsp> BackRing<Req, Rsp>
where
    Req: FromBytes + IntoBytes,
    Rsp: IntoBytes + Immutable,
{
    /// Slots in the ring (`RING_SIZE`).
    pub const SIZE: u32 = slots::<Req, Rsp>();

    /// Attaches to a ring the front end initialised (`BACK_RING_ATTACH` at the published
    /// `rsp_prod`, as Linux blkback does, so a reconnecting back end resumes where responses
    /// stopped). Fails if `req_prod` is already more than a ring ahead.
    #[doc(alias = "BACK_RING_ATTACH")]
    pub fn attach<P: SharedPage + ?Sized>(page: &P) -> Result<Self, RingError> {
        const { assert!(slots::<Req, Rsp>() > 0, "entries do not fit in a page") };
        let rsp_prod = page.load_acquire_u32(RSP_PROD);
        let ring = BackRing {
            rsp_prod_pvt: rsp_prod,
            req_cons: rsp_prod,
            broken: None,
            _entries: PhantomData,
        };
        ring.req_prod(page)?;
        Ok(ring)
    }

    /// The published request producer, checked (`RING_REQUEST_PROD_OVERFLOW`): requests not yet
    /// answered can never exceed the ring, and a producer never moves back behind what was
    /// already consumed (Linux netback's "Impossible number of requests").
    fn req_prod<P: SharedPage + ?Sized>(&self, page: &P) -> Result<RingIdx, RingError> {
        let prod = page.load_acquire_u32(REQ_PROD);
        let ahead = prod.wrapping_sub(self.rsp_prod_pvt);
        if ahead > Self::SIZE || ahead < self.unanswered() {
            return Err(RingError::IndexOverrun {
                prod,
                cons: self.rsp_prod_pvt,
                size: Self::SIZE as usize,
            });
        }
        Ok(prod)
    }

    /// The overrun that stopped this ring, if any.
    pub fn broken(&self) -> Option<RingError> {
        self.broken
    }

    /// The private response producer (`rsp_prod_pvt`).
    pub fn rsp_prod_pvt(&self) -> RingIdx {
        self.rsp_prod_pvt
    }

    /// The private request consumer (`req_cons`).
    pub fn req_cons(&self) -> RingIdx {
        self.req_cons
    }

    /// Requests consumed but not answered yet.
    pub fn unanswered(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    fn check<P: SharedPage + ?Sized>(&mut self, page: &P) -> Result<RingIdx, RingError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        self.req_prod(page).inspect_err(|&e| self.broken = Some(e))
    }

    /// Requests waiting to be consumed (`RING_HAS_UNCONSUMED_REQUESTS`), at most the slots
    /// whose responses would still fit. An overrunning producer breaks the ring for good.
    #[doc(alias = "RING_HAS_UNCONSUMED_REQUESTS")]
    pub fn unconsumed_requests<P: SharedPage + ?Sized>(
        &mut self,
        page: &P,
    ) -> Result<u32, RingError> {
        let prod = self.check(page)?;
        Ok(prod
            .wrapping_sub(self.req_cons)
            .min(Self::SIZE - self.unanswered()))
    }

    /// Copies the next request out of shared memory (`RING_COPY_REQUEST` + `req_cons++`): the
    /// caller validates and uses the copy only, so the front end cannot change it afterwards.
    /// `None` when none is waiting, or when every slot holds an unanswered request
    /// (`RING_REQUEST_CONS_OVERFLOW`). An overrunning `req_prod` is an error now and on every
    /// later call: the back end must stop serving the ring.
    #[doc(alias = "RING_COPY_REQUEST")]
    #[doc(alias = "RING_REQUEST_PROD_OVERFLOW")]
    pub fn get_request<P: SharedPage + ?Sized>(
        &mut self,
        page: &P,
    ) -> Result<Option<Req>, RingError> {
        let mut req = Req::new_zeroed();
        if !self.get_request_bytes(page, req.as_mut_bytes())? {
            return Ok(None);
        }
        Ok(Some(req))
    }

    /// As [`BackRing::get_request`], copying the slot's first `buf.len()` bytes (at most a
    /// slot) into `buf`; `true` if a request was consumed.
    pub fn get_request_bytes<P: SharedPage + ?Sized>(
        &mut self,
        page: &P,
        buf: &mut [u8],
    ) -> Result<bool, RingError> {
        assert!(
            buf.len() <= entry_size::<Req, Rsp>(),
            "buffer larger than a slot"
        );
        if self.unconsumed_requests(page)? == 0 {
            return Ok(false);
        }
        page.read_bytes(slot_offset::<Req, Rsp>(self.req_cons), buf);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(true)
    }

    /// Writes a response into the next response slot without publishing it. Returns `false`,
    /// writing nothing, if no consumed request is waiting for a response (a response slot is
    /// always a consumed request's slot, never one the front end may still be filling).
    pub fn push_response<P: SharedPage + ?Sized>(&mut self, page: &mut P, rsp: &Rsp) -> bool {
        if self.unanswered() == 0 {
            return false;
        }
        write_slot::<Req, Rsp, P>(page, self.rsp_prod_pvt, rsp.as_bytes());
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        true
    }

    /// Publishes every pushed response (`RING_PUSH_RESPONSES`).
    #[doc(alias = "RING_PUSH_RESPONSES")]
    pub fn push_responses<P: SharedPage + ?Sized>(&mut self, page: &mut P) {
        page.store_release_u32(RSP_PROD, self.rsp_prod_pvt);
    }

    /// Publishes every pushed response and says whether the front end must be notified
    /// (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`, against `rsp_event`).
    #[doc(alias = "RING_PUSH_RESPONSES_AND_CHECK_NOTIFY")]
    pub fn push_responses_and_check_notify<P: SharedPage + ?Sized>(
        &mut self,
        page: &mut P,
    ) -> bool {
        let old = page.load_acquire_u32(RSP_PROD);
        let new = self.rsp_prod_pvt;
        page.store_release_u32(RSP_PROD, new);
        page.full_barrier();
        need_notify(old, new, page.load_acquire_u32(RSP_EVENT))
    }

    /// Before sleeping: asks for a notification at the next request (`req_event = req_cons +
    /// 1`) and re-checks (`RING_FINAL_CHECK_FOR_REQUESTS`). `true`: requests are waiting.
    #[doc(alias = "RING_FINAL_CHECK_FOR_REQUESTS")]
    pub fn final_check_for_requests<P: SharedPage + ?Sized>(
        &mut self,
        page: &mut P,
    ) -> Result<bool, RingError> {
        if self.unconsumed_requests(page)? > 0 {
            return Ok(true);
        }
        page.store_release_u32(REQ_EVENT, self.req_cons.wrapping_add(1));
        page.full_barrier();
        Ok(self.unconsumed_requests(page)? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_page::ArrayPage;
    use hypercall_abi::io::blkif::{BlkifRequest, BlkifResponse, BLKIF_RING_SIZE};
    use zerocopy::FromBytes;

    type Front = FrontRing<BlkifRequest, BlkifResponse>;
    type Back = BackRing<BlkifRequest, BlkifResponse>;

    fn req(id: u64) -> BlkifRequest {
        BlkifRequest {
            id,
            nr_segments: 1,
            ..Default::default()
        }
    }

    fn header(p: &ArrayPage) -> SharedRingHeader {
        SharedRingHeader::read_from_prefix(&p.0).unwrap().0
    }

    #[test]
    fn geometry_matches_ring_h() {
        assert_eq!(Front::SIZE as usize, BLKIF_RING_SIZE);
        assert_eq!(entry_size::<BlkifRequest, BlkifResponse>(), 112);
        assert_eq!(slot_offset::<BlkifRequest, BlkifResponse>(33), 64 + 112);
    }

    #[test]
    fn init_writes_shared_ring_init() {
        let mut p = ArrayPage([0xff; PAGE_SIZE]);
        let f = Front::init(&mut p);
        assert_eq!(header(&p), SharedRingHeader::INIT);
        assert_eq!(f.space(), 32);
    }

    #[test]
    fn requests_and_responses_round_trip_with_wrap() {
        let mut p = ArrayPage::new();
        let mut f = Front::init_at(&mut p, u32::MAX - 40);
        let mut b = Back::attach(&p).unwrap();
        let mut next = 0u64;
        let mut got = 0u64;
        for round in 0..10 {
            let n = 5 + round * 3;
            for _ in 0..n {
                assert!(f.push_request(&mut p, &req(next)));
                next += 1;
            }
            f.push_requests(&mut p);
            while let Some(r) = b.get_request(&p).unwrap() {
                let rsp = BlkifResponse {
                    id: r.id,
                    ..Default::default()
                };
                assert!(b.push_response(&mut p, &rsp));
            }
            b.push_responses(&mut p);
            while let Some(r) = f.get_response(&p).unwrap() {
                assert_eq!(r.id, got);
                got += 1;
            }
        }
        assert_eq!(got, next);
        assert!(f.req_prod_pvt() < 1000, "indices wrapped past u32::MAX");
    }

    #[test]
    fn full_ring_refuses_more_requests() {
        let mut p = ArrayPage::new();
        let mut f = Front::init(&mut p);
        for i in 0..32 {
            assert!(f.push_request(&mut p, &req(i)));
        }
        assert!(f.is_full());
        assert!(!f.push_request(&mut p, &req(99)));
        f.push_requests(&mut p);
        let mut b = Back::attach(&p).unwrap();
        for _ in 0..32 {
            assert!(b.get_request(&p).unwrap().is_some());
        }
        assert_eq!(b.get_request(&p).unwrap(), None);
        // No response without a consumed request.
        for _ in 0..32 {
            assert!(b.push_response(&mut p, &BlkifResponse::default()));
        }
        assert!(!b.push_response(&mut p, &BlkifResponse::default()));
    }

    #[test]
    fn notifications_follow_the_event_indices() {
        let mut p = ArrayPage::new();
        let mut f = Front::init(&mut p);
        let mut b = Back::attach(&p).unwrap();
        // req_event = 1: the first request notifies, the next batch does not (back end awake).
        f.push_request(&mut p, &req(0));
        assert!(f.push_requests_and_check_notify(&mut p));
        f.push_request(&mut p, &req(1));
        f.push_request(&mut p, &req(2));
        assert!(!f.push_requests_and_check_notify(&mut p));
        while b.get_request(&p).unwrap().is_some() {}
        // Back end goes to sleep: req_event = req_cons + 1.
        assert!(!b.final_check_for_requests(&mut p).unwrap());
        assert_eq!(header(&p).req_event, 4);
        f.push_request(&mut p, &req(3));
        f.push_request(&mut p, &req(4));
        assert!(f.push_requests_and_check_notify(&mut p));
        assert!(b.final_check_for_requests(&mut p).unwrap());
        // Responses: rsp_event = 1, the first response notifies.
        let mut notified = 0;
        while b.get_request(&p).unwrap().is_some() {}
        for i in 0..5 {
            b.push_response(
                &mut p,
                &BlkifResponse {
                    id: i,
                    ..Default::default()
                },
            );
            notified += usize::from(b.push_responses_and_check_notify(&mut p));
        }
        assert_eq!(notified, 1);
        while f.get_response(&p).unwrap().is_some() {}
        assert!(!f.final_check_for_responses(&mut p).unwrap());
        assert_eq!(header(&p).rsp_event, 6);
    }

    #[test]
    fn overrunning_producer_breaks_the_ring_for_good() {
        let mut p = ArrayPage::new();
        let mut f = Front::init(&mut p);
        f.push_request(&mut p, &req(0));
        f.push_requests(&mut p);
        let mut b = Back::attach(&p).unwrap();
        p.store_release_u32(REQ_PROD, 33);
        let err = RingError::IndexOverrun {
            prod: 33,
            cons: 0,
            size: 32,
        };
        assert_eq!(b.get_request(&p), Err(err));
        p.store_release_u32(REQ_PROD, 1);
        assert_eq!(b.get_request(&p), Err(err), "sticky");
        assert_eq!(b.broken(), Some(err));
        assert_eq!(b.req_cons(), 0, "nothing consumed");
        // Attaching to an overrun ring fails too.
        p.store_release_u32(REQ_PROD, 40);
        assert!(Back::attach(&p).is_err());
    }

    #[test]
    fn producer_moved_back_behind_consumed_requests_breaks_the_ring() {
        let mut p = ArrayPage::new();
        let mut f = Front::init(&mut p);
        for i in 0..3 {
            f.push_request(&mut p, &req(i));
        }
        f.push_requests(&mut p);
        let mut b = Back::attach(&p).unwrap();
        assert!(b.get_request(&p).unwrap().is_some());
        assert!(b.get_request(&p).unwrap().is_some());
        // Two consumed, none answered: a producer of 1 would hand out slot 2 again, and the
        // wrapped distance would look like a full ring of phantom requests.
        p.store_release_u32(REQ_PROD, 1);
        let err = RingError::IndexOverrun {
            prod: 1,
            cons: 0,
            size: 32,
        };
        assert_eq!(b.get_request(&p), Err(err));
        assert_eq!(b.unconsumed_requests(&p), Err(err), "sticky");
        assert_eq!(b.req_cons(), 2, "nothing more consumed");
    }

    #[test]
    fn front_rejects_responses_for_requests_never_made() {
        let mut p = ArrayPage::new();
        let mut f = Front::init(&mut p);
        f.push_request(&mut p, &req(0));
        f.push_requests(&mut p);
        p.store_release_u32(RSP_PROD, 2);
        assert!(f.get_response(&p).is_err());
        p.store_release_u32(RSP_PROD, 1);
        assert!(f.get_response(&p).unwrap().is_some());
    }

    #[test]
    fn short_entries_zero_the_rest_of_the_slot() {
        let mut p = ArrayPage([0xaa; PAGE_SIZE]);
        let mut f = Front::init(&mut p);
        assert!(f.push_request_bytes(&mut p, &[1, 2, 3]));
        f.push_requests(&mut p);
        let mut b = Back::attach(&p).unwrap();
        let r = b.get_request(&p).unwrap().unwrap();
        assert_eq!(&r.as_bytes()[..4], &[1, 2, 3, 0]);
        assert!(r.as_bytes()[3..].iter().all(|&x| x == 0));
    }
}
