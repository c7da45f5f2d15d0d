//! Registered metric handles per label set, so recording an exchange is a few atomic
//! operations instead of building and hashing label vectors for every sample.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Label};
use switchyard_core::metrics as names;

use crate::exchange::{status_class, Exchange, FillSource};

/// A hasher for maps keyed by label values (upstream, variant and model names from the
/// configuration): a multiply-and-rotate over eight bytes at a time, a few instructions a
/// word where SipHash takes dozens. The keys are the operator's own names, not the
/// client's, so flooding a bucket is not a concern.
#[derive(Debug, Default, Clone, Copy)]
pub struct LabelHasher(u64);

/// A `HashMap` keyed by label values, hashed with [`LabelHasher`].
pub type LabelMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<LabelHasher>>;

impl LabelHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl std::hash::Hasher for LabelHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            self.add(u64::from_le_bytes(le));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut le = [0u8; 8];
            le[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(le));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The label values every exchange sample carries besides the route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelSet {
    pub upstream: Arc<str>,
    pub variant: Arc<str>,
    pub model: Arc<str>,
    /// `gen_ai.operation.name`; `None` for requests that are not model calls, which get no
    /// GenAI samples.
    pub operation: Option<&'static str>,
    /// `gen_ai.system`, from the dialect: `openai`, `anthropic`, or `_OTHER`.
    pub system: &'static str,
}

impl LabelSet {
    pub fn of(exchange: &Exchange) -> Self {
        LabelSet {
            upstream: exchange.upstream.clone(),
            variant: exchange.variant.clone(),
            model: exchange.model.clone(),
            operation: exchange.gen_ai_operation,
            system: exchange.gen_ai_system,
        }
    }
}

/// The GenAI semantic conventions' families for one label set (with the operation and system).
#[derive(Debug)]
struct GenAi {
    /// By `gen_ai_token_type`: [input, output].
    tokens: [Histogram; 2],
    duration: Histogram,
    ttft: Histogram,
    tpot: Histogram,
}

impl GenAi {
    fn new(labels: &[Label], operation: &'static str, system: &'static str) -> Self {
        let mut labels = labels.to_vec();
        labels.push(Label::new("gen_ai_operation_name", operation));
        labels.push(Label::new("gen_ai_system", system));
        GenAi {
            tokens: ["input", "output"].map(|kind| {
                metrics::histogram!(
                    names::GEN_AI_CLIENT_TOKEN_USAGE,
                    with(&labels, "gen_ai_token_type", kind)
                )
            }),
            duration: metrics::histogram!(
                names::GEN_AI_SERVER_REQUEST_DURATION_SECONDS,
                labels.clone()
            ),
            ttft: metrics::histogram!(
                names::GEN_AI_SERVER_TIME_TO_FIRST_TOKEN_SECONDS,
                labels.clone()
            ),
            tpot: metrics::histogram!(names::GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN_SECONDS, labels),
        }
    }

    fn emit(&self, exchange: &Exchange) {
        self.duration.record(exchange.duration.as_secs_f64());
        if let Some(ttft) = exchange.ttft {
            self.ttft.record(ttft.as_secs_f64());
        }
        if let Some(tpot) = exchange.time_per_output_token() {
            self.tpot.record(tpot.as_secs_f64());
        }
        // Usage is a property of an answer: refusals and upstream errors used no tokens.
        if (200..300).contains(&exchange.status)
            && exchange.prompt_tokens + exchange.completion_tokens > 0
        {
            self.tokens[0].record(exchange.prompt_tokens as f64);
            self.tokens[1].record(exchange.completion_tokens as f64);
        }
    }
}

/// Distinct `class` values per label set before the rest are folded into `other`.
const MAX_ERROR_CLASSES: usize = 16;

const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// The handles for one (route, upstream, variant, model).
#[derive(Debug)]
pub struct Handles {
    labels: Vec<Label>,
    requests: [Counter; 6],
    duration: Histogram,
    ttfb: Histogram,
    ttft: Histogram,
    tpot: Histogram,
    prompt: Counter,
    completion: Counter,
    cache_read: Counter,
    cache_write: Counter,
    cost: Gauge,
    /// By `source`: [reported, estimated].
    fill: [Histogram; 2],
    gen_ai: Option<GenAi>,
    /// Error counters by class, registered on first use: classes include upstream error
    /// types read from bodies, so the set is open.
    errors: Vec<(Arc<str>, Counter)>,
}

fn with(labels: &[Label], key: &'static str, value: &'static str) -> Vec<Label> {
    let mut all = labels.to_vec();
    all.push(Label::new(key, value));
    all
}

