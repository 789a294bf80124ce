//! The one place that reads the clock. Everything below the HTTP edge takes `now` as a parameter.

use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// Where the edge gets `now` from: the system clock in production, a settable one in tests.
#[derive(Clone)]
pub enum Clock {
    System,
    Fixed(Arc<Mutex<OffsetDateTime>>),
}

impl Clock {
    pub fn fixed(at: OffsetDateTime) -> Self {
        Clock::Fixed(Arc::new(Mutex::new(at)))
    }

    #[allow(clippy::disallowed_methods)] // the edge: the only place allowed to read the clock
    pub fn now(&self) -> OffsetDateTime {
        match self {
            Clock::System => OffsetDateTime::now_utc(),
            Clock::Fixed(t) => *t.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Bring a fixed clock that has fallen behind up to the system's time, never back (tests
    /// whose outside parties, like an OpenID provider, stamp real times); no effect otherwise.
    #[allow(clippy::disallowed_methods)] // the edge: the only place allowed to read the clock
    pub fn catch_up(&self) {
        if let Clock::Fixed(t) = self {
            let real = OffsetDateTime::now_utc();
            let mut g = t.lock().unwrap_or_else(|p| p.into_inner());
            if *g < real {
                *g = real;
            }
        }
    }

    /// Move a fixed clock (tests); no effect on the system clock.
    pub fn advance(&self, by: time::Duration) {
        if let Clock::Fixed(t) = self {
            let mut g = t.lock().unwrap_or_else(|p| p.into_inner());
            *g += by;
        }
    }
}
