#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The access decision as an exhaustive table: every principal (each client role and none, with
//! and without the SMART scope; a citizen for themselves and acting for another) × every action
//! (each FHIR interaction on each kind of data, the archivist look-up, the operator's functions,
//! each citizen view) × every target that fits (before reading; a record in the caller's own
//! register, in another's, not yet stored; shared data; a summary; for citizens: own records shown,
//! shown as a visit only, hidden, with no display decision, and another person's). The expected
//! answer of every cell is in `access-table.txt`; a cell missing from the file, or a line of the
//! file that names no cell, fails the test.
//!
//! To add rows after adding a rule: `KANTA_BLESS=1 cargo test -p kanta-domain --test access_table`
//! writes the file from the code — then read every changed line in the diff before committing it:
//! the file is the reviewed statement of the rules, not a snapshot to wave through.

use kanta_domain::access::Disclosure;
use kanta_domain::access::{
    decide, Action, Client, Facts, Function, Interaction, Kind, Principal, Scopes, Target, View,
};
use kanta_domain::acting::{
    Acting, FunctionFacts, GivenAt, Guardianship, Mandate, MandateCheck, MinorDisclosure,
    MinorRecord, Standing, SubjectFacts, HEALTH_CARE_ISSUE,
};
use kanta_domain::consent::{CareDomain, CentreAccess, ConsentFacts, Period, RecordFacts};
use kanta_domain::display::{self, Hidden, Section};
use kanta_domain::hetu::Hetu;
use kanta_domain::ids::{ClientRole, OrgId, PatientKey};
use kanta_domain::population::CustodyAgreement;
use std::collections::BTreeMap;
use time::macros::date;
use time::{Date, Duration};

const OWN_ORG: &str = "org-own";
const OTHER_ORG: &str = "org-other";
const ME: PatientKey = PatientKey(1);
const SOMEONE: PatientKey = PatientKey(2);

/// Each enum's variants, checked to be all of them: a new variant fails to compile here until it
/// is given an index, and then fails the length check until it is in `ALL` (and so in the table).
fn kind_index(k: Kind) -> usize {
    match k {
        Kind::Patient => 0,
        Kind::Clinical => 1,
        Kind::Prescription => 2,
        Kind::Dispensation => 3,
        Kind::Consent => 4,
        Kind::Provenance => 5,
        Kind::Registry => 6,
        Kind::PrescriptionTask => 7,
    }
}
fn interaction_index(i: Interaction) -> usize {
    match i {
        Interaction::Read => 0,
        Interaction::Vread => 1,
        Interaction::History => 2,
        Interaction::Search => 3,
        Interaction::Create => 4,
        Interaction::Update => 5,
    }
}
fn role_index(r: ClientRole) -> usize {
    match r {
        ClientRole::Clinician => 0,
        ClientRole::Archivist => 1,
        ClientRole::Pharmacy => 2,
        ClientRole::Operator => 3,
    }
}
fn view_index(v: View) -> usize {
    match v {
        View::Section(s) => Section::ALL
            .iter()
            .position(|x| *x == s)
            .unwrap_or(usize::MAX),
        View::WhatsNew => Section::ALL.len(),
        View::DisclosureLog => Section::ALL.len() + 1,
        View::DataUse => Section::ALL.len() + 2,
    }
}
fn function_index(f: Function) -> usize {
    match f {
        Function::RenewalRequest => 0,
        Function::PrescriptionProhibition => 1,
        Function::AcknowledgeNotice => 2,
        Function::DisclosureProhibition => 3,
        Function::GiveConsent => 4,
        Function::RevokeConsent => 5,
        Function::OrganDonationWill => 6,
        Function::LivingWill => 7,
        Function::WellbeingData => 8,
        Function::ReviewRequest => 9,
    }
}
/// The actions that are not FHIR interactions or views; a new `Action` variant fails to compile
/// here until it is listed.
fn other_actions() -> Vec<(Action, &'static str)> {
    let all = vec![
        (Action::ArchivistLookup, "archivist-lookup"),
        (Action::PopulationImport, "population-import"),
        (Action::AuditExport, "audit-export"),
        (Action::Login, "login"),
        (Action::ActFor, "act-for"),
    ];
    for (a, _) in &all {
        match a {
            Action::Fhir { .. }
            | Action::View(_)
            | Action::Manage(_)
            | Action::ActFor
            | Action::ArchivistLookup
            | Action::PopulationImport
            | Action::AuditExport
            | Action::Login => {}
        }
    }
    all
}

