//! The timing both lanes share (secrets and certificates): when each entry is next due, the
//! one request in flight, and parking while no token is there to use. What a lane does with
//! an answer is its own; when it runs is this.

use std::time::Instant;

/// Each entry's due instant, the one entry in flight, and whether the lane is parked.
#[derive(Clone, Debug)]
pub struct Timing {
    due: Vec<Option<Instant>>,
    in_flight: Option<usize>,
    /// No live token to use: nothing is due until the next one.
    parked: bool,
}

impl Timing {
    /// `count` entries with nothing planned, parked until a token is there.
    pub fn new(count: usize) -> Timing {
        Timing {
            due: vec![None; count],
            in_flight: None,
            parked: true,
        }
    }

    /// Adds an entry due at `due`; its index is the next one.
    pub fn push(&mut self, due: Option<Instant>) -> usize {
        self.due.push(due);
        self.due.len() - 1
    }

    /// When entry `index` is next due, if planned.
    pub fn due(&self, index: usize) -> Option<Instant> {
        self.due.get(index).copied().flatten()
    }

    /// Plans entry `index` for `at` (None: nothing planned).
    pub fn set(&mut self, index: usize, at: Option<Instant>) {
        if let Some(due) = self.due.get_mut(index) {
            *due = at;
        }
    }

    /// Whether a request is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// When the lane next has work, if it is idle and not parked.
    pub fn next_due(&self) -> Option<Instant> {
        if self.busy() || self.parked {
            return None;
        }
        self.due.iter().flatten().min().copied()
    }

    /// Whether some entry is due at `now` (a batch is still being worked through).
    pub fn due_at(&self, now: Instant) -> bool {
        !self.parked && self.due.iter().flatten().any(|d| *d <= now)
    }

    /// No live token: nothing is due until [`Timing::unpark`]; each entry keeps its plan.
    pub fn park(&mut self) {
        self.parked = true;
    }

    /// Whether the lane waits for a token.
    pub fn parked(&self) -> bool {
        self.parked
    }

    /// A token is there to use again.
    pub fn unpark(&mut self) {
        self.parked = false;
    }

    /// The earliest entry due by `now`, now in flight (its plan used up), if the lane is idle
    /// and not parked.
    pub fn start(&mut self, now: Instant) -> Option<usize> {
        if self.busy() || self.parked {
            return None;
        }
        let (_, index) = (self.due.iter().enumerate())
            .filter_map(|(i, d)| d.filter(|d| *d <= now).map(|d| (d, i)))
            .min()?;
        self.due[index] = None;
        self.in_flight = Some(index);
        Some(index)
    }

    /// Whether `index`'s request is the one in flight; it no longer is afterwards. A result of
    /// an abandoned request must be dropped.
    pub fn finish(&mut self, index: usize) -> bool {
        let mine = self.in_flight == Some(index);
        if mine {
            self.in_flight = None;
        }
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_earliest_due_entry_starts_one_at_a_time_and_parked_means_idle() {
        let t0 = Instant::now();
        let mut t = Timing::new(3);
        t.set(0, Some(t0 + S(5)));
        t.set(2, Some(t0 + S(1)));
        assert_eq!((t.next_due(), t.start(t0 + S(9))), (None, None), "parked");
        t.unpark();
        assert_eq!(t.next_due(), Some(t0 + S(1)));
        assert!(!t.due_at(t0) && t.due_at(t0 + S(1)));
        assert_eq!(t.start(t0), None, "nothing due yet");
        assert_eq!(t.start(t0 + S(9)), Some(2), "the earliest first");
        assert_eq!(t.next_due(), None, "busy");
        assert_eq!(t.start(t0 + S(9)), None, "one at a time");
        assert!(!t.finish(0), "not the one in flight");
        assert!(t.finish(2));
        assert!(!t.finish(2), "finished once");
        assert_eq!(t.due(2), None, "its plan was used");
        assert_eq!(t.next_due(), Some(t0 + S(5)));
        assert_eq!(t.push(Some(t0)), 3);
        assert_eq!(t.next_due(), Some(t0));
    }
}
