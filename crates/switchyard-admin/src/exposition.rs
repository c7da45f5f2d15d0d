//! The Prometheus recorder: installed once per process, every family described up front.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use switchyard_core::metrics as names;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first call.
pub fn install() -> PrometheusHandle {
    HANDLE.get_or_init(build).clone()
}

fn with_buckets() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    let latency = names::LATENCY_BUCKETS;
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::REQUEST_DURATION_SECONDS.into()),
            latency,
        )?
        .set_buckets_for_metric(Matcher::Full(names::TTFB_SECONDS.into()), latency)?
        .set_buckets_for_metric(
            Matcher::Full(names::TIME_TO_FIRST_TOKEN_SECONDS.into()),
            latency,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::TIME_PER_OUTPUT_TOKEN_SECONDS.into()),
            names::TOKEN_INTERVAL_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::CONTEXT_FILL_RATIO.into()),
            names::FILL_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::ROLLBACK_DECISION_SECONDS.into()),
            names::DECISION_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::GEN_AI_CLIENT_TOKEN_USAGE.into()),
            names::TOKEN_USAGE_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::GEN_AI_SERVER_REQUEST_DURATION_SECONDS.into()),
            latency,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::GEN_AI_SERVER_TIME_TO_FIRST_TOKEN_SECONDS.into()),
            latency,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN_SECONDS.into()),
            names::TOKEN_INTERVAL_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::FLEET_PROPAGATION_SECONDS.into()),
            names::PROPAGATION_BUCKETS,
        )
}

fn build() -> PrometheusHandle {
    let builder = with_buckets().unwrap_or_else(|error| {
        // Only empty bucket lists fail, and ours are constants.
        tracing::error!(%error, "histogram buckets rejected; histograms render as summaries");
        PrometheusBuilder::new()
    });
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    // Another recorder may already be installed (an embedding program's); then our
    // families go to it, and /metrics shows what this handle sees.
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
    }
    describe();
    metrics::gauge!(
        names::BUILD_INFO,
        "version" => crate::build::VERSION,
        "commit" => crate::build::COMMIT
    )
    .set(1.0);
    handle
}

fn describe() {
    describe_fleet();
    describe_traffic();
    describe_operations();
    describe_steering();
    describe_process();
    describe_gen_ai();
}

/// Requests, their timing, tokens, cost and upstream errors: the data path.
fn describe_traffic() {
    describe_counter!(
        names::REQUESTS_TOTAL,
        "Requests proxied, by route, upstream, variant, model and status class."
    );
    describe_histogram!(
        names::REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Total request duration, to the end of the response body."
    );
    describe_histogram!(
        names::TTFB_SECONDS,
        Unit::Seconds,
        "Time to the first byte of the response body."
    );
    describe_histogram!(
        names::TIME_TO_FIRST_TOKEN_SECONDS,
        Unit::Seconds,
        "Time from the request's arrival to the first event carrying model output (streams), or to the complete body."
    );
    describe_histogram!(
        names::TIME_PER_OUTPUT_TOKEN_SECONDS,
        Unit::Seconds,
        "Streams with two output tokens or more: (total - time to first token) / (completion tokens - 1)."
    );
    describe_counter!(
        names::CACHED_TOKENS_TOTAL,
        "The part of prompt tokens read from (kind=read) or written to (kind=write) the provider's prompt cache."
    );
    describe_counter!(
        names::TOKENS_TOTAL,
        "Tokens by direction (prompt | completion), from the upstream's usage."
    );
    describe_histogram!(
        names::CONTEXT_FILL_RATIO,
        "Prompt tokens over the model's context window: as the upstream reported them (source=reported), else the pre-send estimate (source=estimated)."
    );
    describe_counter!(
        names::COST_USD_TOTAL,
        "Cost in US dollars from the configured model prices."
    );
    describe_gauge!(names::IN_FLIGHT_REQUESTS, "Requests being served now.");
    describe_gauge!(names::QUEUED_REQUESTS, "Requests waiting for admission.");
    describe_gauge!(
        names::TOKEN_BUDGET_USED_RATIO,
        "Share of the daily token budget used in the current budget day (it starts at budgets.reset_at, UTC)."
    );
    describe_counter!(names::UPSTREAM_ERRORS_TOTAL, "Upstream failures by class (connect, timeout, reset, status_4xx, status_5xx, or the upstream's own error type).");
}

