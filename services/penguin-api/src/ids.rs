//! The ids clients choose: conversation ids (a client may name a new
//! conversation, which is created on first use) and agent ids. Every route
//! checks them here, so a refused id gets the same 400 and reason everywhere.

use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::json;

/// Longest conversation id accepted.
pub const MAX_CONVERSATION_ID_LEN: usize = 128;

/// Longest agent id accepted (Penguin's limit).
pub const MAX_AGENT_ID_LEN: usize = 64;

/// The one agent this server runs.
pub const DEFAULT_AGENT: &str = "default";

/// Characters a conversation id may hold besides ASCII letters and digits.
const CONVERSATION_ID_PUNCTUATION: &[char] = &['.', '_', ':', '-'];

/// Why `id` cannot name a conversation, if it cannot: 1 to
/// [`MAX_CONVERSATION_ID_LEN`] characters of `A-Z a-z 0-9 . _ : -`.
pub fn conversation_id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("a conversation id must not be empty".into());
    }
    let len = id.chars().count();
    if len > MAX_CONVERSATION_ID_LEN {
        return Some(format!(
            "a conversation id has at most {MAX_CONVERSATION_ID_LEN} characters, this one has {len}"
        ));
    }
    id.chars()
        .find(|c| !c.is_ascii_alphanumeric() && !CONVERSATION_ID_PUNCTUATION.contains(c))
        .map(|c| {
            format!("a conversation id may only hold letters, digits and . _ : - (found {c:?})")
        })
}

/// `id` if it can name a conversation, else 400 `INVALID_CONVERSATION_ID`
/// saying why.
pub fn conversation_id(id: &str) -> Result<&str, ApiError> {
    match conversation_id_problem(id) {
        None => Ok(id),
        Some(reason) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_CONVERSATION_ID",
            reason,
        )
        .suggest(format!(
            "Use 1-{MAX_CONVERSATION_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_', ':' and '-', or send no conversation_id to get a new one."
        ))
        .with_details(json!({
            "max_length": MAX_CONVERSATION_ID_LEN,
            "allowed": "A-Z a-z 0-9 . _ : -",
        }))),
    }
}

/// Checks an agent id as Penguin does (1 to [`MAX_AGENT_ID_LEN`] characters of
/// `a-z 0-9 _ -`: 400 `INVALID_AGENT_ID` otherwise), then that it names this
/// server's agent (404 `AGENT_NOT_FOUND` otherwise).
pub fn agent_id(id: &str) -> Result<&str, ApiError> {
    let problem = if id.is_empty() || id.chars().count() > MAX_AGENT_ID_LEN {
        Some(format!("agent_id must be 1-{MAX_AGENT_ID_LEN} characters"))
    } else if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        Some("agent_id must match ^[a-z0-9_-]+$".into())
    } else {
        None
    };
    if let Some(reason) = problem {
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_AGENT_ID", reason)
                .suggest("Use an id from GET /api/v1/agents."),
        );
    }
    if id != DEFAULT_AGENT {
        return Err(agent_not_found(id));
    }
    Ok(id)
}

/// 404 `AGENT_NOT_FOUND`, shaped like Penguin's `AgentNotFoundError`.
pub fn agent_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "AGENT_NOT_FOUND",
        format!("Agent '{id}' not found"),
    )
    .suggest(format!(
        "This server runs one agent, '{DEFAULT_AGENT}'; see GET /api/v1/agents."
    ))
    .with_details(json!({ "agent_id": id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_ids() {
        for ok in [
            "test-1764650000",
            "conv_0123456789abcdef0123456789abcdef",
            "a",
            "session_20250101_120000_deadbeef",
            "ns:thing.v2",
            &"x".repeat(128),
        ] {
            assert_eq!(conversation_id(ok).unwrap(), ok);
        }
        for (bad, why) in [
            ("", "empty"),
            (&"x".repeat(129) as &str, "at most 128"),
            ("has space", "' '"),
            ("a/b", "'/'"),
            ("ünïcode", "'ü'"),
            ("semi;colon", "';'"),
            ("new\nline", "'\\n'"),
        ] {
            let err = conversation_id(bad).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert_eq!(err.code, "INVALID_CONVERSATION_ID");
            assert!(err.message.contains(why), "{bad:?}: {}", err.message);
        }
    }

    #[test]
    fn agent_ids() {
        assert_eq!(agent_id("default").unwrap(), "default");
        let err = agent_id("helper").unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::NOT_FOUND, "AGENT_NOT_FOUND")
        );
        assert_eq!(err.details.unwrap()["agent_id"], "helper");
        for bad in ["", "Default", "a b", &"a".repeat(65)] {
            let err = agent_id(bad).unwrap_err();
            assert_eq!(
                (err.status, err.code),
                (StatusCode::BAD_REQUEST, "INVALID_AGENT_ID"),
                "{bad:?}"
            );
        }
    }
}
