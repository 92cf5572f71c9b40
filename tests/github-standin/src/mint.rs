//! `POST /app/installations/{id}/access_tokens`: minting installation tokens, down-scoping and
//! fault injection.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::api::{base_url, charge, finish, identify, json_response, Accept, ApiError, AppState};
use crate::objects::{self, level_rank};
use crate::state::{RepoInfo, Shared};
use crate::{Fault, MintRecord, TokenFormat};

/// The request header that overrides the token format for one mint request.
const STATELESS_HEADER: &str = "x-github-stateless-s2s-token";

/// The format a mint request forces with `X-GitHub-Stateless-S2S-Token`: `enabled` stateless,
/// `disabled` classic; absent or any other value (`true`, `1`, ...) forces nothing.
fn forced_format(headers: &HeaderMap) -> Option<TokenFormat> {
    match headers.get(STATELESS_HEADER)?.to_str().ok()?.trim() {
        "enabled" => Some(TokenFormat::Stateless),
        "disabled" => Some(TokenFormat::Classic),
        _ => None,
    }
}

/// The scoping a mint request asked for.
#[derive(Debug, Default)]
struct MintBody {
    repositories: Option<Value>,
    repository_ids: Option<Value>,
    permissions: Option<Value>,
}

/// Parses a mint body: `Err(400 message)` for malformed JSON, `Err(422)` for a non-object.
fn parse_mint_body(body: &[u8]) -> Result<MintBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(MintBody::default());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "Problems parsing JSON"))?;
    match value {
        Value::Null => Ok(MintBody::default()),
        Value::Object(mut m) => Ok(MintBody {
            repositories: m.remove("repositories"),
            repository_ids: m.remove("repository_ids"),
            permissions: m.remove("permissions"),
        }),
        other => Err(ApiError::unprocessable(format!(
            "Invalid request.\n\n{other} is not an object."
        ))),
    }
}

/// The requested repository names, if they are a list of strings.
fn requested_names(body: &MintBody) -> Option<Vec<String>> {
    body.repositories.as_ref()?.as_array().map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    })
}

/// The requested permissions, if they are an object of strings.
fn requested_permissions(body: &MintBody) -> Option<BTreeMap<String, String>> {
    body.permissions.as_ref()?.as_object().map(|m| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect()
    })
}

/// The response for an injected fault, or `None` to answer normally (after any delay).
pub(crate) async fn apply_fault(shared: &Shared, fault: Option<Fault>) -> Option<ApiError> {
    const SECONDARY: &str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.";
    match fault? {
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = status.canonical_reason().unwrap_or("Server Error");
            Some(ApiError::new(status, message))
        }
        Fault::RateLimited { retry_after_secs } => Some(
            ApiError::new(StatusCode::FORBIDDEN, SECONDARY).header("retry-after", retry_after_secs),
        ),
        Fault::TooManyRequests { retry_after_secs } => Some(
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, SECONDARY)
                .header("retry-after", retry_after_secs),
        ),
        Fault::PrimaryRateLimit { reset_in_secs } => {
            let limit = shared.rate_limit_per_hour;
            let reset = shared
                .now()
                .timestamp()
                .saturating_add(i64::try_from(reset_in_secs).unwrap_or(i64::MAX / 2));
            Some(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("API rate limit exceeded for app ID {}.", shared.app_id),
                )
                .header("x-ratelimit-limit", limit)
                .header("x-ratelimit-remaining", 0)
                .header("x-ratelimit-used", limit)
                .header("x-ratelimit-reset", reset)
                .header("x-ratelimit-resource", "core"),
            )
        }
    }
}

