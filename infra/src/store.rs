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
";

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
