//! Durable state in SQLite (WAL): proposals, and the executor's journal of intents and
//! outcomes. A restart loses nothing; an applied proposal is never applied twice.

use std::path::Path;
use std::sync::Mutex;

use fleetpilot_core::{Outcome, Proposal, ProposalStatus};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("state database error")]
    Sqlite(#[from] rusqlite::Error),
    /// A change was interrupted by a crash and is not settled yet (start-up recovery does it).
    #[error("proposal {0} was interrupted and awaits recovery; restart the server to settle it")]
    Unfinished(String),
    /// A stored row could not be decoded (the database was written by something else).
    #[error("stored {what} could not be decoded")]
    Decode {
        /// What was read.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct JournalEntry {
    /// Order of writing.
    pub seq: i64,
    /// Proposal it belongs to.
    pub proposal_id: String,
    /// `intent`, `step`, `outcome` or `dry_run`.
    pub phase: String,
    /// When.
    pub at: String,
    /// Details (JSON).
    pub body: serde_json::Value,
}

/// The state database.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS proposals (
    id TEXT PRIMARY KEY,
    resource_group TEXT NOT NULL,
    fleet TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS proposals_by_fleet ON proposals (fleet, created_at);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    proposal_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_by_proposal ON journal (proposal_id, seq);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    at_unix_ms INTEGER NOT NULL,
    caller TEXT NOT NULL,
    role TEXT NOT NULL,
    tool TEXT NOT NULL,
    fleet TEXT,
    arguments TEXT NOT NULL,
    verdict TEXT,
    result TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at_unix_ms);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    fleet TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created_at);
CREATE TABLE IF NOT EXISTS alert_notifications (
    dedup_key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    received_at TEXT NOT NULL
);
";

/// An agent run: what started it, how it went, its transcript.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct RunRecord {
    /// `run-…`.
    pub id: String,
    /// `alert` or `chat`.
    pub kind: String,
    /// The fleet it looked after.
    pub fleet: String,
    /// `queued`, `running`, then `answered`, `budget_exhausted`, `model_failed`, `tools_failed` or `interrupted`.
    pub status: String,
    /// What started it (the alerts, coalesced, or the chat message).
    pub trigger: serde_json::Value,
    /// The model (`planner`, `openai:…`).
    pub model: String,
    /// When it was queued, started and finished (RFC 3339).
    pub created_at: String,
    /// Started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The agent's account.
    #[serde(default)]
    pub answer: String,
    /// Proposals it made.
    #[serde(default)]
    pub proposals: Vec<String>,
    /// Tool calls made.
    #[serde(default)]
    pub tool_calls: u32,
    /// Tokens used.
    #[serde(default)]
    pub tokens: u64,
    /// What those tokens cost at the configured model price, USD.
    #[serde(default)]
    pub model_cost_usd: f64,
    /// The transcript, as JSON lines (secrets redacted).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub transcript: String,
}

/// One audited tool call.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct AuditRecord {
    /// Order of writing (0 before it is written).
    #[serde(default)]
    pub seq: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who called (transport and client, or the authenticated principal).
    pub caller: String,
    /// The caller's role.
    pub role: String,
    /// The tool.
    pub tool: String,
    /// The fleet concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    /// The arguments, secrets redacted.
    pub arguments: serde_json::Value,
    /// The guardrails' decision, for calls that had one (`allow`, `needs_approval`, `deny`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// `ok`, or the error code (`denied`, `forbidden`, `rate_limited`, …).
    pub result: String,
    /// A one-line summary of the result (a proposal id, an error message).
    pub detail: String,
}

/// Which audit records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only records at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only records before this time.
    pub until: Option<OffsetDateTime>,
    /// Only this caller (exact match).
    pub caller: Option<String>,
    /// Only this fleet (case-insensitive).
    pub fleet: Option<String>,
    /// Only this tool.
    pub tool: Option<String>,
    /// Most records (newest first).
    pub limit: u32,
}

