//! svcnet's NetworkPolicy engine: compile a [`svcnet_model::Cluster`]'s NetworkPolicies into
//! an immutable [`PolicyIndex`] that answers "may this connection happen, and why".
//!
//! The same index serves enforcement (the allocation-free [`PolicyIndex::allows`] on
//! addresses), people ([`PolicyIndex::verdict`] with the policy, rule and peer that allowed a
//! connection, or the nearest miss when nothing did), the reachability [`Matrix`] (with its
//! text, JSON, Markdown and HTML renderings in [`render`]) and the [`lints`] of
//! `svcnet check`. It does no I/O, prints nothing, and keeps no state besides the index.
//!
//! # Semantics
//!
//! The networking.k8s.io/v1 API reference is the spec:
//!
//! - A pod is isolated for ingress (egress) when some policy of its namespace selects it and
//!   has `Ingress` (`Egress`) in its `policyTypes` (defaulted by the model as the API server
//!   does). What an isolated pod may do is the union of the rules of every policy selecting it
//!   in that direction; a policy with no rules in that direction allows nothing.
//! - A connection needs egress allowed at its source and ingress allowed at its destination.
//!   Replies of an allowed connection are allowed (the index answers for connections, not
//!   packets). A pod may always reach itself.
//! - Peers of one rule are OR-ed; `namespaceSelector` and `podSelector` in one peer are AND-ed.
//!   A rule with no peers (`from`/`to` missing or empty) admits every peer, addresses outside
//!   the cluster included; a rule list that is empty admits nothing. Without a
//!   `namespaceSelector`, a `podSelector` selects pods of the policy's own namespace.
//! - Ports: by number, by `endPort` range, or by name. A name resolves against the container
//!   ports of the destination pod, per pod, with the rule port's protocol; toward an address
//!   that is not a pod, a named port matches nothing. A rule with no ports admits every port
//!   of every protocol; a rule port without `port` admits every port of its protocol.
//! - `ipBlock` matches the peer's address, pod IPs included (the e2e suite relies on it):
//!   `cidr` contains the address and no `except` entry does. For a pod given by identity
//!   (the matrix, [`Endpoint::Pod`]) the address is its first (primary family) IP.
//! - Namespace labels are the manifests' plus `kubernetes.io/metadata.name`, which the
//!   model sets on every namespace as the API server does.
//!
//! # Node traffic, host-network pods and pods without addresses
//!
//! As Kubernetes does for traffic from a pod's node, connections with a node or host address
//! at either end are always allowed, in both directions: `127.0.0.1`, `::1`, every Node's
//! InternalIP and every pod's host IP. Host-network pods use their node's address, so they
//! are node traffic too: policies never select them and never restrict connections to or from
//! them (Kubernetes leaves host-network pods out of NetworkPolicy). A pod without an IP
//! (not scheduled, finished) cannot be addressed, so [`PolicyIndex::allows`] never sees it;
//! by identity (matrix, verdict) it is evaluated like any pod, except that no `ipBlock`
//! matches it. Addresses that are neither pod nor node addresses (Service VIPs included:
//! callers evaluate the pod behind a Service, after DNAT) are external: only `ipBlock` peers
//! and rules without peers match them.

mod index;
mod lint;
mod matrix;
mod podset;
pub mod render;
mod verdict;

pub use index::{Endpoint, PodId, PolicyIndex};
pub use lint::{PolicyLint, lints};
pub use matrix::Matrix;
pub use verdict::{Allow, Deny, Direction, DirectionVerdict, Verdict};
