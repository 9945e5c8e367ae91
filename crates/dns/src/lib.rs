//! svcnet's cluster DNS: the Kubernetes DNS-Based Service Discovery specification (schema
//! 1.1.0) served from the live cluster state.
//!
//! The crate has a pure core and a thin shell. [`DnsZone::build`] compiles a
//! [`svcnet_model::Cluster`] into an immutable zone (every Service, endpoint, reverse and
//! pod name, with the empty non-terminals between them), and [`DnsZone::answer_into`]
//! answers one query in wire format from it: bytes in, bytes out, no I/O, no allocation
//! with a reused buffer. [`DnsServer`] listens on UDP and TCP, holds the current zone in
//! an `ArcSwap` ([`DnsServer::publish`]) so a change is live for the next query, forwards
//! names outside the owned zones to upstream servers with a bounded cache, and records
//! metrics under `svcnet_dns_`. [`DnsZone::zone_file`] prints the zone in the RFC 1035
//! master file format (`svcnet dns zone`).
//!
//! It does not: parse flags or print for people (the binary does), serve HTTP, transfer
//! zones (AXFR and IXFR are refused), sign (no DNSSEC), or cache cluster names (a
//! Service created or deleted is answered correctly by the next query after the zone is
//! published).
//!
//! # Wire format: `domain`
//!
//! Messages are parsed and built with NLnet Labs' `domain` crate (default features off:
//! no crypto provider, no network code). It parses a message in place (names are
//! borrowed from the query, not copied) and builds into any octets buffer with name
//! compression from a fixed table on the stack, so answering a query costs no heap
//! allocation once the server's buffer has grown; hickory-proto's `Message` owns every
//! name and record, several allocations per query. Being built by the authors of NSD
//! and Unbound, its parser is strict where it matters (pointer loops, label lengths).
//!
//! # Where svcnet differs from CoreDNS, and why
//!
//! | case | CoreDNS (`kubernetes` plugin) | svcnet | why |
//! |---|---|---|---|
//! | ExternalName, upstream lookup of the target fails | drops the CNAME, empty NOERROR | keeps the CNAME | RFC 1034 3.6.2: the alias exists whatever its target does |
//! | ExternalName pointing into the cluster zone | answered through the upstream lookup | chased inside the zone, NXDOMAIN/NODATA of the target reported with the zone's SOA (RFC 6604) | hermetic and consistent |
//! | empty non-terminals (`svc.<zone>`, `<ns>.svc.<zone>`, `_tcp.<svc>...`) | NXDOMAIN for some | NODATA | RFC 8020: NXDOMAIN means nothing exists below |
//! | negative answers | SOA present | SOA present, minimum = TTL, so a deleted or created Service is never hidden longer than a positive answer would be | RFC 2308 |
//! | cluster names | cached by the `cache` plugin (up to 30 s of stale NXDOMAIN) | never cached: every query reads the current zone | a change is live in milliseconds |
//! | dashed-IP endpoint names for IPv6 addresses starting with `::` | `--1` | `0--1` | a label may not start with `-` (RFC 952/1123 hostnames) |
//! | headless SRV port | the endpoint port | the endpoint port (the port the target's address listens on); ClusterIP SRV use the Service port | the target of a headless SRV is the pod, not the virtual IP |
//! | endpoint names of a ClusterIP Service (`<hostname>.<svc>.<ns>.svc`) | answered | answered, with PTRs | clients rely on it (compat) |
//! | `--dns-upstream none` | (no such mode) | authoritative for all of `in-addr.arpa` and `ip6.arpa`, REFUSED for other names | hermetic tests need definite answers |
//! | EDNS | buffer size echoed as asked | capped at 1232 octets (DNS flag day 2020); DO bit echoed; version > 0 gets BADVERS | no fragmented UDP |
//! | wildcard queries (`*.svc...`) | deprecated, still answered | not supported: NXDOMAIN | removed from the specification |

pub mod answer;
mod chase;
pub mod config;
mod name;
pub mod resolv;
pub mod server;
mod upstream;
pub mod zone;

pub use answer::{Action, Outcome, ResponseCode, Transport, qtype_name};
pub use config::{ConfigError, DnsConfig, PodsMode, Upstream};
pub use server::{DnsServer, ServerError};
pub use zone::{DnsZone, ZoneId};
