//! The toolstack: which domUs exist, and each one's life as dom0 sees it.
//!
//! It binds `VIRQ_DOM_EXC`, lists the domains (`sysctl getdomaininfolist`), and for each domU
//! reads its ring frames and ports (`hvm_op HVMOP_get_param`), maps both pages, binds both ports,
//! introduces it to xenstored and writes `/local/domain/<id>` (libxl's layout and permissions:
//! the home is `n0 r<id>`, read-only for the domain; `data` is owned by the domain); then every
//! service [`attaches`](Service::attach) to it; with [`Ctx::vifs`] set (dom0 serves vifs) vif 0's
//! front- and back-end directories are written first, for the netback to serve. When a domU shuts down or crashes
//! (`VIRQ_DOM_EXC`), it is reported, its console drained, every service detached, its ports
//! closed, its pages unmapped, released from xenstored, its nodes (vif back end included)
//! removed and destroyed (`domctl destroydomain`).
//! `domu-timeout=<seconds>` destroys a domU still running that long after its introduction.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use guest_kernel::cmdline::Cmdline;
use guest_kernel::introduce::{self, ConnectError, RingParams, Rings};
use hypercall_abi::domctl::{
    BootHandle, XEN_DOMCTL_destroydomain, XEN_DOMINF_dying, XEN_DOMINF_shutdown,
    XEN_DOMINF_shutdownmask, XEN_DOMINF_shutdownshift, XenDomctl, XenDomctlGetdomaininfo,
};
use hypercall_abi::errno::Errno;
use hypercall_abi::hvm::{
    GetParam, XenHvmParam, HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN,
    HVM_PARAM_STORE_PFN,
};
use hypercall_abi::sched::SHUTDOWN_crash;
use hypercall_abi::sysctl::{XEN_SYSCTL_getdomaininfolist, XenSysctl, XenSysctlGetdomaininfolist};
use hypercall_abi::xen::StartInfo;
use hypercall_abi::HypercallError;
use ring_drivers::netif::vif_nodes;
use ring_drivers::xenbus::{Access, Perm, Request};
use zerocopy::{FromBytes, IntoBytes};

use super::service::{Ctx, Domain, Service};
use super::xenstore::Store;
use crate::kernel::events::{self, Channel};
use crate::kernel::hypercall as hc;
use crate::kernel::ring_page::{self, MappedPage};
use crate::kernel::time;

/// Most domains one `getdomaininfolist` reports.
const MAX_DOMAINS: usize = 128;

/// Longest domain name dom0 shows (a domU chooses its own: longer ones are cut).
const NAME_MAX: usize = 64;

/// dom0's side of a domU's rings: mapping windows (`ring_page`) and interdomain ports.
struct Dom0Rings;

impl introduce::Resources for Dom0Rings {
    type Page = MappedPage;
    type Error = ring_page::MapError;

    fn map(&mut self, domid: u16, mfn: u64) -> Result<MappedPage, ring_page::MapError> {
        ring_page::map_foreign(domid, mfn, true)
    }

    fn unmap(&mut self, page: MappedPage) {
        let rc = ring_page::unmap(page);
        if rc != 0 {
            println!("toolstack: unmapping a ring page failed ({rc})");
        }
    }

    fn bind(&mut self, domid: u16, remote: u32) -> Result<u32, HypercallError> {
        events::bind_interdomain(domid, remote)
    }

    fn close(&mut self, port: u32) {
        let _ = events::close(port);
    }
}

/// Why a domU could not be introduced.
#[derive(Debug)]
enum IntroduceError {
    /// `HVMOP_get_param` refused one of its ring parameters.
    Param(u32, HypercallError),
    /// Its rings could not be mapped or their ports bound.
    Connect(ConnectError<ring_page::MapError>),
    /// xenstored refused the connection.
    Xenstored(Errno),
}

impl fmt::Display for IntroduceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntroduceError::Param(index, rc) => write!(f, "hvm_op get_param {index}={rc}"),
            IntroduceError::Connect(e) => write!(f, "{e}"),
            IntroduceError::Xenstored(e) => write!(f, "xenstored introduce: {}", e.name()),
        }
    }
}