impl Handles {
    pub fn new(route: &Arc<str>, set: &LabelSet) -> Self {
        let labels = vec![
            Label::new("route", route.clone()),
            Label::new("upstream", set.upstream.clone()),
            Label::new("variant", set.variant.clone()),
            Label::new("model", set.model.clone()),
        ];
        let requests = STATUS_CLASSES
            .map(|class| metrics::counter!(names::REQUESTS_TOTAL, with(&labels, "status", class)));
        Handles {
            requests,
            duration: metrics::histogram!(names::REQUEST_DURATION_SECONDS, labels.clone()),
            ttfb: metrics::histogram!(names::TTFB_SECONDS, labels.clone()),
            ttft: metrics::histogram!(names::TIME_TO_FIRST_TOKEN_SECONDS, labels.clone()),
            tpot: metrics::histogram!(names::TIME_PER_OUTPUT_TOKEN_SECONDS, labels.clone()),
            cache_read: metrics::counter!(
                names::CACHED_TOKENS_TOTAL,
                with(&labels, "kind", "read")
            ),
            cache_write: metrics::counter!(
                names::CACHED_TOKENS_TOTAL,
                with(&labels, "kind", "write")
            ),
            prompt: metrics::counter!(names::TOKENS_TOTAL, with(&labels, "direction", "prompt")),
            completion: metrics::counter!(
                names::TOKENS_TOTAL,
                with(&labels, "direction", "completion")
            ),
            cost: metrics::gauge!(names::COST_USD_TOTAL, labels.clone()),
            fill: [FillSource::Reported, FillSource::Estimated].map(|source| {
                metrics::histogram!(
                    names::CONTEXT_FILL_RATIO,
                    with(&labels, "source", source.as_str())
                )
            }),
            errors: Vec::new(),
            gen_ai: set
                .operation
                .map(|operation| GenAi::new(&labels, operation, set.system)),
            labels,
        }
    }

    /// Records the exchange's samples.
    pub fn emit(&mut self, exchange: &Exchange) {
        let class = status_class(exchange.status);
        let index = STATUS_CLASSES.iter().position(|c| *c == class).unwrap_or(0);
        self.requests[index].increment(1);
        self.duration.record(exchange.duration.as_secs_f64());
        if let Some(ttfb) = exchange.ttfb {
            self.ttfb.record(ttfb.as_secs_f64());
        }
        if let Some(ttft) = exchange.ttft {
            self.ttft.record(ttft.as_secs_f64());
        }
        if let Some(tpot) = exchange.time_per_output_token() {
            self.tpot.record(tpot.as_secs_f64());
        }
        if exchange.cache_read_tokens > 0 {
            self.cache_read.increment(exchange.cache_read_tokens);
        }
        if exchange.cache_write_tokens > 0 {
            self.cache_write.increment(exchange.cache_write_tokens);
        }
        if exchange.prompt_tokens > 0 {
            self.prompt.increment(exchange.prompt_tokens);
        }
        if exchange.completion_tokens > 0 {
            self.completion.increment(exchange.completion_tokens);
        }
        if exchange.cost_usd > 0.0 {
            // `metrics` counters are integers; a float that only grows is kept in a gauge
            // and exposed with counter type (switchyard-admin's exposition).
            self.cost.increment(exchange.cost_usd);
        }
        if let Some(fill) = exchange.context_fill {
            let source = usize::from(exchange.fill_source == FillSource::Estimated);
            self.fill[source].record(fill);
        }
        if let Some(class) = exchange.error_label() {
            self.error_counter(class).increment(1);
        }
        if let Some(gen_ai) = &self.gen_ai {
            gen_ai.emit(exchange);
        }
    }

    fn error_counter(&mut self, class: Arc<str>) -> &Counter {
        // Error types come from upstream bodies: past a few distinct ones per label set,
        // new ones are counted as `other` so a misbehaving upstream cannot grow the series.
        let class = if self.errors.len() >= MAX_ERROR_CLASSES
            && !self.errors.iter().any(|(c, _)| *c == class)
        {
            Arc::from("other")
        } else {
            class
        };
        let index = match self.errors.iter().position(|(c, _)| *c == class) {
            Some(index) => index,
            None => {
                let mut labels = self.labels.clone();
                labels.push(Label::new("class", class.clone()));
                self.errors.push((
                    class,
                    metrics::counter!(names::UPSTREAM_ERRORS_TOTAL, labels),
                ));
                self.errors.len() - 1
            }
        };
        &self.errors[index].1
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;
    use std::sync::Arc;

    use super::{LabelMap, LabelSet};

    fn set(upstream: &str, variant: &str, model: &str) -> LabelSet {
        LabelSet {
            upstream: Arc::from(upstream),
            variant: Arc::from(variant),
            model: Arc::from(model),
            operation: Some("chat"),
            system: "openai",
        }
    }

    #[test]
    fn label_sets_hash_apart_and_keep_their_handles_apart() {
        let mut map: LabelMap<LabelSet, usize> = LabelMap::default();
        let sets = [
            set("blue", "none", "gpt-4o"),
            set("green", "none", "gpt-4o"),
            set("blue", "treatment", "gpt-4o"),
            set("blue", "none", "gpt-4o-mini"),
            set("blue-agent-upstream", "none", "other"),
            set("blue", "non", "egpt-4o"),
        ];
        for (i, s) in sets.iter().enumerate() {
            map.insert(s.clone(), i);
        }
        assert_eq!(map.len(), sets.len());
        for (i, s) in sets.iter().enumerate() {
            assert_eq!(map[s], i);
        }
        let hashes: std::collections::HashSet<u64> =
            sets.iter().map(|s| map.hasher().hash_one(s)).collect();
        assert_eq!(hashes.len(), sets.len(), "no two of these collide");
    }
}
