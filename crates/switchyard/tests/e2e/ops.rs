//! What deployments rely on: `--version`, `healthcheck`, `completions`, and hot reload of a
//! config mounted the way the kubelet mounts a ConfigMap.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_config::Config;

fn switchyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

#[test]
fn version_names_the_release_and_the_commit() {
    let out = switchyard().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!("switchyard {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text}");
    let commit = text
        .trim()
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap();
    assert!(
        commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{text}"
    );
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F _switchyard"),
        ("zsh", "#compdef switchyard"),
        ("fish", "complete -c switchyard"),
    ] {
        let out = switchyard().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: {text}");
        for command in ["serve", "check", "sim", "ctl", "healthcheck"] {
            assert!(text.contains(command), "{shell} completes {command}");
        }
    }
    let out = switchyard()
        .args(["completions", "powershell"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

async fn healthcheck(url: String) -> (Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let out = switchyard()
            .args(["healthcheck", "--timeout", "2s", "--url", &url])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn healthcheck_exits_0_on_a_serving_gateway_and_1_otherwise() {
    let running = crate::common::gateway("").await;
    let url = format!("http://{}/health", running.traffic);
    assert_eq!(healthcheck(url).await.0, Some(0));
    // A 404 is not healthy.
    let url = format!("http://{}/nothing-here", running.traffic);
    let (code, stderr) = healthcheck(url).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("answered 404"), "{stderr}");
    let closed = running.traffic;
    running.stop().await;
    let (code, stderr) = healthcheck(format!("http://{closed}/health")).await;
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("unhealthy: "), "{stderr}");
}

/// Lays out `dir` as the kubelet does: `..data` -> the current timestamped directory, and
/// `gateway.toml` -> `..data/gateway.toml`. Each update writes a new timestamped directory,
/// points `..data_tmp` at it, renames `..data_tmp` over `..data`, and removes the old one.
fn kubelet_update(dir: &Path, generation: u32, text: &str, previous: Option<u32>) {
    let stamp = format!("..2026_12_04_00_00_0{generation}.000000001");
    std::fs::create_dir(dir.join(&stamp)).unwrap();
    std::fs::write(dir.join(&stamp).join("gateway.toml"), text).unwrap();
    std::os::unix::fs::symlink(&stamp, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if !dir.join("gateway.toml").exists() {
        std::os::unix::fs::symlink("..data/gateway.toml", dir.join("gateway.toml")).unwrap();
    }
    if let Some(old) = previous {
        let old = format!("..2026_12_04_00_00_0{old}.000000001");
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[tokio::test]
async fn a_config_map_update_is_reloaded_through_the_data_symlink() {
    let state = crate::common::temp_dir("configmap-state");
    let body = |rate: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
             [alerts]\nerror_rate = {rate}\n[upstreams.demo]\nsim = {{ profile = \"instant\" }}\n\
             [[routes]]\nname = \"cm\"\nupstream = \"demo\"\n",
            state.display()
        )
    };
    let dir = crate::common::temp_dir("configmap");
    kubelet_update(&dir, 1, &body("0.01"), None);
    let mut config = Config::load(&dir.join("gateway.toml")).unwrap();
    crate::common::http1_from_env(&mut config);
    let running = switchyard::start(config).await.unwrap();
    let version = || async {
        crate::common::get(running.traffic, "/health").await.json()["config_version"].clone()
    };
    let mut before = version().await;
    for (generation, rate) in [(2, "0.02"), (3, "0.03")] {
        kubelet_update(&dir, generation, &body(rate), Some(generation - 1));
        let deadline = Instant::now() + Duration::from_secs(5);
        while version().await == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let now = version().await;
        assert_ne!(now, before, "update {generation} was not reloaded");
        let expected = switchyard_config::version_of(&body(rate));
        assert_eq!(now.as_str(), Some(expected.as_str()));
        before = now;
    }
    running.stop().await;
}
