//! FHIR R4 (4.0.1) JSON at the edge of the platform.
//!
//! Architecture invariant: only this crate (and the HTTP layer that calls it) knows FHIR JSON. It
//! turns a submitted resource into a [`resource::Checked`] — the original JSON kept losslessly plus
//! the few facts the platform reasons about, read through typed views — or into an
//! [`outcome::FhirError`] that says exactly which element is wrong.

pub mod audit_event;
pub mod bundle;
pub mod capability;
pub mod codes;
pub mod consent;
pub mod datetime;
pub mod display;
pub mod json;
pub mod outcome;
pub mod population;
pub mod prescription;
pub mod resource;
pub mod types;

pub use outcome::{ErrorKind, FhirError, Issue};
pub use resource::{check, Checked, PatientLink, Scope};
