//! Replay: plays a recorded transcript's model turns back, in order, for evals and tests. The
//! tools are still called for real, so a replay shows what the same decisions do today.

use std::sync::Mutex;

use crate::runner::Entry;
use crate::{ChatError, ChatModel, Message, Reply, TextSink, ToolSpec};

/// A recorded run's replies, played back.
#[derive(Debug)]
pub struct Replay {
    replies: Mutex<std::collections::VecDeque<Reply>>,
}

impl Replay {
    /// From the replies themselves.
    pub fn new(replies: Vec<Reply>) -> Self {
        Self { replies: Mutex::new(replies.into()) }
    }

    /// From a transcript in JSON lines (as the runner writes it): its `model` entries.
    ///
    /// # Errors
    /// A line that is not a transcript entry.
    pub fn from_jsonl(text: &str) -> Result<Self, String> {
        let mut replies = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let entry: Entry = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
            if let Entry::Model { reply, .. } = entry {
                replies.push(reply);
            }
        }
        Ok(Self::new(replies))
    }
}

#[async_trait::async_trait]
impl ChatModel for Replay {
    fn name(&self) -> String {
        "replay".into()
    }

    async fn next_turn(&self, _: &[Message], _: &[ToolSpec], sink: TextSink<'_>) -> Result<Reply, ChatError> {
        let reply = self
            .replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .ok_or_else(|| ChatError::Other("the recorded transcript has no more turns".into()))?;
        if !reply.text.is_empty() {
            sink(&reply.text);
        }
        Ok(reply)
    }
}
