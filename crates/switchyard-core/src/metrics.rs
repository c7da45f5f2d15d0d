//! Metric names: the product's public surface, defined once.

pub const REQUESTS_TOTAL: &str = "switchyard_requests_total";
pub const REQUEST_DURATION_SECONDS: &str = "switchyard_request_duration_seconds";
pub const TTFB_SECONDS: &str = "switchyard_ttfb_seconds";
pub const TIME_TO_FIRST_TOKEN_SECONDS: &str = "switchyard_time_to_first_token_seconds";
pub const TIME_PER_OUTPUT_TOKEN_SECONDS: &str = "switchyard_time_per_output_token_seconds";
pub const CACHED_TOKENS_TOTAL: &str = "switchyard_cached_tokens_total";
pub const TOKENS_TOTAL: &str = "switchyard_tokens_total";
pub const CONTEXT_FILL_RATIO: &str = "switchyard_context_fill_ratio";
pub const COST_USD_TOTAL: &str = "switchyard_cost_usd_total";
pub const IN_FLIGHT_REQUESTS: &str = "switchyard_in_flight_requests";
pub const QUEUED_REQUESTS: &str = "switchyard_queued_requests";
pub const TOKEN_BUDGET_USED_RATIO: &str = "switchyard_token_budget_used_ratio";
pub const UPSTREAM_ERRORS_TOTAL: &str = "switchyard_upstream_errors_total";
pub const ROUTE_WEIGHT: &str = "switchyard_route_weight";
pub const KILL_SWITCH_ENGAGED: &str = "switchyard_kill_switch_engaged";
pub const ALERTS_FIRING: &str = "switchyard_alerts_firing";
pub const ROLLBACKS_TOTAL: &str = "switchyard_rollbacks_total";
pub const CONFIG_RELOADS_TOTAL: &str = "switchyard_config_reloads_total";
pub const UNPARSED_REQUESTS_TOTAL: &str = "switchyard_unparsed_requests_total";
pub const GATEWAY_ERRORS_TOTAL: &str = "switchyard_gateway_errors_total";
pub const SHED_REQUESTS_TOTAL: &str = "switchyard_shed_requests_total";
pub const ENDPOINT_HEALTHY: &str = "switchyard_endpoint_healthy";
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "switchyard_webhook_deliveries_total";
pub const ROLLBACK_DECISION_SECONDS: &str = "switchyard_rollback_decision_seconds";
pub const ROLLOUT_STAGE: &str = "switchyard_rollout_stage";
pub const RULES_FIRING: &str = "switchyard_rules_firing";
pub const RULE_ACTIONS_TOTAL: &str = "switchyard_rule_actions_total";
pub const UNSTICKY_REQUESTS_TOTAL: &str = "switchyard_unsticky_requests_total";
pub const EXPERIMENT_COMPLETIONS_TOTAL: &str = "switchyard_experiment_completions_total";
pub const EXPERIMENT_FEEDBACK_TOTAL: &str = "switchyard_experiment_feedback_total";
pub const EXPERIMENT_P_VALUE: &str = "switchyard_experiment_p_value";
pub const WEBHOOK_EVENTS_DROPPED_TOTAL: &str = "switchyard_webhook_events_dropped_total";
pub const BUILD_INFO: &str = "switchyard_build_info";
pub const TELEMETRY_SPANS_DROPPED_TOTAL: &str = "switchyard_telemetry_spans_dropped_total";
pub const ACCESS_LOG_DROPPED_TOTAL: &str = "switchyard_access_log_dropped_total";
pub const TELEMETRY_SPANS_EXPORTED_TOTAL: &str = "switchyard_telemetry_spans_exported_total";
pub const STATE_WRITE_ERRORS_TOTAL: &str = "switchyard_state_write_errors_total";

// The OpenTelemetry GenAI semantic conventions' metrics, under our prefix, beside our own
// families (same figures, the conventions' names, labels and buckets).
pub const GEN_AI_CLIENT_TOKEN_USAGE: &str = "switchyard_gen_ai_client_token_usage";
pub const GEN_AI_SERVER_TIME_TO_FIRST_TOKEN_SECONDS: &str =
    "switchyard_gen_ai_server_time_to_first_token_seconds";
pub const GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN_SECONDS: &str =
    "switchyard_gen_ai_server_time_per_output_token_seconds";
pub const GEN_AI_SERVER_REQUEST_DURATION_SECONDS: &str =
    "switchyard_gen_ai_server_request_duration_seconds";

/// Token counts per request, as the GenAI semantic conventions advise for
/// `gen_ai.client.token.usage`: powers of four from 1 to 4^13.
pub const TOKEN_USAGE_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

pub const FLEET_REDIS_UP: &str = "switchyard_fleet_redis_up";
pub const FLEET_MODE: &str = "switchyard_fleet_mode";
pub const FLEET_MEMBERS: &str = "switchyard_fleet_members";
pub const FLEET_STATE_VERSION: &str = "switchyard_fleet_state_version";
pub const FLEET_PROPAGATION_SECONDS: &str = "switchyard_fleet_propagation_seconds";
pub const FLEET_DIVERGENT: &str = "switchyard_fleet_divergent";
pub const FLEET_DECISIONS_TOTAL: &str = "switchyard_fleet_decisions_total";

pub const BUDGET_REFUSED_TOTAL: &str = "switchyard_budget_refused_total";
pub const BUDGET_USED_TOKENS: &str = "switchyard_budget_used_tokens";
pub const BUDGET_RESERVED_TOKENS: &str = "switchyard_budget_reserved_tokens";
pub const BUDGET_REDIS_CALLS_TOTAL: &str = "switchyard_budget_redis_calls_total";
pub const BUDGET_BREAKER_OPEN: &str = "switchyard_budget_breaker_open";
pub const BUDGET_OUTAGE_ADMISSIONS_TOTAL: &str = "switchyard_budget_outage_admissions_total";
pub const BUDGET_PENDING_SETTLEMENTS: &str = "switchyard_budget_pending_settlements";

/// Buckets for the fleet's propagation delay, in seconds: pub/sub takes milliseconds, a
/// lost message costs up to a reconcile interval.
pub const PROPAGATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets for latency histograms, in seconds: fine below a second for the proxy's own
/// overhead, coarse up to the ten-minute agent turns the seeds describe.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

/// Buckets for the context fill ratio: they separate 0.8, 0.9 and 0.95, the alert levels.
/// Rollback decision latency: from well under the controller's 100 ms tick to several seconds.
pub const DECISION_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Time per output token, in seconds: from 1 ms (fast small models) to a second.
pub const TOKEN_INTERVAL_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0,
];

pub const FILL_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0];
