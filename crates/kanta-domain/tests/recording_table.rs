#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Who may change what a patient chose (issue 29; R-CONSENT-1, R-CONSENT-2, seed 000 §9, seed 004):
//! every system write of a consent, prohibition or will (role × interaction × register ×
//! recorded-as × the professional header × the purpose of use), and every producer's write into an
//! organiser's register (role × kind × interaction × the mandate). The expected answers are written
//! here from the issue and the seeds — not from `decide` — so a wrong rule fails.

use kanta_domain::access::{
    decide, Action, Client, Decision, Disclosure, Facts, Interaction, Kind, Principal, Scopes,
    Target,
};
use kanta_domain::consent::{
    CentreAccess, ConsentFacts, Period, PurchaseMandate, RecordedAs, RecorderClaim,
};
use kanta_domain::ids::{ClientRole, OrgId, PatientKey};

const ME: &str = "org-producer";
const ORGANISER: &str = "org-organiser";
const NOW: i64 = 1_800_000_000_000;

fn client(role: ClientRole, professional: bool, purpose: Option<&str>) -> Principal {
    Principal::Client(Client {
        client_id: "c".into(),
        org: OrgId::new(ME),
        roles: vec![role],
        scopes: Scopes::parse("system/*.cruds").unwrap(),
        professional: professional.then(|| "urn:oid:1.2.246.537.26|100".to_string()),
        purpose: purpose.map(str::to_string),
        emergency_reason: (purpose == Some("ETREAT")).then(|| "unconscious".to_string()),
    })
}

fn codes(d: &Decision) -> Result<String, Vec<String>> {
    match d {
        Decision::Permit(p) => Ok(format!("{:?}", p.basis().ground)),
        Decision::Denied(r) => {
            let mut v: Vec<String> = r.iter().map(|x| x.code().to_string()).collect();
            v.sort();
            Err(v)
        }
    }
}

/// The claims a body can make of its recorder (`None`: the write path gave no fact at all).
fn claims() -> Vec<(&'static str, Option<RecorderClaim>)> {
    let mut v = vec![
        ("no-fact", None),
        ("none", Some(RecorderClaim::None)),
        ("unreadable", Some(RecorderClaim::Unreadable)),
    ];
    for r in RecordedAs::ALL {
        v.push((r.code(), Some(RecorderClaim::Claims(r))));
    }
    v
}

/// Seed 000 §9 / seed 004: choices may be recorded or changed in care, at the patient's request;
/// so a system records them as the care unit, by a named professional, for care — and never as
/// the patient, a guardian or a proxy (those record in MyKanta). Only a clinician's system writes
/// patient data of this kind, and only into its own register.
fn expected_recording(
    role: ClientRole,
    own_register: bool,
    claim: Option<RecorderClaim>,
    professional: bool,
    purpose: Option<&str>,
) -> Result<(), Vec<&'static str>> {
    if role != ClientRole::Clinician {
        return Err(vec!["(another role's refusal)"]);
    }
    if !own_register {
        return Err(vec!["other-register"]);
    }
    let mut why = vec![];
    match claim {
        None => why.push("no-recording-facts"),
        Some(RecorderClaim::None) | Some(RecorderClaim::Claims(RecordedAs::CareUnit)) => {}
        Some(_) => why.push("recorded-in-mykanta-only"),
    }
    if !professional {
        why.push("recorder-not-named");
    }
    if purpose != Some("TREAT") {
        why.push("recording-not-for-care");
    }
    why.sort();
    if why.is_empty() {
        Ok(())
    } else {
        Err(why)
    }
}

