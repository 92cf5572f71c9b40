//! Credentials: App JWTs, installation tokens, personal access tokens, and HTTP Basic for git.

use std::collections::HashSet;

use base64::Engine as _;
use http::HeaderMap;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use crate::state::Shared;

/// "A JSON web token could not be decoded".
pub(crate) const JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";
/// An `exp` more than ten minutes ahead.
pub(crate) const JWT_EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
/// A missing, non-numeric or past `exp`.
pub(crate) const JWT_EXP_INVALID: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
/// A missing, non-integer or future `iat`.
pub(crate) const JWT_IAT_INVALID: &str =
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
/// An `iss` that is neither the App ID nor its client ID.
pub(crate) const JWT_UNKNOWN_ISSUER: &str = "Integration not found";

/// Longest allowed JWT lifetime (`exp - iat`), and how far `exp` may be ahead of now.
const MAX_JWT_LIFETIME_SECS: i64 = 600;
/// Tolerated clock drift for `iat` and `exp`.
const DRIFT_SECS: i64 = 60;

/// What an API request's `Authorization` header carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// No `Authorization` header.
    None,
    /// `Bearer <jwt>` (anything after `Bearer` that is not an installation token).
    Jwt(String),
    /// `token ghs_...` or `Bearer ghs_...`.
    Token(String),
    /// `token <pat>` or `Bearer <pat>` with a configured personal access token: the user's
    /// login.
    User(String),
    /// Something else (unknown scheme, `token` with a non-installation token, a GitHub user
    /// token that is not configured, garbage).
    Invalid,
}

/// The prefixes of GitHub's user tokens (classic and fine-grained PATs, OAuth and user-to-server
/// tokens): presented but not configured, they are bad credentials rather than broken JWTs.
const USER_TOKEN_PREFIXES: [&str; 4] = ["ghp_", "github_pat_", "gho_", "ghu_"];

/// Reads the `Authorization` header of an API request; `user_of` names the user of a configured
/// personal access token.
pub(crate) fn credential(
    headers: &HeaderMap,
    user_of: impl FnOnce(&str) -> Option<String>,
) -> Credential {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Credential::None;
    };
    let Ok(value) = value.to_str() else {
        return Credential::Invalid;
    };
    let mut parts = value.trim().splitn(2, char::is_whitespace);
    let scheme = parts.next().unwrap_or_default();
    let secret = parts.next().unwrap_or_default().trim();
    if secret.is_empty() {
        return Credential::Invalid;
    }
    let is_bearer = scheme.eq_ignore_ascii_case("bearer");
    if is_bearer || scheme.eq_ignore_ascii_case("token") {
        if let Some(login) = user_of(secret) {
            return Credential::User(login);
        }
    }
    let is_installation_token = secret.starts_with("ghs_");
    if is_bearer {
        if is_installation_token {
            Credential::Token(secret.to_string())
        } else if USER_TOKEN_PREFIXES.iter().any(|p| secret.starts_with(p)) {
            Credential::Invalid
        } else {
            Credential::Jwt(secret.to_string())
        }
    } else if scheme.eq_ignore_ascii_case("token") && is_installation_token {
        Credential::Token(secret.to_string())
    } else {
        Credential::Invalid
    }
}

/// Verifies an App JWT against the App's key and the stand-in's clock (`now`, epoch seconds).
/// Returns GitHub's error message on failure.
pub(crate) fn verify_app_jwt(shared: &Shared, jwt: &str, now: i64) -> Result<(), &'static str> {
    // GitHub finds the App (and its key) through `iss` before it checks the signature.
    let unverified = jsonwebtoken::dangerous::insecure_decode::<Value>(jwt)
        .map_err(|_| JWT_UNDECODABLE)?
        .claims;
    if !issuer_matches(shared, unverified.get("iss")) {
        return Err(JWT_UNKNOWN_ISSUER);
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let claims = jsonwebtoken::decode::<Value>(jwt, &shared.decoding_key, &validation)
        .map_err(|_| JWT_UNDECODABLE)?
        .claims;
    check_times(&claims, now)
}

/// `iss` is the App ID (string or integer) or the client ID.
fn issuer_matches(shared: &Shared, iss: Option<&Value>) -> bool {
    match iss {
        Some(Value::String(s)) => *s == shared.app_id.to_string() || *s == shared.client_id,
        Some(Value::Number(n)) => n.as_u64() == Some(shared.app_id),
        _ => false,
    }
}

/// The `iat`/`exp` rules.
fn check_times(claims: &Value, now: i64) -> Result<(), &'static str> {
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(JWT_IAT_INVALID)?;
    if iat > now + DRIFT_SECS {
        return Err(JWT_IAT_INVALID);
    }
    let exp = match claims.get("exp") {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .ok_or(JWT_EXP_INVALID)?,
        _ => return Err(JWT_EXP_INVALID),
    };
    if exp <= now {
        return Err(JWT_EXP_INVALID);
    }
    if exp.saturating_sub(iat) > MAX_JWT_LIFETIME_SECS
        || exp > now + MAX_JWT_LIFETIME_SECS + DRIFT_SECS
    {
        return Err(JWT_EXP_TOO_FAR);
    }
    Ok(())
}

