//! The national display rules of MyKanta (R-DOC-1…11, R-VIEW-8): whether a document of the Patient
//! Data Repository, or a prescription or dispensation of the Prescription Centre, is shown to the
//! citizen, and if not, every rule that hides it, in the order of the rules. The archivist view
//! (R-DOC-12) reports the same reasons, so "why is it not shown" has one answer.
//!
//! Pure: the facts and `now` come in, a decision goes out. Which national views MyKanta displays is
//! configuration ([`ViewTable`], parsed from text the caller reads), not code.

use std::collections::BTreeMap;

/// Where the service event took place (R-DOC-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CareSetting {
    Outpatient,
    /// Ward care: only medications and summaries are shown.
    Inpatient,
}

/// What kind of content a document carries, as far as the inpatient rule cares (R-DOC-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentKind {
    Medication,
    Summary,
    Other,
}

/// The document's main view (R-DOC-6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MainView {
    /// A code of the national views code system (`urn:oid:1.2.246.537.6.12.2002`).
    National(String),
    /// An organisation's own view: never shown.
    Local,
    /// No view at all.
    Missing,
}

/// What the repository knows about one document (one version of it) and its service event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentFacts {
    /// This is the service-event (primary) document itself, not a care document.
    pub is_service_event: bool,
    /// The service event it is attached to (for a primary document: itself), if any (R-DOC-1).
    pub service_event: Option<CareSetting>,
    /// For a primary document: how many care documents are attached to it (R-DOC-9).
    pub care_documents: usize,
    /// This is the latest version of the document (R-DOC-3).
    pub latest_version: bool,
    /// The latest version is cancelled (R-DOC-3): nothing of the document is shown.
    pub latest_cancelled: bool,
    /// Display delayed until this instant, ms since the epoch (R-DOC-4).
    pub delayed_until: Option<i64>,
    /// Marked as containing information about another person (R-DOC-5).
    pub other_person: bool,
    pub view: MainView,
    /// Archived on a form rather than as journal text (R-DOC-8).
    pub form: bool,
    pub content: ContentKind,
    /// When the document was recorded (its own date), and when its provider joined the platform
    /// (R-VIEW-8: records from before joining, archived later as such, are not shown). ms since the
    /// epoch.
    pub recorded_at: i64,
    pub provider_joined_at: Option<i64>,
}

/// One rule that hides a document. The order of the variants is the order of the rules.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hidden {
    /// R-DOC-1: not attached to a service event.
    NotAttached,
    /// R-VIEW-8: archived from before the provider joined the platform.
    BeforeProviderJoined,
    /// R-DOC-3: a newer version exists.
    NotLatestVersion,
    /// R-DOC-3: the latest version is cancelled.
    Cancelled,
    /// R-DOC-4: delayed until this instant (ms).
    Delayed { until: i64 },
    /// R-DOC-5: contains another person's data.
    OtherPerson,
    /// R-DOC-6: the main view is an organisation's local view.
    LocalView,
    /// R-DOC-6: no main view.
    NoView,
    /// R-DOC-6: a national view that MyKanta does not display.
    ViewNotDisplayed { code: String },
    /// R-DOC-7: inpatient content other than medication and summaries.
    InpatientContent,
    /// R-DOC-8: archived on a form, not as journal text.
    Form,
    /// R-DOC-10, R-DOC-11: a Prescription Centre item that is not shown.
    Centre(PrescriptionHidden),
}

