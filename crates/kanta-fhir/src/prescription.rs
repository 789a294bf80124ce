//! A prescription (`MedicationRequest`) read as the Prescription Centre's rules see it, and checked
//! against the medicines database (R-RX-1, R-RX-3). The mapping is docs/prescription-centre.md.
//! Not yet called by the write path (issue 13).

use crate::outcome::FhirError;
use crate::{codes, datetime};
use kanta_domain::medicines::{Database, Product};
use kanta_domain::prescription::{CancelReason, Measure, State};
use serde_json::Value;
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
