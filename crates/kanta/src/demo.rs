//! The demo: a synthetic Finnish population with valid test-range HETUs (individual numbers
//! 900–999), their organisations and API clients, and realistic records written as FHIR
//! transaction Bundles. Everything is a pure function of `today`, so ages stay right and the demo
//! is the same on every machine.
//!
//! National view codes other than 166 (Diagnoosit) are placeholders named after the views
//! (`YLE`, `HOI`, …) and must be checked against the national code server before any real use.

use kanta_domain::hetu::Hetu;
use serde_json::{json, Value};
use time::{Date, Duration};

/// The demo medicines database (R-RX-3), written by the project: fictional makers, realistic
/// products, substitution groups and prices; the format of docs/medicines-database.md.
pub const MEDICINES: &str = include_str!("../data/medicines-demo.csv");

pub struct DemoPerson {
    pub hetu: String,
    pub name: String,
    pub given: String,
    pub family: String,
    pub birth_date: Date,
    pub situation: String,
}

pub struct DemoClient {
    pub client_id: String,
    pub client_secret: String,
    pub organisation: String,
    pub organisation_name: String,
    pub roles: Vec<String>,
}

pub struct DemoSubmission {
    pub client_id: String,
    pub bundle: Value,
}

/// One demo person: (key, given, family, age in years, extra days, sign, individual number, gender, situation).
struct P {
    key: &'static str,
    given: &'static str,
    family: &'static str,
    years: i32,
    days: i64,
    sign_1900: char,
    sign_2000: char,
    number: u16,
    gender: &'static str,
    non_disclosure: bool,
    deceased_days_ago: Option<i64>,
    situation: &'static str,
}

const PEOPLE: &[P] = &[
    P { key: "aino", given: "Aino", family: "Virtanen", years: 40, days: 31, sign_1900: 'Y', sign_2000: 'B', number: 902, gender: "female", non_disclosure: false, deceased_days_ago: None, situation: "adult; joint guardian of Eetu (7) and Sanni (14) under a coded joint-custody agreement" },
    P { key: "mikko", given: "Mikko", family: "Virtanen", years: 42, days: 100, sign_1900: '-', sign_2000: 'A', number: 903, gender: "male", non_disclosure: false, deceased_days_ago: None, situation: "adult; joint guardian of Eetu and Sanni; occupational health visits (the first, from before that provider joined Kanta, is not shown: R-VIEW-8)" },
    P { key: "eetu", given: "Eetu", family: "Virtanen", years: 7, days: 45, sign_1900: '-', sign_2000: 'A', number: 905, gender: "male", non_disclosure: false, deceased_days_ago: None, situation: "child under 10; guardians Aino and Mikko see his data" },
    P { key: "sanni", given: "Sanni", family: "Virtanen", years: 14, days: 200, sign_1900: '-', sign_2000: 'B', number: 904, gender: "female", non_disclosure: false, deceased_days_ago: None, situation: "child 10-17; visits recorded with each minor's-disclosure code (1 no capacity, 2 allows, 3 forbids, 4 unknown) and one from a non-updated system" },
    P { key: "pekka", given: "Pekka", family: "Nieminen", years: 45, days: 12, sign_1900: 'X', sign_2000: 'C', number: 907, gender: "male", non_disclosure: false, deceased_days_ago: None, situation: "adult; sole guardian of Lotta (12): sees her visit at 8, not the one at 11 (no disclosure code)" },
    P { key: "lotta", given: "Lotta", family: "Nieminen", years: 12, days: 80, sign_1900: '-', sign_2000: 'A', number: 906, gender: "female", non_disclosure: false, deceased_days_ago: None, situation: "child 10-17 without disclosure codes on her visits; sole guardian Pekka, right to information Leena" },
    P { key: "leena", given: "Leena", family: "Mäkelä", years: 43, days: 300, sign_1900: 'W', sign_2000: 'D', number: 908, gender: "female", non_disclosure: false, deceased_days_ago: None, situation: "adult; right to information about Lotta (non-custodial parent): sees, cannot act" },
    P { key: "kaisa", given: "Kaisa", family: "Korhonen", years: 34, days: 20, sign_1900: '-', sign_2000: 'A', number: 910, gender: "female", non_disclosure: true, deceased_days_ago: None, situation: "adult with a non-disclosure marker (turvakielto); guardian of Onni (5): cannot act for him until she confirms the mutual authorisation Ville proposed (mandate service page)" },
    P { key: "ville", given: "Ville", family: "Korhonen", years: 36, days: 70, sign_1900: '-', sign_2000: 'A', number: 919, gender: "male", non_disclosure: false, deceased_days_ago: None, situation: "adult; guardian of Onni: acts for him; has proposed a mutual authorisation to Kaisa" },
    P { key: "onni", given: "Onni", family: "Korhonen", years: 5, days: 150, sign_1900: '-', sign_2000: 'A', number: 911, gender: "male", non_disclosure: false, deceased_days_ago: None, situation: "child under 10; guardians Ville (acts) and Kaisa (non-disclosure marker: only with the mutual authorisation)" },
    P { key: "johan", given: "Johan", family: "Lindholm", years: 39, days: 222, sign_1900: 'V', sign_2000: 'E', number: 913, gender: "male", non_disclosure: true, deceased_days_ago: None, situation: "adult (Swedish-speaking); guardian of Elsa (9), who has a non-disclosure marker" },
    P { key: "elsa", given: "Elsa", family: "Lindholm", years: 9, days: 10, sign_1900: '-', sign_2000: 'A', number: 912, gender: "female", non_disclosure: true, deceased_days_ago: None, situation: "child under 10 with a non-disclosure marker: guardians cannot act for her in MyKanta" },
    P { key: "matti", given: "Matti", family: "Järvinen", years: 84, days: 60, sign_1900: '-', sign_2000: 'A', number: 915, gender: "male", non_disclosure: false, deceased_days_ago: None, situation: "elderly adult without eID: gave his daughter Hanna a health-care mandate at a service point; Antti's mandate has expired; guardian of interests Ritva cannot act in MyKanta" },
    P { key: "hanna", given: "Hanna", family: "Järvinen", years: 52, days: 5, sign_1900: 'U', sign_2000: 'F', number: 914, gender: "female", non_disclosure: false, deceased_days_ago: None, situation: "adult; proxy for her father Matti (mandate service): sees his records, not his disclosure log" },
    P { key: "ritva", given: "Ritva", family: "Salonen", years: 61, days: 99, sign_1900: '-', sign_2000: 'A', number: 916, gender: "female", non_disclosure: false, deceased_days_ago: None, situation: "adult; guardian of interests (edunvalvoja) of Matti: refused in MyKanta (needs a mandate)" },
    P { key: "veikko", given: "Veikko", family: "Heikkinen", years: 79, days: 40, sign_1900: '-', sign_2000: 'A', number: 917, gender: "male", non_disclosure: false, deceased_days_ago: Some(200), situation: "deceased (about 200 days ago); his records remain" },
    P { key: "emma", given: "Emma", family: "Laaksonen", years: 16, days: 30, sign_1900: '-', sign_2000: 'B', number: 918, gender: "female", non_disclosure: false, deceased_days_ago: None, situation: "16-year-old: old enough for her own wellbeing data" },
    P { key: "sofia", given: "Sofia", family: "Sjöberg", years: 33, days: 130, sign_1900: 'Y', sign_2000: 'B', number: 920, gender: "female", non_disclosure: false, deceased_days_ago: None, situation: "adult (Swedish-speaking); records written in Swedish" },
    P { key: "antti", given: "Antti", family: "Rantanen", years: 56, days: 250, sign_1900: '-', sign_2000: 'A', number: 921, gender: "male", non_disclosure: false, deceased_days_ago: None, situation: "adult with type 2 diabetes; public, private and occupational health records" },
];

