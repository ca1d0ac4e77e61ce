//! The node tree and a view of it that records what a transaction touched.
//!
//! Nodes live in one `BTreeMap` keyed by absolute path, so a node's children are the keys
//! directly under `path/`. Every change to a node (value, permissions or set of children) gives
//! it a new generation number. A transaction keeps only what it changed (an overlay over the live
//! tree: the nodes it wrote, the paths it removed) and reads the rest from the live tree, as C
//! xenstored's transactions do since Xen 4.9; it logs the generation of each node when it first
//! touches it, and at commit any logged node whose generation in the live tree differs means
//! someone else changed it: the commit fails with `EAGAIN`. (A transaction used to copy the
//! whole tree when it started: with 64 domUs each in a transaction at once, dom0 held 64 copies
//! of a 3000-node tree.)

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Bound;

use ring_drivers::xenbus::Perm;

use super::path::parent;

/// A node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its value, shared between the tree and transaction snapshots until one of them writes
    /// the node (a snapshot costs the tree's paths, not its values).
    pub value: Rc<[u8]>,
    /// Its permissions; never empty (the first entry names the owner).
    pub perms: Vec<Perm>,
    /// Bumped on every change.
    pub generation: u64,
}

/// All nodes, by absolute path.
pub type Nodes = BTreeMap<String, Node>;

/// What a transaction touched.
#[derive(Clone, Debug, Default)]
pub struct TxLog {
    /// Each touched node's generation when first touched (`None`: it did not exist).
    pub seen: BTreeMap<String, Option<u64>>,
    /// Nodes the transaction changed, created or removed.
    pub written: BTreeSet<String>,
}

/// What a transaction changed over the live tree.
#[derive(Clone, Debug, Default)]
pub struct Overlay {
    /// Nodes it wrote (created or changed), as they are in the transaction.
    pub nodes: Nodes,
    /// Paths it removed (and has not written again since).
    pub removed: BTreeSet<String>,
}

impl Overlay {
    /// The node at `path` as the transaction sees it, the live tree `base` below it.
    pub fn lookup<'n>(&'n self, base: &'n Nodes, path: &str) -> Option<&'n Node> {
        match self.nodes.get(path) {
            Some(n) => Some(n),
            None if self.removed.contains(path) => None,
            None => base.get(path),
        }
    }
}

/// The live tree, or a transaction's view of it (its overlay over the live tree), with the
/// transaction's log.
pub struct Db<'a> {
    /// The nodes written to: the live tree, or the transaction's overlay nodes.
    pub nodes: &'a mut Nodes,
    /// The daemon's generation counter.
    pub generation: &'a mut u64,
    /// Set inside a transaction.
    pub log: Option<&'a mut TxLog>,
    /// Inside a transaction: the live tree below the overlay and the paths the transaction
    /// removed.
    pub below: Option<(&'a Nodes, &'a mut BTreeSet<String>)>,
}

impl Db<'_> {
    /// The node at `path` as this view sees it.
    fn lookup(&self, path: &str) -> Option<&Node> {
        match self.nodes.get(path) {
            Some(n) => Some(n),
            None => match &self.below {
                Some((_, removed)) if removed.contains(path) => None,
                Some((base, _)) => base.get(path),
                None => None,
            },
        }
    }

    /// The paths under `prefix` (itself included if it is one) this view has, in order.
    fn keys_under(&self, prefix: &str) -> Vec<String> {
        let range = |m: &Nodes| -> Vec<String> {
            m.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, _)| k.clone())
                .collect()
        };
        let mut keys: BTreeSet<String> = range(self.nodes).into_iter().collect();
        if let Some((base, removed)) = &self.below {
            keys.extend(range(base).into_iter().filter(|k| !removed.contains(k)));
        }
        keys.into_iter().collect()
    }

    fn touch(&mut self, path: &str) {
        if self
            .log
            .as_deref()
            .is_some_and(|l| !l.seen.contains_key(path))
        {
            let g = self.lookup(path).map(|n| n.generation);
            if let Some(log) = self.log.as_deref_mut() {
                log.seen.insert(String::from(path), g);
            }
        }
    }

    fn wrote(&mut self, path: &str) {
        if let Some(log) = self.log.as_deref_mut() {
            log.written.insert(String::from(path));
        }
    }

    fn next_generation(&mut self) -> u64 {
        *self.generation += 1;
        *self.generation
    }

    /// The node at `path`.
    pub fn get(&mut self, path: &str) -> Option<Node> {
        self.touch(path);
        self.lookup(path).cloned()
    }

    /// Names of the children of `path` (which the caller has looked up). Starts the scan at
    /// `path/`, not at `path`: `/a-b` sorts between `/a` and `/a/b`.
    pub fn children(&mut self, path: &str) -> Vec<String> {
        self.touch(path);
        let prefix = child_prefix(path);
        self.keys_under(&prefix)
            .iter()
            .map(|k| &k[prefix.len()..])
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(String::from)
            .collect()
    }

    /// Stores `node` at `path` with a new generation.
    pub fn put(&mut self, path: &str, mut node: Node) {
        self.touch(path);
        node.generation = self.next_generation();
        self.nodes.insert(String::from(path), node);
        if let Some((_, removed)) = &mut self.below {
            removed.remove(path);
        }
        self.wrote(path);
    }

    /// Marks `path` changed (its set of children changed).
    pub fn bump(&mut self, path: &str) {
        self.touch(path);
        let g = self.next_generation();
        if !self.nodes.contains_key(path) {
            // A live node the transaction had not written: its copy goes into the overlay.
            if let Some(n) = self.lookup(path).cloned() {
                self.nodes.insert(String::from(path), n);
            }
        }
        if let Some(n) = self.nodes.get_mut(path) {
            n.generation = g;
        }
        self.wrote(path);
    }

    /// Removes `path` and everything under it; returns the removed descendants (deepest
    /// first) and then the node itself. Bumps the parent.
    pub fn remove_subtree(&mut self, path: &str) -> Vec<(String, Node)> {
        let prefix = child_prefix(path);
        let mut victims: Vec<String> = self
            .keys_under(&prefix)
            .into_iter()
            .filter(|k| k.len() > prefix.len())
            .collect();
        // Deepest first, then the node itself.
        victims.sort_by_key(|k| core::cmp::Reverse(k.matches('/').count()));
        victims.push(String::from(path));
        let mut removed = Vec::new();
        for k in victims {
            self.touch(&k);
            let gone = self.lookup(&k).cloned();
            self.nodes.remove(&k);
            if let Some((_, removed_paths)) = &mut self.below {
                removed_paths.insert(k.clone());
            }
            if let Some(n) = gone {
                removed.push((k.clone(), n));
            }
            self.wrote(&k);
        }
        self.bump(parent(path));
        removed
    }

    /// How many nodes `domid` owns (for the per-domain quota).
    pub fn owned_by(&self, domid: u16) -> usize {
        let owns = |n: &Node| n.perms.first().map(|p| p.domid) == Some(domid);
        let written = self.nodes.values().filter(|n| owns(n)).count();
        match &self.below {
            None => written,
            Some((base, removed)) => {
                written
                    + base
                        .iter()
                        .filter(|(k, n)| {
                            owns(n) && !self.nodes.contains_key(*k) && !removed.contains(*k)
                        })
                        .count()
            }
        }
    }
}

fn child_prefix(path: &str) -> String {
    let mut p = String::from(path);
    if path != "/" {
        p.push('/');
    }
    p
}
