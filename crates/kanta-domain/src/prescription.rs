//! The Prescription Centre's rules (R-RX-1, R-RX-2, R-ACT-1): what a prescription's state allows.
//!
//! A prescription is prescribed as an amount (packages or units, counted in the product's units)
//! or as a treatment time (days). What remains is the prescribed total less every dispensation
//! that was not cancelled, and never goes below zero: [`check`] refuses a dispensation larger than
//! what remains. A pharmacy's reservation keeps other pharmacies from dispensing until it is
//! released or lapses. The store applies these rules inside the transaction that holds the
//! prescription's row lock, so two pharmacies dispensing the last package cannot both succeed.
//!
//! Pure: no I/O, no clock (`now` is a parameter, milliseconds since the epoch).

use crate::display::PrescriptionCancellation;

/// What a prescription's quantity counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// The product's units (tablets, millilitres…): packages × package size, or an amount.
    Units,
    /// A treatment time in days; each dispensation covers some days.
    Days,
}

/// Why a prescription was cancelled (R-RX-1). What the citizen then sees is R-DOC-10's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    PatientRequest,
    TechnicalError,
    PatientDeath,
    Other,
}

impl CancelReason {
    pub const ALL: [CancelReason; 4] = [
        CancelReason::PatientRequest,
        CancelReason::TechnicalError,
        CancelReason::PatientDeath,
        CancelReason::Other,
    ];

    pub fn code(self) -> &'static str {
        match self {
            CancelReason::PatientRequest => "patient-request",
            CancelReason::TechnicalError => "technical-error",
            CancelReason::PatientDeath => "patient-death",
            CancelReason::Other => "other",
        }
    }

    pub fn parse(code: &str) -> Option<CancelReason> {
        CancelReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The display rule's view of the reason (R-DOC-10).
    pub fn display(self) -> PrescriptionCancellation {
        match self {
            CancelReason::TechnicalError => PrescriptionCancellation::Technical,
            CancelReason::PatientDeath => PrescriptionCancellation::PatientDeath,
            CancelReason::PatientRequest | CancelReason::Other => PrescriptionCancellation::Other,
        }
    }
}

/// A pharmacy's hold on a prescription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub pharmacy: String,
    pub until_ms: i64,
}

/// What the rules read of one prescription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub measure: Measure,
    /// The prescribed total, in `measure`.
    pub total: u64,
    /// Dispensed and not cancelled, in `measure`.
    pub dispensed: u64,
    /// The end of validity (normally two years after prescribing).
    pub valid_until_ms: i64,
    pub cancelled: Option<CancelReason>,
    pub renewal_prohibited: bool,
    pub reservation: Option<Reservation>,
}

impl State {
    /// What remains to be dispensed: never below zero.
    pub fn remaining(&self) -> u64 {
        self.total.saturating_sub(self.dispensed)
    }

    /// The reservation still in force at `now` (one that has lapsed holds nothing).
    pub fn reserved_at(&self, now: i64) -> Option<&Reservation> {
        self.reservation.as_ref().filter(|r| now < r.until_ms)
    }

    /// Where the prescription stands at `now`, for one pharmacy (`None`: anyone else).
    pub fn phase(&self, now: i64, pharmacy: Option<&str>) -> Phase {
        if self.cancelled.is_some() {
            Phase::Cancelled
        } else if now >= self.valid_until_ms {
            Phase::Expired
        } else if self.remaining() == 0 {
            Phase::FullyDispensed
        } else {
            match self.reserved_at(now) {
                Some(r) if Some(r.pharmacy.as_str()) == pharmacy => Phase::ReservedByYou,
                Some(_) => Phase::ReservedElsewhere,
                None => Phase::Valid,
            }
        }
    }
}