fn birth_date(p: &P, today: Date) -> Date {
    let year = today.year() - p.years;
    let anniversary =
        Date::from_calendar_date(year, today.month(), today.day().min(28)).unwrap_or(today);
    anniversary - Duration::days(p.days)
}

fn hetu_of(p: &P, today: Date) -> String {
    let born = birth_date(p, today);
    let sign = if born.year() >= 2000 {
        p.sign_2000
    } else {
        p.sign_1900
    };
    // The parts are valid by construction (test range, sign of the right century).
    Hetu::from_parts(born, sign, p.number)
        .map(|h| h.as_str().to_string())
        .unwrap_or_default()
}

fn person(key: &str) -> &'static P {
    PEOPLE.iter().find(|p| p.key == key).unwrap_or(&PEOPLE[0])
}

pub fn people(today: Date) -> Vec<DemoPerson> {
    PEOPLE
        .iter()
        .map(|p| DemoPerson {
            hetu: hetu_of(p, today),
            name: format!("{} {}", p.given, p.family),
            given: p.given.to_string(),
            family: p.family.to_string(),
            birth_date: birth_date(p, today),
            situation: p.situation.to_string(),
        })
        .collect()
}

/// (id, name, business id without check digit, register code, kind, DPO name, DPO email)
const ORGS: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    (
        "org-hus",
        "HUS Helsingin yliopistollinen sairaala",
        "9876543",
        "2",
        "prov",
        "HUS tietosuojavastaava",
        "tietosuoja@hus.example.fi",
    ),
    (
        "org-tampere-hyvinvointialue",
        "Pirkanmaan hyvinvointialue",
        "9876544",
        "2",
        "prov",
        "Pirkanmaan hyvinvointialueen tietosuojavastaava",
        "tietosuoja@pirha.example.fi",
    ),
    (
        "org-terveystalo",
        "Terveystalo Kamppi",
        "9876545",
        "3",
        "prov",
        "Terveystalon tietosuojavastaava",
        "tietosuoja@terveystalo.example.fi",
    ),
    (
        "org-mehilainen-tyoterveys",
        "Mehiläinen Työterveys",
        "9876546",
        "4",
        "prov",
        "Mehiläisen tietosuojavastaava",
        "tietosuoja@mehilainen.example.fi",
    ),
    (
        "org-apteekki-kamppi",
        "Kampin apteekki",
        "9876547",
        "",
        "other",
        "Apteekin tietosuojavastaava",
        "tietosuoja@apteekki.example.fi",
    ),
    (
        "org-kanta-operator",
        "Kanta-palvelut (ylläpitäjä)",
        "9876548",
        "",
        "govt",
        "Kelan tietosuojavastaava",
        "tietosuoja@kela.example.fi",
    ),
];

/// A business id (Y-tunnus) with its check digit (weights 7 9 10 5 8 4 2, mod 11).
fn business_id(seven: &str) -> String {
    let weights = [7u32, 9, 10, 5, 8, 4, 2];
    let sum: u32 = seven
        .bytes()
        .zip(weights)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let r = sum % 11;
    let check = if r == 0 { 0 } else { 11 - r };
    format!("{seven}-{check}")
}

/// Days ago the occupational health provider joined the platform (R-VIEW-8): its older records,
/// archived later, are not shown (Mikko's pre-employment check of 700 days ago).
const MEHILAINEN_JOINED_DAYS_AGO: i64 = 500;

/// The demo's mandates (R-PROXY-1): (principal, delegate, valid from, valid to, at a service
/// point), days relative to `today`.
pub struct DemoMandate {
    pub principal: String,
    pub delegate: String,
    pub from: Date,
    pub to: Date,
    pub service_point: bool,
}

pub fn mandates(today: Date) -> Vec<DemoMandate> {
    let m =
        |principal: &str, delegate: &str, from: i64, to: i64, service_point: bool| DemoMandate {
            principal: hetu_of(person(principal), today),
            delegate: hetu_of(person(delegate), today),
            from: today + Duration::days(from),
            to: today + Duration::days(to),
            service_point,
        };
    vec![
        // Matti has no eID: he gave Hanna the mandate at a service point.
        m("matti", "hanna", -30, 335, true),
        // Antti's mandate from Matti ended ten days ago.
        m("matti", "antti", -400, -10, false),
    ]
}

/// The demo's guardians' mutual authorisations (R-MINOR-6): (child, proposed by, other,
/// confirmed). Ville has proposed one to Kaisa; she has not confirmed it yet.
pub fn guardian_authorisations(today: Date) -> Vec<(String, String, String, bool)> {
    vec![(
        hetu_of(person("onni"), today),
        hetu_of(person("ville"), today),
        hetu_of(person("kaisa"), today),
        false,
    )]
}

pub fn organisations(today: Date) -> Vec<Value> {
    ORGS.iter()
        .map(|(id, name, y, _, kind, dpo, email)| {
            let mut org = json!({
                "resourceType": "Organization",
                "id": id,
                "active": true,
                "identifier": [{"system": "urn:oid:1.2.246.10", "value": business_id(y)}],
                "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": kind}]}],
                "name": name,
                "contact": [{
                    "purpose": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/contactentity-type", "code": "ADMIN"},
                                           {"system": "urn:kanta:cs:contact-purpose", "code": "dpo", "display": "Tietosuojavastaava"}],
                                "text": "Tietosuojavastaava / Dataskyddsombud / Data protection officer"},
                    "name": {"text": dpo},
                    "telecom": [{"system": "email", "value": email}]
                }]
            });
            if *id == "org-mehilainen-tyoterveys" {
                org["extension"] = json!([{
                    "url": kanta_fhir::display::JOINED_EXTENSION_URL,
                    "valueDate": kanta_fhir::datetime::format_date(today - Duration::days(MEHILAINEN_JOINED_DAYS_AGO)),
                }]);
            }
            org
        })
        .collect()
}

fn org_name(id: &str) -> String {
    ORGS.iter()
        .find(|o| o.0 == id)
        .map(|o| o.1.to_string())
        .unwrap_or_default()
}

fn register_of(org: &str) -> &'static str {
    ORGS.iter().find(|o| o.0 == org).map(|o| o.3).unwrap_or("2")
}

pub fn clients() -> Vec<DemoClient> {
    let c = |id: &str, secret: &str, org: &str, role: &str| DemoClient {
        client_id: id.into(),
        client_secret: secret.into(),
        organisation: org.into(),
        organisation_name: org_name(org),
        roles: vec![role.into()],
    };
    vec![
        c("demo-hus", "demo-secret-hus", "org-hus", "clinician"),
        c(
            "demo-pirha",
            "demo-secret-pirha",
            "org-tampere-hyvinvointialue",
            "clinician",
        ),
        c(
            "demo-terveystalo",
            "demo-secret-terveystalo",
            "org-terveystalo",
            "clinician",
        ),
        c(
            "demo-mehilainen",
            "demo-secret-mehilainen",
            "org-mehilainen-tyoterveys",
            "clinician",
        ),
        c(
            "demo-hus-archivist",
            "demo-secret-hus-archivist",
            "org-hus",
            "archivist",
        ),
        c(
            "demo-apteekki",
            "demo-secret-apteekki",
            "org-apteekki-kamppi",
            "pharmacy",
        ),
        c(
            "demo-operator",
            "demo-secret-operator",
            "org-kanta-operator",
            "operator",
        ),
    ]
}

fn hetu_ident(hetu: &str) -> Value {
    json!({"system": "urn:oid:1.2.246.21", "value": hetu})
}

