//! Signed GitHub webhook deliveries: payloads made from GitHub's examples,
//! the `X-Hub-Signature-256` GitHub sends, and the request to the api.

use crate::{OWNER, REPO};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// The api's webhook route.
pub const PATH: &str = "/api/v1/integrations/github/webhook";

/// `sha256=<hex>` of `body` under `secret`, as GitHub signs it: the hex
/// HMAC-SHA256 of the raw body keyed with the webhook secret.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A delivery of `event` (with the delivery id `id`, when given) carrying
/// `body` and its `signature`, to the api at `base` (`http://host:port`).
pub fn request(
    http: &reqwest::Client,
    base: &str,
    event: &str,
    id: Option<&str>,
    signature: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let mut request = http
        .post(format!("{base}{PATH}"))
        .header("X-GitHub-Event", event)
        .header("X-Hub-Signature-256", signature)
        .body(body);
    if let Some(id) = id {
        request = request.header("X-GitHub-Delivery", id);
    }
    request
}

/// A delivery of `event` carrying `body`, signed with `secret`.
pub fn signed(
    http: &reqwest::Client,
    base: &str,
    secret: &[u8],
    event: &str,
    id: Option<&str>,
    body: &[u8],
) -> reqwest::RequestBuilder {
    request(
        http,
        base,
        event,
        id,
        &signature(secret, body),
        body.to_vec(),
    )
}

/// GitHub's `issue_comment.created` example, retargeted at `octo-org/hello-world`:
/// comment `comment_id` saying `body` by `login` (a `User` or a `Bot`) on
/// issue or pull request `number`.
pub fn comment(
    number: u64,
    is_pr: bool,
    body: &str,
    login: &str,
    user_type: &str,
    comment_id: u64,
) -> Value {
    let mut payload = crate::webhooks::example("issue_comment", "created");
    payload["repository"]["full_name"] = json!(format!("{OWNER}/{REPO}"));
    payload["repository"]["name"] = json!(REPO);
    payload["repository"]["owner"]["login"] = json!(OWNER);
    payload["issue"]["number"] = json!(number);
    payload["issue"]["labels"] = json!([]);
    if is_pr {
        let pr = format!("https://api.github.com/repos/{OWNER}/{REPO}/pulls/{number}");
        payload["issue"]["pull_request"] = json!({"url": pr, "html_url": pr, "diff_url": format!("{pr}.diff"), "patch_url": format!("{pr}.patch")});
    } else if let Some(issue) = payload["issue"].as_object_mut() {
        issue.remove("pull_request");
    }
    payload["comment"]["id"] = json!(comment_id);
    payload["comment"]["body"] = json!(body);
    payload["comment"]["user"]["login"] = json!(login);
    payload["comment"]["user"]["type"] = json!(user_type);
    payload["sender"]["login"] = json!(login);
    payload["sender"]["type"] = json!(user_type);
    payload
}

#[cfg(test)]
mod tests {
    #[test]
    fn signs_like_github() {
        // The example in GitHub's "Validating webhook deliveries".
        assert_eq!(
            super::signature(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
