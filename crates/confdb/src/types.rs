//! Storage types: parsing the `storage` section of a schema and validating data against it
//! (pure, no I/O). Semantics follow snapd's confdb schemas.

use crate::path::{Segment, check_segment};
use cairn_config::one_line;
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Named types that `${name}` refers to.
pub type Aliases = BTreeMap<String, Type>;

#[derive(Debug, Clone)]
pub enum Type {
    Any,
    Bool,
    String {
        pattern: Option<Regex>,
        choices: Option<Vec<String>>,
    },
    Int {
        min: Option<i64>,
        max: Option<i64>,
        choices: Option<Vec<i64>>,
    },
    Number {
        min: Option<f64>,
        max: Option<f64>,
        choices: Option<Vec<f64>>,
    },
    /// A map with named fields; each inner list of `required` is one accepted set of required
    /// fields (a plain list of names is a single set).
    Fields {
        fields: BTreeMap<String, Type>,
        required: Vec<Vec<String>>,
    },
    /// A map with free keys; `None` accepts any key or value.
    KeysValues {
        keys: Option<Box<Type>>,
        values: Option<Box<Type>>,
    },
    Array {
        values: Box<Type>,
        unique: bool,
    },
    Alias(String),
    Alternatives(Vec<Type>),
}

/// Parses a type at `at` (a dotted location used in error messages).
pub fn parse_type(raw: &Value, at: &str) -> Result<Type, String> {
    match raw {
        Value::String(name) => parse_named(name, at),
        Value::Array(alts) => {
            if alts.is_empty() {
                return Err(format!("{at}: empty list of alternatives"));
            }
            let alts = alts
                .iter()
                .enumerate()
                .map(|(i, a)| parse_type(a, &format!("{at}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Type::Alternatives(alts))
        }
        Value::Object(obj) => parse_object(obj, at),
        other => Err(format!(
            "{at}: expected a type name, a map or a list, got {other}"
        )),
    }
}

fn parse_named(name: &str, at: &str) -> Result<Type, String> {
    if let Some(alias) = name.strip_prefix("${").and_then(|n| n.strip_suffix('}')) {
        check_segment(alias).map_err(|e| format!("{at}: alias {name}: {e}"))?;
        return Ok(Type::Alias(alias.to_string()));
    }
    Ok(match name {
        "any" => Type::Any,
        "bool" => Type::Bool,
        "string" => Type::String {
            pattern: None,
            choices: None,
        },
        "int" => Type::Int {
            min: None,
            max: None,
            choices: None,
        },
        "number" => Type::Number {
            min: None,
            max: None,
            choices: None,
        },
        "map" | "array" => {
            return Err(format!(
                "{at}: type \"{name}\" needs constraints, write it as a map"
            ));
        }
        other => {
            return Err(format!(
                "{at}: unknown type \"{other}\" (expected one of: any, bool, string, int, number, map, array, ${{alias}})"
            ));
        }
    })
}

fn check_fields(
    obj: &Map<String, Value>,
    allowed: &[&str],
    at: &str,
    ty: &str,
) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{at}: unknown constraint \"{k}\" for type {ty} (allowed: {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn parse_object(obj: &Map<String, Value>, at: &str) -> Result<Type, String> {
    let ty = match obj.get("type") {
        None => "map",
        Some(Value::String(t)) => t.as_str(),
        Some(other) => return Err(format!("{at}: \"type\" must be a string, got {other}")),
    };
    match ty {
        "map" => parse_map(obj, at),
        "string" => parse_string(obj, at),
        "int" => parse_int(obj, at),
        "number" => parse_number(obj, at),
        "array" => parse_array(obj, at),
        "bool" | "any" => {
            check_fields(obj, &["type"], at, ty)?;
            parse_named(ty, at)
        }
        alias if alias.starts_with("${") => {
            check_fields(obj, &["type"], at, "alias")?;
            parse_named(alias, at)
        }
        other => parse_named(other, at),
    }
}

fn parse_map(obj: &Map<String, Value>, at: &str) -> Result<Type, String> {
    check_fields(
        obj,
        &["type", "schema", "required", "keys", "values"],
        at,
        "map",
    )?;
    if let Some(schema) = obj.get("schema") {
        if obj.contains_key("keys") || obj.contains_key("values") {
            return Err(format!(
                "{at}: a map has either \"schema\" or \"keys\"/\"values\", not both"
            ));
        }
        let Value::Object(raw_fields) = schema else {
            return Err(format!(
                "{at}.schema: expected a map of field names to types"
            ));
        };
        let mut fields = BTreeMap::new();
        for (name, raw) in raw_fields {
            check_segment(name).map_err(|e| format!("{at}.schema: field \"{name}\": {e}"))?;
            let sub = join_at(at, name);
            fields.insert(name.clone(), parse_type(raw, &sub)?);
        }
        let required = parse_required(obj.get("required"), &fields, at)?;
        return Ok(Type::Fields { fields, required });
    }
    if obj.contains_key("required") {
        return Err(format!("{at}: \"required\" needs \"schema\""));
    }
    if !obj.contains_key("keys") && !obj.contains_key("values") {
        return Err(format!(
            "{at}: a map needs \"schema\" or \"keys\"/\"values\""
        ));
    }
    let keys = obj
        .get("keys")
        .map(|k| parse_type(k, &format!("{at}.keys")))
        .transpose()?;
    if let Some(k) = &keys
        && !key_type_is_string(k)
    {
        return Err(format!("{at}.keys: map keys must be of type string"));
    }
    let values = obj
        .get("values")
        .map(|v| parse_type(v, &format!("{at}.values")))
        .transpose()?;
    Ok(Type::KeysValues {
        keys: keys.map(Box::new),
        values: values.map(Box::new),
    })
}

/// Alias keys are checked once aliases are known (see [`check_aliases`]).
fn key_type_is_string(t: &Type) -> bool {
    match t {
        Type::String { .. } | Type::Alias(_) => true,
        Type::Alternatives(alts) => alts.iter().all(key_type_is_string),
        _ => false,
    }
}

fn parse_required(
    raw: Option<&Value>,
    fields: &BTreeMap<String, Type>,
    at: &str,
) -> Result<Vec<Vec<String>>, String> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let bad = || format!("{at}.required: expected a list of field names or a list of such lists");
    let Value::Array(items) = raw else {
        return Err(bad());
    };
    let sets: Vec<Vec<String>> = if items.iter().all(Value::is_string) {
        vec![
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ]
    } else if items.iter().all(Value::is_array) {
        let mut sets = Vec::new();
        for set in items {
            let names = set.as_array().map(Vec::as_slice).unwrap_or_default();
            if !names.iter().all(Value::is_string) {
                return Err(bad());
            }
            sets.push(
                names
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            );
        }
        sets
    } else {
        return Err(bad());
    };
    for name in sets.iter().flatten() {
        if !fields.contains_key(name) {
            return Err(format!(
                "{at}.required: \"{name}\" is not a field of the schema"
            ));
        }
    }
    Ok(sets)
}

fn parse_string(obj: &Map<String, Value>, at: &str) -> Result<Type, String> {
    check_fields(obj, &["type", "pattern", "choices"], at, "string")?;
    if obj.contains_key("pattern") && obj.contains_key("choices") {
        return Err(format!(
            "{at}: a string has either \"pattern\" or \"choices\", not both"
        ));
    }
    let pattern = match obj.get("pattern") {
        None => None,
        Some(Value::String(p)) => Some(Regex::new(p).map_err(|e| {
            format!(
                "{at}.pattern: invalid regular expression: {}",
                one_line(&e.to_string())
            )
        })?),
        Some(other) => return Err(format!("{at}.pattern: expected a string, got {other}")),
    };
    let choices = match obj.get("choices") {
        None => None,
        Some(raw) => Some(parse_choices(raw, at, |v| v.as_str().map(str::to_string))?),
    };
    Ok(Type::String { pattern, choices })
}

fn parse_choices<T>(
    raw: &Value,
    at: &str,
    get: impl Fn(&Value) -> Option<T>,
) -> Result<Vec<T>, String> {
    let Value::Array(items) = raw else {
        return Err(format!("{at}.choices: expected a list"));
    };
    if items.is_empty() {
        return Err(format!("{at}.choices: empty list"));
    }
    items
        .iter()
        .map(|v| get(v).ok_or_else(|| format!("{at}.choices: {v} has the wrong type")))
        .collect()
}

fn parse_bound<T>(
    obj: &Map<String, Value>,
    key: &str,
    at: &str,
    get: impl Fn(&Value) -> Option<T>,
) -> Result<Option<T>, String> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => get(v)
            .map(Some)
            .ok_or_else(|| format!("{at}.{key}: {v} has the wrong type")),
    }
}

