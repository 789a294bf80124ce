//! The citizen's own records (R-VIEW-2, R-DOC-1…9): visits and care periods, newest first, each with
//! the care documents attached to it, after the display rules. Only [`Visible`] rows reach the
//! template. Clinician-entered text is rendered as text.

use super::facts::{citizen_judge_reading, visible, Joined};
use super::{render, ui_for, Citizen, PageError, Ui};
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use kanta_domain::audit::{Action, Actor};
use kanta_domain::display::{CareSetting, ViewTable, Visible, DEFAULT_VIEW_TABLE};
use kanta_fhir::display::{care_setting, encounter_reference};
use kanta_fhir::json::{at, str_at, Node};
use kanta_store::audit::Access;
use kanta_store::Cursor;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Visits per page.
const PAGE: usize = 20;

/// The national views table MyKanta uses (shared with the archivist view).
pub(crate) fn views() -> &'static ViewTable {
    static V: OnceLock<ViewTable> = OnceLock::new();
    // The shipped table is checked by the domain crate's tests; an empty table would hide all.
    V.get_or_init(|| ViewTable::parse(DEFAULT_VIEW_TABLE).unwrap_or_default())
}

/// One care document as the page shows it.
pub struct DocRow {
    pub kind_key: &'static str,
    pub title: String,
    pub text: String,
    /// Record text from a FHIR narrative, sanitized to the narrative subset (shown instead of
    /// `text` when present).
    pub html: Option<super::narrative::SafeHtml>,
    /// Laboratory results: value with unit, the reference range, whether outside it.
    pub value: Option<String>,
    pub range: Option<String>,
    pub abnormal: bool,
}

/// One visit or care period.
pub struct VisitRow {
    pub date: String,
    pub provider: String,
    pub reason: String,
    pub inpatient: bool,
    pub docs: Vec<Visible<DocRow>>,
}

/// What the visits page prints of one record, taken from the judge's parse.
enum Part {
    Visit {
        provider: String,
        start: Option<i64>,
        reason: String,
        inpatient: bool,
    },
    Document {
        encounter: Option<String>,
        row: DocRow,
    },
}

impl Part {
    fn of<'a>(resource_type: &str, body: impl Node<'a>) -> Part {
        if resource_type == "Encounter" {
            Part::Visit {
                provider: text_of(body, "/serviceProvider/reference").unwrap_or_default(),
                start: str_at(body, "/period/start")
                    .and_then(kanta_fhir::datetime::parse_start)
                    .map(kanta_fhir::datetime::millis),
                reason: text_of(body, "/reasonCode/0/text").unwrap_or_default(),
                inpatient: care_setting(body) == CareSetting::Inpatient,
            }
        } else {
            Part::Document {
                encounter: encounter_reference(body).map(str::to_string),
                row: doc_row(body),
            }
        }
    }
}

#[derive(Template)]
#[template(path = "visits.html")]
struct VisitsPage<'a> {
    ui: &'a Ui,
    visits: Vec<Visible<VisitRow>>,
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct VisitsQuery {
    after: Option<String>,
}

/// `<effective_at>_<id>` (FHIR ids have no underscore).
fn parse_cursor(s: &str) -> Option<Cursor> {
    let (at, id) = s.split_once('_')?;
    let ok = kanta_fhir::resource::valid_id(id);
    Some(Cursor {
        effective_at: at.parse().ok()?,
        id: id.to_string(),
    })
    .filter(|_| ok)
}

fn text_of<'a>(v: impl Node<'a>, pointer: &str) -> Option<String> {
    str_at(v, pointer).map(str::to_string)
}

/// The readable text of a FHIR narrative `div`: tags dropped, the five XML entities decoded. The
/// result is text (the template escapes it), never markup; used where a line of text is wanted.
pub fn narrative_text(div: &str) -> String {
    let mut out = String::with_capacity(div.len());
    let mut in_tag = false;
    for c in div.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                if !out.ends_with(' ') && !out.is_empty() {
                    out.push(' ');
                }
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn concept_text<'a>(v: impl Node<'a>, field: &str) -> String {
    let concept = v.field(field);
    concept
        .and_then(|c| c.field("text"))
        .or_else(|| concept.and_then(|c| at(c, "/coding/0/display")))
        .and_then(Node::text)
        .map(str::to_string)
        .unwrap_or_default()
}

fn number<'a>(v: impl Node<'a>) -> Option<String> {
    v.number().map(|n| {
        let s = format!("{n}");
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    })
}

