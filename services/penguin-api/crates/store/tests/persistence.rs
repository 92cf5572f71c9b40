//! End-to-end tests against a real database file: everything written is
//! found again after the store is dropped and re-opened from the same
//! directory, and concurrent use loses nothing.

use std::collections::HashSet;

use penguin_api_store::{
    DeliveryState, NewDelivery, NewMessage, NewTask, Store, StoreError, TaskState, DB_FILE_NAME,
    INTERRUPTED_LOG_LINE, SCHEMA_VERSION,
};
use serde_json::json;

fn delivery(id: &str, payload: &[u8]) -> NewDelivery {
    NewDelivery {
        delivery_id: id.into(),
        event: "issue_comment".into(),
        action: Some("created".into()),
        repository: Some("octo/repo".into()),
        payload: payload.to_vec(),
    }
}

fn task(name: &str) -> NewTask {
    NewTask {
        name: name.into(),
        description: format!("do {name}"),
        metadata: json!({"repo": "octo/repo"}),
    }
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    // --- first life ---
    let store = Store::open(&dir).await.unwrap();
    let conv = store
        .create_conversation(None, json!({"source": "test"}))
        .await
        .unwrap();
    let conv = store
        .append_messages(
            &conv.id,
            vec![
                NewMessage::new("system", "You are Penguin."),
                NewMessage::new("user", "Fix the flaky test in crate foo"),
                NewMessage::new("assistant", "On it."),
            ],
        )
        .await
        .unwrap();
    let cp = store
        .create_checkpoint(&conv.id, Some("start".into()), Some("first three".into()))
        .await
        .unwrap();
    let conv = store
        .append_messages(&conv.id, vec![NewMessage::new("tool", "{\"exit\":0}")])
        .await
        .unwrap();
    let other = store
        .create_conversation(Some("Other".into()), json!({}))
        .await
        .unwrap();

    let done = store.create_task(task("done")).await.unwrap();
    store
        .set_task_state(&done.id, TaskState::Running)
        .await
        .unwrap();
    store.append_task_log(&done.id, "working").await.unwrap();
    store
        .finish_task(&done.id, TaskState::Completed, json!({"pr": 7}))
        .await
        .unwrap();
    let running = store.create_task(task("running")).await.unwrap();
    store
        .set_task_state(&running.id, TaskState::Running)
        .await
        .unwrap();
    store.append_task_log(&running.id, "halfway").await.unwrap();
    let queued = store.create_task(task("queued")).await.unwrap();

    store.set_setting("model", "penguin-large").await.unwrap();

    store
        .insert_delivery(delivery("g-queued", b"{\"a\":1}"))
        .await
        .unwrap();
    store
        .insert_delivery(delivery("g-processing", b"{\"b\":2}"))
        .await
        .unwrap();
    store
        .insert_delivery(delivery("g-done", b"{\"c\":3}"))
        .await
        .unwrap();
    store
        .set_delivery_state("g-processing", DeliveryState::Processing, None)
        .await
        .unwrap();
    store
        .set_delivery_state("g-done", DeliveryState::Done, Some("replied".into()))
        .await
        .unwrap();
    assert!(store.claim_comment(1001, "g-done").await.unwrap());

    let conv_before = store.get_conversation(&conv.id).await.unwrap();
    let other_before = store.get_conversation(&other.id).await.unwrap();
    let done_before = store.get_task(&done.id).await.unwrap();
    let running_before = store.get_task(&running.id).await.unwrap();
    let g_done_before = store.get_delivery("g-done").await.unwrap();
    let summaries_before = store.list_conversations(100).await.unwrap();
    let checkpoints_before = store.list_checkpoints(None, 100).await.unwrap();
    drop(store);

    // --- second life ---
    let store = Store::open(&dir).await.unwrap();
    assert_eq!(store.get_conversation(&conv.id).await.unwrap(), conv_before);
    assert_eq!(conv_before, conv);
    assert_eq!(conv_before.title, "Fix the flaky test in crate foo");
    assert_eq!(
        store.get_conversation(&other.id).await.unwrap(),
        other_before
    );
    assert_eq!(store.count_conversations().await.unwrap(), 2);
    assert_eq!(
        store.list_conversations(100).await.unwrap(),
        summaries_before
    );
    assert_eq!(
        store.list_checkpoints(None, 100).await.unwrap(),
        checkpoints_before
    );
    assert_eq!(checkpoints_before, std::slice::from_ref(&cp));
    assert_eq!(
        store.get_setting("model").await.unwrap().as_deref(),
        Some("penguin-large")
    );
    assert_eq!(store.get_task(&done.id).await.unwrap(), done_before);
    assert_eq!(store.get_task(&running.id).await.unwrap(), running_before);
    assert_eq!(store.get_delivery("g-done").await.unwrap(), g_done_before);

    // Start-up recovery: unfinished tasks are interrupted, cut-off deliveries
    // are pending again, and dedupe state is intact.
    let interrupted = store.mark_interrupted_tasks().await.unwrap();
    assert_eq!(interrupted, [running.id.clone(), queued.id.clone()]);
    let r = store.get_task(&running.id).await.unwrap();
    assert_eq!(r.state, TaskState::Interrupted);
    assert!(r.finished_at.is_some());
    assert_eq!(r.started_at, running_before.started_at);
    let log: Vec<_> = r.log.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(log, ["halfway", INTERRUPTED_LOG_LINE]);
    assert_eq!(store.get_task(&done.id).await.unwrap(), done_before);

    let pending: Vec<_> = store
        .pending_deliveries(100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.delivery_id, d.state, d.payload))
        .collect();
    assert_eq!(
        pending,
        [
            (
                "g-queued".to_string(),
                DeliveryState::Queued,
                b"{\"a\":1}".to_vec()
            ),
            (
                "g-processing".to_string(),
                DeliveryState::Processing,
                b"{\"b\":2}".to_vec()
            ),
        ]
    );
    assert!(matches!(
        store.insert_delivery(delivery("g-done", b"again")).await,
        Err(StoreError::Conflict {
            what: "delivery",
            ..
        })
    ));
    assert!(!store.claim_comment(1001, "g-queued").await.unwrap());
    assert!(store.claim_comment(1001, "g-done").await.unwrap());

    // Checkpoints still work after the restart.
    let rolled = store.rollback_checkpoint(&cp.checkpoint_id).await.unwrap();
    assert_eq!(rolled.messages.len(), 3);
    assert_eq!(rolled.messages[..], conv_before.messages[..3]);
    let branch = store
        .branch_checkpoint(&cp.checkpoint_id, Some("alt".into()))
        .await
        .unwrap();
    assert_eq!(branch.messages, rolled.messages);
    assert_eq!(
        branch.metadata,
        json!({"branched_from": cp.checkpoint_id, "source_conversation": conv.id})
    );
    drop(store);

    // --- third life: the recovery itself was durable ---
    let store = Store::open(&dir).await.unwrap();
    assert!(store.mark_interrupted_tasks().await.unwrap().is_empty());
    assert_eq!(
        store.get_task(&queued.id).await.unwrap().state,
        TaskState::Interrupted
    );
    assert_eq!(
        store
            .get_conversation(&conv.id)
            .await
            .unwrap()
            .messages
            .len(),
        3
    );
    assert_eq!(store.get_conversation(&branch.id).await.unwrap(), branch);
    assert_eq!(store.count_conversations().await.unwrap(), 3);
}

