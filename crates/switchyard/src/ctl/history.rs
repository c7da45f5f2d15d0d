//! What `incidents`, `incident`, `ack` and `audit` print: pure functions of the API's answers.

use super::api::{Audit, Incident, Incidents, KillSwitch};
use super::render::{describe, figures};
use super::text::{age, date_hm, epoch_ms, hms, num, when, wrap, Cell, Table, View};

/// The label column's width in `incident`; values wrap under it.
const LABEL: usize = 10;

/// `switchyard ctl incidents`: newest first, as the server sends them.
pub fn render_incidents(list: &Incidents, view: &View) -> String {
    if list.incidents.is_empty() {
        return "no incidents\n".into();
    }
    let mut table = Table::new(&[
        ("ID", 32),
        ("ROUTE", 16),
        ("KIND", 8),
        ("OPENED", 8),
        ("ACK", 12),
    ]);
    for incident in &list.incidents {
        let ack = incident
            .acknowledged_by
            .clone()
            .unwrap_or_else(|| "no".into());
        table.row(vec![
            Cell::plain(&incident.id),
            Cell::plain(&incident.route),
            Cell::plain(incident.kind.as_deref().unwrap_or("-")),
            Cell::plain(age(incident.opened_at_ms, view.now_ms)),
            Cell::plain(ack),
        ]);
        let mut note = format!("by {}", or_dash(&incident.by));
        if !incident.reason.is_empty() {
            note.push_str(&format!(": {}", incident.reason));
        }
        table.note(&note);
    }
    table.render(view)
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

/// "label     value", the value wrapped and aligned under itself.
fn field(out: &mut String, label: &str, value: &str) {
    let indent = " ".repeat(LABEL);
    let lines = wrap(value, &indent);
    if lines.is_empty() {
        out.push_str(&format!("{label}\n"));
        return;
    }
    for (i, line) in lines.iter().enumerate() {
        if i == 0 {
            out.push_str(&format!("{label:<LABEL$}{}\n", &line[LABEL..]));
        } else {
            out.push_str(&format!("{line}\n"));
        }
    }
}

fn switch_state(switch: Option<&KillSwitch>, view: &View) -> String {
    match switch {
        Some(s) => describe(s, view),
        None => "not killed".into(),
    }
}

fn acknowledgement(incident: &Incident, view: &View) -> String {
    let Some(by) = &incident.acknowledged_by else {
        return format!("no (switchyard ctl ack {})", incident.id);
    };
    let mut out = by.clone();
    if let Some(at) = incident.acknowledged_at_ms {
        out.push_str(&format!(" at {}", when(at, view)));
    }
    if let Some(note) = incident.ack_note.as_deref().filter(|n| !n.is_empty()) {
        out.push_str(&format!(": {note}"));
    }
    out
}

/// `switchyard ctl incident ID`.
pub fn render_incident(incident: &Incident, view: &View) -> String {
    let mut out = String::new();
    field(&mut out, "incident", &incident.id);
    if let Some(kind) = &incident.kind {
        field(&mut out, "kind", kind);
    }
    field(&mut out, "route", &incident.route);
    let opened = format!(
        "{} by {}",
        when(incident.opened_at_ms, view),
        or_dash(&incident.by)
    );
    field(&mut out, "opened", &opened);
    field(&mut out, "reason", or_dash(&incident.reason));
    if let Some(version) = &incident.config_version {
        field(&mut out, "config", version);
    }
    write_trigger(&mut out, incident);
    write_states(&mut out, incident, view);
    write_evidence(&mut out, incident);
    write_alerts(&mut out, incident);
    field(&mut out, "acked", &acknowledgement(incident, view));
    out
}

/// The trigger line: what crossed which threshold over what window.
fn write_trigger(out: &mut String, incident: &Incident) {
    if let Some(trigger) = &incident.trigger {
        let line = format!(
            "{}: {} against {} over {} s",
            trigger.name,
            num(trigger.value),
            num(trigger.threshold),
            trigger.window_secs
        );
        field(out, "trigger", &line);
    }
}

/// Before and after: the rollout's states when a rollout moved, else the kill switch's.
fn write_states(out: &mut String, incident: &Incident, view: &View) {
    match (&incident.rollout_before, &incident.rollout_after) {
        (Some(before), Some(after)) => {
            field(out, "before", &rollout_state(before));
            field(out, "after", &rollout_state(after));
        }
        _ => {
            field(out, "before", &switch_state(incident.before.as_ref(), view));
            field(out, "after", &switch_state(incident.after.as_ref(), view));
        }
    }
}

/// The evidence summary: how much was examined, the models and prompts seen most.
fn write_evidence(out: &mut String, incident: &Incident) {
    if let Some(evidence) = &incident.evidence {
        let seen = |list: &[super::api::Seen]| {
            let shown: Vec<String> = list
                .iter()
                .take(3)
                .map(|s| format!("{} ×{}", s.value, s.count))
                .collect();
            if shown.is_empty() {
                "-".to_owned()
            } else {
                shown.join(", ")
            }
        };
        let examined = format!(
            "{} exchanges in the window, {} sampled (--json shows them)",
            evidence.exchanges_examined,
            evidence.sample.len()
        );
        field(out, "evidence", &examined);
        field(out, "models", &seen(&evidence.response_models));
        field(out, "prompts", &seen(&evidence.prompt_fingerprints));
    }
}

/// The alerts that were firing when the incident opened, one line each.
fn write_alerts(out: &mut String, incident: &Incident) {
    if incident.alerts_firing.is_empty() {
        field(out, "alerts", "none firing then");
    }
    for (i, alert) in incident.alerts_firing.iter().enumerate() {
        let line = format!(
            "{} on {}: {}, since {}",
            alert.alert,
            alert.route,
            figures(alert),
            hms(epoch_ms(alert.since))
        );
        field(out, if i == 0 { "alerts" } else { "" }, &line);
    }
}

/// "green at 25 % (shifting)".
fn rollout_state(r: &super::api::Rollout) -> String {
    format!(
        "{} at {} % of users ({})",
        r.green,
        num(r.percent),
        r.phase.replace('_', " ")
    )
}

/// `switchyard ctl ack ID`.
pub fn render_ack(incident: &Incident) -> String {
    let by = incident.acknowledged_by.as_deref().unwrap_or("you");
    let mut out = format!("{} acknowledged by {by}", incident.id);
    if let Some(at) = incident.acknowledged_at_ms {
        out.push_str(&format!(" at {}", hms(at)));
    }
    out.push_str(".\n");
    if let Some(note) = incident.ack_note.as_deref().filter(|n| !n.is_empty()) {
        for line in wrap(&format!("Note: {note}"), "") {
            out.push_str(&format!("{line}\n"));
        }
    }
    out
}

/// `switchyard ctl audit`: oldest first, as the server sends them.
pub fn render_audit(audit: &Audit, view: &View) -> String {
    if audit.entries.is_empty() {
        return "no audit entries\n".into();
    }
    let mut table = Table::new(&[
        ("AT", 17),
        ("WHO", 14),
        ("ACTION", 7),
        ("TARGET", 32),
        ("RESULT", 8),
    ]);
    for entry in &audit.entries {
        // A log reads best with fixed stamps; the date appears once entries are a day old.
        let at = if view.now_ms.saturating_sub(entry.at_ms) < 86_400_000 {
            hms(entry.at_ms)
        } else {
            date_hm(entry.at_ms)
        };
        let (result, detail) = match entry.result.split_once(':') {
            Some((head, rest)) => (head.trim().to_string(), Some(rest.trim())),
            None => (entry.result.clone(), None),
        };
        table.row(vec![
            Cell::plain(at),
            Cell::plain(or_dash(&entry.who)),
            Cell::plain(or_dash(&entry.action)),
            Cell::plain(entry.target.as_deref().unwrap_or("-")),
            Cell::plain(result),
        ]);
        if let Some(reason) = entry.reason.as_deref().filter(|r| !r.is_empty()) {
            table.note(&format!("reason: {reason}"));
        }
        if let Some(detail) = detail.filter(|d| !d.is_empty()) {
            table.note(&format!("why: {detail}"));
        }
    }
    table.render(view)
}
