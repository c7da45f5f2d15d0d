//! A drill's result per scenario, the verdict, and the report as a text table or JSON.

use std::time::Duration;

use serde::Serialize;

/// Whether a scenario showed what it is there to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// Not run: what it needs is missing on this machine or in this build (the note says what).
    Skip,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Skip => "skip",
        }
    }
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: &'static str,
    pub seed: &'static str,
    pub expected: &'static str,
    /// From the injection to the first alert, trigger or rule firing.
    #[serde(serialize_with = "millis")]
    pub detected_after: Option<Duration>,
    /// From the injection to traffic off the bad path (rollback, throttle, kill, shedding).
    #[serde(serialize_with = "millis")]
    pub contained_after: Option<Duration>,
    /// Requests served by the bad path between the injection and containment.
    pub affected: u64,
    /// Requests that got no answer at all (transport failure, timeout, gateway 502/504).
    pub lost: u64,
    /// Requests sent during the scenario, and how many of them streamed.
    pub requests: u64,
    pub streamed: u64,
    /// The incident the gateway opened, if the scenario expects one.
    pub incident: Option<String>,
    pub verdict: Verdict,
    /// Why the verdict is what it is, and anything the reader must know (e.g. a single replica).
    pub note: String,
}

fn millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0).round()),
        None => s.serialize_none(),
    }
}

/// The checks a scenario made; the verdict passes only when every one held and nothing was lost.
#[derive(Debug, Default)]
pub struct Checks {
    failed: Vec<String>,
    notes: Vec<String>,
}

impl Checks {
    /// Records a check; `what` says what should have held.
    pub fn check(&mut self, holds: bool, what: impl Into<String>) {
        if !holds {
            self.failed.push(what.into());
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Pass when every check held and `lost` is 0; the note lists the failed checks first.
    pub fn verdict(mut self, lost: u64) -> (Verdict, String) {
        if lost > 0 {
            self.failed
                .push(format!("{lost} requests lost (must be 0)"));
        }
        let verdict = if self.failed.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        let mut parts: Vec<String> = self
            .failed
            .into_iter()
            .map(|f| format!("FAILED: {f}"))
            .collect();
        parts.extend(self.notes);
        (verdict, parts.join("; "))
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub speed: f64,
    #[serde(serialize_with = "secs")]
    pub took: Duration,
    pub outcomes: Vec<Outcome>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 10.0).round() / 10.0)
}

impl Report {
    /// True when no scenario failed (skips do not fail a run).
    pub fn passed(&self) -> bool {
        self.outcomes.iter().all(|o| o.verdict != Verdict::Fail)
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// A fixed-width table, then one line per scenario with its note.
    pub fn table(&self) -> String {
        let header = [
            "scenario",
            "seed",
            "detected",
            "contained",
            "affected",
            "lost",
            "verdict",
        ];
        let rows: Vec<[String; 7]> = self
            .outcomes
            .iter()
            .map(|o| {
                [
                    o.scenario.to_owned(),
                    o.seed.to_owned(),
                    after(o.detected_after),
                    after(o.contained_after),
                    o.affected.to_string(),
                    o.lost.to_string(),
                    o.verdict.as_str().to_owned(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_owned() + "\n"
        };
        let mut out = line(&header.map(str::to_owned));
        for row in &rows {
            out.push_str(&line(row));
        }
        out.push('\n');
        for o in &self.outcomes {
            out.push_str(&format!(
                "{}: expected: {}. {}\n",
                o.scenario, o.expected, o.note
            ));
        }
        let (pass, fail, skip) = self.counts();
        out.push_str(&format!(
            "\n{pass} passed, {fail} failed, {skip} skipped in {:.1} s at speed {}\n",
            self.took.as_secs_f64(),
            self.speed
        ));
        out
    }

    fn counts(&self) -> (usize, usize, usize) {
        let count = |v| self.outcomes.iter().filter(|o| o.verdict == v).count();
        (
            count(Verdict::Pass),
            count(Verdict::Fail),
            count(Verdict::Skip),
        )
    }
}

/// "1.23 s", "85 ms", or "-" when it never happened.
fn after(d: Option<Duration>) -> String {
    match d {
        None => "-".to_owned(),
        Some(d) if d < Duration::from_secs(1) => format!("{} ms", d.as_millis()),
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(scenario: &'static str, verdict: Verdict) -> Outcome {
        Outcome {
            scenario,
            seed: "001",
            expected: "rollback",
            detected_after: Some(Duration::from_millis(850)),
            contained_after: Some(Duration::from_millis(1250)),
            affected: 12,
            lost: 0,
            requests: 400,
            streamed: 133,
            incident: Some("inc-1".to_owned()),
            verdict,
            note: "ok".to_owned(),
        }
    }

    #[test]
    fn a_lost_request_fails_the_scenario_even_when_every_check_held() {
        let mut checks = Checks::default();
        checks.check(true, "rolled back");
        let (verdict, note) = checks.verdict(1);
        assert_eq!(verdict, Verdict::Fail);
        assert!(note.contains("1 requests lost"), "{note}");
    }

    #[test]
    fn failed_checks_come_before_notes() {
        let mut checks = Checks::default();
        checks.note("single replica");
        checks.check(false, "the incident names the model");
        let (verdict, note) = checks.verdict(0);
        assert_eq!(verdict, Verdict::Fail);
        assert_eq!(note, "FAILED: the incident names the model; single replica");
        let (verdict, _) = Checks::default().verdict(0);
        assert_eq!(verdict, Verdict::Pass);
    }

    #[test]
    fn skips_do_not_fail_a_run_but_a_failure_does() {
        let mut report = Report {
            speed: 60.0,
            took: Duration::from_secs(3),
            outcomes: vec![outcome("a", Verdict::Pass), outcome("b", Verdict::Skip)],
        };
        assert!(report.passed());
        report.outcomes.push(outcome("c", Verdict::Fail));
        assert!(!report.passed());
    }

    #[test]
    fn the_table_aligns_columns_and_the_json_carries_milliseconds() {
        let mut never = outcome("kill-propagation", Verdict::Skip);
        never.detected_after = None;
        never.contained_after = None;
        let report = Report {
            speed: 60.0,
            took: Duration::from_millis(2340),
            outcomes: vec![outcome("cost-regression", Verdict::Pass), never],
        };
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("scenario          seed  detected"),
            "{table}"
        );
        assert!(lines[1].contains("850 ms    1.25 s"), "{table}");
        assert!(lines[2].contains("-         -"), "{table}");
        assert!(table.contains("1 passed, 0 failed, 1 skipped in 2.3 s at speed 60"));
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(json["outcomes"][0]["detected_after"], 850.0);
        assert_eq!(json["outcomes"][0]["verdict"], "pass");
        assert_eq!(
            json["outcomes"][1]["contained_after"],
            serde_json::Value::Null
        );
        assert_eq!(json["took"], 2.3);
    }
}
