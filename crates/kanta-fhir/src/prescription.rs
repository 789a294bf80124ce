//! A prescription (`MedicationRequest`) read as the Prescription Centre's rules see it, and checked
//! against the medicines database (R-RX-1, R-RX-3). The mapping is docs/prescription-centre.md.
//! The write path (`kanta-store/src/write.rs`) calls it for every prescription, dispensation and
//! task, and keeps each prescription's state in a server-maintained extension.

use crate::outcome::FhirError;
use crate::{codes, datetime};
use kanta_domain::medicines::{Database, Product};
use kanta_domain::prescription::{CancelReason, Measure, Reservation, State};
use serde_json::{json, Value};
use time::{Date, Month};

/// Characters the dose instructions may have.
pub const MAX_DOSAGE_TEXT: usize = 2_000;

/// What a prescription says, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prescribed {
    pub vnr: String,
    pub product: Product,
    pub authored: Date,
    /// Its state before anything is dispensed or reserved.
    pub state: State,
    pub substitution_prohibited: bool,
}

fn invalid(path: &str, msg: impl Into<String>) -> FhirError {
    FhirError::invalid(format!("MedicationRequest.{path}"), msg)
}

/// The day two calendar years after `d` (29 February → 1 March).
pub fn two_years_after(d: Date) -> Date {
    let y = d.year() + 2;
    d.replace_year(y)
        .or_else(|_| Date::from_calendar_date(y, Month::March, 1))
        .unwrap_or(d)
}