/// HTTP Basic credentials, if the header is Basic and decodes to `user:password`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Basic {
    /// No `Authorization` header: the client should be challenged.
    Missing,
    /// `user`, `password`.
    Credentials(String, String),
    /// A header that is not valid Basic credentials.
    Malformed,
}

/// Reads HTTP Basic credentials.
pub(crate) fn basic(headers: &HeaderMap) -> Basic {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Basic::Missing;
    };
    let Some(encoded) = value.to_str().ok().and_then(|v| {
        let (scheme, rest) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
    }) else {
        return Basic::Malformed;
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((user, pass)) => Basic::Credentials(user.to_string(), pass.to_string()),
        None => Basic::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    /// Classifies with no personal access tokens configured.
    fn credential(h: &HeaderMap) -> Credential {
        super::credential(h, |_| None)
    }

    #[test]
    fn credentials_are_classified() {
        assert_eq!(credential(&HeaderMap::new()), Credential::None);
        assert_eq!(
            credential(&headers("token ghs_abc")),
            Credential::Token("ghs_abc".into())
        );
        assert_eq!(
            credential(&headers("Bearer ghs_abc")),
            Credential::Token("ghs_abc".into())
        );
        assert_eq!(
            credential(&headers("Bearer eyJ.x.y")),
            Credential::Jwt("eyJ.x.y".into())
        );
        assert_eq!(credential(&headers("token ghp_abc")), Credential::Invalid);
        assert_eq!(credential(&headers("Basic abc")), Credential::Invalid);
        assert_eq!(credential(&headers("Bearer")), Credential::Invalid);
        // Unknown user tokens are bad credentials, not JWTs.
        assert_eq!(credential(&headers("Bearer ghp_abc")), Credential::Invalid);
        assert_eq!(
            credential(&headers("Bearer github_pat_abc")),
            Credential::Invalid
        );
    }

    #[test]
    fn personal_access_tokens_name_their_user() {
        let user_of = |t: &str| (t == "ghp_octo" || t == "ghs_odd").then(|| "octocat".to_string());
        for auth in ["token ghp_octo", "Bearer ghp_octo", "bearer ghs_odd"] {
            assert_eq!(
                super::credential(&headers(auth), user_of),
                Credential::User("octocat".into()),
                "{auth}"
            );
        }
        assert_eq!(
            super::credential(&headers("token ghp_other"), user_of),
            Credential::Invalid
        );
        assert_eq!(
            super::credential(&headers("Basic ghp_octo"), user_of),
            Credential::Invalid
        );
        assert_eq!(
            super::credential(&headers("Bearer ghs_abc"), user_of),
            Credential::Token("ghs_abc".into())
        );
    }

    #[test]
    fn time_claims_follow_github() {
        let now = 1_700_000_000;
        let ok = json!({"iat": now - 60, "exp": now + 540});
        assert_eq!(check_times(&ok, now), Ok(()));
        let future_iat = json!({"iat": now + 120, "exp": now + 300});
        assert_eq!(check_times(&future_iat, now), Err(JWT_IAT_INVALID));
        let float_iat = json!({"iat": 1.5, "exp": now + 300});
        assert_eq!(check_times(&float_iat, now), Err(JWT_IAT_INVALID));
        let no_iat = json!({"exp": now + 300});
        assert_eq!(check_times(&no_iat, now), Err(JWT_IAT_INVALID));
        let expired = json!({"iat": now - 700, "exp": now - 100});
        assert_eq!(check_times(&expired, now), Err(JWT_EXP_INVALID));
        let no_exp = json!({"iat": now});
        assert_eq!(check_times(&no_exp, now), Err(JWT_EXP_INVALID));
        let string_exp = json!({"iat": now, "exp": "soon"});
        assert_eq!(check_times(&string_exp, now), Err(JWT_EXP_INVALID));
        let too_long = json!({"iat": now - 60, "exp": now + 600});
        assert_eq!(check_times(&too_long, now), Err(JWT_EXP_TOO_FAR));
        let too_far = json!({"iat": now + 50, "exp": now + 661});
        assert_eq!(check_times(&too_far, now), Err(JWT_EXP_TOO_FAR));
    }

    #[test]
    fn basic_credentials_decode() {
        let enc = base64::engine::general_purpose::STANDARD.encode("x-access-token:ghs_1");
        assert_eq!(
            basic(&headers(&format!("Basic {enc}"))),
            Basic::Credentials("x-access-token".into(), "ghs_1".into())
        );
        assert_eq!(basic(&HeaderMap::new()), Basic::Missing);
        assert_eq!(basic(&headers("Basic !!!")), Basic::Malformed);
        assert_eq!(basic(&headers("Bearer abc")), Basic::Malformed);
    }
}
