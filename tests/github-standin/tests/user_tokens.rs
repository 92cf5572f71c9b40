//! People over HTTP: personal access tokens (`StandInConfig::user_tokens`,
//! `StandIn::add_user_token`). What a user creates through REST is theirs and the App's webhooks
//! name them as `sender`; App-only routes refuse them; each user has a rate limit of their own;
//! git over HTTP takes a PAT as the Basic password.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::Router;
use github_standin::{PullFileSpec, PullSpec};
use http::{Method, StatusCode};
use penguin_test_support::github_api::*;
use serde_json::{json, Value};

const OWNER: &str = "octo-org";
const REPO: &str = "hello-world";
const BOT: &str = "penguin-agent[bot]";
const USER: &str = "octocat";
const PAT: &str = "ghp_octocatPersonalAccessToken0001";
const CREATE_DOCS: &str = "https://docs.github.com/rest/checks/runs#create-a-check-run";
const UPDATE_DOCS: &str = "https://docs.github.com/rest/checks/runs#update-a-check-run";

/// The deliveries a [`Receiver`] got: (`X-GitHub-Event`, payload).
type Inbox = Arc<Mutex<Vec<(String, Value)>>>;

/// A webhook receiver keeping the payloads it got, with their `X-GitHub-Event`.
struct Receiver {
    url: String,
    got: Inbox,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let got = Inbox::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new().fallback(record).with_state(got.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url, got, task }
    }

    /// (`event.action`, payload) of every delivery so far.
    fn events(&self) -> Vec<(String, Value)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(event, payload)| {
                let action = payload["action"].as_str().unwrap_or("-");
                (format!("{event}.{action}"), payload.clone())
            })
            .collect()
    }
}

async fn record(State(got): State<Inbox>, req: Request) -> StatusCode {
    let event = req
        .headers()
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    got.lock()
        .unwrap()
        .push((event, serde_json::from_slice(&body).unwrap()));
    StatusCode::OK
}

/// A stand-in where [`USER`] has [`PAT`], sending the App's webhooks to `url`.
async fn standin(
    url: Option<&str>,
    configure: impl FnOnce(&mut github_standin::StandInConfig),
) -> GitHub {
    GitHub::start_with(|c| {
        c.webhook_url = url.map(str::to_string);
        c.user_tokens = vec![(USER.to_string(), PAT.to_string())];
        configure(c);
    })
    .await
    .unwrap()
}

/// `POST /repos/{OWNER}/{REPO}/issues/{n}/comments` with `authorization`.
async fn comment(base: &str, authorization: &str, n: u64, body: &str) -> Resp {
    let path = format!("/repos/{OWNER}/{REPO}/issues/{n}/comments");
    let body = json!({ "body": body }).to_string();
    send(base, Method::POST, &path, Some(authorization), Some(&body)).await
}

#[tokio::test]
async fn a_comment_made_with_a_personal_access_token_is_the_users() {
    let receiver = Receiver::start().await;
    let env = standin(Some(&receiver.url), |_| {}).await;
    let (s, base) = (&env.standin, env.url());
    s.add_issue(OWNER, REPO, 1, "Crash", "It crashes.", "alice", &[]);

    let resp = comment(&base, &token_auth(PAT), 1, "I see it too").await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    let id = resp.json["id"].as_u64().unwrap();
    assert_eq!(resp.json["user"]["login"], USER);
    assert_eq!(resp.json["user"]["type"], "User");
    assert_eq!(resp.json["author_association"], "NONE");
    assert_eq!(resp.json["performed_via_github_app"], Value::Null);
    assert_eq!(resp.header("x-ratelimit-used"), Some("1"));
    assert_eq!(resp.header("x-ratelimit-limit"), Some("5000"));
    assert_eq!(
        s.comments(OWNER, REPO, 1),
        vec![(id, "I see it too".to_string(), USER.to_string())]
    );

    // `Bearer` works as well; the association comes from the repository's permissions.
    s.set_permission(OWNER, REPO, USER, "write");
    let resp = comment(&base, &bearer(PAT), 1, "Fixed in main").await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    assert_eq!(resp.json["user"]["login"], USER);
    assert_eq!(resp.json["author_association"], "COLLABORATOR");

    s.deliveries_settled().await;
    let events = receiver.events();
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["issue_comment.created", "issue_comment.created"]);
    let payload = &events[0].1;
    assert_eq!(payload["sender"]["login"], USER);
    assert_eq!(payload["sender"]["type"], "User");
    assert_eq!(payload["comment"]["id"], id);
    assert_eq!(payload["comment"]["user"]["login"], USER);
    assert_eq!(payload["installation"]["id"], 1001);

    // Exactly what `add_comment` by the same person sends.
    let seeded = s.add_comment(OWNER, REPO, 1, "me too", USER).unwrap();
    s.deliveries_settled().await;
    let events = receiver.events();
    let last = &events.last().unwrap().1;
    assert_eq!(last["comment"]["id"], seeded);
    assert_eq!(last["sender"], payload["sender"]);
    assert_eq!(last["comment"]["user"], payload["comment"]["user"]);
}