/// Lists the domains with ids from 1 up.
pub fn domus() -> Result<Vec<XenDomctlGetdomaininfo>, HypercallError> {
    let mut buf = vec![XenDomctlGetdomaininfo::default(); MAX_DOMAINS];
    let list = XenSysctlGetdomaininfolist {
        first_domain: 1,
        max_domains: MAX_DOMAINS as u32,
        buffer: hc::ptr(buf.as_mut_ptr()),
        ..Default::default()
    };
    let mut op = XenSysctl {
        cmd: XEN_SYSCTL_getdomaininfolist,
        ..Default::default()
    };
    op.u[..size_of::<XenSysctlGetdomaininfolist>()].copy_from_slice(list.as_bytes());
    HypercallError::check(hc::sysctl(&mut op))?;
    let (list, _) = XenSysctlGetdomaininfolist::read_from_prefix(&op.u)
        .map_err(|_| HypercallError::from(Errno::EINVAL))?;
    buf.truncate((list.num_domains as usize).min(MAX_DOMAINS));
    // Only real domUs (not DOMID_SELF-style reserved ids).
    buf.retain(|d| d.domain != 0 && d.domain < guest_kernel::xenstored::DOMID_FIRST_RESERVED);
    Ok(buf)
}

fn hvm_param(domid: u16, index: u32) -> Result<u64, IntroduceError> {
    let mut p = GetParam(XenHvmParam {
        domid,
        index,
        ..Default::default()
    });
    HypercallError::check(hc::hvm_op(&mut p))
        .map(|_| p.0.value)
        .map_err(|rc| IntroduceError::Param(index, rc))
}

/// `XEN_DOMCTL_destroydomain`, asked again while the hypervisor preempts it.
pub fn destroy(domid: u16) -> Result<(), HypercallError> {
    let mut op = XenDomctl {
        cmd: XEN_DOMCTL_destroydomain,
        domain: domid,
        ..Default::default()
    };
    loop {
        match HypercallError::check(hc::domctl(&mut op)) {
            // -EAGAIN / -ERESTART: the teardown is preemptible; ask again.
            Err(e) if e.errno() == Some(Errno::EAGAIN) || e == HypercallError::RESTART => {}
            r => return r.map(|_| ()),
        }
    }
}

/// Prints how `destroy` went.
fn report_destroy(id: u16, name: &str) {
    match destroy(id) {
        Ok(()) => println!("toolstack: d{id} ({name}) destroyed"),
        Err(rc) => println!("toolstack: d{id} ({name}) destroydomain={rc}"),
    }
}

/// A shutdown code's name (`SHUTDOWN_*`).
pub fn reason(code: u32) -> &'static str {
    match code {
        0 => "poweroff",
        1 => "reboot",
        2 => "suspend",
        3 => "crash",
        4 => "watchdog",
        _ => "unknown",
    }
}

/// The name on the domain's command line (`name=`), read from its start_info: Xen's start-of-day
/// layout puts start_info in the page before the xenstore page. Checked (magic and `store_mfn`)
/// before it is believed; `None` if anything does not fit. Escaped ([`ring_drivers::printable`])
/// and cut to [`NAME_MAX`] bytes.
fn domain_name(id: u16, store_mfn: u64) -> Option<String> {
    let page = ring_page::map_foreign(id, store_mfn.checked_sub(1)?, false).ok()?;
    let mut si = [0u8; size_of::<StartInfo>()];
    ring_drivers::SharedPage::read_bytes(&page, 0, &mut si);
    ring_page::unmap(page);
    let si = StartInfo::read_from_bytes(&si).ok()?;
    if !si.magic.starts_with(b"xen-3.0") || si.store_mfn != store_mfn {
        return None;
    }
    // The domU chose it (and could have rewritten its start_info before we read it): escaped
    // and bounded before it goes into our log and its xenstore `name` node.
    let cmdline = Cmdline::from_bytes(&si.cmd_line);
    cmdline
        .get("name")
        .map(|n| ring_drivers::printable::escape(n.as_bytes(), NAME_MAX))
}

