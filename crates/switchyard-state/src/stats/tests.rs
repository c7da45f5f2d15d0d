use super::*;

const PEEK_EVERY: u64 = 50;

/// Adds `count` Bernoulli(`p`) trials to `arm`.
fn draw(rng: &mut fastrand::Rng, arm: &mut Arm, p: f64, count: u64) {
    for _ in 0..count {
        arm.trials += 1;
        if rng.f64() < p {
            arm.successes += 1;
        }
    }
}

/// Cumulative counts after every `PEEK_EVERY` trials per arm, up to `per_arm`.
fn peeks(rng: &mut fastrand::Rng, p_a: f64, p_b: f64, per_arm: u64) -> Vec<(Arm, Arm)> {
    let (mut a, mut b) = (Arm::default(), Arm::default());
    let mut looks = Vec::new();
    while a.trials < per_arm {
        draw(rng, &mut a, p_a, PEEK_EVERY);
        draw(rng, &mut b, p_b, PEEK_EVERY);
        looks.push((a, b));
    }
    looks
}

/// The fixed-horizon two-proportion z statistic (pooled variance).
fn z_statistic(a: Arm, b: Arm) -> f64 {
    let (n_a, n_b) = (a.trials as f64, b.trials as f64);
    let pooled = (a.successes + b.successes) as f64 / (n_a + n_b);
    let se = (pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)).sqrt();
    (b.rate().unwrap() - a.rate().unwrap()) / se
}

#[test]
fn peeking_keeps_the_false_positive_rate_under_alpha_where_a_z_test_does_not() {
    let settings = Settings::default();
    let mut rng = fastrand::Rng::with_seed(0x5eed_a0a0);
    let experiments = 400;
    let (mut msprt_calls, mut naive_calls) = (0, 0);
    for _ in 0..experiments {
        let mut test = Sequential::new(settings);
        let (mut msprt_called, mut naive_called) = (false, false);
        for (a, b) in peeks(&mut rng, 0.7, 0.7, 3000) {
            // Called at any look counts: the operator would have acted on it.
            let verdict = test.update(a, b).verdict;
            msprt_called |= matches!(verdict, Verdict::Difference | Verdict::ConfidentDifference);
            naive_called |= a.trials >= settings.min_per_arm && z_statistic(a, b).abs() >= 1.96;
        }
        msprt_calls += usize::from(msprt_called);
        naive_calls += usize::from(naive_called);
    }
    let msprt_rate = msprt_calls as f64 / experiments as f64;
    let naive_rate = naive_calls as f64 / experiments as f64;
    println!("A/A false positives: mSPRT {msprt_rate:.4}, naive z with peeking {naive_rate:.4}");
    assert!(msprt_rate <= settings.alpha, "mSPRT {msprt_rate}");
    assert!(naive_rate > 2.0 * settings.alpha, "naive z {naive_rate}");
}

#[test]
fn a_ten_point_drop_is_confident_by_2500_per_arm() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_b0b0);
    let runs = 100;
    let mut confident = 0;
    for _ in 0..runs {
        let mut test = Sequential::new(Settings::default());
        let mut last = None;
        for (a, b) in peeks(&mut rng, 0.70, 0.60, 2500) {
            last = Some(test.update(a, b));
        }
        let outcome = last.unwrap();
        assert!(outcome.difference.unwrap() < 0.0);
        confident += usize::from(outcome.verdict == Verdict::ConfidentDifference);
    }
    println!("power at 0.70 vs 0.60, 2500 per arm: {confident}/{runs}");
    assert!(confident >= 95, "{confident}/{runs}");
}

#[test]
fn a_four_point_drop_at_600_per_arm_gets_a_verdict() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_c0c0);
    let runs = 100;
    let mut called = 0;
    for _ in 0..runs {
        let mut test = Sequential::new(Settings::default());
        let mut last = None;
        for (a, b) in peeks(&mut rng, 0.70, 0.66, 600) {
            last = Some(test.update(a, b));
        }
        let outcome = last.unwrap();
        assert_ne!(outcome.verdict, Verdict::InsufficientSample);
        assert!((0.0..=1.0).contains(&outcome.p_value));
        called += usize::from(outcome.verdict == Verdict::Difference);
    }
    println!("power at 0.70 vs 0.66, 600 per arm: {called}/{runs}");
}

#[test]
fn nothing_is_called_below_the_minimum_sample() {
    let mut test = Sequential::new(Settings::default());
    let a = Arm {
        trials: 499,
        successes: 499,
    };
    let b = Arm {
        trials: 499,
        successes: 0,
    };
    let outcome = test.update(a, b);
    assert_eq!(outcome.verdict, Verdict::InsufficientSample);
    // The evidence still counts towards the running p-value.
    assert!(outcome.p_value < 1e-6);
    let outcome = test.update(
        Arm {
            trials: 500,
            successes: 500,
        },
        Arm {
            trials: 500,
            successes: 0,
        },
    );
    assert_eq!(outcome.verdict, Verdict::Difference);
}

#[test]
fn an_empty_arm_carries_no_evidence() {
    let full = Arm {
        trials: 1000,
        successes: 700,
    };
    assert_eq!(likelihood_ratio(Arm::default(), full, 0.1), 1.0);
    assert_eq!(likelihood_ratio(full, Arm::default(), 0.1), 1.0);
    assert_eq!(Arm::default().rate(), None);
    let outcome = Sequential::new(Settings::default()).update(Arm::default(), full);
    assert_eq!(outcome.difference, None);
    assert_eq!(outcome.p_value, 1.0);
}

#[test]
fn rates_of_zero_and_one_stay_finite() {
    let arms = [
        (0, 0),
        (1, 0),
        (1, 1),
        (10, 0),
        (10, 10),
        (1000, 0),
        (1000, 1000),
        (u64::MAX, 0),
        (u64::MAX, u64::MAX),
    ]
    .map(|(trials, successes)| Arm { trials, successes });
    for a in arms {
        for b in arms {
            let ratio = likelihood_ratio(a, b, 0.1);
            assert!(ratio.is_finite() && ratio > 0.0, "{a:?} {b:?}: {ratio}");
            let outcome = Sequential::new(Settings::default()).update(a, b);
            assert!((0.0..=1.0).contains(&outcome.p_value), "{a:?} {b:?}");
            assert!(outcome.likelihood_ratio.is_finite());
            if let Some(difference) = outcome.difference {
                assert!(difference.is_finite());
            }
        }
    }
}

#[test]
fn the_running_p_value_never_increases() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_d0d0);
    // A real drop that shows up, then a stretch of identical arms that dilutes it.
    let mut test = Sequential::new(Settings::default());
    let (mut a, mut b) = (Arm::default(), Arm::default());
    let mut previous = test.p_value();
    for step in 0..80 {
        let p_b = if step < 30 { 0.6 } else { 0.7 };
        draw(&mut rng, &mut a, 0.7, PEEK_EVERY);
        draw(&mut rng, &mut b, p_b, PEEK_EVERY);
        let outcome = test.update(a, b);
        assert!(outcome.p_value <= previous);
        assert_eq!(outcome.p_value, test.p_value());
        previous = outcome.p_value;
    }
    assert!(previous < 1.0);
}

#[test]
fn labels() {
    assert_eq!(Verdict::InsufficientSample.as_str(), "insufficient sample");
    assert_eq!(Verdict::NoDifference.as_str(), "no difference detected");
    assert_eq!(Verdict::Difference.as_str(), "difference");
    assert_eq!(
        Verdict::ConfidentDifference.as_str(),
        "confident difference"
    );
}
