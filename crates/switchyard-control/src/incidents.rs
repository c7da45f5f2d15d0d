//! Incidents: one JSON file per incident under `state_dir/incidents`, kept in memory too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alerts::FiringAlert;
use crate::kill::KillSwitch;

const DIR: &str = "incidents";

/// A firing alert as status and incidents show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertView {
    pub alert: String,
    pub route: String,
    pub value: f64,
    pub threshold: f64,
    pub since: u64,
}

impl From<&FiringAlert> for AlertView {
    fn from(a: &FiringAlert) -> Self {
        AlertView {
            alert: a.kind.as_str().to_owned(),
            route: a.route.clone(),
            value: a.value,
            threshold: a.threshold,
            since: a.since,
        }
    }
}

/// What set an automatic incident off: the trigger, its figure and threshold, the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Trigger {
    /// `error_rate`, `p99_latency`, `cost_increase`, `new_error_class`, `alert:<kind>`, or a
    /// rule's name.
    pub name: String,
    pub value: f64,
    pub threshold: f64,
    pub window_secs: u64,
    /// Everything else the decision read (both sides' figures, the baseline, ...).
    pub figures: Value,
}

/// A count of one value seen in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Seen {
    pub value: String,
    pub count: u64,
}

/// Metadata of one recent exchange; text only when `[incidents] capture_bodies` is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SampledExchange {
    pub at_ms: u64,
    pub request_id: String,
    pub upstream: String,
    pub variant: String,
    pub model: Option<String>,
    pub response_model: Option<String>,
    pub prompt_fingerprint: Option<String>,
    pub status: u16,
    pub outcome: String,
    pub error_class: Option<String>,
    pub finish_reason: Option<String>,
    pub latency_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

/// What the route served in the incident's window: the model's part of the postmortem.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    /// Unix milliseconds of the window's start and end.
    pub from_ms: u64,
    pub to_ms: u64,
    /// Exchanges the counts below were taken from (the most recent ones kept per route).
    pub exchanges_examined: u64,
    /// Model versions as the responses named them, most frequent first.
    pub response_models: Vec<Seen>,
    /// System-prompt fingerprints (XXH3-64, hex), most frequent first.
    pub prompt_fingerprints: Vec<Seen>,
    /// The most recent exchanges, newest first.
    pub sample: Vec<SampledExchange>,
}

/// The full record of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Incident {
    pub id: String,
    /// `kill`, `rollback` or `rule`.
    pub kind: String,
    pub route: String,
    pub opened_at_ms: u64,
    pub reason: String,
    pub by: String,
    pub config_version: String,
    /// The route's kill switch before and after (kills).
    pub before: Option<KillSwitch>,
    pub after: Option<KillSwitch>,
    /// The route's rollout before and after (rollbacks, rules that act on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_after: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    pub alerts_firing: Vec<AlertView>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at_ms: Option<u64>,
    pub ack_note: Option<String>,
}

/// What `GET /admin/incidents` lists for each incident.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Summary<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub route: &'a str,
    pub opened_at_ms: u64,
    pub reason: &'a str,
    pub by: &'a str,
    pub acknowledged_by: Option<&'a str>,
    pub acknowledged_at_ms: Option<u64>,
}

impl Incident {
    pub fn summary(&self) -> Summary<'_> {
        Summary {
            id: &self.id,
            kind: &self.kind,
            route: &self.route,
            opened_at_ms: self.opened_at_ms,
            reason: &self.reason,
            by: &self.by,
            acknowledged_by: self.acknowledged_by.as_deref(),
            acknowledged_at_ms: self.acknowledged_at_ms,
        }
    }
}

/// A failure of the incident store.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::state_file::WriteError),
    #[error("no incident {0}")]
    Unknown(String),
    #[error("{id} was already acknowledged by {by}")]
    AlreadyAcknowledged { id: String, by: String, at_ms: u64 },
}

/// Every incident, newest first on listing.
#[derive(Debug)]
pub struct Incidents {
    dir: PathBuf,
    /// By id. The lock also serialises file writes, and makes an ack's check-and-set atomic.
    records: Mutex<BTreeMap<String, Incident>>,
    /// Fleet mode: every record written also goes to the fleet's stream.
    sink: OnceLock<crate::fleet::streams::Sink<Incident>>,
}

