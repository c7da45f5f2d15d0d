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
mod tests;
