//! Replay: plays a recorded transcript's model turns back, in order, for evals and tests. The
//! tools are still called for real, so a replay shows what the same decisions do today. Ids the
//! tools minted then (`prop-…`) are minted afresh now: each is mapped, by its place in the
//! recorded and the live result of the same call, so that a recorded `apply_proposal` applies
//! today's proposal.

use std::sync::Mutex;

use crate::runner::Entry;
use crate::{ChatError, ChatModel, Message, Reply, TextSink, ToolSpec};

/// A recorded run's replies, played back.
#[derive(Debug)]
pub struct Replay {
    replies: Mutex<std::collections::VecDeque<Reply>>,
    /// Recorded tool results by call id.
    recorded: std::collections::HashMap<String, serde_json::Value>,
}

impl Replay {
    /// From the replies themselves.
    pub fn new(replies: Vec<Reply>) -> Self {
        Self { replies: Mutex::new(replies.into()), recorded: Default::default() }
    }

    /// From a transcript in JSON lines (as the runner writes it): its `model` entries.
    ///
    /// # Errors
    /// A line that is not a transcript entry.
    pub fn from_jsonl(text: &str) -> Result<Self, String> {
        let mut replies = Vec::new();
        let mut recorded = std::collections::HashMap::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let entry: Entry = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
            match entry {
                Entry::Model { reply, .. } => replies.push(reply),
                Entry::Tool { id, result, .. } => {
                    recorded.insert(id, result);
                }
                _ => {}
            }
        }
        Ok(Self { replies: Mutex::new(replies.into()), recorded })
    }

    /// Recorded id → live id, from the results of the same calls then and now.
    fn id_map(&self, conversation: &[Message]) -> Vec<(String, String)> {
        fn ids(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::String(s) if s.starts_with("prop-") => out.push(s.clone()),
                serde_json::Value::Array(a) => a.iter().for_each(|x| ids(x, out)),
                serde_json::Value::Object(o) => o.values().for_each(|x| ids(x, out)),
                _ => {}
            }
        }
        let mut map = Vec::new();
        for m in conversation.iter().filter(|m| m.role == crate::Role::Tool) {
            let Some(then) = m.tool_call_id.as_ref().and_then(|id| self.recorded.get(id)) else { continue };
            let now: serde_json::Value = serde_json::from_str(&m.content).unwrap_or(serde_json::Value::Null);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            ids(then, &mut a);
            ids(&now, &mut b);
            map.extend(a.into_iter().zip(b).filter(|(x, y)| x != y));
        }
        map
    }
}

#[async_trait::async_trait]
impl ChatModel for Replay {
    fn name(&self) -> String {
        "replay".into()
    }

    async fn next_turn(&self, conversation: &[Message], _: &[ToolSpec], sink: TextSink<'_>) -> Result<Reply, ChatError> {
        let mut reply = self
            .replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .ok_or_else(|| ChatError::Other("the recorded transcript has no more turns".into()))?;
        if let crate::Turn::ToolCalls { calls } = &mut reply.turn {
            let map = self.id_map(conversation);
            for call in calls.iter_mut() {
                for (then, now) in &map {
                    call.arguments = call.arguments.replace(then.as_str(), now.as_str());
                }
            }
        }
        if !reply.text.is_empty() {
            sink(&reply.text);
        }
        Ok(reply)
    }
}