impl Hidden {
    /// A stable code for the reason (archivist API, audit, translations: `hidden-<code>`).
    pub fn code(&self) -> &'static str {
        match self {
            Hidden::NotAttached => "not-attached",
            Hidden::BeforeProviderJoined => "before-provider-joined",
            Hidden::NotLatestVersion => "not-latest-version",
            Hidden::Cancelled => "cancelled",
            Hidden::Delayed { .. } => "delayed",
            Hidden::OtherPerson => "other-person",
            Hidden::LocalView => "local-view",
            Hidden::NoView => "no-view",
            Hidden::ViewNotDisplayed { .. } => "view-not-displayed",
            Hidden::InpatientContent => "inpatient-content",
            Hidden::Form => "form",
            Hidden::Centre(PrescriptionHidden::CancelledTechnical) => {
                "prescription-cancelled-technical"
            }
            Hidden::Centre(PrescriptionHidden::CancelledDeath) => "prescription-cancelled-death",
            Hidden::Centre(PrescriptionHidden::DispensationCancelled) => "dispensation-cancelled",
        }
    }

    /// The requirement that states the rule.
    pub fn rule(&self) -> &'static str {
        match self {
            Hidden::NotAttached => "R-DOC-1",
            Hidden::BeforeProviderJoined => "R-VIEW-8",
            Hidden::NotLatestVersion | Hidden::Cancelled => "R-DOC-3",
            Hidden::Delayed { .. } => "R-DOC-4",
            Hidden::OtherPerson => "R-DOC-5",
            Hidden::LocalView | Hidden::NoView | Hidden::ViewNotDisplayed { .. } => "R-DOC-6",
            Hidden::InpatientContent => "R-DOC-7",
            Hidden::Form => "R-DOC-8",
            Hidden::Centre(
                PrescriptionHidden::CancelledTechnical | PrescriptionHidden::CancelledDeath,
            ) => "R-DOC-10",
            Hidden::Centre(PrescriptionHidden::DispensationCancelled) => "R-DOC-11",
        }
    }
}

/// The decision for one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Shown,
    /// R-DOC-9: a service event without care documents: the visit or care period itself only.
    VisitOnly,
    /// Every rule that hides it, in rule order (never empty).
    Hidden(Vec<Hidden>),
}

impl Decision {
    pub fn is_shown(&self) -> bool {
        !matches!(self, Decision::Hidden(_))
    }
}

/// The table shipped with the platform (`config/national-views.txt`).
pub const DEFAULT_VIEW_TABLE: &str = include_str!("../config/national-views.txt");

/// Which national views MyKanta displays: configuration. Text format, one view a line:
/// `<code> <shown|hidden> <name…>`; `#` starts a comment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewTable {
    views: BTreeMap<String, (bool, String)>,
}

impl ViewTable {
    pub fn parse(text: &str) -> Result<ViewTable, String> {
        let mut views = BTreeMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let code = parts.next().unwrap_or("");
            let shown = match parts.next() {
                Some("shown") => true,
                Some("hidden") => false,
                other => {
                    return Err(format!(
                        "line {}: expected `shown` or `hidden` after the code, found {:?}",
                        n + 1,
                        other.unwrap_or("")
                    ))
                }
            };
            if !code.chars().all(|c| c.is_alphanumeric() || c == '.') || code.is_empty() {
                return Err(format!("line {}: bad view code {code:?}", n + 1));
            }
            let name = parts.collect::<Vec<_>>().join(" ");
            if views.insert(code.to_string(), (shown, name)).is_some() {
                return Err(format!("line {}: view {code} listed twice", n + 1));
            }
        }
        Ok(ViewTable { views })
    }

    /// Whether MyKanta displays the national view `code` (unknown codes: no).
    pub fn displays(&self, code: &str) -> bool {
        self.views.get(code).is_some_and(|(shown, _)| *shown)
    }

    pub fn name(&self, code: &str) -> Option<&str> {
        self.views.get(code).map(|(_, n)| n.as_str())
    }
}

/// R-DOC-1…9, R-VIEW-8: is this document shown to the citizen at `now` (ms since the epoch)?
pub fn decide(doc: &DocumentFacts, views: &ViewTable, now: i64) -> Decision {
    let mut hidden = Vec::new();
    if doc.service_event.is_none() {
        hidden.push(Hidden::NotAttached);
    }
    if doc
        .provider_joined_at
        .is_some_and(|joined| doc.recorded_at < joined)
    {
        hidden.push(Hidden::BeforeProviderJoined);
    }
    if !doc.latest_version {
        hidden.push(Hidden::NotLatestVersion);
    }
    if doc.latest_cancelled {
        hidden.push(Hidden::Cancelled);
    }
    if let Some(until) = doc.delayed_until {
        // Shown from the instant the delay ends.
        if now < until {
            hidden.push(Hidden::Delayed { until });
        }
    }
    if doc.other_person {
        hidden.push(Hidden::OtherPerson);
    }
    match &doc.view {
        MainView::Local => hidden.push(Hidden::LocalView),
        // The service event itself carries no content view: the visit is shown by R-DOC-9.
        MainView::Missing if doc.is_service_event => {}
        MainView::Missing => hidden.push(Hidden::NoView),
        MainView::National(code) if !views.displays(code) => {
            hidden.push(Hidden::ViewNotDisplayed { code: code.clone() })
        }
        MainView::National(_) => {}
    }
    // The inpatient rule applies to care documents; the care period itself is always shown.
    if doc.service_event == Some(CareSetting::Inpatient)
        && !doc.is_service_event
        && doc.content == ContentKind::Other
    {
        hidden.push(Hidden::InpatientContent);
    }
    if doc.form {
        hidden.push(Hidden::Form);
    }
    if !hidden.is_empty() {
        return Decision::Hidden(hidden);
    }
    if doc.is_service_event && doc.care_documents == 0 {
        return Decision::VisitOnly;
    }
    Decision::Shown
}

