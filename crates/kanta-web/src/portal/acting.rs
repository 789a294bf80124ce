//! Acting for another person in MyKanta (R-MINOR, R-PROXY, R-OPS-2, R-OPS-3): whose data a page
//! shows and on what standing, the "act for someone else" page, the switch (a new session id,
//! audited with both persons before it takes effect) and the way back to one's own data.
//!
//! The standing comes from the population register (guardianship, a right to information, a
//! coded custody agreement, non-disclosure markers) and from the mandate service (a health-care
//! mandate for an adult; the guardians' mutual authorisation). The rules are the one decision's
//! (`kanta_domain::access`); this module only gathers the facts. Children come from the register,
//! not from the mandate service, so acting for one's children keeps working when the mandate
//! service is down; acting for an adult then stops, with a page that names the service.

use super::session::{hash, new_session_id, random_token};
use super::test_mandates::MUTUAL_ISSUE;
use super::{
    error_page, helsinki, lang_of, posting_session, render, see_other, ui_for, with_cookies,
    Citizen, PageError,
};
use crate::AppState;
use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kanta_domain::access::{self, Action as Do, Decision, Denial, Facts, Principal, Target};
use kanta_domain::acting::{
    Acting, Guardianship, MandateCheck, Standing, SubjectFacts, HEALTH_CARE_ISSUE,
};
use kanta_domain::audit::{Action, Actor, AuditRecord, Outcome};
use kanta_domain::hetu::Hetu;
use kanta_domain::ids::PatientKey;
use kanta_domain::population::{PersonRecord, RelationKind};
use kanta_store::{ActingFor, ActingVia, SessionRow};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use time::{Date, OffsetDateTime};

/// Whose data a page shows, and the facts of the standing for the one decision.
#[derive(Clone, Debug)]
pub struct Whose {
    /// The person whose data it is (the citizen, or whom they act for).
    pub key: PatientKey,
    /// The standing, the subject, today's Finnish day.
    pub acting: Acting,
    /// For the audit record: whom the citizen acts for, when not themselves (R-OPS-3).
    pub on_behalf_of: Option<PatientKey>,
}

/// The standings pages were shown under, kept a few seconds per (citizen, subject) so that a page
/// view does not read the register (and the mandate cache) again and again; never longer than the
/// mandate re-check interval. A switch never uses it (it asks afresh). Ages are computed anew on
/// every request from the kept birth date and today's Finnish day.
pub struct StandingCache {
    ttl_ms: i64,
    entries: Mutex<HashMap<StandingKey, (Acting, i64)>>,
}

/// (citizen's HETU, subject's HETU, by mandate).
type StandingKey = (String, String, bool);

/// At most this many standings are kept; beyond it the cache is emptied.
const STANDING_CACHE_MAX: usize = 100_000;

impl StandingCache {
    pub fn new(ttl: std::time::Duration) -> StandingCache {
        StandingCache {
            ttl_ms: ttl.as_millis().min(i64::MAX as u128) as i64,
            entries: Mutex::default(),
        }
    }

    fn key(me: &Hetu, subject: &Hetu, by_mandate: bool) -> StandingKey {
        (
            me.as_str().to_string(),
            subject.as_str().to_string(),
            by_mandate,
        )
    }

    fn get(&self, me: &Hetu, subject: &Hetu, by_mandate: bool, now_ms: i64) -> Option<Acting> {
        let m = self.entries.lock().ok()?;
        let (acting, at) = m.get(&Self::key(me, subject, by_mandate))?;
        (now_ms >= *at && now_ms - at < self.ttl_ms).then_some(*acting)
    }

    fn put(&self, me: &Hetu, subject: &Hetu, by_mandate: bool, acting: Acting, now_ms: i64) {
        // An unanswered mandate service is not kept: the next page asks again.
        if acting.standing == Standing::Proxy(MandateCheck::Unavailable) {
            return;
        }
        if let Ok(mut m) = self.entries.lock() {
            if m.len() >= STANDING_CACHE_MAX {
                m.clear();
            }
            m.insert(Self::key(me, subject, by_mandate), (acting, now_ms));
        }
    }
}

