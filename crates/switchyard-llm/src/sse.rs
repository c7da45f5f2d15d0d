//! Incremental, observe-only scanner of SSE response streams for usage and outcome.

use memchr::{memchr, memchr2};

use crate::dialect::Dialect;
use crate::output::is_output;
use crate::usage::{Reader, Usage, UsageState};

mod filter;

use filter::worth_parsing;

/// Longest line (and longest event data) kept. Longer ones are dropped and counted,
/// so a broken or hostile upstream cannot make the scanner buffer without bound.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Watches a response stream chunk by chunk. It never holds data back: the proxy
/// forwards each chunk itself and the scanner only keeps the unfinished line.
///
/// Only `data:` payloads that can carry usage, model, finish reason or an error are
/// JSON-parsed; cheap byte checks decide which. `Dialect::Opaque` streams are framed
/// and counted but not interpreted.
#[derive(Debug)]
pub struct SseScanner {
    dialect: Dialect,
    /// Who reads the events: the scanners, or serde alone.
    reader: Reader,
    state: UsageState,
    /// The unfinished line carried over from the previous chunk.
    line: Vec<u8>,
    /// Inside an over-long line: skip bytes until its terminator.
    discarding: bool,
    /// The last terminator was '\r', so a '\n' opening the next chunk belongs to it.
    after_cr: bool,
    event_name: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    data_overflow: bool,
    events: u64,
    dropped_lines: u64,
    /// An event carrying model output has been seen (see `output.rs`).
    output_seen: bool,
}

impl SseScanner {
    pub fn new(dialect: Dialect) -> Self {
        Self::reading_with(Reader::Scanner, dialect)
    }

    /// A scanner whose events are read by serde alone: the reference the JSON scanner is
    /// tested against.
    #[doc(hidden)]
    pub fn with_serde(dialect: Dialect) -> Self {
        Self::reading_with(Reader::Serde, dialect)
    }

    fn reading_with(reader: Reader, dialect: Dialect) -> Self {
        Self {
            dialect,
            reader,
            state: UsageState::new(reader),
            line: Vec::new(),
            discarding: false,
            after_cr: false,
            event_name: Vec::new(),
            data: Vec::new(),
            has_data: false,
            data_overflow: false,
            events: 0,
            dropped_lines: 0,
            output_seen: false,
        }
    }

    /// Observes one chunk; chunks may split lines, events and UTF-8 anywhere.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if std::mem::take(&mut self.after_cr) && chunk.first() == Some(&b'\n') {
                chunk = &chunk[1..];
                continue;
            }
            let Some(end) = memchr2(b'\n', b'\r', chunk) else {
                self.push_partial(chunk);
                return;
            };
            let (line, rest) = chunk.split_at(end);
            self.after_cr = rest.first() == Some(&b'\r');
            self.finish_line(line);
            chunk = &rest[1..];
        }
    }

    /// What has been seen so far; valid at any time, e.g. after a client cancel.
    pub fn usage(&self) -> &Usage {
        &self.state.usage
    }

    /// Complete SSE events (terminated by a blank line and carrying data) seen.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Whether an event carrying model output (a content delta, a tool call) has been seen:
    /// the first one marks the time to first token.
    pub fn saw_output(&self) -> bool {
        self.output_seen
    }

    /// Whether the JSON cursor decides itself if an event's data carries output, without
    /// serde's help (OpenAI chunks).
    #[doc(hidden)]
    pub fn output_scanner_decides(data: &[u8]) -> bool {
        crate::output::scanner_decides(data)
    }

    /// Lines and event payloads dropped for exceeding [`MAX_LINE_BYTES`].
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    fn push_partial(&mut self, part: &[u8]) {
        if self.discarding {
            return;
        }
        if self.line.len() + part.len() > MAX_LINE_BYTES {
            self.drop_line();
            self.discarding = true;
        } else {
            self.line.extend_from_slice(part);
        }
    }

    fn finish_line(&mut self, tail: &[u8]) {
        if std::mem::take(&mut self.discarding) {
            return;
        }
        if self.line.len() + tail.len() > MAX_LINE_BYTES {
            self.drop_line();
        } else if self.line.is_empty() {
            self.process_line(tail);
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(tail);
            self.process_line(&line);
            line.clear();
            self.line = line;
        }
    }

    /// Counts the line and releases its buffer so capacity does not linger at the limit.
    fn drop_line(&mut self) {
        self.line = Vec::new();
        self.dropped_lines += 1;
    }

    fn process_line(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        let (field, value) = match memchr(b':', line) {
            Some(0) => return,
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => self.push_data(value),
            b"event" => {
                self.event_name.clear();
                self.event_name.extend_from_slice(value);
            }
            _ => {}
        }
    }

    fn push_data(&mut self, value: &[u8]) {
        let separator = usize::from(self.has_data);
        self.has_data = true;
        if self.data_overflow {
            return;
        }
        if self.data.len() + separator + value.len() > MAX_LINE_BYTES {
            self.data = Vec::new();
            self.data_overflow = true;
            self.dropped_lines += 1;
            return;
        }
        if separator == 1 {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
    }

    fn dispatch(&mut self) {
        if self.has_data {
            self.events += 1;
            if !self.data_overflow {
                self.interpret();
            }
        }
        self.data.clear();
        self.event_name.clear();
        self.has_data = false;
        self.data_overflow = false;
    }

    fn interpret(&mut self) {
        let data = self.data.trim_ascii();
        if !self.output_seen {
            self.output_seen = is_output(self.reader, self.dialect, &self.event_name, data);
        }
        match self.dialect {
            Dialect::Opaque => return,
            Dialect::OpenAi if data == b"[DONE]" => {
                self.state.usage.done = true;
                return;
            }
            // The event name alone is enough: its data is not needed to end normally.
            Dialect::Anthropic if self.event_name == b"message_stop" => {
                self.state.usage.done = true;
            }
            _ => {}
        }
        let need_model = self.state.usage.model.is_none();
        if worth_parsing(self.dialect, data, need_model) {
            self.state.apply_json(self.dialect, data);
        }
    }
}
