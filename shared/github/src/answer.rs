//! A GitHub answer as the HTTP client reads it and the retry policy judges it.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

/// A complete answer: status, headers and the whole body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body.
    pub body: Bytes,
}
