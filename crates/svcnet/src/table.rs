//! kubectl-style tables: upper-case headers, columns separated by three spaces, no borders.

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table, presets};

/// Renders rows under headers as kubectl does.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.iter().copied());
    for r in rows {
        t.add_row(r.iter().map(String::as_str));
    }
    let last = headers.len().saturating_sub(1);
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { 3 }));
        col.set_cell_alignment(CellAlignment::Left);
        col.set_constraint(ColumnConstraint::ContentWidth);
    }
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// kubectl's short durations: `45s`, `10m`, `3h`, `5d`, `2y`.
pub fn age(since: Option<jiff::Timestamp>) -> String {
    let Some(since) = since else {
        return "<unknown>".to_string();
    };
    let secs = jiff::Timestamp::now().as_second() - since.as_second();
    if secs < 0 {
        return "<invalid>".to_string();
    }
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s if s < 86400 * 365 * 2 => format!("{}d", s / 86400),
        s => format!("{}y", s / (86400 * 365)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_like_kubectl() {
        let out = render(
            &["NAME", "TYPE", "PORT(S)"],
            &[
                vec!["web".into(), "ClusterIP".into(), "80/TCP".into()],
                vec![
                    "postgres-service".into(),
                    "NodePort".into(),
                    "5432:30001/TCP".into(),
                ],
            ],
        );
        assert_eq!(
            out,
            "NAME               TYPE        PORT(S)\nweb                ClusterIP   80/TCP\npostgres-service   NodePort    5432:30001/TCP\n"
        );
    }
}
