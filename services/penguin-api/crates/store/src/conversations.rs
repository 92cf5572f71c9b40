//! Conversations and their messages.

use chrono::{DateTime, Utc};
use rusqlite::{
    params, params_from_iter, types::Value as SqlValue, Connection, OptionalExtension,
    TransactionBehavior,
};

use crate::{
    util::{clamp_limit, col_count, col_json, col_time, fmt_time, metadata_or_empty, new_id, now},
    Conversation, ConversationSummary, Message, NewMessage, Store, StoreError, MESSAGE_ROLES,
};

/// Which of a conversation's messages [`Store::conversation_history`] reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only messages with one of these roles; every role when `None` (an
    /// empty list matches nothing).
    pub roles: Option<Vec<String>>,
    /// Only messages before this position (the `seq` of the oldest message
    /// of the previous page), for walking back page by page.
    pub before: Option<u64>,
    /// At most this many messages (clamped to `1..=MAX_LIMIT`).
    pub limit: usize,
}

/// A stored message with its position in the conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryMessage {
    /// Position in the conversation (0 for the first message; ascending).
    pub seq: u64,
    /// One of [`MESSAGE_ROLES`].
    pub role: String,
    /// The text.
    pub content: String,
    /// When it was appended.
    pub timestamp: DateTime<Utc>,
}

/// One page of a conversation's history: the newest matching messages
/// before the query's position, oldest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistoryPage {
    /// The messages, oldest first.
    pub messages: Vec<HistoryMessage>,
    /// Whether older matching messages remain (read them with `before` set
    /// to the first message's `seq`).
    pub has_more: bool,
}

/// How many characters of the first user message become the title.
pub(crate) const TITLE_CHARS: usize = 60;

/// A title from message text: whitespace runs collapsed to one space, cut to
/// [`TITLE_CHARS`] characters.
pub(crate) fn title_from(content: &str) -> String {
    let mut title = String::new();
    for (n, word) in content.split_whitespace().enumerate() {
        if n > 0 {
            title.push(' ');
        }
        title.push_str(word);
        if title.chars().count() >= TITLE_CHARS {
            break;
        }
    }
    title.chars().take(TITLE_CHARS).collect()
}

pub(crate) fn validate_role(role: &str) -> Result<(), StoreError> {
    if role.is_empty() {
        return Err(StoreError::Invalid("message role must not be empty".into()));
    }
    if !MESSAGE_ROLES.contains(&role) {
        return Err(StoreError::Invalid(format!(
            "message role {role:?} is not one of {}",
            MESSAGE_ROLES.join("/")
        )));
    }
    Ok(())
}