/// Where a prescription stands, as far as the rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Valid,
    ReservedByYou,
    ReservedElsewhere,
    FullyDispensed,
    Expired,
    Cancelled,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Valid,
        Phase::ReservedByYou,
        Phase::ReservedElsewhere,
        Phase::FullyDispensed,
        Phase::Expired,
        Phase::Cancelled,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Phase::Valid => "valid",
            Phase::ReservedByYou => "reserved-by-you",
            Phase::ReservedElsewhere => "reserved-elsewhere",
            Phase::FullyDispensed => "fully-dispensed",
            Phase::Expired => "expired",
            Phase::Cancelled => "cancelled",
        }
    }
}

/// Something asked of a prescription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A pharmacy reserves it.
    Reserve { pharmacy: &'a str },
    /// A pharmacy releases its reservation.
    Release { pharmacy: &'a str },
    /// A pharmacy dispenses `amount` (in the prescription's measure).
    Dispense { pharmacy: &'a str, amount: u64 },
    /// A dispensation of `amount` is cancelled (what it took is given back).
    CancelDispensation { amount: u64 },
    /// The prescriber corrects it to a new total.
    Correct { total: u64 },
    /// The prescriber cancels it.
    Cancel,
    /// Someone asks the prescriber's unit to renew it.
    RequestRenewal,
}

/// Why it was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    Cancelled,
    Expired,
    FullyDispensed,
    /// Another pharmacy holds a reservation in force.
    ReservedElsewhere,
    /// More than what remains.
    ExceedsRemaining,
    /// Zero is not a dispensation.
    NothingDispensed,
    /// Cancelling more than was dispensed.
    MoreThanDispensed,
    /// Releasing what one does not hold.
    NotReservedByYou,
    /// A correction may not bring the total below what has been dispensed.
    BelowDispensed,
    /// The prescriber prohibited renewal.
    RenewalProhibited,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Cancelled => "cancelled",
            Refusal::Expired => "expired",
            Refusal::FullyDispensed => "fully-dispensed",
            Refusal::ReservedElsewhere => "reserved-elsewhere",
            Refusal::ExceedsRemaining => "exceeds-remaining",
            Refusal::NothingDispensed => "nothing-dispensed",
            Refusal::MoreThanDispensed => "more-than-dispensed",
            Refusal::NotReservedByYou => "not-reserved-by-you",
            Refusal::BelowDispensed => "below-dispensed",
            Refusal::RenewalProhibited => "renewal-prohibited",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Cancelled => "the prescription has been cancelled",
            Refusal::Expired => "the prescription is no longer valid",
            Refusal::FullyDispensed => "the prescription has been dispensed in full",
            Refusal::ReservedElsewhere => {
                "another pharmacy has reserved the prescription; it can be dispensed there, or here once the reservation is released or lapses"
            }
            Refusal::ExceedsRemaining => "the amount is more than what remains to be dispensed",
            Refusal::NothingDispensed => "a dispensation gives out more than nothing",
            Refusal::MoreThanDispensed => {
                "a cancellation gives back no more than what was dispensed"
            }
            Refusal::NotReservedByYou => "your pharmacy holds no reservation of the prescription",
            Refusal::BelowDispensed => {
                "a correction may not bring the prescribed total below what has been dispensed"
            }
            Refusal::RenewalProhibited => "the prescriber prohibited renewing this prescription",
        }
    }
}