pub fn population_bundle(today: Date) -> Value {
    let mut entries: Vec<Value> = PEOPLE
        .iter()
        .map(|p| {
            let mut r = json!({
                "resourceType": "Patient",
                "identifier": [{"use": "official", "system": "urn:oid:1.2.246.21", "value": hetu_of(p, today)}],
                "name": [{"use": "official", "family": p.family, "given": [p.given]}],
                "gender": p.gender,
                "birthDate": kanta_fhir::datetime::format_date(birth_date(p, today)),
            });
            if p.non_disclosure {
                r["meta"] = json!({"security": [{"system": "https://hl7.fi/fhir/finnish-base-profiles/CodeSystem/fi-base-security-label-cs", "code": "TURVAKIELTO"}]});
            }
            if let Some(d) = p.deceased_days_ago {
                r["deceasedDateTime"] = json!(kanta_fhir::datetime::format_date(today - Duration::days(d)));
            }
            json!({"resource": r})
        })
        .collect();
    let rel = |child: &str, holder: &str, code: &str, custody: Option<&str>| {
        let mut r = json!({
            "resourceType": "RelatedPerson",
            "patient": {"identifier": hetu_ident(&hetu_of(person(child), today))},
            "identifier": [hetu_ident(&hetu_of(person(holder), today))],
            "relationship": [{"coding": [{"system": "urn:kanta:cs:population-relation", "code": code}]}],
            "period": {"start": kanta_fhir::datetime::format_date(birth_date(person(child), today))}
        });
        if let Some(c) = custody {
            r["extension"] = json!([{"url": "urn:kanta:ext:custody-agreement", "valueCoding": {"system": "urn:kanta:cs:custody-agreement", "code": c}}]);
        }
        json!({"resource": r})
    };
    entries.extend([
        rel("eetu", "aino", "guardian", Some("joint")),
        rel("eetu", "mikko", "guardian", Some("joint")),
        rel("sanni", "aino", "guardian", Some("joint")),
        rel("sanni", "mikko", "guardian", Some("joint")),
        rel("lotta", "pekka", "guardian", None),
        rel("lotta", "leena", "right-to-information", None),
        rel("onni", "kaisa", "guardian", None),
        rel("onni", "ville", "guardian", None),
        rel("elsa", "johan", "guardian", None),
        rel("matti", "ritva", "guardian-of-interests", None),
    ]);
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

/// What a care document says.
#[derive(Clone)]
enum Doc {
    /// Record text (journal entry) in the given language.
    Text {
        title: &'static str,
        text: &'static str,
        view: &'static str,
    },
    Diagnosis {
        code: &'static str,
        display: &'static str,
    },
    Lab {
        loinc: &'static str,
        name: &'static str,
        value: f64,
        unit: &'static str,
        low: f64,
        high: f64,
    },
    BloodPressure {
        systolic: u32,
        diastolic: u32,
    },
    Weight {
        kg: f64,
    },
    Imaging {
        loinc: &'static str,
        name: &'static str,
        conclusion: &'static str,
    },
    Vaccine {
        atc: &'static str,
        name: &'static str,
        lot: &'static str,
    },
    Referral {
        text: &'static str,
        reason: &'static str,
    },
    Risk {
        text: &'static str,
        code: &'static str,
    },
    Procedure {
        code: &'static str,
        text: &'static str,
        dental: bool,
    },
    CarePlan {
        title: &'static str,
        text: &'static str,
    },
    Certificate {
        title: &'static str,
        text: &'static str,
    },
}

/// Display markers a document may carry (docs/fhir-conventions.md).
#[derive(Clone, Default)]
struct Marks {
    /// Shown in MyKanta only from this many days from today (negative: the delay already ended).
    delayed_days: Option<i64>,
    cancelled: bool,
    other_person: bool,
    local_view: bool,
    form: bool,
    /// A client-assigned id, so a later submission can write a corrected version.
    fixed_id: Option<&'static str>,
}

fn d(doc: Doc) -> (Doc, Marks) {
    (doc, Marks::default())
}

fn m(doc: Doc, marks: Marks) -> (Doc, Marks) {
    (doc, marks)
}

struct Visit {
    client: &'static str,
    org: &'static str,
    who: &'static str,
    days_ago: i64,
    inpatient_days: Option<i64>,
    /// Minor's capacity / disclosure code (1-4) recorded at this service event.
    restriction: Option<&'static str>,
    reason: &'static str,
    docs: Vec<(Doc, Marks)>,
}

fn at(today: Date, days_ago: i64, hour: u8) -> String {
    format!(
        "{}T{:02}:15:00+02:00",
        kanta_fhir::datetime::format_date(today - Duration::days(days_ago)),
        hour
    )
}

struct Ids(u64);
impl Ids {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("urn:uuid:0d3e0000-0000-4000-8000-{:012}", self.0)
    }
}

fn meta(view: &str, register: &str, marks: &Marks, today: Date) -> Value {
    let mut tag = vec![];
    if marks.local_view {
        tag.push(json!({"system": "urn:kanta:cs:local-view", "code": "HUS-PSYK-LOCAL", "display": "Paikallinen näkymä"}));
    } else {
        tag.push(json!({"system": "urn:oid:1.2.246.537.6.12.2002", "code": view}));
    }
    if !register.is_empty() {
        tag.push(json!({"system": "urn:oid:1.2.246.537.5.40150", "code": register}));
    }
    if marks.form {
        tag.push(json!({"system": "urn:kanta:cs:document-form", "code": "form"}));
    }
    let mut meta = json!({"tag": tag});
    if marks.other_person {
        meta["security"] = json!([{"system": "urn:kanta:cs:security", "code": "other-person", "display": "Sisältää toisen henkilön tietoja"}]);
    }
    if let Some(days) = marks.delayed_days {
        meta["extension"] = json!([{
            "url": "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/release-for-patient-viewing",
            "valueDateTime": format!("{}T00:00:00+02:00", kanta_fhir::datetime::format_date(today + Duration::days(days)))
        }]);
    }
    meta
}

fn narrative(text: &str) -> Value {
    json!({"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{text}</p></div>")})
}

