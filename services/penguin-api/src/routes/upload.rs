//! `POST /api/v1/upload`: images, recognised by their bytes, not their name.

use crate::uploads::{UploadError, UploadStore};
use crate::{error::ApiError, state::AppState};
use axum::{
    extract::{multipart::MultipartError, Multipart, State},
    http::StatusCode,
    Json,
};
use serde_json::{json, Value};

/// The image types accepted, by magic bytes.
fn sniff(head: &[u8]) -> Option<(&'static str, &'static str)> {
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some(("image/gif", "gif"))
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", "jpg"))
    } else if head.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some(("image/png", "png"))
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some(("image/webp", "webp"))
    } else {
        None
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("the file is larger than the limit of {limit} bytes"),
    )
    .suggest("Upload a smaller image (PENGUIN_MAX_UPLOAD_BYTES sets the limit).")
}

fn multipart_error(err: MultipartError, limit: usize) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else {
        ApiError::bad_request(format!("invalid multipart body: {}", err.body_text()))
    }
}

/// Keeps the original name readable but harmless: no paths, no control characters.
fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    if cleaned.is_empty() || cleaned.starts_with('.') {
        "upload".to_string()
    } else {
        cleaned
    }
}

#[utoipa::path(post, path = "/api/v1/upload", tag = "uploads",
    request_body(content_type = "multipart/form-data", description = "Field `file`: a GIF, JPEG, PNG or WEBP image"),
    responses((status = 200, description = "Stored", body = Object),
              (status = 400, description = "Empty or missing file", body = Object),
              (status = 413, description = "Too large", body = Object),
              (status = 415, description = "Not an accepted image type", body = Object),
              (status = 507, description = "The uploads quota is full", body = Object)))]
pub async fn upload(
    State(state): State<AppState>,
    mut multipart: Multipart,
) -> Result<Json<Value>, ApiError> {
    let limit = state.settings.max_upload_bytes;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let filename = clean_name(field.file_name().unwrap_or("upload"));
        // Read up to the limit (+1 byte to detect overflow), sniffing the head.
        let mut data = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
            if data.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            data.extend_from_slice(&chunk);
        }
        if data.is_empty() {
            return Err(ApiError::bad_request("the file is empty"));
        }
        let Some((content_type, extension)) = sniff(&data) else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "only GIF, JPEG, PNG and WEBP images are accepted (checked by content)",
            ));
        };
        let uploads = UploadStore::new(
            state.settings.data_dir.join("uploads"),
            state.settings.upload_quota_bytes,
            state.settings.upload_retention,
        );
        let path = match uploads.store(&data, extension).await {
            Ok(path) => path,
            Err(err @ UploadError::QuotaExceeded { .. }) => {
                return Err(ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "UPLOAD_QUOTA_EXCEEDED",
                    err.to_string(),
                )
                .suggest("Try again once older uploads expire (PENGUIN_UPLOAD_RETENTION_HOURS), or raise PENGUIN_UPLOAD_QUOTA_BYTES."));
            }
            Err(UploadError::Io(_)) => return Err(ApiError::internal("storing the upload")),
        };
        return Ok(Json(json!({
            "path": path.display().to_string(),
            "filename": filename,
            "content_type": content_type,
            "size_bytes": data.len(),
        })));
    }
    Err(ApiError::bad_request(
        "the multipart field `file` is missing",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_content_and_cleans_names() {
        assert_eq!(sniff(b"GIF89a...").unwrap().0, "image/gif");
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap().0, "image/jpeg");
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").unwrap().0, "image/png");
        assert_eq!(
            sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ").unwrap().0,
            "image/webp"
        );
        assert!(sniff(b"%PDF-1.7").is_none());
        assert!(sniff(b"").is_none());
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\x\\cat.png"), "cat.png");
        assert_eq!(clean_name(".env"), "upload");
    }
}
