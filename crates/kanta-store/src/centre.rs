//! The Prescription Centre on the write path (R-RX-1, R-RX-2, R-ACT-1, R-ACT-11, R-ACT-12): every
//! prescription, dispensation and task is checked here, inside the write's transaction, after the
//! access decision. A dispensation, a reservation and its release take the prescription's row lock
//! first (`SELECT … FOR UPDATE` on PostgreSQL; SQLite has one writer), ask the pure rules
//! (`kanta_domain::prescription::check`) and write the prescription's new state in the same
//! transaction: of two pharmacies dispensing the last package at once, one succeeds and the other
//! gets `409 Conflict`. The mapping is docs/prescription-centre.md.

use crate::write::Tx;
use crate::{Result, StoreError, Stored};
use kanta_domain::access::Principal;
use kanta_domain::ids::{ClientRole, PatientKey};
use kanta_domain::medicines::Database;
use kanta_domain::prescription::{self as rx, Event, Measure, Reservation, State};
use kanta_fhir::prescription::{self as fx, Quantity, TaskCode};
use kanta_fhir::{codes, datetime, ErrorKind, FhirError};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The token system under which a dispensation is indexed by its prescription.
pub const PRESCRIPTION_INDEX: &str = "urn:kanta:index:prescription";
/// The token system under which a task is indexed by the organisation whose queue holds it.
pub const TASK_OWNER_INDEX: &str = "urn:kanta:index:task-owner";
/// … and by `owner|code|status`, for a queue of one kind in one state.
pub const TASK_QUEUE_INDEX: &str = "urn:kanta:index:task-queue";
/// An open request (renewal, review) by `MedicationRequest/<id>|<code>`: one at a time.
pub const OPEN_REQUEST_INDEX: &str = "urn:kanta:index:open-request";

/// What the Prescription Centre needs besides the database: the medicines database, how long a
/// reservation holds, and the controller whose queue takes review requests.
#[derive(Debug)]
pub struct Centre {
    pub medicines: Database,
    pub reservation_ms: i64,
    /// The organisation that controls the Prescription Centre (the operator): review requests go
    /// to its queue (R-ACT-12).
    pub controller: Option<String>,
}

/// The default hold of a reservation: three days.
pub const DEFAULT_RESERVATION_MS: i64 = 3 * 24 * 3600 * 1000;

/// One entry as the Prescription Centre sees it.
pub(crate) struct Entry<'a> {
    pub principal: &'a Principal,
    /// The writing organisation.
    pub org: &'a str,
    pub resource_type: &'a str,
    pub at: &'a str,
    pub patient: Option<PatientKey>,
    /// The stored current version this entry replaces.
    pub previous: Option<&'a Stored>,
    pub now_ms: i64,
}

/// What an entry changes besides itself.
#[derive(Default)]
pub(crate) struct Effect {
    /// The register the entry is held in, when not the writer's (a task goes to its owner's queue).
    pub holder: Option<String>,
    pub tokens: Vec<(String, String)>,
}

/// The prescriptions this transaction has locked, as they stand after its entries so far; each is
/// written once at the end, one version on from the stored one.
#[derive(Default)]
pub(crate) struct Locked(pub HashMap<String, (Stored, bool)>);

fn fail(kind: ErrorKind, at: &str, msg: impl Into<String>) -> StoreError {
    let msg = msg.into();
    StoreError::Fhir(FhirError::at(kind, at, format!("{at}: {msg}")))
}

fn refused(at: &str, r: rx::Refusal) -> StoreError {
    fail(
        ErrorKind::Conflict,
        at,
        format!("{} ({})", r.message(), r.code()),
    )
}

/// Who files a task, as the rule sees the writer.
fn filer(p: &Principal) -> Option<rx::Filer> {
    match p {
        Principal::Client(c) if c.roles.contains(&ClientRole::Pharmacy) => {
            Some(rx::Filer::Pharmacy)
        }
        Principal::Client(c) if c.roles.contains(&ClientRole::Clinician) => {
            Some(rx::Filer::Clinician)
        }
        Principal::Client(c) if c.roles.contains(&ClientRole::Operator) => {
            Some(rx::Filer::Operator)
        }
        Principal::Client(_) | Principal::Identified => None,
        Principal::Citizen { .. } => Some(rx::Filer::Citizen),
    }
}

