//! The display rules' facts, assembled in one place for every page that shows a citizen records
//! (the visits page, the sections, a record's detail, "what is new") and for the archivist view,
//! and the citizen's judge: every record of sealed data through the one access decision
//! (`kanta_domain::access::decide`) with its display decision as a fact, before release — so the
//! audit log records as disclosed exactly what the page may show.

use crate::AppState;
use kanta_domain::access::{self, Decision, Facts, Principal, View};
use kanta_domain::acting::{Acting, MinorRecord};
use kanta_domain::display::{self, DocumentFacts, Visible};
use kanta_fhir::display::{
    care_setting, document_facts, encounter_reference, minor_disclosure, Context,
};
use kanta_fhir::json::{Doc, DocNode, Node};
use kanta_store::audit::{Gated, Sealed, Subject};
use std::collections::HashMap;

/// The organisations holding a page's records, read from the registry once per request: their
/// joining dates (R-VIEW-8) for the facts, their names for the page.
#[derive(Default)]
pub struct Joined(HashMap<String, super::sections::Recorder>);

impl Joined {
    /// The organisations whose registers hold `sealed`'s records.
    pub async fn of_holders<T: Gated>(state: &AppState, sealed: &Sealed<T>) -> Joined {
        Joined::load(state, sealed.holders()).await
    }

    /// These organisations (an unknown one: named by its id, no joining date).
    pub async fn load(state: &AppState, orgs: impl IntoIterator<Item = String>) -> Joined {
        let mut out = HashMap::new();
        for id in orgs {
            if let std::collections::hash_map::Entry::Vacant(e) = out.entry(id) {
                let r = super::sections::recorder(state, e.key()).await;
                e.insert(r);
            }
        }
        Joined(out)
    }

    pub fn at(&self, org: Option<&str>) -> Option<i64> {
        org.and_then(|o| self.0.get(o).and_then(|r| r.joined_at))
    }

    /// The organisations read so far, for the page's names.
    pub(crate) fn into_orgs(self) -> super::sections::Orgs {
        super::sections::Orgs(self.0)
    }
}

/// The facts of one document, given what the caller knows beside it.
pub fn facts<'a, N: Node<'a>>(
    body: N,
    own_date: i64,
    service_event: Option<N>,
    care_documents: usize,
    joined_at: Option<i64>,
) -> DocumentFacts {
    let is_event = body.field("resourceType").and_then(Node::text) == Some("Encounter");
    let setting = if is_event {
        Some(care_setting(body))
    } else {
        service_event.map(care_setting)
    };
    document_facts(
        body,
        &Context {
            service_event: setting,
            care_documents,
            latest_version: true,
            recorded_at: own_date,
            provider_joined_at: joined_at,
        },
    )
}