/// Today's Finnish calendar day at `now`.
pub fn finnish_day(now: OffsetDateTime) -> Date {
    helsinki(kanta_fhir::datetime::millis(now)).map_or(now.date(), |t| t.date())
}

fn subject_of(record: Option<&PersonRecord>, hetu: &Hetu) -> SubjectFacts {
    match record {
        Some(r) => SubjectFacts {
            born: r.person.birth_date,
            deceased: r.person.deceased.is_some(),
            non_disclosure: r.person.non_disclosure,
        },
        None => SubjectFacts {
            born: hetu.birth_date(),
            deceased: false,
            non_disclosure: false,
        },
    }
}

/// Whose data the session's pages show. For oneself nothing is read; when acting for another, the
/// population register (and, for an adult or a guardian who needs the mutual authorisation, the
/// mandate service, its answer cached for the configured interval) is asked now.
pub async fn whose(
    state: &AppState,
    s: &SessionRow,
    now: OffsetDateTime,
    lang: super::i18n::Lang,
) -> Result<Whose, PageError> {
    let today = finnish_day(now);
    let Some(a) = &s.acting_for else {
        return Ok(Whose {
            key: s.patient_key,
            acting: Acting {
                standing: Standing::Own,
                subject: subject_of(None, &s.hetu),
                today,
            },
            on_behalf_of: None,
        });
    };
    let by_mandate = a.via == ActingVia::Mandate;
    let now_ms = kanta_fhir::datetime::millis(now);
    let cache = &state.portal.standing_cache;
    let acting = match cache.get(&s.hetu, &a.hetu, by_mandate, now_ms) {
        Some(mut acting) => {
            acting.today = today;
            acting
        }
        None => {
            let acting = standing_for(state, &s.hetu, &a.hetu, by_mandate, now, false)
                .await
                .map_err(|e| PageError::unavailable(lang, &e))?;
            cache.put(&s.hetu, &a.hetu, by_mandate, acting, now_ms);
            acting
        }
    };
    Ok(Whose {
        key: a.key,
        acting,
        on_behalf_of: Some(a.key),
    })
}

/// The standing of `me` to `subject` as the register (or, `by_mandate`, the mandate service) says
/// now. `fresh`: ask the mandate service even if its answer is cached (a switch, an action).
pub async fn standing_for(
    state: &AppState,
    me: &Hetu,
    subject: &Hetu,
    by_mandate: bool,
    now: OffsetDateTime,
    fresh: bool,
) -> Result<Acting, String> {
    let today = finnish_day(now);
    let now_ms = kanta_fhir::datetime::millis(now);
    let record = state.portal.register.person(subject).await?;
    let facts = subject_of(record.as_ref(), subject);
    let standing = match by_mandate {
        true => {
            Standing::Proxy(mandate(state, me, subject, HEALTH_CARE_ISSUE, now_ms, fresh).await)
        }
        false => {
            let mine: Vec<_> = record
                .as_ref()
                .map(|r| {
                    r.relations
                        .iter()
                        .filter(|rel| &rel.holder == me && rel.in_force(today))
                        .collect()
                })
                .unwrap_or_default();
            let has = |k: RelationKind| mine.iter().find(|r| r.kind == k);
            if let Some(g) = has(RelationKind::Guardian) {
                let me_marked = holder_marked(state, me).await?;
                let needs_mutual = me_marked
                    || g.custody == Some(kanta_domain::population::CustodyAgreement::Uncoded);
                // Asked only when it matters: a down mandate service then blocks only these.
                let mutual = needs_mutual
                    && mandate(state, me, subject, MUTUAL_ISSUE, now_ms, fresh).await
                        == MandateCheck::Allowed;
                Standing::Guardian(Guardianship {
                    custody: g.custody,
                    mutual_authorisation: mutual,
                    holder_non_disclosure: me_marked,
                })
            } else if has(RelationKind::RightToInformation).is_some() {
                let me_marked = holder_marked(state, me).await?;
                Standing::RightToInformation {
                    holder_non_disclosure: me_marked,
                }
            } else if has(RelationKind::GuardianOfInterests).is_some() {
                Standing::GuardianOfInterests
            } else {
                Standing::Unrelated
            }
        }
    };
    Ok(Acting {
        standing,
        subject: facts,
        today,
    })
}

