//! Retrying transient GitHub failures with exponential backoff and jitter,
//! waiting at least as long as `retry-after` / `x-ratelimit-reset` ask.

use crate::{answer::Response, clock::ServerClock, error::github_message, GitHubError};
use rand::Rng;
use std::{future::Future, time::Duration};

/// How hard to retry.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles after each.
    pub initial_backoff: Duration,
    /// Cap on one backoff.
    pub max_backoff: Duration,
    /// A rate limit asking to wait longer than this ends the call with
    /// [`GitHubError::RateLimited`] instead of sleeping (the caller keeps its
    /// current token and tries later).
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            max_wait: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `attempt + 1`: exponential, with "equal jitter"
    /// (half fixed, half random) so a fleet of sidecars does not retry in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_backoff);
        let half = exp / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

/// What one answer means for the retry loop.
enum Verdict {
    Done,
    RetryAfter(Option<Duration>),
}

fn header_u64(resp: &Response, name: &str) -> Option<u64> {
    resp.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// How long a rate-limited answer asks us to wait, if it is one.
fn rate_limit_wait(resp: &Response, clock: &ServerClock) -> Option<Option<Duration>> {
    let status = resp.status.as_u16();
    if status != 403 && status != 429 {
        return None;
    }
    if let Some(secs) = header_u64(resp, "retry-after") {
        return Some(Some(Duration::from_secs(secs)));
    }
    if header_u64(resp, "x-ratelimit-remaining") == Some(0) {
        let wait = header_u64(resp, "x-ratelimit-reset").map(|reset| {
            let reset = std::time::UNIX_EPOCH + Duration::from_secs(reset);
            reset.duration_since(clock.server_now()).unwrap_or_default() + Duration::from_secs(1)
        });
        return Some(wait);
    }
    if status == 429
        || github_message(&resp.body)
            .to_ascii_lowercase()
            .contains("rate limit")
    {
        return Some(None);
    }
    None
}

fn verdict(resp: &Response, clock: &ServerClock) -> Verdict {
    if let Some(wait) = rate_limit_wait(resp, clock) {
        return Verdict::RetryAfter(wait);
    }
    if resp.status.is_server_error() {
        return Verdict::RetryAfter(None);
    }
    Verdict::Done
}

/// Whether a failed call may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// Reads, updates and deletes: sent again after a rate limit, a 5xx or a
    /// transport failure.
    Idempotent,
    /// Creating content (comments, reviews, commits): sent again only after a
    /// rate limit, which GitHub answers before creating anything; a 5xx may
    /// have created it, so the caller decides.
    OnlyAfterRateLimits,
}

impl RetryPolicy {
    /// Runs an octocrab call under this policy: rate limits (primary and
    /// secondary) are waited out at least as long as GitHub asks, and, for
    /// [`Repeat::Idempotent`] calls, 5xx answers and transport failures are
    /// retried with backoff. The final failure is a [`GitHubError`] whose
    /// [`GitHubError::is_transient`] tells whether a later retry can help.
    pub async fn run_octocrab<T, F, Fut>(
        &self,
        what: &'static str,
        repeat: Repeat,
        mut call: F,
    ) -> Result<T, GitHubError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = octocrab::Result<T>>,
    {
        self.run_failable(what, repeat, || {
            let answer = call();
            async move { answer.await.map_err(|e| Failure::of_octocrab(&e)) }
        })
        .await
    }

