//! The machine's named timers, in the style of `quinn-proto`'s `timer.rs`: everything the
//! machine waits for has a name and at most one instant, and the earliest of them is when the
//! driver next wakes it.

use std::time::Instant;

/// What the machine waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Shutting down: exit even though the revocation (or a discard) has not finished.
    Exit,
    /// `--once`'s deadline: give up with the last error.
    GiveUp,
    /// Retry a token file write the volume refused.
    WriteRetry,
    /// The token's next step (login, renewal, lookup, adoption); never armed while its
    /// request is in flight.
    Step,
    /// The secrets' lane's earliest read or lease renewal.
    Secrets,
    /// The certificates' lane's earliest issue.
    Certs,
}

impl Timer {
    /// Every timer, in the order expired ones are handled: ending the run first, then putting
    /// the token back in its file, then the token's step, then the lanes.
    pub const ALL: [Timer; 6] = [
        Timer::Exit,
        Timer::GiveUp,
        Timer::WriteRetry,
        Timer::Step,
        Timer::Secrets,
        Timer::Certs,
    ];

    fn slot(self) -> usize {
        self as usize
    }
}

/// When each [`Timer`] fires, if it is armed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerTable {
    at: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// Arms `timer` for `at`, replacing its previous instant.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer.slot()] = Some(at);
    }

    /// Arms `timer` for `at`, or stops it for `None`.
    pub fn arm(&mut self, timer: Timer, at: Option<Instant>) {
        self.at[timer.slot()] = at;
    }

    /// Stops `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.at[timer.slot()] = None;
    }

    /// Stops every timer.
    pub fn stop_all(&mut self) {
        *self = TimerTable::default();
    }

    /// When `timer` fires, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer.slot()]
    }

    /// The earliest armed timer's instant: the machine's `poll_timeout`.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Whether `timer` has fired by `now`; a fired timer is stopped (it fires once).
    pub fn expire(&mut self, timer: Timer, now: Instant) -> bool {
        let fired = self.get(timer).is_some_and(|at| at <= now);
        if fired {
            self.stop(timer);
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_armed_timer_is_next_and_fires_once() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Certs, t0 + Duration::from_secs(5));
        t.set(Timer::Step, t0 + Duration::from_secs(3));
        t.arm(Timer::WriteRetry, None);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(3)));
        assert!(!t.expire(Timer::Step, t0), "not yet");
        assert!(t.expire(Timer::Step, t0 + Duration::from_secs(3)));
        assert!(!t.expire(Timer::Step, t0 + Duration::from_secs(9)), "once");
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(5)));
        t.stop_all();
        assert_eq!(t.next(), None);
    }

    #[test]
    fn all_lists_each_timer_in_its_slot() {
        for (i, timer) in Timer::ALL.into_iter().enumerate() {
            assert_eq!(timer.slot(), i);
        }
    }
}