/// The toolstack's own state.
pub struct Toolstack {
    /// `domu-timeout=<seconds>` on dom0's command line: a domU still running that long after it
    /// was introduced is destroyed (a toolstack's watchdog; the fuzz tests rely on it, since a
    /// fuzzer can wreck itself into an endless loop).
    domu_timeout_ns: Option<u64>,
    /// Domains whose introduction failed (and which dom0 destroyed): not tried again.
    failed: introduce::Failed,
    /// `VIRQ_DOM_EXC` fired: look at the domain list at the end of the pass.
    rescan: bool,
    /// The domUs dom0 built itself (`build-domu`), whose rings it knows without asking the
    /// hypervisor (a PV domain on Xen has no HVM parameters to ask).
    built: Vec<super::builder::Built>,
}

/// The services other than the toolstack, which it attaches to and detaches from each domU.
pub type Services = [Box<dyn Service>];

impl Service for Toolstack {
    fn event(&mut self, _ctx: &mut Ctx, channel: Channel) {
        if channel == Channel::DomExc {
            self.rescan = true;
        }
    }
}

impl Toolstack {
    /// The toolstack as dom0's command line sets it up.
    pub fn new(cmdline: &Cmdline<'_>) -> Toolstack {
        Toolstack {
            domu_timeout_ns: cmdline
                .get("domu-timeout")
                .and_then(|v| v.parse::<u64>().ok())
                .map(|secs| secs * 1_000_000_000),
            failed: introduce::Failed::new(),
            rescan: false,
            built: Vec::new(),
        }
    }

    /// Takes on a domU dom0 built: introduced at the next scan with the rings the builder gave it.
    pub fn adopt(&mut self, built: super::builder::Built) {
        self.built.push(built);
    }

    /// The end of an event-loop pass: destroys the domUs past `domu-timeout`, and looks at the
    /// domain list again if `VIRQ_DOM_EXC` fired.
    pub fn end_of_pass(&mut self, ctx: &mut Ctx, services: &mut Services) {
        if let (Some(limit), Some(now)) = (self.domu_timeout_ns, time::now_ns()) {
            let late: Vec<(u16, String)> = ctx
                .doms
                .iter()
                .filter(|(_, d)| now.saturating_sub(d.since_ns) > limit)
                .map(|(&id, d)| (id, d.name.clone()))
                .collect();
            for (id, name) in late {
                println!(
                    "toolstack: d{id} ({name}) still running after {} s: destroying it",
                    limit / 1_000_000_000
                );
                self.teardown(ctx, services, id, Some(XEN_DOMINF_dying));
            }
        }
        if core::mem::take(&mut self.rescan) {
            self.scan(ctx, services);
        }
    }

    /// Looks at every domain: introduces new domUs, reports and destroys those that stopped.
    pub fn scan(&mut self, ctx: &mut Ctx, services: &mut Services) {
        // Destroying a domU that rebooted makes the hypervisor build it again under a new id:
        // look again after any teardown, so the new domain is introduced before we could
        // conclude that no domU is left.
        for _ in 0..8 {
            if !self.scan_once(ctx, services) {
                break;
            }
        }
    }

    /// One look at the domain list; returns whether a domU was torn down.
    fn scan_once(&mut self, ctx: &mut Ctx, services: &mut Services) -> bool {
        let mut tore_down = false;
        let list = match domus() {
            Ok(l) => l,
            Err(rc) => {
                println!("toolstack: getdomaininfolist={rc}");
                return false;
            }
        };
        for info in &list {
            let id = info.domain;
            let stopped = info.flags & (XEN_DOMINF_shutdown | XEN_DOMINF_dying) != 0;
            if stopped {
                tore_down = true;
                if ctx.doms.contains_key(&id) {
                    self.teardown(ctx, services, id, Some(info.flags));
                } else {
                    // Never introduced (it stopped before we saw it): just destroy it.
                    println!("toolstack: d{id} stopped before it was introduced");
                    let _ = destroy(id);
                }
            } else if !ctx.doms.contains_key(&id) && self.failed.may_try(id) {
                if let Err((name, e)) = self.introduce(ctx, services, info) {
                    // Given up for good (not retried on the next scan), and destroyed, as libxl
                    // destroys a domain whose creation fails (`domcreate_complete`).
                    self.failed.record(id);
                    tore_down = true;
                    println!("toolstack: cannot introduce d{id} ({name}): {e}: destroying it");
                    report_destroy(id, &name);
                }
            }
        }
        self.failed
            .retain_present(|id| list.iter().any(|i| i.domain == id));
        let gone: Vec<u16> = ctx
            .doms
            .keys()
            .copied()
            .filter(|id| !list.iter().any(|i| i.domain == *id))
            .collect();
        for id in gone {
            self.teardown(ctx, services, id, None);
        }
        tore_down
    }

