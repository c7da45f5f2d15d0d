//! Plain-text building blocks: UTC times without a date library, ages, numbers, narrow tables.

/// What a phone over ssh shows without wrapping.
pub const WIDTH: usize = 80;

/// How to draw: the clock ages are measured against, and whether to colour.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub now_ms: u64,
    pub color: bool,
}

impl View {
    /// Red and bold when colouring; used only for KILLED and firing alerts so they stand out.
    pub fn loud(&self, text: &str) -> String {
        if self.color {
            format!("\x1b[1;31m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Accepts Unix seconds or milliseconds: the status document's alert `since` has been both,
/// and no time this tool shows is before 1973 (where the two ranges would meet).
pub fn epoch_ms(value: u64) -> u64 {
    if value < 100_000_000_000 {
        value.saturating_mul(1000)
    } else {
        value
    }
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn clock(ms: u64) -> (u64, u64, u64) {
    let secs = (ms / 1000) % 86_400;
    (secs / 3600, secs / 60 % 60, secs % 60)
}

/// "11:30:00Z".
pub fn hms(ms: u64) -> String {
    let (h, m, s) = clock(ms);
    format!("{h:02}:{m:02}:{s:02}Z")
}

/// "11:30:00.123Z": the moment a switch took effect, to the millisecond.
pub fn hms_millis(ms: u64) -> String {
    let (h, m, s) = clock(ms);
    format!("{h:02}:{m:02}:{s:02}.{:03}Z", ms % 1000)
}

/// "2026-11-22 11:30Z".
pub fn date_hm(ms: u64) -> String {
    let (y, mo, d) = civil(ms / 86_400_000);
    let (h, m, _) = clock(ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}Z")
}

/// "4m ago", "2h ago", "3d ago"; "just now" for the future too, since clocks drift.
pub fn age(then_ms: u64, now_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        0 => "just now".into(),
        1..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// "11:30:00Z (4m ago)", with the date once it is a day old so the hour is not ambiguous.
pub fn when(then_ms: u64, view: &View) -> String {
    let stamp = if view.now_ms.saturating_sub(then_ms) < 86_400_000 {
        hms(then_ms)
    } else {
        date_hm(then_ms)
    };
    format!("{stamp} ({})", age(then_ms, view.now_ms))
}

/// A number without noise: "25", "12.5", "0.013".
pub fn num(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A fraction as a percentage: 0.013 → "1.3%".
pub fn pct(fraction: f64) -> String {
    format!("{}%", num(fraction * 100.0))
}

/// Cuts text to `max` characters, marking the cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// Word-wraps to [`WIDTH`], every line starting with `indent`.
pub fn wrap(text: &str, indent: &str) -> Vec<String> {
    let room = WIDTH.saturating_sub(indent.len()).max(20);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if !line.is_empty() && needed > room {
            lines.push(format!("{indent}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(format!("{indent}{line}"));
    }
    lines
}

/// One table cell; `loud` cells are coloured after padding so colour codes never skew widths.
pub struct Cell {
    text: String,
    loud: bool,
}

impl Cell {
    pub fn plain(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            loud: false,
        }
    }

    pub fn loud(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            loud: true,
        }
    }
}

struct Row {
    cells: Vec<Cell>,
    notes: Vec<String>,
}

/// Left-aligned columns two spaces apart, each clipped to its cap, with optional indented
/// note lines under a row (the details that would make the row too wide for a phone).
pub struct Table {
    headers: Vec<&'static str>,
    caps: Vec<usize>,
    rows: Vec<Row>,
}

/// The indent of a row's notes.
pub const NOTE_INDENT: &str = "    ";

impl Table {
    /// `columns` are (header, the widest the column may grow).
    pub fn new(columns: &[(&'static str, usize)]) -> Table {
        Table {
            headers: columns.iter().map(|(h, _)| *h).collect(),
            caps: columns.iter().map(|(_, c)| *c).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(Row {
            cells,
            notes: Vec::new(),
        });
    }

    /// Adds a wrapped note under the last row.
    pub fn note(&mut self, text: &str) {
        if let Some(row) = self.rows.last_mut() {
            row.notes.extend(wrap(text, NOTE_INDENT));
        }
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.cells.iter().enumerate() {
                if let (Some(w), Some(cap)) = (widths.get_mut(i), self.caps.get(i)) {
                    *w = (*w).max(cell.text.chars().count().min(*cap));
                }
            }
        }
        widths
    }

    pub fn render(&self, view: &View) -> String {
        let widths = self.widths();
        let header: Vec<Cell> = self.headers.iter().map(|h| Cell::plain(*h)).collect();
        let mut out = line(&header, &widths, view);
        for row in &self.rows {
            out.push_str(&line(&row.cells, &widths, view));
            for note in &row.notes {
                out.push_str(note);
                out.push('\n');
            }
        }
        out
    }
}

fn line(cells: &[Cell], widths: &[usize], view: &View) -> String {
    let last = cells.len().saturating_sub(1);
    let mut out = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        let text = clip(&cell.text, *width);
        // No padding after the last column: trailing spaces wrap on narrow terminals.
        let padded = if i == last {
            text
        } else {
            format!("{text:<width$}  ")
        };
        if cell.loud {
            let end = padded.trim_end().len();
            out.push_str(&view.loud(&padded[..end]));
            out.push_str(&padded[end..]);
        } else {
            out.push_str(&padded);
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}
