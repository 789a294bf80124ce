//! The archivist's view (R-DOC-12): for provider staff (an organisation's token with the archivist
//! role), per document: is it stored, which service event it is attached to, when it was archived,
//! its versions, whether its display is delayed and until when — and whether MyKanta shows it, and if
//! not, every rule that hides it (the same reasons `kanta_domain::display::decide` gives the portal).
//! The answer carries no record content; every look-up is audited as a read of the patient's data.
//! An archivist sees only documents their own organisation recorded: the access decision judges
//! each version before release, and another organisation's document answers exactly as a document
//! that is not stored (the look-up tells nothing of what the caller may not see).

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::{AppState, RequestId};
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kanta_domain::access::{self, Facts, Target};
use kanta_domain::audit::Action;
use kanta_domain::display::{decide, CareSetting, Decision};
use kanta_fhir::datetime::{instant, millis};
use kanta_fhir::display::{care_setting, encounter_reference};
use kanta_fhir::FhirError;
use kanta_store::audit::{Access, Subject};
use serde_json::{json, Value};

fn access(state: &AppState, caller: &Caller, rid: &RequestId) -> Access {
    Access {
        actor: caller.actor(),
        on_behalf_of: None,
        action: Action::Read,
        query: Some("view=archivist".into()),
        request_id: rid.0.clone(),
        now_ms: millis(state.clock.now()),
        subject: None,
    }
}

/// The same answer as a page, for an archivist's browser-based tool (`Accept: text/html`), in the
/// language the browser asks for.
#[derive(Template)]
#[template(path = "archivist.html")]
struct ArchivistPage<'a> {
    ui: &'a crate::portal::Ui,
    facts: Vec<(String, String)>,
    shown: bool,
    visit_only: bool,
    hidden_by: Vec<(String, String)>,
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .starts_with("text/html")
        })
}

