use super::*;

fn records() -> BTreeMap<String, SharedRollout> {
    let mut all = BTreeMap::new();
    let local = RolloutState::start("r", "blue", "green", &[10.0, 50.0, 100.0], 1_000);
    assert_eq!(start(&mut all, &local, "g0", 0), Some(1));
    all
}

fn rollback(decisions: Option<u64>, replica: &str) -> Proposal {
    Proposal {
        route: "r".into(),
        epoch: 1,
        decisions,
        decision: Decision::RollBack {
            reason: "error_rate".into(),
            by: "controller".into(),
        },
        replica: replica.into(),
        at_ms: 2_000,
    }
}

#[test]
fn an_automatic_rollback_happens_once_per_epoch() {
    let mut all = records();
    let (before, after) = rollback(Some(0), "g1").apply(&mut all).unwrap();
    assert_eq!(before.phase, Phase::Shifting);
    assert_eq!(after.phase, Phase::RolledBack);
    // The second replica looked at the same moment, on the same count: refused.
    let second = rollback(Some(0), "g2").apply(&mut all).unwrap_err();
    assert!(matches!(second, Refusal::Decided { ref replica, .. } if replica == "g1"));
    assert_eq!(all["r"].decisions, 1);
}

#[test]
fn a_rollback_proposed_before_a_promotion_does_not_undo_it() {
    let mut all = records();
    rollback(Some(0), "g1").apply(&mut all).unwrap();
    let promote = Proposal {
        decisions: None,
        decision: Decision::Promote {
            reason: "fixed".into(),
            by: "oncall".into(),
        },
        ..rollback(None, "g0")
    };
    promote.apply(&mut all).unwrap();
    // A replayed rollback, taken on the count before the promotion.
    assert!(rollback(Some(1), "g2").apply(&mut all).is_err());
    assert_eq!(all["r"].state.phase, Phase::Complete);
    // On the current count, a new failing green rolls back again.
    assert!(rollback(Some(2), "g2").apply(&mut all).is_ok());
}

#[test]
fn a_stage_advances_once() {
    let mut all = records();
    let advance = |from_stage| Proposal {
        decisions: Some(0),
        decision: Decision::Advance { from_stage },
        ..rollback(None, "g0")
    };
    let (_, after) = advance(0).apply(&mut all).unwrap();
    assert_eq!(after.percent, 50.0);
    assert!(
        advance(0).apply(&mut all).is_err(),
        "judged on stage 0 again"
    );
    assert_eq!(all["r"].state.percent, 50.0);
}

#[test]
fn a_new_green_starts_a_new_epoch_and_an_old_config_does_not_undo_it() {
    let mut all = records();
    let same = RolloutState::start("r", "blue", "green", &[10.0, 100.0], 5_000);
    assert_eq!(start(&mut all, &same, "g1", 1), None, "the same attempt");
    let newer = RolloutState::start("r", "blue", "green2", &[10.0, 100.0], 6_000);
    assert_eq!(start(&mut all, &newer, "g1", 1), Some(2));
    let older = RolloutState::start("r", "blue", "green", &[10.0, 100.0], 1_000);
    assert_eq!(start(&mut all, &older, "g2", 2), None);
    assert_eq!(all["r"].state.green, "green2");
    let stale = rollback(Some(0), "g2");
    assert!(matches!(
        stale.apply(&mut all),
        Err(Refusal::OtherEpoch { current: 2, .. })
    ));
}

#[test]
fn a_record_lost_and_registered_again_never_reuses_an_epoch() {
    let mut all = records();
    all.clear(); // rewritten by a replica that does not know rollouts
    let local = RolloutState::start("r", "blue", "green", &[10.0, 100.0], 1_000);
    assert_eq!(start(&mut all, &local, "g1", 7), Some(8));
    assert!(
        rollback(Some(0), "g2").apply(&mut all).is_err(),
        "epoch 1 is gone"
    );
}
