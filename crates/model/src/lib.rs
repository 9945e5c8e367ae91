//! svcnet's cluster model: Kubernetes manifests in, a validated and derived cluster out.
//!
//! This crate is the boundary between Kubernetes' API types and svcnet. It reads manifests
//! ([`load`]), validates and defaults them as the API server would ([`validate`]), derives
//! what Kubernetes' controllers would create (pods from workloads, addresses, EndpointSlices:
//! [`derive`]), and keeps the result in a [`Store`] that reports what changed. Everything
//! above this crate works on [`Cluster`] and its types, never on k8s-openapi types.
//!
//! It does no I/O besides reading manifest files, and runs no async code.

pub mod cluster;
pub mod derive;
pub mod diag;
pub mod kind;
pub mod lint;
pub mod load;
pub mod names;
pub mod plan;
pub mod render;
pub mod selector;
pub mod store;
pub mod types;
pub mod validate;

pub use cluster::Cluster;
pub use diag::{Diagnostic, Diagnostics, ObjectRef, Severity, Source};
pub use kind::Kind;
pub use plan::AddressPlan;
pub use selector::{LabelSelector, Labels};
pub use store::{ChangeSet, Store};