/// `POST /app/installations/{id}/access_tokens`.
pub(crate) async fn mint(
    State(shared): AppState,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let base = base_url(&headers);
    let identified = match identify(&shared, &headers, Accept::Jwt) {
        Ok(Some(i)) => i,
        Ok(None) => return ApiError::not_found().into_response(),
        Err(e) => return e.into_response(),
    };
    let installation_id = id.ok().and_then(|Path(id)| id.parse::<u64>().ok());
    let parsed = parse_mint_body(&body);
    let index = installation_id.map(|installation_id| {
        let (repositories, permissions) = match &parsed {
            Ok(b) => (requested_names(b), requested_permissions(b)),
            Err(_) => (None, None),
        };
        shared.with(|s| {
            s.mints.push(MintRecord {
                installation_id,
                repositories,
                permissions,
                status: 499,
            });
            s.mints.len() - 1
        })
    });
    let record_status = |status: StatusCode| {
        if let Some(index) = index {
            shared.with(|s| {
                if let Some(record) = s.mints.get_mut(index) {
                    record.status = status.as_u16();
                }
            });
        }
    };
    let authed = match charge(&shared, identified, true) {
        Ok(a) => a,
        Err(e) => {
            record_status(e.status);
            return e.into_response();
        }
    };
    let Some(installation_id) = installation_id else {
        return finish(Some(&authed), Err(ApiError::not_found()));
    };
    let fault = shared.with(|s| s.faults.pop_front());
    let result = match apply_fault(&shared, fault).await {
        Some(err) => Err(err),
        None => {
            parsed.and_then(|b| issue(&shared, &base, installation_id, &b, forced_format(&headers)))
        }
    };
    let resp = finish(Some(&authed), result);
    record_status(resp.status());
    resp
}

/// Validates a mint request against the installation and issues the token.
fn issue(
    shared: &Shared,
    base: &str,
    installation_id: u64,
    body: &MintBody,
    format: Option<TokenFormat>,
) -> Result<Response, ApiError> {
    let inst = shared
        .with(|s| s.installation(installation_id).cloned())
        .filter(|i| !i.deleted)
        .ok_or_else(ApiError::not_found)?;
    if inst.suspended_at.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "This installation has been suspended",
        ));
    }
    let available = shared.repos_of(&inst.spec);
    let selected = select_repositories(body, &available)?;
    let permissions = select_permissions(body, &inst.spec.permissions)?;
    let repos = selected.clone().unwrap_or(available);
    let (token, expires_at) =
        shared.issue_token(installation_id, repos, permissions.clone(), format);
    let mut out = json!({
        "token": token,
        "expires_at": objects::timestamp(expires_at),
        "permissions": permissions,
        "repository_selection": "selected",
    });
    if let Some(selected) = selected {
        out["repositories"] = Value::Array(
            selected
                .iter()
                .map(|r| objects::repository(shared, base, r))
                .collect(),
        );
    }
    Ok(json_response(StatusCode::CREATED, &out))
}

/// The repositories a mint request scopes to (`None`: no scoping).
fn select_repositories(
    body: &MintBody,
    available: &[RepoInfo],
) -> Result<Option<Vec<RepoInfo>>, ApiError> {
    const INACCESSIBLE: &str = "There is at least one repository that does not exist or is not accessible to the parent installation.";
    let mut wanted: Vec<RepoInfo> = Vec::new();
    let mut any = false;
    if let Some(value) = &body.repositories {
        let names = value.as_array().ok_or_else(|| {
            ApiError::unprocessable(format!(
                "Invalid request.\n\nFor 'properties/repositories', {value} is not an array."
            ))
        })?;
        any = true;
        for name in names {
            let name = name.as_str().ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "Invalid request.\n\nFor 'items', {name} is not a string."
                ))
            })?;
            let repo = available
                .iter()
                .find(|r| r.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| ApiError::unprocessable(INACCESSIBLE))?;
            wanted.push(repo.clone());
        }
    }
    if let Some(value) = &body.repository_ids {
        let ids = value.as_array().ok_or_else(|| {
            ApiError::unprocessable(format!(
                "Invalid request.\n\nFor 'properties/repository_ids', {value} is not an array."
            ))
        })?;
        any = true;
        for id in ids {
            let id = id.as_u64().ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "Invalid request.\n\nFor 'items', {id} is not an integer."
                ))
            })?;
            let repo = available
                .iter()
                .find(|r| r.id == id)
                .ok_or_else(|| ApiError::unprocessable(INACCESSIBLE))?;
            wanted.push(repo.clone());
        }
    }
    if !any {
        return Ok(None);
    }
    if wanted.len() > 500 {
        return Err(ApiError::unprocessable(
            "Too many repositories: at most 500 can be requested.",
        ));
    }
    // Keep the installation's order, without duplicates.
    let selected: Vec<RepoInfo> = available
        .iter()
        .filter(|r| wanted.contains(r))
        .cloned()
        .collect();
    Ok(Some(selected))
}

