//! Authenticating TCP callers: a Kubernetes projected ServiceAccount JWT in
//! `authorization: Bearer`, verified against a JWKS with issuer and audience
//! checks. What an authenticated caller may do is the service's own policy.

use jsonwebtoken::{
    decode, decode_header,
    errors::ErrorKind,
    jwk::{Jwk, JwkSet},
    Algorithm, DecodingKey, Validation,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    sync::{Mutex, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tonic::{metadata::MetadataMap, Status};

/// Asymmetric algorithms only: a JWKS never holds an HMAC secret we should trust.
const ALLOWED_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// A verified JWT is remembered (by its SHA-256) for at most this long and
/// never past its `exp`: callers reuse their projected token for many calls,
/// and one hash lookup is far cheaper than an RSA verification.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Bound on remembered JWTs; the cache is emptied when full.
const VERIFIED_MAX: usize = 4096;

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Verifies callers' JWTs. Keys are swapped in place when their source
/// changes (see [`crate::jwks::keep_fresh`]).
pub struct JwtVerifier {
    keys: RwLock<JwkSet>,
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    issuer: String,
    audience: String,
}

impl JwtVerifier {
    /// A verifier of JWTs signed by `keys` for `issuer` and `audience`.
    pub fn new(keys: JwkSet, issuer: String, audience: String) -> Self {
        JwtVerifier {
            keys: RwLock::new(keys),
            verified: Mutex::default(),
            issuer,
            audience,
        }
    }

    /// Replaces the JWKS.
    pub fn set_keys(&self, keys: JwkSet) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        // A removed key must stop vouching for the tokens it verified.
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The caller's `sub`, or UNAUTHENTICATED with the reason.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<String, Status> {
        let header = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated("missing authorization: Bearer <ServiceAccount JWT>")
            })?;
        let jwt = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("authorization must be Bearer <ServiceAccount JWT>")
            })?
            .trim();
        let digest: [u8; 32] = Sha256::digest(jwt.as_bytes()).into();
        if let Some((subject, until)) = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest)
        {
            if *until > Instant::now() {
                return Ok(subject.clone());
            }
        }
        let subject = self.verify(jwt)?;
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(digest, (subject.0.clone(), Instant::now() + subject.1));
        Ok(subject.0)
    }

    /// Full verification: signature, algorithm, issuer, audience, expiry.
    /// Returns the subject and how long the result may be remembered.
    fn verify(&self, jwt: &str) -> Result<(String, Duration), Status> {
        let head = decode_header(jwt)
            .map_err(|_| Status::unauthenticated("the bearer token is not a JWT"))?;
        if !ALLOWED_ALGORITHMS.contains(&head.alg) {
            return Err(Status::unauthenticated(format!(
                "JWT algorithm {:?} is not accepted",
                head.alg
            )));
        }
        let key = self.key_for(head.kid.as_deref())?;
        let decoding = DecodingKey::from_jwk(&key)
            .map_err(|_| Status::unauthenticated("the JWKS key for this JWT is unusable"))?;
        let mut validation = Validation::new(head.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let data = decode::<Claims>(jwt, &decoding, &validation).map_err(|e| {
            let reason = match e.kind() {
                ErrorKind::ExpiredSignature => "the JWT has expired",
                ErrorKind::InvalidAudience => "the JWT's audience is not this service's",
                ErrorKind::InvalidIssuer => "the JWT's issuer is not trusted",
                ErrorKind::InvalidSignature => "the JWT's signature does not verify",
                ErrorKind::ImmatureSignature => "the JWT is not valid yet",
                ErrorKind::MissingRequiredClaim(_) => {
                    "the JWT lacks a required claim (exp, iss, aud, sub)"
                }
                _ => "the JWT is invalid",
            };
            Status::unauthenticated(reason)
        })?;
        let until_exp = (UNIX_EPOCH + Duration::from_secs(data.claims.exp))
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Ok((data.claims.sub, until_exp.min(VERIFIED_TTL)))
    }

    fn key_for(&self, kid: Option<&str>) -> Result<Jwk, Status> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let found = match kid {
            Some(kid) => keys.find(kid).cloned(),
            None if keys.keys.len() == 1 => keys.keys.first().cloned(),
            None => None,
        };
        found.ok_or_else(|| Status::unauthenticated("no JWKS key matches the JWT's key id"))
    }
}
