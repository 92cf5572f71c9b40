//! REST API behaviour of the stand-in.

use std::time::Duration;

use github_standin::{Fault, TokenFormat};
use http::{Method, StatusCode};
use penguin_test_support::github_api::*;
use serde_json::{json, Value};

#[tokio::test]
async fn app_jwt_is_accepted_and_app_parses_as_octocrab_model() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let resp = get(&base, "/app", Some(&bearer(&app_jwt()))).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let app: octocrab::models::App = serde_json::from_value(resp.json.clone()).unwrap();
    assert_eq!(app.id.0, APP_ID);
    assert_eq!(app.slug.as_deref(), Some("penguin-agent"));
    assert_eq!(app.owner.login, "octo-org");
    assert_eq!(app.owner.r#type, "Organization");
    assert_eq!(app.name, "Penguin Agent");
    assert_eq!(app.client_id.as_deref(), Some("Iv1.penguintest0001"));
    assert_eq!(env.standin.jwt_rejections(), 0);
}

#[tokio::test]
async fn jwt_issuer_may_be_id_string_number_or_client_id() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let now = now();
    for iss in [json!("4242"), json!(4242), json!("Iv1.penguintest0001")] {
        let jwt = sign(
            APP_KEY,
            &json!({"iat": now - 60, "exp": now + 540, "iss": iss}),
        );
        let resp = get(&base, "/app", Some(&bearer(&jwt))).await;
        assert_eq!(resp.status, StatusCode::OK, "iss {iss}: {}", resp.json);
    }
}

#[tokio::test]
async fn bad_jwts_are_rejected_with_githubs_messages() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let now = now();
    let cases = [
        (
            sign(OTHER_KEY, &json!({"iat": now - 60, "exp": now + 540, "iss": "4242"})),
            "A JSON web token could not be decoded",
        ),
        (
            sign(APP_KEY, &json!({"iat": now - 60, "exp": now + 900, "iss": "4242"})),
            "'Expiration time' claim ('exp') is too far in the future",
        ),
        (
            sign(APP_KEY, &json!({"iat": now - 60, "exp": now + 600, "iss": "4242"})),
            "'Expiration time' claim ('exp') is too far in the future",
        ),
        (
            sign(APP_KEY, &json!({"iat": now - 700, "exp": now - 100, "iss": "4242"})),
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        ),
        (
            sign(APP_KEY, &json!({"iat": now + 300, "exp": now + 540, "iss": "4242"})),
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        ),
        (
            sign(APP_KEY, &json!({"exp": now + 540, "iss": "4242"})),
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        ),
        (
            sign(APP_KEY, &json!({"iat": now - 60, "exp": now + 540, "iss": "9999"})),
            "Integration not found",
        ),
        ("not.a.jwt".to_string(), "A JSON web token could not be decoded"),
    ];
    for (i, (jwt, message)) in cases.iter().enumerate() {
        let resp = get(&base, "/app", Some(&bearer(jwt))).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "case {i}");
        assert_eq!(resp.json["message"], *message, "case {i}");
        assert_eq!(
            resp.json["documentation_url"],
            "https://docs.github.com/rest"
        );
    }
    assert_eq!(env.standin.jwt_rejections(), cases.len());
    // No credentials at all is not a bad JWT.
    let resp = get(&base, "/app", None).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(env.standin.jwt_rejections(), cases.len());
    // Nothing was minted or recorded.
    assert!(env.standin.mint_requests().is_empty());
}

#[tokio::test]
async fn jwt_time_checks_use_the_skewed_clock() {
    let env = GitHub::empty(|c| c.clock_skew_secs = -3600).await.unwrap();
    let base = env.standin.url();
    // A fresh JWT by the real clock is an hour in the future for the stand-in.
    let resp = get(&base, "/app", Some(&bearer(&app_jwt()))).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    // One made for the stand-in's clock works.
    let now = now() - 3600;
    let jwt = sign(
        APP_KEY,
        &json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID}),
    );
    let resp = get(&base, "/app", Some(&bearer(&jwt))).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let date = httpdate::parse_http_date(resp.header("date").unwrap()).unwrap();
    let date = date
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (date - now).abs() <= 2,
        "Date header {date} vs skewed now {now}"
    );
    env.standin.set_clock_skew_secs(0);
    let resp = get(&base, "/app", Some(&bearer(&app_jwt()))).await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn common_headers_are_present() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let resp = get(&base, "/app", Some(&bearer(&app_jwt()))).await;
    assert!(resp.header("date").is_some());
    assert!(resp.header("x-github-request-id").is_some());
    assert_eq!(resp.header("x-ratelimit-limit"), Some("5000"));
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("4999"));
    assert_eq!(resp.header("x-ratelimit-used"), Some("1"));
    assert_eq!(resp.header("x-ratelimit-resource"), Some("core"));
    let reset: i64 = resp.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(reset > now() && reset <= now() + 3601);
    let resp = get(&base, "/app", Some(&bearer(&app_jwt()))).await;
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("4998"));
    // Unauthenticated and unknown routes still carry Date and a request ID.
    let resp = get(&base, "/nope", None).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(resp.json["message"], "Not Found");
    assert!(resp.header("date").is_some());
    assert!(resp.header("x-github-request-id").is_some());
}

