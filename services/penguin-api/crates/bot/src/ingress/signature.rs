//! `X-Hub-Signature-256`: `sha256=` followed by the hex HMAC-SHA256 of the raw
//! request body, keyed with the webhook secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header's prefix.
pub const PREFIX: &str = "sha256=";

/// Whether `header` is a valid signature of `body` under any of `secrets`
/// (the current secret and, during a rotation, the previous one).
///
/// The comparison is constant-time (`hmac`'s `verify_slice`). A missing
/// header, a header without the `sha256=` prefix, one whose digest is not 64
/// hex digits, no secrets, or only empty secrets all give `false`: an empty
/// key is one anybody could sign with.
pub fn verify(secrets: &[&[u8]], body: &[u8], header: Option<&str>) -> bool {
    let Some(header) = header else {
        return false;
    };
    let Some(hex_digest) = header.trim().strip_prefix(PREFIX) else {
        return false;
    };
    if hex_digest.len() != 64 {
        return false;
    }
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    // Every secret is tried, so the time taken does not reveal which matched.
    let mut matched = false;
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(body);
        matched |= mac.verify_slice(&expected).is_ok();
    }
    matched
}

/// `sha256=<hex>` for `body` under `secret`, as GitHub sends it (for tests
/// and benchmarks).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const EXPECTED: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_test_vector() {
        assert_eq!(sign(SECRET, BODY), EXPECTED);
        assert!(verify(&[SECRET], BODY, Some(EXPECTED)));
    }

    #[test]
    fn uppercase_hex_and_surrounding_whitespace_are_accepted() {
        let upper = format!("sha256={}", EXPECTED[7..].to_uppercase());
        assert!(verify(&[SECRET], BODY, Some(&upper)));
        assert!(verify(&[SECRET], BODY, Some(&format!(" {EXPECTED} "))));
    }

    #[test]
    fn rotation_accepts_current_and_previous() {
        let old: &[u8] = b"old secret";
        let new: &[u8] = b"new secret";
        let by_old = sign(old, BODY);
        let by_new = sign(new, BODY);
        assert!(verify(&[new, old], BODY, Some(&by_old)));
        assert!(verify(&[new, old], BODY, Some(&by_new)));
        assert!(!verify(&[new], BODY, Some(&by_old)));
        assert!(!verify(&[b"other".as_slice()], BODY, Some(&by_new)));
    }

    #[test]
    fn wrong_body_or_secret_fails() {
        assert!(!verify(&[SECRET], b"Hello, World?", Some(EXPECTED)));
        assert!(!verify(
            &[b"It's a secret to everybody".as_slice()],
            BODY,
            Some(EXPECTED)
        ));
    }

    #[test]
    fn missing_or_malformed_headers_fail() {
        let digest = &EXPECTED[7..];
        for header in [
            None,
            Some(""),
            Some("sha256="),
            Some(digest),
            Some(&format!("sha1={digest}")),
            Some(&format!("SHA256={digest}")),
            Some(&format!("sha256={}", &digest[..63])),
            Some(&format!("sha256={digest}00")),
            Some(&format!("sha256={}zz", &digest[..62])),
            Some(&format!("sha256= {digest}")),
        ] {
            assert!(!verify(&[SECRET], BODY, header), "{header:?}");
        }
    }

    #[test]
    fn no_secret_or_empty_secret_never_verifies() {
        assert!(!verify(&[], BODY, Some(EXPECTED)));
        let empty: &[u8] = b"";
        let forged = sign(empty, BODY);
        assert!(!verify(&[empty], BODY, Some(&forged)));
        assert!(verify(&[empty, SECRET], BODY, Some(EXPECTED)));
    }

    #[test]
    fn empty_body_round_trips() {
        let sig = sign(SECRET, b"");
        assert!(verify(&[SECRET], b"", Some(&sig)));
        assert!(!verify(&[SECRET], b" ", Some(&sig)));
    }
}