fn kind_of(code: TaskCode) -> rx::TaskKind {
    match code {
        TaskCode::Reservation => rx::TaskKind::Reservation,
        TaskCode::RenewalRequest => rx::TaskKind::RenewalRequest,
        TaskCode::ReviewRequest => rx::TaskKind::ReviewRequest,
    }
}

/// The server's own extensions of a dispensation, whatever a client sent.
const SERVER_STAMPED: [&str; 3] = [
    codes::DISPENSED_AMOUNT_URL,
    codes::RETAIL_PRICE_URL,
    codes::PRICE_DIFFERENCE_URL,
];

fn strip(body: &mut Value, urls: &[&str]) {
    if let Some(es) = body.get_mut("extension").and_then(Value::as_array_mut) {
        es.retain(|e| e["url"].as_str().is_none_or(|u| !urls.contains(&u)));
    }
}

impl Locked {
    /// The prescription, locked for the rest of the transaction, with its state. The same
    /// message for one that does not exist and one of another patient.
    async fn take(
        &mut self,
        tx: &mut dyn Tx,
        patient: Option<PatientKey>,
        id: &str,
        at: &str,
    ) -> Result<(Stored, State)> {
        let missing = || {
            fail(
                ErrorKind::Unprocessable,
                at,
                format!("the prescription MedicationRequest/{id} does not exist for this patient"),
            )
        };
        let stored = match self.0.get(id) {
            Some((s, _)) => s.clone(),
            None => {
                let Some(key) = patient else {
                    return Err(missing());
                };
                if tx
                    .current_version(Some(key), "MedicationRequest", id)
                    .await?
                    .is_none()
                {
                    return Err(missing());
                }
                let s = tx
                    .get(Some(key), "MedicationRequest", id)
                    .await?
                    .ok_or_else(missing)?;
                self.0.insert(id.to_string(), (s.clone(), false));
                s
            }
        };
        let state = fx::state_of(&stored.body).ok_or_else(|| {
            fail(
                ErrorKind::Unprocessable,
                at,
                format!("MedicationRequest/{id} was not issued through the Prescription Centre"),
            )
        })?;
        Ok((stored, state))
    }

    /// Record the prescription's new state (written at the end of the transaction).
    fn put(&mut self, mut stored: Stored, state: &State, now_ms: i64) {
        let id = stored.id.clone();
        let written_here = self.0.get(&id).is_some_and(|(_, changed)| *changed);
        fx::write_state(&mut stored.body, state);
        if !written_here {
            stored.version += 1;
        }
        if let Ok(t) =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        {
            stored.last_updated = t;
            let meta = &mut stored.body["meta"];
            meta["versionId"] = json!(stored.version.to_string());
            meta["lastUpdated"] = json!(datetime::instant(t));
        }
        self.0.insert(id, (stored, true));
    }

    /// The prescriptions changed by this transaction.
    pub fn changed(self) -> impl Iterator<Item = Stored> {
        self.0.into_values().filter(|(_, c)| *c).map(|(s, _)| s)
    }

    pub fn holds(&self, id: &str) -> bool {
        self.0.get(id).is_some_and(|(_, c)| *c)
    }
}

/// Check one entry of the Prescription Centre and make its effects. `body` is the entry's
/// resource, already stamped with its id and version.
pub(crate) async fn check(
    tx: &mut dyn Tx,
    centre: Option<&Centre>,
    locked: &mut Locked,
    e: Entry<'_>,
    body: &mut Value,
) -> Result<Effect> {
    if !matches!(
        e.resource_type,
        "MedicationRequest" | "MedicationDispense" | "Task"
    ) {
        return Ok(Effect::default());
    }
    let Some(centre) = centre else {
        return Err(fail(
            ErrorKind::Unavailable,
            e.at,
            "the Prescription Centre has no medicines database loaded; nothing was written",
        ));
    };
    match e.resource_type {
        "MedicationRequest" => prescription(centre, locked, &e, body).map(|()| Effect::default()),
        "MedicationDispense" => dispensation(tx, centre, locked, &e, body).await,
        _ => task(tx, centre, locked, &e, body).await,
    }
}