#[tokio::test]
async fn users_are_served() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let resp = get(&base, "/users/penguin-agent%5Bbot%5D", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let bot: octocrab::models::Author = serde_json::from_value(resp.json.clone()).unwrap();
    serde_json::from_value::<octocrab::models::UserProfile>(resp.json.clone()).unwrap();
    assert_eq!(bot.login, "penguin-agent[bot]");
    assert_eq!(bot.r#type, "Bot");
    assert_eq!(bot.id.0, 900_000 + APP_ID);
    let resp = get(&base, "/users/octo-org", Some(&bearer(&app_jwt()))).await;
    let org: octocrab::models::UserProfile = serde_json::from_value(resp.json.clone()).unwrap();
    assert_eq!(org.r#type, "Organization");
    assert!(resp.header("x-ratelimit-limit").is_some());
    let resp = get(&base, "/users/nobody-here", None).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(resp.json["message"], "Not Found");
}

#[tokio::test]
async fn installations_are_found_by_id_and_repository() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let jwt = bearer(&app_jwt());
    let resp = get(
        &base,
        "/repos/octo-org/hello-world/installation",
        Some(&jwt),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let inst: octocrab::models::Installation = serde_json::from_value(resp.json.clone()).unwrap();
    assert_eq!(inst.id.0, 1001);
    assert_eq!(inst.account.login, "octo-org");
    assert_eq!(inst.app_id.map(|a| a.0), Some(APP_ID));
    assert_eq!(inst.permissions.contents.as_deref(), Some("write"));
    assert_eq!(resp.json["app_slug"], "penguin-agent");
    assert_eq!(resp.json["suspended_at"], Value::Null);

    let resp = get(&base, "/app/installations/1001", Some(&jwt)).await;
    assert_eq!(resp.status, StatusCode::OK);
    serde_json::from_value::<octocrab::models::Installation>(resp.json).unwrap();
    let resp = get(&base, "/app/installations", Some(&jwt)).await;
    serde_json::from_value::<Vec<octocrab::models::Installation>>(resp.json).unwrap();

    let resp = get(&base, "/repos/octo-org/unknown/installation", Some(&jwt)).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = get(&base, "/app/installations/77", Some(&jwt)).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = get(&base, "/app/installations/abc", Some(&jwt)).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    // Installation endpoints need the App JWT.
    let token = mint_token(&base, None).await;
    let resp = get(&base, "/app/installations/1001", Some(&token_auth(&token))).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn default_mint_grants_everything() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let before = chrono::Utc::now();
    let body = mint(&base, None).await;
    let token: octocrab::models::InstallationToken = serde_json::from_value(body.clone()).unwrap();
    assert_stateless(&token.token);
    let expires: chrono::DateTime<chrono::Utc> =
        token.expires_at.as_deref().unwrap().parse().unwrap();
    let ttl = (expires - before).num_seconds();
    assert!((3599..=3602).contains(&ttl), "ttl {ttl}");
    assert!(token.expires_at.unwrap().ends_with('Z'));
    assert_eq!(
        body["permissions"],
        json!({"checks":"write","contents":"write","issues":"write","members":"read","metadata":"read","pull_requests":"write"})
    );
    assert_eq!(body["repository_selection"], "selected");
    assert!(body.get("repositories").is_none());
    assert_eq!(env.standin.tokens_issued(), vec![token.token.clone()]);
    assert!(env.standin.is_token_live(&token.token));
    let records = env.standin.mint_requests();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].installation_id, 1001);
    assert_eq!(records[0].repositories, None);
    assert_eq!(records[0].permissions, None);
    assert_eq!(records[0].status, 201);

    let resp = get(
        &base,
        "/installation/repositories?per_page=1",
        Some(&token_auth(&token.token)),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    assert_eq!(resp.json["total_count"], 2);
    let repos: octocrab::models::InstallationRepositories =
        serde_json::from_value(resp.json.clone()).unwrap();
    assert_eq!(repos.repositories.len(), 1);
    assert_eq!(repos.repositories[0].name, "hello-world");
    assert!(resp.header("link").unwrap().contains("rel=\"next\""));
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("4999"));
}

