//! The front end's side of the XenbusState handshake, shared by blkfront and netfront: read the
//! back end's state, wait on its watch, and carry out what `ring_drivers::xenbus::state` says to
//! do (publish the transport, read the back end's keys, switch state, tear down).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hypercall_abi::io::xenbus::XenbusState;
use ring_drivers::xenbus::state::{FrontendAction, XenbusFrontend};
use ring_drivers::xenbus::Request;

use super::client::Client;
use super::error::DomuError;
use crate::kernel::time;

/// The node every device directory has for its XenbusState (`keys::STATE` of each class).
const STATE: &str = "state";

/// A front end's link to its back end: where both sides' nodes are, who serves it, and the
/// handshake's state machine. [`FrontLink::open`] reads it from the front end's directory.
pub struct FrontLink {
    /// `device/<type>/<id>` in the domain's own xenstore home.
    pub front_dir: String,
    /// The back end's directory, as the front end's `backend` node names it.
    pub back_dir: String,
    /// The domain serving the device (`backend-id`).
    pub backend_id: u16,
    /// The handshake's state machine.
    pub xb: XenbusFrontend,
}

impl FrontLink {
    /// Reads `<front_dir>/backend` and `<front_dir>/backend-id`, and watches the back end's
    /// `state` node under `token`.
    pub fn open(d: &mut Client, front_dir: String, token: &str) -> Result<FrontLink, DomuError> {
        let back_dir = value(d, &format!("{front_dir}/backend"))?;
        let id_path = format!("{front_dir}/backend-id");
        let backend_id = value(d, &id_path)?
            .parse()
            .map_err(|_| DomuError::BadNode(id_path, "not a domid"))?;
        let path = format!("{back_dir}/{STATE}");
        d.ok(0, &Request::Watch { path: &path, token })?
            .map_err(|e| DomuError::Refused(format!("watch {path}"), e))?;
        Ok(FrontLink {
            front_dir,
            back_dir,
            backend_id,
            xb: XenbusFrontend::new(),
        })
    }

    /// Writes `<front_dir>/<key>`.
    pub fn write_node(&self, d: &mut Client, key: &str, v: &str) -> Result<(), DomuError> {
        write_node(d, &self.front_dir, key, v)
    }

    /// Reads those of `names` that exist under the back end's directory (see [`read_keys`]).
    pub fn read_back_keys(
        &self,
        d: &mut Client,
        names: &[&'static str],
    ) -> Result<Vec<(&'static str, Vec<u8>)>, DomuError> {
        read_keys(d, &self.back_dir, names)
    }
}

/// Reads the node `path` as text.
pub fn value(d: &mut Client, path: &str) -> Result<String, DomuError> {
    match d.read(path)? {
        Ok(v) => {
            String::from_utf8(v).map_err(|_| DomuError::BadNode(String::from(path), "not UTF-8"))
        }
        Err(e) => Err(DomuError::Refused(String::from(path), e)),
    }
}

/// What a split-driver front end provides for the handshake to drive it.
pub trait XenbusDevice {
    /// The token of the watch on the back end's `state` node.
    const TOKEN: &'static str;
    /// Its link to the back end.
    fn link(&mut self) -> &mut FrontLink;
    /// Grants the rings and pages, allocates the port and writes the transport keys.
    fn publish(&mut self, d: &mut Client) -> Result<(), DomuError>;
    /// Reads the back end's keys and connects the device with them.
    fn connect_device(&mut self, d: &mut Client) -> Result<(), DomuError>;
    /// Ends the grants and closes the port (the back end has let go of them).
    fn teardown(&mut self);

    /// Runs the handshake until the device is connected.
    fn connect(&mut self, d: &mut Client) -> Result<(), DomuError>
    where
        Self: Sized,
    {
        connect(self, d)
    }

    /// Closes the device (`Closing`, then `Closed` once the back end let go of its rings).
    fn close(&mut self, d: &mut Client) -> Result<(), DomuError>
    where
        Self: Sized,
    {
        close(self, d)
    }

