//! The error classes each upstream produced per route, kept in state_dir so a restart still
//! knows which classes blue has shown (the "new error class" trigger's memory).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::signals::{ProducedClass, Signals};

const FILE: &str = "error_classes.json";

/// `state_dir/error_classes.json`, written when the classes moved.
#[derive(Debug)]
pub struct ErrorHistory {
    path: PathBuf,
    /// `Signals::produced_changes` when last written.
    written: AtomicU64,
}

impl ErrorHistory {
    /// Reads the file into `signals`. The history only makes the trigger more cautious, so
    /// an unreadable file is logged and the gateway starts without it.
    pub fn open(state_dir: &Path, signals: &Signals) -> Self {
        let path = state_dir.join(FILE);
        match crate::state_file::read_list::<ProducedClass>(&path) {
            Ok(entries) => signals.restore_produced_classes(entries),
            Err(error) => tracing::error!(
                file = %path.display(),
                %error,
                "error class history unreadable; starting without it (a rollout may then \
                 take an error class blue showed before the restart for a new one)"
            ),
        }
        ErrorHistory {
            path,
            written: AtomicU64::new(signals.produced_changes()),
        }
    }

    /// Writes the classes if they changed since the last write, dropping those older than
    /// `keep_secs`.
    pub fn save_if_changed(&self, signals: &Arc<Signals>, now: u64, keep_secs: u64) {
        let changes = signals.produced_changes();
        if self.written.load(Ordering::Relaxed) == changes {
            return;
        }
        let mut list = signals.produced_classes();
        list.retain(|p| p.last_seen.saturating_add(keep_secs) >= now);
        list.sort_by(|a, b| {
            (&a.route, &a.upstream, &a.class).cmp(&(&b.route, &b.upstream, &b.class))
        });
        match crate::state_file::write_list(&self.path, &list) {
            Ok(()) => self.written.store(changes, Ordering::Relaxed),
            Err(error) => tracing::warn!(%error, "error class history not saved; retrying"),
        }
    }
}