#[tokio::test]
async fn the_same_comment_with_an_installation_token_is_the_bots() {
    let receiver = Receiver::start().await;
    let env = standin(Some(&receiver.url), |_| {}).await;
    let (s, base) = (&env.standin, env.url());
    s.add_issue(OWNER, REPO, 1, "Crash", "It crashes.", "alice", &[]);
    let token = mint_token(&base, None).await;

    let resp = comment(&base, &token_auth(&token), 1, "On it").await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    assert_eq!(resp.json["user"]["login"], BOT);
    assert_eq!(resp.json["user"]["type"], "Bot");
    assert_eq!(
        resp.json["performed_via_github_app"]["slug"],
        "penguin-agent"
    );
    assert_eq!(s.comments(OWNER, REPO, 1)[0].2, BOT);

    s.deliveries_settled().await;
    let events = receiver.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "issue_comment.created");
    assert_eq!(events[0].1["sender"]["login"], BOT);
    assert_eq!(events[0].1["sender"]["type"], "Bot");
}

#[tokio::test]
async fn people_edit_their_own_comments_and_with_write_access_others() {
    let receiver = Receiver::start().await;
    let env = standin(Some(&receiver.url), |_| {}).await;
    let (s, base) = (&env.standin, env.url());
    s.add_issue(OWNER, REPO, 1, "Crash", "It crashes.", "alice", &[]);
    let token = mint_token(&base, None).await;
    let bots = comment(&base, &token_auth(&token), 1, "On it").await.json["id"]
        .as_u64()
        .unwrap();
    let users = comment(&base, &token_auth(PAT), 1, "Thanks").await.json["id"]
        .as_u64()
        .unwrap();
    let edit = |id: u64, auth: String, body: &str| {
        let base = base.clone();
        let body = json!({ "body": body }).to_string();
        async move {
            let path = format!("/repos/{OWNER}/{REPO}/issues/comments/{id}");
            send(&base, Method::PATCH, &path, Some(&auth), Some(&body)).await
        }
    };

    let resp = edit(users, token_auth(PAT), "Thanks!").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    assert_eq!(resp.json["body"], "Thanks!");
    // Someone else's comment: not without write access.
    let resp = edit(bots, token_auth(PAT), "hijacked").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.json);
    s.set_permission(OWNER, REPO, USER, "maintain");
    let resp = edit(bots, token_auth(PAT), "On it (edited)").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    assert_eq!(resp.json["user"]["login"], BOT, "the author stays");
    // The bot still edits only its own.
    let resp = edit(users, token_auth(&token), "bot was here").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.json);

    s.deliveries_settled().await;
    let edits: Vec<(String, String)> = receiver
        .events()
        .into_iter()
        .filter(|(e, _)| e == "issue_comment.edited")
        .map(|(_, p)| {
            let sender = p["sender"]["login"].as_str().unwrap().to_string();
            let author = p["comment"]["user"]["login"].as_str().unwrap().to_string();
            (sender, author)
        })
        .collect();
    assert_eq!(
        edits,
        [
            (USER.to_string(), USER.to_string()),
            (USER.to_string(), BOT.to_string())
        ]
    );
}

