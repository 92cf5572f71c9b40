//! Repository contents (`GET /repos/{owner}/{repo}/contents/{path}`), comparisons (served by
//! [`crate::compare`]) and GitHub's Git Data API (blobs, trees, commits and refs under
//! `/repos/{owner}/{repo}/git/`), read from and written to the real bare repository, so what the
//! API creates is what a later `git clone` or `git fetch` sees and what a push changes is what
//! the API reads.
//!
//! Commits created without an author and a committer are made and "signed" by the App's bot
//! user, as GitHub does; the stand-in remembers them ([`crate::StandIn::verified_commits`]).
//! With a personal access token they are the person's, and not signed.
//! Like GitHub, a repository without any commits answers the Git Data API with 409
//! `Git Repository is empty.` and the contents route with 404 `This repository is empty.`.
//!
//! The routes are served by [`crate::rest`] (recorded calls, faults, token visibility and
//! permissions); this module only does the operations.

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, FixedOffset, Offset as _, SecondsFormat, Utc};
use http::{HeaderValue, StatusCode};
use serde_json::{json, Map, Value};

use crate::api::{json_response, ApiError};
use crate::objects::{node_id_of, DEFAULT_BRANCH};
use crate::plumbing::{
    is_full_sha, valid_path, valid_ref_name, Bare, Ident, RefEntry, TreeEntry, ZERO_SHA,
};
use crate::rest::{created, invalid, not_one_of, object, opt_str, query_param, req_str};
use crate::shapes::encode_path;
use crate::state::{RepoInfo, Shared};

/// Files larger than this come without `content` (`encoding: none`), as on GitHub.
const MAX_INLINE_BYTES: u64 = 1 << 20;
/// The tree entry modes GitHub accepts.
const MODES: [&str; 5] = ["100644", "100755", "040000", "160000", "120000"];
/// The tree entry types GitHub accepts.
const TYPES: [&str; 3] = ["blob", "tree", "commit"];

/// One contents or Git Data operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GitOp {
    /// `GET contents/{path}` (empty: the root).
    Contents(String),
    CreateBlob,
    GetBlob(String),
    CreateTree,
    /// `GET git/trees/{sha or ref}`.
    GetTree(String),
    CreateCommit,
    GetCommit(String),
    /// `GET git/ref/{ref}`, `ref` without `refs/`.
    GetRef(String),
    /// `GET git/refs[/{ref}]`: the ref itself, or those starting with it.
    ListRefs(String),
    /// `GET git/matching-refs/{ref}`.
    MatchingRefs(String),
    CreateRef,
    /// `PATCH git/refs/{ref}`.
    UpdateRef(String),
    DeleteRef(String),
    /// `GET compare/{base}...{head}`.
    Compare(String),
}

impl GitOp {
    /// Recognises a contents or Git Data route from the method and the path segments after
    /// `/repos/{owner}/{repo}/` (percent-decoded).
    pub fn parse(method: &str, tail: &[&str]) -> Option<GitOp> {
        let rest = |r: &[&str]| r.join("/");
        let op = match (method, tail) {
            ("GET", ["contents", path @ ..]) => GitOp::Contents(rest(path)),
            ("POST", ["git", "blobs"]) => GitOp::CreateBlob,
            ("GET", ["git", "blobs", sha]) => GitOp::GetBlob(sha.to_string()),
            ("POST", ["git", "trees"]) => GitOp::CreateTree,
            ("GET", ["git", "trees", name @ ..]) if !rest(name).is_empty() => {
                GitOp::GetTree(rest(name))
            }
            ("POST", ["git", "commits"]) => GitOp::CreateCommit,
            ("GET", ["git", "commits", sha]) => GitOp::GetCommit(sha.to_string()),
            ("GET", ["git", "ref", name @ ..]) if !rest(name).is_empty() => {
                GitOp::GetRef(rest(name))
            }
            ("GET", ["git", "refs", name @ ..]) => GitOp::ListRefs(rest(name)),
            ("GET", ["git", "matching-refs", name @ ..]) => GitOp::MatchingRefs(rest(name)),
            ("POST", ["git", "refs"]) => GitOp::CreateRef,
            // GitHub also takes POST for PATCH endpoints.
            ("PATCH" | "POST", ["git", "refs", name @ ..]) if !rest(name).is_empty() => {
                GitOp::UpdateRef(rest(name))
            }
            ("DELETE", ["git", "refs", name @ ..]) if !rest(name).is_empty() => {
                GitOp::DeleteRef(rest(name))
            }
            ("GET", ["compare", spec @ ..]) if !rest(spec).is_empty() => GitOp::Compare(rest(spec)),
            _ => return None,
        };
        Some(op)
    }

    /// Whether the operation writes (token permission contents `write`; else `read`).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            GitOp::CreateBlob
                | GitOp::CreateTree
                | GitOp::CreateCommit
                | GitOp::CreateRef
                | GitOp::UpdateRef(_)
                | GitOp::DeleteRef(_)
        )
    }
}

/// An authorised contents or Git Data call on one repository.
pub(crate) struct GitCtx<'a> {
    pub shared: &'a Shared,
    pub base: &'a str,
    pub repo: &'a RepoInfo,
    /// The person calling with a personal access token; `None`: the App's bot.
    pub user: Option<&'a str>,
    pub body: &'a Value,
    pub query: Option<&'a str>,
    /// The request's `Accept` header (`raw` media types get a file's bytes).
    pub accept: &'a str,
}

