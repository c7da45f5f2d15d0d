//! What `status`, `kill`, `revive` and `reload` print: pure functions of the API's answers.

use super::api::{Alert, KillReply, KillSwitch, ReloadReply, Route, Status};
use super::text::{age, clip, hms, hms_millis, num, pct, when, Cell, Table, View, WIDTH};

/// "all traffic", "25% of users", "x-tenant=acme", "25% of users with x-tenant=acme".
pub fn scope(switch: &KillSwitch) -> String {
    let segment = switch
        .segment
        .as_ref()
        .map(|s| format!("{}={}", s.header, s.value));
    match (switch.percent, segment) {
        (None, None) => "all traffic".into(),
        (Some(p), None) => format!("{}% of users", num(p)),
        (None, Some(seg)) => seg,
        (Some(p), Some(seg)) => format!("{}% of users with {seg}", num(p)),
    }
}

/// "since 11:30:00Z (4m ago) by oncall", leaving out what the server did not say.
fn engaged(switch: &KillSwitch, view: &View) -> String {
    let mut out = String::new();
    if let Some(at) = switch.engaged_at_ms {
        out.push_str(&format!("since {}", when(at, view)));
    }
    if let Some(by) = switch.by.as_deref().filter(|b| !b.is_empty()) {
        out.push_str(if out.is_empty() { "by " } else { " by " });
        out.push_str(by);
    }
    out
}

/// One sentence about an engaged switch, for notes and incident details.
pub fn describe(switch: &KillSwitch, view: &View) -> String {
    let mut out = format!("killed: {}", scope(switch));
    let engaged = engaged(switch, view);
    if !engaged.is_empty() {
        out.push_str(&format!(", {engaged}"));
    }
    if !switch.reason.is_empty() {
        out.push_str(&format!(": {}", switch.reason));
    }
    out
}

