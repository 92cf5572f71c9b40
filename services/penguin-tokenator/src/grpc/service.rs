//! `penguin.tokenator.v1.TokenService` over the broker.

use super::auth::RemoteAuth;
use crate::{
    broker::{BrokerError, Holder, Release, TokenBroker},
    metrics::Metrics,
};
use futures::Stream;
use penguin_github::{GitHubError, InstallationToken, TokenScope};
use penguin_proto::tokenator::v1::{
    installation_selector::Target, token_service_server::TokenService, GetAppInfoRequest,
    GetAppInfoResponse, GetTokenRequest, GetTokenResponse, RevokeTokenRequest, RevokeTokenResponse,
    WatchTokenRequest,
};
use std::{pin::Pin, sync::Arc, time::UNIX_EPOCH};
use tonic::{Request, Response, Status};
use tracing::Instrument;

/// Who is calling.
#[derive(Clone)]
pub enum Callers {
    /// The Unix socket: same pod, trusted by file permissions.
    Local,
    /// The TCP listener: ServiceAccount JWT and policy.
    Remote(Arc<RemoteAuth>),
}

/// The gRPC service; one instance per listener.
#[derive(Clone)]
pub struct TokenGrpc {
    broker: TokenBroker,
    callers: Callers,
    metrics: Arc<Metrics>,
}

impl TokenGrpc {
    /// A service for one listener.
    pub fn new(broker: TokenBroker, callers: Callers, metrics: Arc<Metrics>) -> Self {
        TokenGrpc {
            broker,
            callers,
            metrics,
        }
    }

    fn listener(&self) -> &'static str {
        match self.callers {
            Callers::Local => "unix",
            Callers::Remote(_) => "tcp",
        }
    }

    /// The caller's name, after authentication.
    fn authenticate(&self, metadata: &tonic::metadata::MetadataMap) -> Result<String, Status> {
        match &self.callers {
            Callers::Local => Ok("unix-socket".into()),
            Callers::Remote(auth) => auth.authenticate(metadata),
        }
    }

    /// Who holds what `caller` is handed: its JWT subject over TCP; over the
    /// Unix socket, which has no identity, the socket (one hold per hand-out).
    fn holder(&self, caller: &str) -> Holder {
        match self.callers {
            Callers::Local => Holder::Local,
            Callers::Remote(_) => Holder::Remote(caller.to_string()),
        }
    }

    /// Turns a request into the scope to mint, applying the caller's policy.
    async fn scope(&self, caller: &str, request: &GetTokenRequest) -> Result<TokenScope, Status> {
        let default = self
            .broker
            .default_installation()
            .ok_or_else(|| Status::unavailable("the default installation is not known yet"))?;
        let installation_id = match request
            .installation
            .as_ref()
            .and_then(|s| s.target.as_ref())
        {
            None => default,
            Some(Target::InstallationId(id)) => *id,
            Some(Target::Repository(repo)) => self
                .broker
                .repository_installation(repo)
                .await
                .map_err(status_of)?,
        };
        let requested = TokenScope::parse(
            installation_id,
            request.repositories.iter().map(String::as_str),
            request
                .permissions
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        match &self.callers {
            Callers::Local => Ok(requested),
            Callers::Remote(auth) => auth
                .with_policy(|p| p.authorize(caller, &requested, default))
                .map_err(|reason| {
                    tracing::warn!(caller, scope = %requested.describe(), %reason, "token request denied by policy");
                    Status::permission_denied(reason)
                }),
        }
    }

    fn respond(
        &self,
        caller: &str,
        scope: &TokenScope,
        token: &InstallationToken,
    ) -> GetTokenResponse {
        if self.broker.first_delivery(scope, &token.token, caller) {
            tracing::info!(
                target: "penguin_tokenator::audit",
                caller,
                listener = self.listener(),
                scope = %scope.describe(),
                token_sha256 = %token.token.fingerprint(),
                expires_in_secs = token.remaining().as_secs(),
                "token issued"
            );
        }
        let expires_at = (!self.broker.is_static()).then(|| {
            let since = token
                .expires_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            prost_types::Timestamp {
                seconds: since.as_secs() as i64,
                nanos: since.subsec_nanos() as i32,
            }
        });
        GetTokenResponse {
            token: token.token.expose().to_string(),
            expires_at,
            permissions: token.permissions.clone().into_iter().collect(),
            repositories: token.repositories.clone(),
            installation_id: token.installation_id,
            repository_selection: token.repository_selection.clone(),
        }
    }

    fn record<T>(&self, method: &'static str, result: Result<T, Status>) -> Result<T, Status> {
        let code = result
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        self.metrics.grpc(method, code);
        result
    }

    async fn get_token_inner(
        &self,
        request: Request<GetTokenRequest>,
    ) -> Result<GetTokenResponse, Status> {
        let caller = self.authenticate(request.metadata())?;
        let scope = self.scope(&caller, request.get_ref()).await?;
        let token = self
            .broker
            .issue(&scope, &self.holder(&caller))
            .await
            .map_err(status_of)?;
        Ok(self.respond(&caller, &scope, &token))
    }
}