    /// Sets up a domU found in the domain list. On failure, everything set up for it is undone
    /// and the error comes back with its name, for the caller to report and destroy it.
    fn introduce(
        &mut self,
        ctx: &mut Ctx,
        services: &mut Services,
        info: &XenDomctlGetdomaininfo,
    ) -> Result<(), (String, IntroduceError)> {
        let id = info.domain;
        let (name, params) = match self.built.iter().find(|b| b.id == id) {
            Some(b) => (b.name.clone(), b.rings),
            None => {
                let fallback = || format!("domain{id}");
                let p = |index| hvm_param(id, index).map_err(|e| (fallback(), e));
                let (store_mfn, store_evtchn) =
                    (p(HVM_PARAM_STORE_PFN)?, p(HVM_PARAM_STORE_EVTCHN)?);
                let (cons_mfn, cons_evtchn) =
                    (p(HVM_PARAM_CONSOLE_PFN)?, p(HVM_PARAM_CONSOLE_EVTCHN)?);
                let name = domain_name(id, store_mfn).unwrap_or_else(fallback);
                let params = RingParams {
                    store_mfn,
                    store_port: store_evtchn as u32,
                    console_mfn: cons_mfn,
                    console_port: cons_evtchn as u32,
                };
                (name, params)
            }
        };
        // Maps both rings and binds both ports, or gives back what it took (a domU may have
        // closed its ports before we came to it).
        let Rings {
            store,
            store_port,
            console,
            console_port,
        } = introduce::connect(&mut Dom0Rings, id, &params)
            .map_err(|e| (name.clone(), IntroduceError::Connect(e)))?;
        ctx.xs.connect(id, store, store_port);
        ctx.consoles.connect(id, console, console_port);
        ctx.doms.insert(
            id,
            Domain {
                name: name.clone(),
                since_ns: time::now_ns().unwrap_or(0),
                boot: BootHandle::from_handle(&info.handle),
            },
        );
        // The nodes first, then the connection: the domain's first request finds them.
        let home = format!("/local/domain/{id}");
        let xs = &mut ctx.xs;
        xs.write(&home, "");
        let ro = [
            Perm {
                domid: 0,
                access: Access::None,
            },
            Perm {
                domid: id,
                access: Access::Read,
            },
        ];
        xs.set_perms(&home, &ro);
        xs.write(&format!("{home}/name"), &name);
        xs.write(&format!("{home}/domid"), &format!("{id}"));
        xs.write(
            &format!("{home}/console/ring-ref"),
            &format!("{}", params.console_mfn),
        );
        xs.write(
            &format!("{home}/console/port"),
            &format!("{}", params.console_port),
        );
        xs.write(&format!("{home}/console/type"), "xenconsoled");
        xs.write(&format!("{home}/console/limit"), "1048576");
        // libxl's other nodes (`libxl__domain_make`, `libxl__build_post`): `cpu`, `memory`,
        // `device` and `control` read-only for the domain, the nodes it writes its own (Linux
        // writes `control/feature-*` and watches `control/shutdown`, reads `memory/target`).
        let rw = [Perm {
            domid: id,
            access: Access::None,
        }];
        for dir in ["cpu", "memory", "device", "control"] {
            xs.write(&format!("{home}/{dir}"), "");
            xs.set_perms(&format!("{home}/{dir}"), &ro);
        }
        for node in [
            "control/shutdown",
            "control/feature-poweroff",
            "control/feature-reboot",
            "control/feature-suspend",
            "control/sysrq",
            "data",
            "drivers",
            "feature",
            "attr",
            "error",
        ] {
            xs.write(&format!("{home}/{node}"), "");
            xs.set_perms(&format!("{home}/{node}"), &rw);
        }
        // libxl's memory nodes (KiB): the balloon follows `target`; `mem-set` changes it.
        xs.write(
            &format!("{home}/memory/static-max"),
            &format!("{}", info.max_pages * 4),
        );
        xs.write(
            &format!("{home}/memory/target"),
            &format!("{}", info.tot_pages * 4),
        );
        xs.write(&format!("{home}/cpu/0/availability"), "online");
        if ctx.vifs {
            write_vif_nodes(&mut ctx.xs, id);
        }
        for s in services.iter_mut() {
            s.attach(ctx, id);
        }
        if let Err(e) = ctx.xs.introduce(id, params.store_mfn, params.store_port) {
            self.undo(ctx, services, id);
            return Err((name, IntroduceError::Xenstored(e)));
        }
        ctx.xs.xs0(
            0,
            &Request::Watch {
                path: &format!("{home}/data"),
                token: &format!("data{id}"),
            },
        );
        events::register(store_port, Channel::Store(id));
        events::register(console_port, Channel::Console(id));
        println!(
            "toolstack: introduced d{id} ({name}), {} MiB",
            (info.tot_pages * 4096) >> 20
        );
        ctx.consoles.drain(id);
        ctx.xs.serve(id);
        Ok(())
    }

