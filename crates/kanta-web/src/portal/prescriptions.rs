//! MyKanta's prescriptions (R-VIEW-1, R-DOC-10, R-DOC-11, R-ACT-1, R-ACT-11, R-ACT-12): valid and
//! other prescriptions, what remains, the dispensations with their prices, the printable patient
//! instruction sheet, and the renewal and review requests with their status.
//!
//! Every prescription, dispensation and request is released through the one access decision with
//! its Prescription Centre display decision as a fact (`display::decide_centre`), and the page
//! renders only `Visible` items.

use super::i18n::tr;
use super::{csrf_ok, error_page, render, see_other, ui_for, Citizen, PageError, Ui};
use crate::AppState;
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kanta_domain::access::{self, Facts, Function, View};
use kanta_domain::acting::{FunctionFacts, MinorRecord};
use kanta_domain::audit::Action;
use kanta_domain::display::{self, CentreItem, Section, Visible};
use kanta_domain::prescription::{self as rx, Event, Measure, Phase};
use kanta_fhir::prescription as fx;
use kanta_fhir::{codes, datetime};
use kanta_store::{Found, SearchQuery, WriteOp};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// At most this many prescriptions, dispensations and requests are read for the page.
const MAX_ITEMS: usize = 500;

pub struct Dispensed {
    pub date: String,
    pub pharmacy: String,
    pub product: String,
    pub amount: String,
    pub price: String,
    pub abroad: String,
}

pub struct Request {
    pub kind: String,
    pub status: String,
    pub date: String,
    pub reason: String,
}

pub struct Rx {
    pub id: String,
    /// `Patient/<id>` as the prescription names its patient (for a request about it; not shown).
    subject: Value,
    pub product: String,
    pub dose: String,
    pub prescribed: String,
    pub prescriber: String,
    /// The prescriber's unit (the organisation whose register holds it): a renewal's default.
    pub prescriber_org: String,
    pub valid_until: String,
    pub remaining: String,
    pub status: String,
    pub renewal_prohibited: bool,
    pub substitution_prohibited: bool,
    pub dispensed: Vec<Visible<Dispensed>>,
    pub requests: Vec<Visible<Request>>,
    pub may_renew: bool,
    pub may_review: bool,
    pub valid: bool,
}

#[derive(Template)]
#[template(path = "prescriptions.html")]
struct Page<'a> {
    ui: &'a Ui,
    nav: Vec<super::sections::NavItem>,
    valid: Vec<&'a Visible<Rx>>,
    other: Vec<&'a Visible<Rx>>,
    done: Option<&'static str>,
    no_names: bool,
    /// The care units a renewal request may go to instead of the prescriber's (R-ACT-11).
    units: Vec<super::data_use::Choice>,
}

#[derive(Template)]
#[template(path = "prescription_sheet.html")]
struct Sheet<'a> {
    ui: &'a Ui,
    rx: &'a Visible<Rx>,
    patient: String,
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    done: Option<String>,
}

#[derive(Deserialize)]
pub struct RequestForm {
    csrf: String,
    kind: String,
    /// For a renewal: the unit to send it to (default: the prescriber's).
    unit: Option<String>,
}

/// What the display rules see of a Prescription Centre item.
fn centre_item(resource_type: &str, body: &Value) -> CentreItem {
    match resource_type {
        "MedicationRequest" => CentreItem::Prescription(
            fx::state_of(body)
                .and_then(|s| s.cancelled)
                .or_else(|| {
                    (body["status"].as_str() == Some("cancelled"))
                        .then_some(rx::CancelReason::Other)
                })
                .map(|r| r.display()),
        ),
        "MedicationDispense" => CentreItem::Dispensation {
            cancelled: body["status"].as_str() == Some("cancelled"),
        },
        _ => CentreItem::Request,
    }
}

