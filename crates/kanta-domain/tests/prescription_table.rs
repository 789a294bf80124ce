//! R-RX-1, R-RX-2, R-ACT-1: every phase of a prescription × every event, as a table. A cell
//! missing from the table fails, so a new phase or event does not pass until it is written down.

use kanta_domain::prescription::{
    check, CancelReason, Event, Measure, Phase, Refusal, Reservation, State,
};

const NOW: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;
const ME: &str = "org-apteekki-1";
const OTHER: &str = "org-apteekki-2";

/// A prescription of 90 units, 30 dispensed, standing in `phase` for pharmacy ME.
fn state(phase: Phase) -> State {
    let mut s = State {
        measure: Measure::Units,
        total: 90,
        dispensed: 30,
        valid_until_ms: NOW + 24 * HOUR,
        cancelled: None,
        renewal_prohibited: false,
        reservation: None,
    };
    match phase {
        Phase::Valid => {}
        Phase::ReservedByYou => {
            s.reservation = Some(Reservation {
                pharmacy: ME.into(),
                until_ms: NOW + HOUR,
            })
        }
        Phase::ReservedElsewhere => {
            s.reservation = Some(Reservation {
                pharmacy: OTHER.into(),
                until_ms: NOW + HOUR,
            })
        }
        Phase::FullyDispensed => s.dispensed = 90,
        Phase::Expired => s.valid_until_ms = NOW,
        Phase::Cancelled => s.cancelled = Some(CancelReason::PatientRequest),
    }
    assert_eq!(s.phase(NOW, Some(ME)), phase);
    s
}

/// The events, each with a name for the table.
fn events() -> Vec<(&'static str, Event<'static>)> {
    vec![
        ("reserve", Event::Reserve { pharmacy: ME }),
        ("release", Event::Release { pharmacy: ME }),
        (
            "dispense-10",
            Event::Dispense {
                pharmacy: ME,
                amount: 10,
            },
        ),
        (
            "dispense-rest",
            Event::Dispense {
                pharmacy: ME,
                amount: 60,
            },
        ),
        (
            "dispense-more",
            Event::Dispense {
                pharmacy: ME,
                amount: 61,
            },
        ),
        (
            "dispense-0",
            Event::Dispense {
                pharmacy: ME,
                amount: 0,
            },
        ),
        (
            "cancel-dispensation",
            Event::CancelDispensation { amount: 30 },
        ),
        (
            "cancel-more-than-dispensed",
            Event::CancelDispensation { amount: 31 },
        ),
        ("correct-up", Event::Correct { total: 120 }),
        ("correct-below", Event::Correct { total: 20 }),
        ("cancel", Event::Cancel),
        ("renewal", Event::RequestRenewal),
    ]
}

use Phase::*;
use Refusal as R;

/// phase, event, expected.
#[rustfmt::skip]
const TABLE: &[(Phase, &str, Result<(), Refusal>)] = &[
    (Valid, "reserve", Ok(())),
    (Valid, "release", Err(R::NotReservedByYou)),
    (Valid, "dispense-10", Ok(())),
    (Valid, "dispense-rest", Ok(())),
    (Valid, "dispense-more", Err(R::ExceedsRemaining)),
    (Valid, "dispense-0", Err(R::NothingDispensed)),
    (Valid, "cancel-dispensation", Ok(())),
    (Valid, "cancel-more-than-dispensed", Err(R::MoreThanDispensed)),
    (Valid, "correct-up", Ok(())),
    (Valid, "correct-below", Err(R::BelowDispensed)),
    (Valid, "cancel", Ok(())),
    (Valid, "renewal", Ok(())),

    (ReservedByYou, "reserve", Ok(())),
    (ReservedByYou, "release", Ok(())),
    (ReservedByYou, "dispense-10", Ok(())),
    (ReservedByYou, "dispense-rest", Ok(())),
    (ReservedByYou, "dispense-more", Err(R::ExceedsRemaining)),
    (ReservedByYou, "dispense-0", Err(R::NothingDispensed)),
    (ReservedByYou, "cancel-dispensation", Ok(())),
    (ReservedByYou, "cancel-more-than-dispensed", Err(R::MoreThanDispensed)),
    (ReservedByYou, "correct-up", Ok(())),
    (ReservedByYou, "correct-below", Err(R::BelowDispensed)),
    (ReservedByYou, "cancel", Ok(())),
    (ReservedByYou, "renewal", Ok(())),

    (ReservedElsewhere, "reserve", Err(R::ReservedElsewhere)),
    (ReservedElsewhere, "release", Err(R::NotReservedByYou)),
    (ReservedElsewhere, "dispense-10", Err(R::ReservedElsewhere)),
    (ReservedElsewhere, "dispense-rest", Err(R::ReservedElsewhere)),
    (ReservedElsewhere, "dispense-more", Err(R::ReservedElsewhere)),
    (ReservedElsewhere, "dispense-0", Err(R::ReservedElsewhere)),
    (ReservedElsewhere, "cancel-dispensation", Ok(())),
    (ReservedElsewhere, "cancel-more-than-dispensed", Err(R::MoreThanDispensed)),
    (ReservedElsewhere, "correct-up", Ok(())),
    (ReservedElsewhere, "correct-below", Err(R::BelowDispensed)),
    (ReservedElsewhere, "cancel", Ok(())),
    (ReservedElsewhere, "renewal", Ok(())),

    (FullyDispensed, "reserve", Err(R::FullyDispensed)),
    (FullyDispensed, "release", Err(R::NotReservedByYou)),
    (FullyDispensed, "dispense-10", Err(R::FullyDispensed)),
    (FullyDispensed, "dispense-rest", Err(R::FullyDispensed)),
    (FullyDispensed, "dispense-more", Err(R::FullyDispensed)),
    (FullyDispensed, "dispense-0", Err(R::FullyDispensed)),
    (FullyDispensed, "cancel-dispensation", Ok(())),
    (FullyDispensed, "cancel-more-than-dispensed", Ok(())),
    (FullyDispensed, "correct-up", Ok(())),
    (FullyDispensed, "correct-below", Err(R::BelowDispensed)),
    (FullyDispensed, "cancel", Ok(())),
    (FullyDispensed, "renewal", Ok(())),

    (Expired, "reserve", Err(R::Expired)),
    (Expired, "release", Err(R::NotReservedByYou)),
    (Expired, "dispense-10", Err(R::Expired)),
    (Expired, "dispense-rest", Err(R::Expired)),
    (Expired, "dispense-more", Err(R::Expired)),
    (Expired, "dispense-0", Err(R::Expired)),
    (Expired, "cancel-dispensation", Ok(())),
    (Expired, "cancel-more-than-dispensed", Err(R::MoreThanDispensed)),
    (Expired, "correct-up", Ok(())),
    (Expired, "correct-below", Err(R::BelowDispensed)),
    (Expired, "cancel", Ok(())),
    (Expired, "renewal", Ok(())),

    (Cancelled, "reserve", Err(R::Cancelled)),
    (Cancelled, "release", Err(R::NotReservedByYou)),
    (Cancelled, "dispense-10", Err(R::Cancelled)),
    (Cancelled, "dispense-rest", Err(R::Cancelled)),
    (Cancelled, "dispense-more", Err(R::Cancelled)),
    (Cancelled, "dispense-0", Err(R::Cancelled)),
    (Cancelled, "cancel-dispensation", Ok(())),
    (Cancelled, "cancel-more-than-dispensed", Err(R::MoreThanDispensed)),
    (Cancelled, "correct-up", Err(R::Cancelled)),
    (Cancelled, "correct-below", Err(R::Cancelled)),
    (Cancelled, "cancel", Err(R::Cancelled)),
    (Cancelled, "renewal", Err(R::Cancelled)),
];

