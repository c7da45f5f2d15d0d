//! Per-route sliding windows fed by every exchange, and the daily token budget.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::exchange::Exchange;
use crate::experiment::{
    upstream_key, ExperimentStats, Experiments, Feedback, FeedbackError, Joined,
};
use crate::handles::{Handles, LabelMap, LabelSet};
use crate::telemetry::SpanExporter;
use crate::tokens::Budget;
use crate::window::{Bucket, CountRing, Ring};
use switchyard_config::Telemetry;

/// Seconds since the Unix epoch: windows are aligned to wall-clock seconds, and so is the
/// daily budget's day.
pub fn now_secs() -> u64 {
    switchyard_core::clock::system_now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the data path down with it: the windows are plain
    // counters, still usable after a poisoning.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Exchanges kept per route for incident evidence.
pub const RECENT: usize = 512;

/// One upstream's windows on a route: what blue and green are judged by.
#[derive(Debug)]
struct Side {
    detail: Ring,
    /// Exchanges recorded since the gateway started.
    total: u64,
    /// The first exchange recorded since the controller last looked: the earliest moment a
    /// condition it finds true can have become true.
    first_since_look: Option<Instant>,
}

#[derive(Debug)]
struct Windows {
    detail: Ring,
    counts: CountRing,
    handles: LabelMap<LabelSet, Handles>,
    sides: LabelMap<Arc<str>, Side>,
    recent: VecDeque<(u64, Exchange)>,
    /// Per upstream: the error classes it produced on this route and the last second it
    /// did, kept across reloads (and restarts, through the controller's history file) so a
    /// rollout can tell a class blue knows from a new one.
    produced: HashMap<Arc<str>, Vec<(Arc<str>, u64)>>,
    /// (detail span, baseline) the rings were sized for.
    spans: (Duration, Duration),
}

/// One route's windows. The compiled route holds an `Arc` to it, so the data path records
/// without a map lookup, and a reload that keeps the route's name keeps its history.
#[derive(Debug)]
pub struct RouteSignals {
    name: Arc<str>,
    /// Names this route in remembered requests, so feedback finds it without a reference.
    id: u64,
    /// A rule judges this route by feedback: remember its requests even without experiments.
    takes_feedback: AtomicBool,
    /// The second these signals started: history before it is unknown, not zero.
    born: u64,
    fill_threshold_bits: AtomicU64,
    /// Bumped whenever an error class is noted, so the history is saved only when it moved.
    produced_changes: Arc<AtomicU64>,
    /// Read without the windows' lock: experiments keep their own.
    experiments: arc_swap::ArcSwap<Vec<Arc<ExperimentStats>>>,
    windows: Mutex<Windows>,
}

impl RouteSignals {
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn fill_threshold(&self) -> f64 {
        f64::from_bits(self.fill_threshold_bits.load(Ordering::Relaxed))
    }

    /// Adds one exchange to the current second and emits its metric samples.
    pub fn record(&self, exchange: Exchange, now: u64, experiments: &Experiments) {
        let over = exchange
            .context_fill
            .is_some_and(|fill| fill > self.fill_threshold());
        let set = LabelSet::of(&exchange);
        let class = exchange
            .is_error()
            .then(|| exchange.error_label())
            .flatten();
        let running = self.experiments.load();
        let takes_feedback = self.takes_feedback.load(Ordering::Relaxed);
        if !running.is_empty() || takes_feedback {
            experiments.record(self.id, &running, &exchange, takes_feedback);
        }
        let mut windows = lock(&self.windows);
        match windows.handles.get_mut(&set) {
            Some(handles) => handles.emit(&exchange),
            None => {
                let mut handles = Handles::new(&self.name, &set);
                handles.emit(&exchange);
                windows.handles.insert(set, handles);
            }
        }
        windows.counts.add(now, 1);
        add(windows.detail.bucket(now), &exchange, over, class.as_ref());
        if !exchange.refused {
            self.add_side(&mut windows, &exchange, now, over, class.as_ref());
        }
        if windows.recent.len() == RECENT {
            windows.recent.pop_front();
        }
        windows.recent.push_back((now, exchange));
    }

    /// The upstream's own windows on this route: what blue and green are judged by.
    fn add_side(
        &self,
        windows: &mut Windows,
        exchange: &Exchange,
        now: u64,
        over: bool,
        class: Option<&Arc<str>>,
    ) {
        let span = windows.spans.0;
        let side = match windows.sides.get_mut(&exchange.upstream) {
            Some(side) => side,
            None => windows
                .sides
                .entry(exchange.upstream.clone())
                .or_insert_with(|| Side {
                    detail: Ring::new(span),
                    total: 0,
                    first_since_look: None,
                }),
        };
        side.first_since_look
            .get_or_insert_with(switchyard_core::clock::now);
        side.total += 1;
        add(side.detail.bucket(now), exchange, over, class);
        if let Some(class) = class {
            note_produced(&mut windows.produced, &exchange.upstream, class, now);
            self.produced_changes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The error classes `upstream` produced on this route, with the last second it did.
    pub fn produced(&self, upstream: &str) -> Vec<(Arc<str>, u64)> {
        lock(&self.windows)
            .produced
            .get(upstream)
            .cloned()
            .unwrap_or_default()
    }

    /// Every (upstream, class, last second) this route remembers.
    fn produced_all(&self) -> Vec<(Arc<str>, Arc<str>, u64)> {
        let windows = lock(&self.windows);
        let mut all = Vec::new();
        for (upstream, classes) in &windows.produced {
            for (class, at) in classes {
                all.push((upstream.clone(), class.clone(), *at));
            }
        }
        all
    }

    /// Adds remembered classes (from the history file); the later second wins.
    fn restore_produced(&self, upstream: &str, class: &str, at: u64) {
        let mut windows = lock(&self.windows);
        note_produced(
            &mut windows.produced,
            &Arc::from(upstream),
            &Arc::from(class),
            at,
        );
    }

    /// Whether a rule judges this route by feedback (`feedback_score`, `completion_rate`).
    /// The context-fill threshold and window spans from now on. A new window length needs
    /// rings of the new size; the history of the old ones is dropped rather than misread at
    /// the wrong length.
    fn set_spans(&self, spans: Spans) {
        self.fill_threshold_bits
            .store(spans.context_fill.to_bits(), Ordering::Relaxed);
        let mut windows = lock(&self.windows);
        if windows.spans != (spans.window, spans.baseline) {
            windows.detail = Ring::new(spans.window);
            windows.counts = CountRing::new(spans.window + spans.baseline);
            windows.sides.clear();
            windows.spans = (spans.window, spans.baseline);
        }
    }

    pub fn set_takes_feedback(&self, yes: bool) {
        self.takes_feedback.store(yes, Ordering::Relaxed);
    }

    /// An application's report on one of this route's requests, counted in the current
    /// second of the route's window and of the upstream that answered.
    fn add_feedback(&self, joined: &Joined, report: Feedback, now: u64) {
        let adjust = match (joined.completed, report.success) {
            (true, false) => -1,
            (false, true) => 1,
            _ => 0,
        };
        let apply = |bucket: &mut Bucket| {
            bucket.completion_adjust += adjust;
            if let Some(score) = report.score {
                bucket.score_sum += score;
                bucket.score_n += 1;
            }
        };
        let mut windows = lock(&self.windows);
        apply(windows.detail.bucket(now));
        let side = windows
            .sides
            .iter_mut()
            .find(|(name, _)| upstream_key(name) == joined.upstream);
        if let Some((_, side)) = side {
            apply(side.detail.bucket(now));
        }
    }

    /// The experiments running on this route from now on.
    pub fn set_experiments(&self, experiments: Vec<Arc<ExperimentStats>>) {
        self.experiments.store(Arc::new(experiments));
    }

    /// One upstream on this route over seconds `from..=to`; the look resets
    /// `first_since_look`.
    pub fn side(&self, upstream: &str, from: u64, to: u64) -> SideLook {
        let mut windows = lock(&self.windows);
        match windows.sides.get_mut(upstream) {
            Some(side) => SideLook {
                window: side.detail.sum(from, to),
                first_since_look: side.first_since_look.take(),
                total: side.total,
            },
            None => SideLook::default(),
        }
    }

    /// One upstream on this route over seconds `from..=to`, without counting as a look.
    pub fn side_window(&self, upstream: &str, from: u64, to: u64) -> Bucket {
        let windows = lock(&self.windows);
        windows
            .sides
            .get(upstream)
            .map(|side| side.detail.sum(from, to))
            .unwrap_or_default()
    }

    /// Every upstream of this route over seconds `from..=to`, together: the route's traffic
    /// without the answers the gateway made for reasons of its own.
    pub fn upstream_window(&self, from: u64, to: u64) -> Bucket {
        let windows = lock(&self.windows);
        let mut total = Bucket::default();
        for side in windows.sides.values() {
            total.merge(&side.detail.sum(from, to));
        }
        total
    }

    /// Forgets one upstream's windows on this route: a promoted or new green starts with a
    /// clean slate instead of the failures that rolled it back.
    pub fn reset_side(&self, upstream: &str) {
        lock(&self.windows).sides.remove(upstream);
    }

    /// The most recent exchanges recorded in seconds `from..=to`, oldest first.
    pub fn recent(&self, from: u64, to: u64) -> Vec<(u64, Exchange)> {
        lock(&self.windows)
            .recent
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .cloned()
            .collect()
    }

    /// The first second these signals cover.
    pub fn born(&self) -> u64 {
        self.born
    }

    /// The detail of seconds `from..=to`.
    pub fn window(&self, from: u64, to: u64) -> Bucket {
        lock(&self.windows).detail.sum(from, to)
    }

    /// Requests in seconds `from..=to` (may reach back further than the detail window).
    pub fn requests(&self, from: u64, to: u64) -> u64 {
        lock(&self.windows).counts.requests(from, to)
    }
}

/// Classes remembered per upstream and route; past this many, the oldest is forgotten.
const PRODUCED_PER_UPSTREAM: usize = 64;

fn note_produced(
    produced: &mut HashMap<Arc<str>, Vec<(Arc<str>, u64)>>,
    upstream: &Arc<str>,
    class: &Arc<str>,
    at: u64,
) {
    let classes = match produced.get_mut(upstream) {
        Some(classes) => classes,
        None => produced.entry(upstream.clone()).or_default(),
    };
    if let Some(entry) = classes.iter_mut().find(|(c, _)| c == class) {
        entry.1 = entry.1.max(at);
        return;
    }
    if classes.len() >= PRODUCED_PER_UPSTREAM {
        if let Some(oldest) = (0..classes.len()).min_by_key(|&i| classes[i].1) {
            classes.swap_remove(oldest);
        }
    }
    classes.push((class.clone(), at));
}

/// One remembered (route, upstream, error class), as the history file holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducedClass {
    pub route: String,
    pub upstream: String,
    pub class: String,
    /// Unix seconds of the last exchange of this class.
    pub last_seen: u64,
}

/// What the controller reads of one upstream on a route.
#[derive(Debug, Clone, Default)]
pub struct SideLook {
    pub window: Bucket,
    /// When the first exchange since the previous look was recorded.
    pub first_since_look: Option<Instant>,
    /// Exchanges since the gateway started.
    pub total: u64,
}

fn add(bucket: &mut Bucket, exchange: &Exchange, over: bool, class: Option<&Arc<str>>) {
    bucket.requests += 1;
    bucket.answered += u64::from((200..300).contains(&exchange.status));
    bucket.errors += u64::from(exchange.is_error());
    bucket.tokens += exchange.prompt_tokens + exchange.completion_tokens;
    bucket.fill_over += u64::from(over);
    bucket.latency.record(exchange.alert_latency());
    bucket.cost_usd += exchange.cost_usd;
    bucket.completed += u64::from(exchange.completed());
    if let Some(fill) = exchange.context_fill {
        bucket.fill_sum += fill;
        bucket.fill_n += 1;
    }
    if let Some(class) = class {
        bucket.add_class(class, 1);
    }
}

/// Window spans: the detail window (the longest any alert, trigger or rule reads) and the
/// baseline (traffic spikes).
#[derive(Debug, Clone, Copy)]
pub struct Spans {
    pub window: Duration,
    pub baseline: Duration,
    pub context_fill: f64,
}

/// All routes' signals, keyed by route name, and the gateway-wide token budget.
#[derive(Debug, Default)]
pub struct Signals {
    routes: Mutex<HashMap<Arc<str>, Arc<RouteSignals>>>,
    budget: Budget,
    queued: AtomicU64,
    experiments: Experiments,
    next_route_id: AtomicU64,
    produced_changes: Arc<AtomicU64>,
    /// History file entries of routes not made yet: taken when the route is.
    produced_pending: Mutex<Vec<ProducedClass>>,
    /// Where sampled exchanges' spans go, when `[telemetry] otlp_endpoint` is set.
    exporter: arc_swap::ArcSwapOption<SpanExporter>,
}

impl Signals {
    pub fn new() -> Arc<Self> {
        Arc::new(Signals::default())
    }

    /// The route's signals, made on first use; the spans apply from now on.
    pub fn route(&self, name: &str, spans: Spans) -> Arc<RouteSignals> {
        let route = self.prepare_route(name, spans);
        self.adopt_route(&route, spans);
        route
    }

    /// The route's signals for a table being prepared: the live ones under this name, or
    /// new ones that nothing sees until [`Signals::adopt_route`]. Changes nothing in force.
    pub fn prepare_route(&self, name: &str, spans: Spans) -> Arc<RouteSignals> {
        if let Some(existing) = lock(&self.routes).get(name) {
            return existing.clone();
        }
        let name: Arc<str> = Arc::from(name);
        Arc::new(RouteSignals {
            name,
            id: self.next_route_id.fetch_add(1, Ordering::Relaxed),
            produced_changes: self.produced_changes.clone(),
            takes_feedback: AtomicBool::new(false),
            born: now_secs(),
            fill_threshold_bits: AtomicU64::new(spans.context_fill.to_bits()),
            experiments: arc_swap::ArcSwap::from_pointee(Vec::new()),
            windows: Mutex::new(Windows {
                detail: Ring::new(spans.window),
                counts: CountRing::new(spans.window + spans.baseline),
                handles: LabelMap::default(),
                sides: LabelMap::default(),
                recent: VecDeque::with_capacity(RECENT),
                produced: HashMap::new(),
                spans: (spans.window, spans.baseline),
            }),
        })
    }

    /// Puts a route's prepared signals in force under its name, with `spans` from now on.
    /// Signals new to the registry take the history file's entries waiting for their route.
    pub fn adopt_route(&self, route: &Arc<RouteSignals>, spans: Spans) {
        let mut routes = lock(&self.routes);
        route.set_spans(spans);
        if routes
            .get(&route.name)
            .is_some_and(|live| Arc::ptr_eq(live, route))
        {
            return;
        }
        lock(&self.produced_pending).retain(|p| {
            let mine = *p.route == *route.name;
            if mine {
                route.restore_produced(&p.upstream, &p.class, p.last_seen);
            }
            !mine
        });
        routes.insert(route.name.clone(), route.clone());
    }

    /// Every error class each route's upstreams produced, for the history file.
    pub fn produced_classes(&self) -> Vec<ProducedClass> {
        let mut all = Vec::new();
        for route in self.routes() {
            for (upstream, class, last_seen) in route.produced_all() {
                all.push(ProducedClass {
                    route: route.name.to_string(),
                    upstream: upstream.to_string(),
                    class: class.to_string(),
                    last_seen,
                });
            }
        }
        all
    }

    /// Takes back the history file's classes (at start), for routes made now or later.
    pub fn restore_produced_classes(&self, entries: Vec<ProducedClass>) {
        let routes = lock(&self.routes);
        let mut pending = lock(&self.produced_pending);
        for entry in entries {
            match routes.get(entry.route.as_str()) {
                Some(route) => {
                    route.restore_produced(&entry.upstream, &entry.class, entry.last_seen)
                }
                None => pending.push(entry),
            }
        }
    }

    /// A number that changes whenever an error class is noted.
    pub fn produced_changes(&self) -> u64 {
        self.produced_changes.load(Ordering::Relaxed)
    }

    /// One route's signals, if it has any.
    pub fn get(&self, name: &str) -> Option<Arc<RouteSignals>> {
        lock(&self.routes).get(name).cloned()
    }

    /// Every route's signals, for the evaluator.
    pub fn routes(&self) -> Vec<Arc<RouteSignals>> {
        let mut all: Vec<_> = lock(&self.routes).values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Records an exchange: metrics, the route's windows, experiments, the token budget.
    pub fn record(&self, route: &RouteSignals, exchange: Exchange) {
        if exchange.trace.sampled {
            if let Some(exporter) = &*self.exporter.load() {
                exporter.offer(&exchange);
            }
        }
        let now = now_secs();
        let tokens = exchange.prompt_tokens + exchange.completion_tokens;
        route.record(exchange, now, &self.experiments);
        if tokens > 0 {
            self.budget.add(now, tokens);
        }
    }

    /// Puts `[telemetry]` in force: an exporter with the same settings is kept (its queue
    /// too); a changed one replaces it, and the old one sends what it holds and ends.
    pub fn set_telemetry(&self, settings: &Telemetry) {
        let current = self.exporter.load();
        if current.as_ref().map(|e| e.settings()) == Some(settings) {
            return;
        }
        if current.is_none() && settings.otlp_endpoint.is_none() {
            return;
        }
        self.exporter.store(SpanExporter::start(settings));
    }

    #[cfg(test)]
    pub(crate) fn exporter(&self) -> Option<Arc<SpanExporter>> {
        self.exporter.load_full()
    }

    pub fn experiments(&self) -> &Experiments {
        &self.experiments
    }

    /// Applies an application's report on a request: to its experiments' arms and to its
    /// route's windows (for `feedback_score` and `completion_rate` rules). Returns the
    /// experiments and variants it counted for.
    pub fn feedback(
        &self,
        request_id: &str,
        report: Feedback,
    ) -> Result<Vec<(String, String)>, FeedbackError> {
        let joined = self.experiments.feedback(request_id, report)?;
        let route = lock(&self.routes)
            .values()
            .find(|r| r.id == joined.route)
            .cloned();
        if let Some(route) = route {
            route.add_feedback(&joined, report, now_secs());
        }
        Ok(joined.counted)
    }

    /// The daily token budget's count.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Tokens used in the current budget day.
    pub fn tokens_today(&self) -> u64 {
        self.budget.used(now_secs())
    }

    /// Requests waiting in admission queues (the saturation signal).
    pub fn queued(&self) -> &AtomicU64 {
        &self.queued
    }
}

#[cfg(test)]
mod tests;
