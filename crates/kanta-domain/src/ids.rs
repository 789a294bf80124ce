//! Identifiers used inside the platform.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The internal key of a patient (and of a person in the population register). Every patient-scoped
/// row carries it; on Citus it is the distribution column. The HETU is an attribute, never a key in
/// URLs or logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PatientKey(pub i64);

impl fmt::Display for PatientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The FHIR logical id of an `Organization` known to the platform (a care provider, pharmacy, the
/// operator).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrgId(String);

impl OrgId {
    pub fn new(id: impl Into<String>) -> Self {
        OrgId(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an authenticated system (a provider's, pharmacy's or the operator's client) may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientRole {
    /// Writes and reads patient records for its organisation.
    Clinician,
    /// Answers "why is this document (not) shown" for its organisation (R-DOC-12).
    Archivist,
    /// Looks up prescriptions and records dispensations.
    Pharmacy,
    /// Runs the service: feeds the population register, reads operator APIs.
    Operator,
}

impl ClientRole {
    pub const ALL: [ClientRole; 4] = [
        ClientRole::Clinician,
        ClientRole::Archivist,
        ClientRole::Pharmacy,
        ClientRole::Operator,
    ];

    pub fn parse(s: &str) -> Option<ClientRole> {
        match s {
            "clinician" => Some(ClientRole::Clinician),
            "archivist" => Some(ClientRole::Archivist),
            "pharmacy" => Some(ClientRole::Pharmacy),
            "operator" => Some(ClientRole::Operator),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::Clinician => "clinician",
            ClientRole::Archivist => "archivist",
            ClientRole::Pharmacy => "pharmacy",
            ClientRole::Operator => "operator",
        }
    }
}