#[tokio::test]
async fn scoped_mint_limits_repositories_and_permissions() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let body = mint(
        &base,
        Some(
            r#"{"repositories":["other-repo"],"permissions":{"contents":"read","issues":"write"}}"#,
        ),
    )
    .await;
    assert_eq!(
        body["permissions"],
        json!({"contents":"read","issues":"write"})
    );
    let token: octocrab::models::InstallationToken = serde_json::from_value(body.clone()).unwrap();
    let repos = token.repositories.unwrap();
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0].full_name.as_deref(), Some("octo-org/other-repo"));
    let record = env.standin.mint_requests().pop().unwrap();
    assert_eq!(record.repositories, Some(vec!["other-repo".to_string()]));
    assert_eq!(
        record
            .permissions
            .unwrap()
            .get("contents")
            .map(String::as_str),
        Some("read")
    );
    let resp = get(
        &base,
        "/installation/repositories",
        Some(&format!("Bearer {}", token.token)),
    )
    .await;
    assert_eq!(resp.json["total_count"], 1);
    assert_eq!(resp.json["repositories"][0]["name"], "other-repo");
    // repository_ids work too.
    let id = repos[0].id.0;
    let body = mint(&base, Some(&format!(r#"{{"repository_ids":[{id}]}}"#))).await;
    assert_eq!(body["repositories"][0]["name"], "other-repo");
}

#[tokio::test]
async fn over_scoped_and_bad_mints_are_rejected() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let jwt = bearer(&app_jwt());
    let post = |path: &'static str, body: &'static str| {
        let base = base.clone();
        let jwt = jwt.clone();
        async move { send(&base, Method::POST, path, Some(&jwt), Some(body)).await }
    };
    let path = "/app/installations/1001/access_tokens";
    for body in [
        r#"{"repositories":["not-ours"]}"#,
        r#"{"repository_ids":[1]}"#,
        r#"{"permissions":{"contents":"admin"}}"#,
        r#"{"permissions":{"administration":"read"}}"#,
        r#"{"permissions":{"contents":"superuser"}}"#,
        r#"{"repositories":"hello-world"}"#,
    ] {
        let resp = post(path, body).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(resp.json["message"].is_string());
    }
    let resp = post(path, "{oops").await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.json["message"], "Problems parsing JSON");
    let resp = post("/app/installations/999/access_tokens", "{}").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(env.standin.tokens_issued().is_empty());
    let statuses: Vec<u16> = env
        .standin
        .mint_requests()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![422, 422, 422, 422, 422, 422, 400, 404]);
}