fn io_error(path: &Path, source: std::io::Error) -> IncidentError {
    IncidentError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Incidents {
    /// Opens `state_dir/incidents`, creating it, and loads every record in it.
    pub fn open(state_dir: &Path) -> Result<Self, IncidentError> {
        let dir = state_dir.join(DIR);
        // The new directory's entry is synced too, or a power cut could take every record in
        // it along.
        std::fs::create_dir_all(&dir)
            .and_then(|()| crate::state_file::sync_dir(state_dir))
            .map_err(|e| io_error(&dir, e))?;
        let mut records = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))? {
            let path = entry.map_err(|e| io_error(&dir, e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue; // .tmp, .prev and .corrupt files are not records
            }
            match load(&path) {
                Ok(incident) => {
                    records.insert(incident.id.clone(), incident);
                }
                // One damaged file must not hide the others or stop the gateway.
                Err(error) => tracing::warn!(%error, "skipping an unreadable incident"),
            }
        }
        Ok(Incidents {
            dir,
            records: Mutex::new(records),
            sink: OnceLock::new(),
        })
    }

    /// Fleet mode: sends every incident opened or acknowledged to `sink` too.
    pub fn set_sink(&self, sink: crate::fleet::streams::Sink<Incident>) {
        let _ = self.sink.set(sink);
    }

    fn share(&self, incident: &Incident) {
        if let Some(sink) = self.sink.get() {
            sink.send(incident);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Incident>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh id, `inc-<UTC time>-<4 hex>`, unused so far.
    fn fresh_id(records: &BTreeMap<String, Incident>, at_ms: u64) -> String {
        let stamp = crate::clock::compact_utc(at_ms);
        loop {
            let id = format!("inc-{stamp}-{:04x}", fastrand::u16(..));
            if !records.contains_key(&id) {
                return id;
            }
        }
    }

    /// Records a new incident; its id is chosen here. The record is kept in memory even if
    /// the file could not be written, and the write error is returned beside the id.
    pub fn open_incident(&self, mut incident: Incident) -> (Incident, Result<(), IncidentError>) {
        let mut records = self.lock();
        incident.id = Self::fresh_id(&records, incident.opened_at_ms);
        let written = self.write(&incident);
        records.insert(incident.id.clone(), incident.clone());
        drop(records);
        self.share(&incident);
        (incident, written)
    }

    /// Records a new incident in memory only, its id chosen here: the controller decides
    /// under its lock and writes the file with [`Incidents::persist`] once it is released.
    pub fn admit(&self, mut incident: Incident) -> Incident {
        let mut records = self.lock();
        incident.id = Self::fresh_id(&records, incident.opened_at_ms);
        records.insert(incident.id.clone(), incident.clone());
        incident
    }

    /// Writes the record `id` as it is now (an ack that came meanwhile included) and shares
    /// it with the fleet.
    pub fn persist(&self, id: &str) -> Result<(), IncidentError> {
        let records = self.lock();
        let Some(incident) = records.get(id).cloned() else {
            return Ok(());
        };
        let written = self.write(&incident);
        drop(records);
        self.share(&incident);
        written
    }

    /// Every incident, newest first.
    pub fn list(&self) -> Vec<Incident> {
        let mut all: Vec<Incident> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| (b.opened_at_ms, &b.id).cmp(&(a.opened_at_ms, &a.id)));
        all
    }

    pub fn get(&self, id: &str) -> Option<Incident> {
        self.lock().get(id).cloned()
    }

    /// How many incidents nobody has acknowledged yet.
    pub fn open_count(&self) -> usize {
        self.lock()
            .values()
            .filter(|i| i.acknowledged_by.is_none())
            .count()
    }

    /// Marks an incident acknowledged, on disk first: an ack that was not written is not one.
    pub fn ack(
        &self,
        id: &str,
        by: &str,
        at_ms: u64,
        note: Option<String>,
    ) -> Result<Incident, IncidentError> {
        let mut records = self.lock();
        let current = records
            .get(id)
            .ok_or_else(|| IncidentError::Unknown(id.to_owned()))?;
        if let Some(earlier) = &current.acknowledged_by {
            return Err(IncidentError::AlreadyAcknowledged {
                id: id.to_owned(),
                by: earlier.clone(),
                at_ms: current.acknowledged_at_ms.unwrap_or(0),
            });
        }
        let mut updated = current.clone();
        updated.acknowledged_by = Some(by.to_owned());
        updated.acknowledged_at_ms = Some(at_ms);
        updated.ack_note = note;
        self.write(&updated)?;
        records.insert(id.to_owned(), updated.clone());
        drop(records);
        self.share(&updated);
        Ok(updated)
    }

    /// Writes a record durably (see [`crate::state_file`]), so a reader or a crash never sees
    /// half a record and an ack that was answered is on disk.
    fn write(&self, incident: &Incident) -> Result<(), IncidentError> {
        let path = self.dir.join(format!("{}.json", incident.id));
        crate::state_file::off_the_workers(|| crate::state_file::save(&path, incident))?;
        Ok(())
    }
}

/// One record, from its previous generation if the file itself is unusable.
fn load(path: &Path) -> Result<Incident, IncidentError> {
    match crate::state_file::load(path) {
        Ok(Some(incident)) => Ok(incident),
        Ok(None) => Err(io_error(path, std::io::ErrorKind::NotFound.into())),
        Err(e) => Err(io_error(path, e)),
    }
}