/// Serves one operation.
pub(crate) async fn serve(ctx: &GitCtx<'_>, op: GitOp) -> Result<Response, ApiError> {
    let bare = Bare::of(ctx.shared, ctx.repo);
    if bare.is_empty().await? {
        return Err(match op {
            GitOp::Contents(_) => ApiError::new(StatusCode::NOT_FOUND, "This repository is empty."),
            // Nothing to name in an empty repository.
            GitOp::Compare(_) => ApiError::not_found(),
            _ => ApiError::new(StatusCode::CONFLICT, "Git Repository is empty."),
        });
    }
    let g = Git { ctx, bare: &bare };
    match op {
        GitOp::Contents(path) => g.contents(&path).await,
        GitOp::CreateBlob => g.create_blob().await,
        GitOp::GetBlob(sha) => g.get_blob(&sha).await,
        GitOp::CreateTree => g.create_tree().await,
        GitOp::GetTree(name) => g.get_tree(&name).await,
        GitOp::CreateCommit => g.create_commit().await,
        GitOp::GetCommit(sha) => g.get_commit(&sha).await,
        GitOp::GetRef(name) => g.get_ref(&name).await,
        GitOp::ListRefs(prefix) => g.list_refs(&prefix).await,
        GitOp::MatchingRefs(prefix) => g.matching_refs(&prefix).await,
        GitOp::CreateRef => g.create_ref().await,
        GitOp::UpdateRef(name) => g.update_ref(&name).await,
        GitOp::DeleteRef(name) => g.delete_ref(&name).await,
        GitOp::Compare(spec) => crate::compare::compare(ctx, &bare, &spec).await,
    }
}

/// A commit as the Git Data API shows it (`GET git/commits/{sha}`), for other views of commits.
pub(crate) async fn git_commit(
    ctx: &GitCtx<'_>,
    bare: &Bare,
    sha: &str,
) -> Result<Value, ApiError> {
    Git { ctx, bare }.render_commit(sha).await
}

/// Base64 with a newline after every 60 characters, as GitHub sends file contents.
pub(crate) fn wrapped_base64(data: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 60 + 1);
    for chunk in encoded.as_bytes().chunks(60) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

/// Decodes base64 that may contain whitespace (line breaks) and may lack padding.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = &base64::engine::general_purpose::STANDARD;
    engine
        .decode(&compact)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&compact))
        .ok()
}

/// git's internal date format (`<epoch> <+hhmm>`) of a time.
fn git_date(t: DateTime<FixedOffset>) -> String {
    format!("{} {}", t.timestamp(), t.format("%z"))
}

/// A stand-in "signature" for a commit the stand-in signed: armored text, stable per commit.
fn armored_signature(sha: &str) -> String {
    let raw = format!("github-standin web-flow signature over commit {sha}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
    let lines: Vec<String> = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN PGP SIGNATURE-----\n\n{}\n=STND\n-----END PGP SIGNATURE-----\n",
        lines.join("\n")
    )
}

/// A person line of a commit object: name, email and date.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Person {
    name: String,
    email: String,
    /// RFC 3339 in the commit's own offset (`Z` for UTC).
    date: String,
}

/// Parses a git time zone offset, `+hhmm` or `-hhmm`.
fn parse_offset(z: &str) -> Option<FixedOffset> {
    let (sign, digits) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// Parses `Name <email> 1700000000 +0100`.
fn parse_person(line: &str) -> Person {
    let (left, when) = line.rsplit_once("> ").unwrap_or((line, ""));
    let (name, email) = match left.rfind('<') {
        Some(i) => (left[..i].trim_end(), &left[i + 1..]),
        None => (left.trim_end(), ""),
    };
    let mut parts = when.split_whitespace();
    let epoch = parts
        .next()
        .and_then(|e| e.parse::<i64>().ok())
        .unwrap_or(0);
    let offset = parts
        .next()
        .and_then(parse_offset)
        .unwrap_or_else(|| Utc.fix());
    let date = DateTime::from_timestamp(epoch, 0)
        .unwrap_or_default()
        .with_timezone(&offset)
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    Person {
        name: name.to_string(),
        email: email.to_string(),
        date,
    }
}

/// A parsed commit object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedCommit {
    tree: String,
    parents: Vec<String>,
    author: Person,
    committer: Person,
    message: String,
    /// The `gpgsig` header, if the object carries a signature.
    signature: Option<String>,
    /// The object without its `gpgsig` header: what a signature covers.
    payload: String,
}