/// The route's upstream, or its weighted split: "billing-a 90% / billing-b 10%".
fn split(route: &Route) -> String {
    let single = matches!(route.weights.as_slice(), [w] if w.upstream == route.upstream);
    if route.weights.is_empty() || single {
        return route.upstream.clone();
    }
    route
        .weights
        .iter()
        .map(|w| format!("{} {}%", w.upstream, num(w.percent)))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// An alert's figure against its threshold, in the alert's own unit.
pub fn figures(alert: &Alert) -> String {
    let (v, t) = (alert.value, alert.threshold);
    match alert.alert.as_str() {
        "p99_latency" => format!("{}s vs {}s", num(v), num(t)),
        "error_rate" | "token_budget" => format!("{} vs {}", pct(v), pct(t)),
        "traffic_spike" => format!("{}x vs {}x", num(v), num(t)),
        "context_fill" => format!("{} req over {}", num(v), pct(t)),
        _ => format!("{} vs {}", num(v), num(t)),
    }
}

fn headline(status: &Status) -> String {
    let mut parts = vec![format!("config {}", status.config_version)];
    if let Some(open) = status.open_incidents {
        let noun = if open == 1 { "incident" } else { "incidents" };
        parts.push(format!("{open} open {noun}"));
    }
    if let Some(tokens) = status.tokens_today {
        parts.push(format!("{tokens} tokens today"));
    }
    parts.join(" · ")
}

fn routes(status: &Status, view: &View) -> String {
    if status.routes.is_empty() {
        return "no routes\n".into();
    }
    let mut table = Table::new(&[
        ("ROUTE", 20),
        ("STATE", 6),
        ("UPSTREAM", 30),
        ("FALLBACK", 16),
    ]);
    for route in &status.routes {
        let state = match &route.kill_switch {
            Some(_) => Cell::loud("KILLED"),
            None => Cell::plain("ok"),
        };
        let fallback = route.fallback.clone().unwrap_or_else(|| "-".into());
        table.row(vec![
            Cell::plain(&route.name),
            state,
            Cell::plain(split(route)),
            Cell::plain(fallback),
        ]);
        if let Some(switch) = &route.kill_switch {
            table.note(&describe(switch, view));
        }
        if let Some(rollout) = &route.rollout {
            table.note(&rollout_line(rollout));
        }
        if let Some(rps) = route.throttle_rps {
            table.note(&format!("throttled by a rule to {} requests/s", num(rps)));
        }
        if let Some(model) = &route.downgrade_to {
            table.note(&format!("model downgraded by a rule to {model}"));
        }
        for e in &route.experiments {
            table.note(&format!(
                "experiment {}: {} % of users in the variant",
                e.name,
                num(e.share * 100.0)
            ));
        }
    }
    table.render(view)
}

/// "rollout of support-green: shifting, stage 2 of 3 (25 % of users), 310 green requests".
fn rollout_line(r: &super::api::Rollout) -> String {
    let mut line = format!(
        "rollout of {}: {}, stage {} of {} ({} % of users on green), {} green requests in the stage",
        r.green,
        r.phase.replace('_', " "),
        r.stage + 1,
        r.stages.len(),
        num(r.percent),
        r.stage_requests
    );
    if let Some(reason) = &r.reason {
        line.push_str(&format!("; {reason}"));
    }
    line
}

/// `switchyard ctl rollback` and `switchyard ctl promote`.
pub fn render_shift(reply: &super::api::ShiftReply, action: &str) -> String {
    let a = &reply.after;
    let mut out = match action {
        "rollback" => format!(
            "{}: ROLLED BACK, every user on blue {} (green {} was at {} %).\n",
            reply.route,
            a.blue,
            a.green,
            num(reply.before.percent)
        ),
        _ => format!(
            "{}: PROMOTED, every user on green {} (was {} at {} %).\n",
            reply.route,
            a.green,
            reply.before.phase.replace('_', " "),
            num(reply.before.percent)
        ),
    };
    if let Some(us) = reply.took_us {
        out.push_str(&format!(
            "In force for new requests (took {}); requests in flight finish where they started.\n",
            took(us)
        ));
    }
    if let Some(id) = &reply.incident {
        out.push_str(&format!("Incident {id} opened.\n"));
    }
    out
}

/// `switchyard ctl approve` and `switchyard ctl release`.
pub fn render_rule(reply: &super::api::RuleReply) -> String {
    match reply.downgrade_to.as_deref() {
        Some(model) => format!(
            "{}: requests are now rewritten to {model} (rule {}); `switchyard ctl release {}` lifts it.\n",
            reply.route, reply.rule, reply.rule
        ),
        None => format!(
            "{}: the model downgrade of rule {} is lifted; requests keep their model.\n",
            reply.route, reply.rule
        ),
    }
}

/// `switchyard ctl experiment`.
pub fn render_experiment(e: &super::api::Experiment) -> String {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{} %", num(v * 100.0)));
    let ms = |v: Option<f64>| {
        v.map_or("-".to_string(), |v| {
            if v < 10.0 {
                format!("{v:.1} ms")
            } else {
                format!("{v:.0} ms")
            }
        })
    };
    let mut out = format!(
        "experiment {} on route {} ({} % of users in the variant)\n\n",
        e.name,
        e.route,
        num(e.share * 100.0)
    );
    out.push_str(&format!(
        "{:<16} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9}\n",
        "VARIANT", "REQUESTS", "ERRORS", "COMPLETED", "P50", "P99", "$/REQ"
    ));
    for arm in &e.arms {
        out.push_str(&format!(
            "{:<16} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9}\n",
            clip(&arm.variant, 16),
            arm.requests,
            pct(arm.error_rate),
            pct(arm.completion_rate),
            ms(arm.latency_p50_ms),
            ms(arm.latency_p99_ms),
            arm.cost_per_request_usd
                .map_or("-".into(), |c| format!("{c:.6}")),
        ));
    }
    out.push_str(&format!(
        "\nverdict on {}: {} (always-valid p = {:.4}",
        e.metric.replace('_', " "),
        e.verdict,
        e.p_value
    ));
    if let Some(d) = e.difference {
        out.push_str(&format!(
            ", variant minus control {} points",
            num(d * 100.0)
        ));
    }
    out.push_str(")\n");
    out
}

fn alerts(firing: &[Alert], view: &View) -> String {
    if firing.is_empty() {
        return "no alerts firing\n".into();
    }
    let noun = if firing.len() == 1 { "alert" } else { "alerts" };
    let mut table = Table::new(&[("ALERT", 14), ("ROUTE", 16), ("VALUE", 22), ("SINCE", 26)]);
    for alert in firing {
        table.row(vec![
            Cell::loud(&alert.alert),
            Cell::plain(&alert.route),
            Cell::plain(figures(alert)),
            Cell::plain(when(super::text::epoch_ms(alert.since), view)),
        ]);
    }
    format!("{} {noun} firing\n{}", firing.len(), table.render(view))
}

/// `switchyard ctl status`.
pub fn render_status(status: &Status, view: &View) -> String {
    let mut out = format!(
        "{}\n\n{}\n{}",
        headline(status),
        routes(status, view),
        alerts(&status.alerts_firing, view)
    );
    if let Some(fleet) = &status.fleet {
        out.push_str(&fleet_members(fleet, &status.config_version));
    }
    for rule in &status.rules_firing {
        let waiting = if rule.awaiting_approval {
            " — awaiting approval (`switchyard ctl approve`)"
        } else {
            ""
        };
        out.push_str(&format!(
            "rule {} on {}: {} {} against {} → {}{waiting}\n",
            rule.rule,
            rule.route,
            rule.metric.as_str(),
            num(rule.value),
            num(rule.threshold),
            rule.action.as_str()
        ));
    }
    out
}

/// The fleet: this replica's mode, then every member with its state version and config hash,
/// flagging what differs from this replica (drift) and local overrides (divergence).
fn fleet_members(fleet: &crate::ctl::api::Fleet, config: &str) -> String {
    let mut out = format!(
        "\nfleet: {} on {}, state version {}{}\n",
        fleet.mode,
        fleet.instance_id,
        fleet.state_version,
        if fleet.divergent {
            ", DIVERGENT (local overrides not in Redis)"
        } else {
            ""
        }
    );
    for m in &fleet.members {
        let mut notes = Vec::new();
        if m.state_version != fleet.state_version {
            notes.push("other state");
        }
        if m.config_version != config {
            notes.push("config drift");
        }
        if m.divergent {
            notes.push("divergent");
        }
        out.push_str(&format!(
            "  {:<14} v{:<5} {}  {}\n",
            m.instance_id,
            m.state_version,
            m.config_version,
            notes.join(", ")
        ));
    }
    out
}

/// "14 µs", "2.3 ms".
fn took(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else {
        format!("{} ms", num(us as f64 / 1000.0))
    }
}

/// "at 11:30:00.123Z, in force for new requests (took 14 µs)." after `head`, on the same line
/// when that fits a phone's width, else on the next, so the terminal never splits a word.
fn in_force(head: &str, head_width: usize, at_ms: u64, took_us: Option<u64>) -> String {
    let mut tail = "in force for new requests".to_string();
    if let Some(us) = took_us {
        tail.push_str(&format!(" (took {})", took(us)));
    }
    let at = format!("at {},", hms_millis(at_ms));
    let joiner = if head_width + at.len() + tail.chars().count() + 3 <= WIDTH {
        " "
    } else {
        "\n"
    };
    format!("{head} {at}{joiner}{tail}.\n")
}

/// `switchyard ctl kill`.
pub fn render_kill(reply: &KillReply, view: &View) -> String {
    let scope = reply
        .kill_switch
        .as_ref()
        .map_or("all traffic".into(), scope);
    let plain = format!("{} KILLED ({scope})", reply.route);
    let head = format!("{} {} ({scope})", reply.route, view.loud("KILLED"));
    let took_us = reply.took_us;
    let mut out = in_force(&head, plain.chars().count(), reply.effective_at_ms, took_us);
    if let Some(before) = &reply.before {
        out.push_str(&format!(
            "It replaces the earlier kill ({}, {}).\n",
            self::scope(before),
            engaged(before, view)
        ));
    }
    if let Some(id) = reply.incident.as_deref().filter(|i| !i.is_empty()) {
        out.push_str(&format!("Incident {id} opened.\n"));
    }
    out.push_str(&format!("Revive: switchyard ctl revive {}\n", reply.route));
    out
}

/// `switchyard ctl revive`.
pub fn render_revive(reply: &KillReply) -> String {
    let Some(before) = &reply.before else {
        return format!(
            "{} was not killed; nothing changed ({}).\n",
            reply.route,
            hms_millis(reply.effective_at_ms)
        );
    };
    let head = format!("{} revived", reply.route);
    let width = head.chars().count();
    let mut out = in_force(&head, width, reply.effective_at_ms, reply.took_us);
    let mut had = format!("It had been killed ({})", scope(before));
    if let Some(at) = before.engaged_at_ms {
        had.push_str(&format!(
            " since {} (for {})",
            hms(at),
            age(at, reply.effective_at_ms).trim_end_matches(" ago")
        ));
    }
    out.push_str(&had);
    out.push_str(".\n");
    out
}

/// What to say on stderr after a kill or revive that was not all saved to disk.
pub fn persistence_warning(reply: &KillReply) -> Option<String> {
    let detail = reply.warning.as_deref().filter(|w| !w.is_empty());
    if reply.persisted != Some(false) {
        return detail.map(|w| format!("warning: {w}"));
    }
    let mut out = if reply.engaged {
        format!(
            "warning: the kill on {} is in force but was NOT saved to disk: a restart would \
             lift it.",
            reply.route
        )
    } else {
        format!(
            "warning: {} is revived but that was NOT saved to disk: a restart would bring \
             the kill back.",
            reply.route
        )
    };
    out.push_str(" Check the gateway's log and its state_dir (disk full? permissions?).");
    if let Some(detail) = detail {
        out.push_str(&format!("\nThe server says: {detail}"));
    }
    Some(out)
}

/// The server's own warning on an answer that succeeded (an audit entry not written).
pub fn server_warning(warning: Option<&String>) -> Option<String> {
    warning
        .filter(|w| !w.is_empty())
        .map(|w| format!("warning: {w}"))
}

/// `switchyard ctl reload`, when applied.
pub fn render_reload(reply: &ReloadReply) -> String {
    match reply.previous_version.as_deref() {
        // Common after an edit: the file watcher applied it before this reload came in.
        Some(old) if old == reply.config_version => format!(
            "config {} in force (unchanged: the file matches what is serving)\n",
            reply.config_version
        ),
        Some(old) => format!("config {} applied (was {old})\n", reply.config_version),
        None => format!("config {} applied\n", reply.config_version),
    }
}
