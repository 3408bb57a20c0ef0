//! Figures for people: durations, token counts, dollars, times, and plain-text tables.

use std::fmt::Write as _;
use std::time::Duration;

use session_store::{Cost, Timestamp};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// A token count in at most four significant characters: `950`, `12.3k`, `4.1M`.
pub fn tokens(count: u64) -> String {
    match count {
        0..1_000 => count.to_string(),
        1_000..999_950 => trim_point_zero(format!("{:.1}k", count as f64 / 1e3)),
        _ => trim_point_zero(format!("{:.1}M", count as f64 / 1e6)),
    }
}

/// Dollars: two decimals from a dollar up, four below (`$0.0123`), and `$0` for nothing.
pub fn dollars(cost: Cost) -> String {
    let usd = cost.as_usd();
    if cost == Cost::ZERO {
        String::from("$0")
    } else if usd >= 1.0 {
        format!("${usd:.2}")
    } else if usd >= 0.000_05 {
        format!("${usd:.4}")
    } else {
        String::from("<$0.0001")
    }
}

/// A duration a person reads at a glance: `850ms`, `12.3s`, `4m 05s`, `1h 02m`.
pub fn duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1_000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        let seconds = duration.as_secs();
        if seconds < 3_600 {
            format!("{}m {:02}s", seconds / 60, seconds % 60)
        } else {
            format!("{}h {:02}m", seconds / 3_600, seconds % 3_600 / 60)
        }
    }
}

/// A clock for elapsed time: `0:42`, `12:05`, `1:02:03`.
pub fn clock(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    if seconds < 3_600 {
        format!("{}:{:02}", seconds / 60, seconds % 60)
    } else {
        format!(
            "{}:{:02}:{:02}",
            seconds / 3_600,
            seconds % 3_600 / 60,
            seconds % 60
        )
    }
}

/// A moment in UTC for a table: `2025-11-24 04:05:06Z`.
pub fn time(at: Timestamp) -> String {
    humantime::format_rfc3339_seconds(system_time(at))
        .to_string()
        .replacen('T', " ", 1)
}

/// A moment as RFC 3339 in UTC with milliseconds, for JSON: `2025-11-24T04:05:06.123Z`.
pub fn rfc3339(at: Timestamp) -> String {
    humantime::format_rfc3339_millis(system_time(at)).to_string()
}

/// The ledger's timestamp as a `SystemTime`; moments before 1970 (which Baton never writes)
/// read as the epoch.
fn system_time(at: Timestamp) -> std::time::SystemTime {
    let millis = u64::try_from(at.as_millis()).unwrap_or(0);
    std::time::UNIX_EPOCH + Duration::from_millis(millis)
}

/// The time between two moments, or zero when they are out of order.
pub fn between(start: Timestamp, end: Timestamp) -> Duration {
    u64::try_from(end.as_millis() - start.as_millis())
        .map(Duration::from_millis)
        .unwrap_or_default()
}

/// Text cut to `width` columns of a terminal, ending with `…` when it was cut. Newlines
/// become spaces. Wide characters (most CJK and emoji) take two columns.
pub fn truncate(text: &str, width: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.width() <= width {
        return flat.to_owned();
    }
    let room = width.saturating_sub(1);
    let mut cut = String::new();
    let mut used = 0;
    for c in flat.chars() {
        let columns = c.width().unwrap_or(0);
        if used + columns > room {
            break;
        }
        cut.push(c);
        used += columns;
    }
    cut.push('…');
    cut
}

fn trim_point_zero(text: String) -> String {
    text.replace(".0k", "k").replace(".0M", "M")
}

/// How a column lines up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A plain-text table: a header row and rows of cells, columns padded to their widest cell
/// and separated by two spaces. No borders, so it reads well in a terminal and in a log.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            columns: columns
                .iter()
                .map(|(name, align)| ((*name).to_owned(), *align))
                .collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(
            cells.len(),
            self.columns.len(),
            "a row has one cell a column"
        );
        self.rows.push(cells);
    }

    /// The table as lines, each ending with a newline, trailing spaces trimmed. Cells are
    /// padded to the columns they take on a terminal, so that wide characters line up.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|(name, _)| name.width()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.width());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|(name, _)| name.clone()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (index, ((_, align), cell)) in self.columns.iter().zip(cells).enumerate() {
                if index > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[index].saturating_sub(cell.width()));
                match align {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(cell);
                    }
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

