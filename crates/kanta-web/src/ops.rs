//! Health, readiness, metrics and the operator API.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, FHIR_JSON};
use crate::AppState;
use crate::RequestId;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kanta_domain::access::{self, Target};
use kanta_domain::audit::{Action, AuditRecord, Outcome};
use kanta_fhir::{outcome, population};
use kanta_fhir::{ErrorKind, FhirError};
use serde_json::json;

/// `GET /healthz`: the process is alive (no dependencies checked).
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: each subsystem and whether it is up (R-OPS-2). 200 when the record store answers.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let db_up = state.store.ping().await.is_ok();
    let up = |b: bool| if b { "up" } else { "down" };
    // Identification: whether the identity provider's metadata and keys can be had (cached for an
    // hour, so this does not call the provider on every probe). Mandates: whether the service
    // answered the last check the portal made (`unknown` before any; never probed from here, since
    // DVV's terms allow checks only for the user's own errands).
    let identification = match &state.portal.identification {
        Some(i) => up(i.reachable().await),
        None => "not-configured",
    };
    let body = json!({
        "status": if db_up { "ready" } else { "unavailable" },
        "backend": format!("{:?}", state.store.backend()).to_lowercase(),
        "demo": state.config.demo,
        "subsystems": {
            "records": up(db_up),
            // The Prescription Centre is the records store with a medicines database loaded;
            // without one every prescription is refused, and that is what this says.
            "prescriptions": match &state.centre {
                Some(c) if !c.medicines.versions().is_empty() => up(db_up),
                Some(_) | None => "no-medicines-database",
            },
            // The consent service is the records store's Consents (the disclosure rule reads them).
            "consents": up(db_up),
            // Not built yet: saying "up" would tell an operator something that is not there.
            "wellbeing_data": "not-implemented",
            "population_register": up(db_up),
            // `behind`: writes' audit records are committed in the outbox but the writer could
            // not yet make them leaves (the operator's alarm; the service goes on).
            "audit_log": if !db_up { "down" } else if state.audit.is_behind() { "behind" } else { "up" },
            "identification": identification,
            "mandates": match (&state.portal.mandates, state.portal.mandate_cache.last_answered()) {
                (None, _) => "not-configured",
                (Some(_), None) => "unknown",
                (Some(_), Some(ok)) => up(ok),
            },
        }
    });
    let status = if db_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    // Issue 30: the operator's numbers are not for everyone (they tell of load, failures and the
    // audit backlog). With a configured token, a bearer token from anywhere; without one, the
    // loopback only.
    let allowed = match &state.metrics_token {
        Some(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| crate::portal::session::same_secret(given, token)),
        None => peer.ip().is_loopback(),
    };
    if !allowed {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "metrics: send the configured metrics_token as a bearer token (without one configured, only the loopback may read them)\n",
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// `POST /operator/population/import`: feed the population register (operator clients only).
pub async fn population_import(
    State(state): State<AppState>,
    caller: Caller,
    rid: RequestId,
    body: Bytes,
) -> ApiResult<Response> {
    let now = state.clock.now();
    let now_ms = kanta_fhir::datetime::millis(now);
    caller.decide(&access::Action::PopulationImport, Target::Request, now_ms)?;
    let value: serde_json::Value = crate::fhir_api::parse_json(&body)?;
    let records = population::parse_import(&value)?;
    let summary = state.store.import_population(&records, now).await?;
    // Every person written is recorded; if that fails the operator is told, so the import is re-run.
    let audit: Vec<AuditRecord> = summary
        .keys
        .iter()
        .map(|k| {
            let permit = caller.decide(
                &access::Action::PopulationImport,
                Target::Patient {
                    patient: Some(*k),
                    holder: None,
                },
                now_ms,
            )?;
            Ok(operator_record(
                &caller,
                &rid,
                now,
                *k,
                Action::Import,
                "population-register",
                None,
                permit,
            ))
        })
        .collect::<ApiResult<_>>()?;
    state.audit.commit(audit).await.map_err(|_| {
        ApiError(FhirError::new(
            ErrorKind::Unavailable,
            "the import was stored but its audit records could not be written; run it again",
        ))
    })?;
    tracing::info!(
        persons = summary.persons,
        relations = summary.relations,
        "population register import"
    );
    let oo = outcome::information(&format!(
        "imported {} persons and {} relations into the population register",
        summary.persons, summary.relations
    ));
    Ok(([(header::CONTENT_TYPE, FHIR_JSON)], oo.to_string()).into_response())
}

/// `POST /operator/audit/export` with a `Parameters` resource naming the person
/// (`patient` as a HETU `valueIdentifier`): the person's audit records as a Bundle of AuditEvents,
/// answering a log-data request (R-OPS-5). The look-up is itself recorded first.
pub async fn audit_export(
    State(state): State<AppState>,
    caller: Caller,
    rid: RequestId,
    body: Bytes,
) -> ApiResult<Response> {
    let now = state.clock.now();
    let now_ms = kanta_fhir::datetime::millis(now);
    caller.decide(&access::Action::AuditExport, Target::Request, now_ms)?;
    let params = crate::fhir_api::parse_json(&body)?;
    if params.get("resourceType").and_then(|v| v.as_str()) != Some("Parameters") {
        return Err(FhirError::bad_request(
            "send a Parameters resource with a 'patient' valueIdentifier (HETU)",
        )
        .into());
    }
    let hetu = params
        .get("parameter")
        .and_then(|p| p.as_array())
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("name").and_then(|n| n.as_str()) == Some("patient"))
        })
        .and_then(|p| p.get("valueIdentifier"))
        .filter(|i| {
            i.get("system").and_then(|s| s.as_str()) == Some(kanta_fhir::codes::HETU_SYSTEM)
        })
        .and_then(|i| i.get("value").and_then(|v| v.as_str()))
        .ok_or_else(|| {
            FhirError::invalid(
                "Parameters.parameter",
                format!(
                    "a 'patient' parameter with valueIdentifier system {} is required",
                    kanta_fhir::codes::HETU_SYSTEM
                ),
            )
        })?;
    let hetu = kanta_domain::hetu::Hetu::parse(hetu).map_err(|e| {
        FhirError::invalid(
            "Parameters.parameter.valueIdentifier.value",
            format!("invalid HETU: {e}"),
        )
    })?;
    let Some(key) = state.store.patient_key_for_hetu(&hetu).await? else {
        return Err(FhirError::not_found("the platform has no data about this person").into());
    };
    let permit = caller.decide(
        &access::Action::AuditExport,
        Target::Patient {
            patient: Some(key),
            holder: None,
        },
        now_ms,
    )?;
    // The operator's read of the log is itself a use of personal data: recorded before release.
    let record = operator_record(
        &caller,
        &rid,
        now,
        key,
        Action::AuditRead,
        "AuditEvent",
        Some("log data request"),
        permit,
    );
    state.audit.commit(vec![record]).await.map_err(|_| {
        ApiError(FhirError::new(
            ErrorKind::Unavailable,
            "the audit log is unavailable; nothing was released",
        ))
    })?;
    // The whole history (R-OPS-5), a page at a time.
    let mut events: Vec<serde_json::Value> = vec![];
    let mut before = None;
    loop {
        let rows = state.store.audit_of_patient(key, before, 5_000).await?;
        events.extend(rows.iter().filter_map(|r| {
            let rec: AuditRecord = serde_json::from_str(&r.body).ok()?;
            Some(kanta_fhir::audit_event::audit_event(&rec, r.seq, None))
        }));
        match rows.last() {
            Some(last) if rows.len() == 5_000 => before = Some(last.seq),
            _ => break,
        }
    }
    let base = state.config.fhir_base();
    let total = events.len();
    let bundle = kanta_fhir::bundle::bundle_of(
        "collection",
        &base,
        events,
        &format!("{}/operator/audit/export", state.config.public_url),
        None,
        Some(total),
    );
    Ok(([(header::CONTENT_TYPE, FHIR_JSON)], bundle.to_string()).into_response())
}

/// An audit record of an operator's act on one person's data.
#[allow(clippy::too_many_arguments)]
fn operator_record(
    caller: &Caller,
    rid: &RequestId,
    now: time::OffsetDateTime,
    patient: kanta_domain::ids::PatientKey,
    action: Action,
    entity: &str,
    query: Option<&str>,
    permit: access::Permit,
) -> AuditRecord {
    AuditRecord {
        schema: kanta_domain::audit::AUDIT_SCHEMA,
        recorded_at: kanta_fhir::datetime::millis(now),
        patient: Some(patient),
        actor: caller.actor(),
        on_behalf_of: None,
        action,
        entities: vec![entity.to_string()],
        query: query.map(str::to_string),
        outcome: Outcome::Success,
        request_id: rid.0.clone(),
        basis: Some(permit.basis().clone()),
    }
}
