//! The records the store reads and writes.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The roles a conversation message may have.
pub const MESSAGE_ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// One stored message of a conversation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Message {
    /// One of [`MESSAGE_ROLES`].
    pub role: String,
    /// The text, of any length.
    pub content: String,
    /// When it was appended.
    pub timestamp: DateTime<Utc>,
}

/// A message to append; the store stamps the time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NewMessage {
    /// One of [`MESSAGE_ROLES`]; anything else is [`StoreError::Invalid`].
    pub role: String,
    /// The text, of any length (may be empty).
    pub content: String,
}

impl NewMessage {
    /// A message with this role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        NewMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A conversation with all its messages, oldest first.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Conversation {
    /// `conv_` followed by a simple v4 UUID.
    pub id: String,
    /// Empty until set explicitly or taken from the first user message.
    pub title: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When messages were last appended or restored.
    pub last_active: DateTime<Utc>,
    /// Free-form metadata (an empty object when none was given).
    pub metadata: serde_json::Value,
    /// The messages in order.
    pub messages: Vec<Message>,
}

/// A conversation without its messages, for listings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConversationSummary {
    /// The conversation id.
    pub id: String,
    /// Its title (possibly empty).
    pub title: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last active.
    pub last_active: DateTime<Utc>,
    /// How many messages it holds.
    pub message_count: u64,
}

/// A snapshot of a conversation's messages.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// `cp_` followed by a simple v4 UUID.
    pub checkpoint_id: String,
    /// The conversation it was taken from.
    pub conversation_id: String,
    /// The given name, or `checkpoint-<n>` (n counting that conversation's
    /// checkpoints from 1).
    pub name: String,
    /// The given description, or empty.
    pub description: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// How many messages the snapshot holds.
    pub message_count: u64,
}

/// The life-cycle state of a task (an agent run).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Created, not started yet.
    Queued,
    /// Being worked on.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped on request.
    Cancelled,
    /// Was queued or running when the process stopped.
    Interrupted,
    /// Ran out of time.
    TimedOut,
}

impl TaskState {
    /// Every state, in declaration order.
    pub const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::Interrupted,
        TaskState::TimedOut,
    ];

    /// The snake_case name, as serialised and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Interrupted => "interrupted",
            TaskState::TimedOut => "timed_out",
        }
    }

    /// True when the task will not run any more (everything but `Queued` and
    /// `Running`).
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskState::Queued | TaskState::Running)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = StoreError;

    /// Parses the [`TaskState::as_str`] form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StoreError::Invalid(format!("unknown task state {s:?}")))
    }
}

/// A task to create.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NewTask {
    /// A short name.
    pub name: String,
    /// What the task is about.
    pub description: String,
    /// Free-form metadata (`null` is stored as an empty object).
    pub metadata: serde_json::Value,
}

/// One line of a task's log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskLogEntry {
    /// When it was written.
    pub timestamp: DateTime<Utc>,
    /// The text.
    pub message: String,
}

/// A stored task.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskRecord {
    /// `task_` followed by a simple v4 UUID.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its current state.
    pub state: TaskState,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it first became `Running`.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its metadata.
    pub metadata: serde_json::Value,
    /// What [`crate::Store::finish_task`] recorded, if it was called.
    pub result: Option<serde_json::Value>,
    /// The log, oldest first (empty in listings).
    pub log: Vec<TaskLogEntry>,
}

/// The processing state of a webhook delivery.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Received and stored, not yet picked up.
    Queued,
    /// Being processed (found in this state at start-up = was cut off).
    Processing,
    /// Processed.
    Done,
    /// Processing failed for good.
    Failed,
    /// Deliberately not processed (duplicate, irrelevant event, …).
    Ignored,
    /// Failed transiently on every allowed attempt; given up.
    Dead,
}

impl DeliveryState {
    /// Every state, in declaration order.
    pub const ALL: [DeliveryState; 6] = [
        DeliveryState::Queued,
        DeliveryState::Processing,
        DeliveryState::Done,
        DeliveryState::Failed,
        DeliveryState::Ignored,
        DeliveryState::Dead,
    ];

    /// The snake_case name, as serialised and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Processing => "processing",
            DeliveryState::Done => "done",
            DeliveryState::Failed => "failed",
            DeliveryState::Ignored => "ignored",
            DeliveryState::Dead => "dead",
        }
    }

    /// True for `Done`, `Failed`, `Ignored` and `Dead`: nothing more will happen.
    pub fn is_terminal(self) -> bool {
        !matches!(self, DeliveryState::Queued | DeliveryState::Processing)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryState {
    type Err = StoreError;

    /// Parses the [`DeliveryState::as_str`] form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StoreError::Invalid(format!("unknown delivery state {s:?}")))
    }
}

/// A webhook delivery to store.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NewDelivery {
    /// The `X-GitHub-Delivery` GUID (must not be empty).
    pub delivery_id: String,
    /// The `X-GitHub-Event` name (must not be empty).
    pub event: String,
    /// The payload's `action`, if any.
    pub action: Option<String>,
    /// The repository's full name, if any.
    pub repository: Option<String>,
    /// The raw request body.
    pub payload: Vec<u8>,
}

/// A stored webhook delivery.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    /// The `X-GitHub-Delivery` GUID.
    pub delivery_id: String,
    /// The event name.
    pub event: String,
    /// The payload's `action`, if any.
    pub action: Option<String>,
    /// The repository's full name, if any.
    pub repository: Option<String>,
    /// The raw request body.
    pub payload: Vec<u8>,
    /// Its processing state.
    pub state: DeliveryState,
    /// When it was stored.
    pub received_at: DateTime<Utc>,
    /// When its state last changed.
    pub updated_at: DateTime<Utc>,
    /// The last note given with a state change.
    pub note: Option<String>,
    /// Attempts that failed transiently so far.
    pub attempts: u32,
    /// When the next attempt is due (after a failed one), if any.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_state_strings_match_serde() {
        for st in TaskState::ALL {
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
            assert_eq!(st.as_str().parse::<TaskState>().unwrap(), st);
            assert_eq!(serde_json::from_str::<TaskState>(&json).unwrap(), st);
            assert_eq!(st.to_string(), st.as_str());
        }
        assert_eq!(TaskState::TimedOut.as_str(), "timed_out");
        assert!("Running".parse::<TaskState>().is_err());
        assert!("".parse::<TaskState>().is_err());
    }

    #[test]
    fn task_terminal_states() {
        let terminal: Vec<_> = TaskState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                TaskState::Completed,
                TaskState::Failed,
                TaskState::Cancelled,
                TaskState::Interrupted,
                TaskState::TimedOut
            ]
        );
    }

    #[test]
    fn delivery_state_strings_match_serde() {
        for st in DeliveryState::ALL {
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
            assert_eq!(st.as_str().parse::<DeliveryState>().unwrap(), st);
        }
        assert!(!DeliveryState::Queued.is_terminal());
        assert!(!DeliveryState::Processing.is_terminal());
        assert!(DeliveryState::Done.is_terminal());
        assert!(DeliveryState::Ignored.is_terminal());
        assert!("nope".parse::<DeliveryState>().is_err());
    }
}
