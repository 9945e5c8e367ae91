//! `svcnet check`: every load error and lint finding, one per line, then a summary.

use std::process::ExitCode;

use anyhow::{Result, bail};
use svcnet_model::{Cluster, Diagnostic, Diagnostics, Kind, Severity, lint};

use crate::Sources;
use crate::plan_args::PlanArgs;

/// Arguments of `svcnet check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    sources: Sources,
    /// Output format: text or json.
    #[arg(short = 'o', long, default_value = "text", value_name = "FORMAT")]
    output: String,
    /// Hide notices (things svcnet did for you, like creating undeclared namespaces).
    #[arg(short = 'q', long)]
    quiet: bool,
    #[command(flatten)]
    classes: crate::ingress_args::IngressClassArgs,
    #[command(flatten)]
    plan: PlanArgs,
}

/// Runs `svcnet check`. Exit 0: clean or warnings only; 1: findings of error severity;
/// 2: the manifests do not load.
pub fn run(args: CheckArgs) -> Result<ExitCode> {
    if !matches!(args.output.as_str(), "text" | "json") {
        bail!("--output must be text or json, not {:?}", args.output);
    }
    let plan = args.plan.plan()?;
    let (cluster, mut diags) = Cluster::load(&args.sources.files, &plan, None);
    let loaded = cluster.is_some();
    let objects = cluster.as_ref().map_or(0, |c| {
        c.counts().iter().map(|(_, n)| n).sum::<usize>() + c.others.len()
    });
    if let Some(c) = &cluster {
        // The model's lints and the data planes' (policy index, ingress table) read the
        // same cluster and nothing else: one each per core.
        let classes = args.classes.controller();
        let (lints, planes) = std::thread::scope(|s| {
            let planes = s.spawn(|| data_plane_findings(c, &classes));
            (lint::lint(c), planes.join())
        });
        diags.extend(lints);
        diags.extend(planes.unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        diags.sort();
    }
    if args.quiet {
        diags.0.retain(|d| d.severity != Severity::Notice);
    }
    let errors = diags.count(Severity::Error);
    let warnings = diags.count(Severity::Warning);
    let notices = diags.count(Severity::Notice);
    if args.output == "json" {
        let doc = serde_json::json!({
            "loaded": loaded,
            "objects": objects,
            "errors": errors,
            "warnings": warnings,
            "notices": notices,
            "findings": diags.0.iter().map(|d| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                v["text"] = serde_json::Value::from(d.to_string());
                v
            }).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for d in &diags.0 {
            println!("{d}");
        }
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        if loaded {
            println!(
                "{}, {}, {} in {} objects",
                plural(errors, "error"),
                plural(warnings, "warning"),
                plural(notices, "notice"),
                objects
            );
        } else {
            println!(
                "{}, {}: the manifests were not loaded",
                plural(errors, "error"),
                plural(warnings, "warning")
            );
        }
    }
    // Freeing a large cluster takes longer than building parts of it; the process is
    // about to exit, which frees everything at once.
    std::mem::forget(cluster);
    Ok(match (loaded, errors) {
        (false, _) => ExitCode::from(2),
        (true, 0) => ExitCode::SUCCESS,
        (true, _) => ExitCode::from(1),
    })
}

/// What the data planes find beyond the model's lints: the Ingress controller's compile
/// findings (classes, annotations, conflicts) and the NetworkPolicy lints.
fn data_plane_findings(c: &Cluster, ingress: &svcnet_ingress::ControllerConfig) -> Diagnostics {
    let mut d = Diagnostics::default();
    let (_, findings) = svcnet_ingress::compile(c, ingress);
    for f in findings {
        let Some(ing) = c.ingresses.get(&f.ingress) else {
            continue;
        };
        let source = ing.meta.source_of(&f.field);
        let diag = match f.severity {
            svcnet_ingress::Severity::Error => Diagnostic::error("ingress", source, f.message),
            svcnet_ingress::Severity::Warning => Diagnostic::warning("ingress", source, f.message),
            svcnet_ingress::Severity::Notice => Diagnostic::notice("ingress", source, f.message),
        };
        d.push(diag.on(ing.meta.object_ref(Kind::Ingress)).field(f.field));
    }
    for l in svcnet_policy::lints(c) {
        let Some(np) = c.network_policies.get(&l.policy) else {
            continue;
        };
        d.push(
            Diagnostic::warning(l.code, np.meta.source_of(&l.field), l.message)
                .on(np.meta.object_ref(Kind::NetworkPolicy))
                .field(l.field),
        );
    }
    d
}
