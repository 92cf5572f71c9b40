//! No webhook delivery is lost: GitHub does not retry a delivery that failed
//! (the api was restarting, a node drained, the Ingress blinked), so every
//! `PENGUIN_TOKENATOR_REDELIVER_INTERVAL_SECS` the tokenator — the one
//! holder of the App key — reads the App's delivery log back to its last
//! sweep (`PENGUIN_TOKENATOR_REDELIVER_LOOKBACK_SECS` after a start), groups
//! the attempts by GUID and asks GitHub to redeliver each GUID that has no
//! successful attempt.
//!
//! - A delivery the receiver refused for good (400, 401, 403 or 413: a bad
//!   signature, a repository not allowed, a body too large) is not
//!   redelivered: the same bytes would be refused again. Other 4xx (a 404 or
//!   502 from an Ingress mid-rollout, 408, 429) are redelivered.
//! - Each GUID is asked for at most `PENGUIN_TOKENATOR_REDELIVER_MAX_ATTEMPTS`
//!   times, with a backoff that doubles from the interval (capped at an hour).
//! - A rate limit, GitHub failure or refused JWT ends the sweep without
//!   counting against any delivery; the next sweep goes on. Only GitHub's
//!   refusal of one delivery (404, 422) counts as one of its attempts.
//! - Memory holds only the GUIDs of the window and those still waiting.

use crate::{config::RedeliverSettings, metrics::Metrics};
use chrono::{DateTime, TimeDelta, Utc};
use penguin_github::{AppClient, GitHubError, HookDelivery};
use std::{collections::HashMap, sync::Arc, time::Duration};

/// Attempts asked for per page.
const PAGE_SIZE: u8 = 100;
/// Pages read per sweep at most (10,000 attempts).
const MAX_PAGES: usize = 100;
/// Redeliveries asked for per sweep at most; the rest wait for the next.
const MAX_PER_SWEEP: usize = 200;
/// A sweep reads this much before the last one ended: an attempt is logged
/// when it ends, up to GitHub's 10 s timeout after it started.
const OVERLAP: TimeDelta = TimeDelta::minutes(2);
/// Backoff between redeliveries of one GUID is capped at this.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// What the log shows of one GUID in the window.
#[derive(Clone, Debug, Default)]
struct GuidLog {
    succeeded: bool,
    /// The newest attempt (its id is what redelivery asks for).
    newest: Option<HookDelivery>,
    /// The oldest attempt's time.
    first_at: Option<DateTime<Utc>>,
}

impl GuidLog {
    fn add(&mut self, attempt: HookDelivery) {
        self.succeeded |= attempt.succeeded();
        if self.first_at.is_none_or(|t| attempt.delivered_at < t) {
            self.first_at = Some(attempt.delivered_at);
        }
        if self
            .newest
            .as_ref()
            .is_none_or(|n| attempt.delivered_at >= n.delivered_at)
        {
            self.newest = Some(attempt);
        }
    }
}

/// A GUID that failed and is not delivered yet.
#[derive(Clone, Debug)]
struct Waiting {
    /// The attempt to redeliver.
    attempt_id: u64,
    /// When it first failed.
    failed_at: DateTime<Utc>,
    /// Redeliveries asked for so far.
    requests: u32,
    /// Not before then.
    next_at: DateTime<Utc>,
    /// Refused for good, or asked for too often: left alone.
    settled: bool,
}

/// The sweeper and what it remembers between sweeps.
pub struct Sweeper {
    settings: RedeliverSettings,
    interval: Duration,
    metrics: Arc<Metrics>,
    waiting: HashMap<String, Waiting>,
    swept_to: Option<DateTime<Utc>>,
}

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Attempts read.
    pub read: usize,
    /// Redeliveries asked for.
    pub requested: usize,
    /// Redelivery requests GitHub refused.
    pub failed: usize,
}

/// Whether a failed attempt's status says the receiver will never accept it.
fn refused_for_good(status_code: u16) -> bool {
    matches!(status_code, 400 | 401 | 403 | 413)
}

