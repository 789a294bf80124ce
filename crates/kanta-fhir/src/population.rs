//! The population-register import format (see `docs/fhir-conventions.md`): a `collection` Bundle of
//! `Patient` and `RelatedPerson` resources, read into the register's facts.

use crate::codes;
use crate::datetime;
use crate::outcome::FhirError;
use crate::types;
use kanta_domain::hetu::Hetu;
use kanta_domain::population::{CustodyAgreement, Person, PersonRecord, Relation, RelationKind};
use serde_json::Value;
use std::collections::HashMap;

/// Read an import Bundle. All-or-nothing: the first bad entry refuses the whole Bundle, naming it.
pub fn parse_import(bundle: &Value) -> Result<Vec<PersonRecord>, FhirError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::bad_request(
            "the population import is a Bundle of type 'collection'",
        ));
    }
    if bundle.get("type").and_then(Value::as_str) != Some("collection") {
        return Err(FhirError::invalid(
            "Bundle.type",
            "the population import Bundle must have type 'collection'",
        ));
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut records: Vec<PersonRecord> = vec![];
    let mut index: HashMap<Hetu, usize> = HashMap::new();
    let mut relations: Vec<(String, Relation)> = vec![];
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("Bundle.entry[{i}].resource");
        let resource = entry
            .get("resource")
            .ok_or_else(|| FhirError::invalid(&at, format!("{at} is required")))?;
        let fail = |e: FhirError| e.within(&at);
        match resource.get("resourceType").and_then(Value::as_str) {
            Some("Patient") => {
                let person = person(resource).map_err(fail)?;
                if index.insert(person.hetu.clone(), records.len()).is_some() {
                    return Err(FhirError::invalid(
                        &at,
                        format!("{at}: the same person appears twice in the import"),
                    ));
                }
                records.push(PersonRecord {
                    person,
                    relations: vec![],
                });
            }
            Some("RelatedPerson") => {
                relations.push((at.clone(), relation(resource).map_err(fail)?))
            }
            other => {
                return Err(FhirError::invalid(
                    &at,
                    format!(
                    "{at}: only Patient and RelatedPerson belong in a population import, not {}",
                    other.unwrap_or("(none)")
                ),
                ))
            }
        }
    }
    for (at, rel) in relations {
        let Some(&i) = index.get(&rel.subject) else {
            return Err(FhirError::invalid(
                format!("{at}.patient"),
                format!("{at}.patient: the person the relation is about must be a Patient in the same import"),
            ));
        };
        if rel.subject == rel.holder {
            return Err(FhirError::invalid(
                &at,
                format!("{at}: a person cannot hold a relation about themselves"),
            ));
        }
        records[i].relations.push(rel);
    }
    Ok(records)
}

fn hetu_of(identifiers: &[types::Identifier], expression: &str) -> Result<Hetu, FhirError> {
    let ident = identifiers
        .iter()
        .find(|i| i.system.as_deref() == Some(codes::HETU_SYSTEM))
        .ok_or_else(|| {
            FhirError::invalid(
                expression,
                format!(
                    "{expression}: a HETU identifier ({}) is required",
                    codes::HETU_SYSTEM
                ),
            )
        })?;
    let value = ident.value.as_deref().unwrap_or("");
    Hetu::parse(value).map_err(|e| {
        FhirError::invalid(format!("{expression}.value"), format!("invalid HETU: {e}"))
    })
}

fn person(resource: &Value) -> Result<Person, FhirError> {
    let p: types::Patient = serde_json::from_value(resource.clone()).map_err(|e| {
        FhirError::bad_request(format!(
            "Patient: {}",
            e.to_string().split(" at line ").next().unwrap_or("")
        ))
    })?;
    let hetu = hetu_of(&p.identifier, "Patient.identifier")?;
    let name = p
        .name
        .iter()
        .find(|n| n.use_.as_deref() == Some("official"))
        .or_else(|| p.name.first())
        .ok_or_else(|| {
            FhirError::invalid(
                "Patient.name",
                "Patient.name is required in the population register",
            )
        })?;
    let family_name = name
        .family
        .clone()
        .filter(|f| !f.trim().is_empty())
        .ok_or_else(|| {
            FhirError::invalid("Patient.name.family", "Patient.name.family is required")
        })?;
    let birth_date = match &p.birth_date {
        Some(b) => {
            let d = datetime::parse_date(b).ok_or_else(|| {
                FhirError::invalid("Patient.birthDate", "birthDate must be YYYY-MM-DD")
            })?;
            if d != hetu.birth_date() {
                return Err(FhirError::invalid(
                    "Patient.birthDate",
                    "birthDate does not agree with the birth date in the HETU",
                ));
            }
            d
        }
        None => hetu.birth_date(),
    };
    let deceased = match (&p.deceased_date_time, p.deceased_boolean) {
        (Some(s), _) => Some(
            datetime::parse_start(s)
                .ok_or_else(|| {
                    FhirError::invalid(
                        "Patient.deceasedDateTime",
                        "deceasedDateTime is not a valid date",
                    )
                })?
                .date(),
        ),
        (None, Some(true)) => {
            return Err(FhirError::invalid(
                "Patient.deceased[x]",
                "the register needs the date of death (deceasedDateTime)",
            ))
        }
        _ => None,
    };
    let base: types::Base = serde_json::from_value(resource.clone())
        .map_err(|_| FhirError::bad_request("Patient.meta is malformed"))?;
    let non_disclosure = base.meta.security.iter().any(|c| {
        c.system.as_deref() == Some(codes::SECURITY_LABEL_SYSTEM)
            && c.code.as_deref() == Some(codes::TURVAKIELTO)
    });
    Ok(Person {
        hetu,
        family_name,
        given_names: name.given.join(" "),
        birth_date,
        deceased,
        non_disclosure,
    })
}

