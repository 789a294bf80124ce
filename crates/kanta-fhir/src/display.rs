//! The facts the MyKanta display rules need, read off a stored resource (the markers in
//! docs/fhir-conventions.md). The rules themselves are `kanta_domain::display::decide`.
//!
//! Where a marker is present but unreadable, the reading errs towards hiding: an unparseable
//! release date counts as a delay without end.

use crate::codes;
use crate::json::{str_at, Node};
use kanta_domain::display::{CareSetting, ContentKind, DocumentFacts, MainView, Section};
use serde_json::Value;

/// What the caller knows beyond the resource itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// The setting of the service event the resource is attached to (looked up by the caller from
    /// [`encounter_reference`]); ignored for an Encounter, which is its own service event.
    pub service_event: Option<CareSetting>,
    /// For an Encounter: how many care documents point to it.
    pub care_documents: usize,
    /// Whether this is the current version.
    pub latest_version: bool,
    /// The record's own date (ms), compared with `provider_joined_at` (R-VIEW-8).
    pub recorded_at: i64,
    pub provider_joined_at: Option<i64>,
}

/// LOINC document types that are summaries (shown from ward care, R-DOC-7).
const SUMMARY_LOINC: [&str; 2] = ["18842-5", "34133-9"];

/// The Kanta convention for the date an organisation joined the platform (docs/fhir-conventions.md).
pub const JOINED_EXTENSION_URL: &str = "urn:kanta:ext:joined-kanta";

/// When an Organization joined the platform (R-VIEW-8): 00:00 Finnish local time of its
/// `valueDate` (the joining day is a Finnish calendar day: a record made at 01:00 Helsinki time on
/// that day is after joining), or the instant of a `valueDateTime`. An unreadable value counts as
/// never joined (nothing shown).
pub fn provider_joined_at(organisation: &Value) -> Option<i64> {
    let ext = organisation
        .get("extension")
        .and_then(Value::as_array)?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(JOINED_EXTENSION_URL))?;
    let when = match ext.get("valueDate").and_then(Value::as_str) {
        Some(d) => crate::datetime::parse_date(d).map(crate::datetime::helsinki_midnight),
        None => ext
            .get("valueDateTime")
            .and_then(Value::as_str)
            .and_then(crate::datetime::parse_start)
            .map(crate::datetime::millis),
    };
    Some(when.unwrap_or(i64::MAX))
}

/// The service event a care document is attached to: `encounter`, or `context.encounter[0]` on a
/// DocumentReference.
pub fn encounter_reference<'a>(resource: impl Node<'a>) -> Option<&'a str> {
    str_at(resource, "/encounter/reference")
        .or_else(|| str_at(resource, "/context/encounter/0/reference"))
}

/// The extension of `url` among a node's `extension`s.
fn extension<'a, N: Node<'a>>(node: N, url: &str) -> Option<N> {
    node.field("extension")?
        .items()
        .find(|e| e.field("url").and_then(Node::text) == Some(url))
}

/// The minor's disclosure code recorded at a service event (R-MINOR-3): the `restriction-parent`
/// extension's coding in the THL code system. `None`: no code (a system not updated for minors'
/// data); a coding of another system reads as unreadable (fail closed).
pub fn minor_disclosure<'a>(
    encounter: impl Node<'a>,
) -> Option<kanta_domain::acting::MinorDisclosure> {
    let ext = extension(encounter, codes::RESTRICTION_PARENT_URL)?;
    let coding = ext.field("valueCoding");
    let system = coding.and_then(|c| c.field("system")).and_then(Node::text);
    let code = coding.and_then(|c| c.field("code")).and_then(Node::text);
    Some(match (system, code) {
        (Some(codes::RESTRICTION_PARENT_SYSTEM), Some(c)) => {
            kanta_domain::acting::MinorDisclosure::from_code(c)
        }
        _ => kanta_domain::acting::MinorDisclosure::Unreadable,
    })
}

/// An Encounter's care setting: inpatient for `IMP`, `ACUTE`, `NONAC` (v3-ActCode), outpatient
/// otherwise.
pub fn care_setting<'a>(encounter: impl Node<'a>) -> CareSetting {
    match str_at(encounter, "/class/code") {
        Some("IMP" | "ACUTE" | "NONAC") => CareSetting::Inpatient,
        _ => CareSetting::Outpatient,
    }
}

/// Whether the resource (this version) is cancelled: `status` or, on a Condition,
/// `verificationStatus` is `entered-in-error`.
pub fn cancelled<'a>(resource: impl Node<'a>) -> bool {
    resource.field("status").and_then(Node::text) == Some("entered-in-error")
        || codings(resource.field("verificationStatus")).any(|(_, code)| code == "entered-in-error")
}

