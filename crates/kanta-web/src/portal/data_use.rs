//! MyKanta "Management of data use" (R-INFO-1…4, R-ACT-2…7, R-ACT-10, R-VIEW-6, R-X-1): the
//! information notice that comes first, disclosure consents (health and social care separately),
//! disclosure prohibitions (a provider, one of its registers, one visit), the prescription
//! prohibition, the organ donation will and the living will — each change a new `Consent` (or a
//! new version of one), decided as its R-ACT function by the one decision inside the write, and
//! audited with it; and the preview of what a chosen provider could read now, decided by the same
//! function the provider API uses (`fhir_api::Consents::decide`).

use super::facts::{citizen_judge, visible, Joined};
use super::i18n::{tr, Lang};
use super::sections::Orgs;
use super::{csrf_ok, render, see_other, ui_for, Citizen, PageError, Ui};
use crate::fhir_api::Consents;
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use kanta_domain::access::{self, Decision, Facts, Function, Interaction, Principal, Target, View};
use kanta_domain::acting::{FunctionFacts, Standing};
use kanta_domain::audit::{Action, Actor};
use kanta_domain::consent::{CentreAccess, ProhibitionScope};
use kanta_domain::ids::{ClientRole, OrgId, PatientKey};
use kanta_fhir::codes;
use kanta_fhir::consent::{self as kc, ConsentKind, ConsentRecord, Draft, RecordedAs, Recorder};
use kanta_store::audit::Access;
use kanta_store::{CitizenWrite, Found, SearchQuery, WriteOp, WriteRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

/// The register that holds what citizens record in MyKanta (the consent and will service).
pub const MYKANTA_REGISTER: &str = "kanta-mykanta";

/// The most consents, visits and providers one page reads.
const MAX_CONSENTS: usize = 1000;
const MAX_VISITS: usize = 100;
const MAX_TEXT: usize = 2000;

/// People known to have received the information notice (R-INFO-1): kept in memory once seen, as
/// a notice once received stays received; a miss asks the store.
#[derive(Default)]
pub struct Informed(Mutex<HashSet<PatientKey>>);

impl Informed {
    fn knows(&self, key: PatientKey) -> bool {
        self.0.lock().map(|s| s.contains(&key)).unwrap_or(false)
    }
    fn remember(&self, key: PatientKey) {
        if let Ok(mut s) = self.0.lock() {
            if s.len() > 200_000 {
                s.clear();
            }
            s.insert(key);
        }
    }
}

/// Whether the notice must come first for this request (R-INFO-1): an adult on their own
/// behalf who has not received it, on any page but the notice itself and the session's own.
pub async fn notice_first(state: &AppState, path: &str, c: &Citizen) -> Result<bool, PageError> {
    let exempt = ["/notice", "/logout", "/session/", "/lang", "/static/"];
    if exempt.iter().any(|p| path.starts_with(p)) || c.session.acting_for.is_some() {
        return Ok(false);
    }
    if kanta_domain::acting::age_on(c.whose.acting.subject.born, c.whose.acting.today) < 18 {
        // Minors are not asked in MyKanta (R-INFO-2).
        return Ok(false);
    }
    let key = c.session.patient_key;
    if state.portal.informed.knows(key) {
        return Ok(false);
    }
    let rows = kanta_store::consents_for_decision(state.store.as_ref(), key)
        .await
        .map_err(|e| PageError::unavailable(c.lang, &e))?;
    let informed = kc::facts(rows.iter().map(|(id, h, v)| (id.as_str(), h.as_deref(), v)))
        .map_err(|e| PageError::unavailable(c.lang, &e))?
        .informed;
    if informed {
        state.portal.informed.remember(key);
    }
    Ok(!informed)
}

// --- reading what is in force --------------------------------------------------------------

/// One consent as the page knows it: its id, version and what it says.
pub struct Held {
    pub id: String,
    pub version: i32,
    pub body: Value,
    pub record: ConsentRecord,
}

/// The subject's Kanta consents (current versions), released to the citizen through the audit log.
async fn consents_of(
    state: &AppState,
    c: &Citizen,
    request_id: &crate::RequestId,
) -> Result<Vec<Held>, PageError> {
    let now_ms = kanta_fhir::datetime::millis(c.now);
    let q = SearchQuery {
        resource_type: "Consent".into(),
        patient: Some(c.whose.key),
        identifier: None,
        ascending: true,
        count: MAX_CONSENTS,
        after: None,
    };
    let unavailable = |e: &dyn std::fmt::Display| PageError::unavailable(c.lang, e);
    let mut q = q;
    let mut found = vec![];
    loop {
        let sealed = state.store.search(&q).await.map_err(|e| unavailable(&e))?;
        let access = access_of(c, request_id, Action::Search, "view=data-use");
        let (_, page) = state
            .audit
            .release(sealed, &access, |subjects| {
                subjects
                    .iter()
                    .map(|s| {
                        // A will is released only to whoever may keep it (not to a proxy or a
                        // guardian): it is decided as its function, not as the view.
                        let action = match kc::kind_of(s.json.value()) {
                            Some(ConsentKind::OrganDonationWill) => {
                                access::Action::Manage(Function::OrganDonationWill)
                            }
                            Some(ConsentKind::LivingWill) => {
                                access::Action::Manage(Function::LivingWill)
                            }
                            _ => access::Action::View(View::DataUse),
                        };
                        decide_as(c, &action, s.target(), now_ms)
                    })
                    .collect()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        found.extend(page.resources);
        match page.next {
            Some(next) if found.len() < kanta_store::CONSENT_FACTS_MAX => q.after = Some(next),
            Some(_) => return Err(unavailable(&"too many consent records")),
            None => break,
        }
    }
    let mut out = vec![];
    for f in found {
        let body = f.to_value();
        let version = body
            .pointer("/meta/versionId")
            .and_then(Value::as_str)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        if let Ok(Some(record)) = kc::read(&body) {
            out.push(Held {
                id: f.id,
                version,
                body,
                record,
            });
        }
    }
    Ok(out)
}

pub(crate) fn access_of(
    c: &Citizen,
    request_id: &crate::RequestId,
    action: Action,
    query: &str,
) -> Access {
    Access {
        actor: Actor::Citizen {
            person: c.session.patient_key,
        },
        on_behalf_of: c.whose.on_behalf_of,
        action,
        query: Some(query.into()),
        request_id: request_id.0.clone(),
        now_ms: kanta_fhir::datetime::millis(c.now),
        subject: Some(c.whose.key),
    }
}

/// The records in force, newest decides (R-CONSENT: a revocation is a later, inactive record).
fn in_force(held: &[Held]) -> Vec<&Held> {
    let pairs: Vec<(String, ConsentRecord)> = held
        .iter()
        .map(|h| (h.id.clone(), h.record.clone()))
        .collect();
    let ids: HashSet<String> = kc::in_force(&pairs).into_iter().map(|(id, _)| id).collect();
    held.iter().filter(|h| ids.contains(&h.id)).collect()
}

/// In which capacity the signed-in citizen records, and who they are.
fn recorder(c: &Citizen) -> Recorder {
    let recorded_as = match c.whose.acting.standing {
        Standing::Own => RecordedAs::Myself,
        Standing::Guardian(_) | Standing::RightToInformation { .. } => RecordedAs::Guardian,
        Standing::Proxy(_) | Standing::GuardianOfInterests | Standing::Unrelated => {
            RecordedAs::Proxy
        }
    };
    Recorder {
        recorded_as,
        hetu: c.session.hetu.as_str().to_string(),
        name: c.session.display_name.clone(),
    }
}

/// The facts the R-ACT functions rest on (R-INFO-2, R-INFO-3, R-ACT-5).
fn function_facts(c: &Citizen, held: &[Held], consent: Option<&Held>) -> FunctionFacts {
    let notice = in_force(held)
        .into_iter()
        .find(|h| h.record.kind == ConsentKind::InformationNotice);
    let by = |h: &Held| h.record.recorded_as;
    FunctionFacts {
        notice_received_in_care: Some(notice.is_some_and(|h| by(h) == Some(RecordedAs::CareUnit))),
        notice_acknowledged_by_principal: Some(notice.is_some_and(|h| {
            matches!(
                by(h),
                Some(RecordedAs::Myself | RecordedAs::CareUnit) | None
            )
        })),
        consent_given_by_actor: consent.map(|h| {
            h.record.recorded_as == Some(recorder(c).recorded_as)
                && h.record.performer_hetu.as_deref() == Some(c.session.hetu.as_str())
        }),
    }
}

fn may(c: &Citizen, f: Function, facts: &FunctionFacts) -> Decision {
    access::decide(
        &c.principal,
        &access::Action::Manage(f),
        Target::Request,
        &Facts {
            acting: Some(&c.whose.acting),
            function: Some(facts),
            ..Facts::default()
        },
        kanta_fhir::datetime::millis(c.now),
    )
}

/// The one decision for the citizen's page about one record (or the request): the standing as
/// its fact; a will is a function, whose own facts it needs none of.
fn decide_as(c: &Citizen, action: &access::Action, target: Target<'_>, now_ms: i64) -> Decision {
    access::decide(
        &c.principal,
        action,
        target,
        &Facts {
            acting: Some(&c.whose.acting),
            function: Some(&FunctionFacts::default()),
            ..Facts::default()
        },
        now_ms,
    )
}

// --- the pages -----------------------------------------------------------------------------

/// A visit the citizen may see, to choose for a prohibition or to show in the preview.
pub struct VisitChoice {
    pub id: String,
    pub org: String,
    pub provider: String,
    pub register: Option<String>,
    pub date: String,
    pub reason: String,
    found: Found,
}

/// The subject's visits the citizen may see (the visits page's rules), newest first.
async fn visible_visits(
    state: &AppState,
    c: &Citizen,
    request_id: &crate::RequestId,
) -> Result<Vec<VisitChoice>, PageError> {
    let now_ms = kanta_fhir::datetime::millis(c.now);
    let view = View::Section(kanta_domain::display::Section::Visits);
    let unavailable = |e: &dyn std::fmt::Display| PageError::unavailable(c.lang, e);
    let sealed = state
        .store
        .visits(c.whose.key, MAX_VISITS, None)
        .await
        .map_err(|e| unavailable(&e))?;
    let access = access_of(c, request_id, Action::Search, "view=data-use-visits");
    let joined = Joined::of_holders(state, &sealed).await;
    let mut facts = HashMap::new();
    let judge = citizen_judge(
        &c.principal,
        view,
        &c.whose.acting,
        &joined,
        &mut facts,
        now_ms,
    );
    let (_, page) = state
        .audit
        .release(sealed, &access, judge)
        .await
        .map_err(|e| unavailable(&e))?;
    let mut orgs = joined.into_orgs();
    let mut out = vec![];
    for f in page.visits.resources {
        let enc = f.to_value();
        let tags = kc::record_tags(f.json.get());
        let org = f.org.clone().unwrap_or_default();
        let provider = orgs.get(state, &org).await.name.clone();
        let date = enc
            .pointer("/period/start")
            .and_then(Value::as_str)
            .and_then(kanta_fhir::datetime::parse_start)
            .map(|t| super::helsinki_datetime(kanta_fhir::datetime::millis(t)))
            .unwrap_or_default();
        let reason = enc
            .pointer("/reasonCode/0/text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(v) = visible((), &facts, "Encounter", &f.id, now_ms) {
            let _: kanta_domain::display::Visible<()> = v;
            out.push(VisitChoice {
                id: f.id.clone(),
                org,
                provider,
                register: tags.register,
                date,
                reason,
                found: f,
            });
        }
    }
    Ok(out)
}

/// One line of the page about a record in force.
pub struct Line {
    pub id: String,
    pub text: String,
    pub since: String,
    pub by: String,
    pub revocable: bool,
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "data_use.html")]
struct DataUsePage<'a> {
    ui: &'a Ui,
    done: Option<String>,
    notice: Option<Line>,
    may_ack: bool,
    consents: Vec<(String, String, Option<Line>, bool)>,
    prohibitions: Vec<Line>,
    may_prohibit: bool,
    providers: Vec<Choice>,
    registers: Vec<Choice>,
    visits: Vec<Choice>,
    rx: Option<Line>,
    may_rx: bool,
    organ: Option<Line>,
    may_organ: bool,
    living: Option<(Line, Vec<(String, String)>)>,
    may_living: bool,
    history: Vec<Line>,
}

#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

fn register_name(lang: Lang, code: &str) -> String {
    let key = match code {
        "2" => "register-public",
        "3" => "register-private",
        "4" => "register-occupational",
        _ => "register-other",
    };
    tr(lang, key, &[])
}

/// Who recorded it: the person in MyKanta, or the care unit — its name and the professional, as
/// the server stamped them from the recording request (issue 29).
async fn by_text(state: &AppState, orgs: &mut Orgs, lang: Lang, r: &ConsentRecord) -> String {
    let who = r.performer_name.clone().unwrap_or_default();
    let key = match r.recorded_as {
        Some(RecordedAs::Myself) | None => "data-use-by-self",
        Some(RecordedAs::Guardian) => "data-use-by-guardian",
        Some(RecordedAs::Proxy) => "data-use-by-proxy",
        Some(RecordedAs::CareUnit) => {
            return match (&r.recorder_org, &r.recorder_professional) {
                (Some(org), Some(professional)) => {
                    let name = orgs.get(state, org).await.name.clone();
                    tr(
                        lang,
                        "data-use-by-care-unit-named",
                        &[("org", &name), ("professional", professional)],
                    )
                }
                _ => tr(lang, "data-use-by-care-unit", &[]),
            };
        }
    };
    tr(lang, key, &[("name", &who)])
}

async fn describe(
    state: &AppState,
    orgs: &mut Orgs,
    lang: Lang,
    h: &Held,
    visits: &[VisitChoice],
) -> String {
    let r = &h.record;
    match r.kind {
        ConsentKind::InformationNotice => tr(lang, "data-use-notice-received", &[]),
        ConsentKind::DisclosureConsent => tr(
            lang,
            match r.domain {
                Some(kanta_domain::consent::CareDomain::Social) => "data-use-consent-social",
                _ => "data-use-consent-health",
            },
            &[],
        ),
        ConsentKind::DisclosureProhibition => {
            let Some(scope) = &r.prohibition else {
                return String::new();
            };
            let org = orgs.get(state, scope.org()).await.name.clone();
            let what = match scope {
                ProhibitionScope::Provider { .. } => {
                    tr(lang, "data-use-prohibition-provider", &[("org", &org)])
                }
                ProhibitionScope::Register { register, .. } => tr(
                    lang,
                    "data-use-prohibition-register",
                    &[("org", &org), ("register", &register_name(lang, register))],
                ),
                ProhibitionScope::ServiceEvent { encounter, .. } => {
                    let when = visits
                        .iter()
                        .find(|v| format!("Encounter/{}", v.id) == *encounter)
                        .map(|v| v.date.clone())
                        .unwrap_or_default();
                    tr(
                        lang,
                        "data-use-prohibition-visit",
                        &[("org", &org), ("date", &when)],
                    )
                }
            };
            if r.yields_in_emergency {
                format!("{what} {}", tr(lang, "data-use-yields", &[]))
            } else {
                what
            }
        }
        ConsentKind::PrescriptionProhibition => {
            let t = tr(lang, "data-use-rx-in-force", &[]);
            if r.yields_in_emergency {
                format!("{t} {}", tr(lang, "data-use-yields", &[]))
            } else {
                t
            }
        }
        ConsentKind::OrganDonationWill => {
            let t = tr(
                lang,
                if r.permit {
                    "data-use-organ-yes"
                } else {
                    "data-use-organ-no"
                },
                &[],
            );
            match &r.text {
                Some(x) => format!("{t} {x}"),
                None => t,
            }
        }
        ConsentKind::LivingWill => tr(lang, "data-use-living-saved", &[]),
        ConsentKind::PurchasedServiceMandate => tr(lang, "data-use-mandate", &[]),
    }
}

/// One recorded choice as the page lists it; `orgs` names each organisation once a request (the
/// page lists a record as current and again in the history).
async fn line(
    state: &AppState,
    orgs: &mut Orgs,
    lang: Lang,
    h: &Held,
    visits: &[VisitChoice],
    revocable: bool,
) -> Line {
    Line {
        id: h.id.clone(),
        text: describe(state, orgs, lang, h, visits).await,
        since: super::helsinki_datetime(h.record.recorded_at),
        by: by_text(state, orgs, lang, &h.record).await,
        revocable,
    }
}

/// How long a choice recorded or changed at a care unit stays in the front page's "what is new".
const CHANGED_IN_CARE_DAYS: i64 = 90;

/// Issue 29: the patient's choices recorded or changed at a care unit in the last
/// `CHANGED_IN_CARE_DAYS`, newest first, for the front page's "what is new" (a change made in the
/// patient's name elsewhere is something the patient must see). Read and released as the data-use
/// page reads them.
pub(crate) async fn changed_in_care(
    state: &AppState,
    c: &Citizen,
    request_id: &crate::RequestId,
) -> Result<Vec<Line>, PageError> {
    let since = kanta_fhir::datetime::millis(c.now) - CHANGED_IN_CARE_DAYS * 86_400_000;
    // When Kanta stored it, or the date it names if later: a recording dated back is new all the
    // same.
    let stored_at = |h: &Held| {
        h.body
            .pointer("/meta/lastUpdated")
            .and_then(Value::as_str)
            .and_then(kanta_fhir::datetime::parse_start)
            .map_or(h.record.recorded_at, |t| {
                kanta_fhir::datetime::millis(t).max(h.record.recorded_at)
            })
    };
    let mut orgs = Orgs::default();
    let mut held: Vec<Held> = consents_of(state, c, request_id)
        .await?
        .into_iter()
        .filter(|h| {
            h.record.recorded_as == Some(RecordedAs::CareUnit)
                && stored_at(h) >= since
                && h.record.kind != ConsentKind::PurchasedServiceMandate
        })
        .collect();
    held.sort_by_key(|h| std::cmp::Reverse(stored_at(h)));
    let mut out = vec![];
    for h in held.iter().take(5) {
        let mut l = line(state, &mut orgs, c.lang, h, &[], false).await;
        if !h.record.active {
            l.text = format!("{} ({})", l.text, tr(c.lang, "data-use-revoked", &[]));
        }
        out.push(l);
    }
    Ok(out)
}

/// `GET /data-use`.
pub async fn page(
    State(state): State<AppState>,
    c: Citizen,
    request_id: crate::RequestId,
    Query(q): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let now_ms = kanta_fhir::datetime::millis(c.now);
    super::acting::may(&c.principal, &c.whose.acting, View::DataUse, now_ms, c.lang)?;
    let lang = c.lang;
    let mut orgs = Orgs::default();
    let held = consents_of(&state, &c, &request_id).await?;
    let visits = visible_visits(&state, &c, &request_id).await?;
    // A guardian or right-holder sees only prohibitions about providers and visits the minor's
    // rules let them see (a prohibition of a hidden visit would tell of it).
    let restricted = matches!(
        c.whose.acting.standing,
        Standing::Guardian(_) | Standing::RightToInformation { .. }
    );
    let told = |h: &Held| match (&h.record.prohibition, restricted) {
        (_, false) | (None, true) => true,
        (Some(ProhibitionScope::ServiceEvent { encounter, .. }), true) => visits
            .iter()
            .any(|v| format!("Encounter/{}", v.id) == *encounter),
        (Some(scope), true) => visits.iter().any(|v| v.org == scope.org()),
    };
    let held: Vec<Held> = held.into_iter().filter(|h| told(h)).collect();
    let force = in_force(&held);
    let ff = function_facts(&c, &held, None);
    let permits = |f: Function, facts: &FunctionFacts| may(&c, f, facts).is_permit();
    let find = |k: ConsentKind| force.iter().copied().find(|h| h.record.kind == k);
    let notice = match find(ConsentKind::InformationNotice) {
        Some(h) => Some(line(&state, &mut orgs, lang, h, &visits, false).await),
        None => None,
    };
    let may_ack = notice.is_none() && permits(Function::AcknowledgeNotice, &ff);
    let mut consents = vec![];
    for d in kanta_domain::consent::CareDomain::all() {
        let h = force.iter().copied().find(|h| {
            h.record.kind == ConsentKind::DisclosureConsent && h.record.domain == Some(d)
        });
        let l = match h {
            Some(h) => {
                let facts = function_facts(&c, &held, Some(h));
                let revocable = permits(Function::RevokeConsent, &facts);
                Some(line(&state, &mut orgs, lang, h, &visits, revocable).await)
            }
            None => None,
        };
        let giveable = l.is_none() && permits(Function::GiveConsent, &ff);
        consents.push((
            d.code().to_string(),
            tr(lang, &format!("data-use-domain-{}", d.code()), &[]),
            l,
            giveable,
        ));
    }
    let may_prohibit = permits(Function::DisclosureProhibition, &ff);
    let mut prohibitions = vec![];
    for h in force
        .iter()
        .filter(|h| h.record.kind == ConsentKind::DisclosureProhibition)
    {
        prohibitions.push(line(&state, &mut orgs, lang, h, &visits, may_prohibit).await);
    }
    let mut providers: BTreeMap<String, String> = BTreeMap::new();
    let mut registers: BTreeMap<String, String> = BTreeMap::new();
    for v in &visits {
        providers.insert(v.org.clone(), v.provider.clone());
        if let Some(r) = &v.register {
            registers.insert(
                format!("{}|{r}", v.org),
                format!("{} – {}", v.provider, register_name(lang, r)),
            );
        }
    }
    let may_rx = permits(Function::PrescriptionProhibition, &ff);
    let rx = match find(ConsentKind::PrescriptionProhibition) {
        Some(h) => Some(line(&state, &mut orgs, lang, h, &visits, may_rx).await),
        None => None,
    };
    let may_organ = permits(Function::OrganDonationWill, &ff);
    let may_living = permits(Function::LivingWill, &ff);
    // Wills are shown only to whoever may keep them (not to proxies or guardians).
    let organ = match find(ConsentKind::OrganDonationWill).filter(|_| may_organ) {
        Some(h) => Some(line(&state, &mut orgs, lang, h, &visits, true).await),
        None => None,
    };
    let living = match find(ConsentKind::LivingWill).filter(|_| may_living) {
        Some(h) => {
            let fields = LIVING_FIELDS
                .iter()
                .map(|k| {
                    (
                        tr(lang, &format!("data-use-living-{k}"), &[]),
                        h.record.fields.get(*k).cloned().unwrap_or_default(),
                    )
                })
                .collect();
            Some((
                line(&state, &mut orgs, lang, h, &visits, true).await,
                fields,
            ))
        }
        None => None,
    };
    // Every record ever given, newest first (versions are kept; the current version of each).
    let mut history = vec![];
    let mut all: Vec<&Held> = held
        .iter()
        .filter(|h| {
            may_living && may_organ
                || !matches!(
                    h.record.kind,
                    ConsentKind::OrganDonationWill | ConsentKind::LivingWill
                )
        })
        .collect();
    all.sort_by_key(|h| std::cmp::Reverse(h.record.recorded_at));
    for h in all {
        let mut l = line(&state, &mut orgs, lang, h, &visits, false).await;
        if !h.record.active {
            l.text = format!("{} ({})", l.text, tr(lang, "data-use-revoked", &[]));
        }
        history.push(l);
    }
    let done = q
        .done
        .filter(|d| DONE_KEYS.contains(&d.as_str()))
        .map(|d| tr(lang, &format!("data-use-done-{d}"), &[]));
    let ui = ui_for(&state, lang, "/data-use", Some(&c.session), "");
    Ok(render(&DataUsePage {
        ui: &ui,
        done,
        notice,
        may_ack,
        consents,
        prohibitions,
        may_prohibit,
        providers: providers
            .into_iter()
            .map(|(value, label)| Choice { value, label })
            .collect(),
        registers: registers
            .into_iter()
            .map(|(value, label)| Choice { value, label })
            .collect(),
        visits: visits
            .iter()
            .map(|v| Choice {
                value: v.id.clone(),
                label: format!("{} – {} {}", v.date, v.provider, v.reason)
                    .trim()
                    .to_string(),
            })
            .collect(),
        rx,
        may_rx,
        organ,
        may_organ,
        living,
        may_living,
        history,
    }))
}

const LIVING_FIELDS: [&str; 4] = ["treatment", "life-sustaining", "care", "representative"];
/// The status lines a change may end with (`notice`: R-INFO-4, the consents given earlier may be
/// renewed below).
const DONE_KEYS: [&str; 12] = [
    "notice",
    "consent-given",
    "consent-revoked",
    "prohibition-set",
    "prohibition-lifted",
    "rx-set",
    "rx-lifted",
    "organ-saved",
    "organ-revoked",
    "living-saved",
    "living-revoked",
    "unchanged",
];

/// Everything a change posts (one form per change; unused fields absent).
#[derive(Deserialize, Default)]
pub struct ChangeForm {
    csrf: String,
    op: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    register: String,
    #[serde(default)]
    visit: String,
    #[serde(default)]
    emergency: Option<String>,
    #[serde(default)]
    willing: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    treatment: String,
    #[serde(default, rename = "life-sustaining")]
    life_sustaining: String,
    #[serde(default)]
    care: String,
    #[serde(default)]
    representative: String,
}

fn bounded(s: &str) -> Option<String> {
    let t = s.trim();
    (t.chars().count() <= MAX_TEXT).then(|| t.to_string())
}

/// `POST /data-use`: one change, decided as its R-ACT function inside the write.
pub async fn change(
    State(state): State<AppState>,
    c: Citizen,
    request_id: crate::RequestId,
    Form(f): Form<ChangeForm>,
) -> Response {
    let lang = c.lang;
    if !csrf_ok(&f.csrf, &c.session.csrf_token) {
        return super::error_page(lang, axum::http::StatusCode::FORBIDDEN, "error-cross-site");
    }
    match apply(&state, &c, &request_id, &f).await {
        Ok(done) => see_other(&format!("/data-use?done={done}")),
        Err(e) => e.into_response(),
    }
}

async fn apply(
    state: &AppState,
    c: &Citizen,
    request_id: &crate::RequestId,
    f: &ChangeForm,
) -> Result<&'static str, PageError> {
    let lang = c.lang;
    let bad = || PageError::bad_page(lang);
    let held = consents_of(state, c, request_id).await?;
    let force = in_force(&held);
    let now_text = kanta_fhir::datetime::instant(c.now);
    let new = |kind: ConsentKind| Draft::new(kind, "urn:uuid:subject", &now_text, recorder(c));
    // The record in force that the form names, of the kind the change is about.
    let in_force_of = |kind: ConsentKind| {
        force
            .iter()
            .copied()
            .find(|h| h.id == f.id && h.record.kind == kind)
            .ok_or_else(bad)
    };
    let yields = f.emergency.as_deref() == Some("yes");
    let (function, write, done): (Function, Write, &'static str) = match f.op.as_str() {
        "notice" => {
            if force
                .iter()
                .any(|h| h.record.kind == ConsentKind::InformationNotice)
            {
                return Ok("notice");
            }
            (
                Function::AcknowledgeNotice,
                Write::New(new(ConsentKind::InformationNotice)),
                "notice",
            )
        }
        "give-consent" => {
            let d = kanta_domain::consent::CareDomain::parse(&f.domain).ok_or_else(bad)?;
            if force.iter().any(|h| {
                h.record.kind == ConsentKind::DisclosureConsent && h.record.domain == Some(d)
            }) {
                return Ok("unchanged");
            }
            let mut draft = new(ConsentKind::DisclosureConsent);
            draft.domain = Some(d);
            (Function::GiveConsent, Write::New(draft), "consent-given")
        }
        "revoke-consent" => {
            let h = in_force_of(ConsentKind::DisclosureConsent)?;
            (Function::RevokeConsent, Write::Revoke(h), "consent-revoked")
        }
        "prohibit" => {
            let mut draft = new(ConsentKind::DisclosureProhibition);
            let visits = visible_visits(state, c, request_id).await?;
            draft.prohibition = Some(if !f.visit.is_empty() {
                let v = visits.iter().find(|v| v.id == f.visit).ok_or_else(bad)?;
                ProhibitionScope::ServiceEvent {
                    org: v.org.clone(),
                    encounter: format!("Encounter/{}", v.id),
                }
            } else if !f.register.is_empty() {
                let (org, register) = f.register.split_once('|').ok_or_else(bad)?;
                if !visits
                    .iter()
                    .any(|v| v.org == org && v.register.as_deref() == Some(register))
                {
                    return Err(bad());
                }
                ProhibitionScope::Register {
                    org: org.to_string(),
                    register: register.to_string(),
                }
            } else {
                if !visits.iter().any(|v| v.org == f.provider) {
                    return Err(bad());
                }
                ProhibitionScope::Provider {
                    org: f.provider.clone(),
                }
            });
            draft.yields_in_emergency = Some(yields);
            if force.iter().any(|h| {
                h.record.kind == ConsentKind::DisclosureProhibition
                    && h.record.prohibition == draft.prohibition
                    && h.record.yields_in_emergency == yields
            }) {
                return Ok("unchanged");
            }
            (
                Function::DisclosureProhibition,
                Write::New(draft),
                "prohibition-set",
            )
        }
        "lift-prohibition" => {
            let h = in_force_of(ConsentKind::DisclosureProhibition)?;
            (
                Function::DisclosureProhibition,
                Write::Revoke(h),
                "prohibition-lifted",
            )
        }
        "rx" => {
            if force
                .iter()
                .any(|h| h.record.kind == ConsentKind::PrescriptionProhibition)
            {
                return Ok("unchanged");
            }
            let mut draft = new(ConsentKind::PrescriptionProhibition);
            draft.yields_in_emergency = Some(yields);
            (
                Function::PrescriptionProhibition,
                Write::New(draft),
                "rx-set",
            )
        }
        "lift-rx" => {
            let h = in_force_of(ConsentKind::PrescriptionProhibition)?;
            (
                Function::PrescriptionProhibition,
                Write::Revoke(h),
                "rx-lifted",
            )
        }
        "organ" => {
            let mut draft = new(ConsentKind::OrganDonationWill);
            draft.permit = Some(match f.willing.as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(bad()),
            });
            draft.text = bounded(&f.text).ok_or_else(bad)?.into();
            draft.text = draft.text.filter(|t| !t.is_empty());
            let existing = force
                .iter()
                .copied()
                .find(|h| h.record.kind == ConsentKind::OrganDonationWill);
            (
                Function::OrganDonationWill,
                Write::Replace(draft, existing),
                "organ-saved",
            )
        }
        "revoke-organ" => {
            let h = in_force_of(ConsentKind::OrganDonationWill)?;
            (
                Function::OrganDonationWill,
                Write::Revoke(h),
                "organ-revoked",
            )
        }
        "living" => {
            let mut draft = new(ConsentKind::LivingWill);
            for (k, v) in [
                ("treatment", &f.treatment),
                ("life-sustaining", &f.life_sustaining),
                ("care", &f.care),
                ("representative", &f.representative),
            ] {
                let v = bounded(v).ok_or_else(bad)?;
                if !v.is_empty() {
                    draft.fields.push((k.to_string(), v));
                }
            }
            if draft.fields.is_empty() {
                return Ok("unchanged");
            }
            let existing = force
                .iter()
                .copied()
                .find(|h| h.record.kind == ConsentKind::LivingWill);
            (
                Function::LivingWill,
                Write::Replace(draft, existing),
                "living-saved",
            )
        }
        "revoke-living" => {
            let h = in_force_of(ConsentKind::LivingWill)?;
            (Function::LivingWill, Write::Revoke(h), "living-revoked")
        }
        _ => return Err(bad()),
    };
    let consent = match &write {
        Write::Revoke(h) => Some(*h),
        Write::New(_) | Write::Replace(..) => None,
    };
    let facts = function_facts(c, &held, consent);
    if let Decision::Denied(d) = may(c, function, &facts) {
        return Err(super::acting::refused(lang, &d));
    }
    write_consent(state, c, request_id, function, facts, write).await?;
    if function == Function::AcknowledgeNotice && c.session.acting_for.is_none() {
        state.portal.informed.remember(c.session.patient_key);
    }
    Ok(done)
}