#[tokio::test]
async fn reopening_does_not_remigrate() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Store::open(tmp.path()).await.unwrap();
    first.set_setting("k", "v").await.unwrap();
    drop(first);
    for _ in 0..3 {
        let again = Store::open(tmp.path()).await.unwrap();
        again.ping().await.unwrap();
        assert_eq!(again.get_setting("k").await.unwrap().as_deref(), Some("v"));
    }
    // Two handles on the same file at once are fine too.
    let a = Store::open(tmp.path()).await.unwrap();
    let b = Store::open(tmp.path()).await.unwrap();
    a.set_setting("k", "a").await.unwrap();
    assert_eq!(b.get_setting("k").await.unwrap().as_deref(), Some("a"));
    drop((a, b));

    let conn = rusqlite::Connection::open(tmp.path().join(DB_FILE_NAME)).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, i64::from(SCHEMA_VERSION));
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn refuses_a_database_from_a_newer_build() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Store::open(tmp.path()).await.unwrap());
    let conn = rusqlite::Connection::open(tmp.path().join(DB_FILE_NAME)).unwrap();
    conn.pragma_update(None, "user_version", i64::from(SCHEMA_VERSION) + 1)
        .unwrap();
    drop(conn);
    let err = Store::open(tmp.path()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Db(ref m) if m.contains("newer")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_lose_nothing() {
    const WRITERS: usize = 32;
    const BATCHES: usize = 10;
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).await.unwrap();
    // A second handle on the same file competes for the write lock too.
    let second = Store::open(tmp.path()).await.unwrap();
    let conv = store.create_conversation(None, json!({})).await.unwrap();

    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let s = if w % 4 == 0 {
            second.clone()
        } else {
            store.clone()
        };
        let id = conv.id.clone();
        handles.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                s.append_messages(
                    &id,
                    vec![
                        NewMessage::new("user", format!("w{w} b{b} q")),
                        NewMessage::new("assistant", format!("w{w} b{b} a")),
                    ],
                )
                .await
                .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }

    let got = store.get_conversation(&conv.id).await.unwrap();
    assert_eq!(got.messages.len(), WRITERS * BATCHES * 2);
    let unique: HashSet<_> = got.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(unique.len(), WRITERS * BATCHES * 2);
    // Each batch stays contiguous and in order, and each writer's batches
    // appear in the order it wrote them.
    for pair in got.messages.chunks(2) {
        let q = pair[0].content.strip_suffix(" q").unwrap();
        assert_eq!(pair[1].content, format!("{q} a"));
        assert_eq!(pair[0].role, "user");
        assert_eq!(pair[1].role, "assistant");
    }
    for w in 0..WRITERS {
        let prefix = format!("w{w} ");
        let mine: Vec<_> = got
            .messages
            .iter()
            .filter(|m| m.content.starts_with(&prefix) && m.role == "user")
            .map(|m| m.content.clone())
            .collect();
        let expected: Vec<_> = (0..BATCHES).map(|b| format!("w{w} b{b} q")).collect();
        assert_eq!(mine, expected);
    }
    assert!(got
        .messages
        .windows(2)
        .all(|w| w[0].timestamp <= w[1].timestamp));
    let summary = &store.list_conversations(1).await.unwrap()[0];
    assert_eq!(summary.message_count, (WRITERS * BATCHES * 2) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_delivery_dedupe_has_one_winner() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).await.unwrap();
    for i in 0..16 {
        store
            .insert_delivery(delivery(&format!("g{i}"), b"{}"))
            .await
            .unwrap();
    }
    // The same GUID delivered 16 times at once: exactly one insert wins.
    let mut inserts = Vec::new();
    for _ in 0..16 {
        let s = store.clone();
        inserts.push(tokio::spawn(async move {
            s.insert_delivery(delivery("dup", b"{}")).await
        }));
    }
    let mut ok = 0;
    for h in inserts {
        match h.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert!(e.is_conflict(), "{e:?}"),
        }
    }
    assert_eq!(ok, 1);

    // The same comment claimed by 16 deliveries at once: exactly one wins.
    let mut claims = Vec::new();
    for i in 0..16 {
        let s = store.clone();
        claims.push(tokio::spawn(async move {
            s.claim_comment(777, &format!("g{i}")).await.unwrap()
        }));
    }
    let mut winners = 0;
    for h in claims {
        if h.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn not_found_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).await.unwrap();
    let nf = |what: &'static str, id: &str| StoreError::NotFound {
        what,
        id: id.to_string(),
    };
    assert_eq!(
        store.get_conversation("c").await.unwrap_err(),
        nf("conversation", "c")
    );
    assert_eq!(
        store
            .append_messages("c", vec![NewMessage::new("user", "x")])
            .await
            .unwrap_err(),
        nf("conversation", "c")
    );
    assert_eq!(
        store.create_checkpoint("c", None, None).await.unwrap_err(),
        nf("conversation", "c")
    );
    assert_eq!(
        store.rollback_checkpoint("p").await.unwrap_err(),
        nf("checkpoint", "p")
    );
    assert_eq!(
        store.branch_checkpoint("p", None).await.unwrap_err(),
        nf("checkpoint", "p")
    );
    assert_eq!(store.get_task("t").await.unwrap_err(), nf("task", "t"));
    assert_eq!(
        store
            .set_task_state("t", TaskState::Running)
            .await
            .unwrap_err(),
        nf("task", "t")
    );
    assert_eq!(
        store.append_task_log("t", "x").await.unwrap_err(),
        nf("task", "t")
    );
    assert_eq!(
        store
            .finish_task("t", TaskState::Failed, json!({}))
            .await
            .unwrap_err(),
        nf("task", "t")
    );
    assert_eq!(
        store.get_delivery("d").await.unwrap_err(),
        nf("delivery", "d")
    );
    assert_eq!(
        store
            .set_delivery_state("d", DeliveryState::Done, None)
            .await
            .unwrap_err(),
        nf("delivery", "d")
    );
    assert_eq!(
        store.claim_comment(1, "d").await.unwrap_err(),
        nf("delivery", "d")
    );
    assert_eq!(store.get_setting("missing").await.unwrap(), None);
}

#[tokio::test]
async fn ordering_across_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).await.unwrap();
    let mut convs = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..5 {
        convs.push(
            store
                .create_conversation(Some(format!("c{i}")), json!({}))
                .await
                .unwrap()
                .id,
        );
        tasks.push(store.create_task(task(&format!("t{i}"))).await.unwrap().id);
        store
            .insert_delivery(delivery(&format!("d{i}"), b"{}"))
            .await
            .unwrap();
    }
    // Touch c1 so it becomes the most recently active.
    store
        .append_messages(&convs[1], vec![NewMessage::new("user", "bump")])
        .await
        .unwrap();
    let listed: Vec<_> = store
        .list_conversations(10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let expected = vec![
        convs[1].clone(),
        convs[4].clone(),
        convs[3].clone(),
        convs[2].clone(),
        convs[0].clone(),
    ];
    assert_eq!(listed, expected);

    let listed: Vec<_> = store
        .list_tasks(3)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        listed,
        [tasks[4].clone(), tasks[3].clone(), tasks[2].clone()]
    );

    let pending: Vec<_> = store
        .pending_deliveries(3)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.delivery_id)
        .collect();
    assert_eq!(pending, ["d0", "d1", "d2"]);
}
