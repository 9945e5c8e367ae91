//! Label selectors: `matchLabels` and `matchExpressions` (In, NotIn, Exists, DoesNotExist).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use crate::names;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requirement {
    /// `key in (values)`; `matchLabels` entries are `In` with one value.
    In(String, Vec<String>),
    /// `key notin (values)`: true also when the key is absent.
    NotIn(String, Vec<String>),
    /// `key` present, any value.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

impl Requirement {
    /// The label key this requirement is about.
    pub fn key(&self) -> &str {
        match self {
            Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::DoesNotExist(k) => k,
        }
    }

    /// True when `labels` satisfy this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::In(k, vs) if vs.len() == 1 => write!(f, "{k}={}", vs[0]),
            Requirement::In(k, vs) => write!(f, "{k} in ({})", vs.join(",")),
            Requirement::NotIn(k, vs) => write!(f, "{k} notin ({})", vs.join(",")),
            Requirement::Exists(k) => write!(f, "{k}"),
            Requirement::DoesNotExist(k) => write!(f, "!{k}"),
        }
    }
}

/// A validated label selector. Every requirement must hold (AND); an empty selector
/// selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSelector {
    /// The requirements, `matchLabels` first (sorted by key), then `matchExpressions` in
    /// the order written.
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// A selector from `matchLabels`-style equality pairs (a Service's selector).
    pub fn from_map(map: &Labels) -> Self {
        LabelSelector {
            requirements: map
                .iter()
                .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
                .collect(),
        }
    }

    /// Validates a Kubernetes selector. Errors are `(field, message)`, with fields relative
    /// to the selector (`matchExpressions[0].values`).
    pub fn from_k8s(sel: &meta::LabelSelector) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            if let Err(e) = names::qualified_name(k) {
                errors.push((
                    format!("matchLabels[{k}]"),
                    format!("invalid label key {e}"),
                ));
            }
            if let Err(e) = names::label_value(v) {
                errors.push((
                    format!("matchLabels[{k}]"),
                    format!("invalid label value {e}"),
                ));
            }
            requirements.push(Requirement::In(k.clone(), vec![v.clone()]));
        }
        for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
            let field = format!("matchExpressions[{i}]");
            if let Err(e) = names::qualified_name(&expr.key) {
                errors.push((format!("{field}.key"), format!("invalid label key {e}")));
            }
            let values = expr.values.clone().unwrap_or_default();
            for v in &values {
                if let Err(e) = names::label_value(v) {
                    errors.push((
                        format!("{field}.values"),
                        format!("invalid label value {e}"),
                    ));
                }
            }
            let key = expr.key.clone();
            let req = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    errors.push((
                        format!("{field}.values"),
                        format!("must be specified when `operator` is '{}'", expr.operator),
                    ));
                    continue;
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    errors.push((
                        format!("{field}.values"),
                        format!(
                            "may not be specified when `operator` is '{}'",
                            expr.operator
                        ),
                    ));
                    continue;
                }
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    errors.push((
                        format!("{field}.operator"),
                        format!(
                            "not a valid selector operator: {other:?} (supported: In, NotIn, Exists, DoesNotExist)"
                        ),
                    ));
                    continue;
                }
            };
            requirements.push(req);
        }
        if errors.is_empty() {
            Ok(LabelSelector { requirements })
        } else {
            Err(errors)
        }
    }

    /// True when the selector has no requirement, and so selects every object.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// True when `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The first requirement that `labels` fail, for "why not" explanations.
    pub fn first_mismatch(&self, labels: &Labels) -> Option<&Requirement> {
        self.requirements.iter().find(|r| !r.matches(labels))
    }

    /// The selector as a Kubernetes object.
    pub fn to_k8s(&self) -> meta::LabelSelector {
        let mut match_labels = BTreeMap::new();
        let mut exprs = Vec::new();
        for r in &self.requirements {
            match r {
                Requirement::In(k, vs) if vs.len() == 1 && !match_labels.contains_key(k) => {
                    match_labels.insert(k.clone(), vs[0].clone());
                }
                other => exprs.push(meta::LabelSelectorRequirement {
                    key: other.key().to_string(),
                    operator: match other {
                        Requirement::In(..) => "In",
                        Requirement::NotIn(..) => "NotIn",
                        Requirement::Exists(_) => "Exists",
                        Requirement::DoesNotExist(_) => "DoesNotExist",
                    }
                    .to_string(),
                    values: match other {
                        Requirement::In(_, vs) | Requirement::NotIn(_, vs) => Some(vs.clone()),
                        _ => None,
                    },
                }),
            }
        }
        meta::LabelSelector {
            match_labels: (!match_labels.is_empty()).then_some(match_labels),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        }
    }
}

