//! `svcnet get`: kubectl's `get`, over the cluster the manifests describe.

use std::process::ExitCode;

use anyhow::{Result, bail};
use serde_json::Value;
use svcnet_model::render;
use svcnet_model::selector::format_labels;
use svcnet_model::types::*;
use svcnet_model::{Cluster, Kind, Severity};

use crate::Sources;
use crate::plan_args::PlanArgs;
use crate::table;

/// Arguments of `svcnet get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// Resource types, comma-separated, with kubectl's names (svc, po, ep,
    /// endpointslices, ing, netpol, no, ns, deploy, rs, sts, ds, secrets, cm), or `all`.
    #[arg(value_name = "KIND[,KIND...]")]
    kinds: String,
    /// Object names (only with one kind).
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    #[command(flatten)]
    sources: Sources,
    /// Namespace.
    #[arg(short = 'n', long, value_name = "NS")]
    namespace: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output format: wide, yaml, json or name.
    #[arg(short = 'o', long, value_name = "FORMAT")]
    output: Option<String>,
    /// Show labels as the last column.
    #[arg(long)]
    show_labels: bool,
    /// The Ingress controller's listeners and classes, as given to `svcnet up`: the
    /// ADDRESS and PORTS of Ingresses it serves.
    #[command(flatten)]
    ingress: crate::ingress_args::IngressArgs,
    #[command(flatten)]
    plan: PlanArgs,
}

/// What the Ingress controller would make of the Ingresses (`status.loadBalancer`).
pub(crate) struct IngressView {
    /// Ingresses served.
    served: svcnet_ingress::Served,
    /// The listeners.
    http: Option<std::net::SocketAddr>,
    https: Option<std::net::SocketAddr>,
}

impl IngressView {
    fn new(c: &Cluster, args: &crate::ingress_args::IngressArgs) -> Result<IngressView> {
        let (table, _) = svcnet_ingress::compile(c, &args.controller());
        Ok(IngressView::of(
            table.served().clone(),
            args.http()?,
            args.https()?,
        ))
    }

    /// The view of a controller serving these Ingresses on these listeners.
    pub(crate) fn of(
        served: svcnet_ingress::Served,
        http: Option<std::net::SocketAddr>,
        https: Option<std::net::SocketAddr>,
    ) -> IngressView {
        IngressView {
            served,
            http,
            https,
        }
    }

    /// `status.loadBalancer` of a served Ingress, as a controller publishes it: the
    /// listener's address and ports.
    fn set_status(&self, key: &ObjectKey, v: &mut Value) {
        if !self.served.contains_key(key) {
            return;
        }
        let Some(ip) = self.http.or(self.https).map(|a| a.ip()) else {
            return;
        };
        let ports: Vec<Value> = self
            .http
            .iter()
            .chain(self.https.iter())
            .map(|a| serde_json::json!({"port": a.port(), "protocol": "TCP"}))
            .collect();
        v["status"] = serde_json::json!({
            "loadBalancer": {"ingress": [{"ip": ip.to_string(), "ports": ports}]}
        });
    }

