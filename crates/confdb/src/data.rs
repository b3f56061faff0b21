//! Operations on a databag (a JSON tree): read, write and unset at a path, deep merge of read
//! results, and the diff between two revisions (pure, no I/O).

use cairn_config::json::merge;
use serde_json::{Map, Value};

/// One step of an unset path; `Any` comes from a placeholder left unbound by the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Any,
}

pub fn get<'a>(data: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(data, |v, k| v.as_object()?.get(k))
}

/// Writes `value` at `path`, creating intermediate maps (and replacing non-map values on the
/// way: the result is validated against the schema afterwards). Nulls inside `value` mean
/// "absent" and are dropped.
pub fn set(data: &mut Value, path: &[String], value: Value) {
    let value = strip_nulls(value);
    let Some((last, parents)) = path.split_last() else {
        *data = value;
        return;
    };
    let mut cur = data;
    for k in parents {
        cur = ensure_object(cur)
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    ensure_object(cur).insert(last.clone(), value);
}

fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// Removes nulls from maps (recursively); nulls in arrays are data and stay.
pub fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Removes every value at a path matching `steps`, then drops maps left empty by the removal,
/// so that unsetting the last field of an optional map does not leave an empty map behind.
pub fn unset(data: &mut Value, steps: &[Step]) {
    let Some((first, rest)) = steps.split_first() else {
        *data = Value::Object(Map::new());
        return;
    };
    let Value::Object(map) = data else { return };
    let keys: Vec<String> = match first {
        Step::Key(k) => vec![k.clone()],
        Step::Any => map.keys().cloned().collect(),
    };
    for k in keys {
        if rest.is_empty() {
            map.remove(&k);
            continue;
        }
        if let Some(child) = map.get_mut(&k) {
            let was_nonempty_map = child.as_object().is_some_and(|m| !m.is_empty());
            unset(child, rest);
            if was_nonempty_map && child.as_object().is_some_and(Map::is_empty) {
                map.remove(&k);
            }
        }
    }
}

/// Puts `value` at `path` below `root` (creating maps), merging with what is there (read
/// results of more specific rules are placed last and win).
pub fn place(root: &mut Option<Value>, path: &[String], value: Value) {
    let mut wrapped = value;
    for k in path.iter().rev() {
        let mut m = Map::new();
        m.insert(k.clone(), wrapped);
        wrapped = Value::Object(m);
    }
    match root {
        Some(r) => merge(r, wrapped),
        None => *root = Some(wrapped),
    }
}

/// Paths of leaves (scalars, arrays, empty maps) relative to `value`.
pub fn leaves(value: &Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    collect_leaves(value, &mut Vec::new(), &mut out);
    out
}

fn collect_leaves(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                path.push(k.clone());
                collect_leaves(v, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

/// The smallest set of dotted paths where `old` and `new` differ.
pub fn diff(old: &Value, new: &Value) -> Vec<String> {
    cairn_config::json::changes(old, new)
        .into_iter()
        .map(|(path, _)| path.join("."))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn set_get_unset() {
        let mut d = json!({});
        set(&mut d, &p("a.b.c"), json!(1));
        set(&mut d, &p("a.x"), json!({"y": null, "z": 2}));
        assert_eq!(d, json!({"a": {"b": {"c": 1}, "x": {"z": 2}}}));
        assert_eq!(get(&d, &p("a.b.c")), Some(&json!(1)));
        assert_eq!(get(&d, &p("a.b.c.d")), None);
        unset(
            &mut d,
            &[
                Step::Key("a".into()),
                Step::Key("b".into()),
                Step::Key("c".into()),
            ],
        );
        assert_eq!(d, json!({"a": {"x": {"z": 2}}}));
        unset(
            &mut d,
            &[Step::Key("a".into()), Step::Any, Step::Key("z".into())],
        );
        assert_eq!(d, json!({}));
    }

    #[test]
    fn merge_and_place() {
        let mut r = None;
        place(&mut r, &p("eth0"), json!(1));
        place(&mut r, &p("wlan0"), json!(2));
        assert_eq!(r, Some(json!({"eth0": 1, "wlan0": 2})));
        let mut root = None;
        place(&mut root, &[], json!({"a": {"b": 1}}));
        place(&mut root, &p("a.c"), json!(2));
        assert_eq!(root, Some(json!({"a": {"b": 1, "c": 2}})));
    }

    #[test]
    fn diffs() {
        let a = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        let b = json!({"a": {"b": 1, "c": 3}, "e": true});
        assert_eq!(diff(&a, &b), vec!["a.c", "d", "e"]);
        assert!(diff(&a, &a).is_empty());
    }

    fn json_tree() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            "[a-z]{0,3}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop::collection::btree_map("[a-c]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    proptest! {
        /// Merging keeps every scalar of the overlay, every scalar of the base that the
        /// overlay does not shadow, and invents nothing.
        #[test]
        fn merge_keeps_overlay_and_unshadowed_base(a in json_tree(), b in json_tree()) {
            let mut m = a.clone();
            merge(&mut m, b.clone());
            let scalar = |v: Option<&Value>| v.is_some_and(|v| !v.is_object());
            for leaf in leaves(&b).into_iter().filter(|l| scalar(get(&b, l))) {
                prop_assert_eq!(get(&m, &leaf), get(&b, &leaf));
            }
            for leaf in leaves(&a).into_iter().filter(|l| scalar(get(&a, l))) {
                let shadowed = (0..leaf.len()).any(|n| scalar(get(&b, &leaf[..n])))
                    || get(&b, &leaf).is_some();
                if !shadowed {
                    prop_assert_eq!(get(&m, &leaf), get(&a, &leaf));
                }
            }
            for leaf in leaves(&m) {
                prop_assert!(get(&a, &leaf).is_some() || get(&b, &leaf).is_some());
            }
        }

        /// Merging a tree into itself changes nothing.
        #[test]
        fn merge_is_idempotent(a in json_tree()) {
            let mut m = a.clone();
            merge(&mut m, a.clone());
            prop_assert_eq!(m, a);
        }

        /// A diff is empty exactly when the trees are equal.
        #[test]
        fn diff_empty_iff_equal(a in json_tree(), b in json_tree()) {
            prop_assert_eq!(diff(&a, &b).is_empty(), a == b);
        }
    }
}
