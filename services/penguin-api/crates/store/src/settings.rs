//! Key/value settings (e.g. the current model).

use rusqlite::{params, OptionalExtension};

use crate::{
    util::{fmt_time, now},
    Store, StoreError,
};

fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.trim().is_empty() {
        return Err(StoreError::Invalid("setting key must not be empty".into()));
    }
    Ok(())
}

impl Store {
    /// The value stored under `key`, or `None`. An empty key is `Invalid`.
    pub async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.with_conn(move |conn| {
            Ok(conn
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?)
        })
        .await
    }

    /// Stores `value` under `key`, replacing any previous value. An empty key
    /// is `Invalid`; an empty value is allowed.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        let value = value.to_owned();
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![key, value, fmt_time(now())],
            )?;
            Ok(())
        })
        .await
    }

    /// Replaces `key`'s value with `new` only if it is still `expected`
    /// (compare-and-swap, in one statement): `true` if it was replaced.
    /// Two callers that read the same value cannot both consume it.
    pub async fn swap_setting(
        &self,
        key: &str,
        expected: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        validate_key(key)?;
        let (key, expected, new) = (key.to_owned(), expected.to_owned(), new.to_owned());
        self.with_conn(move |conn| {
            let changed = conn.execute(
                "UPDATE settings SET value = ?1, updated_at = ?2 WHERE key = ?3 AND value = ?4",
                params![new, fmt_time(now()), key, expected],
            )?;
            Ok(changed == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_value_is_swapped_once() {
        let s = Store::open_in_memory().await.unwrap();
        s.set_setting("pending", "request").await.unwrap();
        let (a, b) = tokio::join!(
            s.swap_setting("pending", "request", ""),
            s.swap_setting("pending", "request", "")
        );
        assert_eq!(
            [a.unwrap(), b.unwrap()]
                .iter()
                .filter(|taken| **taken)
                .count(),
            1
        );
        assert_eq!(s.get_setting("pending").await.unwrap().as_deref(), Some(""));
        assert!(!s.swap_setting("missing", "x", "").await.unwrap());
    }

    #[tokio::test]
    async fn get_set_overwrite() {
        let s = Store::open_in_memory().await.unwrap();
        assert_eq!(s.get_setting("model").await.unwrap(), None);
        s.set_setting("model", "gpt-x").await.unwrap();
        assert_eq!(
            s.get_setting("model").await.unwrap().as_deref(),
            Some("gpt-x")
        );
        s.set_setting("model", "claude-y").await.unwrap();
        assert_eq!(
            s.get_setting("model").await.unwrap().as_deref(),
            Some("claude-y")
        );
        s.set_setting("empty", "").await.unwrap();
        assert_eq!(s.get_setting("empty").await.unwrap().as_deref(), Some(""));
        // Keys are exact.
        assert_eq!(s.get_setting("Model").await.unwrap(), None);
    }

    #[tokio::test]
    async fn empty_key_is_invalid() {
        let s = Store::open_in_memory().await.unwrap();
        assert!(matches!(
            s.get_setting("").await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.set_setting(" ", "v").await,
            Err(StoreError::Invalid(_))
        ));
    }
}
