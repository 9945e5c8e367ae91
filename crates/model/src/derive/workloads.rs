//! Workloads to pods, as the Deployment, ReplicaSet, StatefulSet and DaemonSet controllers
//! would create them, with stable names.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::{apps::v1 as apps, core::v1 as core};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use super::alloc::fnv1a;
use crate::diag::Diagnostics;
use crate::kind::Kind;
use crate::types::*;

/// The alphabet Kubernetes uses for generated name suffixes (no vowels, no confusables).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `pod-template-hash` as Kubernetes computes it: a 32-bit FNV-1a hash of the template,
/// printed in decimal and each digit mapped through the safe alphabet.
pub fn pod_template_hash(template: &core::PodTemplateSpec) -> String {
    // Serialization of k8s-openapi types is deterministic (maps are BTreeMaps). The JSON
    // text is hashed as it is written, never held: the same hash as `fnv1a` of the text.
    let mut w = Fnv1aWriter(fnv1a(b""));
    let h = match serde_json::to_writer(&mut w, template) {
        Ok(()) => w.0,
        Err(_) => fnv1a(b""),
    } as u32;
    safe_encode(&h.to_string())
}

/// FNV-1a of everything written to it ([`fnv1a`], one piece at a time).
struct Fnv1aWriter(u64);

