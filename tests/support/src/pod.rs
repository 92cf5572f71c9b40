//! The pod as it runs: the tokenator and the api as processes side by side,
//! sharing `run/` (the socket and the credentials file) the way the
//! containers share `/run/penguin`, against the GitHub and model stand-ins.

use crate::{api::Api, deliveries, tokenator::Tokenator, GitHub};
use llm_standin::LlmStandIn;
use serde_json::Value;
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

/// The webhook secret the api is given unless `configure` changes it.
pub const WEBHOOK_SECRET: &str = "pod-webhook-secret-0123";

/// A running pod; its processes are killed when it is dropped.
pub struct Pod {
    /// The GitHub stand-in.
    pub github: GitHub,
    /// The model stand-in the api talks to.
    pub llm: LlmStandIn,
    /// The tokenator.
    pub tokenator: Tokenator,
    /// The api.
    pub api: Api,
    /// The directory the tokenator and the api share.
    pub run: PathBuf,
    /// The pod's directory: the api's `data/` and `workspace/`, and `run`.
    pub dir: tempfile::TempDir,
}

impl Pod {
    /// Starts the pod against `github`: the tokenator (`tokenator_bin`) with
    /// its socket and credentials file in `run`, a path inside the pod's
    /// directory, until it is ready; then the api (`api_bin`) with
    /// [`api::env`](crate::api::env) for a new model stand-in, the
    /// tokenator's [`api_env`](Tokenator::api_env) and [`WEBHOOK_SECRET`],
    /// adjusted by `configure`, which is given the pod's directory.
    pub async fn start(
        tokenator_bin: impl AsRef<Path>,
        api_bin: impl AsRef<Path>,
        github: GitHub,
        run: &str,
        configure: impl FnOnce(&mut HashMap<String, String>, &Path),
    ) -> Pod {
        Pod::start_with(tokenator_bin, api_bin, github, run, configure, &[]).await
    }