fn relation(resource: &Value) -> Result<Relation, FhirError> {
    let r: types::RelatedPerson = serde_json::from_value(resource.clone()).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or("");
        if msg.contains("missing field `patient`") {
            FhirError::invalid("RelatedPerson.patient", "RelatedPerson.patient is required")
        } else {
            FhirError::bad_request(format!("RelatedPerson: {msg}"))
        }
    })?;
    let subject_ident = r.patient.identifier.clone().into_iter().collect::<Vec<_>>();
    let subject = hetu_of(&subject_ident, "RelatedPerson.patient.identifier")?;
    let holder = hetu_of(&r.identifier, "RelatedPerson.identifier")?;
    let code = r
        .relationship
        .iter()
        .flat_map(|c| c.coding.iter())
        .find(|c| c.system.as_deref() == Some(codes::POPULATION_RELATION_SYSTEM))
        .and_then(|c| c.code.clone())
        .ok_or_else(|| {
            FhirError::invalid(
                "RelatedPerson.relationship",
                format!(
                    "RelatedPerson.relationship needs a coding from {}",
                    codes::POPULATION_RELATION_SYSTEM
                ),
            )
        })?;
    let kind = RelationKind::from_code(&code).ok_or_else(|| {
        FhirError::invalid(
            "RelatedPerson.relationship",
            format!(
                "unknown relation '{code}' (guardian, right-to-information, guardian-of-interests)"
            ),
        )
    })?;
    let date = |s: &Option<String>, what: &str| -> Result<Option<time::Date>, FhirError> {
        s.as_deref()
            .map(|s| {
                datetime::parse_start(s).map(|t| t.date()).ok_or_else(|| {
                    FhirError::invalid(
                        format!("RelatedPerson.period.{what}"),
                        format!("period.{what} is not a valid date"),
                    )
                })
            })
            .transpose()
    };
    let (start, end) = match &r.period {
        Some(p) => (date(&p.start, "start")?, date(&p.end, "end")?),
        None => (None, None),
    };
    let custody = match r
        .extension
        .iter()
        .find(|e| e.url == codes::CUSTODY_AGREEMENT_URL)
    {
        None => None,
        Some(e) => {
            if kind != RelationKind::Guardian {
                return Err(FhirError::invalid(
                    "RelatedPerson.extension",
                    "a custody agreement belongs only to a guardian",
                ));
            }
            let c = e
                .value_coding
                .as_ref()
                .and_then(|c| c.code.as_deref())
                .unwrap_or("");
            Some(CustodyAgreement::from_code(c).ok_or_else(|| {
                FhirError::invalid(
                    "RelatedPerson.extension",
                    format!("unknown custody agreement code '{c}'"),
                )
            })?)
        }
    };
    Ok(Relation {
        kind,
        subject,
        holder,
        start,
        end,
        custody,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pat(hetu: &str, family: &str) -> Value {
        json!({"resource": {"resourceType": "Patient", "identifier": [{"system": codes::HETU_SYSTEM, "value": hetu}], "name": [{"family": family, "given": ["A", "B"]}]}})
    }

    fn rel(child: &str, holder: &str, code: &str) -> Value {
        json!({"resource": {"resourceType": "RelatedPerson",
            "patient": {"identifier": {"system": codes::HETU_SYSTEM, "value": child}},
            "identifier": [{"system": codes::HETU_SYSTEM, "value": holder}],
            "relationship": [{"coding": [{"system": codes::POPULATION_RELATION_SYSTEM, "code": code}]}],
            "extension": [{"url": codes::CUSTODY_AGREEMENT_URL, "valueCoding": {"system": codes::CUSTODY_AGREEMENT_SYSTEM, "code": "joint"}}]}})
    }

    #[test]
    fn a_guardian_relation_is_read_r_minor_1() {
        let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [pat("020516C903K", "Lapsi"), pat("010594Y9032", "Äiti"), rel("020516C903K", "010594Y9032", "guardian")]});
        let recs = parse_import(&b).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].person.given_names, "A B");
        assert_eq!(recs[0].relations.len(), 1);
        assert_eq!(recs[0].relations[0].custody, Some(CustodyAgreement::Joint));
    }

    #[test]
    fn bad_imports_name_the_entry() {
        for (entries, text) in [
            (vec![pat("020516C903L", "X")], "entry[0]"),
            (
                vec![pat("020516C903K", "X"), pat("020516C903K", "Y")],
                "twice",
            ),
            (
                vec![
                    pat("020516C903K", "X"),
                    rel("010594Y9032", "020516C903K", "guardian"),
                ],
                "same import",
            ),
            (
                vec![
                    pat("020516C903K", "X"),
                    rel("020516C903K", "010594Y9032", "uncle"),
                ],
                "unknown relation",
            ),
            (
                vec![
                    pat("020516C903K", "X"),
                    rel("020516C903K", "010594Y9032", "right-to-information"),
                ],
                "only to a guardian",
            ),
            (
                vec![json!({"resource": {"resourceType": "Observation"}})],
                "only Patient and RelatedPerson",
            ),
        ] {
            let b = json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
            let e = parse_import(&b).unwrap_err().to_string();
            assert!(e.contains(text), "{e}");
        }
    }
}