    async fn run_failable<T, F, Fut>(
        &self,
        what: &'static str,
        repeat: Repeat,
        mut call: F,
    ) -> Result<T, GitHubError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let clock = ServerClock::new();
        let mut n = 0;
        loop {
            let failure = match call().await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let hinted_wait = match failure
                .answer
                .as_ref()
                .and_then(|a| rate_limit_wait(a, &clock))
            {
                Some(wait) => wait,
                None if repeat == Repeat::Idempotent && failure.error.is_transient() => None,
                None => return Err(failure.error),
            };
            n += 1;
            let wait =
                hinted_wait.map_or_else(|| self.backoff(n - 1), |h| h.max(self.backoff(n - 1)));
            if n >= self.max_attempts || wait > self.max_wait {
                return Err(match failure.answer {
                    Some(answer) if rate_limit_wait(&answer, &clock).is_some() => {
                        GitHubError::RateLimited {
                            status: answer.status.as_u16(),
                            message: github_message(&answer.body),
                            retry_after: wait,
                        }
                    }
                    _ => failure.error,
                });
            }
            tracing::warn!(
                call = what,
                attempt = n,
                wait_ms = wait.as_millis() as u64,
                error = %failure.error,
                "GitHub call failed, retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// A failed call as the retry loop sees it: GitHub's answer, when there was
/// one, and the error it amounts to.
struct Failure {
    answer: Option<Response>,
    error: GitHubError,
}

impl Failure {
    fn of_octocrab(err: &octocrab::Error) -> Failure {
        let answer = match err {
            octocrab::Error::GitHub { source, .. } => Some(Response {
                status: source.status_code,
                headers: source.headers.clone().unwrap_or_default(),
                body: serde_json::json!({ "message": source.message })
                    .to_string()
                    .into(),
            }),
            _ => None,
        };
        Failure {
            answer,
            error: crate::error::from_octocrab(err),
        }
    }

    #[cfg(test)]
    fn answer(answer: Response) -> Failure {
        let error = crate::error::from_answer(
            answer.status.as_u16(),
            answer
                .headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            &github_message(&answer.body),
        );
        Failure {
            answer: Some(answer),
            error,
        }
    }
}

/// Runs `attempt` until it yields a non-transient answer or the policy gives
/// up. A non-success answer that is not transient is returned as `Ok` for the
/// caller to map with its own hints.
pub(crate) async fn run<F, Fut>(
    policy: &RetryPolicy,
    clock: &ServerClock,
    what: &'static str,
    mut attempt: F,
) -> Result<Response, GitHubError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Response, GitHubError>>,
{
    let mut n = 0;
    loop {
        let outcome = attempt().await;
        let hinted_wait = match &outcome {
            Ok(resp) => match verdict(resp, clock) {
                Verdict::Done => return outcome,
                Verdict::RetryAfter(wait) => wait,
            },
            Err(err) if err.is_transient() => None,
            Err(_) => return outcome,
        };
        n += 1;
        let wait =
            hinted_wait.map_or_else(|| policy.backoff(n - 1), |h| h.max(policy.backoff(n - 1)));
        if n >= policy.max_attempts || wait > policy.max_wait {
            return Err(final_error(outcome, wait));
        }
        tracing::warn!(
            call = what,
            attempt = n,
            wait_ms = wait.as_millis() as u64,
            error = %describe(&outcome),
            "GitHub call failed, retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

fn describe(outcome: &Result<Response, GitHubError>) -> String {
    match outcome {
        Ok(resp) => format!("{}: {}", resp.status.as_u16(), github_message(&resp.body)),
        Err(err) => err.to_string(),
    }
}

fn final_error(outcome: Result<Response, GitHubError>, wait: Duration) -> GitHubError {
    match outcome {
        Ok(resp) => {
            let status = resp.status.as_u16();
            let message = github_message(&resp.body);
            if status == 403 || status == 429 {
                GitHubError::RateLimited {
                    status,
                    message,
                    retry_after: wait,
                }
            } else {
                GitHubError::Server { status, message }
            }
        }
        Err(err) => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, StatusCode};

    fn resp(status: u16, headers: &[(&'static str, String)], body: &str) -> Response {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().unwrap());
        }
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: body.to_string().into(),
        }
    }

    #[test]
    fn classifies_rate_limits_and_server_errors() {
        let clock = ServerClock::new();
        let ra = resp(403, &[("retry-after", "7".into())], "{}");
        assert_eq!(
            rate_limit_wait(&ra, &clock),
            Some(Some(Duration::from_secs(7)))
        );
        let reset = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 30;
        let primary = resp(
            403,
            &[
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", reset.to_string()),
            ],
            r#"{"message":"API rate limit exceeded"}"#,
        );
        let wait = rate_limit_wait(&primary, &clock).unwrap().unwrap();
        assert!(
            wait >= Duration::from_secs(29) && wait <= Duration::from_secs(32),
            "{wait:?}"
        );
        let secondary = resp(
            403,
            &[],
            r#"{"message":"You have exceeded a secondary rate limit"}"#,
        );
        assert_eq!(rate_limit_wait(&secondary, &clock), Some(None));
        let forbidden = resp(
            403,
            &[],
            r#"{"message":"This installation has been suspended"}"#,
        );
        assert!(rate_limit_wait(&forbidden, &clock).is_none());
        assert!(matches!(verdict(&forbidden, &clock), Verdict::Done));
        assert!(matches!(
            verdict(&resp(502, &[], ""), &clock),
            Verdict::RetryAfter(None)
        ));
        assert!(matches!(
            verdict(&resp(422, &[], ""), &clock),
            Verdict::Done
        ));
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy::default();
        for attempt in 0..20 {
            let b = p.backoff(attempt);
            let full = p
                .initial_backoff
                .saturating_mul(1 << attempt.min(16))
                .min(p.max_backoff);
            assert!(b >= full / 2 && b <= full, "{attempt}: {b:?}");
        }
    }

    fn failed(status: u16, headers: &[(&'static str, String)], message: &str) -> Failure {
        Failure::answer(resp(
            status,
            headers,
            &serde_json::json!({ "message": message }).to_string(),
        ))
    }

    #[tokio::test]
    async fn octocrab_calls_wait_out_secondary_limits_and_repeat_only_what_is_safe() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            ..Default::default()
        };
        // A secondary rate limit on a create is waited out, then it succeeds.
        let mut answers = vec![
            Ok(7),
            Err(failed(
                403,
                &[("retry-after", "0".into())],
                "You have exceeded a secondary rate limit",
            )),
        ];
        let value = policy
            .run_failable("comment", Repeat::OnlyAfterRateLimits, || {
                let answer = answers.pop().unwrap();
                async move { answer }
            })
            .await
            .unwrap();
        assert_eq!(value, 7);
        // A 502 on a create is not sent again: it may have created the comment.
        let mut calls = 0;
        let err = policy
            .run_failable("comment", Repeat::OnlyAfterRateLimits, || {
                calls += 1;
                async { Err::<(), _>(failed(502, &[], "Bad Gateway")) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 1);
        assert!(err.is_transient(), "{err}");
        // The same 502 on a read is retried until the policy gives up.
        let mut calls = 0;
        let err = policy
            .run_failable("pull", Repeat::Idempotent, || {
                calls += 1;
                async { Err::<(), _>(failed(502, &[], "Bad Gateway")) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, policy.max_attempts);
        assert!(matches!(err, GitHubError::Server { status: 502, .. }));
        // A permanent refusal is returned at once and is not transient.
        let mut calls = 0;
        let err = policy
            .run_failable("label", Repeat::Idempotent, || {
                calls += 1;
                async { Err::<(), _>(failed(403, &[], "Resource not accessible by integration")) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 1);
        assert!(!err.is_transient());
        assert_eq!(err.status(), Some(403));
        // A secondary limit that never lifts ends as a transient RateLimited.
        let err = policy
            .run_failable("comment", Repeat::OnlyAfterRateLimits, || async {
                Err::<(), _>(failed(
                    429,
                    &[("retry-after", "0".into())],
                    "secondary rate limit",
                ))
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, GitHubError::RateLimited { status: 429, .. }),
            "{err}"
        );
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn gives_up_instead_of_sleeping_past_max_wait() {
        let clock = ServerClock::new();
        let policy = RetryPolicy {
            max_wait: Duration::from_secs(5),
            ..Default::default()
        };
        let mut calls = 0;
        let err = run(&policy, &clock, "test", || {
            calls += 1;
            async { Ok(resp(429, &[("retry-after", "60".into())], "{}")) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(
            matches!(err, GitHubError::RateLimited { retry_after, .. } if retry_after >= Duration::from_secs(60))
        );
    }

    #[tokio::test]
    async fn retries_transient_then_returns_permanent_answer() {
        let clock = ServerClock::new();
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            ..Default::default()
        };
        let mut statuses = vec![404, 503, 500].into_iter().collect::<Vec<_>>();
        let resp = run(&policy, &clock, "test", || {
            let s = statuses.pop().unwrap();
            async move { Ok(resp(s, &[], "{}")) }
        })
        .await
        .unwrap();
        assert_eq!(resp.status.as_u16(), 404);
        assert!(statuses.is_empty());
    }
}
