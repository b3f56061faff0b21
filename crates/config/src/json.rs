//! The two walks over JSON trees that layered configuration needs: the deep merge (app
//! config fragments, confdb read results of several rules) and the changed paths between
//! two trees (confdb commits, view writes). Pure functions, no I/O.

use serde_json::Value;

/// Merges `over` into `base`: maps merge key by key, every other value (lists, scalars,
/// `null`) replaces what was there. A `null` is a value like any other: it sets, it does
/// not delete.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// The smallest set of paths at which `old` and `new` differ, in key order, each with the
/// value `new` has there (`None` where `new` has no such key). Maps present on both sides
/// are walked key by key; any other difference is reported at the path where it starts.
pub fn changes<'a>(old: &Value, new: &'a Value) -> Vec<(Vec<String>, Option<&'a Value>)> {
    let mut out = Vec::new();
    walk(Some(old), Some(new), &mut Vec::new(), &mut out);
    out
}

fn walk<'a>(
    old: Option<&Value>,
    new: Option<&'a Value>,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Option<&'a Value>)>,
) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                path.push(k.clone());
                walk(a.get(k), b.get(k), path, out);
                path.pop();
            }
        }
        (a, b) if a == b => {}
        (_, b) => out.push((path.clone(), b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn merged(a: &Value, b: &Value) -> Value {
        let mut m = a.clone();
        merge(&mut m, b.clone());
        m
    }

    fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
        path.iter().try_fold(v, |v, k| v.as_object()?.get(k))
    }

    /// Paths of the non-map values in `v` (maps are walked, empty ones yield nothing).
    fn scalar_paths(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    path.push(k.clone());
                    scalar_paths(child, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.clone()),
        }
    }

    fn scalars(v: &Value) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        scalar_paths(v, &mut Vec::new(), &mut out);
        out
    }

    /// True where `b` holds a non-map at a path where `c` holds a map: the one shape for
    /// which merging is not associative (`b` erases `a`'s map, `c` only adds to it).
    fn replaces_map(b: &Value, c: &Value) -> bool {
        match (b, c) {
            (Value::Object(b), Value::Object(c)) => b
                .iter()
                .any(|(k, bv)| c.get(k).is_some_and(|cv| replaces_map(bv, cv))),
            (b, c) => !b.is_object() && c.is_object(),
        }
    }

    /// Applies [`changes`] to `old` the way confdb does: set where there is a value, remove
    /// where there is none.
    fn apply(old: &Value, changes: &[(Vec<String>, Option<&Value>)]) -> Value {
        let mut out = old.clone();
        for (path, value) in changes {
            let Some((last, parents)) = path.split_last() else {
                out = value.cloned().unwrap_or(Value::Null);
                continue;
            };
            let mut cur = &mut out;
            for k in parents {
                cur = cur
                    .get_mut(k)
                    .expect("changes only walk maps on both sides");
            }
            let map = cur.as_object_mut().expect("a parent is a map");
            match value {
                Some(v) => map.insert(last.clone(), (*v).clone()),
                None => map.remove(last),
            };
        }
        out
    }

    fn tree() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,3}".prop_map(Value::from),
            proptest::collection::vec("[a-z]{0,2}".prop_map(Value::from), 0..3)
                .prop_map(Value::Array),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            proptest::collection::btree_map("[a-c]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    #[test]
    fn maps_merge_and_everything_else_replaces() {
        let m = merged(
            &json!({"env": {"A": "1", "B": "2"}, "args": ["x"], "n": 1, "gone": {"k": 1}}),
            &json!({"env": {"B": "3", "C": null}, "args": [], "n": {"m": 2}, "gone": null}),
        );
        assert_eq!(
            m,
            json!({"env": {"A": "1", "B": "3", "C": null}, "args": [], "n": {"m": 2}, "gone": null})
        );
    }

    #[test]
    fn changes_name_the_paths_and_the_new_values() {
        let old = json!({"a": {"b": 1, "c": 2}, "d": [1], "f": {"g": 1}});
        let new = json!({"a": {"b": 1, "c": 3}, "e": true, "f": 5});
        let paths: Vec<(String, Option<Value>)> = changes(&old, &new)
            .into_iter()
            .map(|(p, v)| (p.join("."), v.cloned()))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("a.c".into(), Some(json!(3))),
                ("d".into(), None),
                ("e".into(), Some(json!(true))),
                ("f".into(), Some(json!(5))),
            ]
        );
        assert!(changes(&old, &old).is_empty());
        assert_eq!(
            changes(&json!(1), &json!({})),
            vec![(vec![], Some(&json!({})))]
        );
    }

    proptest! {
        /// The empty map is the identity on both sides of a merge of maps.
        #[test]
        fn empty_map_is_the_identity(a in tree()) {
            let empty = json!({});
            if a.is_object() {
                prop_assert_eq!(merged(&a, &empty), a.clone());
                prop_assert_eq!(merged(&empty, &a), a);
            } else {
                prop_assert_eq!(merged(&empty, &a), a.clone());
                prop_assert_eq!(merged(&a, &empty), empty);
            }
        }

        /// Merging a tree over itself changes nothing.
        #[test]
        fn merge_is_idempotent(a in tree(), b in tree()) {
            prop_assert_eq!(merged(&a, &a), a.clone());
            let m = merged(&a, &b);
            prop_assert_eq!(merged(&m, &b), m);
        }

        /// (a + b) + c = a + (b + c), except where b puts a non-map where c has a map.
        #[test]
        fn merge_is_associative_where_no_map_is_replaced(a in tree(), b in tree(), c in tree()) {
            if !replaces_map(&b, &c) {
                prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            }
        }

        /// The right side wins at every non-map value it sets (nulls included) and leaves
        /// a map wherever it has one; values of the left side survive wherever the right
        /// side sets nothing on their path, and so do the keys of two maps; nothing is
        /// invented.
        #[test]
        fn right_side_wins_and_maps_merge(a in tree(), b in tree()) {
            let m = merged(&a, &b);
            fn covers(m: &Value, b: &Value) -> bool {
                match (m, b) {
                    (Value::Object(m), Value::Object(b)) => {
                        b.iter().all(|(k, v)| m.get(k).is_some_and(|mv| covers(mv, v)))
                    }
                    (m, b) => m == b,
                }
            }
            prop_assert!(covers(&m, &b));
            if let (Value::Object(ma), Value::Object(_)) = (&a, &b) {
                let mo = m.as_object().expect("two maps merge into a map");
                prop_assert!(ma.keys().all(|k| mo.contains_key(k)));
            }
            for path in scalars(&b) {
                prop_assert_eq!(get(&m, &path), get(&b, &path));
            }
            for path in scalars(&a) {
                let shadowed = (0..=path.len()).any(|n| {
                    get(&b, &path[..n]).is_some_and(|v| !v.is_object() || n == path.len())
                });
                if !shadowed {
                    prop_assert_eq!(get(&m, &path), get(&a, &path));
                }
            }
            for path in scalars(&m) {
                prop_assert!(get(&a, &path).is_some() || get(&b, &path).is_some());
            }
        }

        /// A `null` on the right sets a null; a `null` on the left is replaced.
        #[test]
        fn null_replaces_and_is_replaced(a in tree(), b in tree()) {
            prop_assert_eq!(merged(&Value::Null, &b), b.clone());
            prop_assert_eq!(merged(&a, &Value::Null), Value::Null);
            if let Value::Object(_) = a {
                let m = merged(&a, &json!({"a": null}));
                prop_assert_eq!(m.get("a"), Some(&Value::Null));
            }
        }

        /// No changes exactly when the trees are equal, and applying the changes to the
        /// old tree gives the new one.
        #[test]
        fn changes_turn_old_into_new(a in tree(), b in tree()) {
            let changes = changes(&a, &b);
            prop_assert_eq!(changes.is_empty(), a == b);
            prop_assert_eq!(apply(&a, &changes), b);
        }
    }
}