/// The `(system, code)` pairs of an array of Codings (a CodeableConcept's `coding`, `meta.tag`,
/// `meta.security`).
fn system_codes<'a, N: Node<'a>>(list: Option<N>) -> impl Iterator<Item = (&'a str, &'a str)> {
    list.into_iter().flat_map(Node::items).filter_map(|c| {
        Some((
            c.field("system").and_then(Node::text).unwrap_or(""),
            c.field("code").and_then(Node::text)?,
        ))
    })
}

fn codings<'a, N: Node<'a>>(concept: Option<N>) -> impl Iterator<Item = (&'a str, &'a str)> {
    system_codes(concept.and_then(|c| c.field("coding")))
}

fn meta_list<'a, N: Node<'a>>(
    resource: N,
    field: &str,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    system_codes(resource.field("meta").and_then(|m| m.field(field)))
}

/// The document's main view: a local-view tag wins (R-DOC-6), then the national view.
pub fn main_view<'a>(resource: impl Node<'a>) -> MainView {
    let tags: Vec<(&str, &str)> = meta_list(resource, "tag").collect();
    if tags.iter().any(|(s, _)| *s == codes::LOCAL_VIEW_SYSTEM) {
        return MainView::Local;
    }
    tags.iter()
        .find(|(s, _)| *s == codes::NATIONAL_VIEW_SYSTEM)
        .map_or(MainView::Missing, |(_, c)| {
            MainView::National((*c).to_string())
        })
}

/// The instant (ms) display is delayed until, if the resource carries the marker.
pub fn delayed_until<'a>(resource: impl Node<'a>) -> Option<i64> {
    let ext = extension(
        resource.field("meta")?,
        codes::RELEASE_FOR_PATIENT_VIEWING_URL,
    )?;
    let when = ext
        .field("valueDateTime")
        .and_then(Node::text)
        .and_then(crate::datetime::parse_start)
        .map(crate::datetime::millis);
    Some(when.unwrap_or(i64::MAX))
}

fn content_kind<'a>(resource: impl Node<'a>) -> ContentKind {
    let t = resource
        .field("resourceType")
        .and_then(Node::text)
        .unwrap_or("");
    if t.starts_with("Medication") {
        return ContentKind::Medication;
    }
    if matches!(t, "Composition" | "DocumentReference")
        && codings(resource.field("type"))
            .any(|(s, c)| s == "http://loinc.org" && SUMMARY_LOINC.contains(&c))
    {
        return ContentKind::Summary;
    }
    ContentKind::Other
}

/// Everything the display rules need about one stored resource.
pub fn document_facts<'a>(resource: impl Node<'a>, ctx: &Context) -> DocumentFacts {
    let is_service_event = resource.field("resourceType").and_then(Node::text) == Some("Encounter");
    DocumentFacts {
        is_service_event,
        service_event: if is_service_event {
            Some(care_setting(resource))
        } else {
            ctx.service_event
        },
        care_documents: ctx.care_documents,
        latest_version: ctx.latest_version,
        latest_cancelled: cancelled(resource),
        delayed_until: delayed_until(resource),
        other_person: meta_list(resource, "security")
            .any(|(s, c)| s == codes::KANTA_SECURITY_SYSTEM && c == "other-person"),
        view: main_view(resource),
        form: meta_list(resource, "tag")
            .any(|(s, c)| s == codes::DOCUMENT_FORM_SYSTEM && c == "form"),
        content: content_kind(resource),
        recorded_at: ctx.recorded_at,
        provider_joined_at: ctx.provider_joined_at,
    }
}

