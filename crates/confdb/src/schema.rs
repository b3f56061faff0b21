//! Schema documents: parsing (YAML or JSON), views and their rules, and the consistency
//! checks run at load (pure, no I/O).

use crate::path::{Pattern, check_segment};
use crate::types::{self, Aliases, Type};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    pub fn readable(self) -> bool {
        self != Access::Write
    }
    pub fn writable(self) -> bool {
        self != Access::Read
    }
}

/// One rule, with `content` rules already flattened into full paths.
#[derive(Debug, Clone)]
pub struct Rule {
    pub request: Pattern,
    pub storage: Pattern,
    pub access: Access,
}

#[derive(Debug, Clone)]
pub struct View {
    pub name: String,
    pub summary: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub struct Schema {
    pub account: String,
    pub name: String,
    pub summary: Option<String>,
    pub views: BTreeMap<String, View>,
    pub aliases: Aliases,
    /// The top-level storage map.
    pub storage: Type,
}

/// Account names are also file names in the trust store and snapd-style account ids
/// (mixed case), hence a looser rule than keys.
pub fn check_account(account: &str) -> Result<(), String> {
    let ok = !account.is_empty()
        && account.len() <= 64
        && account
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !account.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid account \"{account}\" (letters, digits and '-', not first)"
        ))
    }
}

/// Parses a YAML or JSON document into a JSON tree.
pub fn parse_text(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"));
    }
    serde_saphyr::from_str::<Value>(text).map_err(|e| {
        format!(
            "invalid YAML: {}",
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        )
    })
}

/// Parses and checks a schema document; the error names the broken rule or type.
pub fn parse(text: &str) -> Result<Schema, String> {
    let raw = parse_text(text)?;
    let Value::Object(doc) = raw else {
        return Err("a schema document is a map with account, name, views and storage".into());
    };
    for k in doc.keys() {
        if !["account", "name", "summary", "revision", "views", "storage"].contains(&k.as_str()) {
            return Err(format!(
                "unknown field \"{k}\" (expected: account, name, summary, revision, views, storage)"
            ));
        }
    }
    let account = required_str(&doc, "account")?;
    check_account(&account)?;
    let name = required_str(&doc, "name")?;
    check_segment(&name).map_err(|e| format!("invalid name \"{name}\": {e}"))?;
    let summary = optional_str(&doc, "summary")?;
    let (aliases, storage) = parse_storage(doc.get("storage"))?;
    let views = parse_views(doc.get("views"))?;
    let schema = Schema {
        account,
        name,
        summary,
        views,
        aliases,
        storage,
    };
    check_consistency(&schema)?;
    Ok(schema)
}

fn required_str(doc: &Map<String, Value>, key: &str) -> Result<String, String> {
    match doc.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("\"{key}\" must be a string, got {other}")),
        None => Err(format!("missing \"{key}\"")),
    }
}

fn optional_str(doc: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => required_str(doc, key).map(Some),
    }
}

fn parse_storage(raw: Option<&Value>) -> Result<(Aliases, Type), String> {
    let Some(Value::Object(storage)) = raw else {
        return Err("missing \"storage\" map (with \"schema\" and optional \"aliases\")".into());
    };
    if let Some(k) = storage
        .keys()
        .find(|k| !["aliases", "schema"].contains(&k.as_str()))
    {
        return Err(format!(
            "storage: unknown field \"{k}\" (expected: aliases, schema)"
        ));
    }
    let mut aliases = Aliases::new();
    match storage.get("aliases") {
        None => {}
        Some(Value::Object(raw_aliases)) => {
            for (name, raw) in raw_aliases {
                check_segment(name).map_err(|e| format!("storage.aliases: \"{name}\": {e}"))?;
                let t = types::parse_type(raw, &format!("storage.aliases.{name}"))?;
                aliases.insert(name.clone(), t);
            }
        }
        Some(_) => return Err("storage.aliases: expected a map of names to types".into()),
    }
    let Some(schema) = storage.get("schema") else {
        return Err("storage: missing \"schema\"".into());
    };
    if !schema.is_object() {
        return Err("storage.schema: expected a map of field names to types".into());
    }
    let mut top = Map::new();
    top.insert("schema".into(), schema.clone());
    let root = types::parse_type(&Value::Object(top), "storage")?;
    types::check_aliases(&root, &aliases)?;
    Ok((aliases, root))
}