#[test]
fn a_patients_choice_is_recorded_by_systems_only_as_the_care_unit() {
    let mut cells = 0;
    for role in ClientRole::ALL {
        for interaction in [Interaction::Create, Interaction::Update] {
            for (target_name, holder, own) in [
                ("not-stored", None, true),
                ("own-register", Some(ME), true),
                ("other-register", Some(ORGANISER), false),
            ] {
                for (claim_name, claim) in claims() {
                    for professional in [true, false] {
                        for purpose in [None, Some("TREAT"), Some("ETREAT"), Some("HRESCH")] {
                            let p = client(role, professional, purpose);
                            let facts = Facts {
                                recording: claim,
                                ..Facts::default()
                            };
                            let target = Target::Patient {
                                patient: Some(PatientKey(1)),
                                holder,
                            };
                            let got = codes(&decide(
                                &p,
                                &Action::fhir(interaction, "Consent"),
                                target,
                                &facts,
                                NOW,
                            ));
                            let want = expected_recording(role, own, claim, professional, purpose);
                            let cell = format!(
                                "{} {interaction:?} {target_name} recorded-as={claim_name} professional={professional} purpose={purpose:?}",
                                role.as_str()
                            );
                            match (&want, &got) {
                                (Ok(()), Ok(ground)) => assert_eq!(ground, "OwnRegister", "{cell}"),
                                (Err(w), Err(g)) if role == ClientRole::Clinician => {
                                    assert_eq!(
                                        w.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                                        *g,
                                        "{cell}"
                                    )
                                }
                                (Err(_), Err(_)) => {}
                                _ => panic!("{cell}: expected {want:?}, decided {got:?}"),
                            }
                            cells += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cells, 4 * 2 * 3 * 7 * 2 * 4);
}

/// A mandate as the organiser stored it (`None`: none at all).
fn mandates() -> Vec<(&'static str, Vec<PurchaseMandate>, bool)> {
    let m =
        |organiser: &str, producer: Option<&str>, valid: Period, retrieve, store| PurchaseMandate {
            organiser: organiser.into(),
            producer: producer.map(str::to_string),
            valid,
            retrieve,
            store,
        };
    vec![
        ("none", vec![], false),
        (
            "store-in-force",
            vec![m(ORGANISER, Some(ME), Period::always(), false, true)],
            true,
        ),
        (
            "store-ended",
            vec![m(
                ORGANISER,
                Some(ME),
                Period {
                    from: None,
                    to: Some(NOW),
                },
                false,
                true,
            )],
            false,
        ),
        (
            "store-not-yet",
            vec![m(
                ORGANISER,
                Some(ME),
                Period {
                    from: Some(NOW + 1),
                    to: None,
                },
                false,
                true,
            )],
            false,
        ),
        (
            "retrieve-only",
            vec![m(ORGANISER, Some(ME), Period::always(), true, false)],
            false,
        ),
        (
            "another-producer",
            vec![m(
                ORGANISER,
                Some("org-third"),
                Period::always(),
                true,
                true,
            )],
            false,
        ),
        (
            "no-producer-yet",
            vec![m(ORGANISER, None, Period::always(), true, true)],
            false,
        ),
        (
            "of-another-organiser",
            vec![m("org-third", Some(ME), Period::always(), true, true)],
            false,
        ),
    ]
}

/// R-CONSENT-2: the producer stores straight into the organiser's register — new clinical records
/// only, by a care provider's system, under a mandate in force that names it and lets it store.
/// Never a consent or mandate (that would let it widen its own mandate), a task, a prescription or
/// a dispensation, and never a new version of the organiser's own records.
#[test]
fn a_producer_stores_into_the_organisers_register_only_as_its_mandate_grants() {
    let mut cells = 0;
    for role in ClientRole::ALL {
        for kind in Kind::ALL {
            if !kind.is_patient_data() {
                continue;
            }
            let rtype = match kind {
                Kind::Patient => "Patient",
                Kind::Clinical => "Observation",
                Kind::Prescription => "MedicationRequest",
                Kind::Dispensation => "MedicationDispense",
                Kind::PrescriptionTask => "Task",
                Kind::Consent => "Consent",
                Kind::Provenance => "Provenance",
                Kind::Registry => unreachable!(),
            };
            for interaction in [Interaction::Create, Interaction::Update] {
                for (name, ms, grants_store) in mandates() {
                    let consents = ConsentFacts {
                        informed: true,
                        mandates: ms,
                        ..ConsentFacts::default()
                    };
                    let d = Disclosure {
                        consents: &consents,
                        record: None,
                        centre: CentreAccess::Searched,
                    };
                    let facts = Facts {
                        disclosure: Some(&d),
                        recording: Some(RecorderClaim::None),
                        ..Facts::default()
                    };
                    let got = decide(
                        &client(role, true, Some("TREAT")),
                        &Action::fhir(interaction, rtype),
                        Target::Patient {
                            patient: Some(PatientKey(1)),
                            holder: Some(ORGANISER),
                        },
                        &facts,
                        NOW,
                    );
                    let permitted = role == ClientRole::Clinician
                        && kind == Kind::Clinical
                        && interaction == Interaction::Create
                        && grants_store;
                    let cell = format!("{} {interaction:?} {rtype} mandate={name}", role.as_str());
                    match codes(&got) {
                        Ok(ground) => {
                            assert!(permitted, "{cell}: permitted as {ground}");
                            assert_eq!(ground, "PurchasedService", "{cell}");
                        }
                        Err(why) => assert!(!permitted, "{cell}: refused {why:?}"),
                    }
                    cells += 1;
                }
            }
        }
    }
    assert_eq!(cells, 4 * 7 * 2 * 8);
}