#[test]
fn the_enums_are_listed_whole() {
    for (i, k) in Kind::ALL.iter().enumerate() {
        assert_eq!(kind_index(*k), i);
    }
    assert_eq!(Kind::ALL.len(), 8);
    for (i, x) in Interaction::ALL.iter().enumerate() {
        assert_eq!(interaction_index(*x), i);
    }
    assert_eq!(Interaction::ALL.len(), 6);
    for (i, r) in ClientRole::ALL.iter().enumerate() {
        assert_eq!(role_index(*r), i);
    }
    assert_eq!(ClientRole::ALL.len(), 4);
    for (i, v) in View::all().iter().enumerate() {
        assert_eq!(view_index(*v), i);
    }
    assert_eq!(View::all().len(), Section::ALL.len() + 3);
    for (i, f) in Function::ALL.iter().enumerate() {
        assert_eq!(function_index(*f), i);
    }
    assert_eq!(Function::ALL.len(), 10);
}

/// A resource type of each kind, for the FHIR rows.
fn type_of(k: Kind) -> &'static str {
    match k {
        Kind::Patient => "Patient",
        Kind::Clinical => "Condition",
        Kind::Prescription => "MedicationRequest",
        Kind::Dispensation => "MedicationDispense",
        Kind::Consent => "Consent",
        Kind::Provenance => "Provenance",
        Kind::Registry => "Organization",
        Kind::PrescriptionTask => "Task",
    }
}

fn client(role: Option<ClientRole>, scoped: bool, rtype: &str) -> Principal {
    // Without the scope: a grant for another type only.
    let other = if rtype == "Observation" {
        "Patient"
    } else {
        "Observation"
    };
    let scopes = if scoped {
        Scopes::parse(&format!("system/{rtype}.cruds")).unwrap()
    } else {
        Scopes::parse(&format!("system/{other}.cruds")).unwrap()
    };
    Principal::Client(Client {
        client_id: "c".into(),
        org: OrgId::new(OWN_ORG),
        roles: role.into_iter().collect(),
        scopes,
        // A professional named, for care: the disclosure rule's own dimensions are in
        // `disclosure_table.rs`.
        professional: Some("p1".into()),
        purpose: Some("TREAT".into()),
        emergency_reason: None,
    })
}

fn role_name(r: Option<ClientRole>) -> &'static str {
    r.map_or("no-role", ClientRole::as_str)
}

/// Targets of patient data and of shared data, by name.
fn targets(patient_data: bool) -> Vec<(&'static str, Target<'static>)> {
    let mut t = vec![("request", Target::Request)];
    if patient_data {
        t.push((
            "own-register",
            Target::Patient {
                patient: Some(ME),
                holder: Some(OWN_ORG),
            },
        ));
        t.push((
            "other-register",
            Target::Patient {
                patient: Some(ME),
                holder: Some(OTHER_ORG),
            },
        ));
        t.push((
            "not-stored",
            Target::Patient {
                patient: Some(ME),
                holder: None,
            },
        ));
    } else {
        t.push(("shared", Target::Shared));
    }
    t
}

