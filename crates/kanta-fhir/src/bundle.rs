//! Bundles: reading a `transaction`, walking references, and building `searchset`,
//! `history` and `transaction-response` Bundles.

use crate::outcome::FhirError;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
}

/// One entry of a transaction Bundle.
#[derive(Clone, Debug)]
pub struct Entry {
    pub index: usize,
    pub full_url: Option<String>,
    pub method: Method,
    /// `request.url`: `Type` for POST, `Type/id` for PUT.
    pub url: String,
    pub if_none_exist: Option<String>,
    pub if_match: Option<String>,
    pub resource: Value,
}

impl Entry {
    pub fn expression(&self) -> String {
        format!("Bundle.entry[{}]", self.index)
    }
}

/// Read a transaction Bundle into its entries. Only `POST` (create, conditional create) and `PUT`
/// (update, update-as-create) are accepted.
pub fn parse_transaction(v: Value) -> Result<Vec<Entry>, FhirError> {
    let Value::Object(mut bundle) = v else {
        return Err(FhirError::bad_request("a Bundle must be a JSON object"));
    };
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::bad_request(
            "POST /fhir takes a Bundle of type 'transaction'",
        ));
    }
    match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => {}
        Some(other) => {
            return Err(FhirError::invalid(
                "Bundle.type",
                format!("Bundle.type '{other}' is not supported here; use 'transaction'"),
            ))
        }
        None => return Err(FhirError::invalid("Bundle.type", "Bundle.type is required")),
    }
    let entries = match bundle.remove("entry") {
        Some(Value::Array(a)) => a,
        None => vec![],
        Some(_) => return Err(FhirError::bad_request("Bundle.entry must be an array")),
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut full_urls = std::collections::HashSet::new();
    for (index, e) in entries.into_iter().enumerate() {
        let at = format!("Bundle.entry[{index}]");
        let Value::Object(mut e) = e else {
            return Err(FhirError::bad_request(format!("{at} must be an object")));
        };
        let full_url = match e.get("fullUrl") {
            Some(Value::String(s)) => Some(s.clone()),
            None => None,
            Some(_) => {
                return Err(FhirError::bad_request(format!(
                    "{at}.fullUrl must be a string"
                )))
            }
        };
        if let Some(u) = &full_url {
            if !full_urls.insert(u.clone()) {
                return Err(FhirError::invalid(
                    format!("{at}.fullUrl"),
                    format!("{at}.fullUrl '{u}' appears more than once in the Bundle"),
                ));
            }
        }
        let request = e.get("request").cloned().unwrap_or(Value::Null);
        let method = match request.get("method").and_then(Value::as_str) {
            Some("POST") => Method::Post,
            Some("PUT") => Method::Put,
            Some(m) => {
                return Err(FhirError::invalid(
                    format!("{at}.request.method"),
                    format!("{at}.request.method {m} is not supported in a transaction here (POST and PUT are)"),
                ))
            }
            None => return Err(FhirError::invalid(format!("{at}.request"), format!("{at}.request.method is required"))),
        };
        let url = request
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                FhirError::invalid(
                    format!("{at}.request.url"),
                    format!("{at}.request.url is required"),
                )
            })?
            .to_string();
        let text = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_string);
        let resource = e.remove("resource").ok_or_else(|| {
            FhirError::invalid(
                format!("{at}.resource"),
                format!("{at}.resource is required"),
            )
        })?;
        out.push(Entry {
            index,
            full_url,
            method,
            url,
            if_none_exist: text("ifNoneExist"),
            if_match: text("ifMatch"),
            resource,
        });
    }
    Ok(out)
}

/// Call `f` on every `Reference.reference` string inside `v`.
pub fn for_each_reference_mut(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "reference" {
                    if let Value::String(s) = child {
                        f(s);
                        continue;
                    }
                }
                for_each_reference_mut(child, f);
            }
        }
        Value::Array(items) => {
            for item in items {
                for_each_reference_mut(item, f);
            }
        }
        _ => {}
    }
}

/// Visit every `reference` string inside `v` without changing it.
pub fn visit_references(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::Object(map) => visit_map(map, f),
        Value::Array(items) => items.iter().for_each(|i| visit_references(i, f)),
        _ => {}
    }
}