/// Whether GitHub refused to redeliver this one delivery (rather than being
/// unreachable, limited or refusing the App itself).
fn refused_this_delivery(e: &GitHubError) -> bool {
    matches!(
        e,
        GitHubError::NotFound { .. } | GitHubError::Unprocessable { .. }
    )
}

impl Sweeper {
    /// A sweeper that sweeps every `interval`.
    pub fn new(settings: RedeliverSettings, interval: Duration, metrics: Arc<Metrics>) -> Self {
        Sweeper {
            settings,
            interval,
            metrics,
            waiting: HashMap::new(),
            swept_to: None,
        }
    }

    /// Reads the log back to `since`, grouped by GUID.
    async fn read_log(
        app: &AppClient,
        since: DateTime<Utc>,
    ) -> Result<(HashMap<String, GuidLog>, usize), GitHubError> {
        let mut by_guid: HashMap<String, GuidLog> = HashMap::new();
        let mut cursor: Option<String> = None;
        let mut read = 0;
        for _ in 0..MAX_PAGES {
            let page = app.hook_deliveries(PAGE_SIZE, cursor.as_deref()).await?;
            let mut older = false;
            for attempt in page.deliveries {
                read += 1;
                if attempt.delivered_at < since {
                    older = true;
                    continue;
                }
                by_guid
                    .entry(attempt.guid.clone())
                    .or_default()
                    .add(attempt);
            }
            cursor = page.next_cursor;
            if older || cursor.is_none() {
                break;
            }
        }
        Ok((by_guid, read))
    }

    /// Decides what to redeliver now from the window's log: updates what is
    /// waiting and returns the attempt ids to ask for, oldest failure first.
    fn plan(&mut self, log: HashMap<String, GuidLog>, now: DateTime<Utc>) -> Vec<(String, u64)> {
        for (guid, entry) in log {
            if entry.succeeded {
                self.waiting.remove(&guid);
                continue;
            }
            let Some(newest) = entry.newest else { continue };
            let failed_at = entry.first_at.unwrap_or(newest.delivered_at);
            let waiting = self.waiting.entry(guid).or_insert_with(|| Waiting {
                attempt_id: newest.id,
                failed_at,
                requests: 0,
                next_at: now,
                settled: false,
            });
            waiting.attempt_id = newest.id;
            waiting.failed_at = waiting.failed_at.min(failed_at);
            if !waiting.settled && refused_for_good(newest.status_code) {
                waiting.settled = true;
                self.metrics.redelivery("permanent", 1);
            }
        }
        // Forget what GitHub can no longer redeliver.
        let horizon = now - TimeDelta::days(3);
        self.waiting.retain(|_, w| w.failed_at > horizon);
        let mut due: Vec<(&String, &mut Waiting)> = self
            .waiting
            .iter_mut()
            .filter(|(_, w)| !w.settled && w.next_at <= now)
            .collect();
        due.sort_by_key(|(_, w)| w.failed_at);
        let mut out = Vec::new();
        for (guid, w) in due {
            if w.requests >= self.settings.max_attempts {
                w.settled = true;
                self.metrics.redelivery("gave_up", 1);
                tracing::warn!(delivery = %guid, requests = w.requests, "giving up on a webhook delivery");
                continue;
            }
            if out.len() < MAX_PER_SWEEP {
                out.push((guid.clone(), w.attempt_id));
            }
        }
        out
    }

    /// Records that a redelivery of `guid` was asked for at `now`.
    fn asked(&mut self, guid: &str, now: DateTime<Utc>) {
        if let Some(w) = self.waiting.get_mut(guid) {
            w.requests += 1;
            let backoff = self
                .interval
                .saturating_mul(1 << (w.requests - 1).min(16))
                .min(MAX_BACKOFF);
            w.next_at = now + TimeDelta::from_std(backoff).unwrap_or(TimeDelta::hours(1));
        }
    }