/// The MyKanta section a stored resource is listed under (R-VIEW-1, R-VIEW-2), or none (record text
/// of a specialty view, shown with its visit; the patient's own resource; shared data). Decided by
/// the resource type and, where one type serves several sections, by its category or main view.
pub fn section(resource: &Value) -> Option<Section> {
    let t = resource.get("resourceType").and_then(Value::as_str)?;
    let view = match main_view(resource) {
        MainView::National(v) => Some(v),
        _ => None,
    };
    let category = |code: &str| {
        resource
            .get("category")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| codings(Some(c)).any(|(_, c)| c == code))
    };
    Some(match t {
        "Encounter" => Section::Visits,
        "Condition" => Section::Diagnoses,
        "Observation" if category("laboratory") || view.as_deref() == Some("LAB") => Section::Lab,
        "Observation" => Section::Measurements,
        "DiagnosticReport" | "ImagingStudy"
            if t == "ImagingStudy"
                || category("RAD")
                || category("imaging")
                || view.as_deref() == Some("RTG") =>
        {
            Section::Imaging
        }
        "DiagnosticReport" => Section::Lab,
        "ServiceRequest" => Section::Referrals,
        "AllergyIntolerance" | "Flag" => Section::Risks,
        "Immunization" => Section::Vaccinations,
        "Procedure" if view.as_deref() == Some("SUU") => Section::OralHealth,
        "Procedure" => Section::Procedures,
        "CarePlan" => Section::CarePlans,
        "DocumentReference" => Section::Certificates,
        "MedicationRequest" | "MedicationDispense" => Section::Prescriptions,
        // Record text goes to a section when its main view is that section's; otherwise it is read
        // with its visit.
        "Composition" => match view.as_deref() {
            Some("SUU") => Section::OralHealth,
            Some("TOD") => Section::Certificates,
            Some("HOISU") => Section::CarePlans,
            Some("RTG") => Section::Imaging,
            Some("LAB") => Section::Lab,
            Some("LÄH") => Section::Referrals,
            Some("TMP") => Section::Procedures,
            Some("RIS") => Section::Risks,
            Some("ROK") => Section::Vaccinations,
            Some("MIT") => Section::Measurements,
            Some("166") => Section::Diagnoses,
            _ => return None,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context {
            service_event: Some(CareSetting::Outpatient),
            care_documents: 0,
            latest_version: true,
            recorded_at: 0,
            provider_joined_at: None,
        }
    }

    #[test]
    fn markers_are_read() {
        let r = json!({
            "resourceType": "Composition", "status": "final",
            "meta": {
                "tag": [{"system": codes::NATIONAL_VIEW_SYSTEM, "code": "YLE"}, {"system": codes::DOCUMENT_FORM_SYSTEM, "code": "form"}],
                "security": [{"system": codes::KANTA_SECURITY_SYSTEM, "code": "other-person"}],
                "extension": [{"url": codes::RELEASE_FOR_PATIENT_VIEWING_URL, "valueDateTime": "2026-12-01T00:00:00+02:00"}]
            },
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
            "encounter": {"reference": "Encounter/e1"}
        });
        let f = document_facts(&r, &ctx());
        assert_eq!(f.view, MainView::National("YLE".into()));
        assert!(f.form && f.other_person && !f.latest_cancelled && !f.is_service_event);
        assert_eq!(f.delayed_until, Some(1_796_076_000_000));
        assert_eq!(f.content, ContentKind::Summary);
        assert_eq!(encounter_reference(&r), Some("Encounter/e1"));
    }

    #[test]
    fn absent_or_odd_markers() {
        let plain = json!({"resourceType": "Observation", "status": "final"});
        let f = document_facts(&plain, &ctx());
        assert_eq!(f.view, MainView::Missing);
        assert!(!f.form && !f.other_person && f.delayed_until.is_none());
        assert_eq!(f.content, ContentKind::Other);
        // A local view wins over a national one.
        let both = json!({"resourceType": "Observation", "meta": {"tag": [
            {"system": codes::NATIONAL_VIEW_SYSTEM, "code": "LAB"}, {"system": codes::LOCAL_VIEW_SYSTEM, "code": "X"}]}});
        assert_eq!(main_view(&both), MainView::Local);
        // An unreadable release date keeps the data hidden.
        let odd = json!({"resourceType": "Observation", "meta": {"extension": [
            {"url": codes::RELEASE_FOR_PATIENT_VIEWING_URL, "valueDateTime": "soon"}]}});
        assert_eq!(delayed_until(&odd), Some(i64::MAX));
        // Cancelled by status, or a Condition by verification status.
        assert!(cancelled(&json!({"status": "entered-in-error"})));
        assert!(cancelled(
            &json!({"verificationStatus": {"coding": [{"code": "entered-in-error"}]}})
        ));
        assert!(!cancelled(
            &json!({"verificationStatus": {"coding": [{"code": "confirmed"}]}})
        ));
        assert_eq!(
            content_kind(&json!({"resourceType": "MedicationStatement"})),
            ContentKind::Medication
        );
        assert_eq!(
            encounter_reference(&json!({"context": {"encounter": [{"reference": "Encounter/x"}]}})),
            Some("Encounter/x")
        );
    }

    #[test]
    fn an_encounter_is_its_own_service_event() {
        for (class, setting) in [
            ("AMB", CareSetting::Outpatient),
            ("IMP", CareSetting::Inpatient),
            ("ACUTE", CareSetting::Inpatient),
        ] {
            let e = json!({"resourceType": "Encounter", "class": {"code": class}});
            let f = document_facts(
                &e,
                &Context {
                    service_event: None,
                    ..ctx()
                },
            );
            assert!(f.is_service_event);
            assert_eq!(f.service_event, Some(setting), "{class}");
        }
    }

    #[test]
    fn resources_fall_into_their_sections() {
        let view =
            |code: &str| json!({"tag": [{"system": codes::NATIONAL_VIEW_SYSTEM, "code": code}]});
        let cat = |code: &str| json!([{"coding": [{"system": "x", "code": code}]}]);
        let cases = [
            (json!({"resourceType": "Encounter"}), Some(Section::Visits)),
            (
                json!({"resourceType": "Condition"}),
                Some(Section::Diagnoses),
            ),
            (
                json!({"resourceType": "Observation", "category": cat("laboratory")}),
                Some(Section::Lab),
            ),
            (
                json!({"resourceType": "Observation", "meta": view("LAB")}),
                Some(Section::Lab),
            ),
            (
                json!({"resourceType": "Observation", "category": cat("vital-signs")}),
                Some(Section::Measurements),
            ),
            (
                json!({"resourceType": "DiagnosticReport", "category": cat("RAD")}),
                Some(Section::Imaging),
            ),
            (
                json!({"resourceType": "DiagnosticReport", "category": cat("LAB")}),
                Some(Section::Lab),
            ),
            (
                json!({"resourceType": "ImagingStudy"}),
                Some(Section::Imaging),
            ),
            (
                json!({"resourceType": "ServiceRequest"}),
                Some(Section::Referrals),
            ),
            (
                json!({"resourceType": "AllergyIntolerance"}),
                Some(Section::Risks),
            ),
            (
                json!({"resourceType": "Immunization"}),
                Some(Section::Vaccinations),
            ),
            (
                json!({"resourceType": "Procedure", "meta": view("SUU")}),
                Some(Section::OralHealth),
            ),
            (
                json!({"resourceType": "Procedure", "meta": view("TMP")}),
                Some(Section::Procedures),
            ),
            (
                json!({"resourceType": "CarePlan"}),
                Some(Section::CarePlans),
            ),
            (
                json!({"resourceType": "DocumentReference"}),
                Some(Section::Certificates),
            ),
            (
                json!({"resourceType": "MedicationRequest"}),
                Some(Section::Prescriptions),
            ),
            (
                json!({"resourceType": "Composition", "meta": view("SUU")}),
                Some(Section::OralHealth),
            ),
            (
                json!({"resourceType": "Composition", "meta": view("TOD")}),
                Some(Section::Certificates),
            ),
            (
                json!({"resourceType": "Composition", "meta": view("YLE")}),
                None,
            ),
            (json!({"resourceType": "Composition"}), None),
            (json!({"resourceType": "Patient"}), None),
            (json!({"resourceType": "Organization"}), None),
            (json!({}), None),
        ];
        for (r, want) in cases {
            assert_eq!(section(&r), want, "{r}");
        }
    }

    /// R-VIEW-8 at the joining day's boundary, winter and summer: a record made after midnight
    /// Finnish time on the joining day is after joining; one a minute before midnight is not.
    #[test]
    fn joining_day_is_a_finnish_day() {
        let ms = |s: &str| crate::datetime::millis(crate::datetime::parse_start(s).unwrap());
        for (day, after, before) in [
            (
                "2026-01-20",
                "2026-01-20T01:30:00+02:00",
                "2026-01-19T23:59:00+02:00",
            ),
            (
                "2026-07-01",
                "2026-07-01T02:30:00+03:00",
                "2026-06-30T23:59:00+03:00",
            ),
        ] {
            let org = json!({"resourceType": "Organization", "extension": [
                {"url": JOINED_EXTENSION_URL, "valueDate": day}]});
            let joined = provider_joined_at(&org).unwrap();
            assert!(
                ms(after) >= joined,
                "{day}: a record at {after} is after joining"
            );
            assert!(
                ms(before) < joined,
                "{day}: a record at {before} is before joining"
            );
        }
    }

    #[test]
    fn joining_date() {
        let org = |ext: Value| json!({"resourceType": "Organization", "extension": [ext]});
        assert_eq!(
            provider_joined_at(&org(
                json!({"url": JOINED_EXTENSION_URL, "valueDate": "2026-01-20"})
            )),
            // 00:00 in Helsinki (UTC+2 in winter), not 00:00 UTC.
            Some(crate::datetime::millis(
                time::macros::datetime!(2026-01-19 22:00 UTC)
            ))
        );
        assert_eq!(
            provider_joined_at(&org(
                json!({"url": JOINED_EXTENSION_URL, "valueDate": "soon"})
            )),
            Some(i64::MAX)
        );
        assert_eq!(
            provider_joined_at(&org(json!({"url": "other", "valueDate": "2026-01-20"}))),
            None
        );
        assert_eq!(
            provider_joined_at(&json!({"resourceType": "Organization"})),
            None
        );
    }
}
