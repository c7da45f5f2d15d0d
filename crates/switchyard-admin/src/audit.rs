//! The audit log: one JSON line per mutation in `state_dir/audit.jsonl`, appended before the
//! answer leaves, read back from the end for `GET /admin/audit`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use switchyard_control::fleet::streams::Sink;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Principal;

const FILE: &str = "audit.jsonl";

/// One audited mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub at_ms: u64,
    pub who: String,
    pub role: String,
    pub kind: String,
    /// `kill`, `revive`, `reload`, `ack`, `rollback`, `promote`, `approve`, `release`; in
    /// fleet mode also the controller's `rollback` and `advance` decisions.
    pub action: String,
    /// The route, the incident id, or nothing (reload).
    pub target: Option<String>,
    pub reason: Option<String>,
    pub before: Value,
    pub after: Value,
    /// `ok`, or `rejected: <why>`.
    pub result: String,
}

impl AuditEntry {
    /// An entry for `who` doing `action`, before its outcome is known.
    pub fn new(who: &Principal, action: &'static str, target: Option<String>) -> Self {
        AuditEntry {
            at_ms: switchyard_control::kill::now_ms(),
            who: who.name.clone(),
            role: who.role.as_str().to_owned(),
            kind: who.kind.as_str().to_owned(),
            action: action.to_owned(),
            target,
            reason: None,
            before: Value::Null,
            after: Value::Null,
            result: "ok".into(),
        }
    }

    /// A decision the controller took for the fleet: by `controller` (or a rule), kind
    /// `automatic`.
    pub fn decided(d: &switchyard_control::controller::Decided) -> Self {
        AuditEntry {
            at_ms: switchyard_control::kill::now_ms(),
            who: d.by.to_string(),
            role: "controller".into(),
            kind: "automatic".into(),
            action: d.action.as_str().to_owned(),
            target: Some(d.route.clone()),
            reason: d.reason.clone(),
            before: serde_json::json!(d.before),
            after: serde_json::json!(d.after),
            result: if d.shared {
                "ok".into()
            } else {
                "ok: on this replica only (Redis out of reach), replayed when it is back".into()
            },
        }
    }

    pub fn rejected(mut self, why: &str) -> Self {
        self.result = format!("rejected: {why}");
        self
    }
}

/// A failure to read or write the audit log.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct AuditError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// The append-only log. Writes are small, synchronous and synced: mutations are rare, and
/// their answer has to wait for the entry anyway.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// One writer at a time, so two entries never interleave within a line.
    writer: Mutex<()>,
    /// Fleet mode: every entry written also goes to the fleet's stream.
    sink: OnceLock<Sink<AuditEntry>>,
}

impl AuditLog {
    /// Opens (creating if needed) `state_dir/audit.jsonl`.
    pub fn open(state_dir: &Path) -> Result<Self, AuditError> {
        let path = state_dir.join(FILE);
        let log = AuditLog {
            path,
            writer: Mutex::new(()),
            sink: OnceLock::new(),
        };
        std::fs::create_dir_all(state_dir)
            .and_then(|()| log.append_file())
            .and_then(|file| end_the_torn_line(file, &log.path))
            .map_err(|source| log.error(source))?;
        Ok(log)
    }

    /// Fleet mode: sends every entry written to `sink` too.
    pub fn set_sink(&self, sink: Sink<AuditEntry>) {
        let _ = self.sink.set(sink);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, source: std::io::Error) -> AuditError {
        AuditError {
            path: self.path.display().to_string(),
            source,
        }
    }

    // Opened per append rather than kept open, so a log moved aside by rotation is
    // recreated instead of written to under its old name. A new file's directory entry is
    // synced too, or a crash could lose the whole file rather than its last line.
    fn append_file(&self) -> std::io::Result<File> {
        let created = !self.path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        if created {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            switchyard_control::state_file::sync_dir(dir)?;
        }
        Ok(file)
    }

    /// Appends one entry as one line with one write, and syncs it: when this returns `Ok`,
    /// the entry survives a crash, so the answer that follows may claim it.
    pub fn append(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(entry)
            .map_err(|e| self.error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        line.push(b'\n');
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.append_file()
            .and_then(|mut file| {
                file.write_all(&line)?;
                file.sync_data()
            })
            .map_err(|source| {
                switchyard_control::state_file::count_write_error(FILE.to_owned());
                self.error(source)
            })?;
        if let Some(sink) = self.sink.get() {
            sink.send(entry);
        }
        Ok(())
    }

    /// The last `limit` entries, oldest first. Lines that do not parse (a torn last line
    /// after a crash) are skipped.
    pub fn tail(&self, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            // Moved aside by rotation and nothing audited since: an empty log.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(self.error(source)),
        };
        let text = last_lines(&mut file, limit).map_err(|source| self.error(source))?;
        let entries: Vec<AuditEntry> = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let skip = entries.len().saturating_sub(limit);
        Ok(entries.into_iter().skip(skip).collect())
    }
}

/// A crash can leave a last line without its line break (a power cut mid-write); the next
/// entry would be glued to it and lost with it. Ends such a line first.
fn end_the_torn_line(mut file: File, path: &Path) -> std::io::Result<()> {
    let mut reader = File::open(path)?;
    let len = reader.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    reader.seek(SeekFrom::Start(len - 1))?;
    reader.read_exact(&mut last)?;
    if last[0] != b'\n' {
        file.write_all(b"\n")?;
        file.sync_data()?;
    }
    Ok(())
}

const CHUNK: u64 = 64 * 1024;

/// Reads backwards from the end until the text holds more than `limit` line breaks (or the
/// file is exhausted), so a long log costs only what the caller asks for.
fn last_lines(file: &mut File, limit: usize) -> std::io::Result<String> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    while start > 0 && count_breaks(&buf) <= limit {
        let step = CHUNK.min(start);
        start -= step;
        file.seek(SeekFrom::Start(start))?;
        let mut chunk = vec![0; usize::try_from(step).unwrap_or(0)];
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    if start > 0 {
        // The first line is probably cut in the middle: drop it.
        let cut = buf.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
        buf.drain(..cut);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn count_breaks(buf: &[u8]) -> usize {
    buf.iter().filter(|b| **b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_reads_only_the_end_in_order() {
        let dir = std::env::temp_dir().join(format!("switchyard-audit-{}", fastrand::u64(..)));
        let mut file = File::create(dir.with_extension("jsonl")).unwrap();
        for i in 0..5000 {
            writeln!(file, "{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(40)).unwrap();
        }
        drop(file);
        let mut file = File::open(dir.with_extension("jsonl")).unwrap();
        let text = last_lines(&mut file, 3).unwrap();
        let numbers: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["n"].clone())
            .collect();
        assert_eq!(numbers.last().unwrap(), 4999);
        assert!(numbers.len() >= 3);
        std::fs::remove_file(dir.with_extension("jsonl")).unwrap();
    }

    #[test]
    fn an_entry_after_a_torn_line_starts_a_line_of_its_own() {
        let dir = std::env::temp_dir().join(format!("switchyard-audit-torn-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(FILE), "{\"at_ms\":1,\"who\":\"on").unwrap();
        let log = AuditLog::open(&dir).unwrap();
        let who = Principal {
            name: "oncall".into(),
            role: switchyard_config::Role::Operator,
            kind: switchyard_config::TokenKind::Human,
        };
        log.append(&AuditEntry::new(&who, "kill", Some("support".into())))
            .unwrap();
        let entries = log.tail(10).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].action, "kill");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