/// Every cell: `principal | action | target` → the decision's summary.
fn cells() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let none = Facts::default();
    // For another register's records: the patient informed, a health-care consent in force, no
    // prohibitions; the record in the other organisation's public register.
    let consents = ConsentFacts {
        informed: true,
        consents: vec![(CareDomain::Health, Period::always())],
        ..ConsentFacts::default()
    };
    let disclosure = Disclosure {
        consents: &consents,
        record: Some(RecordFacts {
            holder: OTHER_ORG,
            register: Some("2"),
            service_event: None,
            self_ref: None,
            unreadable: false,
            domain: CareDomain::Health,
        }),
        centre: CentreAccess::Presented,
    };
    // A write's body names no recorder (as most systems send it: the server stamps the care unit);
    // every other claim is a row of `recording_table.rs`.
    let consented = Facts {
        disclosure: Some(&disclosure),
        recording: Some(kanta_domain::consent::RecorderClaim::None),
        ..Facts::default()
    };
    let roles: Vec<Option<ClientRole>> = std::iter::once(None)
        .chain(ClientRole::ALL.iter().copied().map(Some))
        .collect();
    for &role in &roles {
        for scoped in [true, false] {
            let who = format!(
                "{} {}",
                role_name(role),
                if scoped { "scoped" } else { "unscoped" }
            );
            for kind in Kind::ALL {
                let rtype = type_of(kind);
                let p = client(role, scoped, rtype);
                for interaction in Interaction::ALL {
                    let action = Action::fhir(interaction, rtype);
                    for (tname, target) in targets(kind.is_patient_data()) {
                        let key = format!(
                            "{who} | fhir {} {rtype} ({}) | {tname}",
                            interaction.code(),
                            kind.code()
                        );
                        out.insert(key, decide(&p, &action, target, &consented, 0).summary());
                    }
                    // Without the consent facts another register's record is refused.
                    if kind.is_patient_data() && !interaction.is_write() {
                        let target = Target::Patient {
                            patient: Some(ME),
                            holder: Some(OTHER_ORG),
                        };
                        let key = format!(
                            "{who} | fhir {} {rtype} ({}) | other-register-no-consent-facts",
                            interaction.code(),
                            kind.code()
                        );
                        out.insert(key, decide(&p, &action, target, &none, 0).summary());
                    }
                }
            }
        }
        // Scopes are for FHIR interactions only.
        let p = client(role, true, "Patient");
        for (action, name) in other_actions() {
            for (tname, target) in targets(true) {
                let key = format!("{} | {name} | {tname}", role_name(role));
                out.insert(key, decide(&p, &action, target, &none, 0).summary());
            }
        }
        for f in Function::ALL {
            let key = format!("{} | manage {} | request", role_name(role), f.code());
            out.insert(
                key,
                decide(&p, &Action::Manage(f), Target::Request, &none, 0).summary(),
            );
        }
        for view in View::all() {
            let key = format!("{} | view {} | request", role_name(role), view.code());
            out.insert(
                key,
                decide(&p, &Action::View(view), Target::Request, &none, 0).summary(),
            );
        }
    }
    citizen_cells(&mut out);
    // A person just identified, before any session: login by the register's facts (R-AUTH-2).
    let p = Principal::Identified;
    for (in_register, deceased, named) in [
        (true, false, false),
        (true, false, true),
        (true, true, true),
        (false, false, true),
        (false, false, false),
        (false, true, true),
    ] {
        let facts = kanta_domain::access::PersonFacts {
            in_register,
            deceased,
            named_by_identification: named,
        };
        let key = format!(
            "identified | login | register={} deceased={deceased} named-by-identification={named}",
            if in_register { "knows" } else { "unknown" },
        );
        let f = Facts {
            person: Some(&facts),
            ..Facts::default()
        };
        out.insert(
            key,
            decide(&p, &Action::Login, Target::Request, &f, 0).summary(),
        );
    }
    out.insert(
        "identified | login | no-register-facts".into(),
        decide(&p, &Action::Login, Target::Request, &none, 0).summary(),
    );
    for kind in Kind::ALL {
        for interaction in Interaction::ALL {
            let action = Action::fhir(interaction, type_of(kind));
            let key = format!(
                "identified | fhir {} {} ({}) | request",
                interaction.code(),
                type_of(kind),
                kind.code()
            );
            out.insert(
                key,
                decide(&p, &action, Target::Request, &none, 0).summary(),
            );
        }
    }
    for view in View::all() {
        let key = format!("identified | view {} | request", view.code());
        out.insert(
            key,
            decide(&p, &Action::View(view), Target::Request, &none, 0).summary(),
        );
    }
    for f in Function::ALL {
        let key = format!("identified | manage {} | request", f.code());
        out.insert(
            key,
            decide(&p, &Action::Manage(f), Target::Request, &none, 0).summary(),
        );
    }
    for (action, name) in other_actions() {
        if action == Action::Login {
            continue;
        }
        let key = format!("identified | {name} | request");
        out.insert(
            key,
            decide(&p, &action, Target::Request, &none, 0).summary(),
        );
    }
    out
}

const TABLE: &str = "tests/access-table.txt";