    /// After [`XenbusDevice::close`]: waits for the back end to be `Closed` (or back in
    /// `InitWait`), then connects again with fresh rings, grants and port.
    fn reconnect(&mut self, d: &mut Client) -> Result<(), DomuError>
    where
        Self: Sized,
    {
        reconnect(self, d)
    }
}

/// The back end's current state (`Unknown` if its node is absent or malformed).
pub fn backend_state(link: &FrontLink, d: &mut Client) -> Result<XenbusState, DomuError> {
    Ok(match d.read(&format!("{}/{STATE}", link.back_dir))? {
        Ok(v) => XenbusState::from_node(&v).unwrap_or(XenbusState::Unknown),
        Err(_) => XenbusState::Unknown,
    })
}

/// Waits for the back end's `state` watch to fire (or a second to pass); fails once the whole
/// wait that began at `since` has timed out.
pub fn wait_backend<T: XenbusDevice>(d: &mut Client, since: u64) -> Result<(), DomuError> {
    let start = time::now_ns().unwrap_or(0);
    loop {
        if let Some(i) = d.watches.iter().position(|w| w.token == T::TOKEN) {
            d.watches.remove(i);
            return Ok(());
        }
        d.timed_out(since)?;
        if time::now_ns().unwrap_or(0) > start + 1000 * time::MS {
            return Ok(());
        }
        d.step();
    }
}

/// Runs the handshake until the device is connected.
pub fn connect<T: XenbusDevice>(dev: &mut T, d: &mut Client) -> Result<(), DomuError> {
    let since = time::now_ns().unwrap_or(0);
    loop {
        let back = backend_state(dev.link(), d)?;
        let actions = dev.link().xb.on_other_end_changed(back);
        apply(dev, d, &actions)?;
        if dev.link().xb.state() == XenbusState::Connected {
            return Ok(());
        }
        wait_backend::<T>(d, since)?;
    }
}

/// Closes the device (`Closing`, then `Closed` once the back end let go of the rings).
pub fn close<T: XenbusDevice>(dev: &mut T, d: &mut Client) -> Result<(), DomuError> {
    let since = time::now_ns().unwrap_or(0);
    let actions = dev.link().xb.close();
    apply(dev, d, &actions)?;
    while dev.link().xb.state() != XenbusState::Closed {
        wait_backend::<T>(d, since)?;
        let back = backend_state(dev.link(), d)?;
        let actions = dev.link().xb.on_other_end_changed(back);
        apply(dev, d, &actions)?;
    }
    Ok(())
}

/// After [`close`]: waits for the back end to be `Closed` (or back in `InitWait`), then
/// connects again with fresh rings, grants and port.
pub fn reconnect<T: XenbusDevice>(dev: &mut T, d: &mut Client) -> Result<(), DomuError> {
    let since = time::now_ns().unwrap_or(0);
    let mut back = backend_state(dev.link(), d)?;
    while back != XenbusState::Closed && back != XenbusState::InitWait {
        wait_backend::<T>(d, since)?;
        back = backend_state(dev.link(), d)?;
    }
    let actions = dev.link().xb.reconnect(back);
    apply(dev, d, &actions)?;
    connect(dev, d)
}

/// Writes `<front_dir>/<key>`.
pub fn write_node(d: &mut Client, front_dir: &str, key: &str, v: &str) -> Result<(), DomuError> {
    let path = format!("{front_dir}/{key}");
    d.ok(0, &Request::Write(&path, v.as_bytes()))?
        .map_err(|e| DomuError::Refused(format!("write {path}"), e))
}

/// Reads those of `names` that exist under `back_dir`, as a lookup for `*::from_keys`.
pub fn read_keys(
    d: &mut Client,
    back_dir: &str,
    names: &[&'static str],
) -> Result<Vec<(&'static str, Vec<u8>)>, DomuError> {
    let mut values = Vec::new();
    for &k in names {
        if let Ok(v) = d.read(&format!("{back_dir}/{k}"))? {
            values.push((k, v));
        }
    }
    Ok(values)
}

/// The value of `key` among what [`read_keys`] read.
pub fn lookup(values: &[(&'static str, Vec<u8>)], key: &str) -> Option<Vec<u8>> {
    values
        .iter()
        .find(|(n, _)| *n == key)
        .map(|(_, v)| v.clone())
}

fn apply<T: XenbusDevice>(
    dev: &mut T,
    d: &mut Client,
    actions: &[FrontendAction],
) -> Result<(), DomuError> {
    for &a in actions {
        match a {
            FrontendAction::PublishTransport => dev.publish(d)?,
            FrontendAction::ReadBackendInfo => dev.connect_device(d)?,
            FrontendAction::Connect => {}
            FrontendAction::Disconnect => dev.teardown(),
            FrontendAction::SwitchState(s) => {
                dev.link().write_node(d, STATE, &format!("{}", s.raw()))?
            }
        }
    }
    Ok(())
}