#[test]
fn every_phase_and_event_is_in_the_table_and_holds() {
    let mut failures = vec![];
    for phase in Phase::ALL {
        for (name, event) in events() {
            let want = TABLE
                .iter()
                .find(|(p, e, _)| *p == phase && *e == name)
                .unwrap_or_else(|| panic!("no cell for ({}, {name})", phase.code()))
                .2;
            let got = check(&state(phase), &event, NOW);
            if got != want {
                failures.push(format!(
                    "({}, {name}): want {want:?}, got {got:?}",
                    phase.code()
                ));
            }
        }
    }
    assert_eq!(
        TABLE.len(),
        Phase::ALL.len() * events().len(),
        "no extra cells"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What remains never goes below zero, and a reservation ends exactly when it lapses.
#[test]
fn remaining_and_lapse() {
    let mut s = state(Valid);
    assert_eq!(s.remaining(), 60);
    s.dispensed = 200;
    assert_eq!(s.remaining(), 0);
    let s = state(ReservedElsewhere);
    let lapse = s.reservation.as_ref().unwrap().until_ms;
    assert_eq!(s.phase(lapse - 1, Some(ME)), ReservedElsewhere);
    assert_eq!(
        s.phase(lapse, Some(ME)),
        Valid,
        "a lapsed reservation holds nothing"
    );
    assert_eq!(
        check(
            &s,
            &Event::Dispense {
                pharmacy: ME,
                amount: 60
            },
            lapse
        ),
        Ok(())
    );
    assert_eq!(s.phase(NOW, Some(OTHER)), ReservedByYou);
}

/// Renewal: the prescriber's prohibition is the one refusal of an otherwise renewable prescription.
#[test]
fn a_renewal_prohibition_refuses_every_renewal_request() {
    for phase in [
        Valid,
        ReservedByYou,
        ReservedElsewhere,
        FullyDispensed,
        Expired,
    ] {
        let mut s = state(phase);
        s.renewal_prohibited = true;
        assert_eq!(
            check(&s, &Event::RequestRenewal, NOW),
            Err(R::RenewalProhibited),
            "{}",
            phase.code()
        );
    }
}

/// R-DOC-10: the cancellation reasons map to the display rule's three.
#[test]
fn cancellation_reasons_follow_the_display_rule() {
    use kanta_domain::display::{decide_prescription, PrescriptionHidden};
    let shown = |r: CancelReason| decide_prescription(Some(r.display()));
    assert_eq!(shown(CancelReason::PatientRequest), Ok(()));
    assert_eq!(shown(CancelReason::Other), Ok(()));
    assert_eq!(
        shown(CancelReason::TechnicalError),
        Err(PrescriptionHidden::CancelledTechnical)
    );
    assert_eq!(
        shown(CancelReason::PatientDeath),
        Err(PrescriptionHidden::CancelledDeath)
    );
    for r in CancelReason::ALL {
        assert_eq!(CancelReason::parse(r.code()), Some(r));
    }
}

/// Who files which task: every (filer, kind) cell.
#[test]
fn who_files_which_task() {
    use kanta_domain::prescription::{may_file, Filer, TaskKind};
    let table = [
        (Filer::Pharmacy, [true, true, false]),
        (Filer::Clinician, [false, false, false]),
        (Filer::Operator, [false, false, false]),
        (Filer::Citizen, [false, true, true]),
    ];
    assert_eq!(table.len(), Filer::ALL.len());
    for (filer, row) in table {
        for (kind, want) in TaskKind::ALL.iter().zip(row) {
            assert_eq!(may_file(filer, *kind), want, "{filer:?} {kind:?}");
        }
    }
}