#[tokio::test]
async fn tokens_expire_after_their_ttl() {
    let env = GitHub::empty(|c| c.token_ttl = Duration::from_secs(1))
        .await
        .unwrap();
    let base = env.standin.url();
    let token = mint_token(&base, None).await;
    let resp = get(
        &base,
        "/installation/repositories",
        Some(&token_auth(&token)),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(!env.standin.is_token_live(&token));
    let resp = get(
        &base,
        "/installation/repositories",
        Some(&token_auth(&token)),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json["message"], "Bad credentials");
    // A new TTL applies to new tokens.
    env.standin.set_token_ttl(Duration::from_secs(60));
    let body = mint(&base, None).await;
    let expires: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    assert!((expires - chrono::Utc::now()).num_seconds() >= 58);
}

#[tokio::test]
async fn replication_lag_answers_401_then_ok() {
    let env = GitHub::empty(|c| c.replication_lag = Duration::from_millis(1200))
        .await
        .unwrap();
    let base = env.standin.url();
    let token = mint_token(&base, None).await;
    assert!(env.standin.is_token_live(&token));
    let resp = get(
        &base,
        "/installation/repositories",
        Some(&token_auth(&token)),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json["message"], "Bad credentials");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let resp = get(
        &base,
        "/installation/repositories",
        Some(&token_auth(&token)),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    env.standin.set_replication_lag(Duration::ZERO);
    let token = mint_token(&base, None).await;
    let resp = get(
        &base,
        "/installation/repositories",
        Some(&token_auth(&token)),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn revoked_tokens_stop_working() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let token = mint_token(&base, None).await;
    let resp = send(
        &base,
        Method::DELETE,
        "/installation/token",
        Some(&token_auth(&token)),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    assert!(resp.body.is_empty());
    assert_eq!(env.standin.revoked_tokens(), vec![token.clone()]);
    assert!(!env.standin.is_token_live(&token));
    let resp = get(
        &base,
        "/installation/repositories",
        Some(&token_auth(&token)),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let resp = send(
        &base,
        Method::DELETE,
        "/installation/token",
        Some(&token_auth(&token)),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let resp = get(
        &base,
        "/installation/repositories",
        Some("token ghs_000000000000000000000000000000000000"),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn suspended_and_deleted_installations() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let jwt = bearer(&app_jwt());
    let token = mint_token(&base, None).await;
    env.standin.suspend_installation(1001);
    assert!(!env.standin.is_token_live(&token));
    let resp = get(
        &base,
        "/installation/repositories",
        Some(&token_auth(&token)),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let resp = send(
        &base,
        Method::POST,
        "/app/installations/1001/access_tokens",
        Some(&jwt),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.json["message"], "This installation has been suspended");
    let resp = get(&base, "/app/installations/1001", Some(&jwt)).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.json["suspended_at"].is_string());

    env.standin.delete_installation(1001);
    let resp = send(
        &base,
        Method::POST,
        "/app/installations/1001/access_tokens",
        Some(&jwt),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = get(
        &base,
        "/repos/octo-org/hello-world/installation",
        Some(&jwt),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let statuses: Vec<u16> = env
        .standin
        .mint_requests()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![201, 403, 404]);
}

#[tokio::test]
async fn injected_faults_answer_mints_in_order() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let jwt = bearer(&app_jwt());
    env.standin.fail_next_mints(2, Fault::Status(502));
    env.standin.fail_next_mints(
        1,
        Fault::RateLimited {
            retry_after_secs: 7,
        },
    );
    env.standin
        .fail_next_mints(1, Fault::PrimaryRateLimit { reset_in_secs: 30 });
    env.standin.fail_next_mints(
        1,
        Fault::TooManyRequests {
            retry_after_secs: 3,
        },
    );
    env.standin
        .fail_next_mints(1, Fault::Delay(Duration::from_millis(500)));
    let mint_once = || {
        send(
            &base,
            Method::POST,
            "/app/installations/1001/access_tokens",
            Some(&jwt),
            None,
        )
    };
    for _ in 0..2 {
        let resp = mint_once().await;
        assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
        assert_eq!(resp.json["message"], "Bad Gateway");
    }
    let resp = mint_once().await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.header("retry-after"), Some("7"));
    assert!(resp.json["message"]
        .as_str()
        .unwrap()
        .starts_with("You have exceeded a secondary rate limit"));
    assert_ne!(resp.header("x-ratelimit-remaining"), Some("0"));

    let resp = mint_once().await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("0"));
    let reset: i64 = resp.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!((reset - now() - 30).abs() <= 2, "reset {reset}");

    let resp = mint_once().await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.header("retry-after"), Some("3"));

    let started = std::time::Instant::now();
    let resp = mint_once().await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(resp.status, StatusCode::CREATED);

    let resp = mint_once().await;
    assert_eq!(resp.status, StatusCode::CREATED);
    let statuses: Vec<u16> = env
        .standin
        .mint_requests()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![502, 502, 403, 403, 429, 201, 201]);
    assert_eq!(env.standin.tokens_issued().len(), 2);
}

#[tokio::test]
async fn down_answers_503_on_every_api_route() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let token = mint_token(&base, None).await;
    env.standin.set_down(true);
    for (path, auth) in [
        ("/app", bearer(&app_jwt())),
        ("/installation/repositories", token_auth(&token)),
        ("/users/octo-org", String::new()),
        ("/nonexistent", String::new()),
    ] {
        let auth = (!auth.is_empty()).then_some(auth.as_str());
        let resp = get(&base, path, auth).await;
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(resp.json["message"], "Service Unavailable");
    }
    let resp = send(
        &base,
        Method::POST,
        "/app/installations/1001/access_tokens",
        Some(&bearer(&app_jwt())),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(env.standin.mint_requests().len(), 1);
    env.standin.set_down(false);
    assert_eq!(
        get(&base, "/app", Some(&bearer(&app_jwt()))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rate_limits_are_per_identity_and_enforced() {
    let env = GitHub::empty(|c| c.rate_limit_per_hour = 3).await.unwrap();
    let base = env.standin.url();
    let token = mint_token(&base, None).await; // app: 1 used
    let auth = token_auth(&token);
    for expected in ["2", "1", "0"] {
        let resp = get(&base, "/installation/repositories", Some(&auth)).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.header("x-ratelimit-remaining"), Some(expected));
    }
    let resp = get(&base, "/installation/repositories", Some(&auth)).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(
        resp.json["message"],
        "API rate limit exceeded for installation ID 1001."
    );
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("0"));
    // /rate_limit does not count and reports the window.
    let resp = get(&base, "/rate_limit", Some(&auth)).await;
    assert_eq!(resp.status, StatusCode::OK);
    let limits: octocrab::models::RateLimit = serde_json::from_value(resp.json.clone()).unwrap();
    assert_eq!(limits.resources.core.remaining, 0);
    assert_eq!(limits.rate.limit, 3);
    // The App identity has its own window: 1 used by the mint.
    let resp = get(&base, "/rate_limit", Some(&bearer(&app_jwt()))).await;
    assert_eq!(resp.json["resources"]["core"]["used"], 1);
    let second = get(&base, "/app", Some(&bearer(&app_jwt()))).await;
    assert_eq!(second.header("x-ratelimit-remaining"), Some("1"));
    mint_token(&base, None).await;
    let resp = send(
        &base,
        Method::POST,
        "/app/installations/1001/access_tokens",
        Some(&bearer(&app_jwt())),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(
        resp.json["message"],
        "API rate limit exceeded for app ID 4242."
    );
    let statuses: Vec<u16> = env
        .standin
        .mint_requests()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![201, 201, 403]);
}

#[tokio::test]
async fn dropping_the_standin_closes_the_port() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let addr = env.standin.addr();
    assert_eq!(env.standin.url(), format!("http://{addr}"));
    drop(env.standin);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn garbage_never_breaks_the_server() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    for auth in [
        "",
        "Bearer",
        "token",
        "Basic Zm9v",
        "Bearer ....",
        "token ghs_",
    ] {
        let resp = get(&base, "/installation/repositories", Some(auth)).await;
        assert!(resp.status.is_client_error(), "{auth:?}");
    }
    let resp = send(&base, Method::PUT, "/app", None, None).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = get(&base, "/users/%FF%FE", None).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&base, "/app", Some(&bearer(&app_jwt()))).await.status,
        StatusCode::OK
    );
}

/// `ghs_<app id>_<JWT>`: about 520 base64url characters, a `-` in the signature, and claims
/// naming the App, the installation and the expiry.
fn assert_stateless(token: &str) {
    use base64::Engine as _;
    let jwt = token
        .strip_prefix(&format!("ghs_{APP_ID}_"))
        .unwrap_or_else(|| panic!("not ghs_<app id>_<JWT>: {token}"));
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "header.payload.signature: {token}");
    assert!(
        jwt.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
        "base64url: {token}"
    );
    assert!(parts[2].contains('-'), "a `-` in the signature: {token}");
    assert!(
        (350..=700).contains(&token.len()),
        "{} characters",
        token.len()
    );
    let decode = |part: &str| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    assert_eq!(decode(parts[0])["typ"], "JWT");
    let claims = decode(parts[1]);
    assert_eq!(claims["iss"], APP_ID.to_string());
    assert_eq!(claims["installation_id"], 1001);
    assert!(claims["exp"].as_i64().unwrap() > now());
}

