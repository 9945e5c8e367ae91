//! The derived cluster: every object validated, every pod placed and addressed, every
//! Service allocated, every EndpointSlice built. Data planes compile their views from this.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::derive;
use crate::diag::Diagnostics;
use crate::kind::Kind;
use crate::load::{self, RawObject};
use crate::plan::AddressPlan;
use crate::types::*;
use crate::validate;

/// A complete, consistent cluster state.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// The address plan it was derived with.
    pub plan: AddressPlan,
    /// Namespaces by name (declared and implicit).
    pub namespaces: BTreeMap<String, Namespace>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// Pods (written and derived from workloads).
    pub pods: BTreeMap<ObjectKey, Pod>,
    /// Workloads: Deployments, ReplicaSets (written and derived), StatefulSets, DaemonSets.
    pub workloads: BTreeMap<(Kind, ObjectKey), Workload>,
    /// Services, with allocated addresses.
    pub services: BTreeMap<ObjectKey, Service>,
    /// EndpointSlices (derived and written).
    pub endpoint_slices: BTreeMap<ObjectKey, EndpointSlice>,
    /// Ingresses.
    pub ingresses: BTreeMap<ObjectKey, Ingress>,
    /// IngressClasses by name.
    pub ingress_classes: BTreeMap<String, IngressClass>,
    /// NetworkPolicies.
    pub network_policies: BTreeMap<ObjectKey, NetworkPolicy>,
    /// Secrets.
    pub secrets: BTreeMap<ObjectKey, Secret>,
    /// ConfigMaps.
    pub config_maps: BTreeMap<ObjectKey, ConfigMap>,
    /// Objects of kinds svcnet does not use.
    pub others: Vec<OtherObject>,
}

impl Cluster {
    /// Builds a cluster from raw objects: validate, default, derive, allocate.
    ///
    /// `previous` is the cluster currently served, if any: its allocations are kept for
    /// objects that still exist, so a reload never renumbers them. Returns the cluster
    /// only when no error was found; the diagnostics always.
    pub fn build(
        raws: Vec<RawObject>,
        plan: &AddressPlan,
        previous: Option<&Cluster>,
    ) -> (Option<Cluster>, Diagnostics) {
        let mut diags = Diagnostics::default();
        let objects = validate::validate(raws, &mut diags);
        Cluster::build_validated(objects, diags, plan, previous)
    }

    /// Derives the cluster from objects already validated ([`validate::validate`] or
    /// [`validate::read_paths`]), given the problems their validation found: nothing is
    /// derived when those hold an error. Returns the cluster only when no error was found;
    /// the diagnostics (validation's and derivation's, sorted) always.
    pub fn build_validated(
        objects: validate::Objects,
        validation: Diagnostics,
        plan: &AddressPlan,
        previous: Option<&Cluster>,
    ) -> (Option<Cluster>, Diagnostics) {
        let mut diags = validation;
        if diags.has_errors() {
            diags.sort();
            return (None, diags);
        }
        let cluster = derive::derive(objects, plan, previous, &mut diags);
        diags.sort();
        if diags.has_errors() {
            (None, diags)
        } else {
            (Some(cluster), diags)
        }
    }

    /// Reads paths (like `kubectl -f`) and builds the cluster.
    pub fn load(
        paths: &[PathBuf],
        plan: &AddressPlan,
        previous: Option<&Cluster>,
    ) -> (Option<Cluster>, Diagnostics) {
        // Each file's objects are validated as soon as it is parsed (see
        // `validate::read_paths`): the same outcome as `read_paths` then `build`.
        let loaded = validate::read_paths(paths);
        let mut diags = loaded.read_diagnostics;
        let (cluster, more) =
            Cluster::build_validated(loaded.objects, loaded.diagnostics, plan, previous);
        diags.extend(more);
        diags.sort();
        if diags.has_errors() {
            (None, diags)
        } else {
            (cluster, diags)
        }
    }

    /// Parses manifest text (tests, stdin) and builds the cluster.
    pub fn from_yaml(name: &str, text: &str, plan: &AddressPlan) -> (Option<Cluster>, Diagnostics) {
        let mut manifests = load::Manifests::default();
        load::read_text(&mut manifests, name, text.to_string(), Some(false));
        let mut diags = manifests.diagnostics;
        let (cluster, more) = Cluster::build(manifests.objects, plan, None);
        diags.extend(more);
        diags.sort();
        if diags.has_errors() {
            (None, diags)
        } else {
            (cluster, diags)
        }
    }

