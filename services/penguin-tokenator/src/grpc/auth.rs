//! Authenticating TCP callers ([`penguin_grpc_auth::JwtVerifier`]), then the
//! tokenator's caller policy.

use super::policy::Policy;
use penguin_grpc_auth::JwtVerifier;
use std::sync::{Arc, RwLock};
use tonic::{metadata::MetadataMap, Status};

/// Verifies callers and applies the policy. Keys and policy are swapped in
/// place when their files change.
pub struct RemoteAuth {
    verifier: Arc<JwtVerifier>,
    policy: RwLock<Policy>,
}

impl RemoteAuth {
    /// Builds the authenticator.
    pub fn new(verifier: Arc<JwtVerifier>, policy: Policy) -> Self {
        RemoteAuth {
            verifier,
            policy: RwLock::new(policy),
        }
    }

    /// The JWT verifier (its keys are refreshed in place).
    pub fn verifier(&self) -> &Arc<JwtVerifier> {
        &self.verifier
    }

    /// Replaces the policy.
    pub fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// Runs `f` with the current policy.
    pub fn with_policy<T>(&self, f: impl FnOnce(&Policy) -> T) -> T {
        f(&self.policy.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The caller's `sub`, or UNAUTHENTICATED with the reason.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<String, Status> {
        self.verifier.authenticate(metadata)
    }
}