/// Each subject's display-rule facts, keyed `Type/id`: a document's service event is the row's
/// own (sections) or the Encounter among the same subjects it points to (visits); a service
/// event's care documents are those among the same subjects that point to it.
pub fn facts_of(subjects: &[Subject<'_>], joined: &Joined) -> HashMap<String, DocumentFacts> {
    let docs: Vec<Doc<'_>> = subjects.iter().map(|s| s.json.doc()).collect();
    assemble(subjects, &docs, joined).0
}

/// The facts, for each subject the visit among the same subjects it stands under (the visits
/// page; a section row carries its own service event instead), and each subject's minor facts
/// (R-MINOR-3: the Finnish day of its service event, or its own, and the disclosure code there).
fn assemble(
    subjects: &[Subject<'_>],
    docs: &[Doc<'_>],
    joined: &Joined,
) -> (
    HashMap<String, DocumentFacts>,
    Vec<Option<usize>>,
    Vec<MinorRecord>,
) {
    let bodies: Vec<DocNode<'_>> = docs.iter().map(Doc::node).collect();
    // A section row's own service event, parsed once for all its rows.
    let own_events: Vec<Option<Doc<'_>>> = subjects
        .iter()
        .map(|s| s.service_event.map(|f| f.json.doc()))
        .collect();
    let mut events: HashMap<String, usize> = HashMap::new();
    let mut documents_on: HashMap<String, usize> = HashMap::new();
    for (i, s) in subjects.iter().enumerate() {
        if s.resource_type == "Encounter" {
            events.insert(format!("Encounter/{}", s.id), i);
        } else if let Some(e) = encounter_reference(bodies[i]) {
            *documents_on.entry(e.to_string()).or_default() += 1;
        }
    }
    let mut out = HashMap::new();
    let mut under = vec![None; subjects.len()];
    let mut minor = Vec::with_capacity(subjects.len());
    for (i, s) in subjects.iter().enumerate() {
        // The visit the record was made at: itself, its own service event, or the listed one.
        let own_event = own_events[i].as_ref().map(Doc::node);
        let (event_body, event_at): (Option<DocNode<'_>>, Option<i64>) =
            if s.resource_type == "Encounter" {
                (Some(bodies[i]), s.effective_at)
            } else if let (Some(f), Some(e)) = (s.service_event, own_event) {
                (Some(e), Some(f.effective_at))
            } else {
                match encounter_reference(bodies[i]).and_then(|e| events.get(e).copied()) {
                    Some(j) => (Some(bodies[j]), subjects[j].effective_at),
                    None => (None, s.effective_at),
                }
            };
        let at = event_at.or(s.effective_at).unwrap_or(0);
        minor.push(MinorRecord {
            on: super::helsinki(at).map_or(time::Date::MIN, |t| t.date()),
            disclosure: event_body.and_then(minor_disclosure),
        });
        if s.summary {
            continue;
        }
        let key = format!("{}/{}", s.resource_type, s.id);
        let listed_event = encounter_reference(bodies[i]).and_then(|e| events.get(e).copied());
        let event = own_event.or_else(|| listed_event.map(|j| bodies[j]));
        let care_documents = documents_on.get(&key).copied().unwrap_or(0);
        // R-VIEW-8 compares the record's date with the joining date. A section row has its own
        // date; on the visits page a document stands under its visit, whose date stands for its
        // records' (a document archived later without a date of its own is as old as its visit).
        if s.service_event.is_none() && s.resource_type != "Encounter" {
            under[i] = listed_event;
        }
        let own_date = match (s.service_event, listed_event) {
            (None, Some(j)) => subjects[j].effective_at,
            _ => s.effective_at,
        }
        .unwrap_or(0);
        out.insert(
            key,
            facts(
                bodies[i],
                own_date,
                event,
                care_documents,
                joined.at(s.holder),
            ),
        );
    }
    (out, under, minor)
}

/// The citizen's judge for a page of their records: each subject through the one decision with
/// its display decision; a care document whose service event is among the subjects and refused
/// is refused too (it is shown only under its visit). `facts` keeps each record's facts for the
/// page's [`Visible::check`] after release.
pub fn citizen_judge<'a>(
    principal: &'a Principal,
    view: View,
    acting: &'a Acting,
    joined: &'a Joined,
    facts: &'a mut HashMap<String, DocumentFacts>,
    now_ms: i64,
) -> impl FnOnce(&[Subject<'_>]) -> Vec<Decision> + 'a {
    citizen_judge_reading(principal, view, acting, joined, facts, now_ms, |_, _| {})
}

/// [`citizen_judge`], and `read` sees each subject's parsed JSON once, so that a page takes what
/// it prints from the same parse (what it takes is shown only through [`visible`], after release).
pub fn citizen_judge_reading<'a>(
    principal: &'a Principal,
    view: View,
    acting: &'a Acting,
    joined: &'a Joined,
    facts: &'a mut HashMap<String, DocumentFacts>,
    now_ms: i64,
    mut read: impl FnMut(&Subject<'_>, DocNode<'_>) + 'a,
) -> impl FnOnce(&[Subject<'_>]) -> Vec<Decision> + 'a {
    move |subjects| {
        let docs: Vec<Doc<'_>> = subjects.iter().map(|s| s.json.doc()).collect();
        let (assembled, under, minor) = assemble(subjects, &docs, joined);
        *facts = assembled;
        let action = access::Action::View(view);
        let mut decisions: Vec<Decision> = subjects
            .iter()
            .zip(&minor)
            .map(|(s, m)| {
                let key = format!("{}/{}", s.resource_type, s.id);
                let shown = facts
                    .get(&key)
                    .map(|f| display::decide(f, super::records::views(), now_ms));
                access::decide(
                    principal,
                    &action,
                    s.target(),
                    &Facts {
                        display: shown.as_ref(),
                        acting: Some(acting),
                        minor: Some(m),
                        ..Facts::default()
                    },
                    now_ms,
                )
            })
            .collect();
        // Documents under a refused visit stay with it.
        let refused: Vec<bool> = decisions.iter().map(|d| !d.is_permit()).collect();
        for (d, visit) in decisions.iter_mut().zip(&under) {
            if visit.is_some_and(|j| refused[j]) {
                *d = Decision::Denied(vec![access::Denial::Hidden(display::Hidden::NotAttached)]);
            }
        }
        // What the page prints is read of released records only (issue 30: every hidden
        // document's narrative was sanitised on every view).
        for ((s, d), decision) in subjects.iter().zip(&docs).zip(&decisions) {
            if decision.is_permit() {
                read(s, d.node());
            }
        }
        decisions
    }
}

/// The page's view of a released record: the display rules again over the facts the judge used
/// (the templates take only `Visible`).
pub fn visible<T>(
    item: T,
    facts: &HashMap<String, DocumentFacts>,
    resource_type: &str,
    id: &str,
    now_ms: i64,
) -> Option<Visible<T>> {
    let f = facts.get(&format!("{resource_type}/{id}"))?;
    Visible::check(item, f, super::records::views(), now_ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanta_domain::display::{decide, Decision, Hidden};
    use kanta_store::audit::Json;
    use serde_json::{json, Value};

    fn subject<'a>(t: &'a str, id: &'a str, body: &'a Value, at: i64) -> Subject<'a> {
        Subject {
            patient: Some(kanta_domain::ids::PatientKey(1)),
            holder: Some("org-a"),
            resource_type: t,
            id,
            json: Json::Value(body),
            service_event: None,
            summary: false,
            effective_at: Some(at),
        }
    }

    /// R-VIEW-8 on the visits page: a document under a visit from before its organisation joined
    /// is as old as the visit, even when it was archived (and so dated) after joining.
    #[test]
    fn a_document_is_as_old_as_its_visit() {
        let (joined, visit_at, archived_at) = (2_000, 1_000, 3_000);
        let enc = json!({"resourceType": "Encounter", "class": {"code": "AMB"},
            "meta": {"tag": [{"system": "urn:oid:1.2.246.537.6.12.2002", "code": "YLE"}]}});
        let doc = json!({"resourceType": "Observation", "encounter": {"reference": "Encounter/e"},
            "meta": {"tag": [{"system": "urn:oid:1.2.246.537.6.12.2002", "code": "LAB"}]}});
        let subjects = vec![
            subject("Encounter", "e", &enc, visit_at),
            subject("Observation", "o", &doc, archived_at),
        ];
        let mut org = super::super::sections::Recorder::unknown("org-a");
        org.joined_at = Some(joined);
        let joined = Joined([("org-a".to_string(), org)].into_iter().collect());
        let facts = facts_of(&subjects, &joined);
        let d = decide(
            &facts["Observation/o"],
            super::super::records::views(),
            10_000,
        );
        match d {
            Decision::Hidden(h) => assert!(h.contains(&Hidden::BeforeProviderJoined), "{h:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(facts["Encounter/e"].care_documents, 1);
    }

    /// Issue 30: what a page prints is read of released records only — a hidden document's body
    /// (its narrative sanitised, say) is never looked at.
    #[test]
    fn the_page_reads_released_records_only() {
        let (joined_at, visit_at) = (2_000, 3_000);
        let enc = json!({"resourceType": "Encounter", "class": {"code": "AMB"},
            "meta": {"tag": [{"system": "urn:oid:1.2.246.537.6.12.2002", "code": "YLE"}]}});
        let shown = json!({"resourceType": "Observation", "encounter": {"reference": "Encounter/e"},
            "meta": {"tag": [{"system": "urn:oid:1.2.246.537.6.12.2002", "code": "LAB"}]}});
        // Delayed by the professional until far in the future (R-DOC-4): hidden.
        let delayed = json!({"resourceType": "Observation", "encounter": {"reference": "Encounter/e"},
            "meta": {"tag": [{"system": "urn:oid:1.2.246.537.6.12.2002", "code": "LAB"}],
                "extension": [{"url": kanta_fhir::codes::RELEASE_FOR_PATIENT_VIEWING_URL, "valueDateTime": "2999-01-01T00:00:00Z"}]}});
        let subjects = vec![
            subject("Encounter", "e", &enc, visit_at),
            subject("Observation", "o", &shown, visit_at),
            subject("Observation", "hidden", &delayed, visit_at),
        ];
        let mut org = super::super::sections::Recorder::unknown("org-a");
        org.joined_at = Some(joined_at);
        let joined = Joined([("org-a".to_string(), org)].into_iter().collect());
        let principal = Principal::Citizen {
            person: kanta_domain::ids::PatientKey(1),
            acting_for: None,
        };
        let acting = Acting {
            standing: kanta_domain::acting::Standing::Own,
            subject: kanta_domain::acting::SubjectFacts {
                born: time::macros::date!(1980 - 01 - 01),
                deceased: false,
                non_disclosure: false,
            },
            today: time::macros::date!(2026 - 12 - 05),
        };
        let mut facts = HashMap::new();
        let mut read = vec![];
        let decisions = {
            let judge = citizen_judge_reading(
                &principal,
                View::Section(kanta_domain::display::Section::Visits),
                &acting,
                &joined,
                &mut facts,
                10_000,
                |s, _| read.push(s.id.to_string()),
            );
            judge(&subjects)
        };
        let permitted: Vec<&str> = subjects
            .iter()
            .zip(&decisions)
            .filter(|(_, d)| d.is_permit())
            .map(|(s, _)| s.id)
            .collect();
        assert!(!permitted.contains(&"hidden"), "{decisions:?}");
        assert_eq!(read, permitted);
    }
}
