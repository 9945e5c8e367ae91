//! The object store: the objects as written, each with a resource version, replaced as a
//! whole set in one atomic step that reports what was added, changed and removed.
//!
//! The store holds input objects only. The derived [`crate::Cluster`] is rebuilt from it
//! (DESIGN.md: a view is rebuilt from the store, never patched).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::load::RawObject;

/// Identifies an object: `apiVersion`, `kind`, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace as written (empty for cluster-scoped kinds or when omitted).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl StoreKey {
    /// The key of a raw object.
    pub fn of(raw: &RawObject) -> StoreKey {
        StoreKey {
            api_version: raw.api_version().unwrap_or("").to_string(),
            kind: raw.kind().unwrap_or("").to_string(),
            namespace: raw.namespace().to_string(),
            name: raw.name().to_string(),
        }
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// One stored object.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Bumped each time the object's content changes.
    pub resource_version: u64,
    /// The object.
    pub object: Arc<RawObject>,
}

/// What one [`Store::apply`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// New objects.
    pub added: Vec<StoreKey>,
    /// Objects whose content changed (moving an object within a file is no change).
    pub changed: Vec<StoreKey>,
    /// Objects that are gone.
    pub removed: Vec<StoreKey>,
    /// The store's resource version after the change.
    pub resource_version: u64,
}

impl ChangeSet {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl fmt::Display for ChangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} added, {} changed, {} removed (resource version {})",
            self.added.len(),
            self.changed.len(),
            self.removed.len(),
            self.resource_version
        )
    }
}

/// The store.
#[derive(Clone, Debug, Default)]
pub struct Store {
    objects: BTreeMap<StoreKey, Entry>,
    resource_version: u64,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store::default()
    }

    /// The current resource version (0 for an empty, never-changed store).
    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// One object.
    pub fn get(&self, key: &StoreKey) -> Option<&Entry> {
        self.objects.get(key)
    }

    /// All objects, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&StoreKey, &Entry)> {
        self.objects.iter()
    }

    /// The objects, in key order, ready for [`crate::Cluster::build`].
    pub fn raw_objects(&self) -> Vec<RawObject> {
        self.objects.values().map(|e| (*e.object).clone()).collect()
    }

    /// Replaces the whole content with `objects`, as one change. Later duplicates of a key
    /// replace earlier ones (validation reports duplicates before anything is applied).
    pub fn apply(&mut self, objects: Vec<RawObject>) -> ChangeSet {
        let mut next: BTreeMap<StoreKey, RawObject> = BTreeMap::new();
        for o in objects {
            next.insert(StoreKey::of(&o), o);
        }
        let mut changes = ChangeSet::default();
        let rv = self.resource_version + 1;
        let mut out = BTreeMap::new();
        for (k, o) in next {
            match self.objects.remove(&k) {
                Some(old) if old.object.value == o.value => {
                    out.insert(k, old);
                }
                Some(_) => {
                    changes.changed.push(k.clone());
                    out.insert(
                        k,
                        Entry {
                            resource_version: rv,
                            object: Arc::new(o),
                        },
                    );
                }
                None => {
                    changes.added.push(k.clone());
                    out.insert(
                        k,
                        Entry {
                            resource_version: rv,
                            object: Arc::new(o),
                        },
                    );
                }
            }
        }
        changes.removed = std::mem::take(&mut self.objects).into_keys().collect();
        self.objects = out;
        if !changes.is_empty() {
            self.resource_version = rv;
        }
        changes.resource_version = self.resource_version;
        changes
    }

    /// Adds or replaces one object (a watch event). Returns its new resource version, or
    /// `None` when the content did not change.
    pub fn upsert(&mut self, object: RawObject) -> Option<u64> {
        let k = StoreKey::of(&object);
        if self
            .objects
            .get(&k)
            .is_some_and(|e| e.object.value == object.value)
        {
            return None;
        }
        self.resource_version += 1;
        let rv = self.resource_version;
        self.objects.insert(
            k,
            Entry {
                resource_version: rv,
                object: Arc::new(object),
            },
        );
        Some(rv)
    }

    /// Removes one object (a watch event). Returns true when it existed.
    pub fn remove(&mut self, key: &StoreKey) -> bool {
        let existed = self.objects.remove(key).is_some();
        if existed {
            self.resource_version += 1;
        }
        existed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Manifests, read_text};

    fn raws(text: &str) -> Vec<RawObject> {
        let mut m = Manifests::default();
        read_text(&mut m, "t.yaml", text.to_string(), Some(false));
        assert!(m.diagnostics.0.is_empty(), "{}", m.diagnostics);
        m.objects
    }

    const A: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: '1'}\n";
    const B: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n";

    #[test]
    fn apply_reports_added_changed_removed() {
        let mut s = Store::new();
        let c = s.apply(raws(&format!("{A}---\n{B}")));
        assert_eq!(c.added.len(), 2);
        assert_eq!(c.resource_version, 1);
        // Same content, other order and lines: no change, no new version.
        let c = s.apply(raws(&format!("# moved\n{B}---\n{A}")));
        assert!(c.is_empty());
        assert_eq!(s.resource_version(), 1);
        let a2 = A.replace("'1'", "'2'");
        let c = s.apply(raws(&a2));
        assert_eq!(
            c.changed
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(
            c.removed
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        assert_eq!(s.resource_version(), 2);
        let key = StoreKey::of(&raws(&a2)[0]);
        assert_eq!(s.get(&key).map(|e| e.resource_version), Some(2));
    }

    #[test]
    fn upsert_and_remove_bump_versions() {
        let mut s = Store::new();
        let o = raws(A).remove(0);
        let k = StoreKey::of(&o);
        assert_eq!(s.upsert(o.clone()), Some(1));
        assert_eq!(s.upsert(o), None);
        assert!(s.remove(&k));
        assert!(!s.remove(&k));
        assert_eq!(s.resource_version(), 2);
    }
}