fn page(headers: &HeaderMap, answer: &Value) -> Response {
    let lang = crate::portal::lang_of(headers);
    let ui = crate::portal::Ui {
        lang,
        csrf: String::new(),
        path: "/".into(),
        signed_in: None,
    };
    let t = |k: &str| crate::portal::i18n::tr(lang, k, &[]);
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => t("archivist-yes"),
        Value::Bool(false) => t("archivist-no"),
        Value::Null => "–".into(),
        other => other.to_string(),
    };
    let facts = [
        "resource",
        "stored",
        "versions",
        "latest_version",
        "archived_at",
        "last_updated",
        "service_event",
        "care_setting",
        "delayed_until",
    ]
    .iter()
    .filter(|k| answer.get(**k).is_some())
    .map(|k| {
        (
            t(&format!("archivist-{}", k.replace('_', "-"))),
            text(&answer[*k]),
        )
    })
    .collect();
    let hidden_by = answer["hidden_by"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let code = h["code"].as_str().unwrap_or("");
            (
                t(&format!("archivist-hidden-{code}")),
                h["rule"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut res = crate::portal::render(&ArchivistPage {
        ui: &ui,
        facts,
        shown: answer["shown_in_mykanta"].as_bool().unwrap_or(false),
        visit_only: answer["visit_only"].as_bool().unwrap_or(false),
        hidden_by,
    });
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

/// `GET /archivist/documents/{type}/{id}`: JSON, or a page when the client asks for HTML.
pub async fn document(
    State(state): State<AppState>,
    caller: Caller,
    rid: RequestId,
    headers: HeaderMap,
    crate::fhir_api::FhirPath((rtype, id)): crate::fhir_api::FhirPath<(String, String)>,
) -> ApiResult<Response> {
    let answer = answer(&state, &caller, &rid, &rtype, &id).await?;
    Ok(if wants_html(&headers) {
        page(&headers, &answer)
    } else {
        no_store(answer)
    })
}

async fn answer(
    state: &AppState,
    caller: &Caller,
    rid: &RequestId,
    rtype: &str,
    id: &str,
) -> ApiResult<Value> {
    let now = state.clock.now();
    let now_ms = millis(now);
    let action = access::Action::ArchivistLookup;
    caller.decide(&action, Target::Request, now_ms)?;
    if kanta_fhir::resource::scope_of(rtype).is_none() {
        return Err(
            FhirError::bad_request(format!("resource type '{rtype}' is not supported")).into(),
        );
    }
    let audit_down = |_| {
        crate::error::ApiError(FhirError::new(
            kanta_fhir::ErrorKind::Unavailable,
            "the audit log is unavailable; try again shortly",
        ))
    };
    // The document: every version judged as the archivist's look-up (its own register only).
    let principal = &caller.principal;
    let action = &action;
    let judge = |holder: Option<String>| {
        move |subjects: &[Subject<'_>]| -> Vec<access::Decision> {
            subjects
                .iter()
                .map(|s| {
                    // Context read for a document (its service event, the documents on it) is
                    // judged as part of that document's look-up: it is held where the document is.
                    let target = match (holder.as_deref(), s.target()) {
                        (Some(h), Target::Patient { patient, .. }) => Target::Patient {
                            patient,
                            holder: Some(h),
                        },
                        (_, t) => t,
                    };
                    access::decide(principal, action, target, &Facts::default(), now_ms)
                })
                .collect()
        }
    };
    let sealed = state.store.history(rtype, id).await?;
    let (_, versions) = state
        .audit
        .release(sealed, &access(state, caller, rid), judge(None))
        .await
        .map_err(audit_down)?;
    // The current version decides whose document it is; an earlier version of another
    // organisation's (before the one-register rule) does not make it the archivist's.
    let (Some(current), Some(first)) = (versions.first(), versions.last()) else {
        return Ok(json!({"resource": format!("{rtype}/{id}"), "stored": false}));
    };
    if current.org.as_deref() != Some(caller.org().as_str()) {
        return Ok(json!({"resource": format!("{rtype}/{id}"), "stored": false}));
    }
    let holder = current.org.clone();
    let patient = current.patient;
    let event_ref = if rtype == "Encounter" {
        Some(format!("Encounter/{id}"))
    } else {
        encounter_reference(&current.body).map(str::to_string)
    };
    // The service event's setting, and (for a service event) how many care documents it carries.
    let mut event: Option<Value> = None;
    let mut care_documents = 0;
    if let (Some(r), Some(key)) = (&event_ref, patient) {
        if let Some(enc_id) = r.strip_prefix("Encounter/") {
            let sealed = state.store.read("Encounter", enc_id).await?;
            let (_, enc) = state
                .audit
                .release(sealed, &access(state, caller, rid), judge(holder.clone()))
                .await
                .map_err(audit_down)?;
            event = enc.map(|e| e.body);
            if rtype == "Encounter" {
                let sealed = state
                    .store
                    .attached_to(key, std::slice::from_ref(r))
                    .await?;
                let (_, docs) = state
                    .audit
                    .release(sealed, &access(state, caller, rid), judge(holder.clone()))
                    .await
                    .map_err(audit_down)?;
                care_documents = docs.len();
            }
        }
    }
    // R-VIEW-8: the record's own date against the recording organisation's joining date.
    let recorded_at = kanta_fhir::check(current.body.clone())
        .ok()
        .and_then(|c| c.effective)
        .map_or(millis(first.last_updated), millis);
    let joined = match current.org.as_deref() {
        Some(org) => {
            crate::portal::sections::recorder(state, org)
                .await
                .joined_at
        }
        None => None,
    };
    let setting: Option<CareSetting> = event.as_ref().map(care_setting);
    // The same assembler as MyKanta's pages, so "why is it (not) shown" has one answer.
    let facts = crate::portal::facts::facts(
        &current.body,
        recorded_at,
        event.as_ref(),
        care_documents,
        joined,
    );
    let decision = decide(&facts, crate::portal::records::views(), now_ms);
    let hidden_by: Vec<Value> = match &decision {
        Decision::Hidden(reasons) => reasons
            .iter()
            .map(|h| json!({"code": h.code(), "rule": h.rule()}))
            .collect(),
        _ => vec![],
    };
    Ok(json!({
        "resource": format!("{rtype}/{id}"),
        "stored": true,
        "versions": versions.len(),
        "latest_version": current.version,
        "archived_at": instant(first.last_updated),
        "last_updated": instant(current.last_updated),
        "service_event": event_ref.filter(|_| setting.is_some()),
        "care_setting": setting.map(|s| if s == CareSetting::Inpatient { "inpatient" } else { "outpatient" }),
        "delayed_until": facts.delayed_until.and_then(|ms| time::OffsetDateTime::from_unix_timestamp(ms / 1000).ok()).map(instant),
        "shown_in_mykanta": decision.is_shown(),
        "visit_only": decision == Decision::VisitOnly,
        "hidden_by": hidden_by,
    }))
}

fn no_store(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use crate::portal::i18n::{tr, Lang};

    #[test]
    fn every_reason_and_fact_is_translated() {
        let keys = [
            "not-attached",
            "before-provider-joined",
            "not-latest-version",
            "cancelled",
            "delayed",
            "other-person",
            "local-view",
            "no-view",
            "view-not-displayed",
            "inpatient-content",
            "form",
        ]
        .map(|c| format!("archivist-hidden-{c}"))
        .into_iter()
        .chain(
            [
                "resource",
                "stored",
                "versions",
                "latest-version",
                "archived-at",
                "last-updated",
                "service-event",
                "care-setting",
                "delayed-until",
            ]
            .map(|f| format!("archivist-{f}")),
        );
        for key in keys {
            for lang in [Lang::Fi, Lang::Sv, Lang::En] {
                assert_ne!(tr(lang, &key, &[]), key, "{} {key}", lang.code());
            }
        }
    }
}