fn parse_int(obj: &Map<String, Value>, at: &str) -> Result<Type, String> {
    check_fields(obj, &["type", "min", "max", "choices"], at, "int")?;
    let min = parse_bound(obj, "min", at, Value::as_i64)?;
    let max = parse_bound(obj, "max", at, Value::as_i64)?;
    let choices = obj
        .get("choices")
        .map(|c| parse_choices(c, at, Value::as_i64))
        .transpose()?;
    check_range(
        min.map(|v| v as f64),
        max.map(|v| v as f64),
        choices.is_some(),
        at,
    )?;
    Ok(Type::Int { min, max, choices })
}

fn parse_number(obj: &Map<String, Value>, at: &str) -> Result<Type, String> {
    check_fields(obj, &["type", "min", "max", "choices"], at, "number")?;
    let min = parse_bound(obj, "min", at, Value::as_f64)?;
    let max = parse_bound(obj, "max", at, Value::as_f64)?;
    let choices = obj
        .get("choices")
        .map(|c| parse_choices(c, at, Value::as_f64))
        .transpose()?;
    check_range(min, max, choices.is_some(), at)?;
    Ok(Type::Number { min, max, choices })
}

fn check_range(min: Option<f64>, max: Option<f64>, choices: bool, at: &str) -> Result<(), String> {
    if choices && (min.is_some() || max.is_some()) {
        return Err(format!(
            "{at}: \"choices\" cannot be combined with \"min\"/\"max\""
        ));
    }
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        return Err(format!("{at}: min {lo} is greater than max {hi}"));
    }
    Ok(())
}