impl std::io::Write for Fnv1aWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for b in buf {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Kubernetes' `rand.SafeEncodeString`.
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// A stable five-character suffix, standing in for the random one controllers pick.
pub fn stable_suffix(seed: &str) -> String {
    let mut h = fnv1a(seed.as_bytes());
    let mut out = String::with_capacity(5);
    for _ in 0..5 {
        out.push(ALPHANUMS[(h % ALPHANUMS.len() as u64) as usize] as char);
        h /= ALPHANUMS.len() as u64;
    }
    out
}

/// A stable UID in UUID form for an object svcnet derives.
pub fn stable_uid(kind: &str, namespace: &str, name: &str) -> String {
    let a = fnv1a(format!("{kind}/{namespace}/{name}").as_bytes());
    let b = fnv1a(format!("{name}/{namespace}/{kind}").as_bytes());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn owner_ref(kind: Kind, m: &Meta) -> meta::OwnerReference {
    owner_ref_to(kind, &m.namespace, &m.name)
}

fn owner_ref_to(kind: Kind, namespace: &str, name: &str) -> meta::OwnerReference {
    meta::OwnerReference {
        api_version: kind.api_version().to_string(),
        kind: kind.as_str().to_string(),
        name: name.to_string(),
        uid: stable_uid(kind.as_str(), namespace, name),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Everything a derivation needs about nodes: names of schedulable nodes, sorted.
pub(super) struct NodeNames<'a>(pub Vec<&'a str>);

/// Derives ReplicaSets from Deployments, and pods from ReplicaSets, StatefulSets and
/// DaemonSets. A controller whose objects are already written (an export of a real
/// cluster) derives nothing: the written objects stand.
pub(super) fn derive_workloads(
    mut workloads: Vec<Workload>,
    written_pods: &BTreeMap<ObjectKey, Pod>,
    nodes: &BTreeMap<String, Node>,
    diags: &mut Diagnostics,
) -> (BTreeMap<(Kind, ObjectKey), Workload>, Vec<Pod>) {
    // No workload may ask for more pods than the nodes have addresses for: a typo like
    // `replicas: 2147483647` must be an error, not an attempt to derive two billion pods.
    let capacity: u64 = nodes
        .values()
        .map(|n| {
            n.pod_cidrs.first().map_or(0, |c| {
                let bits = u32::from(c.max_prefix_len() - c.prefix_len()).min(20);
                (1u64 << bits).saturating_sub(2)
            })
        })
        .sum();
    let mut remaining = capacity.saturating_sub(written_pods.len() as u64);
    // Key order, so that which workload overflows the capacity does not depend on the
    // order of files.
    workloads.sort_by(|a, b| {
        (a.kind, &a.meta.namespace, &a.meta.name).cmp(&(b.kind, &b.meta.namespace, &b.meta.name))
    });
    let schedulable = NodeNames(
        nodes
            .values()
            .filter(|n| n.schedulable)
            .map(|n| n.meta.name.as_str())
            .collect(),
    );
    let owned = |kind: &str, ns: &str, name: &str| {
        written_pods.values().any(|p| {
            p.meta.namespace == ns
                && p.owner
                    .as_ref()
                    .is_some_and(|o| o.kind == kind && o.name == name)
        })
    };
    let mut out: BTreeMap<(Kind, ObjectKey), Workload> = BTreeMap::new();
    let written_rs_owners: Vec<(String, String)> = workloads
        .iter()
        .filter(|w| w.kind == Kind::ReplicaSet)
        .filter_map(|w| {
            let WorkloadRaw::ReplicaSet(rs) = &w.raw else {
                return None;
            };
            let owner = rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "Deployment" && o.controller == Some(true))?;
            Some((w.meta.namespace.clone(), owner.name.clone()))
        })
        .collect();
    // Which workloads may create what is decided in key order (the address budget), then
    // the work itself (template hashes, ReplicaSets, pods: independent per workload) runs
    // on every core, and its results are put back in that order.
    let mut deployments: Vec<(Kind, ObjectKey)> = Vec::new();
    let mut pod_owners: Vec<(Kind, ObjectKey)> = Vec::new();
    for w in workloads {
        let k = (
            w.kind,
            ObjectKey::new(w.meta.namespace.clone(), w.meta.name.clone()),
        );
        let wants = if w.kind == Kind::DaemonSet {
            schedulable.0.len() as u64
        } else if matches!(
            w.kind,
            Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet
        ) {
            u64::from(w.replicas)
        } else {
            0
        };
        if wants > remaining {
            diags.push(
                crate::diag::Diagnostic::error(
                    "too-many-replicas",
                    w.meta.source_of("spec.replicas"),
                    format!(
                        "Invalid value: {}: more pods than the cluster's {} node(s) have addresses left for ({remaining} of {capacity}); lower it or add nodes (--nodes, --pod-cidr)",
                        w.replicas,
                        nodes.len()
                    ),
                )
                .on(w.meta.object_ref(w.kind))
                .field("spec.replicas"),
            );
            out.insert(k, w);
            continue;
        }
        // A Deployment's pods are counted here, not again for its ReplicaSet.
        remaining -= wants;
        match w.kind {
            Kind::Deployment => deployments.push(k.clone()),
            Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet
                if !owned(w.kind.as_str(), &w.meta.namespace, &w.meta.name) =>
            {
                pod_owners.push(k.clone());
            }
            _ => {}
        }
        out.insert(k, w);
    }
    let deployment_refs: Vec<&Workload> = deployments.iter().filter_map(|k| out.get(k)).collect();
    let revisions: Vec<(String, Option<Workload>)> = super::par_map(&deployment_refs, 64, |w| {
        let hash = pod_template_hash(&w.template);
        let exported = written_rs_owners
            .iter()
            .any(|(ns, n)| *ns == w.meta.namespace && *n == w.meta.name);
        let rs = (!exported).then(|| replica_set_for(w, &hash));
        (hash, rs)
    });
    let mut replica_sets = Vec::new();
    for (k, (hash, rs)) in deployments.iter().zip(revisions) {
        if let Some(w) = out.get_mut(k) {
            w.template_hash = Some(hash);
        }
        replica_sets.extend(rs);
    }
    let owners: Vec<&Workload> = pod_owners
        .iter()
        .filter_map(|k| out.get(k))
        .chain(&replica_sets)
        .collect();
    let pods: Vec<Pod> = super::par_map(&owners, 64, |w| pods_of(w, &schedulable))
        .into_iter()
        .flatten()
        .collect();
    for rs in replica_sets {
        out.insert(
            (
                Kind::ReplicaSet,
                ObjectKey::new(rs.meta.namespace.clone(), rs.meta.name.clone()),
            ),
            rs,
        );
    }
    (out, pods)
}

/// The ReplicaSet a Deployment's current revision runs. It shares the Deployment's
/// template (the `pod-template-hash` label is its `template_hash`) and its raw object
/// carries none (`render::workload` writes it).
fn replica_set_for(d: &Workload, hash: &str) -> Workload {
    let name = format!("{}-{hash}", d.meta.name);
    let mut selector = d.selector.clone();
    selector.requirements.push(crate::selector::Requirement::In(
        "pod-template-hash".into(),
        vec![hash.into()],
    ));
    let mut meta = d.meta.clone();
    meta.name = name.clone();
    meta.annotations = Arc::new(BTreeMap::from([
        (
            "deployment.kubernetes.io/desired-replicas".to_string(),
            d.replicas.to_string(),
        ),
        (
            "deployment.kubernetes.io/revision".to_string(),
            "1".to_string(),
        ),
    ]));
    let mut rs = Workload {
        kind: Kind::ReplicaSet,
        meta,
        replicas: d.replicas,
        selector,
        service_name: None,
        template: d.template.clone(),
        pod_spec: d.pod_spec.clone(),
        template_hash: Some(hash.to_string()),
        // Everything of its object is in the Workload: one empty raw object shared by all
        // derived ReplicaSets, and `render::workload` builds the rest
        // ([`derived_replica_set`]).
        raw: WorkloadRaw::ReplicaSet(EMPTY_REPLICA_SET.clone()),
    };
    rs.meta.labels = Arc::new(rs.template_labels());
    rs
}

static EMPTY_REPLICA_SET: std::sync::LazyLock<Arc<apps::ReplicaSet>> =
    std::sync::LazyLock::new(Arc::default);

/// The object of a ReplicaSet svcnet derived from a Deployment (its `template_hash` is
/// set), without its template: what the Deployment controller would have created.
pub(crate) fn derived_replica_set(w: &Workload) -> apps::ReplicaSet {
    let hash = w.template_hash.as_deref().unwrap_or_default();
    let deployment = w
        .meta
        .name
        .strip_suffix(hash)
        .and_then(|n| n.strip_suffix('-'))
        .unwrap_or(&w.meta.name);
    apps::ReplicaSet {
        metadata: meta::ObjectMeta {
            name: Some(w.meta.name.clone()),
            namespace: Some(w.meta.namespace.clone()),
            owner_references: Some(vec![owner_ref_to(
                Kind::Deployment,
                &w.meta.namespace,
                deployment,
            )]),
            uid: Some(stable_uid("ReplicaSet", &w.meta.namespace, &w.meta.name)),
            ..Default::default()
        },
        spec: apps::ReplicaSetSpec {
            replicas: Some(i32::try_from(w.replicas).unwrap_or(i32::MAX)),
            selector: w.selector.to_k8s(),
            template: None,
            ..Default::default()
        },
        status: None,
    }
}

/// The pods a ReplicaSet, StatefulSet or DaemonSet runs.
fn pods_of(w: &Workload, nodes: &NodeNames<'_>) -> Vec<Pod> {
    let template = stamp(w);
    let wkey = format!("{}/{}/{}", w.kind.as_str(), w.meta.namespace, w.meta.name);
    let start = fnv1a(wkey.as_bytes());
    let node_for = |ordinal: u64| -> String {
        if let Some(n) = &w.pod_spec.node_name {
            return n.clone();
        }
        if nodes.0.is_empty() {
            return String::new();
        }
        let i = (start.wrapping_add(ordinal) % nodes.0.len() as u64) as usize;
        nodes.0[i].to_string()
    };
    let revision = format!(
        "{}-{}",
        w.meta.name,
        w.template_hash
            .clone()
            .unwrap_or_else(|| pod_template_hash(&w.template))
    );
    match w.kind {
        Kind::ReplicaSet => (0..w.replicas)
            .map(|i| {
                let name = format!("{}-{}", w.meta.name, stable_suffix(&format!("{wkey}/{i}")));
                make_pod(w, &template, name, node_for(u64::from(i)), None, &[])
            })
            .collect(),
        Kind::StatefulSet => (0..w.replicas)
            .map(|i| {
                let name = format!("{}-{i}", w.meta.name);
                let extra = [
                    ("statefulset.kubernetes.io/pod-name", name.clone()),
                    ("apps.kubernetes.io/pod-index", i.to_string()),
                    ("controller-revision-hash", revision.clone()),
                ];
                let identity = (name.clone(), w.service_name.clone());
                make_pod(
                    w,
                    &template,
                    name,
                    node_for(u64::from(i)),
                    Some(identity),
                    &extra,
                )
            })
            .collect(),
        Kind::DaemonSet => {
            let targets: Vec<String> = match &w.pod_spec.node_name {
                Some(n) => vec![n.clone()],
                None => nodes.0.iter().map(|s| s.to_string()).collect(),
            };
            targets
                .into_iter()
                .map(|node| {
                    let name = format!(
                        "{}-{}",
                        w.meta.name,
                        stable_suffix(&format!("{wkey}/{node}"))
                    );
                    let extra = [
                        ("controller-revision-hash", revision.clone()),
                        ("pod-template-generation", "1".to_string()),
                    ];
                    make_pod(w, &template, name, node, None, &extra)
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// A pod as its controller creates it: the template's metadata and spec, an owner
/// reference, a node, and for StatefulSets a stable hostname and subdomain.
fn make_pod(
    w: &Workload,
    stamp: &Stamp,
    name: String,
    node_name: String,
    identity: Option<(String, Option<String>)>,
    extra_labels: &[(&str, String)],
) -> Pod {
    // Replicas with no labels of their own share their controller's map.
    let labels = if extra_labels.is_empty() {
        stamp.labels.clone()
    } else {
        let mut labels = (*stamp.labels).clone();
        for (k, v) in extra_labels {
            labels.insert(k.to_string(), v.clone());
        }
        Arc::new(labels)
    };
    let annotations = stamp.annotations.clone();
    let info = &w.pod_spec;
    let (hostname, subdomain) = match identity {
        Some((hostname, subdomain)) => (Some(hostname), subdomain.or(info.subdomain.clone())),
        None => (info.hostname.clone(), info.subdomain.clone()),
    };
    Pod {
        meta: Meta {
            name,
            namespace: w.meta.namespace.clone(),
            labels,
            annotations,
            creation_timestamp: w.meta.creation_timestamp,
            terminating: false,
            source: w.meta.source.clone(),
            locator: w.meta.locator.clone(),
        },
        node_name,
        ips: Vec::new(),
        host_ip: None,
        host_network: info.host_network,
        hostname,
        subdomain,
        containers: stamp.containers.clone(),
        phase: PodPhase::Running,
        ready: true,
        dns_policy: info.dns_policy,
        dns_config: info.dns_config.clone(),
        owner: Some(Owner {
            kind: w.kind.as_str().to_string(),
            name: w.meta.name.clone(),
        }),
        // Every replica shares one template pod and its controller's template;
        // `render::pod` writes each pod's own name, labels, node and addresses over them
        // (a PodSpec per pod, then one per workload and copy, was most of the memory of a
        // large cluster).
        raw: stamp.pod.clone(),
        template: Some(w.template.clone()),
    }
}

/// What a controller stamps on each of its pods, shared by every replica.
struct Stamp {
    /// The pod's metadata without the per-pod fields (name, node, hostname), labels and
    /// annotations (`render::pod` writes the pod's own), and without a spec (that is the
    /// pod's `template`).
    pod: Arc<core::Pod>,
    /// The template's labels (with `pod-template-hash` for a derived ReplicaSet).
    labels: Arc<crate::selector::Labels>,
    /// The template's annotations.
    annotations: Arc<BTreeMap<String, String>>,
    /// The template's containers, validated.
    containers: Arc<Vec<Container>>,
}

fn stamp(w: &Workload) -> Stamp {
    // A derived ReplicaSet's labels are its template's (with the hash): one map for both.
    let labels = if w.kind == Kind::ReplicaSet && w.template_hash.is_some() {
        w.meta.labels.clone()
    } else {
        Arc::new(w.template_labels())
    };
    let annotations = w
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone());
    Stamp {
        pod: Arc::new(core::Pod {
            metadata: meta::ObjectMeta {
                namespace: Some(w.meta.namespace.clone()),
                owner_references: Some(vec![owner_ref(w.kind, &w.meta)]),
                ..Default::default()
            },
            spec: None,
            status: None,
        }),
        labels,
        annotations: Arc::new(annotations.unwrap_or_default()),
        containers: w.pod_spec.containers.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_is_fnv1a_of_the_json_text() {
        let t = core::PodTemplateSpec {
            metadata: Some(meta::ObjectMeta {
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = serde_json::to_string(&t).unwrap_or_default();
        let want = safe_encode(&(fnv1a(text.as_bytes()) as u32).to_string());
        assert_eq!(pod_template_hash(&t), want);
    }

    #[test]
    fn safe_encoding_matches_kubernetes() {
        // rand.SafeEncodeString("0123456789") in Go maps each byte through the alphabet.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn suffixes_are_stable_and_safe() {
        let a = stable_suffix("ReplicaSet/default/web/0");
        assert_eq!(a, stable_suffix("ReplicaSet/default/web/0"));
        assert_ne!(a, stable_suffix("ReplicaSet/default/web/1"));
        assert_eq!(a.len(), 5);
        assert!(a.bytes().all(|b| ALPHANUMS.contains(&b)));
    }

    #[test]
    fn uids_look_like_uuids() {
        let u = stable_uid("Pod", "default", "web");
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
    }
}
