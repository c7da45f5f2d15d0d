//! What a decision leaves to do once the decision lock is released: the rollouts file to
//! write, incident records to write, webhooks to tell. Writing waits on the disk (fsync), so
//! it never happens under the lock an admin call or the tick waits on.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{lock, Controller, Inner};
use crate::incidents::Incident;
use crate::notify::Event;
use crate::rollout::{RolloutState, RolloutStore};

/// The rollouts as they were at one decision, numbered in decision order.
#[derive(Debug)]
pub(super) struct Snapshot {
    number: u64,
    states: BTreeMap<String, RolloutState>,
}

/// Side effects decided under the lock, carried out in order after it.
#[derive(Debug, Default)]
#[must_use = "effects are carried out by Controller::carry_out once the lock is released"]
pub(super) struct Effects {
    snapshot: Option<Snapshot>,
    /// Incidents already recorded in memory (their ids are known), whose files are to write.
    incidents: Vec<String>,
    events: Vec<Event>,
}

impl Effects {
    /// The rollouts as they are now are to be written.
    pub(super) fn save(&mut self, inner: &mut Inner) {
        inner.dirty_since = None;
        inner.snapshots += 1;
        self.snapshot = Some(Snapshot {
            number: inner.snapshots,
            states: inner.rollouts.clone(),
        });
    }

    /// A webhook event, told after the files are written.
    pub(super) fn tell(&mut self, event: Event) {
        self.events.push(event);
    }

    /// An incident recorded in memory, whose file is to write.
    pub(super) fn write_incident(&mut self, id: String) {
        self.incidents.push(id);
    }
}

/// Writes the rollouts file; a snapshot older than the last one written is skipped (the
/// newer one carries its decision too).
#[derive(Debug)]
pub(super) struct StateWriter {
    store: RolloutStore,
    /// The number of the last snapshot written, and how that write went.
    last: Mutex<(u64, Result<(), String>)>,
}

impl StateWriter {
    pub(super) fn new(store: RolloutStore) -> Self {
        StateWriter {
            store,
            last: Mutex::new((0, Ok(()))),
        }
    }

    /// Writes `snapshot` unless a newer one was written; either way, whether the state that
    /// includes it reached the disk.
    fn write(&self, snapshot: Snapshot) -> Result<(), String> {
        let mut last = lock(&self.last);
        if snapshot.number <= last.0 {
            return last.1.clone();
        }
        let written = self.store.save(&snapshot.states).map_err(|error| {
            tracing::error!(%error, "rollout state not saved; it stays in force in memory");
            format!("the rollout state was not saved to state_dir ({error}); it is in force but a restart would not see it")
        });
        *last = (snapshot.number, written.clone());
        written
    }
}

impl Controller {
    /// Carries out `effects`, with the decision lock released: the rollouts file first,
    /// then the incidents, then the webhooks. Returns whether the rollouts reached the disk
    /// (`Ok` when there was nothing to write); a failure is logged, and the state stays in
    /// force in memory either way.
    pub(super) fn carry_out(&self, effects: Effects) -> Result<(), String> {
        let saved = match effects.snapshot {
            Some(snapshot) => self.writer.write(snapshot),
            None => Ok(()),
        };
        for id in effects.incidents {
            let written = self.incidents.persist(&id);
            if let Err(error) = written {
                tracing::error!(%error, %id, "incident not saved");
            }
        }
        for event in effects.events {
            self.notifier.notify(event);
        }
        saved
    }

    /// Records a drafted incident in memory (choosing its id) and leaves its file and its
    /// webhook to `effects`; returns the id.
    pub(super) fn open_incident(&self, draft: Incident, effects: &mut Effects) -> String {
        let incident = self.incidents.admit(draft);
        effects.write_incident(incident.id.clone());
        effects.tell(Event::incident(
            &incident.id,
            &incident.kind,
            &incident.route,
        ));
        incident.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(number: u64, percent: f64) -> Snapshot {
        let mut state = RolloutState::start("support", "blue", "green", &[50.0, 100.0], 1);
        state.percent = percent;
        Snapshot {
            number,
            states: BTreeMap::from([("support".to_owned(), state)]),
        }
    }

    #[test]
    fn an_older_snapshot_never_overwrites_a_newer_one() {
        let dir = std::env::temp_dir().join(format!("sy-writer-{}", fastrand::u64(..)));
        let (store, _) = RolloutStore::open(&dir).unwrap();
        let writer = StateWriter::new(store);
        writer.write(snapshot(2, 100.0)).unwrap();
        writer.write(snapshot(1, 50.0)).unwrap();
        let (_, states) = RolloutStore::open(&dir).unwrap();
        assert_eq!(states["support"].percent, 100.0);
        writer.write(snapshot(3, 75.0)).unwrap();
        let (_, states) = RolloutStore::open(&dir).unwrap();
        assert_eq!(states["support"].percent, 75.0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_skipped_snapshot_reports_how_the_newer_write_went() {
        let dir = std::env::temp_dir().join(format!("sy-writer-{}", fastrand::u64(..)));
        let (store, _) = RolloutStore::open(&dir).unwrap();
        let writer = StateWriter::new(store);
        // A file where the directory should be: every write fails.
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, b"not a directory").unwrap();
        assert!(writer.write(snapshot(2, 100.0)).is_err());
        assert!(
            writer.write(snapshot(1, 50.0)).is_err(),
            "the state holding the older decision did not reach the disk either"
        );
        let _ = std::fs::remove_file(&dir);
    }
}