fn parse_array(obj: &Map<String, Value>, at: &str) -> Result<Type, String> {
    check_fields(obj, &["type", "values", "unique"], at, "array")?;
    let values = obj
        .get("values")
        .ok_or_else(|| format!("{at}: an array needs \"values\""))?;
    let values = parse_type(values, &format!("{at}.values"))?;
    let unique = match obj.get("unique") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("{at}.unique: expected true or false, got {other}")),
    };
    Ok(Type::Array {
        values: Box::new(values),
        unique,
    })
}

fn join_at(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

/// Checks that every alias reference resolves, that map key aliases are strings, and that no
/// alias is defined only through itself (which would loop forever when validating).
pub fn check_aliases(root: &Type, aliases: &Aliases) -> Result<(), String> {
    for (name, ty) in aliases {
        check_refs(ty, aliases, &format!("aliases.{name}"))?;
        let mut seen = vec![name.as_str()];
        check_not_self_defined(ty, aliases, &mut seen)?;
    }
    check_refs(root, aliases, "schema")
}

fn check_refs(ty: &Type, aliases: &Aliases, at: &str) -> Result<(), String> {
    match ty {
        Type::Alias(a) if !aliases.contains_key(a) => Err(format!("{at}: unknown alias ${{{a}}}")),
        Type::Fields { fields, .. } => fields
            .iter()
            .try_for_each(|(n, t)| check_refs(t, aliases, &join_at(at, n))),
        Type::KeysValues { keys, values } => {
            if let Some(k) = keys {
                check_refs(k, aliases, at)?;
                if !resolves_to_string(k, aliases, 0) {
                    return Err(format!("{at}.keys: map keys must be of type string"));
                }
            }
            values
                .as_ref()
                .map_or(Ok(()), |v| check_refs(v, aliases, at))
        }
        Type::Array { values, .. } => check_refs(values, aliases, at),
        Type::Alternatives(alts) => alts.iter().try_for_each(|t| check_refs(t, aliases, at)),
        _ => Ok(()),
    }
}

fn resolves_to_string(ty: &Type, aliases: &Aliases, depth: usize) -> bool {
    if depth > 32 {
        return false;
    }
    match ty {
        Type::String { .. } => true,
        Type::Alias(a) => aliases
            .get(a)
            .is_some_and(|t| resolves_to_string(t, aliases, depth + 1)),
        Type::Alternatives(alts) => alts
            .iter()
            .all(|t| resolves_to_string(t, aliases, depth + 1)),
        _ => false,
    }
}

fn check_not_self_defined<'a>(
    ty: &'a Type,
    aliases: &'a Aliases,
    seen: &mut Vec<&'a str>,
) -> Result<(), String> {
    match ty {
        Type::Alias(a) => {
            if seen.contains(&a.as_str()) {
                return Err(format!("alias ${{{a}}} is defined through itself"));
            }
            let Some(next) = aliases.get(a) else {
                return Ok(());
            };
            seen.push(a);
            let r = check_not_self_defined(next, aliases, seen);
            seen.pop();
            r
        }
        Type::Alternatives(alts) => alts
            .iter()
            .try_for_each(|t| check_not_self_defined(t, aliases, seen)),
        _ => Ok(()),
    }
}