/// An item that passed the display rules: the only thing the citizen's pages and citizen-facing
/// output accept. It can be made only by [`Visible::check`], so rendering data that skipped the rules
/// does not compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visible<T> {
    item: T,
    visit_only: bool,
}

impl<T> Visible<T> {
    /// Apply the rules: the item back as `Visible`, or every reason it is hidden.
    pub fn check(
        item: T,
        facts: &DocumentFacts,
        views: &ViewTable,
        now: i64,
    ) -> Result<Visible<T>, Vec<Hidden>> {
        match decide(facts, views, now) {
            Decision::Shown => Ok(Visible {
                item,
                visit_only: false,
            }),
            Decision::VisitOnly => Ok(Visible {
                item,
                visit_only: true,
            }),
            Decision::Hidden(reasons) => Err(reasons),
        }
    }

    pub fn get(&self) -> &T {
        &self.item
    }

    /// R-DOC-9: only the visit or care period itself is to be shown.
    pub fn visit_only(&self) -> bool {
        self.visit_only
    }
}

/// Why a prescription was cancelled (R-DOC-10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrescriptionCancellation {
    /// A technical error: hidden.
    Technical,
    /// The patient died: hidden.
    PatientDeath,
    /// Any other reason (e.g. treatment ended): shown, as cancelled.
    Other,
}

/// Why a Prescription Centre item is hidden.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PrescriptionHidden {
    /// R-DOC-10.
    CancelledTechnical,
    /// R-DOC-10.
    CancelledDeath,
    /// R-DOC-11.
    DispensationCancelled,
}

/// R-DOC-10: a prescription is shown unless cancelled for technical reasons or the patient's death.
pub fn decide_prescription(
    cancelled: Option<PrescriptionCancellation>,
) -> Result<(), PrescriptionHidden> {
    match cancelled {
        Some(PrescriptionCancellation::Technical) => Err(PrescriptionHidden::CancelledTechnical),
        Some(PrescriptionCancellation::PatientDeath) => Err(PrescriptionHidden::CancelledDeath),
        Some(PrescriptionCancellation::Other) | None => Ok(()),
    }
}

/// A Prescription Centre item, as the display rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CentreItem {
    /// A prescription, and why it was cancelled if it was.
    Prescription(Option<PrescriptionCancellation>),
    /// A dispensation, and whether it was cancelled.
    Dispensation { cancelled: bool },
    /// The citizen's own request about a prescription (renewal, review), or a pharmacy's
    /// reservation of it: always shown to whoever sees the prescriptions.
    Request,
}

/// R-DOC-10, R-DOC-11: the decision for a Prescription Centre item.
pub fn decide_centre(item: CentreItem) -> Decision {
    let r = match item {
        CentreItem::Prescription(c) => decide_prescription(c),
        CentreItem::Dispensation { cancelled } => decide_dispensation(cancelled),
        CentreItem::Request => Ok(()),
    };
    match r {
        Ok(()) => Decision::Shown,
        Err(h) => Decision::Hidden(vec![Hidden::Centre(h)]),
    }
}

impl<T> Visible<T> {
    /// Apply the Prescription Centre's rules (R-DOC-10, R-DOC-11).
    pub fn check_centre(item: T, what: CentreItem) -> Result<Visible<T>, Vec<Hidden>> {
        match decide_centre(what) {
            Decision::Shown | Decision::VisitOnly => Ok(Visible {
                item,
                visit_only: false,
            }),
            Decision::Hidden(reasons) => Err(reasons),
        }
    }
}

