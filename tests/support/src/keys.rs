//! ServiceAccount-style JWTs for gRPC callers, and the JWKS that verifies them.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::{pkcs8::DecodePublicKey, traits::PublicKeyParts, RsaPublicKey};
use std::time::{SystemTime, UNIX_EPOCH};

/// The key id the test JWKS publishes.
pub const KID: &str = "penguin-test-sa";
/// Issuer of test ServiceAccount tokens.
pub const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Audience the tokenator expects.
pub const SA_AUDIENCE: &str = "penguin-tokenator";

/// The JWKS (JSON) for `fixtures/sa-issuer-key.pub.pem`.
pub fn jwks_json() -> String {
    let pem = std::fs::read_to_string(crate::fixture("sa-issuer-key.pub.pem")).expect("fixture");
    let key = RsaPublicKey::from_public_key_pem(&pem).expect("public key");
    serde_json::json!({
        "keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": KID,
            "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        }]
    })
    .to_string()
}

/// Claims of a test ServiceAccount token.
pub struct SaToken<'a> {
    /// `sub`, e.g. `system:serviceaccount:agents:runner`.
    pub subject: &'a str,
    /// `aud`.
    pub audience: &'a str,
    /// `iss`.
    pub issuer: &'a str,
    /// Seconds from now until `exp` (negative: already expired).
    pub expires_in: i64,
    /// Sign with this fixture key instead of the JWKS's.
    pub key_fixture: &'a str,
}

impl<'a> SaToken<'a> {
    /// A valid token for `subject`.
    pub fn valid(subject: &'a str) -> Self {
        SaToken {
            subject,
            audience: SA_AUDIENCE,
            issuer: SA_ISSUER,
            expires_in: 600,
            key_fixture: "sa-issuer-key.pem",
        }
    }

    /// Signs it (RS256, with the test key id).
    pub fn sign(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let claims = serde_json::json!({
            "sub": self.subject,
            "aud": [self.audience],
            "iss": self.issuer,
            "iat": now - 5,
            "nbf": now - 5,
            "exp": now + self.expires_in,
            "kubernetes.io": {"namespace": "agents"},
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KID.into());
        let pem = std::fs::read(crate::fixture(self.key_fixture)).expect("fixture");
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(&pem).expect("key"),
        )
        .expect("sign")
    }
}
