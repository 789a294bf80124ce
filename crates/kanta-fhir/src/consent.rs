//! Kanta's `Consent` resources (the consent and will service) read into the disclosure rule's facts,
//! written for MyKanta, and the few facts of a record the rule needs (docs/fhir-conventions.md).
//!
//! Every Kanta consent names its kind in `category` (`urn:kanta:cs:consent-kind`). A Consent
//! without that category (e.g. HL7's examples) is stored as it came and decides nothing. The
//! record of each kind and key with the latest `dateTime` decides (a revocation is a new version
//! with `status = inactive`, or a later record of the same kind and key); only `active` is in force.

use crate::codes;
use crate::datetime;
use kanta_domain::consent::{
    CareDomain, ConsentFacts, Period, Prohibition, ProhibitionScope, PurchaseMandate, RecorderClaim,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What a Kanta consent records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConsentKind {
    InformationNotice,
    DisclosureConsent,
    DisclosureProhibition,
    PrescriptionProhibition,
    OrganDonationWill,
    LivingWill,
    PurchasedServiceMandate,
}

impl ConsentKind {
    pub const ALL: [ConsentKind; 7] = [
        ConsentKind::InformationNotice,
        ConsentKind::DisclosureConsent,
        ConsentKind::DisclosureProhibition,
        ConsentKind::PrescriptionProhibition,
        ConsentKind::OrganDonationWill,
        ConsentKind::LivingWill,
        ConsentKind::PurchasedServiceMandate,
    ];

    pub fn code(self) -> &'static str {
        match self {
            ConsentKind::InformationNotice => "information-notice",
            ConsentKind::DisclosureConsent => "disclosure-consent",
            ConsentKind::DisclosureProhibition => "disclosure-prohibition",
            ConsentKind::PrescriptionProhibition => "prescription-prohibition",
            ConsentKind::OrganDonationWill => "organ-donation-will",
            ConsentKind::LivingWill => "living-will",
            ConsentKind::PurchasedServiceMandate => "purchased-service-mandate",
        }
    }

    pub fn parse(code: &str) -> Option<ConsentKind> {
        ConsentKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// FHIR's `Consent.scope` for it.
    fn scope(self) -> &'static str {
        match self {
            ConsentKind::LivingWill => "adr",
            ConsentKind::OrganDonationWill => "treatment",
            ConsentKind::InformationNotice
            | ConsentKind::DisclosureConsent
            | ConsentKind::DisclosureProhibition
            | ConsentKind::PrescriptionProhibition
            | ConsentKind::PurchasedServiceMandate => "patient-privacy",
        }
    }
}

pub use kanta_domain::consent::RecordedAs;