    /// ADDRESS and PORTS of an Ingress: the listener's address for Ingresses it serves,
    /// nothing (and kubectl's nominal ports) for others.
    fn columns(&self, key: &ObjectKey, tls: bool) -> (String, String) {
        let nominal = if tls { "80, 443" } else { "80" }.to_string();
        if !self.served.contains_key(key) {
            return (String::new(), nominal);
        }
        let address = self
            .http
            .or(self.https)
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let mut ports: Vec<String> = self.http.iter().map(|a| a.port().to_string()).collect();
        if tls {
            ports.extend(self.https.iter().map(|a| a.port().to_string()));
        }
        (
            address,
            if ports.is_empty() {
                nominal
            } else {
                ports.join(", ")
            },
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Table { wide: bool },
    Yaml,
    Json,
    Name,
}

/// Runs `svcnet get`.
pub fn run(args: GetArgs) -> Result<ExitCode> {
    let output = match args.output.as_deref() {
        None => Output::Table { wide: false },
        Some("wide") => Output::Table { wide: true },
        Some("yaml") => Output::Yaml,
        Some("json") => Output::Json,
        Some("name") => Output::Name,
        Some(other) => bail!(
            "unable to match a printer suitable for the output format {other:?}, allowed formats are: json, name, wide, yaml"
        ),
    };
    let kinds = parse_kinds(&args.kinds)?;
    if !args.names.is_empty() && kinds.len() > 1 {
        bail!("you may only specify a single resource type when naming objects");
    }
    let plan = args.plan.plan()?;
    let (cluster, diags) = Cluster::load(&args.sources.files, &plan, None);
    for d in diags.0.iter().filter(|d| d.severity != Severity::Notice) {
        if d.is_error() {
            eprintln!("{d}");
        } else {
            eprintln!("Warning: {d}");
        }
    }
    let Some(cluster) = cluster else {
        eprintln!(
            "error: {} error(s) in the manifests; nothing was loaded",
            diags.count(Severity::Error)
        );
        return Ok(ExitCode::from(2));
    };
    let ns_filter: Option<String> = if args.all_namespaces {
        None
    } else {
        Some(
            args.namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
        )
    };

    let ingress = if kinds.contains(&Kind::Ingress) {
        Some(IngressView::new(&cluster, &args.ingress)?)
    } else {
        None
    };
    let mut sections: Vec<(Kind, Vec<Item>)> = Vec::new();
    let mut missing = Vec::new();
    for kind in &kinds {
        let mut items = items(&cluster, *kind, ns_filter.as_deref());
        if !args.names.is_empty() {
            for name in &args.names {
                if !items.iter().any(|i| i.key.name == *name) {
                    missing.push(format!(
                        "Error from server (NotFound): {} \"{name}\" not found",
                        kind.qualified_singular().replacen(
                            kind.as_str().to_ascii_lowercase().as_str(),
                            kind.plural(),
                            1
                        )
                    ));
                }
            }
            items.retain(|i| args.names.contains(&i.key.name));
        }
        sections.push((*kind, items));
    }

    let multi = kinds.len() > 1;
    let mut out = String::new();
    match output {
        Output::Table { wide } => {
            let mut first = true;
            for (kind, items) in &sections {
                if items.is_empty() {
                    continue;
                }
                if !first {
                    out.push('\n');
                }
                first = false;
                out.push_str(&table_for(
                    &cluster,
                    *kind,
                    items,
                    wide,
                    ns_filter.is_none() && kind.namespaced(),
                    multi,
                    args.show_labels,
                    ingress.as_ref(),
                ));
            }
            if first && missing.is_empty() {
                match &ns_filter {
                    Some(ns) if kinds.iter().all(|k| k.namespaced()) => {
                        eprintln!("No resources found in {ns} namespace.")
                    }
                    _ => eprintln!("No resources found"),
                }
            }
        }
        Output::Name => {
            for (kind, items) in &sections {
                for i in items {
                    out.push_str(&format!("{}/{}\n", kind.qualified_singular(), i.key.name));
                }
            }
        }
        Output::Yaml | Output::Json => {
            let values: Vec<Value> = sections
                .iter()
                .flat_map(|(kind, items)| {
                    items
                        .iter()
                        .filter_map(|i| {
                            let mut v = render::object(&cluster, *kind, &i.key)?;
                            if let (Kind::Ingress, Some(view)) = (kind, &ingress) {
                                view.set_status(&i.key, &mut v);
                            }
                            Some(v)
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            let single = !args.names.is_empty() && args.names.len() == 1 && values.len() == 1;
            let doc = if single {
                values.into_iter().next().unwrap_or(Value::Null)
            } else {
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": values,
                    "metadata": {"resourceVersion": ""},
                })
            };
            if output == Output::Json {
                out = serde_json::to_string_pretty(&doc)?;
                out.push('\n');
            } else {
                out = serde_saphyr::to_string(&doc)?;
            }
        }
    }
    print!("{out}");
    // The process is about to exit, which frees everything at once.
    std::mem::forget(cluster);
    for m in &missing {
        eprintln!("{m}");
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn parse_kinds(s: &str) -> Result<Vec<Kind>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "all" {
            // kubectl's `all`: the workload-facing kinds.
            out.extend([
                Kind::Pod,
                Kind::Service,
                Kind::DaemonSet,
                Kind::Deployment,
                Kind::ReplicaSet,
                Kind::StatefulSet,
            ]);
            continue;
        }
        match Kind::from_resource_name(part) {
            Some(k) => {
                if !out.contains(&k) {
                    out.push(k);
                }
            }
            None => bail!(
                "the server doesn't have a resource type {part:?} (svcnet knows: {})",
                Kind::ALL.map(|k| k.plural()).join(", ")
            ),
        }
    }
    if out.is_empty() {
        bail!("you must specify the type of resource to get");
    }
    Ok(out)
}

/// One object to list.
struct Item {
    key: ObjectKey,
    created: Option<jiff::Timestamp>,
    labels: svcnet_model::Labels,
}

fn items(c: &Cluster, kind: Kind, ns: Option<&str>) -> Vec<Item> {
    let keep = |m: &Meta| !kind.namespaced() || ns.is_none_or(|n| m.namespace == n);
    let item = |m: &Meta| Item {
        key: ObjectKey::new(m.namespace.clone(), m.name.clone()),
        created: m.creation_timestamp,
        labels: (*m.labels).clone(),
    };
    let metas: Vec<&Meta> = match kind {
        Kind::Namespace => c.namespaces.values().map(|o| &o.meta).collect(),
        Kind::Node => c.nodes.values().map(|o| &o.meta).collect(),
        Kind::Pod => c.pods.values().map(|o| &o.meta).collect(),
        Kind::Service | Kind::Endpoints => c
            .services
            .values()
            .filter(|s| kind == Kind::Service || s.type_ != ServiceType::ExternalName)
            .map(|o| &o.meta)
            .collect(),
        Kind::EndpointSlice => c.endpoint_slices.values().map(|o| &o.meta).collect(),
        Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet => c
            .workloads
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, w)| &w.meta)
            .collect(),
        Kind::Ingress => c.ingresses.values().map(|o| &o.meta).collect(),
        Kind::IngressClass => c.ingress_classes.values().map(|o| &o.meta).collect(),
        Kind::NetworkPolicy => c.network_policies.values().map(|o| &o.meta).collect(),
        Kind::Secret => c.secrets.values().map(|o| &o.meta).collect(),
        Kind::ConfigMap => c.config_maps.values().map(|o| &o.meta).collect(),
    };
    metas.into_iter().filter(|m| keep(m)).map(item).collect()
}

/// A kubectl-style table of one kind, for other commands (`up` prints what it started).
pub(crate) fn table(c: &Cluster, kind: Kind, namespace: Option<&str>, wide: bool) -> String {
    table_with(c, kind, namespace, wide, None)
}

/// [`table`], with what the Ingress controller makes of Ingresses (ADDRESS, PORTS).
pub(crate) fn table_with(
    c: &Cluster,
    kind: Kind,
    namespace: Option<&str>,
    wide: bool,
    ingress: Option<&IngressView>,
) -> String {
    let items = items(c, kind, namespace);
    if items.is_empty() {
        return String::new();
    }
    table_for(
        c,
        kind,
        &items,
        wide,
        namespace.is_none() && kind.namespaced(),
        false,
        false,
        ingress,
    )
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

/// kubectl shows at most three endpoints, then "+ N more...".
fn first_three(list: Vec<String>) -> String {
    if list.is_empty() {
        return "<none>".to_string();
    }
    let n = list.len();
    let mut s = list.into_iter().take(3).collect::<Vec<_>>().join(",");
    if n > 3 {
        s.push_str(&format!(" + {} more...", n - 3));
    }
    s
}

fn service_ports(s: &Service) -> String {
    none_if_empty(
        s.ports
            .iter()
            .map(|p| match p.node_port {
                Some(np) => format!("{}:{np}/{}", p.port, p.protocol),
                None => format!("{}/{}", p.port, p.protocol),
            })
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn external_ip(s: &Service) -> String {
    let mut ips: Vec<String> = Vec::new();
    match s.type_ {
        ServiceType::ExternalName => return s.external_name.clone().unwrap_or_default(),
        ServiceType::LoadBalancer => {
            ips.extend(s.load_balancer_ips.iter().map(ToString::to_string));
            ips.extend(s.external_ips.iter().map(ToString::to_string));
            if ips.is_empty() {
                return "<pending>".into();
            }
        }
        _ => ips.extend(s.external_ips.iter().map(ToString::to_string)),
    }
    none_if_empty(ips.join(","))
}

fn containers_images(pod: &PodSpecInfo) -> (String, String) {
    (
        pod.containers
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
            .join(","),
        pod.containers
            .iter()
            .map(|c| c.image.clone())
            .collect::<Vec<_>>()
            .join(","),
    )
}

#[allow(clippy::too_many_arguments)]
fn table_for(
    c: &Cluster,
    kind: Kind,
    items: &[Item],
    wide: bool,
    with_namespace: bool,
    prefix_kind: bool,
    show_labels: bool,
    ingress: Option<&IngressView>,
) -> String {
    let mut headers: Vec<&str> = Vec::new();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for item in items {
        let k = &item.key;
        let name = if prefix_kind {
            format!("{}/{}", kind.qualified_singular(), k.name)
        } else {
            k.name.clone()
        };
        let age = table::age(item.created);
        let (h, mut row): (Vec<&str>, Vec<String>) = match kind {
            Kind::Namespace => {
                let n = &c.namespaces[&k.name];
                let status = if n.meta.terminating {
                    "Terminating"
                } else {
                    "Active"
                };
                (
                    vec!["NAME", "STATUS", "AGE"],
                    vec![name, status.into(), age],
                )
            }
            Kind::Node => {
                let n = &c.nodes[&k.name];
                let status = if n.schedulable {
                    "Ready"
                } else {
                    "Ready,SchedulingDisabled"
                };
                let roles = n
                    .meta
                    .labels
                    .keys()
                    .filter_map(|l| l.strip_prefix("node-role.kubernetes.io/"))
                    .collect::<Vec<_>>()
                    .join(",");
                let version = format!("svcnet-{}", env!("CARGO_PKG_VERSION"));
                let mut row = vec![name, status.into(), none_if_empty(roles), age, version];
                let mut h = vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
                if wide {
                    h.extend([
                        "INTERNAL-IP",
                        "EXTERNAL-IP",
                        "OS-IMAGE",
                        "KERNEL-VERSION",
                        "CONTAINER-RUNTIME",
                    ]);
                    row.extend([
                        n.internal_ip.to_string(),
                        "<none>".into(),
                        "svcnet loopback node".into(),
                        "<none>".into(),
                        "svcnet://loopback".into(),
                    ]);
                }
                (h, row)
            }
            Kind::Pod => {
                let p = &c.pods[k];
                let total = p.containers.len();
                let ready = if p.ready { total } else { 0 };
                let status = if p.meta.terminating {
                    "Terminating".to_string()
                } else {
                    p.phase.as_str().to_string()
                };
                let mut h = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
                let mut row = vec![name, format!("{ready}/{total}"), status, "0".into(), age];
                if wide {
                    h.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
                    row.extend([
                        p.ips.first().map_or("<none>".into(), ToString::to_string),
                        none_if_empty(p.node_name.clone()),
                        "<none>".into(),
                        "<none>".into(),
                    ]);
                }
                (h, row)
            }
            Kind::Service => {
                let s = &c.services[k];
                let cluster_ip = match &s.cluster_ips {
                    ClusterIps::Headless => "None".to_string(),
                    ClusterIps::Ips(ips) => {
                        ips.first().map_or("<none>".into(), ToString::to_string)
                    }
                };
                let mut h = vec![
                    "NAME",
                    "TYPE",
                    "CLUSTER-IP",
                    "EXTERNAL-IP",
                    "PORT(S)",
                    "AGE",
                ];
                let mut row = vec![
                    name,
                    s.type_.as_str().into(),
                    cluster_ip,
                    external_ip(s),
                    service_ports(s),
                    age,
                ];
                if wide {
                    h.push("SELECTOR");
                    row.push(s.selector.as_ref().map_or("<none>".into(), format_labels));
                }
                (h, row)
            }
            Kind::Endpoints => {
                let eps: Vec<String> = c
                    .slices_of(k)
                    .flat_map(|s| {
                        s.endpoints
                            .iter()
                            .filter(|e| e.ready)
                            .flat_map(|e| e.addresses.clone())
                            .flat_map(move |a| {
                                if s.ports.is_empty() {
                                    vec![a]
                                } else {
                                    s.ports
                                        .iter()
                                        .map(|p| match p.port {
                                            Some(n) if a.contains(':') => format!("[{a}]:{n}"),
                                            Some(n) => format!("{a}:{n}"),
                                            None => a.clone(),
                                        })
                                        .collect()
                                }
                            })
                    })
                    .collect();
                (
                    vec!["NAME", "ENDPOINTS", "AGE"],
                    vec![name, first_three(eps), age],
                )
            }
            Kind::EndpointSlice => {
                let s = &c.endpoint_slices[k];
                let ports = s
                    .ports
                    .iter()
                    .filter_map(|p| p.port.map(|n| n.to_string()))
                    .collect::<Vec<_>>()
                    .join(",");
                let eps = s
                    .endpoints
                    .iter()
                    .flat_map(|e| e.addresses.clone())
                    .collect();
                (
                    vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
                    vec![
                        name,
                        s.address_type.as_str().into(),
                        if ports.is_empty() {
                            "<unset>".into()
                        } else {
                            ports
                        },
                        first_three(eps),
                        age,
                    ],
                )
            }
            Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet => {
                let w = &c.workloads[&(kind, k.clone())];
                let (ready, total) = render::workload_counts(c, w);
                let (containers, images) = containers_images(&w.pod_spec);
                let selector = w.selector.to_string();
                let (mut h, mut row) = match kind {
                    Kind::Deployment => (
                        vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
                        vec![
                            name,
                            format!("{ready}/{}", w.replicas),
                            total.to_string(),
                            ready.to_string(),
                            age,
                        ],
                    ),
                    Kind::ReplicaSet => (
                        vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
                        vec![
                            name,
                            w.replicas.to_string(),
                            total.to_string(),
                            ready.to_string(),
                            age,
                        ],
                    ),
                    Kind::StatefulSet => (
                        vec!["NAME", "READY", "AGE"],
                        vec![name, format!("{ready}/{}", w.replicas), age],
                    ),
                    _ => {
                        let node_selector = w
                            .template
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_selector.clone())
                            .map_or("<none>".into(), |m| format_labels(&m));
                        (
                            vec![
                                "NAME",
                                "DESIRED",
                                "CURRENT",
                                "READY",
                                "UP-TO-DATE",
                                "AVAILABLE",
                                "NODE SELECTOR",
                                "AGE",
                            ],
                            vec![
                                name,
                                total.to_string(),
                                total.to_string(),
                                ready.to_string(),
                                total.to_string(),
                                ready.to_string(),
                                node_selector,
                                age,
                            ],
                        )
                    }
                };
                if wide {
                    h.extend(["CONTAINERS", "IMAGES"]);
                    row.extend([containers, images]);
                    if kind != Kind::StatefulSet {
                        h.push("SELECTOR");
                        row.push(selector);
                    }
                }
                (h, row)
            }
            Kind::Ingress => {
                let i = &c.ingresses[k];
                let mut hosts: Vec<String> = Vec::new();
                for r in &i.rules {
                    let h = r.host.clone().unwrap_or_else(|| "*".into());
                    if !hosts.contains(&h) {
                        hosts.push(h);
                    }
                }
                let (address, ports) = match ingress {
                    Some(v) => v.columns(k, !i.tls.is_empty()),
                    None => (
                        String::new(),
                        if i.tls.is_empty() { "80" } else { "80, 443" }.to_string(),
                    ),
                };
                (
                    vec!["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
                    vec![
                        name,
                        i.class_name.clone().unwrap_or_else(|| "<none>".into()),
                        if hosts.is_empty() {
                            "*".into()
                        } else {
                            hosts.join(",")
                        },
                        address,
                        ports,
                        age,
                    ],
                )
            }
            Kind::IngressClass => {
                let ic = &c.ingress_classes[&k.name];
                let params = ic
                    .raw
                    .spec
                    .as_ref()
                    .and_then(|s| s.parameters.as_ref())
                    .map_or("<none>".into(), |p| format!("{}/{}", p.kind, p.name));
                (
                    vec!["NAME", "CONTROLLER", "PARAMETERS", "AGE"],
                    vec![name, ic.controller.clone(), params, age],
                )
            }
            Kind::NetworkPolicy => {
                let p = &c.network_policies[k];
                (
                    vec!["NAME", "POD-SELECTOR", "AGE"],
                    vec![name, p.pod_selector.to_string(), age],
                )
            }
            Kind::Secret => {
                let s = &c.secrets[k];
                (
                    vec!["NAME", "TYPE", "DATA", "AGE"],
                    vec![name, s.type_.clone(), s.data.len().to_string(), age],
                )
            }
            Kind::ConfigMap => {
                let m = &c.config_maps[k];
                (
                    vec!["NAME", "DATA", "AGE"],
                    vec![name, (m.data.len() + m.binary_keys).to_string(), age],
                )
            }
        };
        let mut h = h;
        if with_namespace {
            h.insert(0, "NAMESPACE");
            row.insert(0, k.namespace.clone());
        }
        if show_labels {
            h.push("LABELS");
            row.push(format_labels(&item.labels));
        }
        headers = h;
        rows.push(row);
    }
    table::render(&headers, &rows)
}
