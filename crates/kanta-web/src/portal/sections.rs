//! The sections of the citizen's health records (R-VIEW-2): diagnoses, laboratory results, imaging,
//! referrals, measurements, risk information, vaccinations, oral health, care plans, certificates
//! and statements, procedures — and prescriptions (R-VIEW-1), empty until the Prescription Centre is
//! connected. Each is a list, newest first, with filters (time range, recording organisation) and a
//! detail view that names where to turn if the record is wrong (R-ACT-12). The front page's "what
//! is new" is the same query over every section.
//!
//! Every page is one store query (`Store::section`: the rows with their service events) released
//! through the audit log before anything renders; every row passes the display rules
//! (`Visible::check`) and the templates take nothing else.

use super::acting::{self, Whose};
use super::facts::{citizen_judge, visible, Joined};
use super::records::{doc_row, DocRow};
use super::{helsinki_datetime, render, ui_for, Citizen, PageError};
use super::{see_other, Ui};
use crate::{AppState, RequestId};
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use kanta_domain::access::View;
use kanta_domain::audit::{Action, Actor};
use kanta_domain::display::{DocumentFacts, Section, Visible};
use kanta_fhir::display::care_setting;
use kanta_fhir::resource::valid_id;
use kanta_store::audit::Access;
use kanta_store::{SectionCursor, SectionQuery, SectionRow, SessionRow};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// Rows per page.
const PAGE: usize = 20;
/// Rows in the front page's "what is new".
const NEW: usize = 5;

/// One record in a list, or the record of a detail page.
pub struct Item {
    pub doc: DocRow,
    /// Finnish local date and time of the record's effective time.
    pub date: String,
    /// The organisation that recorded it.
    pub provider: String,
    /// `/records/<section>/<Type>/<id>`.
    pub href: String,
    pub section_key: String,
}

/// The unit that recorded a record and how to reach its data protection officer (R-ACT-12).
pub struct Recorder {
    pub name: String,
    /// When the organisation joined the platform (R-VIEW-8).
    pub joined_at: Option<i64>,
    pub dpo_name: String,
    pub dpo_email: String,
    pub dpo_phone: String,
}

/// The service event a record belongs to, as the detail page names it.
pub struct ServiceEvent {
    pub date: String,
    pub inpatient: bool,
    pub reason: String,
}

pub struct NavItem {
    pub href: String,
    pub key: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "section.html")]
struct SectionPage<'a> {
    ui: &'a Ui,
    title_key: String,
    nav: Vec<NavItem>,
    items: Vec<Visible<Item>>,
    /// Prescriptions: the Prescription Centre is not connected yet.
    prescriptions: bool,
    filter_error: Option<&'static str>,
    from: String,
    to: String,
    provider: String,
    providers: Vec<(String, String)>,
    filtered: bool,
    next: Option<String>,
    base: String,
}

#[derive(Template)]
#[template(path = "record.html")]
struct RecordPage<'a> {
    ui: &'a Ui,
    title_key: String,
    nav: Vec<NavItem>,
    item: Visible<Item>,
    event: Option<ServiceEvent>,
    recorder: Recorder,
    back: String,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    from: Option<String>,
    to: Option<String>,
    provider: Option<String>,
    after: Option<String>,
}

/// The sections the records pages list (visits have their own page).
pub(crate) fn nav(current: Option<Section>) -> Vec<NavItem> {
    Section::ALL
        .into_iter()
        .map(|s| NavItem {
            href: href_of(s),
            key: format!("section-{}", s.code()),
            current: Some(s) == current,
        })
        .collect()
}

fn href_of(s: Section) -> String {
    match s {
        Section::Visits => "/visits".into(),
        other => format!("/records/{}", other.code()),
    }
}

/// `<effective_at>_<Type>_<id>` (types and FHIR ids have no underscore).
fn parse_cursor(s: &str) -> Option<SectionCursor> {
    let mut parts = s.splitn(3, '_');
    let at = parts.next()?.parse().ok()?;
    let t = parts.next()?;
    let id = parts.next()?;
    let id_ok = valid_id(id);
    let t_ok = !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphabetic());
    (id_ok && t_ok).then(|| SectionCursor {
        effective_at: at,
        id: id.to_string(),
        resource_type: t.to_string(),
    })
}