/// The FHIR resource for one document.
fn resource(
    doc: &Doc,
    marks: &Marks,
    v: &Visit,
    pat: &str,
    enc: &str,
    today: Date,
) -> (&'static str, Value) {
    let when = at(today, v.days_ago, 10);
    let reg = register_of(v.org);
    let subject = json!({"reference": pat});
    let encounter = json!({"reference": enc});
    let status_final = if marks.cancelled {
        "entered-in-error"
    } else {
        "final"
    };
    let (t, mut r) = match doc {
        Doc::Text { title, text, view } => (
            "Composition",
            json!({
                "resourceType": "Composition", "status": status_final,
                "meta": meta(view, reg, marks, today),
                // A discharge summary is shown even from ward care (R-DOC-7).
                "type": {"coding": [if title.starts_with("Epikriisi") {
                    json!({"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"})
                } else {
                    json!({"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"})
                }], "text": title},
                "subject": subject, "encounter": encounter, "date": when,
                "author": [{"reference": format!("Organization/{}", v.org)}],
                "title": title,
                "section": [{"title": title, "text": narrative(text)}]
            }),
        ),
        Doc::Diagnosis { code, display } => (
            "Condition",
            json!({
                "resourceType": "Condition", "meta": meta("166", reg, marks, today),
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": if marks.cancelled { "entered-in-error" } else { "confirmed" }}]},
                "code": {"coding": [{"system": "urn:oid:1.2.246.537.6.1", "code": code, "display": display}], "text": display},
                "subject": subject, "encounter": encounter, "recordedDate": when
            }),
        ),
        Doc::Lab {
            loinc,
            name,
            value,
            unit,
            low,
            high,
        } => {
            let interp = if value < low {
                "L"
            } else if value > high {
                "H"
            } else {
                "N"
            };
            (
                "Observation",
                json!({
                    "resourceType": "Observation", "status": status_final, "meta": meta("LAB", reg, marks, today),
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": name}], "text": name},
                    "subject": subject, "encounter": encounter, "effectiveDateTime": at(today, v.days_ago, 8),
                    "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
                    "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": interp}]}],
                    "referenceRange": [{"low": {"value": low, "unit": unit}, "high": {"value": high, "unit": unit}}]
                }),
            )
        }
        Doc::BloodPressure {
            systolic,
            diastolic,
        } => (
            "Observation",
            json!({
                "resourceType": "Observation", "status": status_final, "meta": meta("MIT", reg, marks, today),
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}], "text": "Verenpaine"},
                "subject": subject, "encounter": encounter, "effectiveDateTime": when,
                "component": [
                    {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]}, "valueQuantity": {"value": systolic, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                    {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}]}, "valueQuantity": {"value": diastolic, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
                ]
            }),
        ),
        Doc::Weight { kg } => (
            "Observation",
            json!({
                "resourceType": "Observation", "status": status_final, "meta": meta("MIT", reg, marks, today),
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}], "text": "Paino"},
                "subject": subject, "encounter": encounter, "effectiveDateTime": when,
                "valueQuantity": {"value": kg, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
            }),
        ),
        Doc::Imaging {
            loinc,
            name,
            conclusion,
        } => (
            "DiagnosticReport",
            json!({
                "resourceType": "DiagnosticReport", "status": status_final, "meta": meta("RTG", reg, marks, today),
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": name}], "text": name},
                "subject": subject, "encounter": encounter, "effectiveDateTime": when, "issued": at(today, v.days_ago, 15),
                "conclusion": conclusion
            }),
        ),
        Doc::Vaccine { atc, name, lot } => (
            "Immunization",
            json!({
                "resourceType": "Immunization", "status": if marks.cancelled { "entered-in-error" } else { "completed" },
                "meta": meta("ROK", reg, marks, today),
                "vaccineCode": {"coding": [{"system": "urn:oid:1.2.246.537.6.32", "code": atc, "display": name}], "text": name},
                "patient": subject, "encounter": encounter, "occurrenceDateTime": when, "lotNumber": lot
            }),
        ),
        Doc::Referral { text, reason } => (
            "ServiceRequest",
            json!({
                "resourceType": "ServiceRequest", "status": if marks.cancelled { "entered-in-error" } else { "active" }, "intent": "order",
                "meta": meta("LÄH", reg, marks, today),
                "code": {"text": text}, "reasonCode": [{"text": reason}],
                "subject": subject, "encounter": encounter, "authoredOn": when,
                "requester": {"reference": format!("Organization/{}", v.org)}
            }),
        ),
        Doc::Risk { text, code } => (
            "AllergyIntolerance",
            json!({
                "resourceType": "AllergyIntolerance", "meta": meta("RIS", reg, marks, today),
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
                "criticality": "high",
                "code": {"coding": [{"system": "urn:oid:1.2.246.537.6.32", "code": code}], "text": text},
                "patient": subject, "encounter": encounter, "recordedDate": when
            }),
        ),
        Doc::Procedure { code, text, dental } => (
            "Procedure",
            json!({
                "resourceType": "Procedure", "status": if marks.cancelled { "entered-in-error" } else { "completed" },
                "meta": meta(if *dental { "SUU" } else { "TMP" }, reg, marks, today),
                "code": {"coding": [{"system": "urn:oid:1.2.246.537.6.2", "code": code}], "text": text},
                "subject": subject, "encounter": encounter, "performedDateTime": when
            }),
        ),
        Doc::CarePlan { title, text } => (
            "CarePlan",
            json!({
                "resourceType": "CarePlan", "status": if marks.cancelled { "entered-in-error" } else { "active" }, "intent": "plan",
                "meta": meta("HOISU", reg, marks, today),
                "title": title, "description": text, "subject": subject, "encounter": encounter, "created": when
            }),
        ),
        Doc::Certificate { title, text } => {
            let data = base64_encode(text.as_bytes());
            (
                "DocumentReference",
                json!({
                    "resourceType": "DocumentReference", "status": if marks.cancelled { "entered-in-error" } else { "current" },
                    "meta": meta("TOD", reg, marks, today),
                    "type": {"text": title}, "subject": subject, "date": at(today, v.days_ago, 16),
                    "description": title,
                    "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "language": "fi", "title": title, "data": data}}],
                    "context": {"encounter": [encounter]}
                }),
            )
        }
    };
    if let Some(id) = marks.fixed_id {
        r["id"] = json!(id);
    }
    (t, r)
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn bundle(v: &Visit, today: Date, ids: &mut Ids) -> DemoSubmission {
    let p = person(v.who);
    let hetu = hetu_of(p, today);
    let pat = ids.next();
    let enc = ids.next();
    let start = at(today, v.days_ago, 9);
    let end = match v.inpatient_days {
        Some(n) => at(today, v.days_ago - n, 12),
        None => at(today, v.days_ago, 10),
    };
    let mut encounter = json!({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": if v.inpatient_days.is_some() { "IMP" } else { "AMB" },
                  "display": if v.inpatient_days.is_some() { "inpatient encounter" } else { "ambulatory" }},
        "meta": {"tag": [{"system": "urn:oid:1.2.246.537.5.40150", "code": register_of(v.org)}]},
        "subject": {"reference": pat}, "period": {"start": start, "end": end},
        "reasonCode": [{"text": v.reason}],
        "serviceProvider": {"reference": format!("Organization/{}", v.org)}
    });
    if let Some(code) = v.restriction {
        encounter["extension"] = json!([{
            "url": "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/restriction-parent",
            "valueCoding": {"system": "urn:oid:1.2.246.537.5.40202.201901", "code": code}
        }]);
    }
    let mut entries = vec![
        json!({"fullUrl": pat, "resource": {
            "resourceType": "Patient",
            "identifier": [{"use": "official", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NNFIN"}]},
                             "system": "urn:oid:1.2.246.21", "value": hetu}],
            "name": [{"use": "official", "family": p.family, "given": [p.given]}],
            "gender": p.gender, "birthDate": kanta_fhir::datetime::format_date(birth_date(p, today))
        }, "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.246.21|{hetu}")}}),
        json!({"fullUrl": enc, "resource": encounter, "request": {"method": "POST", "url": "Encounter"}}),
    ];
    for (doc, marks) in &v.docs {
        let (t, r) = resource(doc, marks, v, &pat, &enc, today);
        let request = match marks.fixed_id {
            Some(id) => json!({"method": "PUT", "url": format!("{t}/{id}")}),
            None => json!({"method": "POST", "url": t}),
        };
        entries.push(json!({"fullUrl": ids.next(), "resource": r, "request": request}));
    }
    DemoSubmission {
        client_id: v.client.to_string(),
        bundle: json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
    }
}