/// Aligned `label  value` lines, for `show` commands.
#[derive(Debug, Default)]
pub struct Fields {
    lines: Vec<(String, String)>,
}

impl Fields {
    pub fn new() -> Fields {
        Fields::default()
    }

    pub fn field(&mut self, label: &str, value: impl Into<String>) -> &mut Fields {
        self.lines.push((label.to_owned(), value.into()));
        self
    }

    pub fn render(&self) -> String {
        let width = self
            .lines
            .iter()
            .map(|(label, _)| label.width())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (label, value) in &self.lines {
            let pad = " ".repeat(width - label.width());
            let _ = writeln!(out, "  {label}{pad}  {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_counts_read_at_a_glance() {
        let shown: Vec<String> = [0, 950, 1_000, 12_345, 999_949, 999_950, 4_100_000]
            .map(tokens)
            .to_vec();
        assert_eq!(shown, ["0", "950", "1k", "12.3k", "999.9k", "1M", "4.1M"]);
    }

    #[test]
    fn dollars_keep_small_amounts_visible() {
        let shown: Vec<String> = [0, 12_300_000, 1_234_567_890, 10]
            .map(|nano| dollars(Cost::from_nano_usd(nano)))
            .to_vec();
        assert_eq!(shown, ["$0", "$0.0123", "$1.23", "<$0.0001"]);
    }

    #[test]
    fn durations_and_clocks() {
        let shown: Vec<String> = [850, 12_345, 245_000, 3_720_000]
            .map(|millis| duration(Duration::from_millis(millis)))
            .to_vec();
        assert_eq!(shown, ["850ms", "12.3s", "4m 05s", "1h 02m"]);
        assert_eq!(clock(Duration::from_secs(42)), "0:42");
        assert_eq!(clock(Duration::from_secs(3_723)), "1:02:03");
    }

    #[test]
    fn times_are_utc_civil_dates() {
        let at = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(time(at), "2023-11-14 22:13:20Z");
        assert_eq!(rfc3339(at), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(Timestamp::EPOCH), "1970-01-01T00:00:00.000Z");
        // A leap day.
        assert_eq!(
            rfc3339(Timestamp::from_millis(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn tables_pad_columns_and_trim_lines() {
        let mut table = Table::new(&[("ID", Align::Right), ("TITLE", Align::Left)]);
        table.row(vec!["7".into(), "short".into()]);
        table.row(vec!["12".into(), "a longer title".into()]);
        assert_eq!(table.render(), "ID  TITLE\n 7  short\n12  a longer title\n");
        assert_eq!(truncate("one\ntwo three", 8), "one two…");
    }

    #[test]
    fn wide_characters_line_up_by_the_columns_they_take() {
        let mut table = Table::new(&[
            ("ID", Align::Right),
            ("TITLE", Align::Left),
            ("COST", Align::Right),
        ]);
        table.row(vec!["1".into(), "修复解析器".into(), "$0.01".into()]);
        table.row(vec!["2".into(), "Ship it 🚀".into(), "$1.00".into()]);
        table.row(vec!["3".into(), "plain".into(), "$0".into()]);
        let rendered = table.render();
        assert_eq!(
            rendered,
            "ID  TITLE        COST\n 1  修复解析器  $0.01\n 2  Ship it 🚀  $1.00\n 3  plain          $0\n"
        );
        // Every line ends at the same terminal column.
        let ends: Vec<usize> = rendered.lines().map(UnicodeWidthStr::width).collect();
        assert_eq!(ends, [21, 21, 21, 21]);
        // Cut by columns too: five CJK characters take ten.
        assert_eq!(truncate("修复解析器", 10), "修复解析器");
        assert_eq!(truncate("修复解析器", 9), "修复解析…");
        assert_eq!(truncate("Ship it 🚀🚀", 10), "Ship it …");
    }
}