    /// The age of the oldest delivery still not delivered (refusals for good
    /// excluded), seconds.
    fn oldest_failed_age(&self, now: DateTime<Utc>) -> f64 {
        self.waiting
            .values()
            .filter(|w| !(w.settled && w.requests < self.settings.max_attempts))
            .map(|w| (now - w.failed_at).as_seconds_f64().max(0.0))
            .fold(0.0, f64::max)
    }

    /// One sweep: read the log, ask for what is due.
    pub async fn sweep(
        &mut self,
        app: &AppClient,
        now: DateTime<Utc>,
    ) -> Result<SweepReport, GitHubError> {
        let lookback = TimeDelta::from_std(self.settings.lookback).unwrap_or(TimeDelta::hours(6));
        let since = match self.swept_to {
            Some(to) => (to - OVERLAP).max(now - lookback),
            None => now - lookback,
        };
        let (log, read) = Self::read_log(app, since).await?;
        let mut report = SweepReport {
            read,
            ..SweepReport::default()
        };
        self.swept_to = Some(now);
        for (guid, attempt_id) in self.plan(log, now) {
            match app.redeliver(attempt_id).await {
                Ok(()) => {
                    self.asked(&guid, now);
                    report.requested += 1;
                    tracing::info!(delivery = %guid, attempt_id, "asked GitHub to redeliver");
                }
                Err(e) if refused_this_delivery(&e) => {
                    // Counted as asked, so a delivery GitHub will not redeliver
                    // ends after max_attempts instead of looping.
                    self.asked(&guid, now);
                    report.failed += 1;
                    self.metrics.redelivery("failed", 1);
                    tracing::warn!(delivery = %guid, attempt_id, error = %e, "GitHub refused a redelivery");
                }
                Err(e) => {
                    // GitHub is down, limiting or refusing the App: not this
                    // delivery's fault; the next sweep asks again.
                    self.metrics
                        .redelivery("requested", report.requested as u64);
                    self.finish(now);
                    return Err(e);
                }
            }
        }
        self.metrics
            .redelivery("requested", report.requested as u64);
        self.finish(now);
        Ok(report)
    }

    fn finish(&self, now: DateTime<Utc>) {
        self.metrics
            .oldest_failed_delivery_age
            .set(self.oldest_failed_age(now));
    }
}

