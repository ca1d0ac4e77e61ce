//! The node tree and a view of it that records what a transaction touched.
//!
//! Nodes live in one `BTreeMap` keyed by absolute path, so a node's children are the keys
//! directly under `path/`. Every change to a node (value, permissions or set of children) gives
//! it a new generation number. A transaction works on a snapshot and logs the generation of each
//! node when it first touches it; at commit, any logged node whose generation in the live tree
//! differs means someone else changed it, and the commit fails with `EAGAIN` (C xenstored's
//! rule since Xen 4.9).

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

/// The live tree or a transaction's snapshot, with the transaction's log.
pub struct Db<'a> {
    /// The nodes operated on.
    pub nodes: &'a mut Nodes,
    /// The daemon's generation counter.
    pub generation: &'a mut u64,
    /// Set inside a transaction.
    pub log: Option<&'a mut TxLog>,
}

impl Db<'_> {
    fn touch(&mut self, path: &str) {
        if let Some(log) = self.log.as_deref_mut() {
            if !log.seen.contains_key(path) {
                let g = self.nodes.get(path).map(|n| n.generation);
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
        self.nodes.get(path).cloned()
    }

    /// Names of the children of `path` (which the caller has looked up). Starts the scan at
    /// `path/`, not at `path`: `/a-b` sorts between `/a` and `/a/b`.
    pub fn children(&mut self, path: &str) -> Vec<String> {
        self.touch(path);
        let prefix = child_prefix(path);
        self.nodes
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| &k[prefix.len()..])
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(String::from)
            .collect()
    }

    /// Stores `node` at `path` with a new generation.
    pub fn put(&mut self, path: &str, mut node: Node) {
        self.touch(path);
        node.generation = self.next_generation();
        self.nodes.insert(String::from(path), node);
        self.wrote(path);
    }

    /// Marks `path` changed (its set of children changed).
    pub fn bump(&mut self, path: &str) {
        self.touch(path);
        let g = self.next_generation();
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
            .nodes
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.len() > prefix.len())
            .map(|(k, _)| k.clone())
            .collect();
        // Deepest first, then the node itself.
        victims.sort_by_key(|k| core::cmp::Reverse(k.matches('/').count()));
        victims.push(String::from(path));
        let mut removed = Vec::new();
        for k in victims {
            self.touch(&k);
            if let Some(n) = self.nodes.remove(&k) {
                removed.push((k.clone(), n));
            }
            self.wrote(&k);
        }
        self.bump(parent(path));
        removed
    }

    /// How many nodes `domid` owns (for the per-domain quota).
    pub fn owned_by(&self, domid: u16) -> usize {
        self.nodes
            .values()
            .filter(|n| n.perms.first().map(|p| p.domid) == Some(domid))
            .count()
    }
}

fn child_prefix(path: &str) -> String {
    let mut p = String::from(path);
    if path != "/" {
        p.push('/');
    }
    p
}