enum Write<'a> {
    New(Draft),
    /// A new version of the one in force (a will), or a new record when there is none.
    Replace(Draft, Option<&'a Held>),
    Revoke(&'a Held),
}

async fn write_consent(
    state: &AppState,
    c: &Citizen,
    request_id: &crate::RequestId,
    function: Function,
    facts: FunctionFacts,
    write: Write<'_>,
) -> Result<(), PageError> {
    let lang = c.lang;
    let unavailable = |e: &dyn std::fmt::Display| PageError::unavailable(lang, e);
    let subject_hetu = match &c.session.acting_for {
        Some(a) => a.hetu.as_str().to_string(),
        None => c.session.hetu.as_str().to_string(),
    };
    let now_text = kanta_fhir::datetime::instant(c.now);
    let check = |v: Value| kanta_fhir::check(v).map_err(|e| unavailable(&e.to_string()));
    let mut ops = vec![];
    let (consent, update) = match write {
        Write::New(d) | Write::Replace(d, None) => (d.to_json(), None),
        Write::Replace(d, Some(h)) => {
            let mut v = d.to_json();
            v["id"] = json!(h.id);
            v["patient"] = h.body["patient"].clone();
            (v, Some((h.id.clone(), h.version)))
        }
        Write::Revoke(h) => {
            let mut v = h.body.clone();
            let r = recorder(c);
            v["status"] = json!("inactive");
            v["dateTime"] = json!(now_text);
            v["performer"] = json!([{
                "identifier": {"system": codes::HETU_SYSTEM, "value": r.hetu},
                "display": r.name,
            }]);
            let mut ext: Vec<Value> = v["extension"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e["url"] != codes::RECORDED_AS_URL)
                .collect();
            ext.push(json!({"url": codes::RECORDED_AS_URL, "valueCode": r.recorded_as.code()}));
            v["extension"] = Value::Array(ext);
            if let Some(m) = v.get_mut("meta").and_then(Value::as_object_mut) {
                m.remove("versionId");
                m.remove("lastUpdated");
            }
            (v, Some((h.id.clone(), h.version)))
        }
    };
    let mut consent = consent;
    match &update {
        Some(_) => {}
        None => {
            // The subject's Patient record: the one the providers wrote, or a minimal one.
            let patient = json!({
                "resourceType": "Patient",
                "identifier": [{"use": "official", "system": codes::HETU_SYSTEM, "value": subject_hetu}],
            });
            ops.push((
                "Bundle.entry[0]".to_string(),
                Some("urn:uuid:subject".to_string()),
                WriteOp::Create {
                    resource: check(patient)?,
                    if_none_exist: Some((codes::HETU_SYSTEM.to_string(), subject_hetu.clone())),
                },
            ));
            consent["patient"] = json!({"reference": "urn:uuid:subject"});
        }
    }
    let at = format!("Bundle.entry[{}]", ops.len());
    ops.push(match update {
        Some((id, version)) => (
            at,
            None,
            WriteOp::Update {
                resource: check(consent)?,
                id,
                if_match: Some(version),
            },
        ),
        None => (
            at,
            None,
            WriteOp::Create {
                resource: check(consent)?,
                if_none_exist: None,
            },
        ),
    });
    commit_citizen_write(state, c, request_id, function, facts, ops).await
}

/// A citizen's change (R-ACT), with its audit record: decided entry by entry as `function` in the
/// write's transaction; a refusal is a translated 403, a change meanwhile (or a refusal of the
/// Prescription Centre's rules) a 409 asking to look again.
pub(crate) async fn commit_citizen_write(
    state: &AppState,
    c: &Citizen,
    request_id: &crate::RequestId,
    function: Function,
    facts: FunctionFacts,
    ops: Vec<(String, Option<String>, WriteOp)>,
) -> Result<(), PageError> {
    let lang = c.lang;
    let unavailable = |e: &dyn std::fmt::Display| PageError::unavailable(lang, e);
    let req = WriteRequest {
        principal: c.principal.clone(),
        org: OrgId::new(MYKANTA_REGISTER),
        ops,
        citizen: Some(CitizenWrite {
            function,
            acting: c.whose.acting,
            facts,
        }),
        centre: state.centre.clone(),
        organiser: None,
    };
    let access = access_of(
        c,
        request_id,
        Action::Create,
        &format!("function={}", function.code()),
    );
    let committed = state
        .store
        .write_audited(req, c.now, &access)
        .await
        .map_err(|e| match e {
            kanta_store::StoreError::Fhir(f) if f.kind == kanta_fhir::ErrorKind::Forbidden => {
                PageError {
                    lang,
                    status: axum::http::StatusCode::FORBIDDEN,
                    key: "error-forbidden",
                }
            }
            kanta_store::StoreError::Fhir(f)
                if matches!(
                    f.kind,
                    kanta_fhir::ErrorKind::PreconditionFailed
                        | kanta_fhir::ErrorKind::Conflict
                        | kanta_fhir::ErrorKind::Unprocessable
                ) =>
            {
                // Changed meanwhile (another tab, another guardian): ask to look again.
                PageError {
                    lang,
                    status: axum::http::StatusCode::CONFLICT,
                    key: "error-changed-meanwhile",
                }
            }
            other => unavailable(&other),
        })?;
    state
        .audit
        .settle(committed, &access)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(())
}

// --- the notice ------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticePage<'a> {
    ui: &'a Ui,
    may_ack: bool,
    received: Option<Line>,
}