/// The subject's prescriptions, dispensations and requests, released through the one decision.
async fn load(
    state: &AppState,
    c: &Citizen,
    rid: &crate::RequestId,
) -> Result<(Vec<Found>, Vec<Found>, Vec<Found>), PageError> {
    let now_ms = datetime::millis(c.now);
    let unavailable = |e: &dyn std::fmt::Display| PageError::unavailable(c.lang, e);
    let q = |t: &str| SearchQuery {
        resource_type: t.into(),
        patient: Some(c.whose.key),
        identifier: None,
        ascending: false,
        count: MAX_ITEMS,
        after: None,
    };
    let (a, b, d) = (
        state.store.search(&q("MedicationRequest")).await,
        state.store.search(&q("MedicationDispense")).await,
        state.store.search(&q("Task")).await,
    );
    let sealed = a
        .and_then(|a| Ok(a.zip(b?)))
        .and_then(|ab| Ok(ab.zip(d?)))
        .map_err(|e| unavailable(&e))?;
    let access = super::data_use::access_of(c, rid, Action::Search, "view=section:prescriptions");
    let view = View::Section(Section::Prescriptions);
    let (_, ((rxs, dispensed), tasks)) = state
        .audit
        .release(sealed, &access, |subjects| {
            subjects
                .iter()
                .map(|s| {
                    let body = s.json.value();
                    let shown = display::decide_centre(centre_item(s.resource_type, body));
                    let minor = MinorRecord {
                        on: super::helsinki(s.effective_at.unwrap_or(0))
                            .map_or(time::Date::MIN, |t| t.date()),
                        disclosure: None,
                    };
                    access::decide(
                        &c.principal,
                        &access::Action::View(view),
                        s.target(),
                        &Facts {
                            display: Some(&shown),
                            acting: Some(&c.whose.acting),
                            minor: Some(&minor),
                            ..Facts::default()
                        },
                        now_ms,
                    )
                })
                .collect()
        })
        .await
        .map_err(|e| unavailable(&e))?;
    Ok((rxs.resources, dispensed.resources, tasks.resources))
}

fn date_of(ms: i64) -> String {
    super::helsinki(ms)
        .map(|l| format!("{}.{}.{}", l.day(), u8::from(l.month()), l.year()))
        .unwrap_or_default()
}

fn money_of(body: &Value, url: &str) -> Option<f64> {
    body["extension"]
        .as_array()?
        .iter()
        .find(|e| e["url"].as_str() == Some(url))?["valueMoney"]["value"]
        .as_f64()
}

fn euros(v: f64) -> String {
    let cents = (v * 100.0).round() as i64;
    kanta_domain::medicines::euros(cents)
}

/// Whether the citizen may make a request of this kind about this prescription now.
fn may_request(c: &Citizen, target: access::Target<'_>, f: Function, now_ms: i64) -> bool {
    access::decide(
        &c.principal,
        &access::Action::Manage(f),
        target,
        &Facts {
            acting: Some(&c.whose.acting),
            function: Some(&FunctionFacts::default()),
            ..Facts::default()
        },
        now_ms,
    )
    .is_permit()
}