/// What the page says about one care document.
pub(crate) fn doc_row<'a>(r: impl Node<'a>) -> DocRow {
    let t = r.field("resourceType").and_then(Node::text).unwrap_or("");
    let mut row = DocRow {
        kind_key: "record-kind-other",
        title: String::new(),
        text: String::new(),
        html: None,
        value: None,
        range: None,
        abnormal: false,
    };
    match t {
        "Composition" => {
            row.kind_key = "record-kind-text";
            row.title = text_of(r, "/title").unwrap_or_default();
            let divs: Vec<&str> = r
                .field("section")
                .into_iter()
                .flat_map(Node::items)
                .filter_map(|s| str_at(s, "/text/div"))
                .collect();
            row.text = divs
                .iter()
                .map(|d| narrative_text(d))
                .collect::<Vec<_>>()
                .join(" ");
            let html = super::narrative::sanitize(&divs.concat());
            row.html = (!html.is_empty()).then_some(html);
        }
        "Condition" => {
            row.kind_key = "record-kind-diagnosis";
            let code = text_of(r, "/code/coding/0/code").unwrap_or_default();
            row.title = format!("{} {}", code, concept_text(r, "code"))
                .trim()
                .to_string();
        }
        "Observation" => {
            row.kind_key = "record-kind-measurement";
            row.title = concept_text(r, "code");
            if let Some(q) = r.field("valueQuantity") {
                let value = q.field("value").and_then(number).unwrap_or_default();
                let unit = q.field("unit").and_then(Node::text).unwrap_or("");
                row.value = Some(format!("{value} {unit}").trim().to_string());
                if let Some(rr) = at(r, "/referenceRange/0") {
                    let low = at(rr, "/low/value").and_then(Node::number);
                    let high = at(rr, "/high/value").and_then(Node::number);
                    let x = q.field("value").and_then(Node::number);
                    row.range = Some(format!(
                        "{}–{}",
                        at(rr, "/low/value").and_then(number).unwrap_or_default(),
                        at(rr, "/high/value").and_then(number).unwrap_or_default()
                    ));
                    row.abnormal = match x {
                        Some(x) => low.is_some_and(|l| x < l) || high.is_some_and(|h| x > h),
                        None => false,
                    };
                    row.kind_key = "record-kind-lab";
                }
            } else if let Some(comps) = r.field("component").filter(|c| c.is_array()) {
                let parts: Vec<String> = comps
                    .items()
                    .filter_map(|c| at(c, "/valueQuantity/value").and_then(number))
                    .collect();
                let unit = str_at(comps, "/0/valueQuantity/unit").unwrap_or("");
                row.value = Some(format!("{} {unit}", parts.join("/")).trim().to_string());
            }
        }
        "Immunization" => {
            row.kind_key = "record-kind-vaccination";
            row.title = concept_text(r, "vaccineCode");
        }
        "Procedure" => {
            row.kind_key = "record-kind-procedure";
            row.title = concept_text(r, "code");
        }
        "ServiceRequest" => {
            row.kind_key = "record-kind-referral";
            row.title = concept_text(r, "code");
        }
        "DiagnosticReport" => {
            row.kind_key = "record-kind-imaging";
            row.title = concept_text(r, "code");
            row.text = text_of(r, "/conclusion").unwrap_or_default();
        }
        "CarePlan" => {
            row.kind_key = "record-kind-care-plan";
            row.title = text_of(r, "/title").unwrap_or_default();
            row.text = text_of(r, "/description").unwrap_or_default();
        }
        "AllergyIntolerance" => {
            row.kind_key = "record-kind-risk";
            row.title = concept_text(r, "code");
        }
        "DocumentReference" => {
            row.kind_key = "record-kind-certificate";
            row.title = text_of(r, "/description").unwrap_or_else(|| concept_text(r, "type"));
        }
        "Encounter" => {
            row.kind_key = "record-kind-visit";
            row.title = text_of(r, "/reasonCode/0/text").unwrap_or_default();
        }
        _ => row.title = t.to_string(),
    }
    row
}