/// Alerts, unparsed requests, kill switches, endpoint health, shedding, reloads, webhooks.
fn describe_operations() {
    describe_gauge!(
        names::ALERTS_FIRING,
        "1 while an alert fires, by alert and route."
    );
    describe_counter!(
        names::UNPARSED_REQUESTS_TOTAL,
        "LLM requests whose body did not parse; forwarded unchanged."
    );
    describe_gauge!(
        names::KILL_SWITCH_ENGAGED,
        "1 while the route's kill switch is engaged."
    );
    describe_gauge!(names::ENDPOINT_HEALTHY, "1 while the upstream endpoint is in its pool, 0 from its ejection until a request or probe to it succeeds again.");
    describe_counter!(names::SHED_REQUESTS_TOTAL, "Requests refused by admission (rate limits, full queue, queue timeout), by route and reason.");
    describe_counter!(
        names::CONFIG_RELOADS_TOTAL,
        "Config reloads by result (applied, unchanged, rejected)."
    );
    describe_counter!(
        names::GATEWAY_ERRORS_TOTAL,
        "Requests the gateway answered itself before routing, by reason."
    );
    describe_counter!(
        names::WEBHOOK_DELIVERIES_TOTAL,
        "Webhook delivery attempts by webhook (host:port) and result (delivered, retried, failed)."
    );
    describe_counter!(
        names::WEBHOOK_EVENTS_DROPPED_TOTAL,
        "Events not sent to a webhook because its queue was full."
    );
}

/// Where traffic goes: weights, rollouts, rules and experiments.
fn describe_steering() {
    describe_gauge!(
        names::ROUTE_WEIGHT,
        "Share of a route's users (0..1) each upstream serves: blue and green during a rollout."
    );
    describe_gauge!(
        names::ROLLOUT_STAGE,
        "Index of the rollout stage in force (0 = first stage)."
    );
    describe_counter!(
        names::ROLLBACKS_TOTAL,
        "Rollouts sent back to blue, by route and trigger (error_rate, p99_latency, cost_increase, new_error_class, alert:<kind>, rule, operator)."
    );
    describe_histogram!(
        names::ROLLBACK_DECISION_SECONDS,
        Unit::Seconds,
        "From the earliest moment a rollback trigger's condition can have become true to the atomic swap to blue."
    );
    describe_gauge!(
        names::RULES_FIRING,
        "1 while a rule's condition holds on a route."
    );
    describe_counter!(
        names::RULE_ACTIONS_TOTAL,
        "Rules that fired, by rule, route and action."
    );
    describe_counter!(
        names::UNSTICKY_REQUESTS_TOTAL,
        "Requests split (rollout or experiment) without a user key, placed per request instead of per user."
    );
    describe_counter!(
        names::EXPERIMENT_COMPLETIONS_TOTAL,
        "Requests in an experiment arm that finished normally (stop, end_turn, tool call), before application feedback."
    );
    describe_counter!(
        names::EXPERIMENT_FEEDBACK_TOTAL,
        "Outcome reports received on /switchyard/v1/feedback, by experiment, variant and result."
    );
}

/// The process and its outputs: build, telemetry, access log, state files.
fn describe_process() {
    describe_gauge!(
        names::BUILD_INFO,
        "Always 1; the labels say which version and commit is running."
    );
    describe_counter!(
        names::TELEMETRY_SPANS_DROPPED_TOTAL,
        "Spans not exported, by reason: queue_full (the export queue was full) or export_failed (the collector did not take the batch in time)."
    );
    describe_counter!(
        names::ACCESS_LOG_DROPPED_TOTAL,
        "Access lines dropped because the log writer was more than 1 MiB behind."
    );
    describe_counter!(
        names::TELEMETRY_SPANS_EXPORTED_TOTAL,
        "Spans the OTLP collector accepted."
    );
    describe_counter!(
        names::STATE_WRITE_ERRORS_TOTAL,
        "Writes to state_dir that failed (disk full, read-only, I/O error), by file: kill_switches.json, rollouts.json, incidents, audit.jsonl, budget.json, error_classes.json, fleet.json."
    );
}

