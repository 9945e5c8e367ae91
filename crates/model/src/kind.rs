//! The Kubernetes kinds svcnet understands, with kubectl's names for them.

use std::fmt;

/// A kind svcnet reads and acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// v1 Namespace.
    Namespace,
    /// v1 Node.
    Node,
    /// v1 Pod.
    Pod,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// v1 Service.
    Service,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// v1 Endpoints (converted to EndpointSlices on load).
    Endpoints,
    /// networking.k8s.io/v1 Ingress.
    Ingress,
    /// networking.k8s.io/v1 IngressClass.
    IngressClass,
    /// networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicy,
    /// v1 Secret.
    Secret,
    /// v1 ConfigMap.
    ConfigMap,
}

impl Kind {
    /// Every kind, in kubectl's usual listing order.
    pub const ALL: [Kind; 15] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::Service,
        Kind::Endpoints,
        Kind::EndpointSlice,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Ingress,
        Kind::IngressClass,
        Kind::NetworkPolicy,
        Kind::Secret,
        Kind::ConfigMap,
    ];

    /// The `kind:` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Endpoints => "Endpoints",
            Kind::Ingress => "Ingress",
            Kind::IngressClass => "IngressClass",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
        }
    }

    /// The `apiVersion:` svcnet reads for this kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace
            | Kind::Node
            | Kind::Pod
            | Kind::Service
            | Kind::Endpoints
            | Kind::Secret
            | Kind::ConfigMap => "v1",
            Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet => "apps/v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::Ingress | Kind::IngressClass | Kind::NetworkPolicy => "networking.k8s.io/v1",
        }
    }

    /// kubectl's resource name (plural, lower case).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::Deployment => "deployments",
            Kind::ReplicaSet => "replicasets",
            Kind::StatefulSet => "statefulsets",
            Kind::DaemonSet => "daemonsets",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::Endpoints => "endpoints",
            Kind::Ingress => "ingresses",
            Kind::IngressClass => "ingressclasses",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::Secret => "secrets",
            Kind::ConfigMap => "configmaps",
        }
    }

    /// The resource name with its API group, as kubectl prints it before `/NAME`
    /// (`service`, `deployment.apps`, `ingress.networking.k8s.io`).
    pub fn qualified_singular(self) -> String {
        let singular = self.as_str().to_ascii_lowercase();
        match self.api_version().split_once('/') {
            Some((group, _)) => format!("{singular}.{group}"),
            None => singular,
        }
    }

    /// kubectl's short names.
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["ns"],
            Kind::Node => &["no"],
            Kind::Pod => &["po"],
            Kind::Deployment => &["deploy"],
            Kind::ReplicaSet => &["rs"],
            Kind::StatefulSet => &["sts"],
            Kind::DaemonSet => &["ds"],
            Kind::Service => &["svc"],
            Kind::EndpointSlice => &[],
            Kind::Endpoints => &["ep"],
            Kind::Ingress => &["ing"],
            Kind::IngressClass => &[],
            Kind::NetworkPolicy => &["netpol"],
            Kind::Secret => &[],
            Kind::ConfigMap => &["cm"],
        }
    }

    /// True for namespaced kinds.
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::Node | Kind::IngressClass)
    }

    /// Finds a kind from what a user types to kubectl: `svc`, `service`, `services`,
    /// `Service`, `deployments.apps`, `ingress.networking.k8s.io`.
    pub fn from_resource_name(name: &str) -> Option<Kind> {
        let lower = name.to_ascii_lowercase();
        let base = lower.split('.').next().unwrap_or(&lower);
        Kind::ALL.into_iter().find(|k| {
            let singular = k.as_str().to_ascii_lowercase();
            base == singular || base == k.plural() || k.short_names().contains(&base)
        })
    }

    /// Finds a kind from a manifest's `kind:` field.
    pub fn from_kind(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_names_resolve() {
        for (name, kind) in [
            ("svc", Kind::Service),
            ("services", Kind::Service),
            ("Service", Kind::Service),
            ("ep", Kind::Endpoints),
            ("endpointslices", Kind::EndpointSlice),
            ("endpointslice", Kind::EndpointSlice),
            ("ing", Kind::Ingress),
            ("netpol", Kind::NetworkPolicy),
            ("po", Kind::Pod),
            ("no", Kind::Node),
            ("ns", Kind::Namespace),
            ("deploy", Kind::Deployment),
            ("deployments.apps", Kind::Deployment),
            ("sts", Kind::StatefulSet),
            ("ds", Kind::DaemonSet),
            ("ingressclasses", Kind::IngressClass),
            ("cm", Kind::ConfigMap),
        ] {
            assert_eq!(Kind::from_resource_name(name), Some(kind), "{name}");
        }
        assert_eq!(Kind::from_resource_name("certificates"), None);
    }
}
