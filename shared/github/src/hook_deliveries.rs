//! The App's webhook delivery log, read and acted on with the App's JWT:
//! `GET /app/hook/deliveries` (newest first, cursor-paginated through the
//! `Link` header) and `POST /app/hook/deliveries/{id}/attempts`, which asks
//! GitHub to send a delivery again with the same GUID. GitHub never
//! redelivers on its own.

use crate::{AppClient, GitHubError};
use chrono::{DateTime, Utc};
use http::{header::LINK, HeaderMap, Method};
use serde::Deserialize;

/// One attempt to deliver a webhook, as the delivery log lists it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct HookDelivery {
    /// The attempt's id (redelivery asks for it).
    pub id: u64,
    /// The delivery's GUID (`X-GitHub-Delivery`), the same for every attempt.
    pub guid: String,
    /// When it was sent.
    pub delivered_at: DateTime<Utc>,
    /// Whether it was a redelivery.
    #[serde(default)]
    pub redelivery: bool,
    /// The receiver's HTTP status (0 when there was no answer).
    #[serde(default)]
    pub status_code: u16,
    /// GitHub's description (`OK`, `Invalid HTTP Response: 503`, …).
    #[serde(default)]
    pub status: String,
    /// The event.
    #[serde(default)]
    pub event: String,
    /// Its action, if any.
    #[serde(default)]
    pub action: Option<String>,
}

impl HookDelivery {
    /// Whether the receiver accepted it (2xx).
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

/// One page of the delivery log.
#[derive(Debug)]
pub struct DeliveryPage {
    /// Attempts, newest first.
    pub deliveries: Vec<HookDelivery>,
    /// The cursor of the next (older) page, if any.
    pub next_cursor: Option<String>,
}

/// The `cursor` of the `Link` header's `rel="next"` URL.
fn next_cursor(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        if !params.contains("rel=\"next\"") {
            return None;
        }
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        let (_, query) = url.split_once('?')?;
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix("cursor="))
            .map(str::to_string)
    })
}

impl AppClient {
    /// One page of the App's delivery log, newest first: `per_page` (1..=100)
    /// attempts from `cursor` (`None`: the newest).
    pub async fn hook_deliveries(
        &self,
        per_page: u8,
        cursor: Option<&str>,
    ) -> Result<DeliveryPage, GitHubError> {
        let per_page = per_page.clamp(1, 100);
        let path = match cursor {
            // The cursor comes from GitHub's own Link header; keep it URL-safe.
            Some(c)
                if c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.~%=".contains(ch)) =>
            {
                format!("/app/hook/deliveries?per_page={per_page}&cursor={c}")
            }
            Some(_) => {
                return Err(GitHubError::decode(
                    "list webhook deliveries",
                    "GitHub's next cursor holds characters a cursor never has",
                ))
            }
            None => format!("/app/hook/deliveries?per_page={per_page}"),
        };
        let response = self
            .app_call(
                "list webhook deliveries",
                Method::GET,
                &path,
                None,
                &self.jwt_hints(
                    "the App has no webhook configured",
                    "the cursor was refused",
                ),
            )
            .await?;
        let deliveries: Vec<HookDelivery> = serde_json::from_slice(&response.body)
            .map_err(|e| GitHubError::decode("list webhook deliveries", e))?;
        Ok(DeliveryPage {
            deliveries,
            next_cursor: next_cursor(&response.headers),
        })
    }

    /// Asks GitHub to send delivery attempt `delivery_id` again (same payload,
    /// same GUID).
    pub async fn redeliver(&self, delivery_id: u64) -> Result<(), GitHubError> {
        let path = format!("/app/hook/deliveries/{delivery_id}/attempts");
        self.app_call(
            "redeliver webhook",
            Method::POST,
            &path,
            None,
            &self.jwt_hints(
                "the delivery is not in the App's log",
                "GitHub refused to redeliver it (older than three days?)",
            ),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_next_cursor_comes_from_the_link_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(next_cursor(&headers), None);
        headers.insert(
            LINK,
            HeaderValue::from_static(
                "<https://api.github.com/app/hook/deliveries?per_page=2&cursor=v1_12077215967>; rel=\"next\", <https://api.github.com/app/hook/deliveries?per_page=2>; rel=\"first\"",
            ),
        );
        assert_eq!(next_cursor(&headers).as_deref(), Some("v1_12077215967"));
        headers.insert(
            LINK,
            HeaderValue::from_static("<https://x/app/hook/deliveries?per_page=2>; rel=\"first\""),
        );
        assert_eq!(next_cursor(&headers), None);
    }

    #[test]
    fn github_shaped_attempts_parse() {
        let json = r#"[{"id":12345678,"guid":"0b989ba4-242f-11e5-81e1-c7b6966d2516","delivered_at":"2019-06-03T00:57:16Z","redelivery":false,"duration":0.27,"status":"OK","status_code":200,"event":"issues","action":"opened","installation_id":123,"repository_id":456,"throttled_at":null},
                       {"id":12345679,"guid":"0b989ba4-242f-11e5-81e1-c7b6966d2517","delivered_at":"2019-06-03T00:57:17Z","redelivery":true,"duration":10.0,"status":"timed out","status_code":0,"event":"ping","action":null,"installation_id":null,"repository_id":null}]"#;
        let parsed: Vec<HookDelivery> = serde_json::from_str(json).unwrap();
        assert!(parsed[0].succeeded() && !parsed[1].succeeded());
        assert_eq!(parsed[1].action, None);
        assert!(parsed[1].redelivery);
    }
}