/// The page's items: each prescription with its dispensations and requests, after the rules.
async fn items(
    state: &AppState,
    c: &Citizen,
    rxs: Vec<Found>,
    dispensed: Vec<Found>,
    tasks: Vec<Found>,
) -> Vec<Visible<Rx>> {
    let lang = c.lang;
    let now_ms = datetime::millis(c.now);
    let t = |k: &str| tr(lang, k, &[]);
    let mut orgs = super::sections::Orgs::default();
    let medicines = state.centre.as_ref().map(|c| &c.medicines);
    let product_name = |vnr: &str, on: time::Date| -> String {
        medicines
            .and_then(|m| m.on(on).or_else(|| m.versions().last()))
            .and_then(|v| v.product(vnr))
            .map(|p| p.label())
            .unwrap_or_else(|| format!("VNR {vnr}"))
    };
    // Each dispensation and request read once, grouped by the prescription it belongs to.
    let mut dispensations: HashMap<String, Vec<(Value, Found)>> = HashMap::new();
    for f in dispensed {
        let v = f.to_value();
        if let Some(rx) = v["authorizingPrescription"][0]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("MedicationRequest/"))
        {
            dispensations
                .entry(rx.to_string())
                .or_default()
                .push((v, f));
        }
    }
    let mut requests: HashMap<String, Vec<(Value, fx::RxTask, Found)>> = HashMap::new();
    for f in tasks {
        let v = f.to_value();
        if let Ok(task) = fx::read_task(&v) {
            if task.code != fx::TaskCode::Reservation {
                requests
                    .entry(task.prescription.clone())
                    .or_default()
                    .push((v, task, f));
            }
        }
    }
    let mut out = vec![];
    for f in rxs {
        let body = f.to_value();
        let Some(st) = fx::state_of(&body) else {
            continue;
        };
        let today = super::helsinki(now_ms).map_or(time::Date::MIN, |l| l.date());
        let authored = super::helsinki(f.effective_at).map_or(today, |l| l.date());
        let vnr = fx::vnr_of(&body).unwrap_or_default().to_string();
        let unit = medicines
            .and_then(|m| m.on(authored).or_else(|| m.versions().last()))
            .and_then(|v| v.product(&vnr))
            .map(|p| p.unit.clone())
            .unwrap_or_default();
        let amount = |n: u64| match st.measure {
            Measure::Units => format!("{n} {unit}"),
            Measure::Days => tr(lang, "rx-days", &[("n", &n.to_string())]),
        };
        let phase = st.phase(now_ms, None);
        let status = match phase {
            Phase::Valid => t("rx-status-valid"),
            Phase::ReservedByYou | Phase::ReservedElsewhere => {
                let (by, until) = st
                    .reserved_at(now_ms)
                    .map(|r| (r.pharmacy.clone(), r.until_ms))
                    .unwrap_or_default();
                let name = orgs.get(state, &by).await.name.clone();
                tr(
                    lang,
                    "rx-status-reserved",
                    &[
                        ("pharmacy", &name),
                        ("until", &super::helsinki_datetime(until)),
                    ],
                )
            }
            Phase::FullyDispensed => t("rx-status-dispensed"),
            Phase::Expired => t("rx-status-expired"),
            Phase::Cancelled => match st.cancelled {
                Some(rx::CancelReason::PatientRequest) => t("rx-status-cancelled-patient"),
                _ => t("rx-status-cancelled"),
            },
        };
        let mut dispensed = vec![];
        for (d, df) in dispensations.get(&f.id).into_iter().flatten() {
            let what = centre_item("MedicationDispense", d);
            let pharmacy = match df.org.as_deref() {
                Some(o) => orgs.get(state, o).await.name.clone(),
                None => String::new(),
            };
            let given = fx::vnr_of(d).unwrap_or_default().to_string();
            let item = Dispensed {
                date: date_of(df.effective_at),
                pharmacy,
                product: product_name(
                    &given,
                    super::helsinki(df.effective_at).map_or(today, |l| l.date()),
                ),
                amount: fx::dispensed_amount(d).map(&amount).unwrap_or_default(),
                price: match (
                    money_of(d, codes::RETAIL_PRICE_URL),
                    money_of(d, codes::PRICE_DIFFERENCE_URL).filter(|x| x.abs() >= 0.005),
                ) {
                    (Some(p), Some(diff)) => tr(
                        lang,
                        "rx-price-with-difference",
                        &[("price", &euros(p)), ("difference", &euros(diff))],
                    ),
                    (Some(p), None) => euros(p),
                    (None, _) => String::new(),
                },
                abroad: d["extension"]
                    .as_array()
                    .and_then(|es| {
                        es.iter()
                            .find(|e| e["url"].as_str() == Some(codes::DISPENSED_ABROAD_URL))
                    })
                    .and_then(|e| e["valueCoding"]["code"].as_str())
                    .map(|c| tr(lang, "rx-abroad", &[("country", c)]))
                    .unwrap_or_default(),
            };
            if let Ok(v) = Visible::check_centre(item, what) {
                dispensed.push(v);
            }
        }
        let mut reqs = vec![];
        let mut open_renewal = false;
        let mut open_review = false;
        for (r, task, rf) in requests.get(&f.id).into_iter().flatten() {
            let open = matches!(task.status.as_str(), "requested" | "in-progress");
            if task.code == fx::TaskCode::RenewalRequest && open {
                open_renewal = true;
            }
            if task.code == fx::TaskCode::ReviewRequest && open {
                open_review = true;
            }
            let item = Request {
                kind: t(&format!("rx-request-{}", task.code.code())),
                status: t(&format!("rx-request-status-{}", task.status)),
                date: date_of(rf.effective_at),
                reason: r["statusReason"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            };
            if let Ok(v) = Visible::check_centre(item, CentreItem::Request) {
                reqs.push(v);
            }
        }
        let target = access::Target::Patient {
            patient: Some(c.whose.key),
            holder: f.org.as_deref(),
        };
        let renewable = rx::check(&st, &Event::RequestRenewal, now_ms).is_ok();
        let named = !c.session.display_name.trim().is_empty();
        let prescriber = match f.org.as_deref() {
            Some(o) => orgs.get(state, o).await.name.clone(),
            None => String::new(),
        };
        let item = Rx {
            id: f.id.clone(),
            subject: body["subject"]["reference"].clone(),
            product: product_name(&vnr, authored),
            dose: body["dosageInstruction"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            prescribed: date_of(f.effective_at),
            prescriber,
            prescriber_org: f.org.clone().unwrap_or_default(),
            valid_until: date_of(st.valid_until_ms - 1),
            remaining: tr(
                lang,
                "rx-remaining",
                &[
                    ("remaining", &amount(st.remaining())),
                    ("total", &amount(st.total)),
                ],
            ),
            status,
            renewal_prohibited: st.renewal_prohibited,
            substitution_prohibited: body["substitution"]["allowedBoolean"].as_bool()
                == Some(false),
            dispensed,
            requests: reqs,
            may_renew: renewable
                && named
                && !open_renewal
                && may_request(c, target, Function::RenewalRequest, now_ms),
            may_review: phase != Phase::Cancelled
                && !open_review
                && state
                    .centre
                    .as_ref()
                    .is_some_and(|c| c.controller.is_some())
                && may_request(c, target, Function::ReviewRequest, now_ms),
            valid: matches!(
                phase,
                Phase::Valid | Phase::ReservedByYou | Phase::ReservedElsewhere
            ),
        };
        if let Ok(v) = Visible::check_centre(item, centre_item("MedicationRequest", &body)) {
            out.push(v);
        }
    }
    out
}

fn done_key(s: Option<&str>) -> Option<&'static str> {
    match s {
        Some("renewal") => Some("rx-done-renewal"),
        Some("review") => Some("rx-done-review"),
        _ => None,
    }
}