fn visits() -> Vec<Visit> {
    use Doc::*;
    let hus = ("demo-hus", "org-hus");
    let pirha = ("demo-pirha", "org-tampere-hyvinvointialue");
    let tt = ("demo-terveystalo", "org-terveystalo");
    let meh = ("demo-mehilainen", "org-mehilainen-tyoterveys");
    let v = |(client, org): (&'static str, &'static str),
             who: &'static str,
             days_ago: i64,
             reason: &'static str,
             docs: Vec<(Doc, Marks)>| Visit {
        client,
        org,
        who,
        days_ago,
        inpatient_days: None,
        restriction: None,
        reason,
        docs,
    };
    let mut out = vec![
        // Aino: a year of ordinary care, one record in a later version, one delayed, one cancelled.
        v(pirha, "aino", 1500, "Flunssaoireet", vec![
            d(Text { title: "Vastaanottokäynti", text: "Kolmatta päivää kestänyt nuha, kurkkukipu ja lievä lämpöily. Keuhkot kuultaessa puhtaat. Oireenmukainen hoito, sairauslomaa 3 päivää.", view: "YLE" }),
            d(Diagnosis { code: "J06.9", display: "Äkillinen ylähengitystieinfektio, määrittämätön" }),
            d(Certificate { title: "Lääkärintodistus sairauslomasta (A)", text: "Työkyvytön ajalle 3 päivää flunssan vuoksi." }),
        ]),
        v(hus, "aino", 420, "Toistuva päänsärky", vec![
            m(Text { title: "Neurologian poliklinikka", text: "Migreenityyppinen päänsärky, aura ajoittain. Neurologinen status normaali. Aloitetaan triptaani kohtauslääkkeeksi.", view: "NEU" }, Marks { fixed_id: Some("demo-aino-neuro-note"), ..Marks::default() }),
            m(Diagnosis { code: "G43.1", display: "Auramigreeni" }, Marks { fixed_id: Some("demo-aino-migraine"), ..Marks::default() }),
            d(Imaging { loinc: "24590-2", name: "Pään magneettikuvaus", conclusion: "Ei akuuttia löydöstä. Ei tilaa vievää prosessia." }),
        ]),
        v(hus, "aino", 30, "Laboratoriokontrolli", vec![
            d(Lab { loinc: "718-7", name: "B -Hb", value: 112.0, unit: "g/L", low: 117.0, high: 155.0 }),
            d(Lab { loinc: "2276-4", name: "S -Ferrit", value: 9.0, unit: "ug/L", low: 15.0, high: 125.0 }),
            // Markup a system let through in a title and a narrative: shown as text, or stripped
            // to the narrative subset; nothing in it ever runs (the browser test listens for it).
            d(Text { title: "Hoitajan merkintä <img src=x onerror=alert('title')>", text: "Ravinto-ohjaus annettu.<script>alert('narrative')</script><img src=\"x\" onerror=\"alert('img')\"/>", view: "YLE" }),
            // Delayed by the professional until the results are discussed (R-DOC-4).
            m(Text { title: "Laboratoriotulosten tulkinta", text: "Lievä raudanpuuteanemia. Soitetaan potilaalle ja aloitetaan rautalääkitys.", view: "YLE" }, Marks { delayed_days: Some(14), ..Marks::default() }),
            // Cancelled: recorded on the wrong patient (R-DOC-3).
            m(Lab { loinc: "2345-7", name: "P -Gluk", value: 5.4, unit: "mmol/L", low: 4.0, high: 6.0 }, Marks { cancelled: true, ..Marks::default() }),
        ]),
        v(tt, "aino", 200, "Gynekologinen tarkastus", vec![
            d(Text { title: "Gynekologin vastaanotto", text: "Vuositarkastus. Papa-näyte otettu. Ei huomautettavaa.", view: "NAI" }),
            d(Procedure { code: "LCA10", text: "Papa-näytteen otto", dental: false }),
        ]),
        // Mikko: occupational health, and a record containing another person's data.
        v(meh, "mikko", 700, "Työhöntulotarkastus", vec![
            d(Text { title: "Työterveyshoitajan tarkastus", text: "Työhöntulotarkastus. Ei rajoitteita työhön. Kuulo ja näkö normaalit.", view: "TTH" }),
            d(BloodPressure { systolic: 128, diastolic: 82 }),
            d(Weight { kg: 86.5 }),
        ]),
        v(meh, "mikko", 90, "Selkäkipu", vec![
            d(Text { title: "Työterveyslääkärin vastaanotto", text: "Alaselkäkipu nostotyön jälkeen, ei säteilyä. Liikehoito-ohjeet, fysioterapeutin arvio.", view: "TTH" }),
            d(Diagnosis { code: "M54.5", display: "Alaselkäkipu" }),
            d(Referral { text: "Lähete työfysioterapeutille", reason: "Alaselkäkipu" }),
            // Mentions a colleague's accident in detail (R-DOC-5).
            m(Text { title: "Tapaturmaselvitys", text: "Työtoveri (nimi poistettu) kertoi tapahtumien kulusta; hänen vammansa kuvattu erikseen.", view: "TTH" }, Marks { other_person: true, ..Marks::default() }),
        ]),
        v(hus, "mikko", 2000, "Polven tähystys", vec![
            d(Procedure { code: "NGD10", text: "Polven tähystys", dental: false }),
            // Stored under a local view only (R-DOC-6).
            m(Text { title: "Leikkauskertomus (paikallinen)", text: "Artroskopia, meniskin repeämän resektio. Toipuminen sujunut.", view: "KIR" }, Marks { local_view: true, ..Marks::default() }),
        ]),
        // Eetu (7): vaccinations, an ear infection, a dentist visit.
        v(pirha, "eetu", 2400, "Neuvolan rokotukset", vec![
            d(Vaccine { atc: "J07CA", name: "DTaP-IPV-Hib (viitosrokote)", lot: "A12B34" }),
            d(Vaccine { atc: "J07BD52", name: "MPR-rokote", lot: "M5566" }),
        ]),
        v(pirha, "eetu", 300, "Korvakipu", vec![
            d(Text { title: "Lasten vastaanotto", text: "Vasen tärykalvo punoittaa ja pullottaa. Amoksisilliinikuuri 7 vrk. Kontrolli tarvittaessa.", view: "LAS" }),
            d(Diagnosis { code: "H66.9", display: "Välikorvatulehdus, määrittämätön" }),
        ]),
        v(pirha, "eetu", 60, "Hammastarkastus", vec![
            d(Text { title: "Suun terveydenhuolto", text: "Maitohampaissa ei reikiä. Harjausohjeet. Seuraava tarkastus vuoden kuluttua.", view: "SUU" }),
            d(Procedure { code: "SAA01", text: "Suun ja hampaiden tutkimus", dental: true }),
        ]),
        // Sanni (14): one visit per minor's-disclosure code, and one from a non-updated system.
        Visit { restriction: Some("1"), ..v(pirha, "sanni", 1400, "Astman seuranta", vec![
            d(Text { title: "Lasten poliklinikka", text: "Astma hyvässä hoitotasapainossa. Jatketaan inhaloitavaa kortikosteroidia.", view: "LAS" }),
            d(Diagnosis { code: "J45.9", display: "Astma, määrittämätön" }),
        ]) },
        Visit { restriction: Some("2"), ..v(pirha, "sanni", 500, "Urheiluvamma", vec![
            d(Text { title: "Päivystyskäynti", text: "Nilkan nyrjähdys koripallossa. Röntgenissä ei murtumaa. Tukiside ja kevennys.", view: "YLE" }),
            d(Imaging { loinc: "37637-6", name: "Nilkan röntgen", conclusion: "Ei murtumaa." }),
        ]) },
        Visit { restriction: Some("3"), ..v(pirha, "sanni", 120, "Nuorisovastaanotto", vec![
            d(Text { title: "Nuorisovastaanotto", text: "Nuori toivoo, ettei käynnin tietoja luovuteta huoltajille. Arvioitu kykeneväksi päättämään asiasta.", view: "YLE" }),
            d(CarePlan { title: "Jatkosuunnitelma", text: "Uusi käynti kuukauden kuluttua koulukuraattorin kanssa sovitusti." }),
        ]) },
        Visit { restriction: Some("4"), ..v(pirha, "sanni", 40, "Iho-oireet", vec![
            d(Text { title: "Vastaanottokäynti", text: "Akne. Paikallishoito aloitettu.", view: "YLE" }),
            d(Diagnosis { code: "L70.0", display: "Tavallinen akne" }),
        ]) },
        // Before she was 10 (no code needed): guardians see it (R-MINOR-3).
        v(pirha, "sanni", 2400, "Kouluterveydenhuolto", vec![
            d(Text { title: "Kouluterveydenhoitaja", text: "Laaja terveystarkastus. Kasvu ja kehitys ikätasoista.", view: "YLE" }),
        ]),
        // Recorded without a disclosure code (non-updated system) while Sanni was 10-17.
        v(tt, "sanni", 300, "Silmien tarkastus", vec![
            d(Text { title: "Silmälääkärin vastaanotto", text: "Lievä likinäköisyys. Silmälasiresepti.", view: "SIL" }),
        ]),
        // Lotta (12): no disclosure codes at all; the visit at 8 is shown to Pekka and Leena, the
        // one at 11 is not (non-updated system, R-MINOR-3).
        v(hus, "lotta", 1500, "Rannemurtuma", vec![
            d(Text { title: "Lastenpäivystys", text: "Kaatui pyörällä. Värttinäluun murtuma, kipsi neljäksi viikoksi.", view: "LAS" }),
        ]),
        v(hus, "lotta", 250, "Vatsakipu", vec![
            d(Text { title: "Lastenpäivystys", text: "Ajoittainen vatsakipu, ei hälyttäviä löydöksiä. Keliakiavasta-aineet otettu.", view: "LAS" }),
            d(Lab { loinc: "31017-7", name: "S -tTGAbA", value: 1.0, unit: "U/mL", low: 0.0, high: 7.0 }),
        ]),
        // Onni (5): a vaccination.
        v(pirha, "onni", 400, "Neuvola", vec![
            d(Vaccine { atc: "J07BB", name: "Influenssarokote", lot: "FLU2025" }),
            d(Weight { kg: 19.2 }),
        ]),
        // Elsa (9): her own non-disclosure marker.
        v(hus, "elsa", 180, "Allergiatutkimukset", vec![
            d(Text { title: "Barnpoliklinik", text: "Misstänkt jordnötsallergi. Pricktest positivt. Adrenalinpenna ordinerad.", view: "LAS" }),
            d(Risk { text: "Maapähkinäallergia (anafylaksia)", code: "Z91.0" }),
        ]),
        // Matti (84): a ward care period with a summary and ward notes (R-DOC-7).
        Visit { inpatient_days: Some(6), ..v(hus, "matti", 150, "Keuhkokuume", vec![
            d(Text { title: "Epikriisi (hoitojakson yhteenveto)", text: "Oikean alalohkon keuhkokuume. Laskimonsisäinen antibiootti 3 vrk, sitten suun kautta. Kotiutuu omaisen tukemana.", view: "YLE" }),
            d(Text { title: "Osaston hoitokertomus", text: "Yö rauhallinen. Happisaturaatio 94 % huoneilmalla. Syönyt hyvin.", view: "HOI" }),
            d(Diagnosis { code: "J18.1", display: "Lohkokeuhkokuume, määrittämätön" }),
            d(Imaging { loinc: "36643-5", name: "Keuhkojen röntgenkuvaus", conclusion: "Oikeassa alakentässä infiltraatti." }),
            d(Lab { loinc: "1988-5", name: "P -CRP", value: 142.0, unit: "mg/L", low: 0.0, high: 10.0 }),
        ]) },
        v(pirha, "matti", 30, "Muistihuoli", vec![
            d(Text { title: "Muistipoliklinikka", text: "MMSE 22/30. Lievä Alzheimerin taudin aiheuttama muistisairaus. Aloitetaan donepetsiili.", view: "NEU" }),
            d(Diagnosis { code: "G30.1", display: "Myöhään alkava Alzheimerin tauti" }),
            // Archived on a form (R-DOC-8).
            m(Certificate { title: "B-lausunto Kelalle", text: "Lausunto erityiskorvattavasta lääkkeestä." }, Marks { form: true, ..Marks::default() }),
        ]),
        // A service event without care documents (R-DOC-9).
        v(hus, "hanna", 80, "Peruttu käynti", vec![]),
        v(tt, "hanna", 400, "Kilpirauhanen", vec![
            d(Text { title: "Sisätautilääkärin vastaanotto", text: "Hypotyreoosi hyvässä hoitotasapainossa tyroksiinilla.", view: "SIS" }),
            d(Lab { loinc: "3016-3", name: "S -TSH", value: 2.1, unit: "mU/L", low: 0.3, high: 4.2 }),
            d(Diagnosis { code: "E03.9", display: "Kilpirauhasen vajaatoiminta, määrittämätön" }),
        ]),
        // Veikko: the deceased person's last care period.
        Visit { inpatient_days: Some(12), ..v(hus, "veikko", 230, "Sydämen vajaatoiminta", vec![
            d(Text { title: "Epikriisi", text: "Sydämen vajaatoiminnan paheneminen. Nesteenpoisto tehostettu. Palliatiivinen hoitolinjaus sovittu omaisten kanssa.", view: "KAR" }),
            d(Diagnosis { code: "I50.0", display: "Kongestiivinen sydämen vajaatoiminta" }),
            d(Lab { loinc: "33762-6", name: "P -proBNP", value: 8200.0, unit: "ng/L", low: 0.0, high: 450.0 }),
        ]) },
        // Emma (16).
        v(pirha, "emma", 100, "HPV-rokotus", vec![
            d(Vaccine { atc: "J07BM", name: "HPV-rokote", lot: "HPV778" }),
        ]),
        // Sofia: Swedish.
        v(hus, "sofia", 350, "Graviditetskontroll", vec![
            d(Text { title: "Mödrapoliklinik", text: "Graviditetsvecka 20. Ultraljud utan anmärkning. Blodtryck normalt.", view: "NAI" }),
            d(BloodPressure { systolic: 118, diastolic: 74 }),
            d(Imaging { loinc: "11525-3", name: "Ultraljud, obstetrisk", conclusion: "Normal fostertillväxt." }),
        ]),
        v(tt, "sofia", 20, "Tandläkarbesök", vec![
            d(Text { title: "Tandvård", text: "Karies i 36, fyllning gjord. Nästa kontroll om ett år.", view: "SUU" }),
            d(Procedure { code: "SFA10", text: "Fyllning, en yta", dental: true }),
        ]),
        // Antti: diabetes across registers.
        v(pirha, "antti", 1000, "Diabeteksen toteaminen", vec![
            d(Text { title: "Diabeteshoitajan vastaanotto", text: "Tyypin 2 diabetes todettu. Ruokavalio- ja liikuntaohjaus. Metformiini aloitettu.", view: "YLE" }),
            d(Diagnosis { code: "E11.9", display: "Tyypin 2 diabetes ilman komplikaatioita" }),
            d(Lab { loinc: "4548-4", name: "B -HbA1c", value: 62.0, unit: "mmol/mol", low: 20.0, high: 42.0 }),
            d(CarePlan { title: "Diabeteksen hoitosuunnitelma", text: "Tavoite HbA1c alle 53. Kontrollit 3 kk välein. Jalkojen tarkastus kerran vuodessa." }),
        ]),
        v(pirha, "antti", 90, "Diabeteskontrolli", vec![
            d(Lab { loinc: "4548-4", name: "B -HbA1c", value: 51.0, unit: "mmol/mol", low: 20.0, high: 42.0 }),
            d(Lab { loinc: "2093-3", name: "fP -Kol", value: 4.6, unit: "mmol/L", low: 0.0, high: 5.0 }),
            d(Lab { loinc: "2345-7", name: "fP -Gluk", value: 7.1, unit: "mmol/L", low: 4.0, high: 6.0 }),
            d(BloodPressure { systolic: 142, diastolic: 88 }),
            d(Diagnosis { code: "I10", display: "Essentiaalinen verenpainetauti" }),
        ]),
        v(meh, "antti", 400, "Työkykyneuvottelu", vec![
            d(Text { title: "Työterveysneuvottelu", text: "Vuorotyön vaikutus verensokeritasapainoon käyty läpi. Työaikajärjestelyt sovittu.", view: "TTH" }),
        ]),
        v(tt, "antti", 15, "Silmänpohjakuvaus", vec![
            d(Imaging { loinc: "32451-7", name: "Silmänpohjakuvaus", conclusion: "Ei diabeettista retinopatiaa." }),
            d(Referral { text: "Lähete ravitsemusterapeutille", reason: "Tyypin 2 diabetes" }),
        ]),
    ];
    // Influenza vaccinations for several people.
    for who in ["aino", "mikko", "matti", "antti", "hanna"] {
        out.push(v(
            pirha,
            who,
            55,
            "Influenssarokotus",
            vec![d(Vaccine {
                atc: "J07BB",
                name: "Influenssarokote",
                lot: "FLU2025",
            })],
        ));
    }
    out
}