/// Parses a raw commit object.
fn parse_commit(raw: &[u8]) -> ParsedCommit {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, message) = text.split_once("\n\n").unwrap_or((text.as_str(), ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        match (line.strip_prefix(' '), headers.last_mut()) {
            (Some(more), Some((_, value))) => {
                value.push('\n');
                value.push_str(more);
            }
            _ => {
                let (k, v) = line.split_once(' ').unwrap_or((line, ""));
                headers.push((k.to_string(), v.to_string()));
            }
        }
    }
    let header = |key: &str| {
        headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let signature = header("gpgsig").map(|s| format!("{s}\n"));
    let payload = if signature.is_some() {
        let kept: Vec<String> = headers
            .iter()
            .filter(|(k, _)| k != "gpgsig")
            .map(|(k, v)| format!("{k} {}", v.replace('\n', "\n ")))
            .collect();
        format!("{}\n\n{message}", kept.join("\n"))
    } else {
        text.clone()
    };
    ParsedCommit {
        tree: header("tree").unwrap_or_default(),
        parents: headers
            .iter()
            .filter(|(k, _)| k == "parent")
            .map(|(_, v)| v.clone())
            .collect(),
        author: parse_person(&header("author").unwrap_or_default()),
        committer: parse_person(&header("committer").unwrap_or_default()),
        message: message.to_string(),
        signature,
        payload,
    }
}

/// Adds a `gpgsig` header (after `committer`) to a raw commit object.
fn with_signature(raw: &[u8], signature: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    let (head, message) = text.split_once("\n\n").unwrap_or((&text, ""));
    let folded = signature.trim_end_matches('\n').replace('\n', "\n ");
    format!("{head}\ngpgsig {folded}\n\n{message}").into_bytes()
}

/// `422` for a request naming a tree entry badly.
fn bad_tree_info() -> ApiError {
    ApiError::unprocessable("Invalid tree info")
}

/// The edits of one `POST git/trees` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    /// `sha: null`: remove the path (a file, or a directory with everything in it).
    Delete,
    /// Put an object (blob, submodule commit or whole tree) at the path.
    Put { mode: String, sha: String },
}

/// Removes `path` and everything below it.
fn remove_path(files: &mut BTreeMap<String, (String, String)>, path: &str) {
    files.remove(path);
    let prefix = format!("{path}/");
    files.retain(|p, _| !p.starts_with(&prefix));
}

/// Removes files that sit where a directory of `path` has to be.
fn remove_file_ancestors(files: &mut BTreeMap<String, (String, String)>, path: &str) {
    let mut at = 0;
    while let Some(i) = path[at..].find('/') {
        files.remove(&path[..at + i]);
        at += i + 1;
    }
}

/// One operation with its repository.
struct Git<'a> {
    ctx: &'a GitCtx<'a>,
    bare: &'a Bare,
}

