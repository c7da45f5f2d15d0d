//! Incidents the controller opens: what set them off, and the evidence of the window — the
//! model versions served, the prompt fingerprints, a sample of exchanges.

use std::collections::HashMap;

use serde_json::json;
use switchyard_config::IncidentSettings;

use super::vocab::Actor;
use super::{Controller, Inner};
use crate::incidents::{AlertView, Evidence, Incident, SampledExchange, Seen, Trigger};
use crate::kill::now_ms;
use crate::rollout::RolloutState;
use crate::signals::now_secs;

impl Controller {
    /// An automatic incident with the window's evidence, not yet recorded; `rollouts` is the
    /// route's rollout before and after, when it has one.
    #[allow(clippy::too_many_arguments)] // one field each of the record; a struct would only rename them
    pub(super) fn draft_incident(
        &self,
        inner: &Inner,
        kind: &str,
        route: &str,
        reason: &str,
        by: &Actor,
        trigger: Trigger,
        rollouts: Option<(&RolloutState, &RolloutState)>,
    ) -> Incident {
        let evidence = self.evidence(route, trigger.window_secs, &inner.plan.incidents);
        Incident {
            id: String::new(),
            kind: kind.to_owned(),
            route: route.to_owned(),
            opened_at_ms: now_ms(),
            reason: reason.to_owned(),
            by: by.to_string(),
            config_version: inner.plan.version.clone(),
            before: None,
            after: None,
            rollout_before: rollouts.map(|(b, _)| json!(b)),
            rollout_after: rollouts.map(|(_, a)| json!(a)),
            trigger: Some(trigger),
            evidence: Some(evidence),
            alerts_firing: self.alerts.firing().iter().map(AlertView::from).collect(),
            acknowledged_by: None,
            acknowledged_at_ms: None,
            ack_note: None,
        }
    }

    /// What the route served in the last `window_secs`: model versions, prompt fingerprints,
    /// and a sample of exchanges.
    pub fn evidence(&self, route: &str, window_secs: u64, settings: &IncidentSettings) -> Evidence {
        let now = now_secs();
        let from = now.saturating_sub(window_secs) + 1;
        let recent = self
            .signals
            .get(route)
            .map(|s| s.recent(from, now))
            .unwrap_or_default();
        let mut models: HashMap<String, u64> = HashMap::new();
        let mut prints: HashMap<String, u64> = HashMap::new();
        for (_, ex) in &recent {
            if let Some(m) = &ex.response_model {
                *models.entry(m.clone()).or_default() += 1;
            }
            if let Some(f) = ex.prompt_fingerprint {
                *prints.entry(format!("{f:016x}")).or_default() += 1;
            }
        }
        let sample = recent
            .iter()
            .rev()
            .take(settings.sample)
            .map(|(at, ex)| sampled(*at, ex, settings.capture_bodies))
            .collect();
        Evidence {
            from_ms: from * 1000,
            to_ms: (now + 1) * 1000,
            exchanges_examined: recent.len() as u64,
            response_models: ranked(models),
            prompt_fingerprints: ranked(prints),
            sample,
        }
    }
}

/// Most seen first, ties by value.
fn ranked(map: HashMap<String, u64>) -> Vec<Seen> {
    let mut list: Vec<Seen> = map
        .into_iter()
        .map(|(value, count)| Seen { value, count })
        .collect();
    list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    list
}

/// One exchange of the sample; bodies only when the config asks for them.
fn sampled(at: u64, ex: &crate::exchange::Exchange, bodies: bool) -> SampledExchange {
    let bodies = ex.bodies.as_ref().filter(|_| bodies);
    SampledExchange {
        at_ms: at * 1000,
        request_id: ex.request_id.to_string(),
        upstream: ex.upstream.to_string(),
        variant: ex.variant.to_string(),
        model: ex.requested_model.clone(),
        response_model: ex.response_model.clone(),
        prompt_fingerprint: ex.prompt_fingerprint.map(|f| format!("{f:016x}")),
        status: ex.status,
        outcome: ex.outcome.as_str().to_owned(),
        error_class: ex.error_label().map(|c| c.to_string()),
        finish_reason: ex.finish_reason.clone(),
        latency_ms: ex.duration.as_secs_f64() * 1000.0,
        ttfb_ms: ex.ttfb.map(|t| t.as_secs_f64() * 1000.0),
        prompt_tokens: ex.prompt_tokens,
        completion_tokens: ex.completion_tokens,
        cost_usd: ex.cost_usd,
        request_body: bodies.map(|b| b.0.clone()),
        response_body: bodies.map(|b| b.1.clone()),
    }
}

#[cfg(test)]
mod tests {
    use switchyard_config::IncidentSettings;

    use super::super::testing::{exchange, feed, rig, BASE};

    #[test]
    fn evidence_ranks_what_the_route_served_and_samples_without_bodies() {
        let rig = rig(BASE);
        feed(&rig, 3, |_| exchange("blue", 200, None, 100, 0.01));
        let settings = IncidentSettings {
            sample: 2,
            ..IncidentSettings::default()
        };
        let evidence = rig.controller.evidence("support", 30, &settings);
        assert_eq!(evidence.exchanges_examined, 3);
        assert_eq!(evidence.response_models[0].value, "gpt-4o-2026");
        assert_eq!(evidence.response_models[0].count, 3);
        assert_eq!(evidence.prompt_fingerprints[0].value, "0000000000000007");
        assert_eq!(evidence.sample.len(), 2);
        assert!(evidence.sample[0].request_body.is_none());
    }

    #[test]
    fn a_rollback_opens_an_incident_on_disk_with_its_trigger() {
        let rig = rig(BASE);
        feed(&rig, 40, |_| exchange("green", 500, None, 100, 0.01));
        rig.controller.tick();
        let incidents = rig.controller.incidents().list();
        assert_eq!(incidents.len(), 1);
        let id = &incidents[0].id;
        let file = rig.dir.join("incidents").join(format!("{id}.json"));
        assert!(file.exists(), "written once the tick returned");
        assert_eq!(incidents[0].by, "controller");
        assert_eq!(incidents[0].trigger.as_ref().unwrap().name, "error_rate");
    }
}