/// `GET /notice`: the information about the Kanta services (R-INFO-1).
pub async fn notice(
    State(state): State<AppState>,
    c: Citizen,
    request_id: crate::RequestId,
) -> Result<Response, PageError> {
    let mut orgs = Orgs::default();
    let held = consents_of(&state, &c, &request_id).await?;
    let force = in_force(&held);
    let received = match force
        .iter()
        .copied()
        .find(|h| h.record.kind == ConsentKind::InformationNotice)
    {
        Some(h) => Some(line(&state, &mut orgs, c.lang, h, &[], false).await),
        None => None,
    };
    let ff = function_facts(&c, &held, None);
    let may_ack = received.is_none() && may(&c, Function::AcknowledgeNotice, &ff).is_permit();
    let ui = ui_for(&state, c.lang, "/notice", Some(&c.session), "");
    Ok(render(&NoticePage {
        ui: &ui,
        may_ack,
        received,
    }))
}

#[derive(Deserialize)]
pub struct NoticeForm {
    csrf: String,
    #[serde(default)]
    received: Option<String>,
}

/// `POST /notice`: the tick (R-INFO-1…3).
pub async fn acknowledge(
    State(state): State<AppState>,
    c: Citizen,
    request_id: crate::RequestId,
    Form(f): Form<NoticeForm>,
) -> Response {
    if !csrf_ok(&f.csrf, &c.session.csrf_token) {
        return super::error_page(
            c.lang,
            axum::http::StatusCode::FORBIDDEN,
            "error-cross-site",
        );
    }
    if f.received.as_deref() != Some("yes") {
        return see_other("/notice?missing=1");
    }
    let form = ChangeForm {
        csrf: f.csrf,
        op: "notice".into(),
        ..ChangeForm::default()
    };
    match apply(&state, &c, &request_id, &form).await {
        Ok(_) => see_other("/data-use?done=notice"),
        Err(e) => e.into_response(),
    }
}

