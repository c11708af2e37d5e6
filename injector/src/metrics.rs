//! The webhook's counters and its latency histogram, in Prometheus' text format.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 8] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0];
/// The outcomes `/metrics` counts reviews by.
pub const OUTCOMES: [&str; 4] = ["injected", "skipped", "refused", "bad_request"];

/// What `/metrics` shows.
#[derive(Debug, Default)]
pub struct Metrics {
    reviews: [AtomicU64; 4],
    buckets: [AtomicU64; 8],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Metrics {
    /// Counts one answered review and how long it took.
    pub fn observe(&self, outcome: &str, took: Duration) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.reviews[i].fetch_add(1, Relaxed);
        }
        let secs = took.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// The text `/metrics` answers, with the count of certificate reloads that failed.
    pub fn render(&self, reloads_failed: u64) -> String {
        let mut out = String::from(
            "# HELP vault_login_injector_reviews_total Admission reviews answered, by outcome.\n\
             # TYPE vault_login_injector_reviews_total counter\n",
        );
        for (outcome, n) in OUTCOMES.iter().zip(&self.reviews) {
            out.push_str(&format!(
                "vault_login_injector_reviews_total{{outcome=\"{outcome}\"}} {}\n",
                n.load(Relaxed)
            ));
        }
        out.push_str(
            "# HELP vault_login_injector_review_seconds Time from the request's body to the answer.\n\
             # TYPE vault_login_injector_review_seconds histogram\n",
        );
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            out.push_str(&format!(
                "vault_login_injector_review_seconds_bucket{{le=\"{bound}\"}} {}\n",
                n.load(Relaxed)
            ));
        }
        let count = self.count.load(Relaxed);
        out.push_str(&format!(
            "vault_login_injector_review_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             vault_login_injector_review_seconds_sum {}\n\
             vault_login_injector_review_seconds_count {count}\n",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        ));
        out.push_str(&format!(
            "# HELP vault_login_injector_certificate_reload_failures_total Changed certificate files that did not load.\n\
             # TYPE vault_login_injector_certificate_reload_failures_total counter\n\
             vault_login_injector_certificate_reload_failures_total {}\n",
            reloads_failed
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe("injected", Duration::from_micros(300));
        m.observe("refused", Duration::from_millis(3));
        let text = m.render(0);
        for line in [
            "vault_login_injector_reviews_total{outcome=\"injected\"} 1",
            "vault_login_injector_reviews_total{outcome=\"refused\"} 1",
            "vault_login_injector_review_seconds_bucket{le=\"0.0005\"} 1",
            "vault_login_injector_review_seconds_bucket{le=\"0.005\"} 2",
            "vault_login_injector_review_seconds_bucket{le=\"+Inf\"} 2",
            "vault_login_injector_review_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