    /// [`Pod::start`] with `tokenator_env` added to the tokenator's environment.
    pub async fn start_with(
        tokenator_bin: impl AsRef<Path>,
        api_bin: impl AsRef<Path>,
        github: GitHub,
        run: &str,
        configure: impl FnOnce(&mut HashMap<String, String>, &Path),
        tokenator_env: &[(&str, &str)],
    ) -> Pod {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join(run);
        let tokenator = Tokenator::start_sharing(tokenator_bin, &github, &run, tokenator_env).await;
        let llm = LlmStandIn::start().await.unwrap();
        let mut env = crate::api::env(dir.path(), Some(&llm));
        env.extend(tokenator.api_env());
        env.insert("GITHUB_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
        configure(&mut env, dir.path());
        let api = Api::start(api_bin, env).await;
        Pod {
            github,
            llm,
            tokenator,
            api,
            run,
            dir,
        }
    }

    /// The pod the bot's end-to-end tests use: the workspace's binaries, a
    /// stand-in whose installation tokens live `token_ttl`, and the server's
    /// `.penguin/config.yml` holding `config` (when given). The api's public
    /// URL is `https://penguin.example`.
    pub async fn for_bot(config: Option<&str>, token_ttl: Duration) -> Pod {
        Pod::for_bot_with_env(config, token_ttl, Vec::new()).await
    }

    /// [`Pod::for_bot`] with `extra` api environment (a remote runner, say).
    pub async fn for_bot_with_env(
        config: Option<&str>,
        token_ttl: Duration,
        extra: Vec<(String, String)>,
    ) -> Pod {
        Pod::for_bot_with(config, token_ttl, extra, &[]).await
    }

    /// [`Pod::for_bot_with_env`] whose tokenator also gets `tokenator_env`
    /// (a redelivery sweep, say).
    pub async fn for_bot_with(
        config: Option<&str>,
        token_ttl: Duration,
        extra: Vec<(String, String)>,
        tokenator_env: &[(&str, &str)],
    ) -> Pod {
        let github = GitHub::start(token_ttl).await.unwrap();
        Pod::start_with(
            crate::binaries::workspace_binary("penguin-tokenator"),
            crate::binaries::workspace_binary("penguin-api"),
            github,
            "run",
            |env, _| {
                let workspace = Path::new(&env["PENGUIN_WORKSPACE"]);
                std::fs::create_dir_all(workspace.join(".penguin")).unwrap();
                if let Some(config) = config {
                    std::fs::write(workspace.join(".penguin/config.yml"), config).unwrap();
                }
                env.insert(
                    "PENGUIN_PUBLIC_URL".into(),
                    "https://penguin.example".into(),
                );
                env.extend(extra);
            },
            tokenator_env,
        )
        .await
    }

    /// Points the stand-in's App webhook at the api, signed with its
    /// secret: from now on the stand-in delivers events as GitHub does.
    pub fn deliver_webhooks(&self) {
        let url = self.api.url("/api/v1/integrations/github/webhook");
        let secret = &self.api.env["GITHUB_WEBHOOK_SECRET"];
        self.github.standin.set_webhook(Some(&url), secret);
    }

    /// `login` comments `body` on issue or pull request `number` of
    /// `octo-org/hello-world` (delivered to the api when
    /// [`Pod::deliver_webhooks`] was called); the comment's id.
    pub fn comment_as(&self, login: &str, number: u64, body: &str) -> u64 {
        self.github
            .standin
            .add_comment(crate::OWNER, crate::REPO, number, body, login)
            .expect("the issue exists")
    }

    /// Scripts the model for one agent fix: an exact edit of `path` (`old`
    /// becomes `new`), then `finish`.
    pub fn script_fix(&self, path: &str, old: &str, new: &str) {
        self.llm.push_reply(llm_standin::Reply::ToolCalls(vec![(
            "edit_file".into(),
            serde_json::json!({"path": path, "old_text": old, "new_text": new}),
        )]));
        self.llm.push_reply(llm_standin::Reply::ToolCalls(vec![(
            "finish".into(),
            serde_json::json!({"summary": format!("{path}: {old} -> {new}")}),
        )]));
    }

    /// Posts an `issue_comment` delivery signed with the api's webhook
    /// secret; the status.
    pub async fn deliver(&self, id: &str, payload: &Value) -> u16 {
        self.deliver_event("issue_comment", id, payload).await
    }

    /// Posts an `event` delivery signed with the api's webhook secret; the status.
    pub async fn deliver_event(&self, event: &str, id: &str, payload: &Value) -> u16 {
        let body = serde_json::to_vec(payload).unwrap();
        let secret = self.api.env["GITHUB_WEBHOOK_SECRET"].as_bytes();
        deliveries::signed(
            &self.api.http,
            &self.api.url(""),
            secret,
            event,
            Some(id),
            &body,
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
    }

    /// Waits until the metric series `name` (with its labels, if any) from `GET /metrics` satisfies
    /// `check`, and returns its value. Metrics are set after the step that a
    /// test usually waits for (the gauge after the last label), so a test
    /// must wait for the value itself rather than read it once.
    pub async fn wait_for_metric(&self, name: &str, check: impl Fn(f64) -> bool) -> f64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.api.metrics().await;
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok());
            match value {
                Some(value) if check(value) => return value,
                _ if tokio::time::Instant::now() >= deadline => {
                    panic!("timed out waiting for {name} (last {value:?}) in\n{text}")
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// The bot's comments on `number` of `octo-org/hello-world`.
    pub fn bot_comments(&self, number: u64) -> Vec<String> {
        self.github
            .standin
            .comments(crate::OWNER, crate::REPO, number)
            .into_iter()
            .filter(|(_, _, author)| author.ends_with("[bot]"))
            .map(|(_, body, _)| body)
            .collect()
    }

    /// Commits `files` to `main` with the git CLI and the tokenator's credentials file.
    pub fn push_to_main(&self, files: &[(&str, &str)]) {
        self.push_to_branch("main", files);
    }

    /// Commits `files` on top of what was pushed before and pushes the
    /// commit to `branch`; returns its sha.
    pub fn push_to_branch(&self, branch: &str, files: &[(&str, &str)]) -> String {
        let seed = self.run.join("seed");
        let home = self.run.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let helper = format!(
            "credential.helper=store --file {}",
            self.tokenator.credentials.display()
        );
        let git = |cwd: &Path, args: &[&str]| crate::git::git_ok(cwd, &home, args);
        if !seed.join(".git").exists() {
            std::fs::create_dir_all(&seed).unwrap();
            git(&seed, &["init", "-q", "-b", "main"]);
        }
        for (path, content) in files {
            let file = seed.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
            git(&seed, &["add", path]);
        }
        git(&seed, &["commit", "-q", "-m", "seed"]);
        let refspec = format!("HEAD:refs/heads/{branch}");
        git(
            &seed,
            &[
                "-c",
                &helper,
                "push",
                "-q",
                "-f",
                &self.github.repo_url(),
                &refspec,
            ],
        );
        git(&seed, &["rev-parse", "HEAD"]).trim().to_string()
    }

    /// Waits up to 20 s until `check` holds for the stand-in, panicking with
    /// `what` and every call the stand-in recorded.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&GitHub) -> bool) {
        assert!(
            crate::eventually(Duration::from_secs(20), || check(&self.github)).await,
            "timed out waiting for {what}; calls: {:#?}",
            self.github.standin.calls()
        );
    }
}
