use std::sync::Arc;

use super::super::testing::{exchange, feed, rig, Rig, BASE};
use crate::rollout::{Phase, RolloutStore};

fn trigger_of(rig: &Rig) -> Option<String> {
    rig.controller.tick();
    let state = rig.controller.rollout("support").unwrap();
    (state.phase == Phase::RolledBack).then(|| state.reason.unwrap_or_default())
}

#[test]
fn a_slow_green_is_rolled_back_on_p99() {
    let rig = rig(&BASE.replace(
        "min_requests = 20",
        "min_requests = 20\np99_latency = \"2s\"",
    ));
    feed(&rig, 40, |_| exchange("blue", 200, None, 100, 0.01));
    feed(&rig, 19, |_| exchange("green", 200, None, 5_000, 0.01));
    assert_eq!(
        trigger_of(&rig),
        None,
        "19 green requests are not enough to judge"
    );
    feed(&rig, 20, |_| exchange("green", 200, None, 5_000, 0.01));
    let reason = trigger_of(&rig).expect("rolled back");
    assert!(reason.starts_with("p99_latency"), "{reason}");
    assert_eq!(
        rig.controller
            .steering()
            .get("support")
            .unwrap()
            .green_share,
        0.0
    );
}

#[test]
fn a_promotion_is_judged_on_what_green_does_after_it() {
    let rig = rig(BASE);
    feed(&rig, 40, |_| exchange("green", 500, None, 100, 0.01));
    assert!(trigger_of(&rig)
        .expect("rolled back")
        .starts_with("error_rate"));
    rig.controller
        .promote("support", "oncall", "fixed")
        .unwrap();
    // The failures that rolled it back are in this very second: they must not count.
    rig.controller.tick();
    assert_eq!(
        rig.controller.rollout("support").unwrap().phase,
        Phase::Complete
    );
    feed(&rig, 40, |_| exchange("green", 200, None, 100, 0.01));
    rig.controller.tick();
    assert_eq!(
        rig.controller.rollout("support").unwrap().phase,
        Phase::Complete
    );
    feed(&rig, 40, |_| exchange("green", 500, None, 100, 0.01));
    assert!(trigger_of(&rig)
        .expect("a complete rollout still rolls back")
        .starts_with("error_rate"));
}

#[test]
fn a_costlier_green_is_rolled_back_against_blue() {
    let rig = rig(BASE);
    feed(&rig, 30, |_| exchange("blue", 200, None, 100, 0.010));
    feed(&rig, 30, |_| exchange("green", 200, None, 100, 0.014));
    assert_eq!(
        trigger_of(&rig),
        None,
        "40 % more is within the 50 % allowed"
    );
    feed(&rig, 60, |_| exchange("green", 200, None, 100, 0.030));
    let reason = trigger_of(&rig).expect("rolled back");
    assert!(reason.starts_with("cost_increase"), "{reason}");
}

#[test]
fn an_error_class_blue_never_showed_is_rolled_back_above_its_rate() {
    let rig = rig(&BASE.replace("min_requests = 20", "min_requests = 20\nerror_rate = 0.5"));
    // Both sides fail the same way now and then: not new.
    feed(&rig, 200, |i| {
        exchange(
            "blue",
            if i % 50 == 0 { 500 } else { 200 },
            Some("overloaded_error"),
            100,
            0.01,
        )
    });
    feed(&rig, 200, |i| {
        exchange(
            "green",
            if i % 50 == 0 { 500 } else { 200 },
            Some("overloaded_error"),
            100,
            0.01,
        )
    });
    assert_eq!(trigger_of(&rig), None);
    // Green starts raising a class blue never did: 1 in 200 is above 0.1 %.
    feed(&rig, 1, |_| {
        exchange("green", 500, Some("context_length_exceeded"), 100, 0.01)
    });
    let reason = trigger_of(&rig).expect("rolled back");
    assert!(reason.starts_with("new_error_class"), "{reason}");
    let incident = &rig.controller.incidents().list()[0];
    let trigger = incident.trigger.as_ref().unwrap();
    assert_eq!(trigger.figures["error_class"], "context_length_exceeded");
    let evidence = incident.evidence.as_ref().unwrap();
    assert_eq!(evidence.response_models[0].value, "gpt-4o-2026");
    assert_eq!(evidence.prompt_fingerprints[0].value, "0000000000000007");
}

#[test]
fn a_stage_advances_once_baked_on_enough_green_traffic() {
    let rig = rig(&BASE.replace("bake = \"1h\"", "bake = \"1ms\"\nmin_requests = 10"));
    std::thread::sleep(std::time::Duration::from_millis(5)); // the stage bakes
    feed(&rig, 9, |_| exchange("green", 200, None, 100, 0.01));
    rig.controller.tick();
    assert_eq!(rig.controller.rollout("support").unwrap().percent, 50.0);
    feed(&rig, 1, |_| exchange("green", 200, None, 100, 0.01));
    rig.controller.tick();
    let state = rig.controller.rollout("support").unwrap();
    assert_eq!((state.phase, state.percent), (Phase::Complete, 100.0));
    let (_, on_disk) = RolloutStore::open(&rig.dir).unwrap();
    assert_eq!(on_disk["support"].phase, Phase::Complete, "written at once");
}

#[test]
fn an_operator_rollback_answers_once_its_state_is_on_disk() {
    let rig = rig(BASE);
    let shift = rig
        .controller
        .rollback("support", "oncall", "bad answers")
        .unwrap();
    shift.persisted.unwrap();
    assert_eq!(shift.after.by.as_deref(), Some("oncall"));
    let (_, on_disk) = RolloutStore::open(&rig.dir).unwrap();
    assert_eq!(on_disk["support"].phase, Phase::RolledBack);
    let incident = rig.controller.incidents().get(&shift.incident.unwrap());
    let trigger = incident.unwrap().trigger.unwrap();
    assert_eq!(trigger.name, "operator");
    let again = rig.controller.rollback("support", "oncall", "again");
    assert!(matches!(
        again,
        Err(super::ActionError::AlreadyThere { .. })
    ));
}

#[test]
fn a_failed_write_is_reported_and_the_rollback_stays_in_force() {
    let rig = rig(BASE);
    // The state_dir turns into a file: every write fails.
    std::fs::remove_dir_all(&rig.dir).unwrap();
    std::fs::write(&rig.dir, b"not a directory").unwrap();
    let shift = rig.controller.rollback("support", "oncall", "now").unwrap();
    assert!(shift.persisted.is_err());
    assert_eq!(
        rig.controller.rollout("support").unwrap().phase,
        Phase::RolledBack
    );
    std::fs::remove_file(&rig.dir).unwrap();
}

#[test]
fn concurrent_operator_moves_leave_the_last_decision_on_disk() {
    let rig = rig(BASE);
    let controller = Arc::clone(&rig.controller);
    for round in 0..20 {
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let c = Arc::clone(&controller);
                std::thread::spawn(move || {
                    if i == 0 {
                        let _ = c.rollback("support", "a", "down");
                    } else {
                        let _ = c.promote("support", "b", "up");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (_, on_disk) = RolloutStore::open(&rig.dir).unwrap();
        let in_memory = controller.rollout("support").unwrap();
        assert_eq!(on_disk["support"], in_memory, "round {round}");
    }
}