fn cursor_text(c: &SectionCursor) -> String {
    format!("{}_{}_{}", c.effective_at, c.resource_type, c.id)
}

/// Epoch ms of 00:00 Finnish local time on `date` (UTC+2, or UTC+3 in summer).
pub fn helsinki_midnight(date: time::Date) -> i64 {
    kanta_fhir::datetime::helsinki_midnight(date)
}

fn parse_day(s: &str) -> Option<time::Date> {
    let f = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s.trim(), &f).ok()
}

/// The filters as the store takes them, or the translated reason they cannot be used.
struct Filters {
    since: Option<i64>,
    until: Option<i64>,
    org: Option<String>,
}

fn filters(q: &ListQuery) -> Result<Filters, &'static str> {
    let day = |s: &Option<String>| -> Result<Option<time::Date>, &'static str> {
        match s.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(t) => parse_day(t).map(Some).ok_or("filter-bad-date"),
        }
    };
    let (from, to) = (day(&q.from)?, day(&q.to)?);
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err("filter-bad-range");
        }
    }
    let org = q
        .provider
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if org.is_some_and(|o| !valid_id(o)) {
        return Err("filter-bad-provider");
    }
    Ok(Filters {
        since: from.map(helsinki_midnight),
        // The "to" day is included: up to the next midnight.
        until: to.and_then(|d| d.next_day()).map(helsinki_midnight),
        org: org.map(str::to_string),
    })
}

/// What the page may show of one released row: the display rules over the facts the judge used.
fn check(
    row: &SectionRow,
    section: Section,
    provider: String,
    facts: &HashMap<String, DocumentFacts>,
    now_ms: i64,
) -> Option<Visible<Item>> {
    // The borrowed parse, as the judge's (no `Value` for what is read once).
    let body = row.found.json.doc();
    let item = Item {
        doc: doc_row(body.node()),
        date: helsinki_datetime(row.effective_at),
        provider,
        href: if section == Section::Visits {
            "/visits".into()
        } else {
            format!(
                "/records/{}/{}/{}",
                section.code(),
                row.found.resource_type,
                row.found.id
            )
        },
        section_key: format!("section-{}", section.code()),
    };
    visible(item, facts, &row.found.resource_type, &row.found.id, now_ms)
}

/// Organisations as the pages name them, read once per request (seeded with those the access
/// decision's facts already read).
#[derive(Default)]
pub(crate) struct Orgs(pub(crate) HashMap<String, Recorder>);

impl Orgs {
    pub(crate) async fn get(&mut self, state: &AppState, id: &str) -> &Recorder {
        if !self.0.contains_key(id) {
            let r = recorder(state, id).await;
            self.0.insert(id.to_string(), r);
        }
        &self.0[id]
    }

    /// The name of the organisation that recorded `row`.
    async fn of(&mut self, state: &AppState, row: &SectionRow) -> String {
        match row.org.as_deref() {
            Some(id) => self.get(state, id).await.name.clone(),
            None => String::new(),
        }
    }
}

/// The Kanta convention for an Organization's data protection officer (docs/fhir-conventions.md).
const DPO_PURPOSE: (&str, &str) = ("urn:kanta:cs:contact-purpose", "dpo");

impl Recorder {
    /// An organisation we hold nothing about, named by its reference.
    pub fn unknown(name: &str) -> Recorder {
        Recorder {
            name: name.to_string(),
            joined_at: None,
            dpo_name: String::new(),
            dpo_email: String::new(),
            dpo_phone: String::new(),
        }
    }
}