/// A prescription, or its correction or cancellation by the prescriber (R-RX-1).
fn prescription(centre: &Centre, locked: &Locked, e: &Entry<'_>, body: &mut Value) -> Result<()> {
    let id = body["id"].as_str().unwrap_or_default().to_string();
    if locked.holds(&id) {
        return Err(fail(
            ErrorKind::Unprocessable,
            e.at,
            "a prescription and its dispensation or reservation are written in requests of their own",
        ));
    }
    // A cancellation changes nothing but the status and its reason: the rest stays as prescribed.
    if let Some(prev) = e
        .previous
        .filter(|_| body["status"].as_str() == Some("cancelled"))
    {
        let mut kept = prev.body.clone();
        kept["status"] = body["status"].clone();
        kept["statusReason"] = body["statusReason"].clone();
        kept["meta"] = body["meta"].clone();
        *body = kept;
    }
    let p = fx::read(body, &centre.medicines).map_err(|err| StoreError::Fhir(err.within(e.at)))?;
    let prior = e.previous.and_then(|s| fx::state_of(&s.body));
    if let (Some(prev), Some(prior)) = (e.previous, &prior) {
        // A correction keeps the date its validity runs from, and, once anything was dispensed,
        // its product.
        if prev.body["authoredOn"] != body["authoredOn"] {
            return Err(fail(
                ErrorKind::Unprocessable,
                e.at,
                "a correction keeps the prescription's date (authoredOn): a new date is a new prescription",
            ));
        }
        if prior.dispensed > 0 && fx::vnr_of(&prev.body) != fx::vnr_of(body) {
            return Err(fail(
                ErrorKind::Unprocessable,
                e.at,
                "a prescription partly dispensed keeps its product; cancel it and prescribe anew",
            ));
        }
    }
    let state = match prior {
        None => {
            if p.state.cancelled.is_some() {
                return Err(fail(
                    ErrorKind::Unprocessable,
                    e.at,
                    "a new prescription is active; cancel it with a new version",
                ));
            }
            p.state
        }
        Some(prior) => {
            if p.state.cancelled.is_some() {
                rx::check(&prior, &Event::Cancel, e.now_ms).map_err(|r| refused(e.at, r))?;
            } else {
                if fx::correction_justification(body).is_none() {
                    return Err(fail(
                        ErrorKind::Unprocessable,
                        e.at,
                        format!(
                            "a correction states its justification (extension {} valueString)",
                            codes::CORRECTION_JUSTIFICATION_URL
                        ),
                    ));
                }
                if prior.measure != p.state.measure && prior.dispensed > 0 {
                    return Err(fail(
                        ErrorKind::Unprocessable,
                        e.at,
                        "a prescription partly dispensed keeps its measure (an amount or a treatment time)",
                    ));
                }
                rx::check(
                    &prior,
                    &Event::Correct {
                        total: p.state.total,
                    },
                    e.now_ms,
                )
                .map_err(|r| refused(e.at, r))?;
            }
            State {
                dispensed: prior.dispensed,
                reservation: prior.reservation,
                ..p.state
            }
        }
    };
    // The status is the server's (`completed` once nothing remains, else `active`, or cancelled
    // as the prescriber says): one the server would store as something else is refused, never
    // silently changed (issue 30: `completed` was answered 201 and stored as `active`).
    if state.cancelled.is_none() {
        let kept = if state.remaining() == 0 {
            "completed"
        } else {
            "active"
        };
        if let Some(sent) = body["status"].as_str().filter(|s| *s != kept) {
            return Err(fail(
                ErrorKind::Unprocessable,
                e.at,
                format!("{}.status: the server keeps a prescription's status: it is '{kept}' now, not '{sent}' (only a cancellation is the prescriber's to set)", e.at),
            ));
        }
    }
    fx::write_state(body, &state);
    Ok(())
}