/// Whether the register records a non-disclosure marker on the person acting.
async fn holder_marked(state: &AppState, me: &Hetu) -> Result<bool, String> {
    Ok(state
        .portal
        .register
        .person(me)
        .await?
        .is_some_and(|r| r.person.non_disclosure))
}

async fn mandate(
    state: &AppState,
    me: &Hetu,
    subject: &Hetu,
    issue: &str,
    now_ms: i64,
    fresh: bool,
) -> MandateCheck {
    match &state.portal.mandates {
        Some(service) => {
            state
                .portal
                .mandate_cache
                .check(service.as_ref(), me, subject, issue, now_ms, fresh)
                .await
        }
        None => MandateCheck::Unavailable,
    }
}

/// The translated message key for a refusal of acting (the first reason that explains it).
pub fn refusal_key(denials: &[Denial]) -> &'static str {
    for d in denials {
        let key = match d {
            Denial::MandateServiceUnavailable => "acting-refused-mandates-down",
            Denial::NoValidMandate => "acting-refused-no-mandate",
            Denial::MandateNotForMinor => "acting-refused-mandate-minor",
            Denial::ChildNonDisclosure => "acting-refused-child-marker",
            Denial::GuardianNonDisclosure => "acting-refused-guardian-marker",
            Denial::HolderNonDisclosure => "acting-refused-holder-marker",
            Denial::CustodyOtherGuardian => "acting-refused-custody-other",
            Denial::CustodyNotCoded => "acting-refused-custody-uncoded",
            Denial::NotAMinor => "acting-refused-adult",
            Denial::SubjectDeceased => "acting-refused-deceased",
            Denial::GuardianOfInterests => "acting-refused-guardian-of-interests",
            Denial::ActingForAnother | Denial::NotForThisStanding | Denial::RightHolderViewOnly => {
                "acting-refused-function"
            }
            _ => continue,
        };
        return key;
    }
    "acting-refused"
}

/// A refusal as a translated 403 page (R-OPS-2: the mandate service being down is named).
pub fn refused(lang: super::i18n::Lang, denials: &[Denial]) -> PageError {
    PageError {
        lang,
        status: if denials.contains(&Denial::MandateServiceUnavailable) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::FORBIDDEN
        },
        key: refusal_key(denials),
    }
}

/// The request-level decision for a page: may this citizen, as who they act as now, open `view`
/// at all? Refused: the translated page saying why (a revoked mandate, a child who turned 18, the
/// mandate service down, a function not of this role).
pub fn may(
    principal: &Principal,
    acting: &Acting,
    view: access::View,
    now_ms: i64,
    lang: super::i18n::Lang,
) -> Result<(), PageError> {
    match access::decide(
        principal,
        &Do::View(view),
        Target::Request,
        &Facts {
            acting: Some(acting),
            ..Facts::default()
        },
        now_ms,
    ) {
        Decision::Permit(_) => Ok(()),
        Decision::Denied(d) => Err(refused(lang, &d)),
    }
}

/// Whether a view is offered (in the navigation) to this principal now: what is not allowed is
/// not offered.
pub fn offers(principal: &Principal, acting: &Acting, view: access::View, now_ms: i64) -> bool {
    may(principal, acting, view, now_ms, super::i18n::Lang::Fi).is_ok()
}

// --- the page ---------------------------------------------------------------------------------

/// A person the citizen may (or, with the reason, may not) act for.
pub struct Candidate {
    pub name: String,
    /// The HETU posted by the switch form (a POST body, never a URL).
    pub hetu: String,
    pub role_key: &'static str,
    /// `None`: may switch; otherwise the reason's message key.
    pub refused_key: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "act_for.html")]
struct ActForPage<'a> {
    ui: &'a super::Ui,
    acting: Option<&'a str>,
    candidates: Vec<Candidate>,
    mandates_available: bool,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct ActForQuery {
    #[serde(default)]
    notice: Option<String>,
}

fn role_key(kind: RelationKind) -> &'static str {
    match kind {
        RelationKind::Guardian => "acting-as-guardian",
        RelationKind::RightToInformation => "acting-as-right-holder",
        RelationKind::GuardianOfInterests => "acting-as-guardian-of-interests",
    }
}

