//! Audit records, modelled on FHIR AuditEvent and IHE BALP (R-OPS-3, R-OPS-4, R-VIEW-5,
//! R-CONSENT-3): one record per patient whose data was touched, naming who, on whose behalf, what,
//! when, with what outcome, in which request.
//!
//! A record's canonical bytes are its JSON serialisation (fields in declaration order); they are
//! what the Merkle tree hashes, so a stored record that changes no longer matches its leaf.

use crate::access::Basis;
use crate::ids::{OrgId, PatientKey};
use serde::{Deserialize, Serialize};

/// Who acted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Actor {
    /// A citizen, by their patient key (never their HETU).
    Citizen { person: PatientKey },
    /// A system acting for an organisation (provider, pharmacy), optionally naming the professional.
    Organisation {
        org: OrgId,
        client_id: String,
        professional: Option<String>,
        purpose: Option<String>,
    },
    /// The operator of the platform.
    Operator { client_id: String },
    /// The platform itself (imports, scheduled jobs).
    System { component: String },
}

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Login,
    FailedLogin,
    Logout,
    /// Began acting for another person (a child, a principal).
    SwitchActingFor,
    Read,
    Search,
    Create,
    Update,
    Export,
    Import,
    /// Read of the audit log itself.
    AuditRead,
    /// The person flagged a log entry they do not recognise, for the controller's data protection
    /// officer (R-X-2).
    Flagged,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Success,
    Failure,
}

/// The schema version new records are written with. Version 1 (records written before the access
/// decision, 2026-11) had no `schema` and no `basis`; they read as version 1 with no basis. A new
/// field is added with a default and a new version, so that what an old leaf says never changes.
pub const AUDIT_SCHEMA: u32 = 2;

fn schema_v1() -> u32 {
    1
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The record's schema version ([`AUDIT_SCHEMA`] for new records; 1 when absent).
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// Milliseconds since the epoch.
    pub recorded_at: i64,
    /// The patient whose data was touched; `None` for records about no patient (e.g. a failed login
    /// of an unknown person).
    pub patient: Option<PatientKey>,
    pub actor: Actor,
    /// The person the actor acted for, if not themselves.
    pub on_behalf_of: Option<PatientKey>,
    pub action: Action,
    /// `Type/id` of each resource touched (for searches: the resources returned).
    pub entities: Vec<String>,
    /// For searches: the query, with personal identifiers removed.
    pub query: Option<String>,
    pub outcome: Outcome,
    pub request_id: Option<String>,
    /// Why the access was permitted (the access decision's basis: ground, role, purpose of use).
    /// Version 2 on; `None` for what needed no decision (a login, a failed login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<Basis>,
}

impl AuditRecord {
    /// The bytes hashed into the log.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings, numbers and enums cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_round_trip_and_change_with_any_field() {
        let r = AuditRecord {
            schema: AUDIT_SCHEMA,
            recorded_at: 1,
            patient: Some(PatientKey(7)),
            actor: Actor::Organisation {
                org: OrgId::new("org-hus"),
                client_id: "c".into(),
                professional: None,
                purpose: Some("care".into()),
            },
            on_behalf_of: None,
            action: Action::Read,
            entities: vec!["Observation/1".into()],
            query: None,
            outcome: Outcome::Success,
            request_id: Some("r".into()),
            basis: Some(Basis {
                ground: crate::access::Ground::OwnRegister,
                role: Some(crate::ids::ClientRole::Clinician),
                purpose: None,
                reason: None,
            }),
        };
        let b = r.canonical_bytes();
        let back: AuditRecord = serde_json::from_slice(&b).unwrap();
        assert_eq!(back, r);
        // Every field, each changed alone, changes the bytes (issue 30: the test's name said "any
        // field" and it changed one). A field added to the record without a row here fails to
        // compile: the destructuring names them all.
        let AuditRecord {
            schema: _,
            recorded_at: _,
            patient: _,
            actor: _,
            on_behalf_of: _,
            action: _,
            entities: _,
            query: _,
            outcome: _,
            request_id: _,
            basis: _,
        } = &r;
        type Change = Box<dyn Fn(&mut AuditRecord)>;
        let changes: Vec<(&str, Change)> = vec![
            ("schema", Box::new(|x| x.schema = 1)),
            ("recorded_at", Box::new(|x| x.recorded_at = 2)),
            ("patient", Box::new(|x| x.patient = Some(PatientKey(8)))),
            ("patient none", Box::new(|x| x.patient = None)),
            (
                "actor",
                Box::new(|x| {
                    x.actor = Actor::Operator {
                        client_id: "c".into(),
                    }
                }),
            ),
            (
                "actor's professional",
                Box::new(|x| {
                    if let Actor::Organisation { professional, .. } = &mut x.actor {
                        *professional = Some("p".into());
                    }
                }),
            ),
            (
                "on_behalf_of",
                Box::new(|x| x.on_behalf_of = Some(PatientKey(9))),
            ),
            ("action", Box::new(|x| x.action = Action::Search)),
            (
                "entities",
                Box::new(|x| x.entities[0] = "Observation/2".into()),
            ),
            (
                "entities added",
                Box::new(|x| x.entities.push("Condition/1".into())),
            ),
            ("query", Box::new(|x| x.query = Some("q".into()))),
            ("outcome", Box::new(|x| x.outcome = Outcome::Failure)),
            ("request_id", Box::new(|x| x.request_id = None)),
            ("basis", Box::new(|x| x.basis = None)),
            (
                "basis ground",
                Box::new(|x| {
                    if let Some(b) = &mut x.basis {
                        b.ground = crate::access::Ground::Emergency;
                    }
                }),
            ),
            (
                "basis reason",
                Box::new(|x| {
                    if let Some(b) = &mut x.basis {
                        b.reason = Some("tajuton".into());
                    }
                }),
            ),
        ];
        for (field, change) in changes {
            let mut other = r.clone();
            change(&mut other);
            assert_ne!(other, r, "{field}: the change changes nothing");
            assert_ne!(other.canonical_bytes(), b, "{field}");
        }
    }

    #[test]
    fn a_version_1_record_reads_as_version_1_without_basis_and_keeps_its_bytes() {
        let v1 = r#"{"recorded_at":1,"patient":7,"actor":{"kind":"citizen","person":7},"on_behalf_of":null,"action":"read","entities":[],"query":null,"outcome":"success","request_id":null}"#;
        let r: AuditRecord = serde_json::from_str(v1).unwrap();
        assert_eq!((r.schema, r.basis.clone()), (1, None));
        // Its leaf covers the stored bytes, never a re-serialisation: nothing to re-encode.
        let v2 = String::from_utf8(
            AuditRecord {
                schema: AUDIT_SCHEMA,
                ..r
            }
            .canonical_bytes(),
        )
        .unwrap();
        assert!(v2.starts_with(r#"{"schema":2,"#), "{v2}");
    }
}
