//! Per-route sliding windows fed by every exchange, and the daily token budget.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::budget::Budget;
use crate::exchange::Exchange;
use crate::experiment::{ExperimentStats, Experiments};
use crate::handles::{Handles, LabelSet};
use crate::window::{Bucket, CountRing, Ring};

/// Seconds since the Unix epoch: windows are aligned to wall-clock seconds, and so is the
/// daily budget's day.
pub fn now_secs() -> u64 {
    SystemTime::now()
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
    handles: HashMap<LabelSet, Handles>,
    sides: HashMap<Arc<str>, Side>,
    recent: VecDeque<(u64, Exchange)>,
    /// (detail span, baseline) the rings were sized for.
    spans: (Duration, Duration),
}

/// One route's windows. The compiled route holds an `Arc` to it, so the data path records
/// without a map lookup, and a reload that keeps the route's name keeps its history.
#[derive(Debug)]
pub struct RouteSignals {
    name: Arc<str>,
    /// The second these signals started: history before it is unknown, not zero.
    born: u64,
    fill_threshold_bits: AtomicU64,
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
        let set = LabelSet {
            upstream: exchange.upstream.clone(),
            variant: exchange.variant.clone(),
            model: exchange.model.clone(),
        };
        let class = exchange
            .is_error()
            .then(|| exchange.error_label())
            .flatten();
        let running = self.experiments.load();
        if !running.is_empty() {
            experiments.record(&running, &exchange);
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
        side.first_since_look.get_or_insert_with(Instant::now);
        side.total += 1;
        add(side.detail.bucket(now), exchange, over, class);
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
}

impl Signals {
    pub fn new() -> Arc<Self> {
        Arc::new(Signals::default())
    }

    /// The route's signals, made on first use; the spans apply from now on.
    pub fn route(&self, name: &str, spans: Spans) -> Arc<RouteSignals> {
        let mut routes = lock(&self.routes);
        if let Some(existing) = routes.get(name) {
            existing
                .fill_threshold_bits
                .store(spans.context_fill.to_bits(), Ordering::Relaxed);
            let mut windows = lock(&existing.windows);
            if windows.spans != (spans.window, spans.baseline) {
                // A new window length needs rings of the new size; the history of the old
                // ones is dropped rather than misread at the wrong length.
                windows.detail = Ring::new(spans.window);
                windows.counts = CountRing::new(spans.window + spans.baseline);
                windows.sides.clear();
                windows.spans = (spans.window, spans.baseline);
            }
            drop(windows);
            return existing.clone();
        }
        let name: Arc<str> = Arc::from(name);
        let signals = Arc::new(RouteSignals {
            name: name.clone(),
            born: now_secs(),
            fill_threshold_bits: AtomicU64::new(spans.context_fill.to_bits()),
            experiments: arc_swap::ArcSwap::from_pointee(Vec::new()),
            windows: Mutex::new(Windows {
                detail: Ring::new(spans.window),
                counts: CountRing::new(spans.window + spans.baseline),
                handles: HashMap::new(),
                sides: HashMap::new(),
                recent: VecDeque::with_capacity(RECENT),
                spans: (spans.window, spans.baseline),
            }),
        });
        routes.insert(name, signals.clone());
        signals
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
        let now = now_secs();
        let tokens = exchange.prompt_tokens + exchange.completion_tokens;
        route.record(exchange, now, &self.experiments);
        if tokens > 0 {
            self.budget.add(now, tokens);
        }
    }

    pub fn experiments(&self) -> &Experiments {
        &self.experiments
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