/// The OpenTelemetry GenAI semantic conventions' instruments, and the experiments' p-value.
fn describe_gen_ai() {
    describe_histogram!(
        names::GEN_AI_CLIENT_TOKEN_USAGE,
        "GenAI semantic conventions' gen_ai.client.token.usage: tokens per answered request, by gen_ai_token_type (input | output)."
    );
    describe_histogram!(
        names::GEN_AI_SERVER_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "GenAI semantic conventions' gen_ai.server.request.duration: model calls, from arrival to the end of the response."
    );
    describe_histogram!(
        names::GEN_AI_SERVER_TIME_TO_FIRST_TOKEN_SECONDS,
        Unit::Seconds,
        "GenAI semantic conventions' gen_ai.server.time_to_first_token."
    );
    describe_histogram!(
        names::GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN_SECONDS,
        Unit::Seconds,
        "GenAI semantic conventions' gen_ai.server.time_per_output_token: complete streams with two output tokens or more."
    );
    describe_gauge!(
        names::EXPERIMENT_P_VALUE,
        "The experiment's always-valid p-value (mSPRT on completion rate); a difference is called at or below the experiment's alpha (default 0.05)."
    );
}

/// The exposition text.
pub fn render(handle: &PrometheusHandle) -> String {
    let text = handle.render();
    // Cost is a float that only grows: recorded as a gauge because `metrics` counters are
    // integers, declared here with the type it has.
    let gauge_line = format!("# TYPE {} gauge", names::COST_USD_TOTAL);
    let counter_line = format!("# TYPE {} counter", names::COST_USD_TOTAL);
    text.replace(&gauge_line, &counter_line)
}

fn describe_fleet() {
    describe_gauge!(
        names::FLEET_REDIS_UP,
        "1 while this replica reaches the fleet's Redis, 0 otherwise (fleet mode only)."
    );
    describe_gauge!(
        names::FLEET_MODE,
        "1 on the replica's current fleet mode: shared (Redis holds the state) or degraded (last known state)."
    );
    describe_gauge!(
        names::FLEET_MEMBERS,
        "Replicas whose heartbeat this replica sees in Redis."
    );
    describe_gauge!(
        names::FLEET_STATE_VERSION,
        "Version of the shared runtime state this replica has applied."
    );
    describe_gauge!(
        names::FLEET_DIVERGENT,
        "1 while this replica carries a local override Redis has not accepted yet."
    );
    describe_counter!(
        names::FLEET_DECISIONS_TOTAL,
        "Rollout decisions this replica proposed to the fleet, by decision and result: won (Redis took it), deduplicated (another replica decided first), local (Redis out of reach; in force here, replayed later), failed."
    );
    describe_histogram!(
        names::FLEET_PROPAGATION_SECONDS,
        Unit::Seconds,
        "From Redis accepting a state change to this replica applying it."
    );
    describe_budget();
}

fn describe_budget() {
    describe_counter!(
        names::BUDGET_REFUSED_TOTAL,
        "Requests refused by an enforced token budget, by route and reason: exhausted (429) or unavailable (503, fail_closed while Redis is out of reach)."
    );
    describe_gauge!(
        names::BUDGET_USED_TOKENS,
        "Tokens settled in the current budget day, as this replica last saw the count (fleet-wide in fleet mode)."
    );
    describe_gauge!(
        names::BUDGET_RESERVED_TOKENS,
        "Tokens reserved by requests still in flight (and by leases in fleet mode), as this replica last saw them."
    );
    describe_counter!(
        names::BUDGET_REDIS_CALLS_TOTAL,
        "Budget scripts run in Redis, by op (reserve, settle, lease) and result (ok, error)."
    );
    describe_gauge!(
        names::BUDGET_BREAKER_OPEN,
        "1 while the budget's circuit breaker keeps Redis off the request path and the outage policy decides."
    );
    describe_counter!(
        names::BUDGET_OUTAGE_ADMISSIONS_TOTAL,
        "Admissions decided by the outage policy while Redis was out of reach, by policy and result (admitted, refused)."
    );
    describe_gauge!(
        names::BUDGET_PENDING_SETTLEMENTS,
        "Settlements and locally spent tokens waiting for Redis to accept them."
    );
}
