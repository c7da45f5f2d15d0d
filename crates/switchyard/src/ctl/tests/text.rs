use super::NOW;
use crate::ctl::text::{
    age, clip, date_hm, epoch_ms, hms, hms_millis, num, pct, when, wrap, Cell, Table, View,
};

#[test]
fn ctl_text_utc_clock_and_calendar() {
    assert_eq!(hms(NOW), "11:34:00Z");
    assert_eq!(hms_millis(1_795_347_000_123), "11:30:00.123Z");
    assert_eq!(date_hm(0), "1970-01-01 00:00Z");
    assert_eq!(date_hm(951_868_799_000), "2000-02-29 23:59Z");
    assert_eq!(date_hm(4_107_542_400_000), "2100-03-01 00:00Z");
    assert_eq!(date_hm(NOW), "2026-11-22 11:34Z");
}

#[test]
fn ctl_text_ages() {
    assert_eq!(age(NOW, NOW), "just now");
    assert_eq!(
        age(NOW + 5_000, NOW),
        "just now",
        "a server clock ahead of ours"
    );
    assert_eq!(age(NOW - 42_000, NOW), "42s ago");
    assert_eq!(age(NOW - 4 * 60_000 - 59_000, NOW), "4m ago");
    assert_eq!(age(NOW - 3 * 3_600_000, NOW), "3h ago");
    assert_eq!(age(NOW - 47 * 3_600_000, NOW), "47h ago");
    assert_eq!(age(NOW - 3 * 86_400_000, NOW), "3d ago");
}

#[test]
fn ctl_text_when_adds_the_date_after_a_day() {
    let view = View {
        now_ms: NOW,
        color: false,
    };
    assert_eq!(when(NOW - 240_000, &view), "11:30:00Z (4m ago)");
    assert_eq!(when(1_795_166_100_000, &view), "2026-11-20 09:15Z (2d ago)");
}

#[test]
fn ctl_text_alert_since_in_seconds_or_milliseconds() {
    assert_eq!(epoch_ms(1_795_346_980), 1_795_346_980_000);
    assert_eq!(epoch_ms(1_795_346_980_000), 1_795_346_980_000);
}

#[test]
fn ctl_text_numbers() {
    assert_eq!(num(25.0), "25");
    assert_eq!(num(12.5), "12.5");
    assert_eq!(num(0.0125), "0.013");
    assert_eq!(pct(0.3), "30%");
    assert_eq!(pct(0.013), "1.3%");
}

#[test]
fn ctl_text_clip_and_wrap() {
    assert_eq!(clip("support", 7), "support");
    assert_eq!(clip("support", 5), "supp…");
    let lines = wrap(&"abcd ".repeat(30), "  ");
    assert!(lines
        .iter()
        .all(|l| l.len() <= 80 && l.starts_with("  abcd")));
    assert_eq!(lines.concat().matches("abcd").count(), 30);
    assert!(wrap("", "  ").is_empty());
}

#[test]
fn ctl_text_table_aligns_without_trailing_spaces() {
    let mut table = Table::new(&[("A", 10), ("LONGER", 10), ("C", 10)]);
    table.row(vec![Cell::plain("x"), Cell::plain(""), Cell::plain("z")]);
    table.row(vec![
        Cell::plain("wide-cell"),
        Cell::plain("y"),
        Cell::plain(""),
    ]);
    table.note("a note under the second row");
    let view = View {
        now_ms: NOW,
        color: false,
    };
    assert_eq!(
        table.render(&view),
        "A          LONGER  C\n\
         x                  z\n\
         wide-cell  y\n    a note under the second row\n"
    );
}