/// `GET /act-for`: the children and others the register names, each with whether the switch is
/// possible (and why not), and the way to choose an adult through the mandate service.
pub async fn page(
    State(state): State<AppState>,
    c: Citizen,
    Query(q): Query<ActForQuery>,
) -> Result<Response, PageError> {
    let s = &c.session;
    let rels = state
        .store
        .relations_held_by(&s.hetu)
        .await
        .map_err(|e| PageError::unavailable(c.lang, &e))?;
    let today = finnish_day(c.now);
    let mut candidates = vec![];
    let mut seen: Vec<Hetu> = vec![];
    for r in rels.iter().filter(|r| r.in_force(today)) {
        if seen.contains(&r.subject) {
            continue;
        }
        seen.push(r.subject.clone());
        let record = state
            .portal
            .register
            .person(&r.subject)
            .await
            .map_err(|e| PageError::unavailable(c.lang, &e))?;
        let name = record
            .as_ref()
            .map(|p| format!("{} {}", p.person.given_names, p.person.family_name))
            .unwrap_or_default();
        let acting = standing_for(&state, &s.hetu, &r.subject, false, c.now, false)
            .await
            .map_err(|e| PageError::unavailable(c.lang, &e))?;
        let refused_key = match decide_switch(s, None, &acting, c.now) {
            Decision::Permit(_) => None,
            Decision::Denied(d) => Some(refusal_key(&d)),
        };
        candidates.push(Candidate {
            name,
            hetu: r.subject.as_str().to_string(),
            role_key: role_key(r.kind),
            refused_key,
        });
    }
    let ui = ui_for(&state, c.lang, "/act-for", Some(s), "");
    let notice = q.notice.as_deref().and_then(|n| match n {
        "down" => Some(ui.t("acting-refused-mandates-down")),
        "no-principal" => Some(ui.t("acting-no-principal")),
        "mandate-cancelled" => Some(ui.t("acting-mandate-cancelled")),
        _ => None,
    });
    Ok(render(&ActForPage {
        ui: &ui,
        acting: s.acting_for.as_ref().map(|a| a.name.as_str()),
        candidates,
        mandates_available: state.portal.mandates.is_some(),
        notice,
    }))
}

/// The decision of a switch to the person whose key is `subject_key` (`None` before a key is
/// claimed: listing, the first check; the rules read the standing, and any key not the citizen's).
fn decide_switch(
    s: &SessionRow,
    subject_key: Option<PatientKey>,
    acting: &Acting,
    now: OffsetDateTime,
) -> Decision {
    let subject = subject_key.unwrap_or(PatientKey(if s.patient_key.0 == i64::MIN {
        i64::MAX
    } else {
        i64::MIN
    }));
    access::decide(
        &Principal::Citizen {
            person: s.patient_key,
            acting_for: Some(subject),
        },
        &Do::ActFor,
        Target::Summary { patient: subject },
        &Facts {
            acting: Some(acting),
            ..Facts::default()
        },
        kanta_fhir::datetime::millis(now),
    )
}

#[derive(Deserialize)]
pub struct SwitchForm {
    #[serde(default)]
    csrf: String,
    /// The person to act for (from the list), by HETU.
    #[serde(default)]
    person: String,
    /// `register` (a child, from the list) or `mandate` (an adult chosen in the mandate service).
    #[serde(default)]
    via: String,
}

/// `POST /act-for`: switch to act for a person of the list (or one the mandate service returned).
pub async fn switch(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: crate::RequestId,
    Form(f): Form<SwitchForm>,
) -> Response {
    let now = state.clock.now();
    let lang = lang_of(&headers);
    let s = match posting_session(&state, &headers, &f.csrf, now, true).await {
        Ok(Some(s)) if s.confirmed => s,
        Ok(_) => return see_other("/"),
        Err(r) => return r,
    };
    let by_mandate = match f.via.as_str() {
        "register" => false,
        "mandate" => true,
        _ => return error_page(lang, StatusCode::BAD_REQUEST, "error-bad-page"),
    };
    let Ok(subject) = Hetu::parse(f.person.trim()) else {
        return error_page(lang, StatusCode::BAD_REQUEST, "error-bad-page");
    };
    switch_to(&state, &s, &subject, by_mandate, lang, request_id.0, now).await
}