fn parse_views(raw: Option<&Value>) -> Result<BTreeMap<String, View>, String> {
    let Some(Value::Object(raw_views)) = raw else {
        return Err("missing \"views\" map".into());
    };
    if raw_views.is_empty() {
        return Err("\"views\" is empty".into());
    }
    let mut views = BTreeMap::new();
    for (name, raw) in raw_views {
        check_segment(name).map_err(|e| format!("view \"{name}\": invalid name: {e}"))?;
        let Value::Object(body) = raw else {
            return Err(format!("view {name}: expected a map with \"rules\""));
        };
        if let Some(k) = body
            .keys()
            .find(|k| !["rules", "summary"].contains(&k.as_str()))
        {
            return Err(format!(
                "view {name}: unknown field \"{k}\" (expected: rules, summary)"
            ));
        }
        let summary = optional_str(body, "summary").map_err(|e| format!("view {name}: {e}"))?;
        let Some(Value::Array(raw_rules)) = body.get("rules") else {
            return Err(format!("view {name}: missing \"rules\" list"));
        };
        if raw_rules.is_empty() {
            return Err(format!("view {name}: \"rules\" is empty"));
        }
        let mut rules = Vec::new();
        for (i, r) in raw_rules.iter().enumerate() {
            parse_rule(r, None, &mut rules)
                .map_err(|e| format!("view {name}: rule {}: {e}", i + 1))?;
        }
        views.insert(
            name.clone(),
            View {
                name: name.clone(),
                summary,
                rules,
            },
        );
    }
    Ok(views)
}

/// Parses one rule and its `content` rules (whose paths continue the parent's).
fn parse_rule(raw: &Value, parent: Option<&Rule>, out: &mut Vec<Rule>) -> Result<(), String> {
    let Value::Object(obj) = raw else {
        return Err("expected a map with request, storage, access, content".into());
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !["request", "storage", "access", "content"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown field \"{k}\" (expected: request, storage, access, content)"
        ));
    }
    let storage_text = required_str(obj, "storage")?;
    let storage = Pattern::parse(&storage_text).map_err(|e| format!("storage: {e}"))?;
    let request = match optional_str(obj, "request")? {
        Some(r) => Pattern::parse(&r).map_err(|e| format!("request: {e}"))?,
        None => storage.clone(),
    };
    let access = match optional_str(obj, "access")?.as_deref() {
        None | Some("read-write") => Access::ReadWrite,
        Some("read") => Access::Read,
        Some("write") => Access::Write,
        Some(other) => {
            return Err(format!(
                "request \"{request}\": unknown access \"{other}\" (expected one of: read, write, read-write)"
            ));
        }
    };
    let (request, storage) = match parent {
        Some(p) => (p.request.concat(&request), p.storage.concat(&storage)),
        None => (request, storage),
    };
    let rule = Rule {
        request,
        storage,
        access,
    };
    match obj.get("content") {
        None => {}
        Some(Value::Array(children)) if !children.is_empty() => {
            for c in children {
                parse_rule(c, Some(&rule), out)?;
            }
        }
        Some(_) => {
            return Err(format!(
                "request \"{}\": \"content\" must be a non-empty list of rules",
                rule.request
            ));
        }
    }
    out.push(rule);
    Ok(())
}

/// The load-time checks: placeholders used once each and on both sides, storage paths that
/// exist in the storage schema, no two readable rules answering the same request.
pub fn check_consistency(schema: &Schema) -> Result<(), String> {
    for view in schema.views.values() {
        let mut readers: BTreeMap<String, &Rule> = BTreeMap::new();
        for rule in &view.rules {
            let at = format!("view {} rule \"{}\"", view.name, rule.request);
            check_placeholders(rule).map_err(|e| format!("{at}: {e}"))?;
            if !types::reaches(&schema.storage, &rule.storage.0, &schema.aliases, 0) {
                return Err(format!(
                    "{at}: storage path \"{}\" is not in the storage schema",
                    rule.storage
                ));
            }
            if rule.access.readable()
                && let Some(other) = readers.insert(rule.request.shape(), rule)
            {
                return Err(format!(
                    "{at}: another readable rule answers the same request (\"{}\")",
                    other.request
                ));
            }
        }
    }
    Ok(())
}

