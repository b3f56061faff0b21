//! Reading and writing a databag through a view's rules (pure, no I/O).
//!
//! A request matches a rule when one is a prefix of the other (placeholders match any
//! segment). A request longer than the rule's continues into the storage path; a shorter one
//! gets the rule's results nested below it, with unbound placeholders expanded over the keys
//! found in the databag. Results of several rules merge, more specific rules last.

use crate::data::{self, Step};
use crate::path::{Bindings, Pattern, Segment, check_segment};
use crate::schema::{Rule, View};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewError {
    NoMatchingRule,
    /// A written value holds data at this path (relative to the view) that no rule takes.
    UnusedData(String),
    /// A map key inside a written value cannot become a key segment.
    InvalidKey(String),
}

/// Reads `request` (empty = the whole view). `Ok(None)` means rules match but hold no data.
pub fn read(
    view: &View,
    data: &Value,
    request: &[String],
    with: &Bindings,
) -> Result<Option<Value>, ViewError> {
    let mut matched = false;
    let mut found: Vec<(Vec<String>, Value)> = Vec::new();
    for rule in view.rules.iter().filter(|r| r.access.readable()) {
        let Some(bindings) = rule.request.match_prefix(request, with) else {
            continue;
        };
        matched = true;
        if request.len() >= rule.request.len() {
            let Some(mut path) = rule.storage.substitute(&bindings).to_key() else {
                continue;
            };
            path.extend_from_slice(&request[rule.request.len()..]);
            if let Some(v) = data::get(data, &path) {
                found.push((Vec::new(), v.clone()));
            }
            continue;
        }
        let rest = Pattern(rule.request.0[request.len()..].to_vec());
        let storage = rule.storage.substitute(&bindings);
        let mut hits = Vec::new();
        expand(data, &storage.0, &bindings, &mut hits);
        for (full, value) in hits {
            if let Some(rel) = rest.substitute(&full).to_key() {
                found.push((rel, value.clone()));
            }
        }
    }
    if !matched {
        return Err(ViewError::NoMatchingRule);
    }
    found.sort_by_key(|(rel, _)| rel.len());
    let mut out = None;
    for (rel, value) in found {
        data::place(&mut out, &rel, value);
    }
    Ok(out)
}

/// Follows a storage pattern through the databag, binding unbound placeholders to each key
/// present at their level.
fn expand<'a>(
    data: &'a Value,
    storage: &[Segment],
    bindings: &Bindings,
    out: &mut Vec<(Bindings, &'a Value)>,
) {
    let Some((first, rest)) = storage.split_first() else {
        out.push((bindings.clone(), data));
        return;
    };
    let Value::Object(map) = data else { return };
    match first {
        Segment::Key(k) => {
            if let Some(child) = map.get(k) {
                expand(child, rest, bindings, out);
            }
        }
        Segment::Placeholder(p) => {
            for (k, child) in map {
                let mut b = bindings.clone();
                b.insert(p.clone(), k.clone());
                expand(child, rest, &b, out);
            }
        }
    }
}

/// One storage operation planned by a write: `None` unsets (with `Any` steps), `Some` sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub path: Vec<Step>,
    pub value: Option<Value>,
}

/// Plans the storage writes for setting `request` to `value` (`None` or null unsets). Every
/// leaf of the value must be consumed by some writable rule.
pub fn plan_write(
    view: &View,
    request: &[String],
    value: Option<&Value>,
) -> Result<Vec<Op>, ViewError> {
    let value = value.filter(|v| !v.is_null());
    let mut matched = false;
    let mut ops = Vec::new();
    let mut consumed: Vec<Vec<String>> = Vec::new();
    for rule in view.rules.iter().filter(|r| r.access.writable()) {
        let Some(bindings) = rule.request.match_prefix(request, &Bindings::new()) else {
            continue;
        };
        matched = true;
        if request.len() >= rule.request.len() {
            let Some(mut path) = rule.storage.substitute(&bindings).to_key() else {
                continue;
            };
            path.extend_from_slice(&request[rule.request.len()..]);
            ops.push(Op {
                path: path.into_iter().map(Step::Key).collect(),
                value: value.cloned(),
            });
            consumed.push(Vec::new());
            continue;
        }
        let rest = &rule.request.0[request.len()..];
        match value {
            None => {
                ops.push(Op {
                    path: steps(&rule.storage.substitute(&bindings)),
                    value: None,
                });
                consumed.push(Vec::new());
            }
            Some(v) => walk_value(
                rule,
                v,
                rest,
                bindings,
                &mut Vec::new(),
                &mut ops,
                &mut consumed,
            )?,
        }
    }
    if !matched {
        return Err(ViewError::NoMatchingRule);
    }
    if let Some(v) = value {
        for leaf in data::leaves(v) {
            if !consumed.iter().any(|c| leaf.starts_with(c)) {
                let full: Vec<String> = request.iter().chain(leaf.iter()).cloned().collect();
                return Err(ViewError::UnusedData(full.join(".")));
            }
        }
    }
    // Broader writes first, so that a parent's replacement does not undo a child's write.
    ops.sort_by_key(|op| op.path.len());
    Ok(ops)
}

