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

use kanta_domain::access::{
    decide, Action, Client, Facts, Interaction, Kind, Principal, Scopes, Target, View,
};
use kanta_domain::display::{self, Hidden};
use kanta_domain::ids::{ClientRole, OrgId, PatientKey};
use std::collections::BTreeMap;

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
        View::Records => 0,
        View::DisclosureLog => 1,
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
    ];
    for (a, _) in &all {
        match a {
            Action::Fhir { .. }
            | Action::View(_)
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
    assert_eq!(Kind::ALL.len(), 7);
    for (i, x) in Interaction::ALL.iter().enumerate() {
        assert_eq!(interaction_index(*x), i);
    }
    assert_eq!(Interaction::ALL.len(), 6);
    for (i, r) in ClientRole::ALL.iter().enumerate() {
        assert_eq!(role_index(*r), i);
    }
    assert_eq!(ClientRole::ALL.len(), 4);
    for (i, v) in View::ALL.iter().enumerate() {
        assert_eq!(view_index(*v), i);
    }
    assert_eq!(View::ALL.len(), 2);
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
        professional: None,
        purpose: None,
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
        for view in View::ALL {
            let key = format!("{} | view {} | request", role_name(role), view.code());
            out.insert(
                key,
                decide(&p, &Action::View(view), Target::Request, &none, 0).summary(),
            );
        }
    }
    // Citizens.
    let shown = display::Decision::Shown;
    let visit_only = display::Decision::VisitOnly;
    let hidden = display::Decision::Hidden(vec![Hidden::Delayed { until: 1 }, Hidden::OtherPerson]);
    for (who, acting_for) in [
        ("citizen self", None),
        ("citizen acting-for-another", Some(SOMEONE)),
    ] {
        let p = Principal::Citizen {
            person: ME,
            acting_for,
        };
        let own = Target::Patient {
            patient: Some(ME),
            holder: Some(OTHER_ORG),
        };
        let other = Target::Patient {
            patient: Some(SOMEONE),
            holder: Some(OTHER_ORG),
        };
        for view in View::ALL {
            let cases: Vec<(&str, Target<'_>, Facts<'_>)> = vec![
                ("request", Target::Request, Facts::default()),
                (
                    "own shown",
                    own,
                    Facts {
                        display: Some(&shown),
                        ..Facts::default()
                    },
                ),
                (
                    "own visit-only",
                    own,
                    Facts {
                        display: Some(&visit_only),
                        ..Facts::default()
                    },
                ),
                (
                    "own hidden",
                    own,
                    Facts {
                        display: Some(&hidden),
                        ..Facts::default()
                    },
                ),
                ("own no-display-decision", own, Facts::default()),
                (
                    "another-person shown",
                    other,
                    Facts {
                        display: Some(&shown),
                        ..Facts::default()
                    },
                ),
                ("shared", Target::Shared, Facts::default()),
                (
                    "own summary",
                    Target::Summary { patient: ME },
                    Facts::default(),
                ),
                (
                    "another-person summary",
                    Target::Summary { patient: SOMEONE },
                    Facts::default(),
                ),
            ];
            for (tname, target, facts) in cases {
                let key = format!("{who} | view {} | {tname}", view.code());
                out.insert(
                    key,
                    decide(&p, &Action::View(view), target, &facts, 0).summary(),
                );
            }
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
                    decide(&p, &action, Target::Request, &none, 0).summary(),
                );
            }
        }
        for (action, name) in other_actions() {
            let key = format!("{who} | {name} | request");
            out.insert(
                key,
                decide(&p, &action, Target::Request, &none, 0).summary(),
            );
        }
    }
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
    for view in View::ALL {
        let key = format!("identified | view {} | request", view.code());
        out.insert(
            key,
            decide(&p, &Action::View(view), Target::Request, &none, 0).summary(),
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
     # answer: permit:<ground> (what the audit record's basis says) or deny:<reason codes>.\n\
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