/// A dispensation, or its cancellation (R-RX-2).
async fn dispensation(
    tx: &mut dyn Tx,
    centre: &Centre,
    locked: &mut Locked,
    e: &Entry<'_>,
    body: &mut Value,
) -> Result<Effect> {
    let d = fx::read_dispense(body).map_err(|err| StoreError::Fhir(err.within(e.at)))?;
    strip(body, &SERVER_STAMPED);
    let effect = Effect {
        holder: None,
        tokens: vec![(
            PRESCRIPTION_INDEX.to_string(),
            format!("MedicationRequest/{}", d.prescription),
        )],
    };
    if let Some(prev) = e.previous {
        let old =
            fx::read_dispense(&prev.body).map_err(|err| StoreError::Fhir(err.within(e.at)))?;
        if old.cancelled {
            return Err(fail(
                ErrorKind::Conflict,
                e.at,
                "this dispensation was cancelled; a cancelled dispensation stays cancelled",
            ));
        }
        if !d.cancelled || d.prescription != old.prescription || d.vnr != old.vnr {
            return Err(fail(
                ErrorKind::Unprocessable,
                e.at,
                "a dispensation is not changed: cancel it (status cancelled, the rest as it was) and record a new one",
            ));
        }
        let amount = fx::dispensed_amount(&prev.body).unwrap_or(0);
        let (stored, mut state) = locked.take(tx, e.patient, &d.prescription, e.at).await?;
        rx::check(&state, &Event::CancelDispensation { amount }, e.now_ms)
            .map_err(|r| refused(e.at, r))?;
        state.dispensed = state.dispensed.saturating_sub(amount);
        locked.put(stored, &state, e.now_ms);
        // What the server stamped stays as it was.
        for url in SERVER_STAMPED {
            let kept = prev.body["extension"]
                .as_array()
                .and_then(|es| es.iter().find(|x| x["url"].as_str() == Some(url)))
                .cloned();
            if let Some(mut x) = kept {
                if let Some(o) = x.as_object_mut() {
                    o.remove("url");
                }
                fx::set_extension(body, url, x);
            }
        }
        return Ok(effect);
    }
    if d.cancelled {
        return Err(fail(
            ErrorKind::Unprocessable,
            e.at,
            "a new dispensation is completed; cancel one with a new version of it",
        ));
    }
    let (stored, mut state) = locked.take(tx, e.patient, &d.prescription, e.at).await?;
    let today = datetime::helsinki(e.now_ms)
        .map(|t| t.date())
        .ok_or_else(|| StoreError::Corrupt("the clock is out of range".into()))?;
    let version = centre.medicines.on(today).ok_or_else(|| {
        fail(
            ErrorKind::Unavailable,
            e.at,
            format!("no medicines database version is in force on {today}"),
        )
    })?;
    let given = version.product(&d.vnr).ok_or_else(|| {
        fail(
            ErrorKind::Unprocessable,
            e.at,
            format!(
                "VNR {} is not in the medicines database valid from {}",
                d.vnr, version.valid_from
            ),
        )
    })?;
    let prescribed = fx::vnr_of(&stored.body).unwrap_or_default().to_string();
    if d.vnr != prescribed {
        if stored.body["substitution"]["allowedBoolean"].as_bool() == Some(false) {
            return Err(fail(
                ErrorKind::Unprocessable,
                e.at,
                "the prescriber prohibited substitution: dispense the prescribed product",
            ));
        }
        if !version.substitutable(&prescribed, &d.vnr) {
            return Err(fail(
                ErrorKind::Unprocessable,
                e.at,
                format!(
                    "VNR {} is not in the substitution group of the prescribed product",
                    d.vnr
                ),
            ));
        }
    }
    let package = u64::from(given.package_size.max(1));
    if let Some(Quantity::Amount(_, unit)) = &d.quantity {
        if *unit != given.unit {
            return Err(fail(
                ErrorKind::Unprocessable,
                e.at,
                format!(
                    "the quantity is in packages ({{package}}) or in the product's unit ({}), not '{unit}'",
                    given.unit
                ),
            ));
        }
    }
    let amount =
        match (state.measure, &d.quantity, d.days) {
            (Measure::Days, _, Some(days)) => days,
            (Measure::Days, _, None) => return Err(fail(
                ErrorKind::Unprocessable,
                e.at,
                "this prescription is for a treatment time: give the days dispensed (daysSupply)",
            )),
            (Measure::Units, Some(Quantity::Packages(n)), _) => n * package,
            (Measure::Units, Some(Quantity::Amount(n, _)), _) => *n,
            (Measure::Units, None, _) => {
                return Err(fail(
                    ErrorKind::Unprocessable,
                    e.at,
                    "this prescription is for an amount: give the quantity dispensed",
                ))
            }
        };
    rx::check(
        &state,
        &Event::Dispense {
            pharmacy: e.org,
            amount,
        },
        e.now_ms,
    )
    .map_err(|r| refused(e.at, r))?;
    // The price of what was given, VAT included, from the database version of the day.
    let packages = match &d.quantity {
        Some(Quantity::Packages(n)) => Some(*n),
        Some(Quantity::Amount(n, _)) => Some(n.div_ceil(package)),
        None => None,
    };
    if let Some(n) = packages {
        let cents = |p: u64| i64::try_from(p.saturating_mul(n)).unwrap_or(i64::MAX);
        fx::set_extension(
            body,
            codes::RETAIL_PRICE_URL,
            fx::money(cents(given.price_cents)),
        );
        match version.product(&prescribed) {
            Some(p) if d.vnr != prescribed => fx::set_extension(
                body,
                codes::PRICE_DIFFERENCE_URL,
                fx::money(cents(given.price_cents) - cents(p.price_cents)),
            ),
            Some(_) | None => {
                fx::set_extension(body, codes::PRICE_DIFFERENCE_URL, fx::money(0));
            }
        }
    }
    fx::set_extension(
        body,
        codes::DISPENSED_AMOUNT_URL,
        json!({ "valueUnsignedInt": amount }),
    );
    state.dispensed += amount;
    if state
        .reservation
        .as_ref()
        .is_some_and(|r| r.pharmacy == e.org)
    {
        state.reservation = None;
    }
    locked.put(stored, &state, e.now_ms);
    Ok(effect)
}