/// Where validation failed and why; rendered as "expected string at device.uuid, got 5".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn at_path(path: &[String]) -> String {
    if path.is_empty() {
        "the top level".to_string()
    } else {
        path.join(".")
    }
}

fn violation(path: &[String], message: String) -> Violation {
    Violation {
        path: path.join("."),
        message,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..s.floor_char_boundary(57)])
    } else {
        s
    }
}

fn expected(what: &str, path: &[String], got: &Value) -> Violation {
    violation(
        path,
        format!("expected {what} at {}, got {}", at_path(path), short(got)),
    )
}

/// Validates `value` (found at `path`) against `ty`.
pub fn validate(
    ty: &Type,
    value: &Value,
    aliases: &Aliases,
    path: &mut Vec<String>,
) -> Result<(), Violation> {
    match ty {
        Type::Any => Ok(()),
        Type::Bool => match value {
            Value::Bool(_) => Ok(()),
            v => Err(expected("bool", path, v)),
        },
        Type::String { pattern, choices } => validate_string(pattern, choices, value, path),
        Type::Int { min, max, choices } => {
            let Some(n) = value.as_i64() else {
                return Err(expected("int", path, value));
            };
            check_number(
                n as f64,
                min.map(|v| v as f64),
                max.map(|v| v as f64),
                choices.as_ref().map(|c| c.contains(&n)),
                value,
                path,
            )
        }
        Type::Number { min, max, choices } => {
            let Some(n) = value.as_f64() else {
                return Err(expected("number", path, value));
            };
            check_number(
                n,
                *min,
                *max,
                choices.as_ref().map(|c| c.contains(&n)),
                value,
                path,
            )
        }
        Type::Fields { fields, required } => {
            validate_fields(fields, required, value, aliases, path)
        }
        Type::KeysValues { keys, values } => {
            validate_keys_values(keys.as_deref(), values.as_deref(), value, aliases, path)
        }
        Type::Array { values, unique } => validate_array(values, *unique, value, aliases, path),
        Type::Alias(name) => match aliases.get(name) {
            Some(t) => validate(t, value, aliases, path),
            None => Err(violation(
                path,
                format!("unknown alias ${{{name}}} at {}", at_path(path)),
            )),
        },
        Type::Alternatives(alts) => {
            let mut reasons = Vec::new();
            for alt in alts {
                match validate(alt, value, aliases, path) {
                    Ok(()) => return Ok(()),
                    Err(v) => reasons.push(v.message),
                }
            }
            Err(violation(
                path,
                format!(
                    "no alternative matches at {}: {}",
                    at_path(path),
                    reasons.join("; ")
                ),
            ))
        }
    }
}

