//! Uploads cannot fill the disk: a quota on what is stored, and a retention
//! after which uploads are deleted (checked at start, hourly and before each
//! upload).

use penguin_test_support::api::{self, error_of, Api, KEY};
use serde_json::Value;
use std::time::{Duration, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_penguin-api");

fn png(size: usize) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.resize(size, 0);
    png
}

async fn upload(api: &Api, bytes: Vec<u8>) -> (u16, Value) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes)
            .file_name("x.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let r = api
        .http
        .post(api.url("/api/v1/upload"))
        .bearer_auth(KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn uploads_past_the_quota_are_refused_and_old_ones_expire() {
    let dir = tempfile::tempdir().unwrap();
    // An upload from long ago, left by an earlier run.
    let uploads = dir.path().join("data/uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    let stale = uploads.join("stale.png");
    std::fs::write(&stale, png(4000)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3 * 3600))
        .unwrap();
    let mut env = api::env(dir.path(), None);
    env.insert("PENGUIN_UPLOAD_QUOTA_BYTES".into(), "5000".into());
    env.insert("PENGUIN_UPLOAD_RETENTION_HOURS".into(), "2".into());
    let api = Api::start(BIN, env).await;
    assert_eq!(api.data.join("uploads"), uploads);
    // The expired upload goes, so its 4,000 bytes do not count.
    assert!(
        penguin_test_support::eventually(Duration::from_secs(10), || !stale.exists()).await,
        "the expired upload was not deleted"
    );
    let (status, _) = upload(&api, png(3000)).await;
    assert_eq!(status, 200);
    let (status, body) = upload(&api, png(3000)).await;
    assert_eq!(status, 507, "{body}");
    let error = error_of(&body);
    assert_eq!(error["code"], "UPLOAD_QUOTA_EXCEEDED");
    assert!(
        error["message"].as_str().unwrap().contains("of 5000 bytes"),
        "{error}"
    );
    let (status, _) = upload(&api, png(2000)).await;
    assert_eq!(status, 200, "what still fits is stored");
    let stored: u64 = std::fs::read_dir(&uploads)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(stored, 5000);
}