/// Maps broker failures to gRPC statuses with the reason.
pub fn status_of(err: BrokerError) -> Status {
    let message = err.to_string();
    match &err {
        BrokerError::GitHub(gh) => match gh {
            GitHubError::Unprocessable { .. } => Status::invalid_argument(message),
            GitHubError::NotFound { .. } => Status::not_found(message),
            GitHubError::Forbidden { .. } => Status::permission_denied(message),
            GitHubError::RateLimited { .. } => Status::resource_exhausted(message),
            GitHubError::Unauthorized { .. } | GitHubError::Jwt(_) => {
                Status::failed_precondition(message)
            }
            _ => Status::unavailable(message),
        },
        BrokerError::NotReady(_) => Status::unavailable(message),
        BrokerError::Unsupported(_) | BrokerError::DefaultToken => {
            Status::failed_precondition(message)
        }
        BrokerError::NotIssued => Status::permission_denied(message),
        BrokerError::Dropped => Status::unavailable(message),
        BrokerError::Scope(_) => Status::invalid_argument(message),
        BrokerError::TooManyScopes => Status::resource_exhausted(message),
    }
}

type TokenStream = Pin<Box<dyn Stream<Item = Result<GetTokenResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TokenService for TokenGrpc {
    async fn get_token(
        &self,
        request: Request<GetTokenRequest>,
    ) -> Result<Response<GetTokenResponse>, Status> {
        let span = tracing::debug_span!("grpc", method = "GetToken", listener = self.listener());
        let result = self
            .get_token_inner(request)
            .instrument(span)
            .await
            .map(Response::new);
        self.record("GetToken", result)
    }

    type WatchTokenStream = TokenStream;

    async fn watch_token(
        &self,
        request: Request<WatchTokenRequest>,
    ) -> Result<Response<Self::WatchTokenStream>, Status> {
        let result = async {
            let caller = self.authenticate(request.metadata())?;
            let scope_request = request.into_inner().scope.unwrap_or_default();
            let scope = self.scope(&caller, &scope_request).await?;
            let mut updates = self.broker.watch(&scope).await.map_err(status_of)?;
            let this = self.clone();
            let holder = self.holder(&caller);
            let stream = async_stream::stream! {
                let mut last = None;
                loop {
                    let current = updates.borrow_and_update().clone();
                    if let Some(token) = current {
                        // Each token handed out is one hold; one released
                        // meanwhile (being revoked) is skipped.
                        if last.as_ref() != Some(&token.token) && this.broker.hold(&token, &holder) {
                            last = Some(token.token.clone());
                            yield Ok(this.respond(&caller, &scope, &token));
                        }
                    }
                    if updates.changed().await.is_err() {
                        break;
                    }
                }
            };
            Ok(Response::new(Box::pin(stream) as TokenStream))
        }
        .await;
        self.record("WatchToken", result)
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let result = async {
            let caller = self.authenticate(request.metadata())?;
            let token = request.into_inner().token;
            if token.is_empty() {
                return Err(Status::invalid_argument("token is empty"));
            }
            let fingerprint = penguin_github::Token::new(token.as_str()).fingerprint();
            let released = self
                .broker
                .release(&token, &self.holder(&caller))
                .await
                .map_err(|err| {
                    if matches!(err, BrokerError::NotIssued) {
                        tracing::warn!(
                            target: "penguin_tokenator::audit",
                            caller,
                            token_sha256 = %fingerprint,
                            "token release refused: not a holder"
                        );
                    }
                    status_of(err)
                })?;
            match released {
                Release::StillHeld(holds_left) => tracing::info!(
                    target: "penguin_tokenator::audit",
                    caller,
                    token_sha256 = %fingerprint,
                    holds_left,
                    "token released; still held by others"
                ),
                Release::Revoked => tracing::info!(
                    target: "penguin_tokenator::audit",
                    caller,
                    token_sha256 = %fingerprint,
                    "token revoked"
                ),
            }
            Ok(Response::new(RevokeTokenResponse {}))
        }
        .await;
        self.record("RevokeToken", result)
    }

    async fn get_app_info(
        &self,
        request: Request<GetAppInfoRequest>,
    ) -> Result<Response<GetAppInfoResponse>, Status> {
        let result = async {
            self.authenticate(request.metadata())?;
            let info = self.broker.app_info().await.map_err(status_of)?;
            Ok(Response::new(GetAppInfoResponse {
                app_id: info.app_id,
                bot_email: info.bot_email(),
                slug: info.slug,
                name: info.name,
                bot_login: info.bot_login,
                bot_user_id: info.bot_user_id,
            }))
        }
        .await;
        self.record("GetAppInfo", result)
    }
}