fn validate_string(
    pattern: &Option<Regex>,
    choices: &Option<Vec<String>>,
    value: &Value,
    path: &[String],
) -> Result<(), Violation> {
    let Value::String(s) = value else {
        return Err(expected("string", path, value));
    };
    if let Some(re) = pattern
        && !re.is_match(s)
    {
        return Err(violation(
            path,
            format!(
                "string {} at {} does not match pattern \"{}\"",
                short(value),
                at_path(path),
                re.as_str()
            ),
        ));
    }
    if let Some(c) = choices
        && !c.contains(s)
    {
        return Err(violation(
            path,
            format!(
                "{} at {} is not one of the choices: {}",
                short(value),
                at_path(path),
                c.join(", ")
            ),
        ));
    }
    Ok(())
}

fn check_number(
    n: f64,
    min: Option<f64>,
    max: Option<f64>,
    in_choices: Option<bool>,
    value: &Value,
    path: &[String],
) -> Result<(), Violation> {
    if in_choices == Some(false) {
        return Err(violation(
            path,
            format!("{value} at {} is not one of the choices", at_path(path)),
        ));
    }
    if let Some(lo) = min
        && n < lo
    {
        return Err(violation(
            path,
            format!("{value} at {} is less than the minimum {lo}", at_path(path)),
        ));
    }
    if let Some(hi) = max
        && n > hi
    {
        return Err(violation(
            path,
            format!(
                "{value} at {} is greater than the maximum {hi}",
                at_path(path)
            ),
        ));
    }
    Ok(())
}