impl fmt::Display for LabelSelector {
    /// kubectl's selector syntax: `app=web,tier in (a,b),!legacy`; `<none>` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("<none>");
        }
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for LabelSelector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Formats labels as kubectl does (`a=b,c=d`, `<none>` when empty).
pub fn format_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return "<none>".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> meta::LabelSelectorRequirement {
        meta::LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn operators() {
        let sel = LabelSelector::from_k8s(&meta::LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["a", "b"]),
                expr("env", "NotIn", &["dev"]),
                expr("team", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        })
        .unwrap();
        assert_eq!(
            sel.to_string(),
            "app=web,tier in (a,b),env notin (dev),team,!legacy"
        );
        let ok = labels(&[("app", "web"), ("tier", "b"), ("team", "x")]);
        assert!(sel.matches(&ok));
        let mut bad = ok.clone();
        bad.insert("env".into(), "dev".into());
        assert!(!sel.matches(&bad));
        assert_eq!(
            sel.first_mismatch(&bad).map(|r| r.to_string()).as_deref(),
            Some("env notin (dev)")
        );
        let mut legacy = ok.clone();
        legacy.insert("legacy".into(), "".into());
        assert!(!sel.matches(&legacy));
    }

    #[test]
    fn invalid_selectors_are_rejected_with_fields() {
        let errs = LabelSelector::from_k8s(&meta::LabelSelector {
            match_labels: Some(labels(&[("bad key!", "v")])),
            match_expressions: Some(vec![
                expr("a", "In", &[]),
                expr("b", "Exists", &["x"]),
                expr("c", "Equals", &["x"]),
            ]),
        })
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "matchLabels[bad key!]",
                "matchExpressions[0].values",
                "matchExpressions[1].values",
                "matchExpressions[2].operator"
            ]
        );
    }

    fn arb_labels() -> impl Strategy<Value = Labels> {
        proptest::collection::btree_map("[a-d]", "[x-z]{0,1}", 0..4)
    }

    fn arb_req() -> impl Strategy<Value = Requirement> {
        let vals = proptest::collection::vec("[x-z]{0,1}", 1..3);
        prop_oneof![
            ("[a-d]", vals.clone()).prop_map(|(k, v)| Requirement::In(k, v)),
            ("[a-d]", vals).prop_map(|(k, v)| Requirement::NotIn(k, v)),
            "[a-d]".prop_map(Requirement::Exists),
            "[a-d]".prop_map(Requirement::DoesNotExist),
        ]
    }

    proptest! {
        #[test]
        fn empty_selector_selects_everything(l in arb_labels()) {
            prop_assert!(LabelSelector::default().matches(&l));
        }

        #[test]
        fn selector_is_the_and_of_its_requirements(
            reqs in proptest::collection::vec(arb_req(), 0..5),
            l in arb_labels(),
        ) {
            let sel = LabelSelector { requirements: reqs.clone() };
            prop_assert_eq!(sel.matches(&l), reqs.iter().all(|r| r.matches(&l)));
            prop_assert_eq!(sel.matches(&l), sel.first_mismatch(&l).is_none());
        }

        #[test]
        fn in_and_notin_are_complements_when_key_present(
            k in "[a-d]", vs in proptest::collection::vec("[x-z]{0,1}", 1..3), l in arb_labels()
        ) {
            let is_in = Requirement::In(k.clone(), vs.clone()).matches(&l);
            let not_in = Requirement::NotIn(k.clone(), vs).matches(&l);
            if l.contains_key(&k) {
                prop_assert_ne!(is_in, not_in);
            } else {
                prop_assert!(!is_in && not_in);
            }
        }

        #[test]
        fn exists_and_does_not_exist_are_complements(k in "[a-d]", l in arb_labels()) {
            prop_assert_ne!(
                Requirement::Exists(k.clone()).matches(&l),
                Requirement::DoesNotExist(k).matches(&l)
            );
        }

        #[test]
        fn round_trips_through_k8s(reqs in proptest::collection::vec(arb_req(), 0..5), l in arb_labels()) {
            let sel = LabelSelector { requirements: reqs };
            let back = LabelSelector::from_k8s(&sel.to_k8s()).unwrap();
            prop_assert_eq!(sel.matches(&l), back.matches(&l));
        }

        #[test]
        fn map_selector_matches_supersets(sel in arb_labels(), extra in arb_labels()) {
            let s = LabelSelector::from_map(&sel);
            let mut l = extra;
            l.extend(sel.clone());
            prop_assert!(s.matches(&l));
        }
    }
}