    /// The EndpointSlices of a Service.
    pub fn slices_of(&self, svc: &ObjectKey) -> impl Iterator<Item = &EndpointSlice> + '_ {
        let ns = svc.namespace.clone();
        let name = svc.name.clone();
        self.endpoint_slices
            .range(ObjectKey::new(ns.clone(), String::new())..)
            .take_while(move |(k, _)| k.namespace == ns)
            .map(|(_, s)| s)
            .filter(move |s| s.service_name == name)
    }

    /// Overrides pods' readiness (probe results, the admin API) and rebuilds the derived
    /// EndpointSlices from it, as the EndpointSlice controller would react. Pods not in
    /// `ready` keep their readiness from the manifests. Returns true when anything changed.
    pub fn set_readiness(&mut self, ready: &std::collections::HashMap<ObjectKey, bool>) -> bool {
        let mut changed = false;
        for (k, r) in ready {
            if let Some(p) = self.pods.get_mut(k)
                && p.ready != *r
            {
                p.ready = *r;
                changed = true;
            }
        }
        if changed {
            self.endpoint_slices.retain(|_, s| !s.derived);
            let derived: Vec<EndpointSlice> = derive::derive_all_slices(self)
                .into_iter()
                .flat_map(|(_, slices)| slices)
                .collect();
            for s in derived {
                self.endpoint_slices.insert(
                    ObjectKey::new(s.meta.namespace.clone(), s.meta.name.clone()),
                    s,
                );
            }
        }
        changed
    }

    /// Pods of a namespace.
    pub fn pods_in<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a Pod> {
        self.pods
            .range(ObjectKey::new(namespace, String::new())..)
            .take_while(move |(k, _)| k.namespace == namespace)
            .map(|(_, p)| p)
    }

    /// Number of objects of each kind, for summaries.
    pub fn counts(&self) -> Vec<(Kind, usize)> {
        let w = |k: Kind| self.workloads.keys().filter(|(kk, _)| *kk == k).count();
        vec![
            (Kind::Namespace, self.namespaces.len()),
            (Kind::Node, self.nodes.len()),
            (Kind::Pod, self.pods.len()),
            (Kind::Service, self.services.len()),
            (Kind::EndpointSlice, self.endpoint_slices.len()),
            (Kind::Deployment, w(Kind::Deployment)),
            (Kind::ReplicaSet, w(Kind::ReplicaSet)),
            (Kind::StatefulSet, w(Kind::StatefulSet)),
            (Kind::DaemonSet, w(Kind::DaemonSet)),
            (Kind::Ingress, self.ingresses.len()),
            (Kind::IngressClass, self.ingress_classes.len()),
            (Kind::NetworkPolicy, self.network_policies.len()),
            (Kind::Secret, self.secrets.len()),
            (Kind::ConfigMap, self.config_maps.len()),
        ]
    }
}

/// Pods by namespace and label: what a Service's selector (equality on every label it
/// names) picks is found from the shortest list of pods carrying one of its labels, instead
/// of testing every pod of the namespace (Services × pods when one namespace is large).
pub(crate) struct PodIndex<'a> {
    c: &'a Cluster,
    /// (namespace, label key, label value) → pods, in the cluster's pod order.
    by_label: FastMap<(&'a str, &'a str, &'a str), Vec<&'a Pod>>,
}

/// A HashMap with a fast, unkeyed hash (rustc's FxHash, from the rustc-hash crate), for
/// in-process indexes of names that come from the manifests: SipHash's resistance to chosen
/// keys buys nothing here and cost more than the lookups themselves.
pub(crate) type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;

impl<'a> PodIndex<'a> {
    /// Indexes every pod of the cluster.
    pub(crate) fn new(c: &'a Cluster) -> Self {
        let mut by_label: FastMap<_, Vec<&'a Pod>> = FastMap::default();
        for p in c.pods.values() {
            for (k, v) in p.meta.labels.iter() {
                by_label
                    .entry((p.meta.namespace.as_str(), k.as_str(), v.as_str()))
                    .or_default()
                    .push(p);
            }
        }
        PodIndex { c, by_label }
    }

    /// The pods of `namespace` that a Service's selector selects, in the order of
    /// [`Cluster::pods_in`]: exactly those for which the selector's `matches` holds.
    pub(crate) fn selected<'s>(
        &'s self,
        namespace: &'s str,
        selector: &'s crate::selector::Labels,
    ) -> Box<dyn Iterator<Item = &'s Pod> + 's>
    where
        'a: 's,
    {
        let shortest = selector
            .iter()
            .map(|(k, v)| {
                self.by_label
                    .get(&(namespace, k.as_str(), v.as_str()))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|pods| pods.len());
        let all_match = move |p: &&'s Pod| {
            selector
                .iter()
                .all(|(k, v)| p.meta.labels.get(k).is_some_and(|pv| pv == v))
        };
        match shortest {
            Some(pods) => Box::new(pods.iter().copied().filter(all_match)),
            // An empty selector selects every pod of the namespace.
            None => Box::new(self.c.pods_in(namespace)),
        }
    }
}