#[tokio::test]
async fn labels_reactions_and_reviews_are_the_users() {
    let receiver = Receiver::start().await;
    let env = standin(Some(&receiver.url), |_| {}).await;
    let (s, base) = (&env.standin, env.url());
    s.add_pull(
        OWNER,
        REPO,
        PullSpec {
            number: 1,
            title: "Fix the parser".into(),
            body: "It was broken.".into(),
            author: "alice".into(),
            head_ref: "fix-parser".into(),
            head_sha: "a".repeat(40),
            base_ref: "main".into(),
            labels: vec![],
            from_fork: false,
            files: vec![PullFileSpec {
                filename: "src/parser.rs".into(),
                status: "modified".into(),
                additions: 1,
                deletions: 1,
                patch: Some("@@ -1 +1 @@\n-old\n+new".into()),
            }],
        },
    );
    let api = format!("/repos/{OWNER}/{REPO}");
    let pat = token_auth(PAT);
    let post = |path: String, body: Value| {
        let (base, pat) = (base.clone(), pat.clone());
        async move {
            let body = body.to_string();
            send(&base, Method::POST, &path, Some(&pat), Some(&body)).await
        }
    };

    let resp = post(format!("{api}/issues/1/labels"), json!({"labels": ["bug"]})).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    assert_eq!(s.issue_labels(OWNER, REPO, 1), ["bug"]);

    let resp = post(
        format!("{api}/pulls/1/reviews"),
        json!({"event": "APPROVE", "body": "LGTM"}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    assert_eq!(resp.json["user"]["login"], USER);
    assert_eq!(resp.json["state"], "APPROVED");

    let id = comment(&base, &pat, 1, "Nice").await.json["id"]
        .as_u64()
        .unwrap();
    let resp = post(
        format!("{api}/issues/comments/{id}/reactions"),
        json!({"content": "heart"}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    assert_eq!(resp.json["user"]["login"], USER);

    s.deliveries_settled().await;
    let events = receiver.events();
    let labeled = events
        .iter()
        .find(|(e, _)| e == "pull_request.labeled")
        .expect("a pull_request.labeled delivery");
    assert_eq!(labeled.1["sender"]["login"], USER);
    assert_eq!(labeled.1["label"]["name"], "bug");
}

#[tokio::test]
async fn check_runs_need_a_github_app() {
    let env = standin(None, |_| {}).await;
    let (s, base) = (&env.standin, env.url());
    let path = format!("/repos/{OWNER}/{REPO}/check-runs");
    let body = json!({"name": "lint", "head_sha": "a".repeat(40)});

    let resp = call(&base, Method::POST, &path, PAT, Some(body.clone())).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.json);
    assert_eq!(
        resp.json["message"],
        "You must authenticate via a GitHub App."
    );
    assert_eq!(resp.json["documentation_url"], CREATE_DOCS);
    assert!(s.check_runs(OWNER, REPO).is_empty());

    // The App's run can be read by the person, not updated.
    let token = mint_token(&base, None).await;
    let run = call(&base, Method::POST, &path, &token, Some(body)).await;
    assert_eq!(run.status, StatusCode::CREATED, "{}", run.json);
    let run_path = format!("{path}/{}", run.json["id"]);
    let resp = call(&base, Method::GET, &run_path, PAT, None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    assert_eq!(resp.json["name"], "lint");
    for method in [Method::PATCH, Method::POST] {
        let resp = call(
            &base,
            method,
            &run_path,
            PAT,
            Some(json!({"conclusion": "success"})),
        )
        .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.json);
        assert_eq!(
            resp.json["message"],
            "You must authenticate via a GitHub App."
        );
        assert_eq!(resp.json["documentation_url"], UPDATE_DOCS);
    }
    assert_eq!(s.check_runs(OWNER, REPO)[0]["status"], "queued");
}

#[tokio::test]
async fn unknown_tokens_are_bad_credentials() {
    let env = standin(None, |_| {}).await;
    let (s, base) = (&env.standin, env.url());
    s.add_issue(OWNER, REPO, 1, "Crash", "It crashes.", "alice", &[]);
    for auth in [
        "token ghp_notConfigured",
        "Bearer ghp_notConfigured",
        "Bearer github_pat_notConfigured",
        "token not-a-token",
    ] {
        let resp = comment(&base, auth, 1, "hello").await;
        assert_eq!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{auth}: {}",
            resp.json
        );
        assert_eq!(resp.json["message"], "Bad credentials", "{auth}");
    }
    assert!(s.comments(OWNER, REPO, 1).is_empty());
    let statuses: Vec<u16> = s.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [401; 4]);

    // A token added while running works at once; the first one keeps working.
    s.add_user_token("mona", "ghp_monaToken");
    let resp = comment(&base, "token ghp_monaToken", 1, "hello").await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    assert_eq!(resp.json["user"]["login"], "mona");
    let resp = comment(&base, &token_auth(PAT), 1, "hi").await;
    assert_eq!(resp.json["user"]["login"], USER);
}

#[tokio::test]
async fn app_and_installation_routes_refuse_a_personal_access_token() {
    let env = standin(None, |_| {}).await;
    let (s, base) = (&env.standin, env.url());
    for auth in [token_auth(PAT), bearer(PAT)] {
        for path in ["/app/hook/deliveries", "/app", "/app/installations"] {
            let resp = get(&base, path, Some(&auth)).await;
            assert_eq!(
                resp.status,
                StatusCode::UNAUTHORIZED,
                "{path}: {}",
                resp.json
            );
            assert_eq!(
                resp.json["message"], "A JSON web token could not be decoded",
                "{path}"
            );
        }
        let resp = send(
            &base,
            Method::POST,
            "/app/installations/1001/access_tokens",
            Some(&auth),
            None,
        )
        .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.json);
    }
    assert!(s.mint_requests().is_empty());

    let resp = get(&base, "/installation/repositories", Some(&token_auth(PAT))).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.json);
    assert_eq!(
        resp.json["message"],
        "You must authenticate with an installation access token in order to list repositories \
         for an installation."
    );
    let resp = send(
        &base,
        Method::DELETE,
        "/installation/token",
        Some(&token_auth(PAT)),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.json);
    assert!(s.revoked_tokens().is_empty());

    // What a person may see.
    let me = get(&base, "/user", Some(&token_auth(PAT))).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.json);
    assert_eq!(me.json["login"], USER);
    assert_eq!(me.json["type"], "User");
    let user = get(&base, &format!("/users/{USER}"), None).await;
    assert_eq!(user.status, StatusCode::OK, "{}", user.json);
    assert_eq!(user.json["id"], me.json["id"]);
    let repo = get(&base, &format!("/repos/{OWNER}/{REPO}"), Some(&bearer(PAT))).await;
    assert_eq!(repo.status, StatusCode::OK, "{}", repo.json);
    assert_eq!(repo.json["full_name"], "octo-org/hello-world");
    let other = get(&base, "/repos/octo-org/nope", Some(&bearer(PAT))).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    // The bot is no user.
    let token = mint_token(&base, None).await;
    let bot = get(&base, "/user", Some(&token_auth(&token))).await;
    assert_eq!(bot.status, StatusCode::FORBIDDEN, "{}", bot.json);
}

