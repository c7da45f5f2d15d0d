//! The verdict of an A/B experiment on two proportions (e.g. completion rate of control vs
//! variant), by an always-valid sequential test.
//!
//! Operators look at experiment dashboards whenever they like, and a fixed-horizon z-test
//! read at every look calls far more false differences than its nominal level. The mixture
//! sequential probability ratio test (mSPRT) of Johari, Pekelis and Walsh ("Always valid
//! inference", 2017; "Peeking at A/B tests", KDD 2017) keeps its false-positive rate at
//! `alpha` however often it is read. With a normal mixing distribution N(0, tau²) on the
//! difference theta = p_b − p_a and the normal approximation theta_hat ~ N(theta, V):
//!
//! ```text
//! Lambda = sqrt(V / (V + tau²)) · exp(tau² · theta_hat² / (2 · V · (V + tau²)))
//! ```
//!
//! A difference is called once Lambda >= 1/alpha, i.e. once the always-valid p-value
//! (the running minimum of 1/Lambda) drops to `alpha`.

/// Exponent cap for the likelihood ratio: beyond e^700 (~1e304) the evidence is
/// overwhelming anyway, and capping keeps the ratio finite when an arm sits at 0 or 1.
const MAX_LOG_RATIO: f64 = 700.0;

/// Successes out of trials for one arm.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Arm {
    pub trials: u64,
    pub successes: u64,
}

impl Arm {
    /// The observed success rate; `None` when there are no trials.
    pub fn rate(&self) -> Option<f64> {
        if self.trials == 0 {
            return None;
        }
        // Counters are sampled without a lock, so successes may briefly run ahead of trials.
        Some(self.successes.min(self.trials) as f64 / self.trials as f64)
    }
}

/// Test settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// The false-positive rate guaranteed however often the test is read.
    pub alpha: f64,
    /// Standard deviation of the normal mixing distribution on p_b − p_a.
    pub tau: f64,
    /// Below this many trials in either arm nothing is called.
    pub min_per_arm: u64,
    /// At or above this many trials in both arms a called difference is "confident".
    pub confident_per_arm: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alpha: 0.05,
            // The mSPRT detects effects fastest near the scale of tau (Johari et al. §4).
            // Completion-rate changes worth acting on are a few to ~10 percentage points,
            // so a prior spread of 0.1 puts its mass there. The false-positive guarantee
            // holds for any tau; only the time to detection depends on it.
            tau: 0.1,
            // The normal approximation is poor on small samples, and a verdict on a few
            // hundred turns invites operators to act on noise.
            min_per_arm: 500,
            confident_per_arm: 2000,
        }
    }
}

/// The verdict shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    InsufficientSample,
    NoDifference,
    Difference,
    ConfidentDifference,
}

impl Verdict {
    /// The label shown on dashboards.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::InsufficientSample => "insufficient sample",
            Verdict::NoDifference => "no difference detected",
            Verdict::Difference => "difference",
            Verdict::ConfidentDifference => "confident difference",
        }
    }
}

/// The result of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The always-valid p-value: the minimum of 1/Lambda over every evaluation so far.
    pub p_value: f64,
    /// Lambda at this evaluation.
    pub likelihood_ratio: f64,
    /// p_b − p_a; `None` when either arm is empty.
    pub difference: Option<f64>,
}

/// ln Lambda, capped at [`MAX_LOG_RATIO`]; 0 (no evidence) when either arm is empty.
fn log_likelihood_ratio(a: Arm, b: Arm, tau: f64) -> f64 {
    let (Some(rate_a), Some(rate_b)) = (a.rate(), b.rate()) else {
        return 0.0;
    };
    let tau2 = tau * tau;
    if !tau2.is_finite() || tau2 <= 0.0 {
        // A mixture concentrated on theta = 0 is the null itself: no evidence either way.
        return 0.0;
    }
    let (n_a, n_b) = (a.trials as f64, b.trials as f64);
    // Variance from the pooled rate under H0 (as in the classic two-proportion test), with
    // half a success added: the per-arm sample variance is 0 when a rate is 0 or 1, which
    // would make any difference infinitely significant, and the half count keeps the pooled
    // rate strictly inside (0, 1) so V > 0 always. Under an alternative the pooled variance
    // is at least the unpooled one, which only makes the test more conservative.
    let successes = rate_a * n_a + rate_b * n_b;
    let pooled = (successes + 0.5) / (n_a + n_b + 1.0);
    let variance = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b);
    let theta = rate_b - rate_a;
    let log_ratio = 0.5 * (variance / (variance + tau2)).ln()
        + tau2 * theta * theta / (2.0 * variance * (variance + tau2));
    if log_ratio.is_nan() {
        return 0.0;
    }
    log_ratio.min(MAX_LOG_RATIO)
}

/// The mixture likelihood ratio for arms a (control) and b (variant); 1.0 when either arm is empty.
pub fn likelihood_ratio(a: Arm, b: Arm, tau: f64) -> f64 {
    log_likelihood_ratio(a, b, tau).exp()
}

/// Keeps the always-valid p-value (running minimum of 1/Lambda) across evaluations.
#[derive(Debug, Clone)]
pub struct Sequential {
    settings: Settings,
    p_value: f64,
}

impl Sequential {
    /// A test with no evaluations yet (p-value 1).
    pub fn new(settings: Settings) -> Self {
        Sequential {
            settings,
            p_value: 1.0,
        }
    }

    /// Evaluates on cumulative counts; updates the running p-value and returns the outcome.
    pub fn update(&mut self, a: Arm, b: Arm) -> Outcome {
        let log_ratio = log_likelihood_ratio(a, b, self.settings.tau);
        // Every look counts, including those before `min_per_arm`: the guarantee is over
        // the whole sequence of looks, so skipping early ones would not make them free.
        let p_now = (-log_ratio).exp().min(1.0);
        self.p_value = self.p_value.min(p_now);

        let smallest = a.trials.min(b.trials);
        let verdict = if smallest < self.settings.min_per_arm {
            Verdict::InsufficientSample
        } else if self.p_value <= self.settings.alpha {
            if smallest >= self.settings.confident_per_arm {
                Verdict::ConfidentDifference
            } else {
                Verdict::Difference
            }
        } else {
            Verdict::NoDifference
        };
        let difference = match (a.rate(), b.rate()) {
            (Some(rate_a), Some(rate_b)) => Some(rate_b - rate_a),
            _ => None,
        };
        Outcome {
            verdict,
            p_value: self.p_value,
            likelihood_ratio: log_ratio.exp(),
            difference,
        }
    }

    /// A new level from the next verdict on. The p-value does not depend on alpha, so the
    /// guarantee holds at the new level for the whole sequence of looks.
    pub fn set_alpha(&mut self, alpha: f64) {
        self.settings.alpha = alpha;
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The always-valid p-value so far.
    pub fn p_value(&self) -> f64 {
        self.p_value
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
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
                msprt_called |=
                    matches!(verdict, Verdict::Difference | Verdict::ConfidentDifference);
                naive_called |= a.trials >= settings.min_per_arm && z_statistic(a, b).abs() >= 1.96;
            }
            msprt_calls += usize::from(msprt_called);
            naive_calls += usize::from(naive_called);
        }
        let msprt_rate = msprt_calls as f64 / experiments as f64;
        let naive_rate = naive_calls as f64 / experiments as f64;
        println!(
            "A/A false positives: mSPRT {msprt_rate:.4}, naive z with peeking {naive_rate:.4}"
        );
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
}
