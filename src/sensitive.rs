//! A string that must never be printed: Vault tokens, accessors and service-account JWTs.

use std::fmt;

/// A secret value whose `Debug` and `Display` print `"***"` instead of the content.
///
/// The only way to reach the bytes is [`Secret::expose`], so every place that
/// handles the secret itself is easy to find with a search.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Returns the secret itself; call only to send it to Vault or write the token file.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first `n` characters followed by an ellipsis, for values (like accessors) that
    /// operators correlate in logs without the rest being useful to an attacker.
    pub fn prefix(&self, n: usize) -> String {
        let head: String = self.0.chars().take(n).collect();
        format!("{head}…")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Overwrite the heap buffer so the secret does not linger in freed memory; zeroize's
        // volatile writes are not optimised away the way a plain overwrite before free may be.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hvs.supersecret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{s:?} {s}").contains("supersecret"));
        assert_eq!(s.expose(), "hvs.supersecret");
    }

    #[test]
    fn prefix_keeps_only_the_head() {
        let s = Secret::new("abcdefgh");
        assert_eq!(s.prefix(4), "abcd…");
        assert_eq!(Secret::new("ab").prefix(4), "ab…");
    }
}