#[tokio::test]
async fn each_user_has_a_rate_limit_of_their_own() {
    let env = standin(None, |c| {
        c.rate_limit_per_hour = 3;
        c.user_tokens
            .push((USER.to_string(), "ghp_octocatSecond".to_string()));
        c.user_tokens
            .push(("mona".to_string(), "ghp_mona".to_string()));
    })
    .await;
    let (s, base) = (&env.standin, env.url());
    s.add_issue(OWNER, REPO, 1, "Crash", "It crashes.", "alice", &[]);
    let path = format!("/repos/{OWNER}/{REPO}/issues/1");
    // Both of octocat's tokens count against one window.
    for (i, pat) in [PAT, "ghp_octocatSecond", PAT].into_iter().enumerate() {
        let resp = call(&base, Method::GET, &path, pat, None).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
        assert_eq!(resp.header("x-ratelimit-used"), Some(&*(i + 1).to_string()));
    }
    let resp = call(&base, Method::GET, &path, "ghp_octocatSecond", None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.json);
    let id = get(&base, &format!("/users/{USER}"), None).await.json["id"].clone();
    assert_eq!(
        resp.json["message"],
        format!("API rate limit exceeded for user ID {id}.")
    );
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("0"));

    // Others are not affected.
    let resp = call(&base, Method::GET, &path, "ghp_mona", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    assert_eq!(resp.header("x-ratelimit-used"), Some("1"));
    let token = mint_token(&base, None).await;
    let resp = call(&base, Method::GET, &path, &token, None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
}

/// Runs git in `dir` with a clean environment; panics with its stderr unless it succeeds
/// (`ok`) or fails (`!ok`).
async fn git(dir: &Path, args: &[&str], ok: bool) -> String {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("GIT_AUTHOR_NAME", "Octo Cat")
        .env("GIT_AUTHOR_EMAIL", "octocat@example.com")
        .env("GIT_COMMITTER_NAME", "Octo Cat")
        .env("GIT_COMMITTER_EMAIL", "octocat@example.com")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.success(), ok, "git {args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn a_person_pushes_opens_a_pull_request_and_commits_through_the_api() {
    let receiver = Receiver::start().await;
    let env = standin(Some(&receiver.url), |_| {}).await;
    let (s, base) = (&env.standin, env.url());
    let host = base.trim_start_matches("http://");
    let remote = format!("http://{USER}:{PAT}@{host}/{OWNER}/{REPO}.git");
    let wrong = format!("http://{USER}:ghp_wrong@{host}/{OWNER}/{REPO}.git");

    // Git over HTTP with the PAT as the password.
    let work = env.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"], true).await;
    std::fs::write(work.join("README.md"), "hello\n").unwrap();
    git(&work, &["add", "."], true).await;
    git(&work, &["commit", "-q", "-m", "first"], true).await;
    git(
        &work,
        &["push", "-q", &remote, "HEAD:refs/heads/main"],
        true,
    )
    .await;
    git(&work, &["checkout", "-q", "-b", "feature"], true).await;
    std::fs::write(work.join("README.md"), "hello, world\n").unwrap();
    git(&work, &["commit", "-q", "-am", "greet the world"], true).await;
    git(
        &work,
        &["push", "-q", &wrong, "HEAD:refs/heads/feature"],
        false,
    )
    .await;
    assert_eq!(s.git_auth_failures(), 1);
    git(
        &work,
        &["push", "-q", &remote, "HEAD:refs/heads/feature"],
        true,
    )
    .await;
    assert_eq!(s.git_pushes(), 2);
    let head = git(&work, &["rev-parse", "HEAD"], true).await;
    assert_eq!(env.bare_git(&["rev-parse", "refs/heads/feature"]), head);

    // The pull request is the person's, and so is the event.
    let api = format!("/repos/{OWNER}/{REPO}");
    let pull = call(
        &base,
        Method::POST,
        &format!("{api}/pulls"),
        PAT,
        Some(json!({"title": "Greet the world", "head": "feature", "base": "main"})),
    )
    .await;
    assert_eq!(pull.status, StatusCode::CREATED, "{}", pull.json);
    assert_eq!(pull.json["user"]["login"], USER);
    let n = pull.json["number"].as_u64().unwrap();
    assert_eq!(pull.json["changed_files"], 1);
    // Nobody approves their own; the bot may.
    let reviews = format!("{api}/pulls/{n}/reviews");
    let approve = json!({"event": "APPROVE"});
    let own = call(&base, Method::POST, &reviews, PAT, Some(approve.clone())).await;
    assert_eq!(own.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", own.json);
    let token = mint_token(&base, None).await;
    let bots = call(&base, Method::POST, &reviews, &token, Some(approve)).await;
    assert_eq!(bots.status, StatusCode::OK, "{}", bots.json);
    assert_eq!(bots.json["user"]["login"], BOT);

    // A commit through the Git Data API without an author is the person's, and not signed.
    let tree = call(
        &base,
        Method::GET,
        &format!("{api}/git/commits/{head}"),
        PAT,
        None,
    )
    .await
    .json["tree"]["sha"]
        .clone();
    let commit = call(
        &base,
        Method::POST,
        &format!("{api}/git/commits"),
        PAT,
        Some(json!({"message": "again", "tree": tree, "parents": [head]})),
    )
    .await;
    assert_eq!(commit.status, StatusCode::CREATED, "{}", commit.json);
    assert_eq!(commit.json["author"]["name"], USER);
    let email = commit.json["committer"]["email"].as_str().unwrap();
    assert!(
        email.ends_with(&format!("+{USER}@users.noreply.github.com")),
        "{email}"
    );
    assert_eq!(commit.json["verification"]["verified"], false);
    assert!(s.verified_commits().is_empty());

    s.deliveries_settled().await;
    let events = receiver.events();
    let opened = events
        .iter()
        .find(|(e, _)| e == "pull_request.opened")
        .expect("a pull_request.opened delivery");
    assert_eq!(opened.1["sender"]["login"], USER);
    assert_eq!(opened.1["pull_request"]["user"]["login"], USER);
}