/// Read and check a prescription against the database version in force on its `authoredOn` day.
pub fn read(body: &Value, db: &Database) -> Result<Prescribed, FhirError> {
    let vnr = body["medicationCodeableConcept"]["coding"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["system"].as_str() == Some(codes::VNR_SYSTEM))
        })
        .and_then(|c| c["code"].as_str())
        .ok_or_else(|| {
            invalid(
                "medicationCodeableConcept",
                format!(
                    "a prescription names its product by VNR number (coding system {})",
                    codes::VNR_SYSTEM
                ),
            )
        })?
        .to_string();
    let authored_at = body["authoredOn"]
        .as_str()
        .and_then(datetime::parse_start)
        .ok_or_else(|| invalid("authoredOn", "a prescription has its date (authoredOn)"))?;
    let authored = datetime::helsinki(datetime::millis(authored_at))
        .map(|t| t.date())
        .ok_or_else(|| invalid("authoredOn", "authoredOn is out of range"))?;
    let version = db.on(authored).ok_or_else(|| {
        invalid(
            "authoredOn",
            format!("no medicines database version is in force on {authored}"),
        )
    })?;
    let product = version.product(&vnr).cloned().ok_or_else(|| {
        invalid(
            "medicationCodeableConcept",
            format!(
                "VNR {vnr} is not in the medicines database valid from {}",
                version.valid_from
            ),
        )
    })?;
    let dose = body["dosageInstruction"][0]["text"].as_str().unwrap_or("");
    if dose.trim().is_empty() {
        return Err(invalid(
            "dosageInstruction[0].text",
            "a prescription has its dose instructions",
        ));
    }
    if dose.chars().count() > MAX_DOSAGE_TEXT {
        return Err(invalid(
            "dosageInstruction[0].text",
            format!("dose instructions are at most {MAX_DOSAGE_TEXT} characters"),
        ));
    }
    let dr = &body["dispenseRequest"];
    let whole = |v: &Value, path: &str| -> Result<u64, FhirError> {
        v["value"]
            .as_f64()
            .filter(|x| *x >= 1.0 && *x <= 1_000_000.0 && x.fract() == 0.0)
            .map(|x| x as u64)
            .ok_or_else(|| invalid(path, "a whole number from 1 to 1,000,000"))
    };
    let (measure, total) = match (dr.get("quantity"), dr.get("expectedSupplyDuration")) {
        (Some(q), None) => {
            let n = whole(q, "dispenseRequest.quantity.value")?;
            let code = q["code"].as_str().or(q["unit"].as_str()).unwrap_or("");
            if code == "{package}" {
                (Measure::Units, n * u64::from(product.package_size))
            } else if code == product.unit {
                (Measure::Units, n)
            } else {
                return Err(invalid(
                    "dispenseRequest.quantity",
                    format!(
                        "the quantity is in packages (code {{package}}) or in the product's unit ({})",
                        product.unit
                    ),
                ));
            }
        }
        (None, Some(d)) => {
            let n = whole(d, "dispenseRequest.expectedSupplyDuration.value")?;
            let unit = d["code"].as_str().or(d["unit"].as_str()).unwrap_or("");
            let days = match unit {
                "d" => n,
                "wk" => n * 7,
                _ => {
                    return Err(invalid(
                        "dispenseRequest.expectedSupplyDuration",
                        "a treatment time is in days (d) or weeks (wk)",
                    ))
                }
            };
            (Measure::Days, days)
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                "dispenseRequest",
                "a quantity or a treatment time, not both",
            ))
        }
        (None, None) => {
            return Err(invalid(
                "dispenseRequest",
                "a quantity (packages or an amount) or a treatment time",
            ))
        }
    };
    let longest = two_years_after(authored);
    let valid_until = match dr["validityPeriod"]["end"].as_str() {
        None => longest,
        Some(s) => {
            let end = datetime::parse_date(s.get(..10).unwrap_or(s))
                .ok_or_else(|| invalid("dispenseRequest.validityPeriod.end", "not a date"))?;
            if end <= authored || end > longest {
                return Err(invalid(
                    "dispenseRequest.validityPeriod.end",
                    format!("a prescription is valid after its date and for at most two years (until {longest})"),
                ));
            }
            end
        }
    };
    let cancelled = match body["status"].as_str() {
        Some("cancelled") => Some(
            body["statusReason"]["coding"]
                .as_array()
                .and_then(|cs| {
                    cs.iter().find(|c| {
                        c["system"].as_str() == Some(codes::PRESCRIPTION_CANCELLATION_SYSTEM)
                    })
                })
                .and_then(|c| c["code"].as_str())
                .and_then(CancelReason::parse)
                .ok_or_else(|| {
                    invalid(
                        "statusReason",
                        format!(
                            "a cancellation states its reason ({}: patient-request, technical-error, patient-death, other)",
                            codes::PRESCRIPTION_CANCELLATION_SYSTEM
                        ),
                    )
                })?,
        ),
        Some("active" | "completed") => None,
        _ => {
            return Err(invalid(
                "status",
                "a prescription is active, completed or cancelled",
            ))
        }
    };
    let renewal_prohibited = body["extension"].as_array().is_some_and(|es| {
        es.iter().any(|e| {
            e["url"].as_str() == Some(codes::RENEWAL_PROHIBITED_URL)
                && e["valueBoolean"].as_bool() == Some(true)
        })
    });
    Ok(Prescribed {
        vnr,
        substitution_prohibited: body["substitution"]["allowedBoolean"].as_bool() == Some(false),
        state: State {
            measure,
            total,
            dispensed: 0,
            // Valid through its last day (Finnish time).
            valid_until_ms: datetime::helsinki_midnight(
                valid_until.next_day().unwrap_or(valid_until),
            ),
            cancelled,
            renewal_prohibited,
            reservation: None,
        },
        product,
        authored,
    })
}

fn extension<'a>(body: &'a Value, url: &str) -> Option<&'a Value> {
    body["extension"]
        .as_array()?
        .iter()
        .find(|e| e["url"].as_str() == Some(url))
}

fn remove_extension(body: &mut Value, url: &str) {
    if let Some(es) = body.get_mut("extension").and_then(Value::as_array_mut) {
        es.retain(|e| e["url"].as_str() != Some(url));
    }
}

fn push_extension(body: &mut Value, ext: Value) {
    if !body["extension"].is_array() {
        body["extension"] = json!([]);
    }
    if let Some(es) = body["extension"].as_array_mut() {
        es.push(ext);
    }
}

