//! Files kept in state_dir (kill switches, rollouts, incidents, the token budget): written so
//! that a crash at any moment leaves either the old or the new version on disk, never a torn
//! one, with the previous generation kept beside it (`<file>.prev`); read back at start with a
//! fall-back to that previous generation.
//!
//! A write is: the new text to `<file>.tmp`, fsync it; hard-link the current file to
//! `<file>.prev`; rename the temporary file over the current one; fsync the directory. Only
//! then has the change happened, and only then may an admin call say so.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A step of a durable write that failed, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {step}: {source}")]
pub struct WriteError {
    pub path: String,
    pub step: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// Runs `work` (it writes and syncs files) so that an fsync never holds up the data path: on
/// the multi-threaded runtime the worker's other tasks move to another thread meanwhile;
/// elsewhere (a current-thread runtime, a plain thread) it simply runs.
pub fn off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// `<file><suffix>` beside `path` (`kill_switches.json` → `kill_switches.json.prev`).
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The previous generation of `path`.
pub fn previous(path: &Path) -> PathBuf {
    sibling(path, ".prev")
}

/// Makes the directory's entries (a rename, a new file) survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Writes `value` as pretty JSON to `path` durably, keeping the previous generation.
pub fn save<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), WriteError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| WriteError {
        path: path.display().to_string(),
        step: "encoding",
        source: std::io::Error::new(ErrorKind::InvalidData, e),
    })?;
    write_durably(path, &text)
}

/// The `file` label of a state file in `switchyard_state_write_errors_total`: its name, or
/// `incidents` for any record under `incidents/` (one series, not one per incident).
pub fn metric_label(path: &Path) -> String {
    let in_incidents = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|dir| dir == "incidents");
    if in_incidents {
        return "incidents".to_owned();
    }
    path.file_name().map_or_else(
        || "unknown".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Counts one write of a state file that failed (the metric `switchyard_state_write_errors_total`).
pub fn count_write_error(file: String) {
    metrics::counter!(switchyard_core::metrics::STATE_WRITE_ERRORS_TOTAL, "file" => file)
        .increment(1);
}

/// Replaces `path` with `bytes`: temporary file, fsync, previous generation, rename, fsync of
/// the directory. When it returns `Ok`, the new content survives a crash or a power cut. A
/// failure is counted in `switchyard_state_write_errors_total`.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let written = replace(path, bytes);
    if written.is_err() {
        count_write_error(metric_label(path));
    }
    written
}

fn replace(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let fail = |step: &'static str| {
        move |source| WriteError {
            path: path.display().to_string(),
            step,
            source,
        }
    };
    let tmp = sibling(path, ".tmp");
    write_synced(&tmp, bytes).map_err(fail("writing the temporary file"))?;
    keep_previous(path).map_err(fail("keeping the previous generation"))?;
    std::fs::rename(&tmp, path).map_err(fail("renaming the temporary file"))?;
    sync_dir(parent(path)).map_err(fail("syncing the directory"))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes `<file>.prev` the current file's content. A hard link costs no copy and is atomic;
/// the current file stays in place throughout, so a crash here loses nothing.
fn keep_previous(path: &Path) -> std::io::Result<()> {
    let prev = previous(path);
    match std::fs::remove_file(&prev) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    match std::fs::hard_link(path, &prev) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()), // first write: nothing to keep
        // A file system without hard links: copy instead.
        Err(_) => std::fs::copy(path, &prev).and_then(|_| File::open(&prev)?.sync_all()),
    }
}

/// The file's value, or why it cannot be used.
fn parse<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("does not parse: {e}"))
}

/// Reads the JSON in `path`; `None` when it does not exist (nothing saved yet). A file that
/// cannot be read or parsed is replaced by its previous generation, loudly: the unreadable
/// one is kept as `<file>.corrupt` and the previous one is written back in its place. Only
/// when neither can be used is it an error, naming the file and what to do.
pub fn load<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    let reason = match std::fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        _ => match parse::<T>(path) {
            Ok(value) => return Ok(Some(value)),
            Err(reason) => reason,
        },
    };
    let prev = previous(path);
    match std::fs::read(&prev) {
        Ok(bytes) => match serde_json::from_slice::<T>(&bytes) {
            Ok(value) => {
                tracing::error!(
                    file = %path.display(),
                    previous = %prev.display(),
                    %reason,
                    "state file unusable; starting from its previous generation (the changes after it are lost)"
                );
                restore(path, &bytes);
                Ok(Some(value))
            }
            Err(e) => Err(neither(path, &reason, &format!("does not parse: {e}"))),
        },
        Err(e) => Err(neither(path, &reason, &format!("cannot be read: {e}"))),
    }
}

fn neither(path: &Path, reason: &str, prev_reason: &str) -> std::io::Error {
    let prev = previous(path);
    std::io::Error::new(
        ErrorKind::InvalidData,
        format!(
            "{} {reason}, and its previous generation {} cannot be used either ({prev_reason}); \
             move {} aside to start without the state it holds, or repair it",
            path.display(),
            prev.display(),
            path.display(),
        ),
    )
}

/// Puts the previous generation back in place of an unusable file, keeping the unusable one
/// for inspection. Best effort: if it fails, the next start falls back again.
fn restore(path: &Path, good: &[u8]) {
    let corrupt = sibling(path, ".corrupt");
    let kept = std::fs::copy(path, &corrupt).map(drop);
    // Written without rotating: the unusable file must not become the previous generation.
    let tmp = sibling(path, ".tmp");
    let restored = kept
        .and_then(|()| write_synced(&tmp, good))
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| sync_dir(parent(path)));
    match restored {
        Ok(()) => tracing::error!(
            file = %path.display(),
            kept = %corrupt.display(),
            "the unusable state file was kept aside and replaced by its previous generation"
        ),
        Err(error) => {
            tracing::error!(file = %path.display(), %error, "could not replace the unusable state file")
        }
    }
}

/// The list in `path`; empty when nothing was saved yet.
pub fn read_list<T: DeserializeOwned>(path: &Path) -> std::io::Result<Vec<T>> {
    Ok(load::<Vec<T>>(path)?.unwrap_or_default())
}

/// Writes the list durably (see [`write_durably`]); the error names the file and the step.
pub fn write_list<T: Serialize>(path: &Path, list: &[T]) -> Result<(), String> {
    save(path, list).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
