//! The typed error every store operation returns.

/// What went wrong in a store operation.
///
/// `NotFound` and `Conflict` name the kind of record (`"conversation"`,
/// `"checkpoint"`, `"task"`, `"delivery"`, …) and its id, so an HTTP layer can
/// map them to 404 and 409 without parsing messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The record with this id does not exist.
    #[error("{what} not found: {id}")]
    NotFound {
        /// The kind of record, e.g. `"conversation"`.
        what: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// A record with this id already exists.
    #[error("{what} already exists: {id}")]
    Conflict {
        /// The kind of record, e.g. `"delivery"`.
        what: &'static str,
        /// The id that already exists.
        id: String,
    },
    /// The caller passed an unusable value (empty key, unknown role, …).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// SQLite failed, or stored data could not be decoded.
    #[error("database error: {0}")]
    Db(String),
    /// The file system failed (creating the data directory or database file).
    #[error("i/o error: {0}")]
    Io(String),
}

impl StoreError {
    /// True for [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// True for [`StoreError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    pub(crate) fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            what,
            id: id.into(),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Db(format!("json: {e}"))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_record() {
        let e = StoreError::not_found("task", "task_1");
        assert_eq!(e.to_string(), "task not found: task_1");
        assert!(e.is_not_found());
        assert!(!e.is_conflict());
        let c = StoreError::Conflict {
            what: "delivery",
            id: "d1".into(),
        };
        assert_eq!(c.to_string(), "delivery already exists: d1");
        assert!(c.is_conflict());
    }

    #[test]
    fn conversions() {
        let e: StoreError = rusqlite::Error::InvalidQuery.into();
        assert!(matches!(e, StoreError::Db(_)));
        let e: StoreError = std::io::Error::other("boom").into();
        assert_eq!(e, StoreError::Io("boom".into()));
        let e: StoreError = serde_json::from_str::<serde_json::Value>("{")
            .unwrap_err()
            .into();
        assert!(matches!(e, StoreError::Db(m) if m.starts_with("json:")));
    }
}
