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
        let written =
            crate::state_file::off_the_workers(|| crate::state_file::write_list(&self.path, &list));
        match written {
            Ok(()) => self.written.store(changes, Ordering::Relaxed),
            Err(error) => tracing::warn!(%error, "error class history not saved; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::exchange::Exchange;
    use crate::signals::Spans;

    fn failed(upstream: &str) -> Exchange {
        Exchange {
            upstream: Arc::from(upstream),
            ..crate::exchange::tests_support::exchange()
        }
    }

    fn spans() -> Spans {
        Spans {
            window: Duration::from_secs(2),
            baseline: Duration::from_secs(2),
            context_fill: 0.8,
        }
    }

    #[test]
    fn the_classes_blue_produced_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("switchyard-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let signals = Signals::new();
        let history = ErrorHistory::open(&dir, &signals);
        let route = signals.route("support", spans());
        signals.record(&route, failed("blue"));
        let now = crate::signals::now_secs();
        history.save_if_changed(&signals, now, 86_400);

        // A new process: the file is read before the route exists, and applied when it does.
        let restarted = Signals::new();
        let _history = ErrorHistory::open(&dir, &restarted);
        let route = restarted.route("support", spans());
        let known = route.produced("blue");
        assert_eq!(known.len(), 1);
        assert_eq!(&*known[0].0, "status_5xx");
        assert!(known[0].1 >= now.saturating_sub(1));
        assert!(route.produced("green").is_empty());

        // Entries older than what is kept are dropped at the next write.
        restarted.record(&route, failed("green"));
        _history.save_if_changed(&restarted, now + 100_000, 86_400);
        let text = std::fs::read_to_string(dir.join(FILE)).unwrap();
        assert_eq!(text.matches("status_5xx").count(), 0, "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