fn visit_map(map: &serde_json::Map<String, Value>, f: &mut dyn FnMut(&str)) {
    for (k, child) in map {
        match (k.as_str(), child) {
            ("reference", Value::String(s)) => f(s),
            _ => visit_references(child, f),
        }
    }
}

/// How many references a resource holds.
pub fn count_references(resource: &serde_json::Map<String, Value>) -> usize {
    let mut n = 0;
    visit_map(resource, &mut |_| n += 1);
    n
}

/// Every literal reference inside `v`.
pub fn references(v: &Value) -> Vec<String> {
    let mut out = vec![];
    visit_references(v, &mut |s| out.push(s.to_string()));
    out
}

/// Parse `identifier=system|value` (the only conditional-create criterion supported).
pub fn parse_identifier_criterion(query: &str) -> Result<(String, String), FhirError> {
    let bad = || {
        FhirError::bad_request(format!(
            "conditional create supports only 'identifier=<system>|<value>', not '{query}'"
        ))
    };
    let token = query.strip_prefix("identifier=").ok_or_else(bad)?;
    let token = token.replace("%7C", "|").replace("%7c", "|");
    let (system, value) = token.split_once('|').ok_or_else(bad)?;
    if system.is_empty() || value.is_empty() {
        return Err(bad());
    }
    Ok((system.to_string(), value.to_string()))
}

/// One entry of a transaction-response.
pub struct ResponseEntry {
    pub status: &'static str,
    pub location: String,
    pub etag: String,
    pub last_modified: String,
    pub resource: Value,
}

pub fn transaction_response(entries: Vec<ResponseEntry>) -> Value {
    let entry: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            json!({
                "fullUrl": e.location.split("/_history/").next().unwrap_or(&e.location),
                "resource": e.resource,
                "response": {
                    "status": e.status,
                    "location": e.location,
                    "etag": e.etag,
                    "lastModified": e.last_modified,
                }
            })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "transaction-response", "entry": entry })
}