/// Set an extension (replacing any of the same url, whoever sent it).
pub fn set_extension(body: &mut Value, url: &str, value: Value) {
    remove_extension(body, url);
    let mut ext = json!({ "url": url });
    if let (Value::Object(e), Value::Object(v)) = (&mut ext, value) {
        e.extend(v);
    }
    push_extension(body, ext);
}

/// A correction's justification, if the version carries one.
pub fn correction_justification(body: &Value) -> Option<&str> {
    extension(body, codes::CORRECTION_JUSTIFICATION_URL)?["valueString"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
}

/// Write the server-maintained state into a prescription (replacing whatever a client sent) and
/// its status: `completed` once nothing remains, `cancelled` as the prescriber said, else `active`.
pub fn write_state(body: &mut Value, state: &State) {
    let mut parts = vec![
        json!({"url": "measure", "valueCode": match state.measure { Measure::Units => "units", Measure::Days => "days" }}),
        json!({"url": "total", "valueUnsignedInt": state.total}),
        json!({"url": "dispensed", "valueUnsignedInt": state.dispensed}),
        json!({"url": "remaining", "valueUnsignedInt": state.remaining()}),
        json!({"url": "validUntil", "valueInstant": instant_of(state.valid_until_ms)}),
    ];
    if let Some(r) = &state.reservation {
        parts.push(json!({"url": "reservedBy", "valueReference": {"reference": format!("Organization/{}", r.pharmacy)}}));
        parts.push(json!({"url": "reservedUntil", "valueInstant": instant_of(r.until_ms)}));
    }
    set_extension(
        body,
        codes::PRESCRIPTION_STATE_URL,
        json!({ "extension": parts }),
    );
    if state.cancelled.is_none() {
        body["status"] = json!(if state.remaining() == 0 {
            "completed"
        } else {
            "active"
        });
    }
}

fn instant_of(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(datetime::instant)
        .unwrap_or_default()
}

fn millis_of(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(datetime::parse_start)
        .map(datetime::millis)
}

/// The cancellation a prescription states (`None` when not cancelled).
fn cancellation(body: &Value) -> Option<CancelReason> {
    if body["status"].as_str() != Some("cancelled") {
        return None;
    }
    let reason = body["statusReason"]["coding"].as_array().and_then(|cs| {
        cs.iter()
            .find(|c| c["system"].as_str() == Some(codes::PRESCRIPTION_CANCELLATION_SYSTEM))
            .and_then(|c| c["code"].as_str())
            .and_then(CancelReason::parse)
    });
    Some(reason.unwrap_or(CancelReason::Other))
}

/// The state of a stored prescription, from its server-maintained extension; `None` when it has
/// none (it was not written through the Prescription Centre's checks).
pub fn state_of(body: &Value) -> Option<State> {
    let parts = extension(body, codes::PRESCRIPTION_STATE_URL)?["extension"].as_array()?;
    let part = |name: &str| parts.iter().find(|p| p["url"].as_str() == Some(name));
    let number = |name: &str| part(name).and_then(|p| p["valueUnsignedInt"].as_u64());
    let measure = match part("measure")?["valueCode"].as_str()? {
        "units" => Measure::Units,
        "days" => Measure::Days,
        _ => return None,
    };
    let reservation = match (part("reservedBy"), part("reservedUntil")) {
        (Some(by), Some(until)) => Some(Reservation {
            pharmacy: by["valueReference"]["reference"]
                .as_str()?
                .strip_prefix("Organization/")?
                .to_string(),
            until_ms: millis_of(&until["valueInstant"])?,
        }),
        _ => None,
    };
    Some(State {
        measure,
        total: number("total")?,
        dispensed: number("dispensed")?,
        valid_until_ms: millis_of(&part("validUntil")?["valueInstant"])?,
        cancelled: cancellation(body),
        renewal_prohibited: renewal_prohibited(body),
        reservation,
    })
}

fn renewal_prohibited(body: &Value) -> bool {
    extension(body, codes::RENEWAL_PROHIBITED_URL)
        .is_some_and(|e| e["valueBoolean"].as_bool() == Some(true))
}

/// The product a prescription or dispensation names, by VNR.
pub fn vnr_of(body: &Value) -> Option<&str> {
    body["medicationCodeableConcept"]["coding"]
        .as_array()?
        .iter()
        .find(|c| c["system"].as_str() == Some(codes::VNR_SYSTEM))?["code"]
        .as_str()
}

/// A dispensation's quantity, as it says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Quantity {
    Packages(u64),
    /// An amount in a unit (`tabl`, `ml`, …).
    Amount(u64, String),
}