/// One Kanta consent as read from its current version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    pub kind: ConsentKind,
    /// `status = active`.
    pub active: bool,
    /// `dateTime` (epoch ms): when it was recorded.
    pub recorded_at: i64,
    pub recorded_as: Option<RecordedAs>,
    /// The person who gave it (their HETU), when a person did.
    pub performer_hetu: Option<String>,
    /// The performer's name as recorded.
    pub performer_name: Option<String>,
    /// A care unit's recording: the organisation and the acting professional, as the server
    /// stamped them from the request.
    pub recorder_org: Option<String>,
    pub recorder_professional: Option<String>,
    pub domain: Option<CareDomain>,
    pub period: Period,
    pub prohibition: Option<ProhibitionScope>,
    pub yields_in_emergency: bool,
    pub mandate: Option<PurchaseMandate>,
    /// Free text of a will, an organ donation's restrictions, a mandate's ordered service.
    pub text: Option<String>,
    /// Organ donation: willing (`provision.type = permit`) or not.
    pub permit: bool,
    /// The living will's fields, by name.
    pub fields: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Coding {
    system: Option<String>,
    code: Option<String>,
}
#[derive(Deserialize)]
struct Concept {
    #[serde(default)]
    coding: Vec<Coding>,
    text: Option<String>,
}
#[derive(Deserialize)]
struct Ref {
    reference: Option<String>,
    identifier: Option<Identifier>,
    display: Option<String>,
}
#[derive(Deserialize)]
struct Identifier {
    system: Option<String>,
    value: Option<String>,
}
#[derive(Deserialize)]
struct FhirPeriod {
    start: Option<String>,
    end: Option<String>,
}
#[derive(Deserialize)]
struct Actor {
    role: Concept,
    reference: Ref,
}
#[derive(Deserialize)]
struct Data {
    reference: Ref,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Provision {
    #[serde(rename = "type")]
    type_: Option<String>,
    period: Option<FhirPeriod>,
    #[serde(default)]
    actor: Vec<Actor>,
    #[serde(default)]
    action: Vec<Concept>,
    #[serde(default)]
    code: Vec<Concept>,
    #[serde(default)]
    data: Vec<Data>,
}
#[derive(Deserialize)]
struct Extension {
    url: String,
    #[serde(rename = "valueBoolean")]
    value_boolean: Option<bool>,
    #[serde(rename = "valueCode")]
    value_code: Option<String>,
    #[serde(rename = "valueString")]
    value_string: Option<String>,
    #[serde(default)]
    extension: Vec<Extension>,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KantaConsent {
    status: String,
    date_time: Option<String>,
    #[serde(default)]
    performer: Vec<Ref>,
    #[serde(default)]
    organization: Vec<Ref>,
    provision: Option<Provision>,
    #[serde(default)]
    extension: Vec<Extension>,
}

fn has(c: &Concept, system: &str) -> Option<String> {
    c.coding
        .iter()
        .find(|k| k.system.as_deref() == Some(system))
        .and_then(|k| k.code.clone())
}

fn org_of(r: &Ref) -> Option<String> {
    r.reference
        .as_deref()
        .and_then(|s| s.strip_prefix("Organization/"))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn ms(s: &Option<String>, at: &str) -> Result<Option<i64>, String> {
    match s {
        None => Ok(None),
        Some(v) => datetime::parse_start(v)
            .map(|t| Some(datetime::millis(t)))
            .ok_or_else(|| format!("{at}: not a FHIR date or dateTime")),
    }
}

/// The Kanta kind of a Consent, if it has one.
pub fn kind_of(value: &Value) -> Option<ConsentKind> {
    value
        .get("category")?
        .as_array()?
        .iter()
        .flat_map(|c| {
            c.get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|k| k.get("system").and_then(Value::as_str) == Some(codes::CONSENT_KIND_SYSTEM))
        .and_then(|k| k.get("code").and_then(Value::as_str))
        .and_then(ConsentKind::parse)
}

/// Read a Kanta consent. `Ok(None)`: not a Kanta consent (no kind). `Err`: a Kanta consent that
/// lacks what its kind needs (the FHIRPath and what is wrong) — refused when written.
pub fn read(value: &Value) -> Result<Option<ConsentRecord>, String> {
    let has_kind_system = value
        .get("category")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .any(|k| k.get("system").and_then(Value::as_str) == Some(codes::CONSENT_KIND_SYSTEM));
    if !has_kind_system {
        return Ok(None);
    }
    let kind = kind_of(value).ok_or_else(|| {
        format!(
            "Consent.category: the {} code is not one of {}",
            codes::CONSENT_KIND_SYSTEM,
            ConsentKind::ALL.map(ConsentKind::code).join(", ")
        )
    })?;
    let c: KantaConsent =
        serde_json::from_value(value.clone()).map_err(|e| format!("Consent: {e}"))?;
    let recorded_at = ms(&c.date_time, "Consent.dateTime")?
        .ok_or_else(|| "Consent.dateTime: a Kanta consent says when it was recorded".to_string())?;
    let ext = |url: &str| c.extension.iter().find(|e| e.url == url);
    let recorded_as = match ext(codes::RECORDED_AS_URL) {
        Some(e) => Some(
            e.value_code
                .as_deref()
                .and_then(RecordedAs::parse)
                .ok_or("Consent.extension(recorded-as): self, guardian, proxy or care-unit")?,
        ),
        None => None,
    };
    let performer = c.performer.first();
    let performer_hetu = performer
        .and_then(|p| p.identifier.as_ref())
        .filter(|i| i.system.as_deref() == Some(codes::HETU_SYSTEM))
        .and_then(|i| i.value.clone());
    let performer_name = performer.and_then(|p| p.display.clone());
    let recorder_professional = c
        .performer
        .iter()
        .filter_map(|p| p.identifier.as_ref())
        .find(|i| i.system.as_deref() == Some(codes::PROFESSIONAL_SYSTEM))
        .and_then(|i| i.value.clone());
    let recorder_org = c
        .performer
        .iter()
        .filter_map(|p| p.identifier.as_ref())
        .find(|i| i.system.as_deref() == Some(codes::ORGANISATION_SYSTEM))
        .and_then(|i| i.value.clone());
    let yields_in_emergency = ext(codes::YIELDS_IN_EMERGENCY_URL)
        .and_then(|e| e.value_boolean)
        .unwrap_or(false);
    let provision = c.provision.as_ref();
    let period = match provision.and_then(|p| p.period.as_ref()) {
        Some(p) => Period {
            from: ms(&p.start, "Consent.provision.period.start")?,
            to: ms(&p.end, "Consent.provision.period.end")?,
        },
        None => Period::always(),
    };
    let text = provision
        .and_then(|p| p.code.iter().find_map(|k| k.text.clone()))
        .filter(|t| !t.trim().is_empty());
    let mut record = ConsentRecord {
        kind,
        active: c.status == "active",
        recorded_at,
        recorded_as,
        performer_hetu,
        performer_name,
        recorder_org,
        recorder_professional,
        domain: None,
        period,
        prohibition: None,
        yields_in_emergency,
        mandate: None,
        text,
        permit: provision.and_then(|p| p.type_.as_deref()) == Some("permit"),
        fields: BTreeMap::new(),
    };
    match kind {
        ConsentKind::InformationNotice | ConsentKind::PrescriptionProhibition => {}
        ConsentKind::DisclosureConsent => {
            let code = provision
                .and_then(|p| p.code.iter().find_map(|k| has(k, codes::CARE_DOMAIN_SYSTEM)))
                .ok_or("Consent.provision.code: a disclosure consent names its care domain (urn:kanta:cs:care-domain: health or social)")?;
            record.domain = Some(
                CareDomain::parse(&code)
                    .ok_or("Consent.provision.code: the care domain is health or social")?,
            );
        }
        ConsentKind::DisclosureProhibition => {
            let p = provision.ok_or("Consent.provision: a prohibition names what it covers")?;
            let org = p
                .actor
                .iter()
                .find(|a| {
                    has(&a.role, codes::PARTICIPATION_TYPE_SYSTEM).as_deref() == Some("CST")
                })
                .and_then(|a| org_of(&a.reference))
                .ok_or("Consent.provision.actor: a prohibition names the provider (role CST, Organization/<id>)")?;
            let register = p.code.iter().find_map(|k| has(k, codes::REGISTER_SYSTEM));
            let event = p
                .data
                .iter()
                .find_map(|d| d.reference.reference.clone())
                .filter(|r| r.starts_with("Encounter/"));
            record.prohibition = Some(match (register, event) {
                (None, None) => ProhibitionScope::Provider { org },
                (Some(register), None) => ProhibitionScope::Register { org, register },
                (None, Some(encounter)) => ProhibitionScope::ServiceEvent { org, encounter },
                (Some(_), Some(_)) => {
                    return Err("Consent.provision: a prohibition covers a register or a service event, not both".into())
                }
            });
        }
        ConsentKind::PurchasedServiceMandate => {
            let organiser =
                c.organization.first().and_then(org_of).ok_or(
                    "Consent.organization: a purchased-services mandate names the organiser",
                )?;
            let p =
                provision.ok_or("Consent.provision: a mandate says what the producer may do")?;
            let producer = p
                .actor
                .iter()
                .find(|a| has(&a.role, codes::PARTICIPATION_TYPE_SYSTEM).as_deref() == Some("PRF"))
                .and_then(|a| org_of(&a.reference));
            let action = |code: &str| {
                p.action
                    .iter()
                    .any(|a| has(a, codes::CONSENT_ACTION_SYSTEM).as_deref() == Some(code))
            };
            record.mandate = Some(PurchaseMandate {
                organiser,
                producer,
                valid: period,
                retrieve: action("access"),
                store: action("collect"),
            });
        }
        ConsentKind::OrganDonationWill => {}
        ConsentKind::LivingWill => {
            if let Some(e) = ext(codes::LIVING_WILL_URL) {
                for f in &e.extension {
                    if let Some(v) = &f.value_string {
                        record.fields.insert(f.url.clone(), v.clone());
                    }
                }
            }
        }
    }
    Ok(Some(record))
}

/// What a Consent's body says of its recorder (`urn:kanta:ext:recorded-as`), for the rule of who
/// records a patient's choices: none, one known code, or anything else (several, another code, not
/// a code) — the last refused like a claim to be the patient.
pub fn recorder_claim(value: &Value) -> RecorderClaim {
    let mut claims = value
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("url").and_then(Value::as_str) == Some(codes::RECORDED_AS_URL));
    match (claims.next(), claims.next()) {
        (None, _) => RecorderClaim::None,
        (Some(e), None) => e
            .get("valueCode")
            .and_then(Value::as_str)
            .and_then(RecordedAs::parse)
            .map_or(RecorderClaim::Unreadable, RecorderClaim::Claims),
        (Some(_), Some(_)) => RecorderClaim::Unreadable,
    }
}

/// A care unit's recording of a Kanta consent as the server stores it (R-CONSENT-1, seed 000 §9,
/// seed 004): `recorded-as` is `care-unit` and the performer is the request's professional and
/// organisation — whatever the body said of them (the rule refused any claim to be the patient, a
/// guardian or a proxy before this). Anything that is not a Kanta consent is left as it came.
pub fn stamp_care_unit(value: &mut Value, org: &str, professional: &str) {
    if kind_of(value).is_none() {
        return;
    }
    let Some(map) = value.as_object_mut() else {
        return;
    };
    let mut ext: Vec<Value> = match map.remove("extension") {
        Some(Value::Array(a)) => a,
        _ => vec![],
    };
    ext.retain(|e| e.get("url").and_then(Value::as_str) != Some(codes::RECORDED_AS_URL));
    ext.insert(
        0,
        json!({"url": codes::RECORDED_AS_URL, "valueCode": RecordedAs::CareUnit.code()}),
    );
    map.insert("extension".into(), Value::Array(ext));
    map.insert(
        "performer".into(),
        json!([
            {"type": "Practitioner", "identifier": {"system": codes::PROFESSIONAL_SYSTEM, "value": professional}},
            {"type": "Organization", "identifier": {"system": codes::ORGANISATION_SYSTEM, "value": org}},
        ]),
    );
}

/// What decides among several records of one kind: the same key, latest `dateTime` wins.
fn key(r: &ConsentRecord, id: &str) -> String {
    match r.kind {
        ConsentKind::DisclosureConsent => {
            format!("consent:{}", r.domain.map_or("", CareDomain::code))
        }
        ConsentKind::DisclosureProhibition => format!("prohibition:{:?}", r.prohibition),
        ConsentKind::PurchasedServiceMandate => format!("mandate:{id}"),
        ConsentKind::InformationNotice
        | ConsentKind::PrescriptionProhibition
        | ConsentKind::OrganDonationWill
        | ConsentKind::LivingWill => r.kind.code().to_string(),
    }
}

/// Whether two records of one kind and key decide alike (everything but who recorded them and
/// when).
fn decides_alike(a: &ConsentRecord, b: &ConsentRecord) -> bool {
    a.kind == b.kind
        && a.active == b.active
        && a.domain == b.domain
        && a.period == b.period
        && a.prohibition == b.prohibition
        && a.yields_in_emergency == b.yields_in_emergency
        && a.mandate == b.mandate
        && a.text == b.text
        && a.permit == b.permit
        && a.fields == b.fields
}

/// Issue 29: a recording that changes nothing — the latest record of its kind and key (among a
/// patient's `existing` records, `(id, record)`) already decides exactly as it would — is refused,
/// so that repeating a choice cannot pile up records. `None`: it changes something.
pub fn changes_nothing(
    new_id: &str,
    new: &ConsentRecord,
    existing: &[(String, ConsentRecord)],
) -> bool {
    let k = key(new, new_id);
    existing
        .iter()
        .filter(|(id, r)| key(r, id) == k)
        .max_by(|a, b| (a.1.recorded_at, &a.0).cmp(&(b.1.recorded_at, &b.0)))
        .is_some_and(|(_, latest)| decides_alike(latest, new))
}

/// The records in force: per kind and key the latest, if it is active. Input: `(id, record)`.
pub fn in_force(records: &[(String, ConsentRecord)]) -> Vec<(String, ConsentRecord)> {
    let mut latest: BTreeMap<String, &(String, ConsentRecord)> = BTreeMap::new();
    for item in records {
        let k = key(&item.1, &item.0);
        match latest.get(&k) {
            Some(have) if (have.1.recorded_at, &have.0) >= (item.1.recorded_at, &item.0) => {}
            _ => {
                latest.insert(k, item);
            }
        }
    }
    latest
        .into_values()
        .filter(|(_, r)| r.active)
        .cloned()
        .collect()
}

/// The disclosure rule's facts from a patient's Consents: (id, the register holding it, the current
/// version's JSON). A Kanta consent that cannot be read is an error (the decision then fails
/// closed), never skipped: an older record must not decide in its place. A purchased-services
/// mandate counts only when the organiser's own register holds it.
pub fn facts<'a>(
    consents: impl IntoIterator<Item = (&'a str, Option<&'a str>, &'a Value)>,
) -> Result<ConsentFacts, String> {
    let mut records: Vec<(String, ConsentRecord)> = vec![];
    for (id, holder, v) in consents {
        let Some(r) = read(v).map_err(|e| format!("Consent/{id}: {e}"))? else {
            continue;
        };
        if let Some(m) = &r.mandate {
            if holder != Some(m.organiser.as_str()) {
                continue;
            }
        }
        records.push((id.to_string(), r));
    }
    let mut f = ConsentFacts::default();
    for (_, r) in in_force(&records) {
        match r.kind {
            ConsentKind::InformationNotice => f.informed = true,
            ConsentKind::DisclosureConsent => {
                if let Some(d) = r.domain {
                    f.consents.push((d, r.period));
                }
            }
            ConsentKind::DisclosureProhibition => {
                if let Some(scope) = r.prohibition {
                    f.prohibitions.push(Prohibition {
                        scope,
                        yields_in_emergency: r.yields_in_emergency,
                    });
                }
            }
            ConsentKind::PrescriptionProhibition => {
                f.prescription_prohibition = Some(r.yields_in_emergency)
            }
            ConsentKind::PurchasedServiceMandate => f.mandates.extend(r.mandate),
            ConsentKind::OrganDonationWill | ConsentKind::LivingWill => {}
        }
    }
    Ok(f)
}

/// Who records a consent, as MyKanta writes it.
#[derive(Clone, Debug)]
pub struct Recorder {
    pub recorded_as: RecordedAs,
    pub hetu: String,
    pub name: String,
}

/// A new version (or the first) of a Kanta consent, as MyKanta writes it.
#[derive(Clone, Debug)]
pub struct Draft {
    pub kind: ConsentKind,
    pub active: bool,
    pub patient: String,
    pub recorded_at: String,
    pub recorder: Recorder,
    pub domain: Option<CareDomain>,
    pub prohibition: Option<ProhibitionScope>,
    pub yields_in_emergency: Option<bool>,
    pub text: Option<String>,
    pub permit: Option<bool>,
    pub fields: Vec<(String, String)>,
}

impl Draft {
    pub fn new(kind: ConsentKind, patient: &str, recorded_at: &str, recorder: Recorder) -> Draft {
        Draft {
            kind,
            active: true,
            patient: patient.to_string(),
            recorded_at: recorded_at.to_string(),
            recorder,
            domain: None,
            prohibition: None,
            yields_in_emergency: None,
            text: None,
            permit: None,
            fields: vec![],
        }
    }

    pub fn to_json(&self) -> Value {
        let mut ext = vec![
            json!({"url": codes::RECORDED_AS_URL, "valueCode": self.recorder.recorded_as.code()}),
        ];
        if let Some(y) = self.yields_in_emergency {
            ext.push(json!({"url": codes::YIELDS_IN_EMERGENCY_URL, "valueBoolean": y}));
        }
        if !self.fields.is_empty() {
            let sub: Vec<Value> = self
                .fields
                .iter()
                .map(|(k, v)| json!({"url": k, "valueString": v}))
                .collect();
            ext.push(json!({"url": codes::LIVING_WILL_URL, "extension": sub}));
        }
        let mut provision = serde_json::Map::new();
        if let Some(p) = self.permit {
            provision.insert("type".into(), json!(if p { "permit" } else { "deny" }));
        }
        let mut code = vec![];
        if let Some(d) = self.domain {
            code.push(json!({"coding": [{"system": codes::CARE_DOMAIN_SYSTEM, "code": d.code()}]}));
        }
        if let Some(t) = &self.text {
            code.push(json!({"text": t}));
        }
        if let Some(scope) = &self.prohibition {
            provision.insert(
                "actor".into(),
                json!([{
                    "role": {"coding": [{"system": codes::PARTICIPATION_TYPE_SYSTEM, "code": "CST"}]},
                    "reference": {"reference": format!("Organization/{}", scope.org())}
                }]),
            );
            match scope {
                ProhibitionScope::Provider { .. } => {}
                ProhibitionScope::Register { register, .. } => code.push(
                    json!({"coding": [{"system": codes::REGISTER_SYSTEM, "code": register}]}),
                ),
                ProhibitionScope::ServiceEvent { encounter, .. } => {
                    provision.insert(
                        "data".into(),
                        json!([{"meaning": "related", "reference": {"reference": encounter}}]),
                    );
                }
            }
        }
        if !code.is_empty() {
            provision.insert("code".into(), Value::Array(code));
        }
        let mut v = json!({
            "resourceType": "Consent",
            "status": if self.active { "active" } else { "inactive" },
            "scope": {"coding": [{"system": codes::CONSENT_SCOPE_SYSTEM, "code": self.kind.scope()}]},
            "category": [{"coding": [{"system": codes::CONSENT_KIND_SYSTEM, "code": self.kind.code()}]}],
            "patient": {"reference": self.patient},
            "dateTime": self.recorded_at,
            "performer": [{
                "identifier": {"system": codes::HETU_SYSTEM, "value": self.recorder.hetu},
                "display": self.recorder.name,
            }],
            "extension": ext,
        });
        if !provision.is_empty() {
            v["provision"] = Value::Object(provision);
        }
        v
    }
}

/// What the disclosure rule needs of a record: its register (health or social care, and the
/// register code) and its service event. Reads only those elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordTags {
    pub register: Option<String>,
    pub social: bool,
    pub service_event: Option<String>,
    /// The tags cannot be told exactly (text that does not parse, several register tags, a
    /// register tag without a code): every prohibition of the holder covers the record.
    pub unreadable: bool,
}

/// Read a stored record's tags from its JSON text, with the same reader as the write path's
/// service-event index (`display::encounter_reference`), so the rule and the visits index agree on
/// every record however its other elements are shaped. Fails closed: what cannot be told exactly
/// is `unreadable`, never "no tags".
pub fn record_tags(json: &str) -> RecordTags {
    let Some(doc) = crate::json::lite(json) else {
        return RecordTags {
            unreadable: true,
            ..RecordTags::default()
        };
    };
    record_tags_of(&doc)
}

/// [`record_tags`] of a parsed record (either form).
pub fn record_tags_of<'a>(record: impl crate::json::Node<'a>) -> RecordTags {
    use crate::json::Node;
    let mut t = RecordTags::default();
    let mut registers = 0usize;
    let tags = record.field("meta").and_then(|m| m.field("tag"));
    if tags.is_some_and(|t| !t.is_array()) {
        t.unreadable = true;
    }
    for tag in tags.into_iter().flat_map(Node::items) {
        let system = tag.field("system").and_then(Node::text);
        let social = match system {
            Some(codes::REGISTER_SYSTEM) => false,
            Some(codes::SOCIAL_REGISTER_SYSTEM) => true,
            _ => continue,
        };
        registers += 1;
        t.social |= social;
        match tag.field("code").and_then(Node::text) {
            Some(code) => t.register = Some(code.to_string()),
            None => t.unreadable = true,
        }
    }
    if registers > 1 {
        // Two registers: a prohibition of either covers it (it must not escape one by naming two).
        t.unreadable = true;
        t.register = None;
    }
    t.service_event = crate::display::encounter_reference(record).map(service_event_of);
    t
}

/// `Encounter/<id>` of a reference to an Encounter, however written (absolute, with `_history`).
fn service_event_of(r: &str) -> String {
    match r.rfind("Encounter/") {
        Some(i) => {
            let rest = &r[i + "Encounter/".len()..];
            let id = rest.split('/').next().unwrap_or(rest);
            format!("Encounter/{id}")
        }
        None => r.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Recorder {
        Recorder {
            recorded_as: RecordedAs::Myself,
            hetu: "010594Y9021".into(),
            name: "Aino".into(),
        }
    }

    #[test]
    fn drafts_read_back_and_the_latest_decides() {
        let mut d = Draft::new(
            ConsentKind::DisclosureProhibition,
            "Patient/p",
            "2026-01-01T10:00:00Z",
            me(),
        );
        d.prohibition = Some(ProhibitionScope::Register {
            org: "org-a".into(),
            register: "4".into(),
        });
        d.yields_in_emergency = Some(true);
        let v1 = d.to_json();
        let r = read(&v1).unwrap().unwrap();
        assert_eq!(r.prohibition, d.prohibition);
        assert!(r.yields_in_emergency && r.active);
        let mut c = Draft::new(
            ConsentKind::DisclosureConsent,
            "Patient/p",
            "2026-01-01T10:00:00Z",
            me(),
        );
        c.domain = Some(CareDomain::Health);
        let consent = c.to_json();
        let notice = Draft::new(
            ConsentKind::InformationNotice,
            "Patient/p",
            "2026-01-01T09:00:00Z",
            me(),
        )
        .to_json();
        let f = facts([
            ("a", None, &v1),
            ("b", None, &consent),
            ("n", None, &notice),
        ])
        .unwrap();
        assert!(f.informed);
        assert_eq!(f.prohibitions.len(), 1);
        assert!(f.consent_in_force(CareDomain::Health, 0));
        assert!(!f.consent_in_force(CareDomain::Social, 0));
        // Lifted later (a later record of the same scope, inactive): no longer in force.
        let mut lift = d.clone();
        lift.active = false;
        lift.recorded_at = "2026-02-01T10:00:00Z".into();
        let v2 = lift.to_json();
        let f = facts([("a", None, &v1), ("c", None, &v2)]).unwrap();
        assert!(f.prohibitions.is_empty());
        // An HL7 example (no Kanta kind) decides nothing and is not an error.
        let hl7 = json!({"resourceType": "Consent", "status": "active", "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}]});
        assert_eq!(read(&hl7), Ok(None));
        // A Kanta kind without what it needs is an error naming the element.
        let mut bad = consent.clone();
        bad["provision"] = json!({});
        assert!(read(&bad)
            .unwrap_err()
            .starts_with("Consent.provision.code"));
    }

    /// Issue 29: the rule's reader fails closed — two register tags, a tag without its code, or
    /// text that does not parse leave the record covered by every prohibition of its holder — and
    /// an unexpected shape elsewhere never loses the service event the visits index has.
    #[test]
    fn record_tags_fail_closed() {
        let two = record_tags(
            r#"{"resourceType":"Observation","meta":{"tag":[{"system":"urn:oid:1.2.246.537.5.40150","code":"2"},{"system":"urn:oid:1.2.246.537.5.40150","code":"3"}]}}"#,
        );
        assert!(two.unreadable);
        assert_eq!(two.register, None);
        let mixed = record_tags(
            r#"{"meta":{"tag":[{"system":"urn:oid:1.2.246.537.5.40150","code":"2"},{"system":"urn:oid:1.2.246.537.6.1264","code":"1"}]}}"#,
        );
        assert!(mixed.unreadable && mixed.social);
        let codeless =
            record_tags(r#"{"meta":{"tag":[{"system":"urn:oid:1.2.246.537.5.40150"}]}}"#);
        assert!(codeless.unreadable);
        let not_a_list = record_tags(r#"{"meta":{"tag":{"system":"x"}}}"#);
        assert!(not_a_list.unreadable);
        // `context` of an unexpected shape: the encounter is still read, as the index reads it.
        let odd = record_tags(
            r#"{"resourceType":"Observation","encounter":{"reference":"Encounter/e1"},"context":"odd","meta":{"tag":[{"system":"urn:oid:1.2.246.537.5.40150","code":"2"}]}}"#,
        );
        assert_eq!(odd.service_event.as_deref(), Some("Encounter/e1"));
        assert_eq!(odd.register.as_deref(), Some("2"));
        assert!(!odd.unreadable);
    }

    mod agreement {
        use super::super::*;
        use proptest::prelude::*;

        fn reference() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(json!("Encounter/e1")),
                Just(json!("https://x.example/fhir/Encounter/e2/_history/3")),
                Just(json!("Condition/c1")),
                Just(json!(7)),
                Just(Value::Null),
            ]
        }

        fn shape(r: Value) -> impl Strategy<Value = Option<Value>> {
            prop_oneof![
                Just(None),
                Just(Some(json!({"reference": r.clone()}))),
                Just(Some(json!([{"reference": r.clone()}]))),
                Just(Some(json!({"encounter": [{"reference": r.clone()}]}))),
                Just(Some(json!({"encounter": {"reference": r}}))),
                Just(Some(json!("text"))),
                Just(Some(json!(3))),
            ]
        }

        fn tag() -> impl Strategy<Value = Value> {
            (
                prop_oneof![
                    Just(Some(codes::REGISTER_SYSTEM)),
                    Just(Some(codes::SOCIAL_REGISTER_SYSTEM)),
                    Just(Some("urn:other")),
                    Just(None),
                ],
                prop_oneof![Just(Some("2")), Just(Some("3")), Just(None)],
            )
                .prop_map(|(system, code)| {
                    let mut t = serde_json::Map::new();
                    if let Some(s) = system {
                        t.insert("system".into(), json!(s));
                    }
                    if let Some(c) = code {
                        t.insert("code".into(), json!(c));
                    }
                    Value::Object(t)
                })
        }

        fn record() -> impl Strategy<Value = Value> {
            (reference(), reference())
                .prop_flat_map(|(a, b)| {
                    (shape(a), shape(b), proptest::collection::vec(tag(), 0..4))
                })
                .prop_map(|(encounter, context, tags)| {
                    let mut v = json!({"resourceType": "Observation", "meta": {"tag": tags}});
                    if let Some(e) = encounter {
                        v["encounter"] = e;
                    }
                    if let Some(c) = context {
                        v["context"] = c;
                    }
                    v
                })
        }

        proptest! {
            /// The disclosure rule and the service-event index (written by `write.rs` from
            /// `display::encounter_reference`) agree on every record, however it is shaped; the
            /// stored text and the parsed value read alike; several register tags never escape.
            #[test]
            fn the_rule_and_the_index_agree(v in record()) {
                let from_text = record_tags(&v.to_string());
                let from_value = record_tags_of(&v);
                prop_assert_eq!(&from_text, &from_value);
                let indexed = crate::display::encounter_reference(&v)
                    .filter(|e| e.starts_with("Encounter/"));
                if let Some(e) = indexed {
                    prop_assert_eq!(from_text.service_event.as_deref(), Some(e));
                }
                let registers = v["meta"]["tag"].as_array().map_or(0, |a| a.iter().filter(|t| {
                    matches!(t["system"].as_str(), Some(codes::REGISTER_SYSTEM | codes::SOCIAL_REGISTER_SYSTEM))
                }).count());
                if registers > 1 {
                    prop_assert!(from_text.unreadable);
                }
            }
        }
    }

    #[test]
    fn record_tags_read_register_and_service_event() {
        let t = record_tags(
            r#"{"resourceType":"Observation","meta":{"tag":[{"system":"urn:oid:1.2.246.537.5.40150","code":"4"}]},"encounter":{"reference":"Encounter/e1"}}"#,
        );
        assert_eq!(t.register.as_deref(), Some("4"));
        assert_eq!(t.service_event.as_deref(), Some("Encounter/e1"));
        assert!(!t.social);
        let t = record_tags(
            r#"{"resourceType":"DocumentReference","meta":{"tag":[{"system":"urn:oid:1.2.246.537.6.1264","code":"1"}]},"context":{"encounter":[{"reference":"Encounter/e9"}]}}"#,
        );
        assert!(t.social);
        assert_eq!(t.service_event.as_deref(), Some("Encounter/e9"));
        assert!(record_tags("not json").unreadable);
        let t = record_tags(
            r#"{"encounter":{"reference":"https://x.example/fhir/Encounter/e3/_history/2"}}"#,
        );
        assert_eq!(t.service_event.as_deref(), Some("Encounter/e3"));
    }
}