/// `ghs_` + 36 alphanumerics.
fn assert_classic(token: &str) {
    assert!(token.starts_with("ghs_"), "{token}");
    assert_eq!(token.len(), 40, "{token}");
    assert!(token[4..].chars().all(|c| c.is_ascii_alphanumeric()));
}

/// An installation token answers `token` and `Bearer`, lists its repositories and revokes.
async fn assert_token_works(base: &str, token: &str) {
    for auth in [token_auth(token), bearer(token)] {
        let resp = get(base, "/installation/repositories", Some(&auth)).await;
        assert_eq!(resp.status, StatusCode::OK, "{auth:.12}…: {}", resp.json);
        assert_eq!(resp.json["total_count"], 2);
    }
    let resp = send(
        base,
        Method::DELETE,
        "/installation/token",
        Some(&bearer(token)),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    let resp = get(base, "/installation/repositories", Some(&token_auth(token))).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

const FORMAT_HEADER: &str = "X-GitHub-Stateless-S2S-Token";

#[tokio::test]
async fn tokens_are_stateless_by_default_and_classic_on_request() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let stateless = mint_token(&base, None).await;
    assert_stateless(&stateless);
    assert_ne!(stateless, mint_token(&base, None).await);
    // A token is its whole text: one changed character is a bad credential.
    let last = if stateless.ends_with('A') { "B" } else { "A" };
    let tampered = format!("{}{last}", &stateless[..stateless.len() - 1]);
    let resp = get(
        &base,
        "/installation/repositories",
        Some(&token_auth(&tampered)),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_token_works(&base, &stateless).await;

    // `disabled` forces the classic format for one request; other values force nothing.
    let classic = mint_with_headers(&base, &[(FORMAT_HEADER, "disabled")], None).await;
    assert_classic(classic["token"].as_str().unwrap());
    assert_token_works(&base, classic["token"].as_str().unwrap()).await;
    for ignored in ["true", "0", "Disabled"] {
        let token = mint_with_headers(&base, &[(FORMAT_HEADER, ignored)], None).await;
        assert_stateless(token["token"].as_str().unwrap());
    }

    // The switch changes the default; `enabled` still forces the stateless format.
    env.standin.set_token_format(TokenFormat::Classic);
    assert_classic(&mint_token(&base, None).await);
    let forced = mint_with_headers(&base, &[(FORMAT_HEADER, "enabled")], None).await;
    assert_stateless(forced["token"].as_str().unwrap());
    assert_eq!(env.standin.tokens_issued().len(), 8);
}

#[tokio::test]
async fn classic_tokens_by_configuration_and_stateless_by_header() {
    let env = GitHub::empty(|c| c.token_format = TokenFormat::Classic)
        .await
        .unwrap();
    let base = env.standin.url();
    let classic = mint_token(&base, None).await;
    assert_classic(&classic);
    assert_token_works(&base, &classic).await;
    let body = r#"{"repositories":["hello-world"],"permissions":{"contents":"read"}}"#;
    let forced = mint_with_headers(&base, &[(FORMAT_HEADER, "enabled")], Some(body)).await;
    let stateless = forced["token"].as_str().unwrap();
    assert_stateless(stateless);
    assert_eq!(forced["permissions"], json!({"contents": "read"}));
    // The scoping holds: one repository, contents read only.
    let resp = get(
        &base,
        "/installation/repositories",
        Some(&token_auth(stateless)),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json["total_count"], 1);
    assert_eq!(resp.json["repositories"][0]["name"], "hello-world");
    let resp = get(
        &base,
        "/repos/octo-org/other-repo",
        Some(&token_auth(stateless)),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(
        "classic".parse::<TokenFormat>().unwrap(),
        TokenFormat::Classic
    );
    assert_eq!(
        "Stateless".parse::<TokenFormat>().unwrap(),
        TokenFormat::Stateless
    );
    assert!("opaque".parse::<TokenFormat>().is_err());
}

#[tokio::test]
async fn both_formats_expire() {
    let env = GitHub::empty(|c| c.token_ttl = Duration::from_secs(1))
        .await
        .unwrap();
    let base = env.standin.url();
    let stateless = mint_token(&base, None).await;
    let classic = mint_with_headers(&base, &[(FORMAT_HEADER, "disabled")], None).await;
    let classic = classic["token"].as_str().unwrap().to_string();
    assert_stateless(&stateless);
    assert_classic(&classic);
    for token in [&stateless, &classic] {
        assert!(env.standin.is_token_live(token));
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for token in [&stateless, &classic] {
        assert!(!env.standin.is_token_live(token));
        let resp = get(
            &base,
            "/installation/repositories",
            Some(&token_auth(token)),
        )
        .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
        assert_eq!(resp.json["message"], "Bad credentials");
    }
}