fn check_placeholders(rule: &Rule) -> Result<(), String> {
    let in_request = rule.request.placeholders();
    let in_storage = rule.storage.placeholders();
    let mut seen = BTreeSet::new();
    for p in &in_request {
        if !seen.insert(*p) {
            return Err(format!(
                "placeholder {{{p}}} is used more than once in the request"
            ));
        }
    }
    let mut seen_storage = BTreeSet::new();
    for p in &in_storage {
        if !seen_storage.insert(*p) {
            return Err(format!(
                "placeholder {{{p}}} is used more than once in the storage path"
            ));
        }
        if !seen.contains(p) {
            return Err(format!(
                "placeholder {{{p}}} of the storage path is not in the request"
            ));
        }
    }
    if let Some(p) = seen.difference(&seen_storage).next() {
        return Err(format!(
            "placeholder {{{p}}} of the request is not in the storage path"
        ));
    }
    Ok(())
}

impl Schema {
    /// Validates a whole databag against the storage schema.
    pub fn validate(&self, data: &Value) -> Result<(), types::Violation> {
        types::validate(&self.storage, data, &self.aliases, &mut Vec::new())
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.account, self.name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The example of PRODUCT.md section 5, extended with the registries-poc views.
    pub(crate) const NETWORK: &str = include_str!("../tests/network.yaml");

    #[test]
    fn parses_the_example() {
        let s = parse(NETWORK).unwrap();
        assert_eq!(s.id(), "acme/network");
        let ci = &s.views["control-interfaces"];
        let requests: Vec<String> = ci.rules.iter().map(|r| r.request.to_string()).collect();
        assert!(requests.contains(&"config.{name}".to_string()));
        assert!(requests.contains(&"config.{name}.interface-type".to_string()));
        let child = ci
            .rules
            .iter()
            .find(|r| r.request.to_string() == "config.{name}.interface-type")
            .unwrap();
        assert_eq!(
            child.storage.to_string(),
            "interfaces.{name}.config.interface-type"
        );
        assert_eq!(s.views["control-device"].rules[0].access, Access::Write);
        assert_eq!(s.views["control-device"].rules[1].access, Access::ReadWrite);
    }

    /// The schema of PRODUCT.md section 5, verbatim.
    #[test]
    fn parses_the_product_example_verbatim() {
        let doc = r#"
account: acme
name: network
summary: Network configuration shared by the device's apps
views:
  control-device:
    rules:
      - { request: id, storage: device.uuid, access: write }
      - { request: server-url, storage: device.server-url }          # access defaults to read-write
  observe-interfaces:
    rules:
      - { request: "packets-sent.{name}", storage: "interfaces.{name}.stats.n-sent", access: read }
  control-interfaces:
    rules:
      - request: "config.{name}"
        storage: "interfaces.{name}.config"
        content:
          - { request: interface-type, storage: interface-type }
storage:
  aliases:
    ip: { type: string, pattern: "^[0-9.]+$" }
  schema:
    device: { schema: { uuid: string, server-url: string }, required: [uuid] }
    interfaces:
      keys: { type: string, pattern: "^[a-z][a-z0-9]+$" }
      values: { schema: { config: { schema: { interface-type: { type: string, choices: [wifi, ethernet] }, ip-address: "${ip}" } } } }
"#;
        let err = parse(doc).unwrap_err();
        // The spec's example reads stats.n-sent, which its storage schema does not define:
        // the consistency check catches exactly that.
        assert_eq!(
            err,
            "view observe-interfaces rule \"packets-sent.{name}\": storage path \"interfaces.{name}.stats.n-sent\" is not in the storage schema"
        );
        let fixed = doc.replace(
            "ip-address: \"${ip}\" } } } }",
            "ip-address: \"${ip}\" } }, stats: { schema: { n-sent: int } } } }",
        );
        let s = parse(&fixed).unwrap();
        assert_eq!(s.views.len(), 3);
    }

    #[test]
    fn json_documents_parse() {
        let doc = r#"{"account": "acme", "name": "x", "views": {"v": {"rules": [{"request": "a", "storage": "a"}]}},
                      "storage": {"schema": {"a": "int"}}}"#;
        assert!(parse(doc).is_ok());
    }