/// A dispensation (`MedicationDispense`) as the rules read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispensed {
    pub prescription: String,
    pub vnr: String,
    pub quantity: Option<Quantity>,
    /// Treatment days given (`daysSupply`), for a prescription of a treatment time.
    pub days: Option<u64>,
    pub cancelled: bool,
    /// The country of a dispensation abroad.
    pub abroad: Option<String>,
}

fn invalid_md(path: &str, msg: impl Into<String>) -> FhirError {
    FhirError::invalid(format!("MedicationDispense.{path}"), msg)
}

/// Read a dispensation: the prescription it dispenses, the product, how much.
pub fn read_dispense(body: &Value) -> Result<Dispensed, FhirError> {
    if body["authorizingPrescription"]
        .as_array()
        .map_or(0, Vec::len)
        != 1
    {
        return Err(invalid_md(
            "authorizingPrescription",
            "a dispensation dispenses exactly one prescription (authorizingPrescription: MedicationRequest/<id>)",
        ));
    }
    let prescription = body["authorizingPrescription"][0]["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix("MedicationRequest/"))
        .filter(|id| crate::resource::valid_id(id))
        .ok_or_else(|| {
            invalid_md(
                "authorizingPrescription",
                "a dispensation names the prescription it dispenses (MedicationRequest/<id>)",
            )
        })?
        .to_string();
    let vnr = vnr_of(body)
        .ok_or_else(|| {
            invalid_md(
                "medicationCodeableConcept",
                format!(
                    "a dispensation names the product given by VNR number (coding system {})",
                    codes::VNR_SYSTEM
                ),
            )
        })?
        .to_string();
    let whole = |v: &Value, path: &str| -> Result<u64, FhirError> {
        v["value"]
            .as_f64()
            .filter(|x| *x >= 1.0 && *x <= 1_000_000.0 && x.fract() == 0.0)
            .map(|x| x as u64)
            .ok_or_else(|| invalid_md(path, "a whole number from 1 to 1,000,000"))
    };
    let quantity = match body.get("quantity") {
        None => None,
        Some(q) => {
            let n = whole(q, "quantity.value")?;
            Some(match q["code"].as_str().or(q["unit"].as_str()) {
                Some("{package}") => Quantity::Packages(n),
                Some(u) if !u.is_empty() && u.len() <= 20 => Quantity::Amount(n, u.to_string()),
                _ => {
                    return Err(invalid_md(
                        "quantity",
                        "the quantity is in packages (code {package}) or in the product's unit",
                    ))
                }
            })
        }
    };
    let days = match body.get("daysSupply") {
        None => None,
        Some(d) => {
            let n = whole(d, "daysSupply.value")?;
            Some(match d["code"].as_str().or(d["unit"].as_str()) {
                Some("d") => n,
                Some("wk") => n * 7,
                _ => {
                    return Err(invalid_md(
                        "daysSupply",
                        "a treatment time is in days (d) or weeks (wk)",
                    ))
                }
            })
        }
    };
    if quantity.is_none() && days.is_none() {
        return Err(invalid_md(
            "quantity",
            "a dispensation says how much it gives (quantity, and daysSupply for a treatment time)",
        ));
    }
    let cancelled = match body["status"].as_str() {
        Some("completed") => false,
        Some("cancelled") => true,
        _ => {
            return Err(invalid_md(
                "status",
                "a dispensation is completed, or cancelled (which gives back what it took)",
            ))
        }
    };
    let abroad = match extension(body, codes::DISPENSED_ABROAD_URL) {
        None => None,
        Some(e) => {
            let c = e["valueCoding"]["code"].as_str().unwrap_or("");
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) || c == "FI" {
                return Err(invalid_md(
                    "extension",
                    "a dispensation abroad names its country (ISO 3166-1 alpha-2, not FI)",
                ));
            }
            Some(c.to_string())
        }
    };
    Ok(Dispensed {
        prescription,
        vnr,
        quantity,
        days,
        cancelled,
        abroad,
    })
}