/// The organisation's name, joining date and data protection officer (shared reference data: no
/// patient's data, nothing to audit).
pub(crate) async fn recorder(state: &AppState, id: &str) -> Recorder {
    let mut r = Recorder::unknown(id);
    let org = match state.store.registry("Organization", id).await {
        Ok(Some(org)) => org.body,
        _ => return r,
    };
    if let Some(name) = org.get("name").and_then(Value::as_str) {
        r.name = name.to_string();
    }
    r.joined_at = kanta_fhir::display::provider_joined_at(&org);
    let dpo = org
        .get("contact")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| {
            c.pointer("/purpose/coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|k| {
                    k.get("system").and_then(Value::as_str) == Some(DPO_PURPOSE.0)
                        && k.get("code").and_then(Value::as_str) == Some(DPO_PURPOSE.1)
                })
        });
    if let Some(c) = dpo {
        r.dpo_name = c
            .pointer("/name/text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for t in c
            .get("telecom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let v = t.get("value").and_then(Value::as_str).unwrap_or_default();
            match t.get("system").and_then(Value::as_str) {
                Some("email") if r.dpo_email.is_empty() => r.dpo_email = v.to_string(),
                Some("phone") if r.dpo_phone.is_empty() => r.dpo_phone = v.to_string(),
                _ => {}
            }
        }
    }
    r
}

/// The audit record's frame for a citizen's page: the citizen as actor, whose data it is (and, when
/// acting for another, both persons: R-OPS-3).
fn access(
    s: &SessionRow,
    whose: &Whose,
    rid: &RequestId,
    now_ms: i64,
    action: Action,
    query: String,
) -> Access {
    Access {
        actor: Actor::Citizen {
            person: s.patient_key,
        },
        on_behalf_of: whose.on_behalf_of,
        action,
        query: Some(query),
        request_id: rid.0.clone(),
        now_ms,
        subject: Some(whose.key),
    }
}

/// `GET /records/{section}`: one section, newest first, twenty a page, filtered.
pub async fn list(
    State(state): State<AppState>,
    Citizen {
        now,
        lang,
        session: s,
        principal,
        whose,
    }: Citizen,
    rid: RequestId,
    Path(code): Path<String>,
    RawQuery(raw): RawQuery,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let now_ms = kanta_fhir::datetime::millis(now);
    let section = match Section::from_code(&code) {
        Some(Section::Visits) => return Ok(see_other("/visits")),
        Some(sec) => sec,
        None => return Err(PageError::not_found(lang)),
    };
    let view = View::Section(section);
    acting::may(&principal, &whose.acting, view, now_ms, lang)?;
    let Ok(Query(q)) = query else {
        return Err(PageError::bad_page(lang));
    };
    let base = format!("/records/{}", section.code());
    let path = match &raw {
        Some(r) if !r.is_empty() => format!("{base}?{r}"),
        _ => base.clone(),
    };
    let ui = ui_for(&state, lang, &path, Some(&s), "");
    let mut page = SectionPage {
        ui: &ui,
        title_key: format!("section-{}", section.code()),
        nav: nav(Some(section)),
        items: vec![],
        prescriptions: section == Section::Prescriptions,
        filter_error: None,
        from: q.from.clone().unwrap_or_default(),
        to: q.to.clone().unwrap_or_default(),
        provider: q.provider.clone().unwrap_or_default(),
        providers: vec![],
        filtered: false,
        next: None,
        base: base.clone(),
    };
    let f = match filters(&q) {
        Ok(f) => f,
        Err(key) => {
            page.filter_error = Some(key);
            let mut res = render(&page);
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(res);
        }
    };
    page.filtered = f.since.is_some() || f.until.is_some() || f.org.is_some();
    let after = match q.after.as_deref().map(parse_cursor) {
        Some(None) => return Err(PageError::bad_page(lang)),
        Some(c) => c,
        None => None,
    };
    let key = whose.key;
    let query = SectionQuery {
        patient: key,
        section: Some(section.code().to_string()),
        since: f.since,
        until: f.until,
        org: f.org.clone(),
        only: None,
        count: PAGE,
        after,
    };
    let rows = state.store.section(&query);
    let providers = state.store.section_providers(key, section.code());
    let sealed = match (rows.await, providers.await) {
        (Ok(r), Ok(p)) => r.zip(p),
        (Err(e), _) | (_, Err(e)) => return Err(PageError::unavailable(lang, &e)),
    };
    let audit = access(
        &s,
        &whose,
        &rid,
        now_ms,
        Action::Search,
        format!("view=section:{}", section.code()),
    );
    let joined = Joined::of_holders(&state, &sealed).await;
    let mut facts = HashMap::new();
    let judge = citizen_judge(&principal, view, &whose.acting, &joined, &mut facts, now_ms);
    let (_, (rows, providers)) = state
        .audit
        .release(sealed, &audit, judge)
        .await
        .map_err(|e| PageError::unavailable(lang, &e))?;
    let mut orgs = joined.into_orgs();
    for id in &providers.orgs {
        let name = orgs.get(&state, id).await.name.clone();
        page.providers.push((id.clone(), name));
    }
    page.providers.sort_by(|a, b| a.1.cmp(&b.1));
    for row in &rows.rows {
        let org = orgs.of(&state, row).await;
        page.items.extend(check(row, section, org, &facts, now_ms));
    }
    page.next = rows.next.as_ref().map(|c| {
        let mut link = format!("{base}?after={}", cursor_text(c));
        for (k, v) in [
            ("from", &page.from),
            ("to", &page.to),
            ("provider", &page.provider),
        ] {
            if !v.is_empty() {
                link.push_str(&format!("&{k}={}", urlencode(v)));
            }
        }
        link
    });
    Ok(render(&page))
}