    /// Reports a stopped domU and undoes everything set up for it, then destroys it (`flags`:
    /// its domain-info flags; `None`: it disappeared by itself).
    pub fn teardown(
        &mut self,
        ctx: &mut Ctx,
        services: &mut Services,
        id: u16,
        flags: Option<u32>,
    ) {
        // A domain dom0 built is forgotten with it: a later domain under the same id gets
        // its rings from the hypervisor (or from its own build).
        self.built.retain(|b| b.id != id);
        // Its last words first.
        ctx.consoles.drain(id);
        let Some(d) = ctx.doms.get(&id) else {
            return;
        };
        let name = d.name.clone();
        ctx.consoles.flush(id);
        match flags {
            Some(f) if f & XEN_DOMINF_shutdown != 0 => {
                let code = (f >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask;
                if code == SHUTDOWN_crash {
                    println!("toolstack: d{id} ({name}) crashed");
                } else {
                    println!("toolstack: d{id} ({name}) shut down ({})", reason(code));
                }
            }
            Some(_) => println!("toolstack: d{id} ({name}) is dying"),
            None => println!("toolstack: d{id} ({name}) disappeared"),
        }
        self.undo(ctx, services, id);
        if flags.is_some() {
            report_destroy(id, &name);
        }
    }

    /// Undoes everything set up for a domU: every service's part, its ring mappings and ports,
    /// its xenstore connection and nodes.
    fn undo(&mut self, ctx: &mut Ctx, services: &mut Services, id: u16) {
        // Out of every table first: nothing more goes into its rings.
        ctx.doms.remove(&id);
        let rings = (ctx.xs.disconnect(id), ctx.consoles.disconnect(id));
        // In the reverse order of attaching.
        for s in services.iter_mut().rev() {
            s.detach(ctx, id);
        }
        if let (Some((store, store_port)), Some((console, console_port))) = rings {
            introduce::disconnect(
                &mut Dom0Rings,
                Rings {
                    store,
                    store_port,
                    console,
                    console_port,
                },
            );
        }
        ctx.xs.release(id);
        let token = format!("data{id}");
        ctx.xs.xs0(
            0,
            &Request::Unwatch {
                path: &format!("/local/domain/{id}/data"),
                token: &token,
            },
        );
        ctx.xs.xs0(0, &Request::Rm(&format!("/local/domain/{id}")));
        ctx.xs.xs0(
            0,
            &Request::Rm(&format!("/local/domain/0/backend/vif/{id}")),
        );
        ctx.xs.forget_watch_events(&token);
    }
}

/// Writes vif 0's nodes for domU `id` (the layout in `ring_drivers::netif`'s module doc): the
/// back-end directory owned by dom0 and readable by the domU, the front-end directory owned by
/// the domU and readable by dom0, as libxl sets them; `state` last in each.
fn write_vif_nodes(xs: &mut impl Store, id: u16) {
    let n = vif_nodes(id, 0);
    let dirs = [
        (&n.back_dir, &n.back, 0, id),
        (&n.front_dir, &n.front, id, 0),
    ];
    for (dir, keys, owner, reader) in dirs {
        xs.write(dir, "");
        xs.set_perms(
            dir,
            &[
                Perm {
                    domid: owner,
                    access: Access::None,
                },
                Perm {
                    domid: reader,
                    access: Access::Read,
                },
            ],
        );
        for (k, v) in keys {
            xs.write(&format!("{dir}/{k}"), v);
        }
    }
}