fn steps(pattern: &Pattern) -> Vec<Step> {
    pattern
        .0
        .iter()
        .map(|s| match s {
            Segment::Key(k) => Step::Key(k.clone()),
            Segment::Placeholder(_) => Step::Any,
        })
        .collect()
}

/// Descends the written value along the rule's remaining request segments.
fn walk_value(
    rule: &Rule,
    value: &Value,
    rest: &[Segment],
    bindings: Bindings,
    rel: &mut Vec<String>,
    ops: &mut Vec<Op>,
    consumed: &mut Vec<Vec<String>>,
) -> Result<(), ViewError> {
    let Some((first, tail)) = rest.split_first() else {
        let path = steps(&rule.storage.substitute(&bindings));
        let value = if value.is_null() {
            None
        } else {
            Some(value.clone())
        };
        ops.push(Op { path, value });
        consumed.push(rel.clone());
        return Ok(());
    };
    let Value::Object(map) = value else {
        return Ok(());
    };
    match first {
        Segment::Key(k) => {
            if let Some(child) = map.get(k) {
                rel.push(k.clone());
                let r = walk_value(rule, child, tail, bindings, rel, ops, consumed);
                rel.pop();
                r?;
            }
        }
        Segment::Placeholder(p) => {
            for (k, child) in map {
                check_segment(k).map_err(|e| ViewError::InvalidKey(format!("\"{k}\": {e}")))?;
                let mut b = bindings.clone();
                b.insert(p.clone(), k.clone());
                rel.push(k.clone());
                let r = walk_value(rule, child, tail, b, rel, ops, consumed);
                rel.pop();
                r?;
            }
        }
    }
    Ok(())
}

/// Applies planned operations to a databag.
pub fn apply(data: &mut Value, ops: Vec<Op>) {
    for op in ops {
        match op.value {
            Some(v) => {
                let key: Vec<String> = op
                    .path
                    .into_iter()
                    .filter_map(|s| match s {
                        Step::Key(k) => Some(k),
                        Step::Any => None,
                    })
                    .collect();
                data::set(data, &key, v);
            }
            None => data::unset(data, &op.path),
        }
    }
}

/// The request-level changes that turn `old` view data into `new`: changed or added leaves
/// are set, removed ones unset. Unchanged parts (possibly read-only) are left alone.
/// A `null` in `new` unsets like a missing key.
pub fn view_changes(old: &Value, new: &Value) -> Vec<(Vec<String>, Option<Value>)> {
    cairn_config::json::changes(old, new)
        .into_iter()
        .map(|(path, value)| (path, value.filter(|v| !v.is_null()).cloned()))
        .collect()
}