/// The prescriptions the citizen may see now, with what the page shows of each.
async fn visible_prescriptions(
    state: &AppState,
    c: &Citizen,
    rid: &crate::RequestId,
) -> Result<Vec<Visible<Rx>>, PageError> {
    super::acting::may(
        &c.principal,
        &c.whose.acting,
        View::Section(Section::Prescriptions),
        datetime::millis(c.now),
        c.lang,
    )?;
    let (rxs, dispensed, tasks) = load(state, c, rid).await?;
    Ok(items(state, c, rxs, dispensed, tasks).await)
}

/// `GET /records/prescriptions`.
pub async fn page(
    State(state): State<AppState>,
    c: Citizen,
    rid: crate::RequestId,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let all = visible_prescriptions(&state, &c, &rid).await?;
    let units = if all.iter().any(|r| r.get().may_renew) {
        super::data_use::organisations(&state, &c, &rid, &[]).await?
    } else {
        vec![]
    };
    let ui = ui_for(
        &state,
        c.lang,
        "/records/prescriptions",
        Some(&c.session),
        "",
    );
    let page = Page {
        ui: &ui,
        nav: super::sections::nav(Some(Section::Prescriptions)),
        valid: all.iter().filter(|r| r.get().valid).collect(),
        other: all.iter().filter(|r| !r.get().valid).collect(),
        done: done_key(query.as_ref().ok().and_then(|q| q.done.as_deref())),
        no_names: c.session.display_name.trim().is_empty(),
        units,
    };
    Ok(render(&page))
}