fn header() -> &'static str {
    "# The access decision, cell by cell: `principal | action | target -> answer`.\n\
     # principal: a client role (or no-role), scoped = its token grants the type's scope; or a citizen.\n\
     # target: request = before anything is read; own-register / other-register = a stored record held\n\
     # by the caller's organisation / another; not-stored = a new resource; shared = registry data.\n\
     # A client names a professional and the purpose TREAT; for other-register the patient is informed,\n\
     # has a health-care disclosure consent and no prohibitions (every other state: disclosure-table.txt);\n\
     # other-register-no-consent-facts = the consents could not be read (fails closed).\n\
     # answer: permit:<ground> (what the audit record's basis says) or deny:<reason codes>.\n\
     # Citizens: `citizen self <age>` for themselves; `citizen acting-for <standing> | <subject>` for\n\
     # another (guardian, right-to-information, guardian-of-interests, proxy with a mandate in a\n\
     # state, unrelated); act-for = the switch; view = each section, what is new, the disclosure log;\n\
     # manage = each R-ACT function; `citizen guardian | ... child-14's record` = R-MINOR-3/4 by the\n\
     # child's age at the visit and its disclosure code. Choices where the seeds leave a cell open:\n\
     # - guardian-of-interests: cannot act in MyKanta through the register (research/mission.md 1.8,\n\
     #   Kela's release: guardians of interests could not act); they use a mandate like anyone.\n\
     # - born 29 February: 18 on 28 February of a common year (Act 150/1930 s. 4, by analogy).\n\
     # - a coded custody agreement governs even over a mutual authorisation (R-MINOR-8: it governs);\n\
     #   an uncoded one is overcome by the mutual authorisation (seed 000 6.1.2).\n\
     # - a right-holder is blocked by a marker on the child or on themselves (R-MINOR-2).\n\
     # - a code recorded at a visit before age 10 is honoured (3 and 4 hide it; R-MINOR-4 at any age).\n\
     # - a proxy may give a consent but not revoke one (R-ACT-5: \"may give on principal's behalf\").\n\
     # Read by crates/kanta-domain/tests/access_table.rs; every cell must be here, and nothing else.\n"
}