/// Percent-encoding of a query value (everything but the unreserved characters).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /records/{section}/{type}/{id}`: one record, if it is the citizen's own and the rules show
/// it; otherwise "not found" (a hidden record's existence is not revealed).
pub async fn detail(
    State(state): State<AppState>,
    Citizen {
        now,
        lang,
        session: s,
        principal,
        whose,
    }: Citizen,
    rid: RequestId,
    Path((code, rtype, id)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let now_ms = kanta_fhir::datetime::millis(now);
    let not_found = || Err(PageError::not_found(lang));
    let Some(section) = Section::from_code(&code).filter(|s| *s != Section::Visits) else {
        return not_found();
    };
    if kanta_fhir::resource::scope_of(&rtype).is_none() || !valid_id(&id) {
        return not_found();
    }
    let view = View::Section(section);
    acting::may(&principal, &whose.acting, view, now_ms, lang)?;
    let sealed = match state
        .store
        .section(&SectionQuery {
            patient: whose.key,
            section: Some(section.code().to_string()),
            since: None,
            until: None,
            org: None,
            only: Some((rtype.clone(), id.clone())),
            count: 1,
            after: None,
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return Err(PageError::unavailable(lang, &e)),
    };
    let audit = access(
        &s,
        &whose,
        &rid,
        now_ms,
        Action::Read,
        format!("view=record:{}", section.code()),
    );
    let joined = Joined::of_holders(&state, &sealed).await;
    let mut facts = HashMap::new();
    let judge = citizen_judge(&principal, view, &whose.acting, &joined, &mut facts, now_ms);
    let (_, page) = state
        .audit
        .release(sealed, &audit, judge)
        .await
        .map_err(|e| PageError::unavailable(lang, &e))?;
    let Some(row) = page.rows.first() else {
        return not_found();
    };
    let recorder = recorder(&state, row.org.as_deref().unwrap_or_default()).await;
    let Some(item) = check(row, section, recorder.name.clone(), &facts, now_ms) else {
        return not_found();
    };
    let event = row.encounter.as_ref().map(|e| {
        let e = e.value();
        ServiceEvent {
            date: kanta_fhir::json::at(e, "/period/start")
                .and_then(Value::as_str)
                .and_then(kanta_fhir::datetime::parse_start)
                .map(|t| helsinki_datetime(kanta_fhir::datetime::millis(t)))
                .unwrap_or_default(),
            inpatient: care_setting(e) == kanta_domain::display::CareSetting::Inpatient,
            reason: e
                .pointer("/reasonCode/0/text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    });
    let path = format!("/records/{}/{rtype}/{id}", section.code());
    let ui = ui_for(&state, lang, &path, Some(&s), "");
    Ok(render(&RecordPage {
        ui: &ui,
        title_key: format!("section-{}", section.code()),
        nav: nav(Some(section)),
        item,
        event,
        recorder,
        back: format!("/records/{}", section.code()),
    }))
}

/// The front page's "what is new": the newest records of every section the rules show.
pub(crate) async fn whats_new(
    state: &AppState,
    s: &SessionRow,
    whose: &Whose,
    rid: &RequestId,
) -> Result<Vec<Visible<Item>>, String> {
    let now_ms = kanta_fhir::datetime::millis(state.clock.now());
    let sealed = state
        .store
        .section(&SectionQuery {
            patient: whose.key,
            section: None,
            since: None,
            until: None,
            org: None,
            only: None,
            // Room for rows the rules hide.
            count: NEW * 4,
            after: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    let audit = access(
        s,
        whose,
        rid,
        now_ms,
        Action::Search,
        "view=whats-new".into(),
    );
    let joined = Joined::of_holders(state, &sealed).await;
    let principal = super::citizen_principal(s);
    let mut facts = HashMap::new();
    let judge = citizen_judge(
        &principal,
        View::WhatsNew,
        &whose.acting,
        &joined,
        &mut facts,
        now_ms,
    );
    let (_, page) = state
        .audit
        .release(sealed, &audit, judge)
        .await
        .map_err(|e| e.to_string())?;
    let mut orgs = joined.into_orgs();
    let mut out = vec![];
    for row in &page.rows {
        let Some(section) = row.section.as_deref().and_then(Section::from_code) else {
            continue;
        };
        let org = orgs.of(state, row).await;
        out.extend(check(row, section, org, &facts, now_ms));
        if out.len() == NEW {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portal::i18n::Lang;
    use time::macros::date;

    #[test]
    fn every_section_has_a_title_in_every_language() {
        for lang in [Lang::Fi, Lang::Sv, Lang::En] {
            for n in nav(None) {
                assert_ne!(
                    super::super::i18n::tr(lang, &n.key, &[]),
                    n.key,
                    "{}",
                    lang.code()
                );
            }
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let c = SectionCursor {
            effective_at: 1700,
            id: "abc-1".into(),
            resource_type: "Observation".into(),
        };
        assert_eq!(parse_cursor(&cursor_text(&c)), Some(c));
        for bad in [
            "",
            "1700",
            "1700_Observation",
            "x_Observation_a",
            "1700_Obs1_a",
            "1700_Observation_",
            "1700_Observation_a b",
            "1700_Observation_<script>",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn finnish_midnight_in_winter_and_summer() {
        // 1 January: UTC+2; 1 July: UTC+3.
        assert_eq!(helsinki_midnight(date!(2026 - 01 - 01)), 1_767_218_400_000);
        assert_eq!(helsinki_midnight(date!(2026 - 07 - 01)), 1_782_853_200_000);
    }

    #[test]
    fn filters_are_checked() {
        let q = |from: &str, to: &str, provider: &str| ListQuery {
            from: Some(from.into()),
            to: Some(to.into()),
            provider: Some(provider.into()),
            after: None,
        };
        let f = filters(&q("2026-01-01", "2026-01-01", "org-hus"))
            .ok()
            .unwrap();
        assert_eq!(f.since, Some(1_767_218_400_000));
        assert_eq!(
            f.until,
            Some(1_767_218_400_000 + 86_400_000),
            "the to-day is included"
        );
        assert_eq!(f.org.as_deref(), Some("org-hus"));
        let none = filters(&q("", " ", "")).ok().unwrap();
        assert!(none.since.is_none() && none.until.is_none() && none.org.is_none());
        assert_eq!(
            filters(&q("1.1.2026", "", "")).err(),
            Some("filter-bad-date")
        );
        assert_eq!(
            filters(&q("2026-02-30", "", "")).err(),
            Some("filter-bad-date")
        );
        assert_eq!(
            filters(&q("2026-02-01", "2026-01-01", "")).err(),
            Some("filter-bad-range")
        );
        assert_eq!(
            filters(&q("", "", "org'<x>")).err(),
            Some("filter-bad-provider")
        );
    }
}
