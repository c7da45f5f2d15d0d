//! Whether replicas can share kill switches through Redis here: the build must accept a
//! `[fleet]` table and `redis-server` must be on PATH. The drills say which they ran on.

use std::path::{Path, PathBuf};

use switchyard_config::Config;

/// What the kill scenarios can run on.
#[derive(Debug, Clone)]
pub enum Support {
    /// Replicas share kill switches through a Redis started from this binary.
    Fleet { redis_server: PathBuf },
    /// One replica only; says why.
    Unavailable(String),
}

impl Support {
    pub fn detect() -> Support {
        let parses = Config::parse(
            &fleet_table("redis://127.0.0.1:6379", "probe"),
            "probe.toml",
            Path::new("."),
        )
        .is_ok();
        let redis = on_path("redis-server");
        match (parses, redis) {
            (true, Some(redis_server)) => Support::Fleet { redis_server },
            (false, _) => {
                Support::Unavailable("this build has no fleet mode (no [fleet] table)".to_owned())
            }
            (true, None) => Support::Unavailable("no redis-server on PATH".to_owned()),
        }
    }
}

/// The `[fleet]` table a replica gets in fleet mode.
pub fn fleet_table(redis_url: &str, instance: &str) -> String {
    format!(
        "[fleet]\nredis_url = \"{redis_url}\"\nnamespace = \"drill\"\ninstance_id = \"{instance}\"\nreconcile_interval = \"1s\"\ncommand_timeout = \"500ms\"\n"
    )
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_table_names_redis_and_the_instance() {
        let table = fleet_table("redis://127.0.0.1:7000", "replica-2");
        assert!(table.starts_with("[fleet]\n"));
        assert!(table.contains("redis_url = \"redis://127.0.0.1:7000\""));
        assert!(table.contains("instance_id = \"replica-2\""));
    }

    #[test]
    fn detection_says_why_fleet_mode_is_missing() {
        match Support::detect() {
            Support::Fleet { redis_server } => assert!(redis_server.is_file()),
            Support::Unavailable(why) => assert!(!why.is_empty()),
        }
    }
}