/// The permissions a mint request is granted.
fn select_permissions(
    body: &MintBody,
    installation: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    const NOT_GRANTED: &str = "The permissions requested are not granted to this installation.";
    let Some(value) = &body.permissions else {
        return Ok(installation.clone());
    };
    let requested = value.as_object().ok_or_else(|| {
        ApiError::unprocessable(format!(
            "Invalid request.\n\nFor 'properties/permissions', {value} is not an object."
        ))
    })?;
    if requested.is_empty() {
        return Ok(installation.clone());
    }
    let mut granted = BTreeMap::new();
    for (name, level) in requested {
        let level = level.as_str().unwrap_or_default();
        let have = installation.get(name).map(|l| level_rank(l)).unwrap_or(0);
        let want = level_rank(level);
        if want == 0 || want > have {
            return Err(ApiError::unprocessable(NOT_GRANTED));
        }
        granted.insert(name.clone(), level.to_string());
    }
    Ok(granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn permissions_cannot_exceed_the_installation() {
        let inst = perms(&[("contents", "write"), ("metadata", "read")]);
        let body = |v: Value| MintBody {
            permissions: Some(v),
            ..Default::default()
        };
        assert_eq!(
            select_permissions(&body(json!({"contents": "read"})), &inst).unwrap(),
            perms(&[("contents", "read")])
        );
        assert!(select_permissions(&body(json!({"contents": "admin"})), &inst).is_err());
        assert!(select_permissions(&body(json!({"metadata": "write"})), &inst).is_err());
        assert!(select_permissions(&body(json!({"issues": "read"})), &inst).is_err());
        assert!(select_permissions(&body(json!({"contents": "bogus"})), &inst).is_err());
        assert!(select_permissions(&body(json!(["contents"])), &inst).is_err());
        assert_eq!(
            select_permissions(&MintBody::default(), &inst).unwrap(),
            inst
        );
    }

    #[test]
    fn the_format_header_forces_only_enabled_and_disabled() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("X-GitHub-Stateless-S2S-Token", v.parse().unwrap());
            forced_format(&h)
        };
        assert_eq!(with("enabled"), Some(TokenFormat::Stateless));
        assert_eq!(with("disabled"), Some(TokenFormat::Classic));
        for ignored in ["true", "false", "1", "0", ""] {
            assert_eq!(with(ignored), None, "{ignored:?}");
        }
        assert_eq!(forced_format(&HeaderMap::new()), None);
    }

    #[test]
    fn mint_bodies_parse() {
        assert!(parse_mint_body(b"").unwrap().repositories.is_none());
        assert!(parse_mint_body(b"null").is_ok());
        let err = parse_mint_body(b"{not json").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.message, "Problems parsing JSON");
        let err = parse_mint_body(b"[1]").unwrap_err();
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        let b = parse_mint_body(br#"{"repositories":["a"],"permissions":{"contents":"read"}}"#)
            .unwrap();
        assert_eq!(requested_names(&b), Some(vec!["a".to_string()]));
        assert_eq!(
            requested_permissions(&b),
            Some(perms(&[("contents", "read")]))
        );
    }
}