/// `GET /records/prescriptions/{id}`: the patient instruction sheet, for printing.
pub async fn sheet(
    State(state): State<AppState>,
    c: Citizen,
    rid: crate::RequestId,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let all = visible_prescriptions(&state, &c, &rid).await?;
    let Some(rx) = all.iter().find(|r| r.get().id == id) else {
        return Err(PageError::not_found(c.lang));
    };
    let ui = ui_for(
        &state,
        c.lang,
        &format!("/records/prescriptions/{id}"),
        Some(&c.session),
        "",
    );
    let patient = match &c.session.acting_for {
        Some(a) => a.name.clone(),
        None => c.session.display_name.clone(),
    };
    Ok(render(&Sheet {
        ui: &ui,
        rx,
        patient,
    }))
}

/// `POST /records/prescriptions/{id}/request`: a renewal request to the prescriber's unit
/// (R-ACT-1, R-ACT-11) or a review request to the controller (R-ACT-12).
pub async fn request(
    State(state): State<AppState>,
    c: Citizen,
    rid: crate::RequestId,
    Path(id): Path<String>,
    Form(f): Form<RequestForm>,
) -> Response {
    let lang = c.lang;
    if !csrf_ok(&f.csrf, &c.session.csrf_token) {
        return error_page(lang, StatusCode::FORBIDDEN, "error-cross-site");
    }
    match make_request(&state, &c, &rid, &id, &f.kind, f.unit.as_deref()).await {
        Ok(done) => see_other(&format!("/records/prescriptions?done={done}")),
        Err(e) => e.into_response(),
    }
}

async fn make_request(
    state: &AppState,
    c: &Citizen,
    rid: &crate::RequestId,
    id: &str,
    kind: &str,
    unit: Option<&str>,
) -> Result<&'static str, PageError> {
    let lang = c.lang;
    let forbidden = || PageError {
        lang,
        status: StatusCode::FORBIDDEN,
        key: "error-forbidden",
    };
    let (function, code, done) = match kind {
        "renewal" => (
            Function::RenewalRequest,
            fx::TaskCode::RenewalRequest,
            "renewal",
        ),
        "review" => (
            Function::ReviewRequest,
            fx::TaskCode::ReviewRequest,
            "review",
        ),
        _ => return Err(PageError::bad_page(lang)),
    };
    // Only a prescription this page shows, and only a request it offers.
    let all = visible_prescriptions(state, c, rid).await?;
    let Some(rx) = all.iter().find(|r| r.get().id == id) else {
        return Err(PageError::not_found(lang));
    };
    let offered = match code {
        fx::TaskCode::RenewalRequest => rx.get().may_renew,
        _ => rx.get().may_review,
    };
    if !offered {
        return Err(forbidden());
    }
    // A renewal to another care unit than the prescriber's: one of those the page offers.
    let owner = match (code, unit.filter(|u| !u.is_empty())) {
        (fx::TaskCode::RenewalRequest, Some(u)) if u != rx.get().prescriber_org => {
            let units = super::data_use::organisations(state, c, rid, &[]).await?;
            if !units.iter().any(|ch| ch.value == u) {
                return Err(PageError::bad_page(lang));
            }
            Some(u.to_string())
        }
        _ => None,
    };
    let task = json!({
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": codes::PRESCRIPTION_TASK_SYSTEM, "code": code.code()}]},
        "focus": {"reference": format!("MedicationRequest/{id}")},
        "for": {"reference": rx.get().subject.clone()},
        "authoredOn": datetime::instant(c.now),
        "note": [{"text": tr(lang, "rx-request-note", &[])}],
    });
    let mut task = task;
    if let Some(o) = owner {
        task["owner"] = json!({ "reference": format!("Organization/{o}") });
    }
    let resource =
        kanta_fhir::check(task).map_err(|e| PageError::unavailable(lang, &e.to_string()))?;
    let ops = vec![(
        "Task".into(),
        None,
        WriteOp::Create {
            resource,
            if_none_exist: None,
        },
    )];
    super::data_use::commit_citizen_write(state, c, rid, function, FunctionFacts::default(), ops)
        .await?;
    Ok(done)
}
