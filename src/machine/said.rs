//! Long errors said once: a failure that repeats on every retry (an outage's 400-character
//! "connection refused" hint) is logged in full the first time and whenever it changes, and
//! then as its first clause with a count, so a log read at 3 a.m. is not a wall of one hint.

use std::borrow::Cow;

/// Messages up to this long are always said in full: repeating them costs nothing.
const SHORT: usize = 120;

/// The last error said, and how many times in a row.
#[derive(Clone, Debug, Default)]
pub struct Said {
    last: Option<String>,
    times: u32,
}

impl Said {
    /// What to log for `message`: the whole of it when it is short, new or changed; else its
    /// first clause and how many times in a row it came.
    pub fn say<'a>(&mut self, message: &'a str) -> Cow<'a, str> {
        if self.last.as_deref() == Some(message) {
            self.times += 1;
        } else {
            self.last = Some(message.to_string());
            self.times = 1;
        }
        if self.times == 1 || message.len() <= SHORT {
            return Cow::Borrowed(message);
        }
        let times = self.times;
        Cow::Owned(format!(
            "{} (the same error as above, {times} times in a row)",
            first_clause(message)
        ))
    }

    /// A success ends the run of repeats: the next failure is said in full.
    pub fn clear(&mut self) {
        self.last = None;
        self.times = 0;
    }
}

/// The message up to its first hint (`;` or ` (`), at most [`SHORT`] bytes on a char boundary.
fn first_clause(message: &str) -> &str {
    let end = [message.find("; "), message.find(" (")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(message.len())
        .min(SHORT);
    let mut end = end;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: &str = "POST http://127.0.0.1:8200/v1/auth/kubernetes/login: connection refused: nothing listens at 127.0.0.1:8200; check VAULT_ADDR (scheme, host and port), that Vault runs, and that no network policy blocks the pod";

    #[test]
    fn a_long_error_is_said_once_then_counted() {
        let mut said = Said::default();
        assert_eq!(said.say(LONG), LONG);
        let second = said.say(LONG).into_owned();
        assert!(second.len() < LONG.len() / 2 + 60, "{second}");
        assert!(second.ends_with("(the same error as above, 2 times in a row)"));
        assert!(second.starts_with("POST http://127.0.0.1:8200/v1/auth/kubernetes/login"));
        assert!(said.say(LONG).contains("3 times in a row"));
    }

    #[test]
    fn a_changed_or_short_error_is_said_in_full() {
        let mut said = Said::default();
        said.say(LONG);
        let other = "permission denied";
        assert_eq!(said.say(other), other);
        assert_eq!(said.say(other), other, "short messages repeat in full");
        assert_eq!(said.say(LONG), LONG, "a change is said in full");
        said.clear();
        assert_eq!(said.say(LONG), LONG, "after a success, in full again");
    }

    #[test]
    fn the_first_clause_stops_at_a_hint_or_the_short_bound_on_a_char_boundary() {
        assert_eq!(first_clause("a; b"), "a");
        assert_eq!(first_clause("a (b); c"), "a");
        let wide = "é".repeat(200);
        let cut = first_clause(&wide);
        assert!(cut.len() <= SHORT && !cut.is_empty());
    }
}