/// Loads a conversation with its messages, or `NotFound`.
pub(crate) fn load_conversation(conn: &Connection, id: &str) -> Result<Conversation, StoreError> {
    let head = conn
        .query_row(
            "SELECT id, title, created_at, last_active, metadata FROM conversations WHERE id = ?1",
            [id],
            |r| {
                Ok(Conversation {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    created_at: col_time(r, 2)?,
                    last_active: col_time(r, 3)?,
                    metadata: col_json(r, 4)?,
                    messages: Vec::new(),
                })
            },
        )
        .optional()?;
    let mut conv = head.ok_or_else(|| StoreError::not_found("conversation", id))?;
    let mut stmt = conn.prepare_cached(
        "SELECT role, content, timestamp FROM messages WHERE conversation_id = ?1 ORDER BY seq",
    )?;
    conv.messages = stmt
        .query_map([id], |r| {
            Ok(Message {
                role: r.get(0)?,
                content: r.get(1)?,
                timestamp: col_time(r, 2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(conv)
}

/// Inserts a conversation row (no messages) under a fresh id.
pub(crate) fn insert_conversation(
    conn: &Connection,
    title: String,
    metadata: serde_json::Value,
) -> Result<Conversation, StoreError> {
    insert_conversation_as(conn, new_id("conv_"), title, metadata)?
        .ok_or_else(|| StoreError::Db("a fresh conversation id is already taken".into()))
}

/// Inserts a conversation row (no messages) under `id`; `None` when a
/// conversation with that id exists (which is left as it is).
fn insert_conversation_as(
    conn: &Connection,
    id: String,
    title: String,
    metadata: serde_json::Value,
) -> Result<Option<Conversation>, StoreError> {
    let at = now();
    let inserted = conn.execute(
        "INSERT INTO conversations (id, title, created_at, last_active, metadata)
         VALUES (?1, ?2, ?3, ?3, ?4)
         ON CONFLICT (id) DO NOTHING",
        params![id, title, fmt_time(at), serde_json::to_string(&metadata)?],
    )?;
    Ok((inserted == 1).then_some(Conversation {
        id,
        title,
        created_at: at,
        last_active: at,
        metadata,
        messages: Vec::new(),
    }))
}

fn require_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() {
        return Err(StoreError::Invalid(
            "conversation id must not be empty".into(),
        ));
    }
    Ok(())
}

/// The title derived from the first user message with any text, if any.
pub(crate) fn title_from_first_user_message(
    conn: &Connection,
    table: &str,
    key_column: &str,
    key: &str,
) -> Result<Option<String>, StoreError> {
    let sql = format!(
        "SELECT content FROM {table} WHERE {key_column} = ?1 AND role = 'user' ORDER BY seq"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([key])?;
    while let Some(row) = rows.next()? {
        let content: String = row.get(0)?;
        let title = title_from(&content);
        if !title.is_empty() {
            return Ok(Some(title));
        }
    }
    Ok(None)
}

impl Store {
    /// Creates an empty conversation. A `None` or blank title is stored as
    /// empty (the first user message fills it in later); `null` metadata is
    /// stored as `{}`.
    pub async fn create_conversation(
        &self,
        title: Option<String>,
        metadata: serde_json::Value,
    ) -> Result<Conversation, StoreError> {
        let title = title.map(|t| t.trim().to_owned()).unwrap_or_default();
        let metadata = metadata_or_empty(metadata);
        self.with_conn(move |conn| insert_conversation(conn, title, metadata))
            .await
    }

    /// Creates an empty conversation under the caller's `id` (any non-empty
    /// text; callers validate its form), or `Conflict` when one exists.
    /// Title and metadata are treated as in [`Store::create_conversation`].
    pub async fn create_conversation_with_id(
        &self,
        id: &str,
        title: Option<String>,
        metadata: serde_json::Value,
    ) -> Result<Conversation, StoreError> {
        require_id(id)?;
        let id = id.to_owned();
        let title = title.map(|t| t.trim().to_owned()).unwrap_or_default();
        let metadata = metadata_or_empty(metadata);
        self.with_conn(move |conn| {
            insert_conversation_as(conn, id.clone(), title, metadata)?.ok_or(StoreError::Conflict {
                what: "conversation",
                id,
            })
        })
        .await
    }

    /// The conversation `id` with its messages, created empty (untitled, `{}`
    /// metadata) when it does not exist yet; the flag says whether this call
    /// created it. Callers racing on the same new id all get the one
    /// conversation, and none fails.
    pub async fn open_conversation(&self, id: &str) -> Result<(Conversation, bool), StoreError> {
        require_id(id)?;
        let id = id.to_owned();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let created =
                insert_conversation_as(&tx, id.clone(), String::new(), serde_json::json!({}))?
                    .is_some();
            let conv = load_conversation(&tx, &id)?;
            tx.commit()?;
            Ok((conv, created))
        })
        .await
    }

    /// A page of the conversation's messages (see [`HistoryQuery`]), read
    /// with one indexed query; `NotFound` when the conversation does not
    /// exist.
    pub async fn conversation_history(
        &self,
        id: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let exists = tx
                .query_row("SELECT 1 FROM conversations WHERE id = ?1", [&id], |_| {
                    Ok(())
                })
                .optional()?
                .is_some();
            if !exists {
                return Err(StoreError::not_found("conversation", id.as_str()));
            }
            let limit = clamp_limit(query.limit);
            let mut sql = String::from(
                "SELECT seq, role, content, timestamp FROM messages WHERE conversation_id = ?",
            );
            let mut args: Vec<SqlValue> = vec![SqlValue::Text(id.clone())];
            if let Some(before) = query.before {
                sql.push_str(" AND seq < ?");
                args.push(SqlValue::Integer(i64::try_from(before).unwrap_or(i64::MAX)));
            }
            if let Some(roles) = &query.roles {
                if roles.is_empty() {
                    return Ok(HistoryPage::default());
                }
                sql.push_str(" AND role IN (");
                sql.push_str(&vec!["?"; roles.len()].join(", "));
                sql.push(')');
                args.extend(roles.iter().map(|r| SqlValue::Text(r.clone())));
            }
            // One more than asked tells whether older messages remain.
            sql.push_str(" ORDER BY seq DESC LIMIT ?");
            args.push(SqlValue::Integer(limit + 1));
            let mut messages = {
                let mut stmt = tx.prepare_cached(&sql)?;
                let rows = stmt.query_map(params_from_iter(args), |r| {
                    Ok(HistoryMessage {
                        seq: col_count(r, 0)?,
                        role: r.get(1)?,
                        content: r.get(2)?,
                        timestamp: col_time(r, 3)?,
                    })
                })?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            let has_more = messages.len() as i64 > limit;
            messages.truncate(limit as usize);
            messages.reverse();
            Ok(HistoryPage { messages, has_more })
        })
        .await
    }

    /// Up to `limit` (clamped to 1..=1000) conversations, most recently
    /// active first.
    pub async fn list_conversations(
        &self,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let limit = clamp_limit(limit);
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT c.id, c.title, c.created_at, c.last_active,
                        (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)
                 FROM conversations c
                 ORDER BY c.last_active DESC, c.rowid DESC
                 LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit], |r| {
                    Ok(ConversationSummary {
                        id: r.get(0)?,
                        title: r.get(1)?,
                        created_at: col_time(r, 2)?,
                        last_active: col_time(r, 3)?,
                        message_count: col_count(r, 4)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// The conversation with all its messages, or `NotFound`.
    pub async fn get_conversation(&self, id: &str) -> Result<Conversation, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| load_conversation(conn, &id))
            .await
    }

    /// Appends `messages` in order, in one transaction, and returns the whole
    /// conversation. Every message gets the same timestamp, which also becomes
    /// `last_active`. If the title is empty it is taken from the first user
    /// message (first 60 characters, whitespace collapsed). Any message with a
    /// role outside [`MESSAGE_ROLES`] makes the whole call `Invalid` and
    /// nothing is stored. An empty `messages` changes nothing.
    pub async fn append_messages(
        &self,
        id: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Conversation, StoreError> {
        for (n, m) in messages.iter().enumerate() {
            validate_role(&m.role)
                .map_err(|e| StoreError::Invalid(format!("message {n}: {}", inner_msg(e))))?;
        }
        let id = id.to_owned();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let title: String = tx
                .query_row(
                    "SELECT title FROM conversations WHERE id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| StoreError::not_found("conversation", id.as_str()))?;
            if messages.is_empty() {
                return load_conversation(&tx, &id);
            }
            let next: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM messages WHERE conversation_id = ?1",
                [&id],
                |r| r.get(0),
            )?;
            let ts = fmt_time(now());
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO messages (conversation_id, seq, role, content, timestamp)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (seq, m) in (next..).zip(messages.iter()) {
                    insert.execute(params![id, seq, m.role, m.content, ts])?;
                }
            }
            let title = if title.trim().is_empty() {
                title_from_first_user_message(&tx, "messages", "conversation_id", &id)?
                    .unwrap_or(title)
            } else {
                title
            };
            tx.execute(
                "UPDATE conversations SET last_active = ?1, title = ?2 WHERE id = ?3",
                params![ts, title, id],
            )?;
            let conv = load_conversation(&tx, &id)?;
            tx.commit()?;
            Ok(conv)
        })
        .await
    }

    /// How many conversations exist.
    pub async fn count_conversations(&self) -> Result<u64, StoreError> {
        self.with_conn(|conn| {
            Ok(
                conn.query_row("SELECT COUNT(*) FROM conversations", [], |r| {
                    col_count(r, 0)
                })?,
            )
        })
        .await
    }
}

fn inner_msg(e: StoreError) -> String {
    match e {
        StoreError::Invalid(m) => m,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn store() -> Store {
        Store::open_in_memory().await.unwrap()
    }

    #[test]
    fn titles() {
        assert_eq!(title_from("  hello\n\n world  "), "hello world");
        assert_eq!(title_from(""), "");
        assert_eq!(title_from(" \n\t"), "");
        let long = "é".repeat(100);
        assert_eq!(title_from(&long).chars().count(), 60);
        let words = "word ".repeat(50);
        let t = title_from(&words);
        assert_eq!(t.chars().count(), 60);
        assert!(t.starts_with("word word"));
    }

    #[test]
    fn roles() {
        for r in MESSAGE_ROLES {
            validate_role(r).unwrap();
        }
        assert!(matches!(validate_role(""), Err(StoreError::Invalid(_))));
        assert!(matches!(validate_role("User"), Err(StoreError::Invalid(_))));
        assert!(matches!(validate_role("bot"), Err(StoreError::Invalid(_))));
    }

    #[tokio::test]
    async fn create_and_get() {
        let s = store().await;
        let c = s
            .create_conversation(Some(" Hello ".into()), json!({"k": 1}))
            .await
            .unwrap();
        assert!(c.id.starts_with("conv_"));
        assert_eq!(c.title, "Hello");
        assert_eq!(c.created_at, c.last_active);
        assert!(c.messages.is_empty());
        assert_eq!(s.get_conversation(&c.id).await.unwrap(), c);

        let d = s
            .create_conversation(None, serde_json::Value::Null)
            .await
            .unwrap();
        assert_eq!(d.title, "");
        assert_eq!(d.metadata, json!({}));
        assert_eq!(s.count_conversations().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn get_missing_is_not_found() {
        let s = store().await;
        let err = s.get_conversation("conv_nope").await.unwrap_err();
        assert_eq!(err, StoreError::not_found("conversation", "conv_nope"));
        let err = s
            .append_messages("conv_nope", vec![NewMessage::new("user", "hi")])
            .await
            .unwrap_err();
        assert_eq!(err, StoreError::not_found("conversation", "conv_nope"));
        let err = s.append_messages("conv_nope", vec![]).await.unwrap_err();
        assert!(err.is_not_found());
    }

    #[tokio::test]
    async fn append_keeps_order_sets_title_and_last_active() {
        let s = store().await;
        let c = s.create_conversation(None, json!({})).await.unwrap();
        let long = format!("  Please   fix\nthe build {}", "x".repeat(200));
        let after = s
            .append_messages(
                &c.id,
                vec![
                    NewMessage::new("system", "be nice"),
                    NewMessage::new("user", long.clone()),
                    NewMessage::new("assistant", "ok"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(after.messages.len(), 3);
        assert_eq!(after.messages[0].role, "system");
        assert_eq!(after.messages[1].content, long);
        assert_eq!(after.messages[2].content, "ok");
        assert_eq!(after.title.chars().count(), 60);
        assert!(after.title.starts_with("Please fix the build xxx"));
        assert!(after.last_active >= c.last_active);
        assert_eq!(after.last_active, after.messages[0].timestamp);

        // The title, once set, stays.
        let again = s
            .append_messages(&c.id, vec![NewMessage::new("user", "something else")])
            .await
            .unwrap();
        assert_eq!(again.title, after.title);
        assert_eq!(again.messages.len(), 4);
        assert_eq!(again.messages[..3], after.messages[..]);
        assert_eq!(s.get_conversation(&c.id).await.unwrap(), again);
    }

    #[tokio::test]
    async fn explicit_title_is_not_replaced() {
        let s = store().await;
        let c = s
            .create_conversation(Some("Mine".into()), json!({}))
            .await
            .unwrap();
        let c = s
            .append_messages(&c.id, vec![NewMessage::new("user", "hello")])
            .await
            .unwrap();
        assert_eq!(c.title, "Mine");
    }

    #[tokio::test]
    async fn title_waits_for_a_user_message_with_text() {
        let s = store().await;
        let c = s.create_conversation(None, json!({})).await.unwrap();
        let c = s
            .append_messages(
                &c.id,
                vec![
                    NewMessage::new("assistant", "hi"),
                    NewMessage::new("user", "   "),
                ],
            )
            .await
            .unwrap();
        assert_eq!(c.title, "");
        let c = s
            .append_messages(&c.id, vec![NewMessage::new("user", "real question")])
            .await
            .unwrap();
        assert_eq!(c.title, "real question");
    }

    #[tokio::test]
    async fn invalid_role_stores_nothing() {
        let s = store().await;
        let c = s.create_conversation(None, json!({})).await.unwrap();
        for bad in ["", "robot", "USER"] {
            let err = s
                .append_messages(
                    &c.id,
                    vec![NewMessage::new("user", "ok"), NewMessage::new(bad, "x")],
                )
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::Invalid(ref m) if m.starts_with("message 1")),
                "{err:?}"
            );
        }
        let got = s.get_conversation(&c.id).await.unwrap();
        assert!(got.messages.is_empty());
        assert_eq!(got.last_active, c.last_active);
        assert_eq!(got.title, "");
    }

    #[tokio::test]
    async fn empty_append_changes_nothing() {
        let s = store().await;
        let c = s.create_conversation(None, json!({})).await.unwrap();
        let same = s.append_messages(&c.id, vec![]).await.unwrap();
        assert_eq!(same, c);
    }

    #[tokio::test]
    async fn odd_content_round_trips() {
        let s = store().await;
        let c = s.create_conversation(None, json!({})).await.unwrap();
        let big = "🐧".repeat(300_000);
        let nul = "a\0b'; DROP TABLE messages; --".to_string();
        let c2 = s
            .append_messages(
                &c.id,
                vec![
                    NewMessage::new("tool", big.clone()),
                    NewMessage::new("assistant", ""),
                    NewMessage::new("user", nul.clone()),
                ],
            )
            .await
            .unwrap();
        let got = s.get_conversation(&c.id).await.unwrap();
        assert_eq!(got, c2);
        assert_eq!(got.messages[0].content, big);
        assert_eq!(got.messages[1].content, "");
        assert_eq!(got.messages[2].content, nul);
    }

    #[tokio::test]
    async fn list_orders_by_last_active_and_counts() {
        let s = store().await;
        let a = s
            .create_conversation(Some("a".into()), json!({}))
            .await
            .unwrap();
        let b = s
            .create_conversation(Some("b".into()), json!({}))
            .await
            .unwrap();
        let c = s
            .create_conversation(Some("c".into()), json!({}))
            .await
            .unwrap();
        let ids = |v: Vec<ConversationSummary>| v.into_iter().map(|x| x.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.list_conversations(10).await.unwrap()),
            [c.id.as_str(), b.id.as_str(), a.id.as_str()]
        );

        s.append_messages(
            &a.id,
            vec![
                NewMessage::new("user", "1"),
                NewMessage::new("assistant", "2"),
            ],
        )
        .await
        .unwrap();
        let list = s.list_conversations(10).await.unwrap();
        assert_eq!(list[0].id, a.id);
        assert_eq!(list[0].message_count, 2);
        assert_eq!(list[1].message_count, 0);
        assert_eq!(ids(list), [a.id.as_str(), c.id.as_str(), b.id.as_str()]);

        // Limits are clamped to at least one.
        assert_eq!(s.list_conversations(0).await.unwrap().len(), 1);
        assert_eq!(s.list_conversations(2).await.unwrap().len(), 2);
        assert_eq!(s.list_conversations(usize::MAX).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_chosen_id_is_created_once() {
        let s = store().await;
        let c = s
            .create_conversation_with_id("test-1764650000", Some(" Mine ".into()), json!(null))
            .await
            .unwrap();
        assert_eq!(c.id, "test-1764650000");
        assert_eq!(c.title, "Mine");
        assert_eq!(c.metadata, json!({}));
        assert_eq!(s.get_conversation("test-1764650000").await.unwrap(), c);
        let err = s
            .create_conversation_with_id("test-1764650000", None, json!({}))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::Conflict {
                what: "conversation",
                id: "test-1764650000".into()
            }
        );
        let err = s
            .create_conversation_with_id("", None, json!({}))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        // The existing one is untouched.
        assert_eq!(s.get_conversation("test-1764650000").await.unwrap(), c);
    }

    #[tokio::test]
    async fn open_creates_on_first_use_and_continues_after() {
        let s = store().await;
        let (c, created) = s.open_conversation("client-chosen").await.unwrap();
        assert!(created);
        assert_eq!(c.id, "client-chosen");
        assert!(c.messages.is_empty());
        s.append_messages("client-chosen", vec![NewMessage::new("user", "hi")])
            .await
            .unwrap();
        let (again, created) = s.open_conversation("client-chosen").await.unwrap();
        assert!(!created);
        assert_eq!(again.messages.len(), 1);
        assert_eq!(again.title, "hi");
        assert!(matches!(
            s.open_conversation("").await.unwrap_err(),
            StoreError::Invalid(_)
        ));
    }

    #[tokio::test]
    async fn racing_first_uses_share_one_conversation_and_lose_nothing() {
        let s = store().await;
        let mut handles = Vec::new();
        for n in 0..16 {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                let (_, created) = s.open_conversation("raced").await?;
                s.append_messages("raced", vec![NewMessage::new("user", format!("m{n}"))])
                    .await?;
                Ok::<_, StoreError>(created)
            }));
        }
        let mut creators = 0;
        for h in handles {
            creators += usize::from(h.await.unwrap().unwrap());
        }
        assert_eq!(creators, 1);
        let got = s.get_conversation("raced").await.unwrap();
        let mut contents: Vec<_> = got.messages.iter().map(|m| m.content.clone()).collect();
        contents.sort();
        let mut want: Vec<_> = (0..16).map(|n| format!("m{n}")).collect();
        want.sort();
        assert_eq!(contents, want);
        assert_eq!(s.count_conversations().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn history_pages_back_through_the_filtered_messages() {
        let s = store().await;
        let c = s.create_conversation(None, json!({})).await.unwrap();
        let roles = ["system", "user", "assistant", "tool"];
        let msgs: Vec<_> = (0..23)
            .map(|n| NewMessage::new(roles[n % 4], format!("m{n}")))
            .collect();
        s.append_messages(&c.id, msgs).await.unwrap();

        // Everything, newest page first, each page oldest first.
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = s
                .conversation_history(
                    &c.id,
                    HistoryQuery {
                        roles: None,
                        before,
                        limit: 5,
                    },
                )
                .await
                .unwrap();
            assert!(page.messages.len() <= 5);
            assert!(page.messages.windows(2).all(|w| w[0].seq < w[1].seq));
            let mut contents: Vec<_> = page.messages.iter().map(|m| m.content.clone()).collect();
            contents.extend(seen);
            seen = contents;
            if !page.has_more {
                break;
            }
            before = Some(page.messages[0].seq);
        }
        let want: Vec<_> = (0..23).map(|n| format!("m{n}")).collect();
        assert_eq!(seen, want);

        // A role filter applies before the limit.
        let page = s
            .conversation_history(
                &c.id,
                HistoryQuery {
                    roles: Some(vec!["user".into(), "assistant".into()]),
                    before: None,
                    limit: 3,
                },
            )
            .await
            .unwrap();
        let got: Vec<_> = page.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(got, ["m18", "m21", "m22"]);
        assert!(page.has_more);
        assert!(page.messages.iter().all(|m| m.role != "system"));

        // An exact fit has nothing more; an empty role set matches nothing.
        let page = s
            .conversation_history(
                &c.id,
                HistoryQuery {
                    roles: None,
                    before: None,
                    limit: 23,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.messages.len(), 23);
        assert!(!page.has_more);
        assert_eq!(page.messages[0].seq, 0);
        let page = s
            .conversation_history(
                &c.id,
                HistoryQuery {
                    roles: Some(vec![]),
                    before: None,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(page, HistoryPage::default());
        let page = s
            .conversation_history(
                &c.id,
                HistoryQuery {
                    roles: None,
                    before: Some(0),
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert!(page.messages.is_empty() && !page.has_more);

        let err = s
            .conversation_history("conv_nope", HistoryQuery::default())
            .await
            .unwrap_err();
        assert!(err.is_not_found());
    }

    #[tokio::test]
    async fn list_caps_at_max_limit() {
        let s = store().await;
        s.with_conn(|conn| {
            let tx = conn.transaction()?;
            for _ in 0..1005 {
                insert_conversation(&tx, String::new(), json!({}))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(s.count_conversations().await.unwrap(), 1005);
        assert_eq!(s.list_conversations(5000).await.unwrap().len(), 1000);
    }
}