/// Switch the session `s` to act for `subject` (R-OPS-3: audited with both persons before the new
/// session exists; if the record cannot be written, no switch).
pub async fn switch_to(
    state: &AppState,
    s: &SessionRow,
    subject: &Hetu,
    by_mandate: bool,
    lang: super::i18n::Lang,
    request_id: Option<String>,
    now: OffsetDateTime,
) -> Response {
    let acting = match standing_for(state, &s.hetu, subject, by_mandate, now, true).await {
        Ok(a) => a,
        Err(e) => return PageError::unavailable(lang, &e).into_response(),
    };
    let via = match acting.standing {
        Standing::Guardian(_) => ActingVia::Guardian,
        Standing::RightToInformation { .. } => ActingVia::RightToInformation,
        Standing::Proxy(_)
        | Standing::Own
        | Standing::GuardianOfInterests
        | Standing::Unrelated => ActingVia::Mandate,
    };
    // The key is claimed only for someone the citizen may act for.
    if let Decision::Denied(d) = decide_switch(s, None, &acting, now) {
        return refused(lang, &d).into_response();
    }
    let key = match state.store.claim_patient_key(subject, now).await {
        Ok(k) => k,
        Err(e) => return PageError::unavailable(lang, &e).into_response(),
    };
    let permit = match decide_switch(s, Some(key), &acting, now) {
        Decision::Permit(p) => p,
        Decision::Denied(d) => return refused(lang, &d).into_response(),
    };
    let name = match state.portal.register.person(subject).await {
        Ok(Some(r)) => format!("{} {}", r.person.given_names, r.person.family_name),
        Ok(None) => String::new(),
        Err(e) => return PageError::unavailable(lang, &e).into_response(),
    };
    let record = AuditRecord {
        schema: kanta_domain::audit::AUDIT_SCHEMA,
        recorded_at: kanta_fhir::datetime::millis(now),
        patient: Some(key),
        actor: Actor::Citizen {
            person: s.patient_key,
        },
        on_behalf_of: Some(key),
        action: Action::SwitchActingFor,
        entities: vec![],
        query: Some(format!("via={}", via.code())),
        outcome: Outcome::Success,
        request_id,
        basis: Some(permit.basis().clone()),
    };
    replace_session(
        state,
        s,
        Some(ActingFor {
            key,
            hetu: subject.clone(),
            name,
            via,
        }),
        record,
        lang,
    )
    .await
}