fn validate_fields(
    fields: &BTreeMap<String, Type>,
    required: &[Vec<String>],
    value: &Value,
    aliases: &Aliases,
    path: &mut Vec<String>,
) -> Result<(), Violation> {
    let Value::Object(obj) = value else {
        return Err(expected("map", path, value));
    };
    for (k, v) in obj {
        let Some(t) = fields.get(k) else {
            return Err(violation(
                path,
                format!(
                    "unexpected field \"{k}\" at {} (expected one of: {})",
                    at_path(path),
                    fields.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        path.push(k.clone());
        let r = validate(t, v, aliases, path);
        path.pop();
        r?;
    }
    if required.is_empty()
        || required
            .iter()
            .any(|set| set.iter().all(|f| obj.contains_key(f)))
    {
        return Ok(());
    }
    let missing: Vec<String> = required
        .iter()
        .map(|set| {
            set.iter()
                .filter(|f| !obj.contains_key(*f))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    Err(violation(
        path,
        format!(
            "missing required field {} at {}",
            missing.join(" or "),
            at_path(path)
        ),
    ))
}

fn validate_keys_values(
    keys: Option<&Type>,
    values: Option<&Type>,
    value: &Value,
    aliases: &Aliases,
    path: &mut Vec<String>,
) -> Result<(), Violation> {
    let Value::Object(obj) = value else {
        return Err(expected("map", path, value));
    };
    for (k, v) in obj {
        path.push(k.clone());
        let r = check_segment(k)
            .map_err(|e| violation(path, format!("invalid key at {}: {e}", at_path(path))))
            .and_then(|()| {
                keys.map_or(Ok(()), |kt| {
                    validate(kt, &Value::String(k.clone()), aliases, path)
                })
            })
            .and_then(|()| values.map_or(Ok(()), |vt| validate(vt, v, aliases, path)));
        path.pop();
        r?;
    }
    Ok(())
}

fn validate_array(
    values: &Type,
    unique: bool,
    value: &Value,
    aliases: &Aliases,
    path: &mut Vec<String>,
) -> Result<(), Violation> {
    let Value::Array(items) = value else {
        return Err(expected("array", path, value));
    };
    for (i, item) in items.iter().enumerate() {
        path.push(format!("[{i}]"));
        let r = validate(values, item, aliases, path);
        path.pop();
        r?;
        if unique && items[..i].contains(item) {
            return Err(violation(
                path,
                format!(
                    "duplicate value {} in array at {} (values must be unique)",
                    short(item),
                    at_path(path)
                ),
            ));
        }
    }
    Ok(())
}

/// True if `storage` names a place the type allows: every segment selects a field, a key of a
/// keys/values map, or goes into `any`.
pub fn reaches(ty: &Type, storage: &[Segment], aliases: &Aliases, depth: usize) -> bool {
    let Some((first, rest)) = storage.split_first() else {
        return true;
    };
    if depth > 64 {
        return false;
    }
    match ty {
        Type::Any => true,
        Type::Alias(a) => aliases
            .get(a)
            .is_some_and(|t| reaches(t, storage, aliases, depth + 1)),
        Type::Alternatives(alts) => alts.iter().any(|t| reaches(t, storage, aliases, depth + 1)),
        Type::Fields { fields, .. } => match first {
            Segment::Key(k) => fields
                .get(k)
                .is_some_and(|t| reaches(t, rest, aliases, depth + 1)),
            Segment::Placeholder(_) => fields
                .values()
                .any(|t| reaches(t, rest, aliases, depth + 1)),
        },
        Type::KeysValues { keys, values } => {
            let key_ok = match (first, keys) {
                (Segment::Key(k), Some(kt)) => {
                    validate(kt, &Value::String(k.clone()), aliases, &mut Vec::new()).is_ok()
                }
                _ => true,
            };
            key_ok
                && values
                    .as_ref()
                    .is_none_or(|v| reaches(v, rest, aliases, depth + 1))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ty(raw: Value) -> Type {
        parse_type(&raw, "t").unwrap()
    }

    fn check(t: &Type, v: Value) -> Result<(), String> {
        validate(t, &v, &Aliases::new(), &mut Vec::new()).map_err(|e| e.message)
    }

    #[test]
    fn scalars() {
        assert!(check(&ty(json!("bool")), json!(true)).is_ok());
        assert!(check(&ty(json!("bool")), json!("true")).is_err());
        assert!(check(&ty(json!("any")), json!({"x": [1, null]})).is_ok());
        assert!(check(&ty(json!("int")), json!(3)).is_ok());
        assert!(check(&ty(json!("int")), json!(3.5)).is_err());
        assert!(check(&ty(json!("number")), json!(3.5)).is_ok());
        assert!(check(&ty(json!("number")), json!("3")).is_err());
        assert_eq!(
            check(&ty(json!("string")), json!(5)).unwrap_err(),
            "expected string at the top level, got 5"
        );
    }

    #[test]
    fn string_constraints() {
        let p = ty(json!({"type": "string", "pattern": "^[0-9.]+$"}));
        assert!(check(&p, json!("10.0.0.1")).is_ok());
        assert!(
            check(&p, json!("ten"))
                .unwrap_err()
                .contains("does not match pattern")
        );
        let c = ty(json!({"type": "string", "choices": ["wifi", "ethernet"]}));
        assert!(check(&c, json!("wifi")).is_ok());
        assert!(
            check(&c, json!("modem"))
                .unwrap_err()
                .contains("not one of the choices")
        );
        assert!(parse_type(&json!({"type": "string", "pattern": "(", }), "t").is_err());
        assert!(
            parse_type(
                &json!({"type": "string", "pattern": "a", "choices": ["a"]}),
                "t"
            )
            .is_err()
        );
        assert!(parse_type(&json!({"type": "string", "min": 1}), "t").is_err());
    }

    #[test]
    fn int_and_number_constraints() {
        let i = ty(json!({"type": "int", "min": 1, "max": 10}));
        assert!(check(&i, json!(1)).is_ok());
        assert!(check(&i, json!(10)).is_ok());
        assert!(
            check(&i, json!(0))
                .unwrap_err()
                .contains("less than the minimum 1")
        );
        assert!(
            check(&i, json!(11))
                .unwrap_err()
                .contains("greater than the maximum 10")
        );
        let ic = ty(json!({"type": "int", "choices": [1, 2]}));
        assert!(check(&ic, json!(2)).is_ok());
        assert!(check(&ic, json!(3)).is_err());
        let n = ty(json!({"type": "number", "min": 0.5, "max": 1.5}));
        assert!(check(&n, json!(1.0)).is_ok());
        assert!(check(&n, json!(0.25)).is_err());
        assert!(check(&n, json!(2)).is_err());
        let nc = ty(json!({"type": "number", "choices": [0.5, 2]}));
        assert!(check(&nc, json!(0.5)).is_ok());
        assert!(check(&nc, json!(1)).is_err());
        assert!(parse_type(&json!({"type": "int", "min": 5, "max": 1}), "t").is_err());
        assert!(parse_type(&json!({"type": "int", "min": 1, "choices": [1]}), "t").is_err());
        assert!(parse_type(&json!({"type": "int", "min": "1"}), "t").is_err());
    }

    #[test]
    fn maps() {
        let m = ty(json!({"schema": {"uuid": "string", "port": "int"}, "required": ["uuid"]}));
        assert!(check(&m, json!({"uuid": "x"})).is_ok());
        assert!(
            check(&m, json!({"port": 1}))
                .unwrap_err()
                .contains("missing required field uuid")
        );
        assert!(
            check(&m, json!({"uuid": "x", "other": 1}))
                .unwrap_err()
                .contains("unexpected field \"other\"")
        );
        assert_eq!(
            check(&m, json!({"uuid": 5})).unwrap_err(),
            "expected string at uuid, got 5"
        );
        let alt = ty(json!({"schema": {"a": "int", "b": "int"}, "required": [["a"], ["b"]]}));
        assert!(check(&alt, json!({"b": 1})).is_ok());
        assert!(check(&alt, json!({})).unwrap_err().contains("a or b"));
        assert!(parse_type(&json!({"schema": {"a": "int"}, "required": ["b"]}), "t").is_err());
        let kv = ty(json!({"keys": {"type": "string", "pattern": "^eth"}, "values": "int"}));
        assert!(check(&kv, json!({"eth0": 1})).is_ok());
        assert!(
            check(&kv, json!({"wlan0": 1}))
                .unwrap_err()
                .contains("does not match")
        );
        assert!(check(&kv, json!({"eth0": "x"})).is_err());
        assert!(check(&kv, json!([1])).is_err());
        assert!(parse_type(&json!({"keys": "int"}), "t").is_err());
        assert!(parse_type(&json!({"type": "map"}), "t").is_err());
        assert!(parse_type(&json!({"schema": {"a": "int"}, "keys": "string"}), "t").is_err());
    }

    #[test]
    fn arrays() {
        let a = ty(json!({"type": "array", "values": "string", "unique": true}));
        assert!(check(&a, json!(["a", "b"])).is_ok());
        assert!(
            check(&a, json!(["a", "a"]))
                .unwrap_err()
                .contains("duplicate")
        );
        assert!(check(&a, json!(["a", 1])).unwrap_err().contains("at [1]"));
        let b = ty(json!({"type": "array", "values": "int"}));
        assert!(check(&b, json!([1, 1])).is_ok());
        assert!(parse_type(&json!({"type": "array"}), "t").is_err());
    }

    #[test]
    fn aliases_and_alternatives() {
        let mut aliases = Aliases::new();
        aliases.insert(
            "ip".into(),
            ty(json!({"type": "string", "pattern": "^[0-9.]+$"})),
        );
        let t = ty(json!("${ip}"));
        assert!(validate(&t, &json!("1.2.3.4"), &aliases, &mut Vec::new()).is_ok());
        assert!(validate(&t, &json!("x"), &aliases, &mut Vec::new()).is_err());
        assert!(check_aliases(&ty(json!("${nope}")), &aliases).is_err());
        let alt = ty(json!(["int", "bool"]));
        assert!(check(&alt, json!(1)).is_ok());
        assert!(check(&alt, json!(true)).is_ok());
        assert!(
            check(&alt, json!("x"))
                .unwrap_err()
                .contains("no alternative matches")
        );
        let mut looped = Aliases::new();
        looped.insert("a".into(), ty(json!("${b}")));
        looped.insert("b".into(), ty(json!(["int", "${a}"])));
        assert!(
            check_aliases(&Type::Any, &looped)
                .unwrap_err()
                .contains("through itself")
        );
    }
}