// --- what a provider would see (R-X-1) ------------------------------------------------------

#[derive(Deserialize)]
pub struct PreviewQuery {
    org: Option<String>,
}

pub struct PreviewRow {
    /// The visit's id (the person's own; lets a test compare the preview with the API).
    pub id: String,
    pub date: String,
    pub provider: String,
    pub reason: String,
    pub readable: bool,
}

#[derive(Template)]
#[template(path = "preview.html")]
struct PreviewPage<'a> {
    ui: &'a Ui,
    orgs: Vec<Choice>,
    chosen: Option<String>,
    rows: Vec<PreviewRow>,
}

/// `GET /data-use/preview?org=…`: which of the person's visits the chosen provider could read now
/// — every visit decided by `Consents::decide`, the provider API's own function, as a clinician of
/// that organisation naming a professional, for care.
pub async fn preview(
    State(state): State<AppState>,
    c: Citizen,
    request_id: crate::RequestId,
    Query(q): Query<PreviewQuery>,
) -> Result<Response, PageError> {
    let now_ms = kanta_fhir::datetime::millis(c.now);
    super::acting::may(&c.principal, &c.whose.acting, View::DataUse, now_ms, c.lang)?;
    let visits = visible_visits(&state, &c, &request_id).await?;
    let orgs = organisations(&state, &c, &request_id, &visits).await?;
    let chosen = q.org.filter(|o| orgs.iter().any(|c| &c.value == o));
    let mut rows = vec![];
    if let Some(org) = &chosen {
        let provider = Principal::Client(access::Client {
            client_id: "mykanta-preview".into(),
            org: OrgId::new(org),
            roles: vec![ClientRole::Clinician],
            scopes: access::Scopes::all(),
            professional: Some("preview".into()),
            purpose: Some("TREAT".into()),
            emergency_reason: None,
        });
        let mut consents = Consents::new(CentreAccess::Searched);
        consents
            .load_patient(&state, c.whose.key)
            .await
            .map_err(|e| PageError::unavailable(c.lang, &e))?;
        let read = access::Action::fhir(Interaction::Read, "Encounter");
        for v in &visits {
            let s = kanta_store::audit::Subject::of_found(&v.found);
            rows.push(PreviewRow {
                id: v.id.clone(),
                date: v.date.clone(),
                provider: v.provider.clone(),
                reason: v.reason.clone(),
                readable: consents.decide(&provider, &read, &s, now_ms).is_permit(),
            });
        }
    }
    let ui = ui_for(&state, c.lang, "/data-use/preview", Some(&c.session), "");
    Ok(render(&PreviewPage {
        ui: &ui,
        orgs,
        chosen,
        rows,
    }))
}