    fn with_rules(rules: &str, schema: &str) -> Result<Schema, String> {
        parse(&format!(
            "account: acme\nname: t\nviews:\n  v:\n    rules:\n{rules}\nstorage:\n  schema:\n{schema}\n"
        ))
    }

    #[test]
    fn consistency_checks_name_the_rule() {
        let schema = "    a: { keys: string, values: int }\n    b: string";
        let unreachable = with_rules("      - { request: x, storage: c }", schema).unwrap_err();
        assert_eq!(
            unreachable,
            "view v rule \"x\": storage path \"c\" is not in the storage schema"
        );
        let too_deep = with_rules("      - { request: x, storage: b.c }", schema).unwrap_err();
        assert!(too_deep.contains("not in the storage schema"), "{too_deep}");
        let dup = with_rules(
            "      - { request: \"x.{n}\", storage: \"a.{n}\" }\n      - { request: \"x.{m}\", storage: \"a.{m}\" }",
            schema,
        )
        .unwrap_err();
        assert!(
            dup.contains("another readable rule answers the same request"),
            "{dup}"
        );
        let dup_ok = with_rules(
            "      - { request: x, storage: b, access: read }\n      - { request: x, storage: b, access: write }",
            schema,
        );
        assert!(dup_ok.is_ok(), "{dup_ok:?}");
        let twice = with_rules(
            "      - { request: \"x.{n}.{n}\", storage: \"a.{n}\" }",
            schema,
        )
        .unwrap_err();
        assert!(
            twice.contains("placeholder {n} is used more than once in the request"),
            "{twice}"
        );
        let missing = with_rules("      - { request: \"x.{n}\", storage: b }", schema).unwrap_err();
        assert!(
            missing.contains("placeholder {n} of the request is not in the storage path"),
            "{missing}"
        );
        let extra = with_rules("      - { request: x, storage: \"a.{n}\" }", schema).unwrap_err();
        assert!(
            extra.contains("placeholder {n} of the storage path is not in the request"),
            "{extra}"
        );
        let access =
            with_rules("      - { request: x, storage: b, access: rw }", schema).unwrap_err();
        assert!(access.contains("unknown access \"rw\""), "{access}");
        let key = with_rules("      - { request: X, storage: b }", schema).unwrap_err();
        assert!(key.contains("rule 1"), "{key}");
    }

    proptest::proptest! {
        /// Damaged documents give an error or a schema, never a panic (the fuzz target does
        /// this at scale).
        #[test]
        fn damaged_documents_do_not_panic(start in 0usize..2000, len in 0usize..40, insert in "[ -~\n]{0,12}") {
            let start = NETWORK.floor_char_boundary(start.min(NETWORK.len()));
            let end = NETWORK.floor_char_boundary((start + len).min(NETWORK.len()));
            let damaged = format!("{}{insert}{}", &NETWORK[..start], &NETWORK[end..]);
            if let Ok(s) = parse(&damaged) {
                let _ = s.validate(&serde_json::json!({"device": {"uuid": "x"}}));
            }
        }

        #[test]
        fn arbitrary_text_does_not_panic(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }
    }

    #[test]
    fn bad_documents() {
        assert!(parse("account: acme\nname: t\n").is_err());
        assert!(parse("- 1").is_err());
        assert!(parse("account: a/b\nname: t\nviews: {v: {rules: [{storage: a}]}}\nstorage: {schema: {a: int}}").unwrap_err().contains("invalid account"));
        assert!(parse("account: a\nname: t\nextra: 1\nviews: {v: {rules: [{storage: a}]}}\nstorage: {schema: {a: int}}").unwrap_err().contains("unknown field \"extra\""));
        assert!(parse("account: a\nname: t\nviews: {v: {rules: [{storage: a}]}}\nstorage: {schema: {a: \"${nope}\"}}").unwrap_err().contains("unknown alias"));
        assert!(parse("account: a\nname: t\nviews: {v: {rules: [{storage: a}]}}\nstorage: {schema: {a: int}}").is_ok());
    }
}