/// Sweeps every `interval` for as long as the process runs, with the App
/// client `app` gives (the key may be replaced).
pub async fn run(
    settings: RedeliverSettings,
    app: impl Fn() -> Option<Arc<AppClient>>,
    metrics: Arc<Metrics>,
) {
    let Some(interval) = settings.interval else {
        return;
    };
    let mut sweeper = Sweeper::new(settings, interval, metrics.clone());
    // The first sweep waits one interval: a pod starting its api beside the
    // tokenator gives it time to listen before anything is redelivered.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(client) = app() else { return };
        match sweeper.sweep(&client, Utc::now()).await {
            Ok(report) => {
                metrics.redelivery_sweep("ok");
                if report.requested + report.failed > 0 {
                    tracing::info!(
                        read = report.read,
                        requested = report.requested,
                        failed = report.failed,
                        "webhook delivery sweep"
                    );
                }
            }
            Err(e) => {
                metrics.redelivery_sweep(e.kind());
                tracing::warn!(error = %e, "could not sweep the webhook delivery log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(id: u64, guid: &str, secs_ago: i64, code: u16, now: DateTime<Utc>) -> HookDelivery {
        HookDelivery {
            id,
            guid: guid.into(),
            delivered_at: now - TimeDelta::seconds(secs_ago),
            redelivery: false,
            status_code: code,
            status: String::new(),
            event: "issue_comment".into(),
            action: Some("created".into()),
        }
    }

    fn log(attempts: Vec<HookDelivery>) -> HashMap<String, GuidLog> {
        let mut out: HashMap<String, GuidLog> = HashMap::new();
        for a in attempts {
            out.entry(a.guid.clone()).or_default().add(a);
        }
        out
    }

    fn sweeper(max_attempts: u32) -> Sweeper {
        let settings = RedeliverSettings {
            interval: Some(Duration::from_secs(60)),
            lookback: Duration::from_secs(3600),
            max_attempts,
        };
        Sweeper::new(settings, Duration::from_secs(60), Arc::new(Metrics::new()))
    }

    #[test]
    fn only_guids_without_a_success_are_redelivered_oldest_first() {
        let now = Utc::now();
        let mut s = sweeper(5);
        let plan = s.plan(
            log(vec![
                attempt(1, "ok", 100, 200, now),
                attempt(2, "down", 90, 0, now),
                attempt(3, "busy", 80, 503, now),
                attempt(4, "later-ok", 70, 502, now),
                attempt(5, "later-ok", 10, 200, now),
                attempt(6, "refused", 60, 401, now),
                attempt(7, "slow", 50, 408, now),
            ]),
            now,
        );
        assert_eq!(
            plan,
            [
                ("down".to_string(), 2),
                ("busy".into(), 3),
                ("slow".into(), 7)
            ]
        );
        let text = s.metrics.encode();
        assert!(
            text.contains("penguin_tokenator_redeliveries_total{result=\"permanent\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_guid_backs_off_and_is_given_up_after_max_attempts() {
        let now = Utc::now();
        let mut s = sweeper(2);
        let failing = || log(vec![attempt(9, "g", 30, 500, now)]);
        assert_eq!(s.plan(failing(), now), [("g".to_string(), 9)]);
        s.asked("g", now);
        // Not due again before the backoff (one interval).
        assert!(s.plan(failing(), now + TimeDelta::seconds(30)).is_empty());
        let later = now + TimeDelta::seconds(61);
        assert_eq!(s.plan(failing(), later), [("g".to_string(), 9)]);
        s.asked("g", later);
        // Two intervals next time, then the cap ends it.
        assert!(s
            .plan(failing(), later + TimeDelta::seconds(119))
            .is_empty());
        assert!(s
            .plan(failing(), later + TimeDelta::seconds(121))
            .is_empty());
        assert!(s
            .metrics
            .encode()
            .contains("penguin_tokenator_redeliveries_total{result=\"gave_up\"} 1"));
        // Still counted as failed (given up is not delivered).
        assert!(s.oldest_failed_age(later) >= 30.0);
    }

    #[test]
    fn only_refusals_of_the_delivery_count_and_ingress_404s_are_redelivered() {
        assert!(refused_this_delivery(&GitHubError::NotFound {
            message: "Not Found".into(),
            hint: String::new()
        }));
        for outage in [
            GitHubError::Transport("reset".into()),
            GitHubError::Server {
                status: 502,
                message: "bad gateway".into(),
            },
            GitHubError::Unauthorized {
                message: "bad JWT".into(),
                hint: String::new(),
            },
        ] {
            assert!(!refused_this_delivery(&outage), "{outage}");
        }
        for code in [404, 405, 408, 429, 500, 502, 0] {
            assert!(!refused_for_good(code), "{code}");
        }
        for code in [400, 401, 403, 413] {
            assert!(refused_for_good(code), "{code}");
        }
    }

    #[test]
    fn a_success_clears_what_was_waiting_and_the_age_follows() {
        let now = Utc::now();
        let mut s = sweeper(5);
        s.plan(log(vec![attempt(1, "g", 120, 0, now)]), now);
        assert!((s.oldest_failed_age(now) - 120.0).abs() < 1.0);
        s.asked("g", now);
        let mut redelivered = attempt(2, "g", 0, 200, now + TimeDelta::seconds(5));
        redelivered.redelivery = true;
        assert!(s
            .plan(log(vec![redelivered]), now + TimeDelta::seconds(5))
            .is_empty());
        assert_eq!(s.oldest_failed_age(now), 0.0);
        assert!(s.waiting.is_empty());
    }
}