/// What a dispensation took, as stored on it by the server.
pub fn dispensed_amount(body: &Value) -> Option<u64> {
    extension(body, codes::DISPENSED_AMOUNT_URL)?["valueUnsignedInt"].as_u64()
}

/// Money in euros, VAT included.
pub fn money(cents: i64) -> Value {
    json!({"valueMoney": {"value": (cents as f64) / 100.0, "currency": "EUR"}})
}

/// A Prescription Centre task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskCode {
    Reservation,
    RenewalRequest,
    ReviewRequest,
}

impl TaskCode {
    pub fn code(self) -> &'static str {
        match self {
            TaskCode::Reservation => "reservation",
            TaskCode::RenewalRequest => "renewal-request",
            TaskCode::ReviewRequest => "review-request",
        }
    }
    fn parse(s: &str) -> Option<TaskCode> {
        [
            TaskCode::Reservation,
            TaskCode::RenewalRequest,
            TaskCode::ReviewRequest,
        ]
        .into_iter()
        .find(|c| c.code() == s)
    }
}

/// A `Task` of the Prescription Centre, as the rules read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxTask {
    pub code: TaskCode,
    /// The prescription it is about.
    pub prescription: String,
    /// The organisation whose queue holds it (`owner`), if given.
    pub owner: Option<String>,
    pub status: String,
}