/// `GET /visits`: the citizen's visits and care periods, newest first, twenty a page.
pub async fn visits(
    State(state): State<AppState>,
    Citizen {
        now,
        lang,
        session: s,
        principal,
        whose,
    }: Citizen,
    request_id: crate::RequestId,
    Query(q): Query<VisitsQuery>,
) -> Result<Response, PageError> {
    let now_ms = kanta_fhir::datetime::millis(now);
    let after = match q.after.as_deref().map(parse_cursor) {
        Some(None) => return Err(PageError::bad_page(lang)),
        Some(c) => c,
        None => None,
    };
    let view = kanta_domain::access::View::Section(kanta_domain::display::Section::Visits);
    super::acting::may(&principal, &whose.acting, view, now_ms, lang)?;
    let key = whose.key;
    let unavailable = |e: &dyn std::fmt::Display| PageError::unavailable(lang, e);
    // The page of visits and their care documents, read together and released through the audit
    // log in one record before anything is opened.
    let sealed = state
        .store
        .visits(key, PAGE, after)
        .await
        .map_err(|e| unavailable(&e))?;
    let access = Access {
        actor: Actor::Citizen {
            person: s.patient_key,
        },
        on_behalf_of: whose.on_behalf_of,
        action: Action::Search,
        query: Some("view=visits".into()),
        request_id: request_id.0.clone(),
        now_ms,
        subject: Some(key),
    };
    // Every visit and document judged by the one decision (display rules as its facts) before
    // release: what the audit log records is what the page shows. The judge's one parse of each
    // record also gives what the page prints of it; only released records' parts are looked up,
    // and each is shown only through `visible`.
    let joined = Joined::of_holders(&state, &sealed).await;
    let mut facts = HashMap::new();
    let mut parts: HashMap<String, Part> = HashMap::new();
    let judge = citizen_judge_reading(
        &principal,
        view,
        &whose.acting,
        &joined,
        &mut facts,
        now_ms,
        |s, body| {
            parts.insert(
                format!("{}/{}", s.resource_type, s.id),
                Part::of(s.resource_type, body),
            );
        },
    );
    let (
        _,
        kanta_store::VisitsPage {
            visits: page,
            documents: attached,
        },
    ) = state
        .audit
        .release(sealed, &access, judge)
        .await
        .map_err(|e| unavailable(&e))?;
    let mut by_encounter: HashMap<String, Vec<(&kanta_store::Found, DocRow)>> = HashMap::new();
    for f in &attached {
        if let Some(Part::Document {
            encounter: Some(e),
            row,
        }) = parts.remove(&format!("{}/{}", f.resource_type, f.id))
        {
            by_encounter.entry(e).or_default().push((f, row));
        }
    }
    let mut orgs = joined.into_orgs();
    let mut providers: HashMap<String, String> = HashMap::new();
    let mut visits = Vec::new();
    for found in &page.resources {
        let Some(Part::Visit {
            provider: provider_ref,
            start,
            reason,
            inpatient,
        }) = parts.remove(&format!("Encounter/{}", found.id))
        else {
            continue;
        };
        let mine = by_encounter
            .remove(&format!("Encounter/{}", found.id))
            .unwrap_or_default();
        if !providers.contains_key(&provider_ref) {
            let name = match provider_ref.strip_prefix("Organization/") {
                Some(id) => orgs.get(&state, id).await.name.clone(),
                None => provider_ref.clone(),
            };
            providers.insert(provider_ref.clone(), name);
        }
        let provider = providers.get(&provider_ref).cloned().unwrap_or_default();
        let docs: Vec<Visible<DocRow>> = mine
            .into_iter()
            .filter_map(|(f, row)| visible(row, &facts, &f.resource_type, &f.id, now_ms))
            .collect();
        let row = VisitRow {
            date: start.map(super::helsinki_datetime).unwrap_or_default(),
            provider,
            reason,
            inpatient,
            docs,
        };
        if let Some(v) = visible(row, &facts, "Encounter", &found.id, now_ms) {
            visits.push(v);
        }
    }
    let ui = ui_for(&state, lang, "/visits", Some(&s), "");
    Ok(render(&VisitsPage {
        ui: &ui,
        visits,
        next: page.next.map(|c| format!("{}_{}", c.effective_at, c.id)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn narrative_becomes_text() {
        assert_eq!(
            narrative_text("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Hb &lt; 100 &amp; falling</p><p>Next</p></div>"),
            "Hb < 100 & falling Next"
        );
        assert_eq!(
            narrative_text("<div><script>alert(1)</script></div>"),
            "alert(1)"
        );
    }

    #[test]
    fn lab_value_range_and_flag() {
        let r = json!({"resourceType": "Observation", "code": {"text": "P -CRP"},
            "valueQuantity": {"value": 142.0, "unit": "mg/L"},
            "referenceRange": [{"low": {"value": 0.0}, "high": {"value": 10.0}}]});
        let row = doc_row(&r);
        assert_eq!(
            (
                row.title.as_str(),
                row.value.as_deref(),
                row.range.as_deref(),
                row.abnormal
            ),
            ("P -CRP", Some("142 mg/L"), Some("0–10"), true)
        );
        let normal = json!({"resourceType": "Observation", "code": {"text": "S -TSH"},
            "valueQuantity": {"value": 2.1, "unit": "mU/L"},
            "referenceRange": [{"low": {"value": 0.3}, "high": {"value": 4.2}}]});
        assert!(!doc_row(&normal).abnormal);
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        assert_eq!(
            parse_cursor("1700_abc-1"),
            Some(Cursor {
                effective_at: 1700,
                id: "abc-1".into()
            })
        );
        for bad in ["", "1700", "x_abc", "1700_", "1700_a b", "1700_<script>"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
