//! Checkpoints: snapshots of a conversation's messages that can be rolled
//! back to or branched into a new conversation.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::json;

use crate::{
    conversations::{insert_conversation, load_conversation, title_from_first_user_message},
    util::{clamp_limit, col_count, col_time, fmt_time, new_id, now},
    Checkpoint, Conversation, Store, StoreError,
};

const CHECKPOINT_COLUMNS: &str =
    "id, conversation_id, name, description, created_at, message_count";

fn row_to_checkpoint(r: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        checkpoint_id: r.get(0)?,
        conversation_id: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        created_at: col_time(r, 4)?,
        message_count: col_count(r, 5)?,
    })
}

fn load_checkpoint(conn: &Connection, id: &str) -> Result<Checkpoint, StoreError> {
    conn.query_row(
        &format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE id = ?1"),
        [id],
        row_to_checkpoint,
    )
    .optional()?
    .ok_or_else(|| StoreError::not_found("checkpoint", id))
}

fn conversation_exists(conn: &Connection, id: &str) -> Result<(), StoreError> {
    let found = conn
        .query_row(
            "SELECT 1 FROM conversations WHERE id = ?1",
            [id],
            |_| Ok(()),
        )
        .optional()?;
    found.ok_or_else(|| StoreError::not_found("conversation", id))
}

/// Copies a checkpoint's messages into a conversation (which must have none).
fn copy_snapshot(
    conn: &Connection,
    checkpoint_id: &str,
    conversation_id: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO messages (conversation_id, seq, role, content, timestamp)
         SELECT ?1, seq, role, content, timestamp FROM checkpoint_messages
         WHERE checkpoint_id = ?2 ORDER BY seq",
        params![conversation_id, checkpoint_id],
    )?;
    Ok(())
}

