use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::Config;
use switchyard_state::Signals;

use crate::boards::Boards;
use crate::health::HealthPolicy;
use crate::table::Table;

const POLICY: HealthPolicy = HealthPolicy {
    unhealthy_after: 3,
    eject_for: Duration::from_secs(10),
};

fn config(text: &str) -> Config {
    Config::parse(text, "t.toml", std::path::Path::new(".")).unwrap()
}

fn table(boards: &Boards, endpoints: &str) -> Table {
    let text = format!("[upstreams.up]\nendpoints = [{endpoints}]\n");
    boards.prepare(&config(&text), &HashMap::new()).unwrap()
}

#[test]
fn health_outlives_a_table_for_endpoints_still_configured() {
    let boards = Boards::new(Signals::new());
    let first = table(&boards, "\"http://a:1\", \"http://b:1\"");
    boards.reconcile(&first);
    let up = &first.upstreams[0];
    for _ in 0..3 {
        up.health_of(1).unwrap().failure(POLICY);
    }
    // b is listed first now: health follows the URL, not the position.
    let second = table(&boards, "\"http://b:1\", \"http://a:1\", \"http://c:1\"");
    boards.reconcile(&second);
    let up2 = &second.upstreams[0];
    assert!(Arc::ptr_eq(
        up.health_of(1).unwrap(),
        up2.health_of(0).unwrap()
    ));
    assert!(!up2.health_of(0).unwrap().healthy());
    assert!(up2.health_of(1).unwrap().healthy());
    // An endpoint that leaves the config and comes back starts over.
    boards.reconcile(&table(&boards, "\"http://a:1\""));
    let third = table(&boards, "\"http://a:1\", \"http://b:1\"");
    boards.reconcile(&third);
    assert!(third.upstreams[0].health_of(1).unwrap().healthy());
}

/// A route `support` with one experiment `try` for `share` of its users (and a second route when
/// `billing`), on an upstream that is an embedded simulator when `sim`.
fn experiment_config(share: f64, billing: bool, sim: bool) -> Config {
    let target = if sim {
        "sim = { profile = \"healthy\" }"
    } else {
        "url = \"http://127.0.0.1:9\""
    };
    let mut text = format!(
        "[upstreams.up]\n{target}\n\n[[routes]]\nname = \"support\"\nmatch = {{ path_prefix = \"/\" }}\n\
         upstream = \"up\"\n[[routes.experiments]]\nname = \"try\"\nshare = {share}\n\
         variant = {{ set_model = \"small\" }}\n"
    );
    if billing {
        text.push_str(
            "\n[[routes]]\nname = \"billing\"\nmatch = { path_prefix = \"/b/\" }\nupstream = \"up\"\n",
        );
    }
    config(&text)
}

#[test]
fn preparing_changes_nothing_in_force_until_the_table_is_reconciled() {
    let signals = Signals::new();
    let boards = Boards::new(signals.clone());
    let first = boards
        .prepare(&experiment_config(0.1, false, false), &HashMap::new())
        .unwrap();
    assert!(signals.get("support").is_none(), "prepared, not adopted");
    assert!(signals.experiments().get("try").is_none());
    boards.reconcile(&first);
    let live = signals.get("support").unwrap();
    let stats = signals.experiments().get("try").unwrap();
    assert!((stats.view().share - 0.10).abs() < 1e-9);

    // A table that fails to prepare (its simulator is not running) leaves everything as it was.
    let failed = boards.prepare(&experiment_config(0.5, true, true), &HashMap::new());
    assert!(failed.is_err());
    // One that prepares, but is never put in force, too.
    let second = boards
        .prepare(&experiment_config(0.5, true, false), &HashMap::new())
        .unwrap();
    assert!(signals.get("billing").is_none());
    assert!((stats.view().share - 0.10).abs() < 1e-9, "share unchanged");
    assert!(
        Arc::ptr_eq(&second.routes[0].signals, &live),
        "same signals"
    );
    assert!(Arc::ptr_eq(&second.routes[0].variants[0].stats, &stats));

    boards.reconcile(&second);
    assert!(signals.get("billing").is_some());
    assert!((stats.view().share - 0.50).abs() < 1e-9, "share in force");

    // An experiment no longer configured leaves the registry with its figures.
    let without = boards
        .prepare(
            &config(
                "[upstreams.up]\nurl = \"http://127.0.0.1:9\"\n\n[[routes]]\nname = \"support\"\n\
                 match = { path_prefix = \"/\" }\nupstream = \"up\"\n",
            ),
            &HashMap::new(),
        )
        .unwrap();
    assert!(signals.experiments().get("try").is_some());
    boards.reconcile(&without);
    assert!(signals.experiments().get("try").is_none());
}
