//! JSON lists kept in state_dir (kill switches, rollouts): read at start, written whole.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The list in `path`; empty when the file does not exist yet. A file that does not parse is
/// an error naming it: starting without the state it held would silently undo operators' work.
pub fn read_list<T: DeserializeOwned>(path: &Path) -> std::io::Result<Vec<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Writes the list to a temporary file, then renames it over `path`, so a crash mid-write
/// never leaves a torn file behind.
pub fn write_list<T: Serialize>(path: &Path, list: &[T]) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(list).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}
