//! Model downgrades: a rule's `downgrade_model` action waits for an operator's approval
//! (unless automatic); an operator lifts it again. In fleet mode both go through Redis, and
//! the fleet's downgrades come back to every replica.

use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard_config::{EventKind, Rule, RuleAction};

use super::effects::Effects;
use super::vocab::{event, Actor, RuleMoved, RuleStatus};
use super::{lock, ActionError, Controller, Inner, ShiftError};
use crate::fleet::rollouts::SharedDowngrade;
use crate::fleet::{Change, FleetError};
use crate::kill::now_ms;

impl Controller {
    /// The route an operator's action on `rule` is for: the one named, or the only one
    /// `candidates` leaves.
    fn rule_route(
        inner: &Inner,
        rule: &str,
        route: Option<&str>,
        candidates: impl Fn(&str) -> bool,
    ) -> Result<(Rule, String), ActionError> {
        let spec = inner
            .plan
            .rules
            .iter()
            .find(|r| r.name == rule)
            .cloned()
            .ok_or_else(|| ActionError::UnknownRule(rule.to_owned()))?;
        if spec.action != RuleAction::DowngradeModel {
            return Err(ActionError::NotADowngrade(rule.to_owned()));
        }
        let watched: Vec<String> = inner
            .plan
            .routes
            .iter()
            .map(|r| r.name.clone())
            .filter(|r| spec.route.as_deref().is_none_or(|x| x == r))
            .collect();
        let route = match route {
            Some(route) if watched.iter().any(|r| r == route) => route.to_owned(),
            Some(route) => return Err(ActionError::UnknownRoute(route.to_owned())),
            None => {
                let open: Vec<&String> = watched.iter().filter(|r| candidates(r)).collect();
                match open.as_slice() {
                    [only] => (*only).clone(),
                    [] => watched.first().cloned().unwrap_or_default(),
                    _ => {
                        let names = open
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", ");
                        return Err(ActionError::WhichRoute(rule.to_owned(), names));
                    }
                }
            }
        };
        Ok((spec, route))
    }

    /// Whether `rule` waits for an operator's approval on `route`.
    fn awaiting(inner: &Inner, rule: &str, route: &str) -> bool {
        inner
            .rules
            .get(&(rule.to_owned(), route.to_owned()))
            .is_some_and(|f| f.awaiting_approval)
    }

    /// Whether a downgrade is in force on `route`.
    fn downgraded(&self, route: &str) -> bool {
        self.steering
            .get(route)
            .is_some_and(|s| s.downgrade_to.is_some())
    }

    /// An operator approves a downgrade a rule is waiting on; returns the route and model.
    pub fn approve(
        &self,
        rule: &str,
        route: Option<&str>,
        by: &str,
    ) -> Result<(String, String), ActionError> {
        let mut inner = lock(&self.inner);
        let waiting = |r: &str| Self::awaiting(&inner, rule, r);
        let (spec, route) = Self::rule_route(&inner, rule, route, waiting)?;
        let model = spec.downgrade_to.clone().unwrap_or_default();
        let firing = inner
            .rules
            .get_mut(&(rule.to_owned(), route.clone()))
            .filter(|f| f.awaiting_approval)
            .ok_or_else(|| ActionError::NotAwaiting {
                rule: rule.to_owned(),
                route: route.clone(),
            })?;
        firing.awaiting_approval = false;
        self.steering
            .update(&route, |s| s.downgrade_to = Some(Arc::from(model.as_str())));
        inner
            .downgrades
            .insert(route.clone(), (rule.to_owned(), model.clone()));
        drop(inner);
        tracing::warn!(rule, route = %route, by, model = %model, "model downgrade approved");
        let news = moved(rule, RuleStatus::Approved, by, Some(Some(model.clone())));
        self.tell(event(EventKind::Rule, &route, &news));
        Ok((route, model))
    }

    /// An operator lifts the downgrade a rule put in force on a route; returns the route.
    pub fn release(
        &self,
        rule: &str,
        route: Option<&str>,
        by: &str,
    ) -> Result<String, ActionError> {
        let mut inner = lock(&self.inner);
        let in_force = |r: &str| self.downgraded(r);
        let (_, route) = Self::rule_route(&inner, rule, route, in_force)?;
        if !in_force(&route) {
            return Err(ActionError::NotInForce {
                rule: rule.to_owned(),
                route,
            });
        }
        self.steering.update(&route, |s| s.downgrade_to = None);
        inner.downgrades.remove(&route);
        drop(inner);
        tracing::info!(rule, route = %route, by, "model downgrade released");
        let news = moved(rule, RuleStatus::Released, by, None);
        self.tell(event(EventKind::Rule, &route, &news));
        Ok(route)
    }

    /// Fleet mode: an automatic downgrade just put in force here becomes the fleet's, as if
    /// an operator had approved it (by `rule:<name>`), so every replica rewrites the route's
    /// requests until an operator releases it on any replica. While Redis is out of reach it
    /// stays on this replica and is replayed when Redis is back.
    pub(super) fn share_downgrade(&self, rule: &str, route: &str, model: &str) {
        let Some((runtime, _, fleet)) = self.runner() else {
            return;
        };
        let by = Actor::Rule(rule.to_owned()).to_string();
        let change = downgrade_change(rule, route, Some(model), &by);
        runtime.spawn(async move {
            match fleet.downgrade(change.clone()).await {
                Ok(()) | Err(FleetError::Refused(_)) => {}
                Err(error) => {
                    tracing::warn!(%error, "automatic downgrade not shared; kept to replay when Redis is back");
                    fleet.keep_pending(change);
                }
            }
        });
    }

    /// A webhook with no file to write first.
    fn tell(&self, news: crate::notify::Event) {
        let mut effects = Effects::default();
        effects.tell(news);
        let _ = self.carry_out(effects); // nothing to write: always Ok
    }

    /// An operator approves (or lifts) a rule's model downgrade. In fleet mode it is made
    /// through Redis, for every replica, and answered once this replica applied it; `local`
    /// forces it on this replica only. Returns the route and the model now in force.
    pub async fn rule_move(
        &self,
        rule: &str,
        route: Option<&str>,
        by: &str,
        approve: bool,
        local: bool,
    ) -> Result<(String, Option<String>), ShiftError> {
        let single = || -> Result<(String, Option<String>), ActionError> {
            if approve {
                self.approve(rule, route, by).map(|(r, m)| (r, Some(m)))
            } else {
                self.release(rule, route, by).map(|r| (r, None))
            }
        };
        let Some(fleet) = self.fleet().cloned() else {
            return Ok(single()?);
        };
        if local {
            let (route, model) = single()?;
            fleet.keep_pending(downgrade_change(rule, &route, model.as_deref(), by));
            return Ok((route, model));
        }
        let (route, model) = self.check_rule_move(rule, route, approve)?;
        let change = downgrade_change(rule, &route, model.as_deref(), by);
        fleet.downgrade(change).await.map_err(|e| match e {
            FleetError::Refused(_) => ShiftError::Action(ActionError::NotInForce {
                rule: rule.to_owned(),
                route: route.clone(),
            }),
            other => ShiftError::Fleet(other),
        })?;
        let status = if approve {
            RuleStatus::Approved
        } else {
            RuleStatus::Released
        };
        let word = if approve { "approved" } else { "released" };
        tracing::warn!(rule, route = %route, by, status = word, "model downgrade changed for the fleet");
        let news = moved(rule, status, by, Some(model.clone()));
        self.tell(event(EventKind::Rule, &route, &news));
        Ok((route, model))
    }

    /// What an approve or a release would do, checked without doing it.
    fn check_rule_move(
        &self,
        rule: &str,
        route: Option<&str>,
        approve: bool,
    ) -> Result<(String, Option<String>), ActionError> {
        let inner = lock(&self.inner);
        if approve {
            let waiting = |r: &str| Self::awaiting(&inner, rule, r);
            let (spec, route) = Self::rule_route(&inner, rule, route, waiting)?;
            if !waiting(&route) {
                return Err(ActionError::NotAwaiting {
                    rule: rule.to_owned(),
                    route,
                });
            }
            return Ok((route, Some(spec.downgrade_to.unwrap_or_default())));
        }
        let in_force = |r: &str| self.downgraded(r);
        let (_, route) = Self::rule_route(&inner, rule, route, in_force)?;
        if !in_force(&route) {
            return Err(ActionError::NotInForce {
                rule: rule.to_owned(),
                route,
            });
        }
        Ok((route, None))
    }

    /// Puts the downgrades operators approved anywhere in the fleet in force here, and lifts
    /// those the fleet no longer has.
    pub(super) fn adopt_downgrades(
        &self,
        inner: &mut Inner,
        shared: &BTreeMap<String, SharedDowngrade>,
    ) {
        let Some(link) = self.fleet.get() else {
            return;
        };
        let mut applied = lock(&link.downgrades);
        if *applied == *shared {
            return;
        }
        for (route, d) in shared {
            if applied.get(route) == Some(d) || !inner.plan.routes.iter().any(|r| r.name == *route)
            {
                continue;
            }
            self.steering.update(route, |s| {
                s.downgrade_to = Some(Arc::from(d.model.as_str()))
            });
            inner
                .downgrades
                .insert(route.clone(), (d.rule.clone(), d.model.clone()));
            if let Some(firing) = inner.rules.get_mut(&(d.rule.clone(), route.clone())) {
                firing.awaiting_approval = false;
            }
            tracing::info!(route, rule = %d.rule, model = %d.model, by = %d.by, "model downgrade: the fleet's approval applied");
        }
        for (route, d) in applied.iter() {
            if shared.contains_key(route) {
                continue;
            }
            if inner
                .downgrades
                .get(route)
                .is_some_and(|(rule, _)| *rule == d.rule)
            {
                inner.downgrades.remove(route);
                self.steering.update(route, |s| s.downgrade_to = None);
                tracing::info!(route, rule = %d.rule, "model downgrade: lifted by the fleet");
            }
        }
        applied.clone_from(shared);
    }
}

fn moved(
    rule: &str,
    status: RuleStatus,
    by: &str,
    downgrade_to: Option<Option<String>>,
) -> RuleMoved {
    RuleMoved {
        rule: rule.to_owned(),
        status,
        by: Actor::Operator(by.to_owned()),
        downgrade_to,
    }
}

/// The fleet's record of a downgrade approved (`model`) or lifted (`None`).
fn downgrade_change(rule: &str, route: &str, model: Option<&str>, by: &str) -> Change {
    match model {
        Some(model) => Change::Downgrade {
            route: route.to_owned(),
            downgrade: SharedDowngrade {
                rule: rule.to_owned(),
                model: model.to_owned(),
                by: by.to_owned(),
                at_ms: now_ms(),
            },
        },
        None => Change::Lift {
            route: route.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests;