/// A `searchset` Bundle around stored JSON that is passed through unparsed (the hot read path):
/// each item is (type, id, the stored JSON text of one resource), written into the Bundle as it is.
pub fn searchset_raw(
    base: &str,
    items: &[(&str, &str, &str)],
    self_url: &str,
    next_url: Option<&str>,
) -> String {
    // A JSON string literal (serialising a str cannot fail).
    fn string(out: &mut String, s: &str) {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
    let size: usize = items
        .iter()
        .map(|(t, id, json)| json.len() + base.len() + t.len() + id.len() + 64)
        .sum();
    let mut out = String::with_capacity(size + self_url.len() + 128);
    out.push_str(
        r#"{"resourceType":"Bundle","type":"searchset","link":[{"relation":"self","url":"#,
    );
    string(&mut out, self_url);
    out.push('}');
    if let Some(n) = next_url {
        out.push_str(r#",{"relation":"next","url":"#);
        string(&mut out, n);
        out.push('}');
    }
    out.push_str(r#"],"entry":["#);
    for (i, (t, id, json)) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"fullUrl":"#);
        string(&mut out, &format!("{base}/{t}/{id}"));
        out.push_str(r#","resource":"#);
        out.push_str(json);
        out.push_str(r#","search":{"mode":"match"}}"#);
    }
    out.push_str("]}");
    out
}

/// A `searchset` or `history` Bundle with `self` and (optionally) `next` links.
pub fn bundle_of(
    kind: &str,
    base: &str,
    resources: Vec<Value>,
    self_url: &str,
    next_url: Option<String>,
    total: Option<usize>,
) -> Value {
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let full_url = format!(
                "{base}/{}/{}",
                r.get("resourceType").and_then(Value::as_str).unwrap_or(""),
                r.get("id").and_then(Value::as_str).unwrap_or("")
            );
            if kind == "searchset" {
                json!({ "fullUrl": full_url, "resource": r, "search": { "mode": "match" } })
            } else {
                json!({ "fullUrl": full_url, "resource": r })
            }
        })
        .collect();
    let mut link = vec![json!({ "relation": "self", "url": self_url })];
    if let Some(n) = next_url {
        link.push(json!({ "relation": "next", "url": n }));
    }
    let mut b = json!({ "resourceType": "Bundle", "type": kind, "link": link, "entry": entry });
    if let Some(t) = total {
        b["total"] = json!(t);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_entries_are_read_and_bad_ones_named() {
        let ok = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=a|b"}},
            {"resource": {"resourceType": "Observation"}, "request": {"method": "PUT", "url": "Observation/x", "ifMatch": "W/\"1\""}}
        ]});
        let e = parse_transaction(ok).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].if_none_exist.as_deref(), Some("identifier=a|b"));
        assert_eq!(e[1].method, Method::Put);
        for (bad, text) in [
            (
                json!({"resourceType": "Bundle", "type": "batch"}),
                "not supported",
            ),
            (json!({"resourceType": "Patient"}), "transaction"),
            (
                json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {}, "request": {"method": "DELETE", "url": "Patient/1"}}]}),
                "DELETE",
            ),
            (
                json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST", "url": "Patient"}}]}),
                "entry[0].resource is required",
            ),
            (
                json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": "urn:uuid:1", "resource": {}, "request": {"method": "POST", "url": "Patient"}},
                {"fullUrl": "urn:uuid:1", "resource": {}, "request": {"method": "POST", "url": "Patient"}}]}),
                "more than once",
            ),
        ] {
            let msg = parse_transaction(bad).unwrap_err().to_string();
            assert!(msg.contains(text), "{msg}");
        }
    }

    #[test]
    fn raw_searchset_equals_the_parsed_one() {
        let r = r#"{"resourceType":"Observation","id":"o1","status":"final"}"#;
        let raw: Value = serde_json::from_str(&searchset_raw(
            "http://x/fhir",
            &[("Observation", "o1", r)],
            "http://x/fhir/Observation?patient=p",
            Some("n"),
        ))
        .unwrap();
        let parsed = bundle_of(
            "searchset",
            "http://x/fhir",
            vec![serde_json::from_str(r).unwrap()],
            "http://x/fhir/Observation?patient=p",
            Some("n".into()),
            None,
        );
        assert_eq!(raw, parsed);
    }

    /// Several entries, no next link, an empty page, and a self URL that needs escaping.
    #[test]
    fn raw_searchset_is_json_for_any_page() {
        let a = r#"{"resourceType":"Observation","id":"a","note":[{"text":"\"quoted\" ä"}]}"#;
        let b = r#"{"resourceType":"Observation","id":"b"}"#;
        let self_url = "http://x/fhir/Observation?patient=p&x=\"y\"";
        for items in [
            vec![],
            vec![("Observation", "a", a)],
            vec![("Observation", "a", a), ("Observation", "b", b)],
        ] {
            let text = searchset_raw("http://x/fhir", &items, self_url, None);
            let raw: Value = serde_json::from_str(&text).unwrap();
            let parsed = bundle_of(
                "searchset",
                "http://x/fhir",
                items
                    .iter()
                    .map(|(_, _, j)| serde_json::from_str(j).unwrap())
                    .collect(),
                self_url,
                None,
                None,
            );
            assert_eq!(raw, parsed, "{text}");
        }
    }

    #[test]
    fn references_are_found_everywhere() {
        let mut v = json!({"subject": {"reference": "urn:uuid:1"}, "x": [{"y": {"reference": "Organization/a"}}], "reference": 3});
        assert_eq!(references(&v), vec!["urn:uuid:1", "Organization/a"]);
        for_each_reference_mut(&mut v, &mut |s| s.push('!'));
        assert_eq!(v["subject"]["reference"], "urn:uuid:1!");
    }

    #[test]
    fn identifier_criterion() {
        assert_eq!(
            parse_identifier_criterion("identifier=urn:oid:1.2.246.21%7C010594Y9032")
                .unwrap()
                .1,
            "010594Y9032"
        );
        assert!(parse_identifier_criterion("name=x").is_err());
        assert!(parse_identifier_criterion("identifier=novalue").is_err());
    }
}
