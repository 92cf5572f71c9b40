//! Where a webhook is verified and stored. Checks, in this order: a secret
//! is configured, the signature over the raw bytes, JSON, a delivery id, the
//! repository is allowed; then the delivery is committed to the store and the
//! worker is woken. The work is never done inline (GitHub gives up after
//! 10 s). A GUID already stored (a redelivery) is acknowledged and not stored
//! or processed again: GitHub counts anything but 2xx, 409 included, as a
//! failed delivery, and the tokenator's sweep would keep redelivering it.

pub mod signature;

use crate::{config::ConfigWatcher, metrics::BotMetrics};
use penguin_api_store::{NewDelivery, Store, StoreError};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::Notify;

/// GitHub does not send payloads over 25 MB.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

/// The headers of a delivery the checks read.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliveryHeaders<'a> {
    /// `X-GitHub-Event`.
    pub event: Option<&'a str>,
    /// `X-GitHub-Delivery`.
    pub delivery_id: Option<&'a str>,
    /// `X-Hub-Signature-256`.
    pub signature: Option<&'a str>,
}

/// Why a delivery was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// No webhook secret is configured: nothing can be verified.
    #[error("Webhook secret not configured")]
    NotConfigured,
    /// The signature is missing or does not match any configured secret.
    #[error("Invalid signature")]
    InvalidSignature,
    /// The (verified) body is not JSON.
    #[error("Invalid JSON payload")]
    InvalidJson,
    /// No `X-GitHub-Delivery`.
    #[error("Missing delivery id")]
    MissingDeliveryId,
    /// The repository is not in the allowlist.
    #[error("Unauthorized repository")]
    UnauthorizedRepository,
    /// The store could not commit it (GitHub may redeliver).
    #[error("cannot store the delivery: {0}")]
    Store(StoreError),
}

/// A stored (or already stored) delivery.
#[derive(Debug)]
pub struct Accepted {
    /// Its event name.
    pub event: String,
    /// The GUID was stored before: acknowledged, nothing more.
    pub duplicate: bool,
}

/// The webhook's receiving end.
pub struct Ingress {
    secrets: Vec<Vec<u8>>,
    default_repository: Option<String>,
    config: Arc<ConfigWatcher>,
    store: Store,
    metrics: Arc<BotMetrics>,
    wake: Arc<Notify>,
}

impl Ingress {
    /// Verifies with `secrets` (current first, then the previous one during
    /// rotation); `default_repository` (`GITHUB_REPOSITORY`) counts as an
    /// allowlist entry.
    pub fn new(
        secrets: Vec<Vec<u8>>,
        default_repository: Option<String>,
        config: Arc<ConfigWatcher>,
        store: Store,
        metrics: Arc<BotMetrics>,
        wake: Arc<Notify>,
    ) -> Ingress {
        Ingress {
            secrets,
            default_repository,
            config,
            store,
            metrics,
            wake,
        }
    }

    /// Checks and stores one delivery (durably, before this returns).
    pub async fn accept(
        &self,
        headers: DeliveryHeaders<'_>,
        body: &[u8],
    ) -> Result<Accepted, IngressError> {
        if self.secrets.is_empty() {
            return Err(IngressError::NotConfigured);
        }
        let secrets: Vec<&[u8]> = self.secrets.iter().map(Vec::as_slice).collect();
        if !signature::verify(&secrets, body, headers.signature) {
            tracing::warn!(
                delivery = headers.delivery_id,
                "webhook with an invalid signature"
            );
            return Err(IngressError::InvalidSignature);
        }
        let payload: Value = serde_json::from_slice(body).map_err(|_| IngressError::InvalidJson)?;
        let delivery_id = headers
            .delivery_id
            .ok_or(IngressError::MissingDeliveryId)?
            .to_string();
        let event = headers.event.unwrap_or("unknown").to_string();
        let repository = payload
            .get("repository")
            .and_then(|r| r.get("full_name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let span = tracing::info_span!("delivery", delivery_id = %delivery_id, event = %event);
        if let Some(repo) = &repository {
            let config = self.config.current();
            if !config
                .github
                .webhook
                .repo_allowed(repo, self.default_repository.as_deref())
            {
                span.in_scope(|| tracing::warn!(repository = %repo, "delivery for a repository that is not allowed"));
                return Err(IngressError::UnauthorizedRepository);
            }
        }
        let action = payload
            .get("action")
            .and_then(Value::as_str)
            .map(str::to_string);
        let stored = self
            .store
            .insert_delivery(NewDelivery {
                delivery_id,
                event: event.clone(),
                action,
                repository,
                payload: body.to_vec(),
            })
            .await;
        match stored {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                self.metrics.dedupe_hit();
                span.in_scope(|| tracing::info!("delivery already stored (a redelivery)"));
                return Ok(Accepted {
                    event,
                    duplicate: true,
                });
            }
            Err(err) => return Err(IngressError::Store(err)),
        }
        self.metrics.received(&event);
        span.in_scope(|| tracing::info!("delivery stored and queued"));
        self.wake.notify_one();
        Ok(Accepted {
            event,
            duplicate: false,
        })
    }
}
