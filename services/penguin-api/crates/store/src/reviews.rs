//! Pull request reviews: the head each one covered (the next review covers
//! only what is new), the findings they posted, keyed by fingerprint (posted
//! once; their thread is told when they are addressed), and the model tokens
//! spent per repository per UTC day (the daily budget).

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::{
    util::{col_time, fmt_time, now},
    Store, StoreError,
};

/// A review that was posted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    /// `owner/name`.
    pub repository: String,
    /// The pull request.
    pub number: u64,
    /// The head commit it reviewed.
    pub head_sha: String,
    /// The commit it reviewed from (`None`: the whole pull request).
    pub from_sha: Option<String>,
    /// GitHub's review id (`None` when nothing was posted).
    pub review_id: Option<u64>,
    /// The model that reviewed.
    pub model: String,
    /// Tokens it used.
    pub tokens: u64,
    /// When.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Whether a finding still stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingState {
    /// Posted, and its code is still there.
    Open,
    /// Its code changed or disappeared (the thread was told).
    Addressed,
}

impl FindingState {
    fn as_str(self) -> &'static str {
        match self {
            FindingState::Open => "open",
            FindingState::Addressed => "addressed",
        }
    }
}

/// A finding a review posted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFinding {
    /// What identifies it across reviews (path, anchored code, title).
    pub fingerprint: String,
    /// The file.
    pub path: String,
    /// Its (last) line, on `side`.
    pub line: u64,
    /// `RIGHT` (new file) or `LEFT` (old file).
    pub side: String,
    /// The normalised text of the lines it is anchored to.
    pub anchor: String,
    /// Its title.
    pub title: String,
    /// The inline comment it was posted as (`None`: in the review body).
    pub comment_id: Option<u64>,
    /// Open or addressed.
    pub state: FindingState,
    /// The head it was posted at, or addressed in.
    pub sha: String,
}

/// A review to record, with the findings it posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReview {
    /// `owner/name`.
    pub repository: String,
    /// The pull request.
    pub number: u64,
    /// The head commit it reviewed.
    pub head_sha: String,
    /// The commit it reviewed from (`None`: the whole pull request).
    pub from_sha: Option<String>,
    /// GitHub's review id.
    pub review_id: Option<u64>,
    /// The model.
    pub model: String,
    /// Tokens used.
    pub tokens: u64,
    /// Whether every file in range was reviewed; an incomplete review is
    /// not where the next one starts.
    pub complete: bool,
    /// Findings posted (stored open; an existing fingerprint is reopened).
    pub findings: Vec<StoredFinding>,
}

