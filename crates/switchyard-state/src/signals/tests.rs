use super::*;

#[tokio::test]
async fn the_exporter_follows_the_config_and_keeps_its_queue_while_unchanged() {
    let signals = Signals::new();
    signals.set_telemetry(&Telemetry::default());
    assert!(signals.exporter().is_none(), "no endpoint, no exporter");
    let on = Telemetry {
        otlp_endpoint: Some("http://127.0.0.1:9/v1/traces".parse().unwrap()),
        ..Telemetry::default()
    };
    signals.set_telemetry(&on);
    let first = signals.exporter().unwrap();
    signals.set_telemetry(&on.clone());
    assert!(Arc::ptr_eq(&first, &signals.exporter().unwrap()), "kept");
    signals.set_telemetry(&Telemetry {
        batch_size: 7,
        ..on.clone()
    });
    assert!(
        !Arc::ptr_eq(&first, &signals.exporter().unwrap()),
        "replaced"
    );
    signals.set_telemetry(&Telemetry::default());
    assert!(signals.exporter().is_none(), "turned off");
}

fn spans(window: u64) -> Spans {
    Spans {
        window: std::time::Duration::from_secs(window),
        baseline: std::time::Duration::from_secs(600),
        context_fill: 0.8,
    }
}

#[test]
fn a_prepared_route_changes_nothing_until_it_is_adopted() {
    let signals = Signals::new();
    let live = signals.route("support", spans(60));
    let now = now_secs();
    live.record(
        crate::exchange::tests_support::exchange(),
        now,
        signals.experiments(),
    );
    assert_eq!(live.requests(now, now), 1);
    let prepared = signals.prepare_route("support", spans(120));
    assert!(Arc::ptr_eq(&prepared, &live), "the live signals are reused");
    assert_eq!(live.requests(now, now), 1, "preparing keeps the window");
    let new = signals.prepare_route("billing", spans(60));
    assert!(signals.get("billing").is_none(), "not registered yet");
    signals.adopt_route(&prepared, spans(120));
    assert_eq!(live.requests(now, now), 0, "a new length resets the rings");
    signals.adopt_route(&new, spans(60));
    assert!(signals
        .get("billing")
        .is_some_and(|r| Arc::ptr_eq(&r, &new)));
}