/// Corrections written after the first versions: later versions of the same documents.
fn corrections() -> Vec<Visit> {
    use Doc::*;
    vec![Visit {
        client: "demo-hus",
        org: "org-hus",
        who: "aino",
        days_ago: 420,
        inpatient_days: None,
        restriction: None,
        reason: "Toistuva päänsärky (korjaus)",
        docs: vec![
            m(Text { title: "Neurologian poliklinikka (korjattu)", text: "Migreenityyppinen päänsärky ilman auraa (korjattu aiemmasta merkinnästä). Neurologinen status normaali. Triptaani kohtauslääkkeeksi.", view: "NEU" }, Marks { fixed_id: Some("demo-aino-neuro-note"), ..Marks::default() }),
            m(Diagnosis { code: "G43.0", display: "Migreeni ilman auraa" }, Marks { fixed_id: Some("demo-aino-migraine"), ..Marks::default() }),
        ],
    }]
}

/// The demo's consents, recorded at care units through the providers' FHIR path (R-CONSENT-1):
/// most adults received the information notice and gave a health-care disclosure consent in
/// care; Aino has not (so MyKanta shows her the notice first, R-INFO-1); Sanni (14) and Emma (16)
/// received the notice in care and gave no consent (their guardians cannot mark it, R-INFO-2);
/// Antti forbade the disclosure of Mehiläinen's occupational-health register (so HUS and Pirha
/// do not see those visits, and Mehiläinen still does); Mikko set the prescription prohibition.
pub fn consent_submissions(today: Date) -> Vec<DemoSubmission> {
    let consent = |kind: &str, hetu: &str, at: &str, extra: Value| -> Value {
        let mut c = json!({
            "resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "urn:kanta:cs:consent-kind", "code": kind}]}],
            "patient": {"reference": "urn:uuid:patient"},
            "dateTime": at,
            "performer": [{"identifier": {"system": "urn:oid:1.2.246.21", "value": hetu}}],
            "extension": [{"url": "urn:kanta:ext:recorded-as", "valueCode": "care-unit"}],
        });
        if let (Some(o), Some(more)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                o.insert(k.clone(), v.clone());
            }
        }
        c
    };
    let mut out = vec![];
    for p in PEOPLE {
        if p.key == "aino" {
            continue;
        }
        let hetu = hetu_of(p, today);
        let at = at(today, 400, 9);
        let minor = p.years < 18;
        let mut entries = vec![
            json!({"fullUrl": "urn:uuid:patient", "resource": {
                "resourceType": "Patient",
                "identifier": [{"use": "official", "system": "urn:oid:1.2.246.21", "value": hetu}],
                "name": [{"use": "official", "family": p.family, "given": [p.given]}],
                "gender": p.gender, "birthDate": kanta_fhir::datetime::format_date(birth_date(p, today))
            }, "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.246.21|{hetu}")}}),
            json!({"resource": consent("information-notice", &hetu, &at, json!({})), "request": {"method": "POST", "url": "Consent"}}),
        ];
        if !minor {
            entries.push(json!({"resource": consent("disclosure-consent", &hetu, &at, json!({
                "provision": {"code": [{"coding": [{"system": "urn:kanta:cs:care-domain", "code": "health"}]}]}})),
                "request": {"method": "POST", "url": "Consent"}}));
        }
        if p.key == "antti" {
            entries.push(json!({"resource": consent("disclosure-prohibition", &hetu, &at, json!({
                "provision": {"actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}]},
                    "reference": {"reference": "Organization/org-mehilainen-tyoterveys"}}],
                    "code": [{"coding": [{"system": "urn:oid:1.2.246.537.5.40150", "code": "4"}]}]}})),
                "request": {"method": "POST", "url": "Consent"}}));
        }
        if p.key == "mikko" {
            entries.push(
                json!({"resource": consent("prescription-prohibition", &hetu, &at, json!({})),
                "request": {"method": "POST", "url": "Consent"}}),
            );
        }
        out.push(DemoSubmission {
            client_id: "demo-hus".into(),
            bundle: json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        });
    }
    out
}