/// A reservation, a renewal request or a review request, or an answer to one.
async fn task(
    tx: &mut dyn Tx,
    centre: &Centre,
    locked: &mut Locked,
    e: &Entry<'_>,
    body: &mut Value,
) -> Result<Effect> {
    let t = fx::read_task(body).map_err(|err| StoreError::Fhir(err.within(e.at)))?;
    let bad = |msg: &str| fail(ErrorKind::Unprocessable, e.at, msg.to_string());
    let (holder, owner) = match e.previous {
        Some(prev) => {
            let old =
                fx::read_task(&prev.body).map_err(|err| StoreError::Fhir(err.within(e.at)))?;
            if old.code != t.code || old.prescription != t.prescription || old.owner != t.owner {
                return Err(bad(
                    "a task keeps its code, its prescription and its owner; file a new one",
                ));
            }
            let open = matches!(old.status.as_str(), "requested" | "in-progress");
            if !open {
                return Err(fail(
                    ErrorKind::Conflict,
                    e.at,
                    format!("this task is {} already; it is not changed", old.status),
                ));
            }
            match t.code {
                TaskCode::Reservation => {
                    if t.status == "in-progress" {
                        return Err(bad("a reservation ends (completed or cancelled); to hold it longer, reserve anew"));
                    }
                    let (stored, mut state) =
                        locked.take(tx, e.patient, &t.prescription, e.at).await?;
                    // Only the reservation this task made is released (a lapsed one, or one
                    // ended by a dispensation, leaves the prescription as it is).
                    let until = prev.body["executionPeriod"]["end"]
                        .as_str()
                        .and_then(datetime::parse_start)
                        .map(datetime::millis);
                    if state
                        .reservation
                        .as_ref()
                        .is_some_and(|r| r.pharmacy == e.org && Some(r.until_ms) == until)
                    {
                        if state.reserved_at(e.now_ms).is_some() {
                            rx::check(&state, &Event::Release { pharmacy: e.org }, e.now_ms)
                                .map_err(|r| refused(e.at, r))?;
                        }
                        state.reservation = None;
                        locked.put(stored, &state, e.now_ms);
                    }
                }
                TaskCode::RenewalRequest | TaskCode::ReviewRequest => match t.status.as_str() {
                    "rejected"
                        if body["statusReason"]["text"]
                            .as_str()
                            .is_none_or(|s| s.trim().is_empty()) =>
                    {
                        return Err(bad("a refusal states its reason (statusReason.text)"));
                    }
                    "completed" if t.code == TaskCode::RenewalRequest => {
                        let renewed: Vec<String> = body["output"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|o| o["valueReference"]["reference"].as_str())
                            .filter_map(|r| r.strip_prefix("MedicationRequest/"))
                            .map(str::to_string)
                            .collect();
                        if renewed.is_empty() {
                            return Err(bad("a renewal is answered with the new prescription (output.valueReference MedicationRequest/<id>)"));
                        }
                        // The patient's own new prescription, not another's.
                        for id in renewed {
                            if tx.locate("MedicationRequest", &id).await? != e.patient {
                                return Err(bad("the renewed prescription is the same patient's (output.valueReference)"));
                            }
                        }
                    }
                    _ => {}
                },
            }
            (prev.org.clone(), old.owner)
        }
        None => {
            // Who may file it, before anything is read of the prescription.
            if !filer(e.principal).is_some_and(|f| rx::may_file(f, kind_of(t.code))) {
                return Err(fail(
                    ErrorKind::Forbidden,
                    e.at,
                    match t.code {
                        TaskCode::Reservation => "only a pharmacy reserves a prescription",
                        TaskCode::RenewalRequest => {
                            "a renewal request is the patient's (in MyKanta) or a pharmacy's for its customer"
                        }
                        TaskCode::ReviewRequest => "a review request is the patient's, in MyKanta",
                    },
                ));
            }
            let (stored, mut state) = locked.take(tx, e.patient, &t.prescription, e.at).await?;
            // One open request of a kind at a time (the prescription is locked: no race), looked
            // up in the patient's own tokens: one shard on Citus.
            if let (true, Some(patient)) = (t.code != TaskCode::Reservation, e.patient) {
                let open = tx
                    .find_patient_token(
                        patient,
                        "Task",
                        OPEN_REQUEST_INDEX,
                        &format!("MedicationRequest/{}|{}", t.prescription, t.code.code()),
                    )
                    .await?;
                if !open.is_empty() {
                    return Err(fail(
                        ErrorKind::Conflict,
                        e.at,
                        format!("a {} of this prescription is open already", t.code.code()),
                    ));
                }
            }
            match t.code {
                TaskCode::Reservation => {
                    if t.owner.as_deref().is_some_and(|o| o != e.org) || t.status != "in-progress" {
                        return Err(bad(
                            "a reservation is the pharmacy's own (owner: itself) and in-progress",
                        ));
                    }
                    rx::check(&state, &Event::Reserve { pharmacy: e.org }, e.now_ms)
                        .map_err(|r| refused(e.at, r))?;
                    let until = e.now_ms.saturating_add(centre.reservation_ms);
                    body["executionPeriod"] = json!({
                        "start": instant(e.now_ms),
                        "end": instant(until),
                    });
                    state.reservation = Some(Reservation {
                        pharmacy: e.org.to_string(),
                        until_ms: until,
                    });
                    locked.put(stored, &state, e.now_ms);
                    (None, Some(e.org.to_string()))
                }
                TaskCode::RenewalRequest => {
                    if t.status != "requested" {
                        return Err(bad("a new renewal request is requested"));
                    }
                    rx::check(&state, &Event::RequestRenewal, e.now_ms)
                        .map_err(|r| refused(e.at, r))?;
                    // To the prescriber's unit unless another was chosen.
                    let Some(owner) = t.owner.clone().or(stored.org.clone()) else {
                        return Err(bad("name the unit the request goes to (owner)"));
                    };
                    (Some(owner.clone()), Some(owner))
                }
                TaskCode::ReviewRequest => {
                    if t.status != "requested" {
                        return Err(bad("a new review request is requested"));
                    }
                    let Some(controller) = centre.controller.clone() else {
                        return Err(fail(ErrorKind::Unavailable, e.at, "no controller of the Prescription Centre is configured to take review requests"));
                    };
                    if t.owner.as_deref().is_some_and(|o| o != controller) {
                        return Err(bad(
                            "a review request goes to the controller of the Prescription Centre",
                        ));
                    }
                    (Some(controller.clone()), Some(controller))
                }
            }
        }
    };
    let owner = owner.unwrap_or_else(|| e.org.to_string());
    body["owner"] = json!({ "reference": format!("Organization/{owner}") });
    let mut tokens = vec![
        (TASK_OWNER_INDEX.to_string(), owner.clone()),
        (
            TASK_QUEUE_INDEX.to_string(),
            format!("{owner}|{}|{}", t.code.code(), t.status),
        ),
    ];
    if t.code != TaskCode::Reservation && matches!(t.status.as_str(), "requested" | "in-progress") {
        tokens.push((
            OPEN_REQUEST_INDEX.to_string(),
            format!("MedicationRequest/{}|{}", t.prescription, t.code.code()),
        ));
    }
    Ok(Effect { holder, tokens })
}

fn instant(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(datetime::instant)
        .unwrap_or_default()
}