/// The providers to choose from: the registry's organisations and those of the person's visits.
pub(crate) async fn organisations(
    state: &AppState,
    c: &Citizen,
    request_id: &crate::RequestId,
    visits: &[VisitChoice],
) -> Result<Vec<Choice>, PageError> {
    let mut out: BTreeMap<String, String> = visits
        .iter()
        .map(|v| (v.org.clone(), v.provider.clone()))
        .collect();
    let q = SearchQuery {
        resource_type: "Organization".into(),
        patient: None,
        identifier: None,
        ascending: true,
        count: 200,
        after: None,
    };
    let unavailable = |e: &dyn std::fmt::Display| PageError::unavailable(c.lang, e);
    let sealed = state.store.search(&q).await.map_err(|e| unavailable(&e))?;
    let access = access_of(c, request_id, Action::Search, "view=data-use-providers");
    let now_ms = kanta_fhir::datetime::millis(c.now);
    let (_, page) = state
        .audit
        .release(sealed, &access, |subjects| {
            subjects
                .iter()
                .map(|s| decide_as(c, &access::Action::View(View::DataUse), s.target(), now_ms))
                .collect()
        })
        .await
        .map_err(|e| unavailable(&e))?;
    for f in page.resources {
        let v = f.to_value();
        // Care providers only (not the operator, not pharmacies: R-X-1 is about care).
        let kind = v
            .pointer("/type/0/coding/0/code")
            .and_then(Value::as_str)
            .unwrap_or("prov");
        if kind != "prov" {
            continue;
        }
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&f.id)
            .to_string();
        out.insert(f.id.clone(), name);
    }
    Ok(out
        .into_iter()
        .map(|(value, label)| Choice { value, label })
        .collect())
}