/// Read a Task: its code, the prescription (`focus`), the owner and the status.
pub fn read_task(body: &Value) -> Result<RxTask, FhirError> {
    let bad = |path: &str, msg: String| FhirError::invalid(format!("Task.{path}"), msg);
    let code = body["code"]["coding"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["system"].as_str() == Some(codes::PRESCRIPTION_TASK_SYSTEM))
        })
        .and_then(|c| c["code"].as_str())
        .and_then(TaskCode::parse)
        .ok_or_else(|| {
            bad(
                "code",
                format!(
                    "a task of the Prescription Centre is coded ({}: reservation, renewal-request, review-request)",
                    codes::PRESCRIPTION_TASK_SYSTEM
                ),
            )
        })?;
    let prescription = body["focus"]["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix("MedicationRequest/"))
        .filter(|id| crate::resource::valid_id(id))
        .ok_or_else(|| {
            bad(
                "focus",
                "a task names its prescription (focus: MedicationRequest/<id>)".into(),
            )
        })?
        .to_string();
    let owner = match body["owner"]["reference"].as_str() {
        None => None,
        Some(r) => Some(
            r.strip_prefix("Organization/")
                .filter(|id| crate::resource::valid_id(id))
                .ok_or_else(|| {
                    bad(
                        "owner",
                        "a task's owner is an organisation (Organization/<id>)".into(),
                    )
                })?
                .to_string(),
        ),
    };
    let allowed: &[&str] = match code {
        TaskCode::Reservation => &["in-progress", "completed", "cancelled"],
        TaskCode::RenewalRequest | TaskCode::ReviewRequest => &[
            "requested",
            "in-progress",
            "completed",
            "rejected",
            "cancelled",
        ],
    };
    let status = body["status"].as_str().unwrap_or("");
    if !allowed.contains(&status) {
        return Err(bad(
            "status",
            format!("a {} task is {}", code.code(), allowed.join(", ")),
        ));
    }
    Ok(RxTask {
        code,
        prescription,
        owner,
        status: status.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::date;

    fn db() -> Database {
        let text = "# kanta-medicines 1\n# valid-from: 2026-01-01\nVNR;NAME;STRENGTH;FORM;PACKAGE_SIZE;UNIT;ATC;SUBSTITUTION_GROUP;PRICE_EUR;REIMBURSEMENT;STATUS\n401011;Atorvastatin Pohjola;20 mg;tabletti;30;tabl;C10AA05;1201;6,45;40;R\n";
        Database::new(vec![kanta_domain::medicines::parse(text).unwrap()])
    }

    fn rx() -> Value {
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/p"}, "authoredOn": "2026-12-02",
            "medicationCodeableConcept": {"coding": [{"system": codes::VNR_SYSTEM, "code": "401011"}]},
            "dosageInstruction": [{"text": "1 tabletti illalla"}],
            "dispenseRequest": {"quantity": {"value": 3, "code": "{package}", "system": "http://unitsofmeasure.org"}}})
    }

    #[test]
    fn packages_count_in_units_and_validity_is_two_years() {
        let p = read(&rx(), &db()).unwrap();
        assert_eq!(p.state.measure, Measure::Units);
        assert_eq!(p.state.total, 90);
        assert_eq!(p.product.name, "Atorvastatin Pohjola");
        assert_eq!(
            p.state.valid_until_ms,
            datetime::helsinki_midnight(date!(2028 - 12 - 03)),
            "valid through 2 December 2028"
        );
        assert!(!p.substitution_prohibited && !p.state.renewal_prohibited);
        assert_eq!(
            two_years_after(date!(2028 - 02 - 29)),
            date!(2030 - 03 - 01)
        );
    }

    #[test]
    fn every_wrong_prescription_says_what_is_wrong() {
        type Change = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|v| v["medicationCodeableConcept"]["coding"][0]["code"] = json!("999999")),
                "not in the medicines database",
            ),
            (
                Box::new(|v| v["medicationCodeableConcept"] = json!({"text": "x"})),
                "VNR",
            ),
            (
                Box::new(|v| v["dosageInstruction"] = json!([])),
                "dose instructions",
            ),
            (
                Box::new(|v| {
                    v["dispenseRequest"]["expectedSupplyDuration"] =
                        json!({"value": 90, "code": "d"})
                }),
                "not both",
            ),
            (
                Box::new(|v| v["dispenseRequest"] = json!({})),
                "treatment time",
            ),
            (
                Box::new(|v| v["dispenseRequest"]["quantity"]["value"] = json!(0)),
                "whole number",
            ),
            (
                Box::new(|v| v["dispenseRequest"]["quantity"]["code"] = json!("ml")),
                "product's unit",
            ),
            (
                Box::new(|v| v["dispenseRequest"]["validityPeriod"] = json!({"end": "2029-01-01"})),
                "two years",
            ),
            (Box::new(|v| v["status"] = json!("cancelled")), "reason"),
            (
                Box::new(|v| v["authoredOn"] = json!("2025-06-01")),
                "no medicines database version",
            ),
        ];
        for (change, want) in cases {
            let mut v = rx();
            change(&mut v);
            let e = read(&v, &db()).unwrap_err();
            assert!(format!("{e:?}").contains(want), "{want}: {e:?}");
        }
    }

    #[test]
    fn treatment_time_prohibitions_and_cancellation() {
        let mut v = rx();
        v["dispenseRequest"] = json!({"expectedSupplyDuration": {"value": 12, "code": "wk"}});
        v["substitution"] = json!({"allowedBoolean": false});
        v["extension"] = json!([{"url": codes::RENEWAL_PROHIBITED_URL, "valueBoolean": true}]);
        v["status"] = json!("cancelled");
        v["statusReason"] = json!({"coding": [{"system": codes::PRESCRIPTION_CANCELLATION_SYSTEM, "code": "technical-error"}]});
        let p = read(&v, &db()).unwrap();
        assert_eq!((p.state.measure, p.state.total), (Measure::Days, 84));
        assert!(p.substitution_prohibited && p.state.renewal_prohibited);
        assert_eq!(p.state.cancelled, Some(CancelReason::TechnicalError));
    }
}