#[test]
fn every_cell_has_its_expected_answer() {
    let cells = cells();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(TABLE);
    if std::env::var_os("KANTA_BLESS").is_some() {
        let mut text = header().to_string();
        for (k, v) in &cells {
            text.push_str(&format!("{k} -> {v}\n"));
        }
        std::fs::write(&path, text).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let mut expected = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .rsplit_once(" -> ")
            .unwrap_or_else(|| panic!("{TABLE}:{}: no ' -> '", n + 1));
        assert!(
            expected.insert(k.to_string(), v.to_string()).is_none(),
            "{TABLE}:{}: the cell '{k}' twice",
            n + 1
        );
    }
    let mut problems = vec![];
    for (k, got) in &cells {
        match expected.get(k) {
            None => problems.push(format!("missing cell: {k} (the code says {got})")),
            Some(want) if want != got => {
                problems.push(format!("{k}: the table says {want}, the code says {got}"))
            }
            Some(_) => {}
        }
    }
    for k in expected.keys() {
        if !cells.contains_key(k) {
            problems.push(format!("the table names a cell that does not exist: {k}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The rules the issue names, spelled out (the table holds them too; these say why).
#[test]
fn the_reviewed_findings_are_refused() {
    let none = Facts::default();
    let other = Target::Patient {
        patient: Some(ME),
        holder: Some(OTHER_ORG),
    };
    let clinician = client(Some(ClientRole::Clinician), true, "Observation");
    // 1. A new version of another organisation's document.
    let d = decide(
        &clinician,
        &Action::fhir(Interaction::Update, "Observation"),
        other,
        &none,
        0,
    );
    assert_eq!(d.summary(), "deny:other-register");
    // 2. Another organisation's Organization (shared registry data).
    let clinician = client(Some(ClientRole::Clinician), true, "Organization");
    let d = decide(
        &clinician,
        &Action::fhir(Interaction::Update, "Organization"),
        Target::Shared,
        &none,
        0,
    );
    assert_eq!(d.summary(), "deny:registry-is-operators");
    // 3. The operator reads no clinical data; the archivist uses its view only; a pharmacy writes
    //    no diagnoses.
    let operator = client(Some(ClientRole::Operator), true, "Observation");
    let d = decide(
        &operator,
        &Action::fhir(Interaction::Search, "Observation"),
        Target::Request,
        &none,
        0,
    );
    assert_eq!(d.summary(), "deny:operator-no-patient-data");
    let archivist = client(Some(ClientRole::Archivist), true, "Observation");
    let d = decide(
        &archivist,
        &Action::fhir(Interaction::Read, "Observation"),
        Target::Request,
        &none,
        0,
    );
    assert_eq!(d.summary(), "deny:archivist-view-only");
    let pharmacy = client(Some(ClientRole::Pharmacy), true, "Condition");
    let d = decide(
        &pharmacy,
        &Action::fhir(Interaction::Create, "Condition"),
        Target::Request,
        &none,
        0,
    );
    assert_eq!(d.summary(), "deny:role-may-not");
    // 5. A token for Patient.read does not create an Observation.
    let reader = Principal::Client(Client {
        scopes: Scopes::parse("system/Patient.read").unwrap(),
        ..match client(Some(ClientRole::Clinician), true, "Patient") {
            Principal::Client(c) => c,
            Principal::Citizen { .. } | Principal::Identified => unreachable!(),
        }
    });
    let d = decide(
        &reader,
        &Action::fhir(Interaction::Create, "Observation"),
        Target::Request,
        &none,
        0,
    );
    assert_eq!(d.summary(), "deny:scope-not-granted");
}

// ------------------------------------------------------------------------------------------------
// Citizens: for themselves (adult, minor), and acting for another (R-MINOR, R-PROXY, R-ACT).

/// The Finnish day the citizen rows are decided on, and an instant on it.
const TODAY: Date = date!(2026 - 12 - 02);
const NOW_MS: i64 = 1_796_198_400_000; // 2026-12-02 10:00 Helsinki (08:00 UTC)

/// Born `years` years before TODAY (on the same day of the year), `days` days earlier still.
fn born(years: i32, days: i64) -> Date {
    Date::from_calendar_date(TODAY.year() - years, TODAY.month(), TODAY.day()).unwrap()
        - Duration::days(days)
}

fn subject(born: Date, deceased: bool, non_disclosure: bool) -> SubjectFacts {
    SubjectFacts {
        born,
        deceased,
        non_disclosure,
    }
}

/// The subjects of the acting rows: (name, facts, the Finnish day "today" is).
fn subjects() -> Vec<(&'static str, SubjectFacts, Date)> {
    vec![
        ("adult", subject(born(40, 10), false, false), TODAY),
        ("child-5", subject(born(5, 100), false, false), TODAY),
        ("child-14", subject(born(14, 100), false, false), TODAY),
        (
            "child-turning-10-today",
            subject(born(10, 0), false, false),
            TODAY,
        ),
        (
            "child-turning-18-today",
            subject(born(18, 0), false, false),
            TODAY,
        ),
        (
            "child-turning-18-tomorrow",
            subject(born(18, -1), false, false),
            TODAY,
        ),
        // Born 29 February 2008: 18 on 28 February 2026 (the choice in kanta_domain::acting).
        (
            "child-born-29-february-on-27-february",
            subject(date!(2008 - 02 - 29), false, false),
            date!(2026 - 02 - 27),
        ),
        (
            "child-born-29-february-on-28-february",
            subject(date!(2008 - 02 - 29), false, false),
            date!(2026 - 02 - 28),
        ),
        ("child-deceased", subject(born(14, 100), true, false), TODAY),
        (
            "child-with-non-disclosure-marker",
            subject(born(14, 100), false, true),
            TODAY,
        ),
        ("adult-deceased", subject(born(40, 10), true, false), TODAY),
        (
            "adult-with-non-disclosure-marker",
            subject(born(40, 10), false, true),
            TODAY,
        ),
    ]
}

fn guardian(custody: Option<CustodyAgreement>, mutual: bool, marker: bool) -> Standing {
    Standing::Guardian(Guardianship {
        custody,
        mutual_authorisation: mutual,
        holder_non_disclosure: marker,
    })
}

/// A mandate of the delegate for the principal, in the state named; `None`: none asked for.
fn mandate_check(state: &str) -> MandateCheck {
    let principal = Hetu::from_parts(date!(1950 - 01 - 01), '-', 903).unwrap();
    let delegate = Hetu::from_parts(date!(1980 - 01 - 01), '-', 902).unwrap();
    let hour = 3_600_000;
    let m = Mandate {
        id: "m".into(),
        principal: principal.clone(),
        delegate: delegate.clone(),
        issue: HEALTH_CARE_ISSUE.into(),
        valid_from: NOW_MS - 24 * hour,
        valid_to: NOW_MS + 24 * hour,
        revoked_at: None,
        given_at: GivenAt::Online,
    };
    let m = match state {
        "valid" => m,
        "given-at-a-service-point" => Mandate {
            given_at: GivenAt::ServicePoint,
            ..m
        },
        // Ends exactly at its valid-to time (R-PROXY-3).
        "ended-this-instant" => Mandate {
            valid_to: NOW_MS,
            ..m
        },
        "expired" => Mandate {
            valid_to: NOW_MS - hour,
            ..m
        },
        "revoked" => Mandate {
            revoked_at: Some(NOW_MS - 1),
            ..m
        },
        "not-yet-valid" => Mandate {
            valid_from: NOW_MS + 1,
            ..m
        },
        "another-issue" => Mandate {
            issue: "http://valtuusrekisteri.suomi.fi/verotus".into(),
            ..m
        },
        "none" => return MandateCheck::Disallowed,
        "mandate-service-down" => return MandateCheck::Unavailable,
        other => panic!("no mandate state {other}"),
    };
    if m.allows(&delegate, &principal, HEALTH_CARE_ISSUE, NOW_MS) {
        MandateCheck::Allowed
    } else {
        MandateCheck::Disallowed
    }
}

/// The standings of the acting rows (name, standing; `None`: no acting facts given).
fn standings() -> Vec<(String, Option<Standing>)> {
    let coded = Some;
    let mut out: Vec<(String, Option<Standing>)> = vec![
        ("guardian".into(), Some(guardian(None, false, false))),
        (
            "guardian custody=joint".into(),
            Some(guardian(coded(CustodyAgreement::Joint), false, false)),
        ),
        (
            "guardian custody=health-care-this-guardian".into(),
            Some(guardian(
                coded(CustodyAgreement::HealthCareThisGuardian),
                false,
                false,
            )),
        ),
        (
            "guardian custody=health-care-other-guardian".into(),
            Some(guardian(
                coded(CustodyAgreement::HealthCareOtherGuardian),
                false,
                false,
            )),
        ),
        (
            "guardian custody=health-care-other-guardian mutual-authorisation".into(),
            Some(guardian(
                coded(CustodyAgreement::HealthCareOtherGuardian),
                true,
                false,
            )),
        ),
        (
            "guardian custody=uncoded".into(),
            Some(guardian(Some(CustodyAgreement::Uncoded), false, false)),
        ),
        (
            "guardian custody=uncoded mutual-authorisation".into(),
            Some(guardian(Some(CustodyAgreement::Uncoded), true, false)),
        ),
        (
            "guardian with-non-disclosure-marker".into(),
            Some(guardian(None, false, true)),
        ),
        (
            "guardian with-non-disclosure-marker mutual-authorisation".into(),
            Some(guardian(None, true, true)),
        ),
        (
            "right-to-information".into(),
            Some(Standing::RightToInformation {
                holder_non_disclosure: false,
            }),
        ),
        (
            "right-to-information with-non-disclosure-marker".into(),
            Some(Standing::RightToInformation {
                holder_non_disclosure: true,
            }),
        ),
        (
            "guardian-of-interests".into(),
            Some(Standing::GuardianOfInterests),
        ),
        ("unrelated".into(), Some(Standing::Unrelated)),
        ("no-acting-facts".into(), None),
    ];
    for state in [
        "valid",
        "given-at-a-service-point",
        "ended-this-instant",
        "expired",
        "revoked",
        "not-yet-valid",
        "another-issue",
        "none",
        "mandate-service-down",
    ] {
        out.push((
            format!("proxy mandate={state}"),
            Some(Standing::Proxy(mandate_check(state))),
        ));
    }
    out
}

/// The subject each standing's function and record rows use: a 14-year-old for guardians and
/// right-holders, an adult for the others.
fn usual_subject(standing: Option<Standing>) -> &'static str {
    match standing {
        Some(Standing::Guardian(_) | Standing::RightToInformation { .. }) => "child-14",
        Some(
            Standing::Own
            | Standing::GuardianOfInterests
            | Standing::Proxy(_)
            | Standing::Unrelated,
        )
        | None => "adult",
    }
}

/// The function rows' fact variants: (name, facts).
fn function_facts(f: Function) -> Vec<(&'static str, Option<FunctionFacts>)> {
    match f {
        Function::AcknowledgeNotice => vec![
            ("", None),
            (
                " notice-received-in-care principal-acknowledged",
                Some(FunctionFacts {
                    notice_received_in_care: Some(true),
                    notice_acknowledged_by_principal: Some(true),
                    consent_given_by_actor: None,
                }),
            ),
            (
                " notice-not-received-in-care principal-not-acknowledged",
                Some(FunctionFacts {
                    notice_received_in_care: Some(false),
                    notice_acknowledged_by_principal: Some(false),
                    consent_given_by_actor: None,
                }),
            ),
        ],
        Function::RevokeConsent => vec![
            ("", None),
            (
                " consent-given-by-actor",
                Some(FunctionFacts {
                    consent_given_by_actor: Some(true),
                    ..FunctionFacts::default()
                }),
            ),
            (
                " consent-given-by-another",
                Some(FunctionFacts {
                    consent_given_by_actor: Some(false),
                    ..FunctionFacts::default()
                }),
            ),
        ],
        Function::RenewalRequest
        | Function::ReviewRequest
        | Function::PrescriptionProhibition
        | Function::DisclosureProhibition
        | Function::GiveConsent
        | Function::OrganDonationWill
        | Function::LivingWill
        | Function::WellbeingData => vec![("", None)],
    }
}

/// The record rows' minor facts: (name, facts) — the child's age at the visit and its code.
fn minor_records(child_born: Date) -> Vec<(String, Option<MinorRecord>)> {
    let mut out = vec![("no-minor-facts".to_string(), None)];
    let at_9 = child_born + Duration::days(9 * 365 + 100);
    let at_10 =
        Date::from_calendar_date(child_born.year() + 10, child_born.month(), child_born.day())
            .unwrap();
    let at_12 = child_born + Duration::days(12 * 365 + 100);
    for (age, on) in [
        ("aged-9", at_9),
        ("aged-10-that-day", at_10),
        ("day-before-10", at_10 - Duration::days(1)),
        ("aged-12", at_12),
    ] {
        out.push((
            format!("visit {age} code=none"),
            Some(MinorRecord {
                on,
                disclosure: None,
            }),
        ));
        for d in MinorDisclosure::ALL {
            out.push((
                format!("visit {age} code={}", d.code()),
                Some(MinorRecord {
                    on,
                    disclosure: Some(d),
                }),
            ));
        }
    }
    out
}

fn citizen_cells(out: &mut BTreeMap<String, String>) {
    let none = Facts::default();
    let subjects = subjects();
    let find = |name: &str| {
        subjects
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, s, t)| (*s, *t))
            .unwrap()
    };
    let shown = display::Decision::Shown;
    let visit_only = display::Decision::VisitOnly;
    let hidden = display::Decision::Hidden(vec![Hidden::Delayed { until: 1 }, Hidden::OtherPerson]);
    let other_record = Target::Patient {
        patient: Some(SOMEONE),
        holder: Some(OTHER_ORG),
    };
    let third = PatientKey(3);

    // 1. Acting for another: may the switch be made, for each standing and each subject?
    let actor = Principal::Citizen {
        person: ME,
        acting_for: Some(SOMEONE),
    };
    for (sname, standing) in standings() {
        for (subj, facts, today) in &subjects {
            let acting = standing.map(|standing| Acting {
                standing,
                subject: *facts,
                today: *today,
            });
            let f = Facts {
                acting: acting.as_ref(),
                ..Facts::default()
            };
            let key = format!("citizen acting-for {sname} | act-for | {subj}");
            let d = decide(
                &actor,
                &Action::ActFor,
                Target::Summary { patient: SOMEONE },
                &f,
                NOW_MS,
            );
            out.insert(key, d.summary());
        }
    }

    // 2. Every view and every function, for each standing and its usual subject.
    let mut principals: Vec<(String, Principal, Option<Acting>)> = vec![];
    for (sname, standing) in standings() {
        let (facts, today) = find(usual_subject(standing));
        let acting = standing.map(|standing| Acting {
            standing,
            subject: facts,
            today,
        });
        principals.push((
            format!("citizen acting-for {sname} | {}", usual_subject(standing)),
            actor.clone(),
            acting,
        ));
    }
    let me = Principal::Citizen {
        person: ME,
        acting_for: None,
    };
    for (name, years) in [("adult", 40), ("minor-15", 15), ("minor-16", 16)] {
        principals.push((
            format!("citizen self {name} | own"),
            me.clone(),
            Some(Acting {
                standing: Standing::Own,
                subject: subject(born(years, 30), false, false),
                today: TODAY,
            }),
        ));
    }
    principals.push((
        "citizen self no-acting-facts | own".into(),
        me.clone(),
        None,
    ));
    // Acting for oneself names oneself: `acting_for: Some(ME)` is the same as none.
    principals.push((
        "citizen self acting-for-self | own".into(),
        Principal::Citizen {
            person: ME,
            acting_for: Some(ME),
        },
        None,
    ));
    for (who, p, acting) in &principals {
        let whose = match p {
            Principal::Citizen {
                acting_for: Some(a),
                ..
            } => *a,
            Principal::Citizen { person, .. } => *person,
            Principal::Client(_) | Principal::Identified => unreachable!(),
        };
        let theirs = Target::Patient {
            patient: Some(whose),
            holder: Some(OTHER_ORG),
        };
        let not_theirs = Target::Patient {
            patient: Some(third),
            holder: Some(OTHER_ORG),
        };
        let base = Facts {
            acting: acting.as_ref(),
            ..Facts::default()
        };
        // A record shown by the display rules, and, for a child, from a visit at age 5 without a
        // code (shown to guardians).
        let child_visit = acting.map(|a| MinorRecord {
            on: a.subject.born + Duration::days(5 * 365),
            disclosure: None,
        });
        for view in View::all() {
            let cases: Vec<(&str, Target<'_>, Option<&display::Decision>)> = vec![
                ("request", Target::Request, None),
                ("record shown", theirs, Some(&shown)),
                ("record visit-only", theirs, Some(&visit_only)),
                ("record hidden", theirs, Some(&hidden)),
                ("record no-display-decision", theirs, None),
                ("another-person's record", not_theirs, Some(&shown)),
                ("shared", Target::Shared, None),
                ("summary", Target::Summary { patient: whose }, None),
                (
                    "another-person's summary",
                    Target::Summary { patient: third },
                    None,
                ),
            ];
            for (tname, target, display) in cases {
                let f = Facts {
                    display,
                    minor: child_visit.as_ref(),
                    ..base
                };
                let key = format!("{who} | view {} | {tname}", view.code());
                out.insert(
                    key,
                    decide(p, &Action::View(view), target, &f, NOW_MS).summary(),
                );
            }
        }
        for func in Function::ALL {
            for (fname, ff) in function_facts(func) {
                let f = Facts {
                    function: ff.as_ref(),
                    ..base
                };
                let key = format!("{who} | manage {}{fname} | summary", func.code());
                out.insert(
                    key,
                    decide(
                        p,
                        &Action::Manage(func),
                        Target::Summary { patient: whose },
                        &f,
                        NOW_MS,
                    )
                    .summary(),
                );
            }
        }
        // Back to oneself, and a switch naming nobody it may act for.
        for (tname, target) in [
            ("own summary", Target::Summary { patient: ME }),
            (
                "another-person's summary",
                Target::Summary { patient: third },
            ),
        ] {
            let key = format!("{who} | act-for | {tname}");
            out.insert(
                key,
                decide(p, &Action::ActFor, target, &base, NOW_MS).summary(),
            );
        }
        for kind in Kind::ALL {
            for interaction in Interaction::ALL {
                let action = Action::fhir(interaction, type_of(kind));
                let key = format!(
                    "{who} | fhir {} {} ({}) | request",
                    interaction.code(),
                    type_of(kind),
                    kind.code()
                );
                out.insert(
                    key,
                    decide(p, &action, Target::Request, &base, NOW_MS).summary(),
                );
            }
        }
        for (action, name) in other_actions() {
            if action == Action::ActFor {
                continue;
            }
            let key = format!("{who} | {name} | request");
            out.insert(
                key,
                decide(p, &action, Target::Request, &base, NOW_MS).summary(),
            );
        }
    }

    // 3. A child's records by the child's age at the visit and the code recorded there
    //    (R-MINOR-3, R-MINOR-4), for guardians, right-holders, and (where it does not apply) a
    //    proxy and the child's own view.
    let (child, today) = find("child-14");
    for (sname, standing) in [
        ("guardian", guardian(None, false, false)),
        (
            "right-to-information",
            Standing::RightToInformation {
                holder_non_disclosure: false,
            },
        ),
        ("child-self", Standing::Own),
    ] {
        let p = match standing {
            Standing::Own => Principal::Citizen {
                person: SOMEONE,
                acting_for: None,
            },
            _ => actor.clone(),
        };
        let acting = Acting {
            standing,
            subject: child,
            today,
        };
        let record = Target::Patient {
            patient: Some(SOMEONE),
            holder: Some(OTHER_ORG),
        };
        for (mname, minor) in minor_records(child.born) {
            for (dname, display) in [("shown", &shown), ("hidden", &hidden)] {
                let f = Facts {
                    acting: Some(&acting),
                    minor: minor.as_ref(),
                    display: Some(display),
                    ..Facts::default()
                };
                let key = format!(
                    "citizen {sname} | view section-visits | child-14's record {dname} {mname}"
                );
                let d = decide(
                    &p,
                    &Action::View(View::Section(Section::Visits)),
                    record,
                    &f,
                    NOW_MS,
                );
                out.insert(key, d.summary());
            }
        }
    }
    // A proxy's view of the principal's records is the principal's own (no minor rule).
    let (adult, _) = find("adult");
    let acting = Acting {
        standing: Standing::Proxy(MandateCheck::Allowed),
        subject: adult,
        today: TODAY,
    };
    for (dname, display) in [("shown", &shown), ("hidden", &hidden)] {
        let f = Facts {
            acting: Some(&acting),
            display: Some(display),
            ..Facts::default()
        };
        out.insert(
            format!("citizen acting-for proxy mandate=valid | view section-visits | adult's record {dname}"),
            decide(
                &actor,
                &Action::View(View::Section(Section::Visits)),
                other_record,
                &f,
                NOW_MS,
            )
            .summary(),
        );
    }
    let _ = none;
}