impl Store {
    /// Open (or create) the database at `path`, in WAL mode with full sync.
    ///
    /// # Errors
    /// When the file cannot be opened or the schema cannot be created.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Self::init(conn)
    }

    /// A private in-memory database, for tests and throwaway runs.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // SQLite rolls back an unfinished transaction itself; the connection stays usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Insert or replace a proposal.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn save_proposal(&self, proposal: &Proposal) -> Result<(), StoreError> {
        let body = serde_json::to_string(proposal).map_err(|source| StoreError::Decode { what: "proposal", source })?;
        self.conn().execute(
            "INSERT INTO proposals (id, resource_group, fleet, status, created_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET status = excluded.status, body = excluded.body",
            params![
                proposal.id,
                proposal.fleet.resource_group,
                proposal.fleet.name,
                proposal.status.as_str(),
                proposal.created_at.format(&Rfc3339).unwrap_or_default(),
                body
            ],
        )?;
        Ok(())
    }

    /// A proposal by id.
    ///
    /// # Errors
    /// When SQLite fails or the row does not decode.
    pub fn proposal(&self, id: &str) -> Result<Option<Proposal>, StoreError> {
        let body: Option<String> =
            self.conn().query_row("SELECT body FROM proposals WHERE id = ?1", params![id], |row| row.get(0)).optional()?;
        body.map(|b| serde_json::from_str(&b).map_err(|source| StoreError::Decode { what: "proposal", source })).transpose()
    }

    /// Proposals, newest first, optionally for one fleet and one status.
    ///
    /// # Errors
    /// When SQLite fails or a row does not decode.
    pub fn proposals(
        &self,
        fleet: Option<&str>,
        status: Option<ProposalStatus>,
        limit: u32,
    ) -> Result<Vec<Proposal>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT body FROM proposals
             WHERE (?1 IS NULL OR fleet = ?1 COLLATE NOCASE) AND (?2 IS NULL OR status = ?2)
             ORDER BY created_at DESC, rowid DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![fleet, status.map(ProposalStatus::as_str), limit], |row| row.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row?).map_err(|source| StoreError::Decode { what: "proposal", source })?);
        }
        Ok(out)
    }

    /// Append a journal line.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn journal(&self, proposal_id: &str, phase: &str, body: &serde_json::Value) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO journal (proposal_id, phase, at, body) VALUES (?1, ?2, ?3, ?4)",
            params![proposal_id, phase, OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(), body.to_string()],
        )?;
        Ok(())
    }

    /// The journal of one proposal, in order.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn journal_of(&self, proposal_id: &str) -> Result<Vec<JournalEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT seq, proposal_id, phase, at, body FROM journal WHERE proposal_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map(params![proposal_id], |row| {
            Ok(JournalEntry {
                seq: row.get(0)?,
                proposal_id: row.get(1)?,
                phase: row.get(2)?,
                at: row.get(3)?,
                body: serde_json::from_str(&row.get::<_, String>(4)?).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Proposals of one fleet created at or after `since`, oldest first: the history the
    /// guardrails judge rates, cooldowns and stabilization by.
    ///
    /// # Errors
    /// When SQLite fails or a row does not decode.
    pub fn fleet_proposals_since(&self, fleet: &str, since: OffsetDateTime) -> Result<Vec<Proposal>, StoreError> {
        // Stored times are RFC 3339 UTC; compare coarsely in SQL (to the second), exactly here.
        let coarse = (since - time::Duration::seconds(1)).replace_nanosecond(0).unwrap_or(since);
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT body FROM proposals WHERE fleet = ?1 COLLATE NOCASE AND created_at >= ?2 ORDER BY created_at, rowid",
        )?;
        let rows = stmt.query_map(params![fleet, coarse.format(&Rfc3339).unwrap_or_default()], |row| row.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let p: Proposal = serde_json::from_str(&row?).map_err(|source| StoreError::Decode { what: "proposal", source })?;
            if p.created_at >= since {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Set the global freeze (every mutation refused while on), recording who and when.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn set_frozen(&self, frozen: bool, by: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO settings (key, value, set_by, set_at) VALUES ('frozen', ?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, set_by = excluded.set_by, set_at = excluded.set_at",
            params![if frozen { "true" } else { "false" }, by, OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()],
        )?;
        Ok(())
    }

    /// The global freeze: on or off, and who set it when (`None` if never set).
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn frozen(&self) -> Result<Option<(bool, String, String)>, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT value, set_by, set_at FROM settings WHERE key = 'frozen'", [], |row| {
                Ok((row.get::<_, String>(0)? == "true", row.get(1)?, row.get(2)?))
            })
            .optional()?)
    }

    /// Append an audit record.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        self.conn().execute(
            "INSERT INTO audit (at, at_unix_ms, caller, role, tool, fleet, arguments, verdict, result, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                record.at,
                (now.unix_timestamp_nanos() / 1_000_000) as i64,
                record.caller,
                record.role,
                record.tool,
                record.fleet,
                record.arguments.to_string(),
                record.verdict,
                record.result,
                record.detail
            ],
        )?;
        Ok(())
    }

    /// Audit records matching `filter`, newest first.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let ms = |t: Option<OffsetDateTime>| t.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, at, caller, role, tool, fleet, arguments, verdict, result, detail FROM audit
             WHERE (?1 IS NULL OR at_unix_ms >= ?1) AND (?2 IS NULL OR at_unix_ms < ?2)
               AND (?3 IS NULL OR caller = ?3) AND (?4 IS NULL OR fleet = ?4 COLLATE NOCASE) AND (?5 IS NULL OR tool = ?5)
             ORDER BY seq DESC LIMIT ?6",
        )?;
        let rows = stmt.query_map(
            params![ms(filter.since), ms(filter.until), filter.caller, filter.fleet, filter.tool, filter.limit.max(1)],
            |row| {
                Ok(AuditRecord {
                    seq: row.get(0)?,
                    at: row.get(1)?,
                    caller: row.get(2)?,
                    role: row.get(3)?,
                    tool: row.get(4)?,
                    fleet: row.get(5)?,
                    arguments: serde_json::from_str(&row.get::<_, String>(6)?).unwrap_or(serde_json::Value::Null),
                    verdict: row.get(7)?,
                    result: row.get(8)?,
                    detail: row.get(9)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Insert or replace a run.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn save_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let body = serde_json::to_string(run).map_err(|source| StoreError::Decode { what: "run", source })?;
        self.conn().execute(
            "INSERT INTO runs (id, created_at, fleet, status, body) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET status = excluded.status, body = excluded.body",
            params![run.id, run.created_at, run.fleet, run.status, body],
        )?;
        Ok(())
    }

    /// A run by id.
    ///
    /// # Errors
    /// When SQLite fails or the row does not decode.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let body: Option<String> =
            self.conn().query_row("SELECT body FROM runs WHERE id = ?1", params![id], |row| row.get(0)).optional()?;
        body.map(|b| serde_json::from_str(&b).map_err(|source| StoreError::Decode { what: "run", source })).transpose()
    }

    /// Runs, newest first, optionally of one fleet (transcripts left out).
    ///
    /// # Errors
    /// When SQLite fails or a row does not decode.
    pub fn runs(&self, fleet: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT body FROM runs WHERE (?1 IS NULL OR fleet = ?1 COLLATE NOCASE) ORDER BY created_at DESC, rowid DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![fleet, limit], |row| row.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let mut run: RunRecord = serde_json::from_str(&row?).map_err(|source| StoreError::Decode { what: "run", source })?;
            run.transcript.clear();
            out.push(run);
        }
        Ok(out)
    }

    /// Remember an alert notification; `false` when it was seen before (a duplicate).
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn record_alert(&self, dedup_key: &str, run_id: &str) -> Result<bool, StoreError> {
        let inserted = self.conn().execute(
            "INSERT OR IGNORE INTO alert_notifications (dedup_key, run_id, received_at) VALUES (?1, ?2, ?3)",
            params![dedup_key, run_id, OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()],
        )?;
        Ok(inserted == 1)
    }

    /// Whether the executor journalled an intent for the proposal.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn has_intent(&self, proposal_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT 1 FROM journal WHERE proposal_id = ?1 AND phase = 'intent' LIMIT 1", params![proposal_id], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    /// Proposals whose latest intent has no outcome after it (a crash interrupted them), with
    /// that intent's body, oldest first.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn unfinished(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT i.proposal_id, i.body FROM journal i
             WHERE i.phase = 'intent'
               AND NOT EXISTS (SELECT 1 FROM journal o WHERE o.proposal_id = i.proposal_id AND o.phase = 'outcome' AND o.seq > i.seq)
             ORDER BY i.seq",
        )?;
        let rows = stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row?;
            out.push((id, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)));
        }
        Ok(out)
    }

    /// The recorded outcome of a proposal, if the executor finished it.
    ///
    /// # Errors
    /// When SQLite fails or the row does not decode.
    pub fn outcome_of(&self, proposal_id: &str) -> Result<Option<Outcome>, StoreError> {
        let body: Option<String> = self
            .conn()
            .query_row(
                "SELECT body FROM journal WHERE proposal_id = ?1 AND phase = 'outcome' ORDER BY seq DESC LIMIT 1",
                params![proposal_id],
                |row| row.get(0),
            )
            .optional()?;
        body.map(|b| serde_json::from_str(&b).map_err(|source| StoreError::Decode { what: "outcome", source })).transpose()
    }
}
