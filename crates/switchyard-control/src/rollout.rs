//! Staged rollouts: each route's stage, start time and outcome, kept in state_dir so a restart
//! resumes where the rollout was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Moving users to green stage by stage.
    Shifting,
    /// Every user is on green.
    Complete,
    /// Every user is back on blue until an operator promotes or green changes.
    RolledBack,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Shifting => "shifting",
            Phase::Complete => "complete",
            Phase::RolledBack => "rolled_back",
        }
    }
}

/// One route's rollout, as persisted and as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutState {
    pub route: String,
    pub blue: String,
    pub green: String,
    /// Percent of users on green at each stage.
    pub stages: Vec<f64>,
    /// Index into `stages` of the stage in force (the last one reached, once complete).
    pub stage: usize,
    /// Percent of users on green now: 0 once rolled back.
    pub percent: f64,
    pub phase: Phase,
    pub started_at_ms: u64,
    pub stage_started_at_ms: u64,
    /// Green requests served since the stage started.
    pub stage_requests: u64,
    /// When it completed or was rolled back.
    pub finished_at_ms: Option<u64>,
    /// Why it ended as it did (the trigger, or the operator's reason).
    pub reason: Option<String>,
    /// Who ended it: `controller`, a rule, or an admin token's name.
    pub by: Option<String>,
    /// Fleet mode: the attempt this is in the fleet's shared state (0 until registered, and
    /// always 0 on a gateway without a fleet).
    #[serde(default)]
    pub epoch: u64,
    /// Fleet mode: decisions the fleet took in this epoch.
    #[serde(default)]
    pub decisions: u64,
}

impl RolloutState {
    /// A rollout of `green` starting now at its first stage.
    pub fn start(route: &str, blue: &str, green: &str, stages: &[f64], now_ms: u64) -> Self {
        let first = stages.first().copied().unwrap_or(100.0);
        let mut state = RolloutState {
            route: route.to_owned(),
            blue: blue.to_owned(),
            green: green.to_owned(),
            stages: stages.to_vec(),
            stage: 0,
            percent: first,
            phase: Phase::Shifting,
            started_at_ms: now_ms,
            stage_started_at_ms: now_ms,
            stage_requests: 0,
            finished_at_ms: None,
            reason: None,
            by: None,
            epoch: 0,
            decisions: 0,
        };
        if first >= 100.0 {
            state.phase = Phase::Complete;
            state.finished_at_ms = Some(now_ms);
        }
        state
    }

    /// The share of users (0..=1) on green.
    pub fn green_share(&self) -> f64 {
        match self.phase {
            Phase::RolledBack => 0.0,
            _ => self.percent / 100.0,
        }
    }

    /// Moves to the next stage; completes at 100 %.
    pub fn advance(&mut self, now_ms: u64) {
        if self.phase != Phase::Shifting {
            return;
        }
        // The next stage is the first above the share in force, so stages changed by a
        // reload never skip one nor move users back.
        self.stage = self
            .stages
            .iter()
            .position(|p| *p > self.percent)
            .unwrap_or(self.stages.len().saturating_sub(1));
        self.percent = self.stages.get(self.stage).copied().unwrap_or(100.0);
        self.stage_started_at_ms = now_ms;
        self.stage_requests = 0;
        if self.percent >= 100.0 {
            self.phase = Phase::Complete;
            self.finished_at_ms = Some(now_ms);
            self.reason = Some("every stage baked without a trigger firing".into());
            self.by = Some("controller".into());
        }
    }

    pub fn roll_back(&mut self, now_ms: u64, reason: &str, by: &str) {
        self.phase = Phase::RolledBack;
        self.percent = 0.0;
        self.finished_at_ms = Some(now_ms);
        self.reason = Some(reason.to_owned());
        self.by = Some(by.to_owned());
    }

    /// Every user to green at once.
    pub fn promote(&mut self, now_ms: u64, reason: &str, by: &str) {
        self.phase = Phase::Complete;
        self.stage = self.stages.len().saturating_sub(1);
        self.percent = 100.0;
        self.stage_started_at_ms = now_ms;
        self.stage_requests = 0;
        self.finished_at_ms = Some(now_ms);
        self.reason = Some(reason.to_owned());
        self.by = Some(by.to_owned());
    }
}

const FILE: &str = "rollouts.json";

/// The rollouts file in state_dir.
#[derive(Debug)]
pub struct RolloutStore {
    path: PathBuf,
}

impl RolloutStore {
    pub fn open(state_dir: &Path) -> std::io::Result<(Self, BTreeMap<String, RolloutState>)> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join(FILE);
        let states = crate::state_file::read_list::<RolloutState>(&path)?
            .into_iter()
            .map(|s| (s.route.clone(), s))
            .collect();
        Ok((RolloutStore { path }, states))
    }

    /// The state_dir the file is in.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Writes every rollout to state_dir, durably (see [`crate::state_file`]), off the async
    /// workers: the controller calls it from its task.
    pub fn save(&self, states: &BTreeMap<String, RolloutState>) -> Result<(), String> {
        let list: Vec<&RolloutState> = states.values().collect();
        crate::state_file::off_the_workers(|| crate::state_file::write_list(&self.path, &list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_advance_to_completion() {
        let mut s = RolloutState::start("r", "b", "g", &[5.0, 25.0, 100.0], 1);
        assert_eq!((s.phase, s.percent), (Phase::Shifting, 5.0));
        s.advance(2);
        assert_eq!((s.stage, s.percent), (1, 25.0));
        s.advance(3);
        assert_eq!(
            (s.phase, s.percent, s.green_share()),
            (Phase::Complete, 100.0, 1.0)
        );
        s.advance(4); // nothing past completion
        assert_eq!(s.stage, 2);
    }

    #[test]
    fn new_stages_continue_from_the_share_in_force() {
        let mut s = RolloutState::start("r", "b", "g", &[5.0, 25.0, 100.0], 1);
        s.advance(2); // 25 %
        s.stages = vec![10.0, 50.0, 100.0];
        s.stage = 0;
        s.advance(3);
        assert_eq!(s.percent, 50.0, "the next stage above 25 %, not 100 %");
        s.stages = vec![10.0, 20.0, 100.0];
        s.advance(4);
        assert_eq!(s.percent, 100.0, "never back below the share in force");
    }

    #[test]
    fn a_rolled_back_rollout_sends_nobody_to_green() {
        let mut s = RolloutState::start("r", "b", "g", &[5.0, 100.0], 1);
        s.roll_back(2, "error_rate", "controller");
        assert_eq!(s.green_share(), 0.0);
        s.advance(3);
        assert_eq!(s.phase, Phase::RolledBack);
        s.promote(4, "fixed", "oncall");
        assert_eq!((s.phase, s.green_share()), (Phase::Complete, 1.0));
    }
}