impl Git<'_> {
    /// `{base}/repos/{owner}/{repo}`.
    fn api(&self) -> String {
        format!(
            "{}/repos/{}/{}",
            self.ctx.base, self.ctx.repo.owner, self.ctx.repo.name
        )
    }

    /// `{base}/{owner}/{repo}`.
    fn html(&self) -> String {
        format!(
            "{}/{}/{}",
            self.ctx.base, self.ctx.repo.owner, self.ctx.repo.name
        )
    }

    /// The API URL of an object by type.
    fn object_url(&self, kind: &str, sha: &str) -> String {
        let collection = match kind {
            "commit" => "commits",
            "tag" => "tags",
            "tree" => "trees",
            _ => "blobs",
        };
        format!("{}/git/{collection}/{sha}", self.api())
    }

    /// The commit a branch name, tag name, full ref name or sha names.
    async fn resolve_commit(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.bare.resolve_commit(name).await
    }

    // ----- contents -----

    async fn contents(&self, path: &str) -> Result<Response, ApiError> {
        let path = path.trim_matches('/');
        if !path.is_empty() && !valid_path(path) {
            return Err(ApiError::not_found());
        }
        let reference = query_param(self.ctx.query, "ref")
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| DEFAULT_BRANCH.to_string());
        let commit = self.resolve_commit(&reference).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("No commit found for the ref {reference}"),
            )
        })?;
        if path.is_empty() {
            return self.listing(&commit, "", &reference).await;
        }
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let treeish = if parent.is_empty() {
            commit.clone()
        } else {
            format!("{commit}:{parent}")
        };
        let entry = self
            .bare
            .ls_tree(&treeish, false)
            .await?
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.path == name)
            .ok_or_else(ApiError::not_found)?;
        match entry.kind.as_str() {
            "tree" => self.listing(&entry.sha, path, &reference).await,
            "blob" => self.file(&entry, path, &reference).await,
            _ => {
                let mut item = self.content_item(&entry, path, &reference, false);
                item["submodule_git_url"] = Value::Null;
                Ok(json_response(StatusCode::OK, &item))
            }
        }
    }

    /// The array answering a directory.
    async fn listing(&self, tree: &str, dir: &str, reference: &str) -> Result<Response, ApiError> {
        let entries = self
            .bare
            .ls_tree(tree, false)
            .await?
            .ok_or_else(ApiError::not_found)?;
        let items: Vec<Value> = entries
            .iter()
            .map(|e| {
                let path = if dir.is_empty() {
                    e.path.clone()
                } else {
                    format!("{dir}/{}", e.path)
                };
                self.content_item(e, &path, reference, true)
            })
            .collect();
        Ok(json_response(StatusCode::OK, &Value::Array(items)))
    }

    /// The content object answering a file (or its bytes for `raw` media types).
    async fn file(
        &self,
        entry: &TreeEntry,
        path: &str,
        reference: &str,
    ) -> Result<Response, ApiError> {
        let data = self
            .bare
            .read("blob", &entry.sha)
            .await?
            .ok_or_else(ApiError::not_found)?;
        if self.ctx.accept.contains(".raw") && entry.mode != "120000" {
            let mut resp = (StatusCode::OK, data).into_response();
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.github.raw"),
            );
            return Ok(resp);
        }
        let mut item = self.content_item(entry, path, reference, false);
        if entry.mode == "120000" {
            item["target"] = json!(String::from_utf8_lossy(&data));
        }
        if entry.size.unwrap_or(0) > MAX_INLINE_BYTES {
            item["content"] = json!("");
            item["encoding"] = json!("none");
        } else {
            item["content"] = json!(wrapped_base64(&data));
            item["encoding"] = json!("base64");
        }
        Ok(json_response(StatusCode::OK, &item))
    }

    /// A content object without `content`. In directory listings submodules are `file`s.
    fn content_item(&self, e: &TreeEntry, path: &str, reference: &str, listed: bool) -> Value {
        let kind = match (e.kind.as_str(), e.mode.as_str()) {
            ("tree", _) => "dir",
            ("commit", _) if listed => "file",
            ("commit", _) => "submodule",
            (_, "120000") => "symlink",
            _ => "file",
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        let enc_path = encode_path(path, true);
        let enc_ref = encode_path(reference, true);
        let url = format!("{}/contents/{enc_path}?ref={enc_ref}", self.api());
        let (git_url, html_url, download_url) = match e.kind.as_str() {
            "blob" => (
                self.object_url("blob", &e.sha),
                format!("{}/blob/{enc_ref}/{enc_path}", self.html()),
                json!(format!(
                    "{}/{}/{}/raw/{enc_ref}/{enc_path}",
                    self.ctx.base, self.ctx.repo.owner, self.ctx.repo.name
                )),
            ),
            "tree" => (
                self.object_url("tree", &e.sha),
                format!("{}/tree/{enc_ref}/{enc_path}", self.html()),
                Value::Null,
            ),
            _ => (
                self.object_url("tree", &e.sha),
                format!("{}/tree/{}", self.html(), e.sha),
                Value::Null,
            ),
        };
        json!({
            "type": kind,
            "size": e.size.unwrap_or(0),
            "name": name,
            "path": path,
            "sha": e.sha,
            "url": url,
            "git_url": git_url,
            "html_url": html_url,
            "download_url": download_url,
            "_links": {"self": url, "git": git_url, "html": html_url},
        })
    }

    // ----- blobs -----

    async fn create_blob(&self) -> Result<Response, ApiError> {
        let m = object(self.ctx.body)?;
        let content = req_str(&m, "content")?;
        let encoding = opt_str(&m, "encoding")?.unwrap_or_else(|| "utf-8".to_string());
        let data = match encoding.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => content.into_bytes(),
            "base64" => decode_base64(&content).ok_or_else(|| {
                invalid("For 'properties/content', the content is not valid Base64.")
            })?,
            _ => return Err(not_one_of("encoding", &encoding, &["utf-8", "base64"])),
        };
        let sha = self.bare.write_blob(data).await?;
        let url = self.object_url("blob", &sha);
        Ok(created(&json!({"sha": sha, "url": url}), &url))
    }

    async fn get_blob(&self, sha: &str) -> Result<Response, ApiError> {
        let info = self.bare.object_info(sha).await?;
        let (full, size) = match info {
            Some((kind, size)) if kind == "blob" && is_full_sha(sha) => {
                (sha.to_ascii_lowercase(), size)
            }
            _ => return Err(ApiError::not_found()),
        };
        let data = self
            .bare
            .read("blob", &full)
            .await?
            .ok_or_else(ApiError::not_found)?;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "sha": full,
                "node_id": node_id_of("Blob", &full),
                "size": size,
                "url": self.object_url("blob", &full),
                "content": wrapped_base64(&data),
                "encoding": "base64",
            }),
        ))
    }

    // ----- trees -----

    /// A tree entry as GitHub lists it.
    fn tree_entry(&self, e: &TreeEntry) -> Value {
        let mut v = json!({
            "path": e.path,
            "mode": e.mode,
            "type": e.kind,
            "sha": e.sha,
        });
        if let Some(size) = e.size {
            v["size"] = json!(size);
        }
        if e.kind == "blob" || e.kind == "tree" {
            v["url"] = json!(self.object_url(&e.kind, &e.sha));
        }
        v
    }

    /// A tree object: its sha, URL and entries (`recursive`: every entry below it).
    async fn render_tree(&self, sha: &str, recursive: bool) -> Result<Value, ApiError> {
        let entries = self
            .bare
            .ls_tree(sha, recursive)
            .await?
            .ok_or_else(ApiError::not_found)?;
        Ok(json!({
            "sha": sha,
            "url": self.object_url("tree", sha),
            "tree": entries.iter().map(|e| self.tree_entry(e)).collect::<Vec<_>>(),
            "truncated": false,
        }))
    }

    /// Reads one entry of a `POST git/trees` request: its path and edit (content is stored
    /// as a blob first). Object existence is checked afterwards, for all entries at once.
    async fn tree_edit(&self, item: &Value) -> Result<(String, Edit, &'static str), ApiError> {
        let Value::Object(o) = item else {
            return Err(invalid(format_args!(
                "For 'items', {item} is not an object."
            )));
        };
        let path = req_str(o, "path")?;
        let mode = req_str(o, "mode")?;
        if !MODES.contains(&mode.as_str()) {
            return Err(not_one_of("mode", &mode, &MODES));
        }
        let expected = match mode.as_str() {
            "040000" => "tree",
            "160000" => "commit",
            _ => "blob",
        };
        if let Some(kind) = opt_str(o, "type")? {
            if !TYPES.contains(&kind.as_str()) {
                return Err(not_one_of("type", &kind, &TYPES));
            }
            if kind != expected {
                return Err(bad_tree_info());
            }
        }
        if !valid_path(&path) {
            return Err(ApiError::unprocessable(
                "tree.path contains a malformed path component",
            ));
        }
        let content = opt_str(o, "content")?;
        let edit = match (o.get("sha"), content) {
            (Some(Value::Null), None) => Edit::Delete,
            (Some(Value::String(sha)), None) => {
                if !is_full_sha(sha) {
                    return Err(ApiError::unprocessable(format!(
                        "tree.sha {sha} is not a valid {expected}"
                    )));
                }
                Edit::Put {
                    mode,
                    sha: sha.to_ascii_lowercase(),
                }
            }
            (None, Some(text)) if expected == "blob" => {
                let sha = self.bare.write_blob(text.into_bytes()).await?;
                Edit::Put { mode, sha }
            }
            (Some(other), None) => {
                return Err(invalid(format_args!(
                    "For 'properties/sha', {other} is not a string or null."
                )))
            }
            (None, None) => {
                return Err(ApiError::unprocessable(
                    "Must supply either tree.sha or tree.content",
                ))
            }
            _ => return Err(bad_tree_info()),
        };
        Ok((path, edit, expected))
    }

    async fn create_tree(&self) -> Result<Response, ApiError> {
        let m = object(self.ctx.body)?;
        let items = match m.get("tree") {
            Some(Value::Array(a)) => a.clone(),
            None | Some(Value::Null) => return Err(invalid("\"tree\" wasn't supplied.")),
            Some(other) => {
                return Err(invalid(format_args!(
                    "For 'properties/tree', {other} is not an array."
                )))
            }
        };
        let mut files = match opt_str(&m, "base_tree")? {
            Some(base) => {
                let is_tree = is_full_sha(&base)
                    && matches!(self.bare.object_info(&base).await?, Some((k, _)) if k == "tree");
                if !is_tree {
                    return Err(ApiError::unprocessable("base_tree is not a valid tree"));
                }
                self.bare.tree_files(&base).await?
            }
            None => BTreeMap::new(),
        };
        let mut edits = Vec::with_capacity(items.len());
        for item in &items {
            edits.push(self.tree_edit(item).await?);
        }
        // Every object named by sha must exist with the right type (submodule commits live in
        // other repositories and are not checked).
        let named: Vec<(&str, &str)> = edits
            .iter()
            .filter_map(|(_, e, kind)| match e {
                Edit::Put { sha, .. } if *kind != "commit" => Some((sha.as_str(), *kind)),
                _ => None,
            })
            .collect();
        let shas: Vec<&str> = named.iter().map(|(s, _)| *s).collect();
        let infos = self.bare.object_infos(&shas).await?;
        for ((sha, kind), info) in named.iter().zip(infos) {
            if !matches!(&info, Some((k, _)) if k == kind) {
                return Err(ApiError::unprocessable(format!(
                    "tree.sha {sha} is not a valid {kind}"
                )));
            }
        }
        for (path, edit, _) in edits {
            remove_path(&mut files, &path);
            let Edit::Put { mode, sha } = edit else {
                continue;
            };
            remove_file_ancestors(&mut files, &path);
            if mode == "040000" {
                for (sub, entry) in self.bare.tree_files(&sha).await? {
                    files.insert(format!("{path}/{sub}"), entry);
                }
            } else {
                files.insert(path, (mode, sha));
            }
        }
        let sha = self.bare.write_tree(&files).await?;
        let out = self.render_tree(&sha, false).await?;
        Ok(created(&out, &self.object_url("tree", &sha)))
    }

    async fn get_tree(&self, name: &str) -> Result<Response, ApiError> {
        let tree = if is_full_sha(name) {
            self.bare.rev_parse(&format!("{name}^{{tree}}")).await?
        } else {
            match self.resolve_commit(name).await? {
                Some(commit) => self.bare.rev_parse(&format!("{commit}^{{tree}}")).await?,
                None => None,
            }
        };
        let tree = tree.ok_or_else(ApiError::not_found)?;
        let recursive = self
            .ctx
            .query
            .unwrap_or_default()
            .split('&')
            .any(|kv| kv.split('=').next() == Some("recursive"));
        Ok(json_response(
            StatusCode::OK,
            &self.render_tree(&tree, recursive).await?,
        ))
    }

    // ----- commits -----

    /// An `author` / `committer` object of a commit request.
    fn ident(
        &self,
        m: &Map<String, Value>,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Ident>, ApiError> {
        let o = match m.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(o)) => o,
            Some(other) => {
                return Err(invalid(format_args!(
                    "For 'properties/{key}', {other} is not an object."
                )))
            }
        };
        let name = req_str(o, "name")?;
        let email = req_str(o, "email")?;
        for (field, value) in [("name", &name), ("email", &email)] {
            if value.trim().is_empty() {
                return Err(invalid(format_args!("\"{field}\" wasn't supplied.")));
            }
            if value.contains(['<', '>', '\n', '\0']) {
                return Err(invalid(format_args!(
                    "For 'properties/{field}', {value:?} is not a valid {field}."
                )));
            }
        }
        let date = match opt_str(o, "date")? {
            None => now.fixed_offset(),
            Some(t) => DateTime::parse_from_rfc3339(&t).map_err(|_| {
                invalid(format_args!(
                    "For 'properties/date', {t:?} is not a timestamp."
                ))
            })?,
        };
        Ok(Some(Ident {
            name,
            email,
            date: git_date(date),
        }))
    }

    /// The caller as a commit identity: the App's bot, or the person of a personal access
    /// token, with their `noreply` address.
    fn caller_ident(&self, now: DateTime<Utc>) -> Ident {
        let (login, id) = match self.ctx.user {
            Some(login) => (login.to_string(), crate::shapes::user_id(login)),
            None => (self.ctx.shared.bot_login(), self.ctx.shared.bot_id()),
        };
        Ident {
            email: format!("{id}+{login}@users.noreply.github.com"),
            name: login,
            date: git_date(now.fixed_offset()),
        }
    }

    async fn create_commit(&self) -> Result<Response, ApiError> {
        let m = object(self.ctx.body)?;
        let message = req_str(&m, "message")?;
        let tree = req_str(&m, "tree")?;
        let parents: Vec<String> = match m.get("parents") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|p| match p {
                    Value::String(s) => Ok(s.to_ascii_lowercase()),
                    other => Err(invalid(format_args!(
                        "For 'items', {other} is not a string."
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(invalid(format_args!(
                    "For 'properties/parents', {other} is not an array."
                )))
            }
        };
        let now = self.ctx.shared.now();
        let author = self.ident(&m, "author", now)?;
        let committer = self.ident(&m, "committer", now)?;
        let signature = opt_str(&m, "signature")?;
        let tree_ok = is_full_sha(&tree)
            && matches!(self.bare.object_info(&tree).await?, Some((k, _)) if k == "tree");
        if !tree_ok {
            return Err(ApiError::unprocessable("Tree SHA does not exist"));
        }
        let parent_refs: Vec<&str> = parents.iter().map(String::as_str).collect();
        let infos = self.bare.object_infos(&parent_refs).await?;
        let parents_ok = parents
            .iter()
            .zip(&infos)
            .all(|(p, info)| is_full_sha(p) && matches!(info, Some((k, _)) if k == "commit"));
        if !parents_ok {
            return Err(ApiError::unprocessable(
                "Parent SHA does not exist or is not a commit object",
            ));
        }
        // Left out, both are the caller; GitHub signs the commit when that is the App's bot.
        let signs = self.ctx.user.is_none()
            && author.is_none()
            && committer.is_none()
            && signature.is_none();
        let author = author.unwrap_or_else(|| self.caller_ident(now));
        let committer = committer.unwrap_or_else(|| author.clone());
        let tree = tree.to_ascii_lowercase();
        let mut sha = self
            .bare
            .commit_tree(&tree, &parents, &message, &author, &committer)
            .await?;
        if let Some(sig) = signature.filter(|s| !s.trim().is_empty()) {
            let raw = self
                .bare
                .read("commit", &sha)
                .await?
                .ok_or_else(ApiError::not_found)?;
            sha = self.bare.write_commit(with_signature(&raw, &sig)).await?;
        }
        if signs {
            self.ctx.shared.with(|s| {
                if s.store.signed_at(&sha).is_none() {
                    s.store.signed_commits.push((sha.clone(), now));
                }
            });
        }
        let out = self.render_commit(&sha).await?;
        Ok(created(&out, &self.object_url("commit", &sha)))
    }

    /// A git commit object as the Git Data API shows it.
    async fn render_commit(&self, sha: &str) -> Result<Value, ApiError> {
        let raw = self
            .bare
            .read("commit", sha)
            .await?
            .ok_or_else(ApiError::not_found)?;
        let c = parse_commit(&raw);
        let person = |p: &Person| json!({"name": p.name, "email": p.email, "date": p.date});
        let signed_at = self.ctx.shared.with(|s| s.store.signed_at(sha));
        let verification = match (signed_at, &c.signature) {
            (Some(at), _) => json!({
                "verified": true,
                "reason": "valid",
                "signature": armored_signature(sha),
                "payload": String::from_utf8_lossy(&raw),
                "verified_at": crate::objects::timestamp(at),
            }),
            (None, Some(sig)) => json!({
                "verified": false,
                "reason": "unknown_key",
                "signature": sig,
                "payload": c.payload,
                "verified_at": null,
            }),
            (None, None) => json!({
                "verified": false,
                "reason": "unsigned",
                "signature": null,
                "payload": null,
                "verified_at": null,
            }),
        };
        let parents: Vec<Value> = c
            .parents
            .iter()
            .map(|p| {
                json!({
                    "sha": p,
                    "url": self.object_url("commit", p),
                    "html_url": format!("{}/commit/{p}", self.html()),
                })
            })
            .collect();
        Ok(json!({
            "sha": sha,
            "node_id": node_id_of("Commit", sha),
            "url": self.object_url("commit", sha),
            "html_url": format!("{}/commit/{sha}", self.html()),
            "author": person(&c.author),
            "committer": person(&c.committer),
            "tree": {"sha": c.tree, "url": self.object_url("tree", &c.tree)},
            "message": c.message,
            "parents": parents,
            "verification": verification,
        }))
    }

    async fn get_commit(&self, sha: &str) -> Result<Response, ApiError> {
        let is_commit = is_full_sha(sha)
            && matches!(self.bare.object_info(sha).await?, Some((k, _)) if k == "commit");
        if !is_commit {
            return Err(ApiError::not_found());
        }
        let out = self.render_commit(&sha.to_ascii_lowercase()).await?;
        Ok(json_response(StatusCode::OK, &out))
    }

    // ----- refs -----

    /// A ref object.
    fn ref_json(&self, r: &RefEntry) -> Value {
        let short = r.name.strip_prefix("refs/").unwrap_or(&r.name);
        json!({
            "ref": r.name,
            "node_id": node_id_of("Ref", &r.name),
            "url": format!("{}/git/refs/{}", self.api(), encode_path(short, true)),
            "object": {
                "sha": r.sha,
                "type": r.kind,
                "url": self.object_url(&r.kind, &r.sha),
            },
        })
    }

    /// The refs whose full name starts with `refs/{prefix}`.
    async fn refs_matching(&self, prefix: &str) -> Result<Vec<RefEntry>, ApiError> {
        let full = format!("refs/{prefix}");
        let refs = self.bare.refs().await?;
        Ok(refs
            .into_iter()
            .filter(|r| r.name.starts_with(&full))
            .collect())
    }

    async fn get_ref(&self, name: &str) -> Result<Response, ApiError> {
        let full = format!("refs/{name}");
        if !valid_ref_name(&full) {
            return Err(ApiError::not_found());
        }
        let r = self
            .bare
            .find_ref(&full)
            .await?
            .ok_or_else(ApiError::not_found)?;
        Ok(json_response(StatusCode::OK, &self.ref_json(&r)))
    }

    async fn list_refs(&self, prefix: &str) -> Result<Response, ApiError> {
        let refs = self.refs_matching(prefix).await?;
        let full = format!("refs/{prefix}");
        if let Some(exact) = refs.iter().find(|r| r.name == full) {
            return Ok(json_response(StatusCode::OK, &self.ref_json(exact)));
        }
        if refs.is_empty() {
            return Err(ApiError::not_found());
        }
        let list: Vec<Value> = refs.iter().map(|r| self.ref_json(r)).collect();
        Ok(json_response(StatusCode::OK, &Value::Array(list)))
    }

    async fn matching_refs(&self, prefix: &str) -> Result<Response, ApiError> {
        let list: Vec<Value> = self
            .refs_matching(prefix)
            .await?
            .iter()
            .map(|r| self.ref_json(r))
            .collect();
        Ok(json_response(StatusCode::OK, &Value::Array(list)))
    }

    /// Checks that `sha` names an existing object.
    async fn existing_object(&self, sha: &str) -> Result<String, ApiError> {
        if is_full_sha(sha) && self.bare.object_info(sha).await?.is_some() {
            Ok(sha.to_ascii_lowercase())
        } else {
            Err(ApiError::unprocessable("Object does not exist"))
        }
    }

    /// The ref after a change, rendered.
    async fn ref_after(&self, name: &str) -> Result<Value, ApiError> {
        let r = self
            .bare
            .find_ref(name)
            .await?
            .ok_or_else(ApiError::not_found)?;
        Ok(self.ref_json(&r))
    }

    async fn create_ref(&self) -> Result<Response, ApiError> {
        let m = object(self.ctx.body)?;
        let name = req_str(&m, "ref")?;
        let sha = req_str(&m, "sha")?;
        if !name.starts_with("refs/") || name.matches('/').count() < 2 {
            return Err(ApiError::unprocessable(
                "Reference name must start with 'refs/' and have at least two slashes.",
            ));
        }
        if !valid_ref_name(&name) {
            return Err(ApiError::unprocessable(format!(
                "{name} is not a valid ref name."
            )));
        }
        let sha = self.existing_object(&sha).await?;
        if self.bare.find_ref(&name).await?.is_some() {
            return Err(ApiError::unprocessable("Reference already exists"));
        }
        if !self.bare.update_ref(&name, &sha, ZERO_SHA).await? {
            return Err(if self.bare.find_ref(&name).await?.is_some() {
                ApiError::unprocessable("Reference already exists")
            } else {
                ApiError::unprocessable("Reference update failed")
            });
        }
        let out = self.ref_after(&name).await?;
        let location = out["url"].as_str().unwrap_or_default().to_string();
        Ok(created(&out, &location))
    }

    async fn update_ref(&self, name: &str) -> Result<Response, ApiError> {
        let full = format!("refs/{name}");
        let m = object(self.ctx.body)?;
        let sha = req_str(&m, "sha")?;
        let force = match m.get("force") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(invalid(format_args!(
                    "For 'properties/force', {other} is not a boolean."
                )))
            }
        };
        let current = match valid_ref_name(&full) {
            true => self.bare.find_ref(&full).await?,
            false => None,
        }
        .ok_or_else(|| ApiError::unprocessable("Reference does not exist"))?;
        let sha = self.existing_object(&sha).await?;
        if sha != current.sha {
            if !force && !self.bare.is_ancestor(&current.sha, &sha).await? {
                return Err(ApiError::unprocessable("Update is not a fast forward"));
            }
            if !self.bare.update_ref(&full, &sha, &current.sha).await? {
                return Err(ApiError::unprocessable("Reference cannot be updated"));
            }
        }
        Ok(json_response(StatusCode::OK, &self.ref_after(&full).await?))
    }

    async fn delete_ref(&self, name: &str) -> Result<Response, ApiError> {
        let full = format!("refs/{name}");
        let current = match valid_ref_name(&full) {
            true => self.bare.find_ref(&full).await?,
            false => None,
        }
        .ok_or_else(|| ApiError::unprocessable("Reference does not exist"))?;
        if !self.bare.delete_ref(&full, &current.sha).await? {
            return Err(ApiError::unprocessable("Reference cannot be deleted"));
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        let p = |m: &str, path: &str| {
            let tail: Vec<&str> = path.split('/').collect();
            GitOp::parse(m, &tail)
        };
        assert_eq!(p("GET", "contents"), Some(GitOp::Contents(String::new())));
        assert_eq!(
            p("GET", "contents/src/lib.rs"),
            Some(GitOp::Contents("src/lib.rs".into()))
        );
        assert_eq!(p("POST", "git/blobs"), Some(GitOp::CreateBlob));
        assert_eq!(
            p("GET", "git/blobs/abc"),
            Some(GitOp::GetBlob("abc".into()))
        );
        assert_eq!(
            p("GET", "git/trees/feature/x"),
            Some(GitOp::GetTree("feature/x".into()))
        );
        assert_eq!(p("POST", "git/commits"), Some(GitOp::CreateCommit));
        assert_eq!(
            p("GET", "git/ref/heads/main"),
            Some(GitOp::GetRef("heads/main".into()))
        );
        assert_eq!(p("GET", "git/ref"), None);
        assert_eq!(p("GET", "git/refs"), Some(GitOp::ListRefs(String::new())));
        assert_eq!(
            p("GET", "git/matching-refs/heads/fe"),
            Some(GitOp::MatchingRefs("heads/fe".into()))
        );
        assert_eq!(p("POST", "git/refs"), Some(GitOp::CreateRef));
        assert_eq!(
            p("POST", "git/refs/heads/x"),
            Some(GitOp::UpdateRef("heads/x".into()))
        );
        assert_eq!(
            p("PATCH", "git/refs/heads/x"),
            Some(GitOp::UpdateRef("heads/x".into()))
        );
        assert_eq!(
            p("DELETE", "git/refs/heads/x"),
            Some(GitOp::DeleteRef("heads/x".into()))
        );
        assert_eq!(p("DELETE", "git/refs"), None);
        assert_eq!(
            p("GET", "compare/main...feature/x"),
            Some(GitOp::Compare("main...feature/x".into()))
        );
        assert_eq!(p("GET", "compare"), None);
        assert_eq!(p("PUT", "contents/a"), None);
        assert!(GitOp::CreateRef.writes() && !GitOp::GetRef("heads/x".into()).writes());
    }

    #[test]
    fn base64_is_wrapped_like_github() {
        assert_eq!(wrapped_base64(b""), "");
        assert_eq!(wrapped_base64(b"hi"), "aGk=\n");
        let long = wrapped_base64(&[0u8; 100]);
        let lines: Vec<&str> = long.lines().collect();
        assert_eq!(lines[0].len(), 60);
        assert!(long.ends_with('\n'));
        assert_eq!(decode_base64(&long), Some(vec![0u8; 100]));
        assert_eq!(decode_base64("aGk"), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("%%"), None);
    }

    #[test]
    fn commits_parse() {
        let raw = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
                   parent 1111111111111111111111111111111111111111\n\
                   author Ann Example <ann@example.com> 1700000000 +0130\n\
                   committer Bot <1+b[bot]@users.noreply.github.com> 1700000000 +0000\n\
                   gpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n -----END PGP SIGNATURE-----\n\
                   \n\
                   Subject\n\nBody\n";
        let c = parse_commit(raw.as_bytes());
        assert_eq!(c.tree, "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
        assert_eq!(c.parents.len(), 1);
        assert_eq!(c.author.name, "Ann Example");
        assert_eq!(c.author.email, "ann@example.com");
        assert_eq!(c.author.date, "2023-11-14T23:43:20+01:30");
        assert_eq!(c.committer.date, "2023-11-14T22:13:20Z");
        assert_eq!(c.message, "Subject\n\nBody\n");
        assert_eq!(
            c.signature.as_deref(),
            Some("-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n")
        );
        assert!(!c.payload.contains("gpgsig"));
        assert!(c.payload.ends_with("\n\nSubject\n\nBody\n"));
        let resigned = with_signature(c.payload.as_bytes(), c.signature.as_deref().unwrap());
        assert_eq!(String::from_utf8(resigned).unwrap(), raw);
    }

    #[test]
    fn tree_edits_replace_files_and_directories() {
        let f = |m: &str| (m.to_string(), "x".to_string());
        let mut files: BTreeMap<String, (String, String)> = [
            ("a".to_string(), f("100644")),
            ("d/x".to_string(), f("100644")),
            ("d/y/z".to_string(), f("100644")),
            ("dd".to_string(), f("100644")),
        ]
        .into_iter()
        .collect();
        remove_path(&mut files, "d");
        assert_eq!(files.keys().collect::<Vec<_>>(), ["a", "dd"]);
        remove_file_ancestors(&mut files, "a/b/c");
        assert_eq!(files.keys().collect::<Vec<_>>(), ["dd"]);
    }
}
