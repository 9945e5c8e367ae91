//! Renderings of a [`Matrix`] (pure: they return text, the binary prints it): the
//! Kubernetes e2e truth table, JSON, Markdown and a self-contained HTML page.

use std::fmt::Write as _;

use serde::Serialize;

use crate::index::PolicyIndex;
use crate::matrix::Matrix;
use crate::verdict::Direction;

/// The e2e truth-table layout: a header row of destination pods (`ns/pod`) after a `-`
/// corner, then one row per source pod; `.` allowed, `X` blocked. Columns are aligned with
/// spaces (the e2e uses tabs).
pub fn text(m: &Matrix) -> String {
    let names: Vec<String> = m.pods.iter().map(ToString::to_string).collect();
    let first = names.iter().map(String::len).max().unwrap_or(1).max(1);
    let mut out = String::new();
    let mut line = format!("{:<first$}", "-");
    for n in &names {
        line.push(' ');
        line.push_str(n);
    }
    out.push_str(line.trim_end());
    out.push('\n');
    for (i, from) in names.iter().enumerate() {
        let mut line = format!("{from:<first$}");
        for (j, to) in names.iter().enumerate() {
            line.push(' ');
            let mark = if m.allowed(i, j) { "." } else { "X" };
            let _ = write!(line, "{mark:<w$}", w = to.len());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A one-line summary: `port 80/TCP: 72 of 81 connections allowed (rows: from, columns: to)`.
pub fn summary(m: &Matrix) -> String {
    format!(
        "port {}/{}: {} of {} connections allowed (rows: from, columns: to; . allowed, X blocked)",
        m.port,
        m.protocol,
        m.allowed_count(),
        m.len() * m.len()
    )
}

#[derive(Serialize)]
struct JsonMatrix {
    port: u16,
    protocol: &'static str,
    pods: Vec<String>,
    allowed: Vec<Vec<bool>>,
}

/// `{"port": 80, "protocol": "TCP", "pods": ["ns/pod", ...], "allowed": [[bool, ...], ...]}`,
/// rows = sources.
pub fn json(m: &Matrix) -> String {
    let doc = JsonMatrix {
        port: m.port,
        protocol: m.protocol.as_str(),
        pods: m.pods.iter().map(ToString::to_string).collect(),
        allowed: m.rows(),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// A Markdown table: rows = sources, columns = destinations, `.` allowed, `X` blocked.
pub fn markdown(m: &Matrix) -> String {
    let mut out = format!("| from \\ to ({}/{}) |", m.port, m.protocol);
    for p in &m.pods {
        let _ = write!(out, " {p} |");
    }
    out.push_str("\n|---|");
    for _ in &m.pods {
        out.push_str(":-:|");
    }
    out.push('\n');
    for (i, from) in m.pods.iter().enumerate() {
        let _ = write!(out, "| **{from}** |");
        for j in 0..m.len() {
            out.push_str(if m.allowed(i, j) { " . |" } else { " X |" });
        }
        out.push('\n');
    }
    out
}

/// Cells whose hover text names the exact rule (one verdict per cell) up to this many pods;
/// above, the hover names the isolating policies only.
const HTML_VERDICT_LIMIT: usize = 150;

/// A self-contained HTML page: a colored grid (green allowed, red blocked), with the
/// policies that isolate each pod on its header and the reason of each cell on hover
/// (`title` attributes).
pub fn html(index: &PolicyIndex, m: &Matrix) -> String {
    let ids: Vec<_> = m.pods.iter().map(|k| index.pod_id(k)).collect();
    let isolation = |i: usize, d: Direction| -> String {
        let Some(id) = ids[i] else {
            return String::new();
        };
        let by = index.isolated_by(id, d);
        if by.is_empty() {
            format!("{}: not isolated", d.as_str())
        } else {
            format!(
                "{}: isolated by {}",
                d.as_str(),
                by.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    };
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(
        out,
        "<title>NetworkPolicy matrix, port {}/{}</title>",
        m.port, m.protocol
    );
    out.push_str(
        "<style>\nbody{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\n\
         table{border-collapse:collapse;font-size:13px}\n\
         th,td{border:1px solid #ccc;padding:3px 6px;text-align:center}\n\
         th{background:#f4f4f4;font-weight:600}\n\
         th.col{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap}\n\
         th.row{text-align:left;white-space:nowrap}\n\
         td.allowed{background:#c8ecc8;color:#185c18}\n\
         td.blocked{background:#f4c2c2;color:#8a1515;font-weight:700}\n\
         td.self{opacity:.55}\n\
         .legend span{display:inline-block;padding:2px 8px;margin-right:8px}\n\
         </style>\n</head>\n<body>\n",
    );
    let _ = writeln!(
        out,
        "<h1>Who can reach whom on port {}/{}</h1>",
        m.port, m.protocol
    );
    let _ = writeln!(
        out,
        "<p class=\"legend\"><span class=\"allowed\" style=\"background:#c8ecc8\">. allowed</span><span style=\"background:#f4c2c2\">X blocked</span>{} of {} connections allowed. Rows: from; columns: to. Hover a cell or a pod for the policies.</p>",
        m.allowed_count(),
        m.len() * m.len()
    );
    out.push_str("<table>\n<tr><th>from \\ to</th>");
    for (j, p) in m.pods.iter().enumerate() {
        let _ = write!(
            out,
            "<th class=\"col\" title=\"{}\">{}</th>",
            escape(&format!("{p}\n{}", isolation(j, Direction::Ingress))),
            escape(&p.to_string())
        );
    }
    out.push_str("</tr>\n");
    let exact = m.len() <= HTML_VERDICT_LIMIT;
    for (i, from) in m.pods.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><th class=\"row\" title=\"{}\">{}</th>",
            escape(&format!("{from}\n{}", isolation(i, Direction::Egress))),
            escape(&from.to_string())
        );
        for (j, to) in m.pods.iter().enumerate() {
            let ok = m.allowed(i, j);
            let title = match (exact, ids[i], ids[j]) {
                (true, Some(a), Some(b)) => {
                    let v = index.verdict(
                        crate::Endpoint::Pod(a),
                        crate::Endpoint::Pod(b),
                        m.port,
                        m.protocol,
                    );
                    format!(
                        "{from} → {to}: {}\negress: {}\ningress: {}",
                        if ok { "allowed" } else { "blocked" },
                        v.egress,
                        v.ingress
                    )
                }
                _ => format!(
                    "{from} → {to}: {}\negress of {from}: {}\ningress of {to}: {}",
                    if ok { "allowed" } else { "blocked" },
                    isolation(i, Direction::Egress),
                    isolation(j, Direction::Ingress)
                ),
            };
            let class = match (ok, i == j) {
                (true, true) => "allowed self",
                (true, false) => "allowed",
                (false, _) => "blocked",
            };
            let _ = write!(
                out,
                "<td class=\"{class}\" title=\"{}\">{}</td>",
                escape(&title),
                if ok { "." } else { "X" }
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n</body>\n</html>\n");
    out
}

/// Escapes text for HTML content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
