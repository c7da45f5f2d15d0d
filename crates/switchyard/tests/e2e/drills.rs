//! `switchyard drill`: scenarios run through the binary, report fields checked.

use std::process::Command;

fn switchyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

#[test]
fn drill_list_names_every_scenario_with_its_seed() {
    let out = switchyard().args(["drill", "list"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for (name, seed) in [
        ("pool-exhaustion", "000"),
        ("context-creep", "001"),
        ("prompt-regression", "001 quiz"),
        ("cost-regression", "001"),
        ("new-exception", "001"),
        ("token-explosion", "003"),
        ("latency-creep", "003"),
        ("quality-drop", "003"),
        ("bad-snapshot", "002"),
        ("kill-propagation", "002"),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert!(line.contains(&format!("seed {seed}")), "{line}");
    }
}

#[test]
fn two_scenarios_report_detection_containment_and_no_lost_request_as_json() {
    let out = switchyard()
        .args([
            "drill",
            "run",
            "cost-regression",
            "kill-propagation",
            "--json",
            "--speed",
            "60",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["speed"], 60.0);
    let cost = &report["outcomes"][0];
    assert_eq!(cost["scenario"], "cost-regression");
    assert_eq!(cost["seed"], "001");
    assert_eq!(cost["verdict"], "pass", "{cost:#}");
    assert_eq!(cost["lost"], 0);
    assert!(cost["detected_after"].as_f64().unwrap() > 0.0);
    assert!(cost["contained_after"].as_f64().unwrap() >= cost["detected_after"].as_f64().unwrap());
    assert!(cost["requests"].as_u64().unwrap() > cost["affected"].as_u64().unwrap());
    assert!(
        cost["streamed"].as_u64().unwrap() > 0,
        "some traffic streams"
    );
    assert!(cost["incident"].as_str().unwrap().starts_with("inc-"));

    // Fleet mode is not in every build: the scenario then says so instead of passing.
    let kill = &report["outcomes"][1];
    assert_eq!(kill["scenario"], "kill-propagation");
    match kill["verdict"].as_str().unwrap() {
        "skip" => assert!(kill["note"]
            .as_str()
            .unwrap()
            .starts_with("skipped: fleet mode unavailable")),
        verdict => assert_eq!(verdict, "pass", "{kill:#}"),
    }
}

#[test]
fn an_unknown_scenario_is_refused_with_the_known_names() {
    let out = switchyard()
        .args(["drill", "run", "pool"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("known: all, pool-exhaustion"));
}
