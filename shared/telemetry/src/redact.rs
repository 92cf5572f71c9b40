//! Finding and replacing secret shapes in text.

use regex::{Regex, RegexSet};
use std::{
    borrow::Cow,
    fmt,
    sync::{LazyLock, RwLock},
};

/// What replaces a secret.
const MASK: &str = "[REDACTED]";

static PATTERNS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // PEM private keys, whole block (PKCS#1, PKCS#8, EC, encrypted).
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
        // GitHub tokens, of any length: stateless installation tokens are
        // `ghs_<app id>_<JWT>`, base64url, so `.`, `_` and `-` occur.
        r"\b(ghs|ghp|gho|ghu|ghr)_[A-Za-z0-9._-]{16,}",
        r"\bgithub_pat_[A-Za-z0-9_]{20,}",
        // JWTs (App JWTs, ServiceAccount tokens): base64url header.payload.signature.
        r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
        // OpenAI/Anthropic-style API keys.
        r"\bsk-[A-Za-z0-9_-]{16,}",
    ]
    .iter()
    .map(|p| Regex::new(p).expect("redaction pattern compiles"))
    .collect()
});

static ANY_PATTERN: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(PATTERNS.iter().map(|r| r.as_str())).expect("redaction patterns compile")
});

/// Literal secrets registered at run time (a webhook secret, a configured token).
static LITERALS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a literal secret that has no recognisable shape (e.g. a webhook
/// secret) so that every later log line and panic message masks it.
/// Values shorter than 8 bytes are ignored: masking them would shred ordinary text.
pub fn register_secret(secret: &str) {
    let secret = secret.trim();
    if secret.len() < 8 {
        return;
    }
    let mut literals = LITERALS.write().unwrap_or_else(|e| e.into_inner());
    if !literals.iter().any(|s| s == secret) {
        literals.push(secret.to_string());
    }
}

/// Returns `text` with every secret shape and registered secret masked.
/// Borrows when there is nothing to mask, which is the common case.
pub fn redact(text: &str) -> Cow<'_, str> {
    let literals = LITERALS.read().unwrap_or_else(|e| e.into_inner());
    let has_literal = literals.iter().any(|s| text.contains(s.as_str()));
    if !has_literal && !ANY_PATTERN.is_match(text) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for secret in literals.iter() {
        out = out.replace(secret.as_str(), MASK);
    }
    for pattern in PATTERNS.iter() {
        if pattern.is_match(&out) {
            out = pattern.replace_all(&out, MASK).into_owned();
        }
    }
    Cow::Owned(out)
}

/// Displays a value through [`redact`]; for errors that may quote a server's answer.
pub struct Redacted<T>(pub T);

impl<T: fmt::Display> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_secret_shape() {
        // Token-shaped samples are assembled at run time so that no literal in
        // the source looks like a leaked secret to scanners.
        let samples: Vec<String> = [
            ("ghs", "_16C7e42F292c6912E7710c838347Ae178B4a"),
            ("ghp", "_abcdefghijklmnopqrstuvwxyz0123456789"),
            ("gho", "_abcdefghijklmnopqrstuvwxyz0123456789"),
            ("ghu", "_abcdefghijklmnopqrstuvwxyz0123456789"),
            ("ghr", "_abcdefghijklmnopqrstuvwxyz0123456789"),
            (
                "ghs",
                "_eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2lnbmF0dXJlLXRleHQ",
            ),
            // A stateless installation token: `ghs_<app id>_<JWT>`, base64url
            // with `-` and `_` anywhere, about 520 characters.
            (
                "ghs",
                "_4242_eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiI0MjQyIn0-_aGVhZGVy.c2ln-bmF0-dXJl_",
            ),
            (
                "github_pat",
                "_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            ),
            (
                "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9",
                ".eyJpc3MiOiI0MiJ9.sig-nature_x",
            ),
            ("sk-ant", "-api03-abcdefghijklmnop"),
        ]
        .iter()
        .map(|(a, b)| format!("{a}{b}"))
        .collect();
        let long = format!("ghs_4242_eyJ{}-{}", "aB3_".repeat(100), "Zz-9".repeat(30));
        let samples: Vec<String> = samples.into_iter().chain([long]).collect();
        for secret in &samples {
            let secret = secret.as_str();
            let line = format!("minted token={secret} for octo-org");
            let out = redact(&line);
            assert!(!out.contains(secret), "{secret} leaked: {out}");
            assert!(out.contains(MASK), "{out}");
            assert!(out.ends_with(" for octo-org"), "context kept: {out}");
        }
    }

    #[test]
    fn masks_pem_blocks_and_urls_with_tokens() {
        let pem = format!(
            "-----BEGIN RSA {k}-----\nMIIEow\nabc\n-----END RSA {k}-----",
            k = "PRIVATE KEY"
        );
        assert_eq!(redact(&format!("key: {pem} end")), "key: [REDACTED] end");
        let url = format!(
            "https://x-access-token:{}_16C7e42F292c6912E7710c838347Ae178B4a@github.com",
            "ghs"
        );
        assert_eq!(redact(&url), "https://x-access-token:[REDACTED]@github.com");
    }

    #[test]
    fn masks_registered_literals_and_leaves_plain_text_borrowed() {
        register_secret("It's a Secret to Everybody");
        assert_eq!(
            redact("secret=It's a Secret to Everybody!"),
            "secret=[REDACTED]!"
        );
        register_secret("short");
        assert!(matches!(redact("a short line"), Cow::Borrowed(_)));
        assert!(matches!(redact("ghs_short"), Cow::Borrowed(_)));
    }
}