/// Whether `event` may happen to the prescription in `state` at `now`.
pub fn check(state: &State, event: &Event<'_>, now: i64) -> Result<(), Refusal> {
    let pharmacy = match event {
        Event::Reserve { pharmacy }
        | Event::Release { pharmacy }
        | Event::Dispense { pharmacy, .. } => Some(*pharmacy),
        Event::CancelDispensation { .. }
        | Event::Correct { .. }
        | Event::Cancel
        | Event::RequestRenewal => None,
    };
    let phase = state.phase(now, pharmacy);
    match event {
        Event::Reserve { .. } => match phase {
            Phase::Valid | Phase::ReservedByYou => Ok(()),
            Phase::ReservedElsewhere => Err(Refusal::ReservedElsewhere),
            Phase::FullyDispensed => Err(Refusal::FullyDispensed),
            Phase::Expired => Err(Refusal::Expired),
            Phase::Cancelled => Err(Refusal::Cancelled),
        },
        // Releasing is always possible for the holder, whatever else has happened since.
        Event::Release { pharmacy } => match state.reserved_at(now) {
            Some(r) if r.pharmacy == *pharmacy => Ok(()),
            Some(_) | None => Err(Refusal::NotReservedByYou),
        },
        Event::Dispense { amount, .. } => match phase {
            Phase::Valid | Phase::ReservedByYou if *amount == 0 => Err(Refusal::NothingDispensed),
            Phase::Valid | Phase::ReservedByYou if *amount > state.remaining() => {
                Err(Refusal::ExceedsRemaining)
            }
            Phase::Valid | Phase::ReservedByYou => Ok(()),
            Phase::ReservedElsewhere => Err(Refusal::ReservedElsewhere),
            Phase::FullyDispensed => Err(Refusal::FullyDispensed),
            Phase::Expired => Err(Refusal::Expired),
            Phase::Cancelled => Err(Refusal::Cancelled),
        },
        // A purchase cancelled at the counter is given back whatever the prescription's phase.
        Event::CancelDispensation { amount } => {
            if *amount > state.dispensed {
                Err(Refusal::MoreThanDispensed)
            } else {
                Ok(())
            }
        }
        Event::Correct { total } => match phase {
            Phase::Cancelled => Err(Refusal::Cancelled),
            Phase::Valid
            | Phase::ReservedByYou
            | Phase::ReservedElsewhere
            | Phase::FullyDispensed
            | Phase::Expired => {
                if *total < state.dispensed {
                    Err(Refusal::BelowDispensed)
                } else {
                    Ok(())
                }
            }
        },
        Event::Cancel => match phase {
            Phase::Cancelled => Err(Refusal::Cancelled),
            Phase::Valid
            | Phase::ReservedByYou
            | Phase::ReservedElsewhere
            | Phase::FullyDispensed
            | Phase::Expired => Ok(()),
        },
        // An expired or fully dispensed prescription is what one asks to renew.
        Event::RequestRenewal => match phase {
            Phase::Cancelled => Err(Refusal::Cancelled),
            Phase::Valid
            | Phase::ReservedByYou
            | Phase::ReservedElsewhere
            | Phase::FullyDispensed
            | Phase::Expired => {
                if state.renewal_prohibited {
                    Err(Refusal::RenewalProhibited)
                } else {
                    Ok(())
                }
            }
        },
    }
}

/// Who files a task of the Prescription Centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Filer {
    Pharmacy,
    Clinician,
    Operator,
    Citizen,
}

/// The kinds of Prescription Centre task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskKind {
    Reservation,
    RenewalRequest,
    ReviewRequest,
}

impl Filer {
    pub const ALL: [Filer; 4] = [
        Filer::Pharmacy,
        Filer::Clinician,
        Filer::Operator,
        Filer::Citizen,
    ];
}

impl TaskKind {
    pub const ALL: [TaskKind; 3] = [
        TaskKind::Reservation,
        TaskKind::RenewalRequest,
        TaskKind::ReviewRequest,
    ];
}

/// Who may file which task (R-RX-2, R-ACT-1, R-ACT-11, R-ACT-12): a pharmacy reserves, and asks a
/// renewal for its customer; the citizen asks a renewal (as `access::decide` allows the standing)
/// and a review. The units and the operator answer the tasks in their queues; they file none.
pub fn may_file(filer: Filer, kind: TaskKind) -> bool {
    match kind {
        TaskKind::Reservation => match filer {
            Filer::Pharmacy => true,
            Filer::Clinician | Filer::Operator | Filer::Citizen => false,
        },
        TaskKind::RenewalRequest => match filer {
            Filer::Pharmacy | Filer::Citizen => true,
            Filer::Clinician | Filer::Operator => false,
        },
        TaskKind::ReviewRequest => match filer {
            Filer::Citizen => true,
            Filer::Pharmacy | Filer::Clinician | Filer::Operator => false,
        },
    }
}