fn non_blank(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl Store {
    /// Snapshots the conversation's current messages. A `None` or blank name
    /// becomes `checkpoint-<n>`, n being this conversation's checkpoint count
    /// including the new one; a `None` description is empty. `NotFound` if the
    /// conversation does not exist.
    pub async fn create_checkpoint(
        &self,
        conversation_id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<Checkpoint, StoreError> {
        let conversation_id = conversation_id.to_owned();
        let name = non_blank(name);
        let description = description.unwrap_or_default();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            conversation_exists(&tx, &conversation_id)?;
            let existing: u64 = tx.query_row(
                "SELECT COUNT(*) FROM checkpoints WHERE conversation_id = ?1",
                [&conversation_id],
                |r| col_count(r, 0),
            )?;
            let message_count: u64 = tx.query_row(
                "SELECT COUNT(*) FROM messages WHERE conversation_id = ?1",
                [&conversation_id],
                |r| col_count(r, 0),
            )?;
            let cp = Checkpoint {
                checkpoint_id: new_id("cp_"),
                conversation_id,
                name: name.unwrap_or_else(|| format!("checkpoint-{}", existing + 1)),
                description,
                created_at: now(),
                message_count,
            };
            tx.execute(
                "INSERT INTO checkpoints (id, conversation_id, name, description, created_at, message_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    cp.checkpoint_id,
                    cp.conversation_id,
                    cp.name,
                    cp.description,
                    fmt_time(cp.created_at),
                    i64::try_from(cp.message_count).unwrap_or(i64::MAX),
                ],
            )?;
            tx.execute(
                "INSERT INTO checkpoint_messages (checkpoint_id, seq, role, content, timestamp)
                 SELECT ?1, seq, role, content, timestamp FROM messages
                 WHERE conversation_id = ?2 ORDER BY seq",
                params![cp.checkpoint_id, cp.conversation_id],
            )?;
            tx.commit()?;
            Ok(cp)
        })
        .await
    }

    /// Up to `limit` (clamped to 1..=1000) checkpoints, newest first, of one
    /// conversation (`NotFound` if it does not exist) or of all.
    pub async fn list_checkpoints(
        &self,
        conversation_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        let conversation_id = conversation_id.map(str::to_owned);
        let limit = clamp_limit(limit);
        self.with_conn(move |conn| {
            let list = match conversation_id {
                Some(cid) => {
                    conversation_exists(conn, &cid)?;
                    let mut stmt = conn.prepare_cached(&format!(
                        "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE conversation_id = ?1
                         ORDER BY created_at DESC, rowid DESC LIMIT ?2"
                    ))?;
                    let rows = stmt
                        .query_map(params![cid, limit], row_to_checkpoint)?
                        .collect::<Result<_, _>>()?;
                    rows
                }
                None => {
                    let mut stmt = conn.prepare_cached(&format!(
                        "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints
                         ORDER BY created_at DESC, rowid DESC LIMIT ?1"
                    ))?;
                    let rows = stmt
                        .query_map([limit], row_to_checkpoint)?
                        .collect::<Result<_, _>>()?;
                    rows
                }
            };
            Ok(list)
        })
        .await
    }

    /// Replaces the conversation's messages with the checkpoint's snapshot (in
    /// one transaction) and returns the conversation. The restored messages
    /// keep their original timestamps; `last_active` becomes now; the title
    /// and the conversation's other checkpoints are kept.
    pub async fn rollback_checkpoint(
        &self,
        checkpoint_id: &str,
    ) -> Result<Conversation, StoreError> {
        let checkpoint_id = checkpoint_id.to_owned();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let cp = load_checkpoint(&tx, &checkpoint_id)?;
            tx.execute(
                "DELETE FROM messages WHERE conversation_id = ?1",
                [&cp.conversation_id],
            )?;
            copy_snapshot(&tx, &cp.checkpoint_id, &cp.conversation_id)?;
            tx.execute(
                "UPDATE conversations SET last_active = ?1 WHERE id = ?2",
                params![fmt_time(now()), cp.conversation_id],
            )?;
            let conv = load_conversation(&tx, &cp.conversation_id)?;
            tx.commit()?;
            Ok(conv)
        })
        .await
    }

    /// Creates a new conversation holding a copy of the checkpoint's snapshot
    /// (original timestamps kept), with metadata
    /// `{"branched_from": checkpoint_id, "source_conversation": id}`. Its
    /// title is `name` if given and not blank, else the source title plus
    /// `" (branch)"`, else derived from the first user message (else empty).
    pub async fn branch_checkpoint(
        &self,
        checkpoint_id: &str,
        name: Option<String>,
    ) -> Result<Conversation, StoreError> {
        let checkpoint_id = checkpoint_id.to_owned();
        let name = non_blank(name);
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let cp = load_checkpoint(&tx, &checkpoint_id)?;
            let source_title: String = tx
                .query_row(
                    "SELECT title FROM conversations WHERE id = ?1",
                    [&cp.conversation_id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| {
                    StoreError::not_found("conversation", cp.conversation_id.as_str())
                })?;
            let title = match name {
                Some(n) => n,
                None if !source_title.trim().is_empty() => {
                    format!("{} (branch)", source_title.trim())
                }
                None => title_from_first_user_message(
                    &tx,
                    "checkpoint_messages",
                    "checkpoint_id",
                    &cp.checkpoint_id,
                )?
                .unwrap_or_default(),
            };
            let metadata = json!({
                "branched_from": cp.checkpoint_id,
                "source_conversation": cp.conversation_id,
            });
            let conv = insert_conversation(&tx, title, metadata)?;
            copy_snapshot(&tx, &cp.checkpoint_id, &conv.id)?;
            let conv = load_conversation(&tx, &conv.id)?;
            tx.commit()?;
            Ok(conv)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewMessage;

    async fn conv_with(s: &Store, title: Option<&str>, msgs: &[(&str, &str)]) -> Conversation {
        let c = s
            .create_conversation(title.map(str::to_owned), json!({}))
            .await
            .unwrap();
        let msgs = msgs.iter().map(|(r, c)| NewMessage::new(*r, *c)).collect();
        s.append_messages(&c.id, msgs).await.unwrap()
    }

    #[tokio::test]
    async fn create_names_and_counts() {
        let s = Store::open_in_memory().await.unwrap();
        let c = conv_with(&s, Some("t"), &[("user", "a"), ("assistant", "b")]).await;
        let cp1 = s.create_checkpoint(&c.id, None, None).await.unwrap();
        assert!(cp1.checkpoint_id.starts_with("cp_"));
        assert_eq!(cp1.conversation_id, c.id);
        assert_eq!(cp1.name, "checkpoint-1");
        assert_eq!(cp1.description, "");
        assert_eq!(cp1.message_count, 2);
        let cp2 = s
            .create_checkpoint(&c.id, Some("before refactor".into()), Some("why".into()))
            .await
            .unwrap();
        assert_eq!(cp2.name, "before refactor");
        assert_eq!(cp2.description, "why");
        let cp3 = s
            .create_checkpoint(&c.id, Some("  ".into()), None)
            .await
            .unwrap();
        assert_eq!(cp3.name, "checkpoint-3");

        // Numbering is per conversation.
        let other = conv_with(&s, None, &[]).await;
        let o1 = s.create_checkpoint(&other.id, None, None).await.unwrap();
        assert_eq!(o1.name, "checkpoint-1");
        assert_eq!(o1.message_count, 0);
    }

    #[tokio::test]
    async fn not_found_cases() {
        let s = Store::open_in_memory().await.unwrap();
        assert_eq!(
            s.create_checkpoint("conv_x", None, None).await.unwrap_err(),
            StoreError::not_found("conversation", "conv_x")
        );
        assert_eq!(
            s.list_checkpoints(Some("conv_x"), 10).await.unwrap_err(),
            StoreError::not_found("conversation", "conv_x")
        );
        assert_eq!(
            s.rollback_checkpoint("cp_x").await.unwrap_err(),
            StoreError::not_found("checkpoint", "cp_x")
        );
        assert_eq!(
            s.branch_checkpoint("cp_x", None).await.unwrap_err(),
            StoreError::not_found("checkpoint", "cp_x")
        );
        assert_eq!(s.count_conversations().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn list_newest_first_and_filtered() {
        let s = Store::open_in_memory().await.unwrap();
        let a = conv_with(&s, None, &[("user", "a")]).await;
        let b = conv_with(&s, None, &[("user", "b")]).await;
        let a1 = s.create_checkpoint(&a.id, None, None).await.unwrap();
        let b1 = s.create_checkpoint(&b.id, None, None).await.unwrap();
        let a2 = s.create_checkpoint(&a.id, None, None).await.unwrap();
        let all = s.list_checkpoints(None, 100).await.unwrap();
        assert_eq!(all, [a2.clone(), b1.clone(), a1.clone()]);
        assert_eq!(
            s.list_checkpoints(Some(&a.id), 100).await.unwrap(),
            [a2.clone(), a1]
        );
        assert_eq!(s.list_checkpoints(Some(&b.id), 100).await.unwrap(), [b1]);
        assert_eq!(s.list_checkpoints(None, 0).await.unwrap(), [a2]);
        let empty = conv_with(&s, None, &[]).await;
        assert!(s
            .list_checkpoints(Some(&empty.id), 10)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn rollback_restores_snapshot() {
        let s = Store::open_in_memory().await.unwrap();
        let c = conv_with(&s, None, &[("user", "one"), ("assistant", "two")]).await;
        let cp = s.create_checkpoint(&c.id, None, None).await.unwrap();
        let grown = s
            .append_messages(
                &c.id,
                vec![
                    NewMessage::new("user", "three"),
                    NewMessage::new("assistant", "four"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(grown.messages.len(), 4);
        let later = s.create_checkpoint(&c.id, None, None).await.unwrap();

        let rolled = s.rollback_checkpoint(&cp.checkpoint_id).await.unwrap();
        assert_eq!(rolled.id, c.id);
        assert_eq!(rolled.messages, c.messages);
        assert_eq!(rolled.title, c.title);
        assert!(rolled.last_active >= grown.last_active);
        assert_eq!(s.get_conversation(&c.id).await.unwrap(), rolled);

        // Appending after a rollback continues the sequence.
        let next = s
            .append_messages(&c.id, vec![NewMessage::new("user", "five")])
            .await
            .unwrap();
        let contents: Vec<_> = next.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["one", "two", "five"]);

        // The later checkpoint still exists and rolls forward again.
        let forward = s.rollback_checkpoint(&later.checkpoint_id).await.unwrap();
        assert_eq!(forward.messages, grown.messages);
        assert_eq!(s.list_checkpoints(Some(&c.id), 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn rollback_to_empty_snapshot() {
        let s = Store::open_in_memory().await.unwrap();
        let c = conv_with(&s, None, &[]).await;
        let cp = s.create_checkpoint(&c.id, None, None).await.unwrap();
        s.append_messages(&c.id, vec![NewMessage::new("user", "x")])
            .await
            .unwrap();
        let rolled = s.rollback_checkpoint(&cp.checkpoint_id).await.unwrap();
        assert!(rolled.messages.is_empty());
    }

    #[tokio::test]
    async fn branch_copies_into_new_conversation() {
        let s = Store::open_in_memory().await.unwrap();
        let c = conv_with(&s, Some("Source"), &[("user", "one"), ("assistant", "two")]).await;
        let cp = s.create_checkpoint(&c.id, None, None).await.unwrap();
        s.append_messages(&c.id, vec![NewMessage::new("user", "three")])
            .await
            .unwrap();

        let b = s.branch_checkpoint(&cp.checkpoint_id, None).await.unwrap();
        assert_ne!(b.id, c.id);
        assert!(b.id.starts_with("conv_"));
        assert_eq!(b.title, "Source (branch)");
        assert_eq!(b.messages, c.messages);
        assert_eq!(
            b.metadata,
            json!({"branched_from": cp.checkpoint_id, "source_conversation": c.id})
        );
        assert_eq!(s.get_conversation(&b.id).await.unwrap(), b);

        // The source is untouched and the branch grows independently.
        assert_eq!(s.get_conversation(&c.id).await.unwrap().messages.len(), 3);
        let b2 = s
            .append_messages(&b.id, vec![NewMessage::new("user", "alt")])
            .await
            .unwrap();
        assert_eq!(b2.messages.len(), 3);
        assert_eq!(b2.messages[2].content, "alt");
        assert_eq!(
            s.get_conversation(&c.id).await.unwrap().messages[2].content,
            "three"
        );

        let named = s
            .branch_checkpoint(&cp.checkpoint_id, Some("Experiment".into()))
            .await
            .unwrap();
        assert_eq!(named.title, "Experiment");
        assert_eq!(s.count_conversations().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn branch_of_untitled_takes_first_user_message() {
        let s = Store::open_in_memory().await.unwrap();
        let c = s.create_conversation(None, json!({})).await.unwrap();
        let cp = s.create_checkpoint(&c.id, None, None).await.unwrap();
        let b = s.branch_checkpoint(&cp.checkpoint_id, None).await.unwrap();
        assert_eq!(b.title, "");
        assert!(b.messages.is_empty());

        // Force an empty title on a conversation that has a user message.
        let c = conv_with(&s, None, &[("user", "how do I X")]).await;
        s.with_conn({
            let id = c.id.clone();
            move |conn| {
                conn.execute("UPDATE conversations SET title = '' WHERE id = ?1", [id])?;
                Ok(())
            }
        })
        .await
        .unwrap();
        let cp = s.create_checkpoint(&c.id, None, None).await.unwrap();
        let b = s.branch_checkpoint(&cp.checkpoint_id, None).await.unwrap();
        assert_eq!(b.title, "how do I X");
    }
}
