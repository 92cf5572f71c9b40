//! The bot's Prometheus metrics (served on the api's `GET /metrics`). Labels carry
//! event names, commands and results only: no repositories, users or tokens.

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::time::Duration;

type Labels = Vec<(String, String)>;

/// Event names a label may carry; `X-GitHub-Event` is not signed, so any
/// other value counts as `other` (no unbounded label sets).
const EVENT_LABELS: &[&str] = &[
    "issue_comment",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "installation",
    "installation_repositories",
    "issues",
    "push",
    "check_run",
    "check_suite",
    "ping",
];

/// `event` if it is one of [`EVENT_LABELS`], else `other`.
fn event_label(event: &str) -> &str {
    EVENT_LABELS
        .iter()
        .find(|known| **known == event)
        .copied()
        .unwrap_or("other")
}

/// The bot's metrics.
pub struct BotMetrics {
    registry: Registry,
    received: Family<Labels, Counter>,
    processed: Family<Labels, Counter>,
    dedupe_hits: Counter,
    review_findings: Counter,
    budget_refusals: Counter,
    queue_depth: Gauge,
    start_lag: Histogram,
    commands: Family<Labels, Counter>,
    command_duration: Histogram,
    model_tokens: Counter,
    rate_limit_remaining: Gauge,
}

impl Default for BotMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl BotMetrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("penguin");
        let metrics = BotMetrics {
            received: Family::default(),
            processed: Family::default(),
            dedupe_hits: Counter::default(),
            review_findings: Counter::default(),
            budget_refusals: Counter::default(),
            queue_depth: Gauge::default(),
            start_lag: Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0]),
            commands: Family::default(),
            command_duration: Histogram::new([0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0]),
            model_tokens: Counter::default(),
            rate_limit_remaining: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "webhook_deliveries_received",
            "Deliveries stored, by event",
            metrics.received.clone(),
        );
        registry.register(
            "webhook_deliveries_processed",
            "Deliveries processed, by event and result",
            metrics.processed.clone(),
        );
        registry.register(
            "webhook_dedupe_hits",
            "Deliveries or comments seen before",
            metrics.dedupe_hits.clone(),
        );
        registry.register(
            "webhook_queue_depth",
            "Deliveries waiting or in progress",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "webhook_start_lag_seconds",
            "Time from receipt to start of processing",
            metrics.start_lag.clone(),
        );
        registry.register(
            "bot_commands",
            "Bot commands run, by command and result",
            metrics.commands.clone(),
        );
        registry.register(
            "bot_command_duration_seconds",
            "Bot command duration",
            metrics.command_duration.clone(),
        );
        registry.register(
            "review_findings",
            "New findings posted by reviews (repeats of open ones are not posted)",
            metrics.review_findings.clone(),
        );
        registry.register(
            "budget_refusals",
            "Commands and automatic reviews held back because a repository's daily token budget was spent",
            metrics.budget_refusals.clone(),
        );
        registry.register(
            "model_tokens",
            "Model tokens used (prompt and completion)",
            metrics.model_tokens.clone(),
        );
        registry.register(
            "github_rate_limit_remaining",
            "GitHub REST requests left in the installation's current window (last seen)",
            metrics.rate_limit_remaining.clone(),
        );
        BotMetrics {
            registry,
            ..metrics
        }
    }

    /// A delivery was stored.
    pub fn received(&self, event: &str) {
        self.received
            .get_or_create(&vec![("event".into(), event_label(event).into())])
            .inc();
    }

    /// A delivery attempt ended: `result` is `done`, `ignored`, `failed`,
    /// `retry` (a transient failure, tried again later) or `dead` (out of attempts).
    pub fn processed(&self, event: &str, result: &str) {
        self.processed
            .get_or_create(&vec![
                ("event".into(), event_label(event).into()),
                ("result".into(), result.into()),
            ])
            .inc();
    }

    /// New findings a review posted.
    pub fn review_findings(&self, n: u64) {
        self.review_findings.inc_by(n);
    }

    /// A command or automatic review held back by the daily token budget.
    pub fn budget_refusal(&self) {
        self.budget_refusals.inc();
    }

    /// A duplicate delivery or comment.
    pub fn dedupe_hit(&self) {
        self.dedupe_hits.inc();
    }

    /// Deliveries waiting.
    pub fn queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as i64);
    }

    /// Receipt-to-start lag of one delivery.
    pub fn start_lag(&self, lag: Duration) {
        self.start_lag.observe(lag.as_secs_f64());
    }

    /// A finished command.
    pub fn command(&self, command: &str, ok: bool, duration: Duration) {
        self.commands
            .get_or_create(&vec![
                ("command".into(), command.into()),
                ("result".into(), if ok { "ok" } else { "failed" }.into()),
            ])
            .inc();
        self.command_duration.observe(duration.as_secs_f64());
    }

    /// Tokens a model call used.
    pub fn model_tokens(&self, tokens: u64) {
        self.model_tokens.inc_by(tokens);
    }

    /// GitHub's `remaining` for the installation's core REST limit.
    pub fn rate_limit_remaining(&self, remaining: u64) {
        self.rate_limit_remaining
            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_labels_come_from_a_fixed_set() {
        let metrics = BotMetrics::new();
        metrics.received("issue_comment");
        for i in 0..100 {
            metrics.received(&format!("made-up-{i}"));
        }
        metrics.processed("made-up-x", "done");
        let text = metrics.encode();
        assert!(
            text.contains("penguin_webhook_deliveries_received_total{event=\"issue_comment\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("penguin_webhook_deliveries_received_total{event=\"other\"} 100"),
            "{text}"
        );
        assert!(text.contains("event=\"other\",result=\"done\""), "{text}");
        assert!(!text.contains("made-up"), "{text}");
    }
}