async fn replace_session(
    state: &AppState,
    s: &SessionRow,
    acting_for: Option<ActingFor>,
    record: AuditRecord,
    lang: super::i18n::Lang,
) -> Response {
    if let Err(e) = state.audit.commit(vec![record]).await {
        tracing::error!(error = %e, "audit log unavailable: no switch");
        return error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable");
    }
    let id = new_session_id();
    let row = SessionRow {
        id_hash: hash(&id),
        acting_for,
        csrf_token: random_token(32),
        ..s.clone()
    };
    match state.store.session_replace(&s.id_hash, &row).await {
        Ok(true) => with_cookies(
            see_other("/"),
            [state
                .portal
                .cookies
                .set(state.portal.cookies.session(), &id, None)],
        ),
        Ok(false) => see_other("/"),
        Err(e) => {
            tracing::error!(error = %e, "session store unavailable: no switch");
            error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable")
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /act-for/self`: back to one's own data (one click from every page), audited.
pub async fn back_to_self(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: crate::RequestId,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let now = state.clock.now();
    let lang = lang_of(&headers);
    let s = match posting_session(&state, &headers, &f.csrf, now, true).await {
        Ok(Some(s)) => s,
        Ok(None) => return see_other("/"),
        Err(r) => return r,
    };
    let Some(was) = s.acting_for.as_ref().map(|a| a.key) else {
        return see_other("/");
    };
    // The one decision, like every switch (back to oneself is always permitted): its basis goes
    // into the record.
    let permit = match access::decide(
        &super::citizen_principal(&s),
        &Do::ActFor,
        Target::Summary {
            patient: s.patient_key,
        },
        &Facts::default(),
        kanta_fhir::datetime::millis(now),
    ) {
        Decision::Permit(p) => p,
        Decision::Denied(d) => return refused(lang, &d).into_response(),
    };
    let record = AuditRecord {
        schema: kanta_domain::audit::AUDIT_SCHEMA,
        recorded_at: kanta_fhir::datetime::millis(now),
        patient: Some(s.patient_key),
        actor: Actor::Citizen {
            person: s.patient_key,
        },
        on_behalf_of: None,
        action: Action::SwitchActingFor,
        entities: vec![],
        query: Some(format!("reason=back-to-self;was={was}")),
        outcome: Outcome::Success,
        request_id: request_id.0,
        basis: Some(permit.basis().clone()),
    };
    replace_session(&state, &s, None, record, lang).await
}

// --- choosing an adult through the mandate service (the HPA flow) --------------------------------

fn callback_uri(state: &AppState) -> String {
    format!("{}/act-for/mandate/callback", state.config.public_url)
}

/// The `state` of the mandate flow: the HPA session id, bound to this portal session by an HMAC
/// keyed with its CSRF token (a forged callback cannot name another session's choice).
fn flow_state(s: &SessionRow, hpa_session: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.csrf_token.as_bytes());
    let tag = ring::hmac::sign(&key, hpa_session.as_bytes());
    let mac: String = tag.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{hpa_session}.{mac}")
}

/// `POST /act-for/mandate`: register the delegate and send the browser to the selection page.
pub async fn mandate_start(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let now = state.clock.now();
    let lang = lang_of(&headers);
    let s = match posting_session(&state, &headers, &f.csrf, now, true).await {
        Ok(Some(s)) if s.confirmed => s,
        Ok(_) => return see_other("/"),
        Err(r) => return r,
    };
    let Some(service) = state.portal.mandates.clone() else {
        return see_other("/act-for?notice=down");
    };
    match service.register(&s.hetu).await {
        Ok(hpa) => {
            let url = service.selection_url(
                &hpa.user_id,
                &callback_uri(&state),
                &flow_state(&s, &hpa.session_id),
                lang.code(),
            );
            axum::response::Redirect::to(&url).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "mandate service: register failed");
            see_other("/act-for?notice=down")
        }
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: Option<String>,
}

/// `GET /act-for/mandate/callback`: the principal chosen; checked again and switched to.
pub async fn mandate_callback(
    State(state): State<AppState>,
    c: Citizen,
    request_id: crate::RequestId,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let s = &c.session;
    let Some(service) = state.portal.mandates.clone() else {
        return see_other("/act-for?notice=down");
    };
    let Some((hpa_session, _)) = q.state.split_once('.') else {
        return error_page(c.lang, StatusCode::BAD_REQUEST, "error-bad-page");
    };
    if !super::session::same_secret(&flow_state(s, hpa_session), &q.state) {
        return error_page(c.lang, StatusCode::FORBIDDEN, "error-cross-site");
    }
    if q.error.is_some() {
        return see_other("/act-for?notice=mandate-cancelled");
    }
    let Some(code) = q.code.as_deref() else {
        return error_page(c.lang, StatusCode::BAD_REQUEST, "error-bad-page");
    };
    let principals = match service
        .principals(hpa_session, code, &callback_uri(&state))
        .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "mandate service: principals failed");
            return see_other("/act-for?notice=down");
        }
    };
    // The selection page chooses one person; with several, the first (each is checked anyway).
    let Some(p) = principals.first() else {
        return see_other("/act-for?notice=no-principal");
    };
    switch_to(&state, s, &p.hetu, true, c.lang, request_id.0, c.now).await
}

/// The banner every page shows while acting for another: whose data, and as whom.
pub struct Banner {
    pub name: String,
    pub role_key: &'static str,
}

pub fn banner(s: &SessionRow) -> Option<Banner> {
    let a = s.acting_for.as_ref()?;
    let role_key = match a.via {
        ActingVia::Guardian => "acting-as-guardian",
        ActingVia::RightToInformation => "acting-as-right-holder",
        ActingVia::Mandate => "acting-as-proxy",
    };
    Some(Banner {
        name: a.name.clone(),
        role_key,
    })
}