impl Store {
    /// Records `review` and its findings in one transaction.
    pub async fn record_review(&self, review: NewReview) -> Result<(), StoreError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let at = fmt_time(now());
            tx.execute(
                "INSERT INTO reviews
                   (repository, number, head_sha, from_sha, review_id, model, tokens, created_at,
                    complete)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    review.repository,
                    review.number as i64,
                    review.head_sha,
                    review.from_sha,
                    review.review_id.map(|id| id as i64),
                    review.model,
                    review.tokens as i64,
                    at,
                    review.complete,
                ],
            )?;
            for f in &review.findings {
                tx.execute(
                    "INSERT INTO review_findings
                       (repository, number, fingerprint, path, line, side, anchor, title,
                        comment_id, state, sha, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT (repository, number, fingerprint) DO UPDATE SET
                       path = excluded.path, line = excluded.line, side = excluded.side,
                       anchor = excluded.anchor, title = excluded.title,
                       comment_id = excluded.comment_id, state = excluded.state,
                       sha = excluded.sha, updated_at = excluded.updated_at",
                    params![
                        review.repository,
                        review.number as i64,
                        f.fingerprint,
                        f.path,
                        f.line as i64,
                        f.side,
                        f.anchor,
                        f.title,
                        f.comment_id.map(|id| id as i64),
                        f.state.as_str(),
                        f.sha,
                        at,
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The latest complete review of pull request `number`, if any.
    pub async fn last_review(
        &self,
        repository: &str,
        number: u64,
    ) -> Result<Option<ReviewRecord>, StoreError> {
        let repository = repository.to_owned();
        self.with_conn(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT repository, number, head_sha, from_sha, review_id, model, tokens,
                            created_at
                     FROM reviews WHERE repository = ?1 AND number = ?2 AND complete = 1
                     ORDER BY id DESC LIMIT 1",
                    params![repository, number as i64],
                    |r| {
                        Ok(ReviewRecord {
                            repository: r.get(0)?,
                            number: r.get::<_, i64>(1)? as u64,
                            head_sha: r.get(2)?,
                            from_sha: r.get(3)?,
                            review_id: r.get::<_, Option<i64>>(4)?.map(|id| id as u64),
                            model: r.get(5)?,
                            tokens: r.get::<_, i64>(6)? as u64,
                            created_at: col_time(r, 7)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// Every finding posted on pull request `number`, oldest first.
    pub async fn findings(
        &self,
        repository: &str,
        number: u64,
    ) -> Result<Vec<StoredFinding>, StoreError> {
        let repository = repository.to_owned();
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT fingerprint, path, line, side, anchor, title, comment_id, state, sha
                 FROM review_findings WHERE repository = ?1 AND number = ?2
                 ORDER BY rowid",
            )?;
            let rows = stmt.query_map(params![repository, number as i64], |r| {
                Ok(StoredFinding {
                    fingerprint: r.get(0)?,
                    path: r.get(1)?,
                    line: r.get::<_, i64>(2)? as u64,
                    side: r.get(3)?,
                    anchor: r.get(4)?,
                    title: r.get(5)?,
                    comment_id: r.get::<_, Option<i64>>(6)?.map(|id| id as u64),
                    state: if r.get::<_, String>(7)? == "addressed" {
                        FindingState::Addressed
                    } else {
                        FindingState::Open
                    },
                    sha: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Marks a finding addressed in `sha`; `false` if it was not open (so
    /// two reviews racing tell its thread once).
    pub async fn mark_addressed(
        &self,
        repository: &str,
        number: u64,
        fingerprint: &str,
        sha: &str,
    ) -> Result<bool, StoreError> {
        let (repository, fingerprint, sha) = (
            repository.to_owned(),
            fingerprint.to_owned(),
            sha.to_owned(),
        );
        self.with_conn(move |conn| {
            let changed = conn.execute(
                "UPDATE review_findings SET state = 'addressed', sha = ?4, updated_at = ?5
                 WHERE repository = ?1 AND number = ?2 AND fingerprint = ?3 AND state = 'open'",
                params![repository, number as i64, fingerprint, sha, fmt_time(now())],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    /// Adds `tokens` to what `repository` spent on `day` (`YYYY-MM-DD`);
    /// the new total.
    pub async fn add_model_usage(
        &self,
        repository: &str,
        day: &str,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        let (repository, day) = (repository.to_owned(), day.to_owned());
        self.with_conn(move |conn| {
            let total: i64 = conn.query_row(
                "INSERT INTO model_usage (repository, day, tokens) VALUES (?1, ?2, ?3)
                 ON CONFLICT (repository, day) DO UPDATE SET tokens = tokens + excluded.tokens
                 RETURNING tokens",
                params![repository, day, tokens.min(i64::MAX as u64) as i64],
                |r| r.get(0),
            )?;
            Ok(total.max(0) as u64)
        })
        .await
    }

    /// What `repository` spent on `day` (`YYYY-MM-DD`).
    pub async fn model_usage(&self, repository: &str, day: &str) -> Result<u64, StoreError> {
        let (repository, day) = (repository.to_owned(), day.to_owned());
        self.with_conn(move |conn| {
            let total: Option<i64> = conn
                .query_row(
                    "SELECT tokens FROM model_usage WHERE repository = ?1 AND day = ?2",
                    params![repository, day],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(total.unwrap_or(0).max(0) as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(fingerprint: &str, comment_id: Option<u64>) -> StoredFinding {
        StoredFinding {
            fingerprint: fingerprint.into(),
            path: "src/lib.rs".into(),
            line: 12,
            side: "RIGHT".into(),
            anchor: "let x = 1;".into(),
            title: "x is unused".into(),
            comment_id,
            state: FindingState::Open,
            sha: "a".repeat(40),
        }
    }

    #[tokio::test]
    async fn reviews_findings_and_usage_round_trip() {
        let store = Store::open_in_memory().await.unwrap();
        assert_eq!(store.last_review("o/r", 1).await.unwrap(), None);
        let review = |head: &str, findings| NewReview {
            repository: "o/r".into(),
            number: 1,
            head_sha: head.into(),
            from_sha: None,
            review_id: Some(7),
            model: "m".into(),
            tokens: 120,
            complete: true,
            findings,
        };
        store
            .record_review(review(
                "h1",
                vec![finding("f1", Some(5)), finding("f2", None)],
            ))
            .await
            .unwrap();
        store.record_review(review("h2", vec![])).await.unwrap();
        // An incomplete review is not where the next one starts.
        let mut partial = review("h9", vec![]);
        partial.complete = false;
        store.record_review(partial).await.unwrap();
        let last = store.last_review("o/r", 1).await.unwrap().unwrap();
        assert_eq!((last.head_sha.as_str(), last.tokens), ("h2", 120));
        assert_eq!(store.last_review("o/r", 2).await.unwrap(), None);
        let found = store.findings("o/r", 1).await.unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].comment_id, Some(5));
        // Addressed once only.
        assert!(store.mark_addressed("o/r", 1, "f1", "h2").await.unwrap());
        assert!(!store.mark_addressed("o/r", 1, "f1", "h2").await.unwrap());
        let found = store.findings("o/r", 1).await.unwrap();
        assert_eq!(
            (found[0].state, found[0].sha.as_str()),
            (FindingState::Addressed, "h2")
        );
        // Posted again (the code came back): open again.
        store
            .record_review(review("h3", vec![finding("f1", Some(9))]))
            .await
            .unwrap();
        let found = store.findings("o/r", 1).await.unwrap();
        assert_eq!(
            (found[0].state, found[0].comment_id),
            (FindingState::Open, Some(9))
        );

        assert_eq!(store.model_usage("o/r", "2026-12-05").await.unwrap(), 0);
        assert_eq!(
            store
                .add_model_usage("o/r", "2026-12-05", 100)
                .await
                .unwrap(),
            100
        );
        assert_eq!(
            store
                .add_model_usage("o/r", "2026-12-05", 50)
                .await
                .unwrap(),
            150
        );
        assert_eq!(store.model_usage("o/r", "2026-12-05").await.unwrap(), 150);
        assert_eq!(store.model_usage("o/r", "2026-12-06").await.unwrap(), 0);
        assert_eq!(store.model_usage("x/y", "2026-12-05").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn reviews_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).await.unwrap();
            store
                .record_review(NewReview {
                    repository: "o/r".into(),
                    number: 3,
                    head_sha: "h".into(),
                    from_sha: Some("g".into()),
                    review_id: None,
                    model: "m".into(),
                    tokens: 1,
                    complete: true,
                    findings: vec![finding("f", None)],
                })
                .await
                .unwrap();
        }
        let store = Store::open(dir.path()).await.unwrap();
        let last = store.last_review("o/r", 3).await.unwrap().unwrap();
        assert_eq!(last.from_sha.as_deref(), Some("g"));
        assert_eq!(store.findings("o/r", 3).await.unwrap().len(), 1);
    }
}