/// The demo prescriptions (issue 13): HUS prescribes; the pharmacy dispenses the first package of
/// each person's first prescription when the demo is seeded (see seed.rs). Each entry: person, VNR,
/// packages, dose instructions, days ago, renewal prohibited.
pub const PRESCRIPTIONS: &[(&str, &str, u32, &str, i64, bool)] = &[
    (
        "aino",
        "404011",
        3,
        "1 tabletti aamulla tyhjään mahaan",
        90,
        false,
    ),
    (
        "aino",
        "405011",
        1,
        "1 kapseli aamulla tarvittaessa",
        20,
        false,
    ),
    ("mikko", "401011", 3, "1 tabletti illalla", 60, false),
    (
        "eetu",
        "408011",
        1,
        "1–2 annosta tarvittaessa hengenahdistukseen",
        40,
        false,
    ),
    (
        "eetu",
        "406041",
        1,
        "5 ml kahdesti päivässä 7 vuorokauden ajan",
        10,
        true,
    ),
    (
        "antti",
        "402011",
        3,
        "1 tabletti aamuin illoin aterian yhteydessä",
        120,
        false,
    ),
    ("antti", "403011", 3, "1 tabletti aamulla", 120, false),
    ("sofia", "407011", 2, "1 tablett på morgonen", 45, false),
    ("matti", "403011", 3, "1 tabletti aamulla", 100, false),
    (
        "matti",
        "409011",
        2,
        "Annostus INR-arvon mukaan hoitokortista",
        30,
        true,
    ),
];

pub fn prescription_submissions(today: Date) -> Vec<DemoSubmission> {
    let mut out = vec![];
    for p in PEOPLE {
        let mine: Vec<_> = PRESCRIPTIONS.iter().filter(|r| r.0 == p.key).collect();
        if mine.is_empty() {
            continue;
        }
        let hetu = hetu_of(p, today);
        let mut entries = vec![json!({"fullUrl": "urn:uuid:patient", "resource": {
            "resourceType": "Patient",
            "identifier": [{"use": "official", "system": "urn:oid:1.2.246.21", "value": hetu}],
            "name": [{"use": "official", "family": p.family, "given": [p.given]}],
            "gender": p.gender, "birthDate": kanta_fhir::datetime::format_date(birth_date(p, today))
        }, "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.246.21|{hetu}")}})];
        for (_, vnr, packages, dose, days_ago, no_renewal) in mine {
            let mut rx = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                "subject": {"reference": "urn:uuid:patient"},
                "authoredOn": kanta_fhir::datetime::format_date(today - Duration::days(*days_ago)),
                "medicationCodeableConcept": {"coding": [{"system": "urn:kanta:cs:vnr", "code": vnr}]},
                "dosageInstruction": [{"text": dose}],
                "dispenseRequest": {"quantity": {"value": packages, "code": "{package}", "system": "http://unitsofmeasure.org"}}});
            if *no_renewal {
                rx["extension"] =
                    json!([{"url": "urn:kanta:ext:renewal-prohibited", "valueBoolean": true}]);
            }
            entries.push(
                json!({"resource": rx, "request": {"method": "POST", "url": "MedicationRequest"}}),
            );
        }
        out.push(DemoSubmission {
            client_id: "demo-hus".into(),
            bundle: json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        });
    }
    out
}