/// R-DOC-11: a dispensation (medicine purchase) is shown unless it was cancelled.
pub fn decide_dispensation(cancelled: bool) -> Result<(), PrescriptionHidden> {
    if cancelled {
        Err(PrescriptionHidden::DispensationCancelled)
    } else {
        Ok(())
    }
}

/// The sections of MyKanta's health records (R-VIEW-1, R-VIEW-2) a stored resource is listed under.
/// Which section a resource belongs to is decided once, when it is written (the `section` column),
/// so that a section's list is one indexed, single-patient query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    Visits,
    Diagnoses,
    Lab,
    Imaging,
    Referrals,
    Measurements,
    Risks,
    Vaccinations,
    OralHealth,
    CarePlans,
    Certificates,
    Procedures,
    Prescriptions,
}

impl Section {
    /// Every section, in the order the portal lists them.
    pub const ALL: [Section; 13] = [
        Section::Visits,
        Section::Diagnoses,
        Section::Lab,
        Section::Imaging,
        Section::Referrals,
        Section::Measurements,
        Section::Risks,
        Section::Vaccinations,
        Section::OralHealth,
        Section::CarePlans,
        Section::Certificates,
        Section::Procedures,
        Section::Prescriptions,
    ];

    /// The stable code stored in the database and used in URLs.
    pub fn code(self) -> &'static str {
        match self {
            Section::Visits => "visits",
            Section::Diagnoses => "diagnoses",
            Section::Lab => "lab",
            Section::Imaging => "imaging",
            Section::Referrals => "referrals",
            Section::Measurements => "measurements",
            Section::Risks => "risks",
            Section::Vaccinations => "vaccinations",
            Section::OralHealth => "oral-health",
            Section::CarePlans => "care-plans",
            Section::Certificates => "certificates",
            Section::Procedures => "procedures",
            Section::Prescriptions => "prescriptions",
        }
    }

    pub fn from_code(code: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.code() == code)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const VIEWS: &str = "
        # code  shown|hidden  name
        166     shown         Diagnoosit
        112     shown         Laboratoriotutkimukset
        999.1   hidden        Hallinnollinen
    ";

    fn views() -> ViewTable {
        ViewTable::parse(VIEWS).unwrap()
    }

    /// A care document that every rule lets through.
    fn shown_doc() -> DocumentFacts {
        DocumentFacts {
            is_service_event: false,
            service_event: Some(CareSetting::Outpatient),
            care_documents: 0,
            latest_version: true,
            latest_cancelled: false,
            delayed_until: None,
            other_person: false,
            view: MainView::National("166".into()),
            form: false,
            content: ContentKind::Other,
            recorded_at: NOW - 1000,
            provider_joined_at: Some(NOW - 10_000),
        }
    }

    /// A rule's name, the change to the facts that triggers it, and the one reason it must give.
    type Rule = (&'static str, fn(&mut DocumentFacts), Hidden);

    /// Each rule alone.
    fn single_rules() -> Vec<Rule> {
        vec![
            ("R-DOC-1", |d| d.service_event = None, Hidden::NotAttached),
            (
                "R-VIEW-8",
                |d| d.provider_joined_at = Some(NOW),
                Hidden::BeforeProviderJoined,
            ),
            (
                "R-DOC-3 version",
                |d| d.latest_version = false,
                Hidden::NotLatestVersion,
            ),
            (
                "R-DOC-3 cancelled",
                |d| d.latest_cancelled = true,
                Hidden::Cancelled,
            ),
            (
                "R-DOC-4",
                |d| d.delayed_until = Some(NOW + 1),
                Hidden::Delayed { until: NOW + 1 },
            ),
            ("R-DOC-5", |d| d.other_person = true, Hidden::OtherPerson),
            (
                "R-DOC-6 local",
                |d| d.view = MainView::Local,
                Hidden::LocalView,
            ),
            (
                "R-DOC-6 none",
                |d| d.view = MainView::Missing,
                Hidden::NoView,
            ),
            (
                "R-DOC-6 not displayed",
                |d| d.view = MainView::National("999.1".into()),
                Hidden::ViewNotDisplayed {
                    code: "999.1".into(),
                },
            ),
            (
                "R-DOC-6 unknown",
                |d| d.view = MainView::National("4242".into()),
                Hidden::ViewNotDisplayed {
                    code: "4242".into(),
                },
            ),
            (
                "R-DOC-7",
                |d| d.service_event = Some(CareSetting::Inpatient),
                Hidden::InpatientContent,
            ),
            ("R-DOC-8", |d| d.form = true, Hidden::Form),
        ]
    }

    #[test]
    fn every_rule_alone() {
        let v = views();
        assert_eq!(decide(&shown_doc(), &v, NOW), Decision::Shown);
        for (name, change, reason) in single_rules() {
            let mut d = shown_doc();
            change(&mut d);
            assert_eq!(
                decide(&d, &v, NOW),
                Decision::Hidden(vec![reason.clone()]),
                "{name}"
            );
            assert!(reason.rule().starts_with("R-"), "{name}");
        }
    }

    /// Every combination of rules (2^12): hidden iff any applies, and the reasons are exactly those
    /// of the rules applied (rules with one field in common — the view, the service event — are
    /// combined only where they can co-occur).
    #[test]
    fn every_combination_of_rules() {
        let v = views();
        let rules = single_rules();
        let n = rules.len();
        let mut seen = 0;
        for mask in 0u32..(1 << n) {
            let chosen: Vec<_> = (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| &rules[i])
                .collect();
            // Two changes to the same field cannot both hold.
            let view_rules = chosen.iter().filter(|r| r.0.starts_with("R-DOC-6")).count();
            let event_rules = chosen
                .iter()
                .filter(|r| r.0 == "R-DOC-1" || r.0 == "R-DOC-7")
                .count();
            if view_rules > 1 || event_rules > 1 {
                continue;
            }
            let mut d = shown_doc();
            for r in &chosen {
                (r.1)(&mut d);
            }
            let mut expected: Vec<Hidden> = chosen.iter().map(|r| r.2.clone()).collect();
            expected.sort();
            let got = decide(&d, &v, NOW);
            if expected.is_empty() {
                assert_eq!(got, Decision::Shown);
            } else {
                assert_eq!(got, Decision::Hidden(expected), "mask {mask:#b}");
            }
            seen += 1;
        }
        assert_eq!(seen, 960, "combinations checked");
    }

    /// R-DOC-4: a delay that ends at T hides at T−1 ms and shows at T.
    #[test]
    fn delay_boundary() {
        let v = views();
        let mut d = shown_doc();
        d.delayed_until = Some(NOW);
        assert_eq!(
            decide(&d, &v, NOW - 1),
            Decision::Hidden(vec![Hidden::Delayed { until: NOW }])
        );
        assert_eq!(
            decide(&d, &v, NOW - 1000),
            Decision::Hidden(vec![Hidden::Delayed { until: NOW }])
        );
        assert_eq!(decide(&d, &v, NOW), Decision::Shown);
        d.delayed_until = Some(NOW - 1);
        assert_eq!(
            decide(&d, &v, NOW),
            Decision::Shown,
            "a delay in the past hides nothing"
        );
    }

    /// R-VIEW-8 boundary: archived at the joining instant is shown, a millisecond before is not.
    #[test]
    fn provider_joining_boundary() {
        let v = views();
        let mut d = shown_doc();
        d.provider_joined_at = Some(d.recorded_at);
        assert_eq!(decide(&d, &v, NOW), Decision::Shown);
        d.provider_joined_at = Some(d.recorded_at + 1);
        assert_eq!(
            decide(&d, &v, NOW),
            Decision::Hidden(vec![Hidden::BeforeProviderJoined])
        );
        d.provider_joined_at = None;
        assert_eq!(decide(&d, &v, NOW), Decision::Shown, "joining date unknown");
    }

    /// R-DOC-7: in ward care only medications and summaries; the care period itself is shown; in
    /// outpatient care everything.
    #[test]
    fn inpatient_table() {
        let v = views();
        for (setting, content, primary, shown) in [
            (CareSetting::Inpatient, ContentKind::Medication, false, true),
            (CareSetting::Inpatient, ContentKind::Summary, false, true),
            (CareSetting::Inpatient, ContentKind::Other, false, false),
            (CareSetting::Inpatient, ContentKind::Other, true, true),
            (CareSetting::Outpatient, ContentKind::Other, false, true),
            (
                CareSetting::Outpatient,
                ContentKind::Medication,
                false,
                true,
            ),
        ] {
            let mut d = shown_doc();
            d.service_event = Some(setting);
            d.content = content;
            d.is_service_event = primary;
            d.care_documents = 1;
            assert_eq!(
                decide(&d, &v, NOW).is_shown(),
                shown,
                "{setting:?} {content:?} primary={primary}"
            );
        }
    }

    /// R-DOC-9: a service event without care documents shows only the visit; with them, all of it.
    #[test]
    fn service_event_without_care_documents() {
        let v = views();
        let mut d = shown_doc();
        d.is_service_event = true;
        d.care_documents = 0;
        assert_eq!(decide(&d, &v, NOW), Decision::VisitOnly);
        d.view = MainView::Missing;
        assert_eq!(
            decide(&d, &v, NOW),
            Decision::VisitOnly,
            "a service event needs no view"
        );
        d.view = MainView::Local;
        assert_eq!(
            decide(&d, &v, NOW),
            Decision::Hidden(vec![Hidden::LocalView])
        );
        d.view = MainView::National("166".into());
        d.care_documents = 3;
        assert_eq!(decide(&d, &v, NOW), Decision::Shown);
        d.latest_cancelled = true;
        assert_eq!(
            decide(&d, &v, NOW),
            Decision::Hidden(vec![Hidden::Cancelled]),
            "hidden wins"
        );
    }

    #[test]
    fn prescription_centre_rules() {
        use PrescriptionCancellation::*;
        assert_eq!(decide_prescription(None), Ok(()));
        assert_eq!(
            decide_prescription(Some(Other)),
            Ok(()),
            "R-DOC-10: other cancellations stay visible"
        );
        assert_eq!(
            decide_prescription(Some(Technical)),
            Err(PrescriptionHidden::CancelledTechnical)
        );
        assert_eq!(
            decide_prescription(Some(PatientDeath)),
            Err(PrescriptionHidden::CancelledDeath)
        );
        assert_eq!(decide_dispensation(false), Ok(()));
        assert_eq!(
            decide_dispensation(true),
            Err(PrescriptionHidden::DispensationCancelled)
        );
    }

    #[test]
    fn view_table_is_configuration_and_refuses_nonsense() {
        let v = views();
        assert!(v.displays("166") && v.displays("112"));
        assert!(!v.displays("999.1") && !v.displays("4242"));
        assert_eq!(v.name("166"), Some("Diagnoosit"));
        for bad in [
            "166 maybe Diagnoosit",
            "166",
            "1 6 shown x",
            "166 shown a\n166 hidden b",
            "<x> shown y",
        ] {
            assert!(ViewTable::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ViewTable::parse("# nothing\n\n").unwrap(),
            ViewTable::default()
        );
    }

    #[test]
    fn the_shipped_table_parses_and_covers_the_demo_views() {
        let t = ViewTable::parse(DEFAULT_VIEW_TABLE).unwrap();
        for code in [
            "166", "HOISU", "LAB", "MIT", "RIS", "ROK", "RTG", "TOD", "HOI", "KAR", "KIR", "LAS",
            "NAI", "NEU", "SIL", "SIS", "SUU", "TTH", "YLE",
        ] {
            assert!(t.displays(code), "{code}");
        }
        assert!(!t.displays("HAL"));
    }

    #[test]
    fn only_what_passes_becomes_visible() {
        let v = views();
        let shown = Visible::check("text", &shown_doc(), &v, NOW).unwrap();
        assert_eq!((*shown.get(), shown.visit_only()), ("text", false));
        let mut d = shown_doc();
        d.other_person = true;
        assert_eq!(
            Visible::check("text", &d, &v, NOW),
            Err(vec![Hidden::OtherPerson])
        );
        let mut e = shown_doc();
        e.is_service_event = true;
        assert!(Visible::check((), &e, &v, NOW).unwrap().visit_only());
    }

    #[test]
    fn reason_codes_are_distinct() {
        let mut codes: Vec<&str> = single_rules().iter().map(|r| r.2.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), 11, "{codes:?}");
    }

    #[test]
    fn section_codes_round_trip_and_are_distinct() {
        let mut codes: Vec<&str> = Section::ALL.iter().map(|s| s.code()).collect();
        for s in Section::ALL {
            assert_eq!(Section::from_code(s.code()), Some(s));
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Section::ALL.len());
        assert_eq!(Section::from_code("Lab"), None);
        assert_eq!(Section::from_code(""), None);
    }
}