/// True if a change at one of the storage paths `changed` is visible through the view.
pub fn affected(view: &View, changed: &[Vec<String>]) -> bool {
    view.rules
        .iter()
        .filter(|r| r.access.readable())
        .any(|r| changed.iter().any(|c| r.storage.overlaps(c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{self, tests::NETWORK};
    use proptest::prelude::*;
    use serde_json::json;

    fn key(s: &str) -> Vec<String> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split('.').map(str::to_string).collect()
        }
    }

    fn network() -> schema::Schema {
        schema::parse(NETWORK).unwrap()
    }

    fn sample() -> Value {
        json!({
            "device": {"uuid": "u-1", "server-url": "http://x"},
            "interfaces": {
                "eth0": {"config": {"interface-type": "ethernet", "ip-address": "10.0.0.2"}, "stats": {"n-sent": 12, "n-received": 1}},
                "wlan0": {"config": {"interface-type": "wifi"}, "stats": {"n-sent": 3}}
            }
        })
    }

    fn set(view: &View, data: &mut Value, k: &str, v: Option<Value>) -> Result<(), ViewError> {
        let ops = plan_write(view, &key(k), v.as_ref())?;
        apply(data, ops);
        Ok(())
    }

    #[test]
    fn placeholders_expand_on_read() {
        let s = network();
        let v = &s.views["observe-interfaces"];
        let d = sample();
        assert_eq!(
            read(v, &d, &key("packets-sent"), &Bindings::new()),
            Ok(Some(json!({"eth0": 12, "wlan0": 3})))
        );
        assert_eq!(
            read(v, &d, &key("packets-sent.eth0"), &Bindings::new()),
            Ok(Some(json!(12)))
        );
        assert_eq!(
            read(v, &d, &key("packets-received"), &Bindings::new()),
            Ok(Some(json!({"eth0": 1})))
        );
        assert_eq!(
            read(v, &d, &key("packets-sent.lo"), &Bindings::new()),
            Ok(None)
        );
        assert_eq!(
            read(v, &d, &key("nothing"), &Bindings::new()),
            Err(ViewError::NoMatchingRule)
        );
        let whole = read(v, &d, &[], &Bindings::new()).unwrap().unwrap();
        assert_eq!(
            whole,
            json!({"packets-sent": {"eth0": 12, "wlan0": 3}, "packets-received": {"eth0": 1}})
        );
        let mut with = Bindings::new();
        with.insert("name".into(), "wlan0".into());
        assert_eq!(
            read(v, &d, &key("packets-sent"), &with),
            Ok(Some(json!({"wlan0": 3})))
        );
        assert_eq!(
            read(v, &d, &key("packets-sent.eth0"), &with),
            Err(ViewError::NoMatchingRule)
        );
    }

    #[test]
    fn write_only_rules_are_not_read_and_read_only_not_written() {
        let s = network();
        let cd = &s.views["control-device"];
        let d = sample();
        assert_eq!(
            read(cd, &d, &key("id"), &Bindings::new()),
            Err(ViewError::NoMatchingRule)
        );
        assert_eq!(
            read(cd, &d, &[], &Bindings::new()),
            Ok(Some(json!({"server-url": "http://x"})))
        );
        let od = &s.views["observe-device"];
        assert_eq!(
            plan_write(od, &key("id"), Some(&json!("x"))),
            Err(ViewError::NoMatchingRule)
        );
    }

    #[test]
    fn nested_content_and_maps() {
        let s = network();
        let ci = &s.views["control-interfaces"];
        let mut d = sample();
        let config = read(ci, &d, &key("config"), &Bindings::new())
            .unwrap()
            .unwrap();
        assert_eq!(config["eth0"]["ip-address"], json!("10.0.0.2"));
        set(
            ci,
            &mut d,
            "config",
            Some(json!({"eth1": {"interface-type": "ethernet", "ip-address": "1.2.3.4"}})),
        )
        .unwrap();
        assert_eq!(
            d["interfaces"]["eth1"]["config"]["ip-address"],
            json!("1.2.3.4")
        );
        set(
            ci,
            &mut d,
            "config.eth1.interface-type",
            Some(json!("wifi")),
        )
        .unwrap();
        assert_eq!(
            d["interfaces"]["eth1"]["config"]["interface-type"],
            json!("wifi")
        );
        assert_eq!(
            d["interfaces"]["eth1"]["config"]["ip-address"],
            json!("1.2.3.4")
        );
    }

    #[test]
    fn unused_data_is_rejected() {
        let s = network();
        let cd = &s.views["control-device"];
        let tunnel = &s.views["control-tunnel"];
        let mut d = json!({});
        assert_eq!(
            plan_write(cd, &[], Some(&json!({"server-url": "a", "x": {"y": 1}}))),
            Err(ViewError::UnusedData("x.y".into()))
        );
        set(
            tunnel,
            &mut d,
            "",
            Some(json!({"interface": "eth0", "peers": ["1.1.1.1"]})),
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"tunnel": {"interface": "eth0", "peers": ["1.1.1.1"]}})
        );
        let ci = &s.views["control-interfaces"];
        assert_eq!(
            plan_write(ci, &key("config"), Some(&json!(5))),
            Err(ViewError::UnusedData("config".into()))
        );
        assert!(matches!(
            plan_write(ci, &key("config"), Some(&json!({"Bad": {}}))),
            Err(ViewError::InvalidKey(_))
        ));
    }

    #[test]
    fn null_unsets() {
        let s = network();
        let ci = &s.views["control-interfaces"];
        let mut d = sample();
        set(ci, &mut d, "config.eth0.ip-address", None).unwrap();
        assert!(
            d["interfaces"]["eth0"]["config"]
                .get("ip-address")
                .is_none()
        );
        set(ci, &mut d, "config", Some(json!({"wlan0": null}))).unwrap();
        assert!(d["interfaces"]["wlan0"].get("config").is_none());
        set(ci, &mut d, "config", Some(Value::Null)).unwrap();
        assert!(d["interfaces"]["eth0"].get("config").is_none());
        assert_eq!(d["interfaces"]["eth0"]["stats"]["n-sent"], json!(12));
    }

    #[test]
    fn view_changes_apply_only_differences() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}});
        let new = json!({"a": 1, "b": {"c": 5}, "e": true});
        let changes = view_changes(&old, &new);
        assert_eq!(
            changes,
            vec![
                (key("b.c"), Some(json!(5))),
                (key("b.d"), None),
                (key("e"), Some(json!(true)))
            ]
        );
    }

    #[test]
    fn affected_views() {
        let s = network();
        let changed = vec![key("interfaces.eth0.stats.n-sent")];
        assert!(affected(&s.views["observe-interfaces"], &changed));
        assert!(!affected(&s.views["control-device"], &changed));
        assert!(affected(&s.views["control-device"], &[key("device")]));
    }

    fn seg() -> impl Strategy<Value = String> {
        "[a-c][0-9]?"
    }

    proptest! {
        /// Whatever map is written through "config" (valid keys), reading "config" back gives
        /// the same map: the write and read mappings are inverses on the view.
        #[test]
        fn write_then_read_roundtrips(entries in prop::collection::btree_map(seg(), prop::option::of("[a-z]{1,5}"), 1..5)) {
            let s = network();
            let ci = &s.views["control-interfaces"];
            let value: serde_json::Map<String, Value> = entries
                .iter()
                .map(|(k, ip)| {
                    let mut m = serde_json::Map::new();
                    m.insert("interface-type".into(), json!("wifi"));
                    if let Some(ip) = ip { m.insert("ip-address".into(), json!(ip)); }
                    (k.clone(), Value::Object(m))
                })
                .collect();
            let value = Value::Object(value);
            let mut d = json!({});
            set(ci, &mut d, "config", Some(value.clone())).unwrap();
            prop_assert_eq!(read(ci, &d, &key("config"), &Bindings::new()).unwrap(), Some(value.clone()));
            for (k, _) in entries {
                let one = read(ci, &d, &key(&format!("config.{k}")), &Bindings::new()).unwrap();
                prop_assert_eq!(one.as_ref(), value.get(&k));
            }
        }

        /// Reading with a placeholder bound through `with` returns exactly the matching part
        /// of the unbound read.
        #[test]
        fn with_restricts_the_unbound_read(names in prop::collection::btree_set(seg(), 1..5), pick in 0usize..5) {
            let s = network();
            let oi = &s.views["observe-interfaces"];
            let mut ifaces = serde_json::Map::new();
            for (i, n) in names.iter().enumerate() {
                ifaces.insert(n.clone(), json!({"stats": {"n-sent": i}}));
            }
            let d = json!({"interfaces": ifaces});
            let all = read(oi, &d, &key("packets-sent"), &Bindings::new()).unwrap().unwrap();
            let name = names.iter().nth(pick % names.len()).unwrap().clone();
            let mut with = Bindings::new();
            with.insert("name".into(), name.clone());
            let one = read(oi, &d, &key("packets-sent"), &with).unwrap().unwrap();
            prop_assert_eq!(one, json!({ name.clone(): all[&name].clone() }));
        }
    }
}