pub fn clinical_submissions(today: Date) -> Vec<DemoSubmission> {
    let mut ids = Ids(0);
    visits()
        .iter()
        .chain(corrections().iter())
        .map(|v| bundle(v, today, &mut ids))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;
    use time::Month;

    const TODAY: Date = date!(2026 - 11 - 24);

    /// R-RX-3: the demo medicines database passes the importer, and every substitution group
    /// holds products of one active substance and strength that can stand in for each other.
    #[test]
    fn the_demo_medicines_database_imports() {
        let v = kanta_domain::medicines::parse(MEDICINES).unwrap();
        assert!(v.len() >= 30, "{} products", v.len());
        let mut groups: std::collections::BTreeMap<&str, Vec<_>> = Default::default();
        for p in v.products() {
            if let Some(g) = &p.substitution_group {
                groups.entry(g).or_default().push(p);
            }
        }
        assert!(groups.values().filter(|ps| ps.len() > 1).count() >= 8);
        for (g, ps) in groups {
            let first = ps[0];
            for p in &ps {
                assert_eq!(
                    (&p.atc, &p.strength, p.package_size),
                    (&first.atc, &first.strength, first.package_size),
                    "group {g}"
                );
                assert!(v.substitutable(&first.vnr, &p.vnr));
            }
        }
    }

    #[test]
    fn every_demo_person_has_a_valid_test_range_hetu() {
        let people = people(TODAY);
        // Distinct people: no HETU twice (a repeated individual number on one birth date would be).
        let hetus: std::collections::BTreeSet<&str> =
            people.iter().map(|p| p.hetu.as_str()).collect();
        assert_eq!(hetus.len(), people.len(), "a HETU twice");
        // The acting-for demo refers only to demo people (R-MINOR, R-PROXY).
        for m in mandates(TODAY) {
            assert!(hetus.contains(m.principal.as_str()) && hetus.contains(m.delegate.as_str()));
            assert!(m.from < m.to);
        }
        for (child, by, other, _) in guardian_authorisations(TODAY) {
            assert!([&child, &by, &other]
                .iter()
                .all(|h| hetus.contains(h.as_str())));
        }
        for p in &people {
            let h = Hetu::parse(&p.hetu).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert!(h.is_temporary(), "{}", p.name);
            assert_eq!(h.birth_date(), p.birth_date);
        }
        let ages: Vec<u32> = people
            .iter()
            .map(|p| Hetu::parse(&p.hetu).unwrap().age_on(TODAY))
            .collect();
        assert!(
            ages.iter().any(|a| *a < 10)
                && ages.iter().any(|a| (10..18).contains(a))
                && ages.contains(&16)
        );
        let unique: std::collections::HashSet<_> = people.iter().map(|p| &p.hetu).collect();
        assert_eq!(unique.len(), people.len());
    }

    /// The demo starts on any day (issue 30: the old check compared the constant day with its own
    /// month): every person's HETU is valid and distinct, and each is the age the demo says — the
    /// ages the rules turn on (under 10, 10–17, 16, adults) are there — on every day of a leap
    /// year and of a common one.
    #[test]
    fn the_demo_population_holds_on_every_day() {
        for year in [2027, 2028] {
            let mut day = Date::from_calendar_date(year, Month::January, 1).unwrap();
            while day.year() == year {
                let people = people(day);
                let hetus: std::collections::HashSet<&str> =
                    people.iter().map(|p| p.hetu.as_str()).collect();
                assert_eq!(hetus.len(), people.len(), "{day}");
                for (p, spec) in people.iter().zip(PEOPLE) {
                    let h =
                        Hetu::parse(&p.hetu).unwrap_or_else(|e| panic!("{day} {}: {e}", p.name));
                    assert_eq!(h.birth_date(), p.birth_date, "{day} {}", p.name);
                    assert_eq!(
                        h.age_on(day),
                        u32::try_from(spec.years).unwrap(),
                        "{day} {}",
                        p.name
                    );
                }
                day = day.next_day().unwrap();
            }
        }
    }

    #[test]
    fn submissions_are_well_formed_transactions() {
        let clients = clients();
        let orgs: Vec<String> = organisations(TODAY)
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_string())
            .collect();
        let subs = clinical_submissions(TODAY);
        assert!(subs.len() >= 30);
        for s in &subs {
            assert!(clients.iter().any(|c| c.client_id == s.client_id));
            assert_eq!(s.bundle["type"], "transaction");
            let entries = s.bundle["entry"].as_array().unwrap();
            let full_urls: Vec<&str> = entries
                .iter()
                .map(|e| e["fullUrl"].as_str().unwrap())
                .collect();
            for e in entries {
                assert!(e["request"]["method"].is_string());
                for r in kanta_fhir::bundle::references(&e["resource"]) {
                    if r.starts_with("urn:uuid:") {
                        assert!(full_urls.contains(&r.as_str()), "{r}");
                    } else if let Some(org) = r.strip_prefix("Organization/") {
                        assert!(orgs.iter().any(|o| o == org), "{r}");
                    }
                }
                kanta_fhir::check(e["resource"].clone())
                    .unwrap_or_else(|err| panic!("{err}: {}", e["resource"]));
            }
        }
        assert!(kanta_fhir::population::parse_import(&population_bundle(TODAY)).is_ok());
        for o in organisations(TODAY) {
            kanta_fhir::check(o).unwrap();
        }
        assert_eq!(business_id("0112038"), "0112038-9");
    }

    /// The demo exercises the display rules it was built for: run every submitted resource through
    /// the facts reader and the rules, and find each rule at work (R-DOC-3…9), and plenty shown.
    #[test]
    fn the_demo_exercises_the_display_rules() {
        use kanta_domain::display::{decide, Decision, Hidden, ViewTable, DEFAULT_VIEW_TABLE};
        use kanta_fhir::display::{care_setting, document_facts, encounter_reference, Context};
        let views = ViewTable::parse(DEFAULT_VIEW_TABLE).unwrap();
        let now = kanta_fhir::datetime::millis(TODAY.with_hms(12, 0, 0).unwrap().assume_utc());
        let mut reasons = std::collections::BTreeSet::new();
        let (mut shown, mut visit_only) = (0, 0);
        let orgs = organisations(TODAY);
        let clients = clients();
        let joined = |client: &str| {
            let org = &clients.iter().find(|c| c.client_id == client)?.organisation;
            let o = orgs.iter().find(|o| o["id"] == org.as_str())?;
            kanta_fhir::display::provider_joined_at(o)
        };
        for s in clinical_submissions(TODAY) {
            let entries = s.bundle["entry"].as_array().unwrap();
            let resource_of = |url: &str| {
                entries
                    .iter()
                    .find(|e| e["fullUrl"] == url)
                    .map(|e| &e["resource"])
            };
            for e in entries {
                let r = &e["resource"];
                if r["resourceType"] == "Patient" {
                    continue;
                }
                let attached = encounter_reference(r).and_then(resource_of);
                let care_documents = entries
                    .iter()
                    .filter(|o| encounter_reference(&o["resource"]) == e["fullUrl"].as_str())
                    .count();
                let ctx = Context {
                    service_event: attached.map(care_setting),
                    care_documents,
                    latest_version: true,
                    recorded_at: kanta_fhir::check(r.clone())
                        .ok()
                        .and_then(|c| c.effective)
                        .map_or(now, kanta_fhir::datetime::millis),
                    provider_joined_at: joined(&s.client_id),
                };
                match decide(&document_facts(r, &ctx), &views, now) {
                    Decision::Shown => shown += 1,
                    Decision::VisitOnly => visit_only += 1,
                    Decision::Hidden(why) => reasons.extend(why.iter().map(Hidden::code)),
                }
            }
        }
        for code in [
            "cancelled",
            "delayed",
            "other-person",
            "local-view",
            "inpatient-content",
            "form",
            "before-provider-joined",
        ] {
            assert!(
                reasons.contains(code),
                "no demo record is hidden for {code}: {reasons:?}"
            );
        }
        assert!(
            !reasons.contains("view-not-displayed"),
            "the view table covers the demo: {reasons:?}"
        );
        assert!(
            !reasons.contains("not-attached") && !reasons.contains("no-view"),
            "{reasons:?}"
        );
        assert!(
            visit_only >= 1 && shown > 60,
            "shown {shown}, visit only {visit_only}"
        );
    }
}
