//! The report: rows of (what, value, target, verdict), printed as an aligned Markdown table.

use std::fmt::Write as _;

/// Whether a row's target was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Met,
    NotMet,
    /// A measurement without a target.
    Info,
    /// Not measured; the reason goes in the value column.
    Skipped,
}

impl Verdict {
    pub fn of(met: bool) -> Verdict {
        if met { Verdict::Met } else { Verdict::NotMet }
    }

    fn word(&self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "NOT MET",
            Verdict::Info => "",
            Verdict::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub what: String,
    pub value: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn info(what: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            what: what.into(),
            value: value.into(),
            target: String::new(),
            verdict: Verdict::Info,
        }
    }

    pub fn target(
        what: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) -> Row {
        Row {
            what: what.into(),
            value: value.into(),
            target: target.into(),
            verdict: Verdict::of(met),
        }
    }

    pub fn skipped(
        what: impl Into<String>,
        why: impl Into<String>,
        target: impl Into<String>,
    ) -> Row {
        Row {
            what: what.into(),
            value: why.into(),
            target: target.into(),
            verdict: Verdict::Skipped,
        }
    }
}

/// A titled group of rows.
#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub rows: Vec<Row>,
}

/// The sections as one Markdown table, columns padded to line up in a terminal.
pub fn render(sections: &[Section]) -> String {
    let header = ["what", "value", "target", "met?"];
    let cells = |r: &Row| {
        [
            r.what.clone(),
            r.value.clone(),
            r.target.clone(),
            r.verdict.word().to_string(),
        ]
    };
    let mut widths = header.map(|h| h.chars().count());
    for section in sections {
        widths[0] = widths[0].max(section.title.chars().count() + 4);
        for row in &section.rows {
            for (w, cell) in widths.iter_mut().zip(cells(row)) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: [String; 4]| {
        let mut out = String::from("|");
        for (cell, w) in cells.iter().zip(widths) {
            let pad = w.saturating_sub(cell.chars().count());
            let _ = write!(out, " {cell}{} |", " ".repeat(pad));
        }
        out.push('\n');
        out
    };
    let mut out = line(header.map(String::from));
    out.push('|');
    for w in widths {
        out.push_str(&"-".repeat(w + 2));
        out.push('|');
    }
    out.push('\n');
    for section in sections {
        out.push_str(&line([
            format!("**{}**", section.title),
            String::new(),
            String::new(),
            String::new(),
        ]));
        for row in &section.rows {
            out.push_str(&line(cells(row)));
        }
    }
    out
}

/// "n of m targets met" over every row with a target that was measured.
pub fn summary(sections: &[Section]) -> String {
    let rows = sections.iter().flat_map(|s| &s.rows);
    let (mut met, mut total, mut skipped) = (0, 0, 0);
    for row in rows {
        match row.verdict {
            Verdict::Met => {
                met += 1;
                total += 1;
            }
            Verdict::NotMet => total += 1,
            Verdict::Skipped => skipped += 1,
            Verdict::Info => {}
        }
    }
    format!("{met} of {total} measured targets met; {skipped} rows skipped.")
}
