//! The HTML diff report: one self-contained page (inline CSS, inline JS, inline SVG; no
//! network, so it works from a file or an e-mail attachment) for the people who sign a
//! change off.
//!
//! Everything shown that does not come from this file (values, keys, ids, field names,
//! paths, error messages) goes through [`escape`], in text and in attributes alike, and the
//! script reads the page only through `textContent`, `value` and attributes it set, so
//! nothing from the input can become an element. A Content-Security-Policy lets only the
//! page's own script run and loads nothing. The rows are rendered here, not by the script:
//! the page reads the same without JavaScript; the script only filters.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

use super::{FieldChange, RunEnd, RunInfo, TABLE_LIMIT, csv::NOT_READ};
use crate::ledger::{Deletion, Entry, Status};
use crate::targets::Mode;

/// What the page holds until the run writes it at its end.
pub(super) const UNFINISHED: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>profilesync report: not finished</title></head><body><h1>This report is not finished</h1>\
<p>The run has not ended yet, or it stopped before it could write this page. \
Its ledger holds every record that settled.</p></body></html>\n";

/// HTML-escapes text for an element's content or a quoted attribute value: `&`, `<`, `>`,
/// `"` and `'` become character references.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The names of the report's other files, for the page to point at.
pub(super) struct Names {
    pub(super) csv: String,
    pub(super) jsonl: String,
}

/// What the page lists, kept as records settle: the first [`TABLE_LIMIT`] changed records
/// (values only when they are shown) and the first of those nothing was written for
/// (failed, invalid, not found, skipped: [`super::needs_a_look`]), and how many there were.
pub(super) struct Page {
    values: bool,
    changed: Vec<Listed>,
    changed_total: u64,
    problems: Vec<Problem>,
    problems_total: u64,
    /// `[mirror]`: the summary's deletions line (count and the guard's verdict).
    deletions_line: Option<String>,
    /// The first deletion lines: status, target id, key.
    deletions: Vec<(Status, String, String)>,
    deletions_total: u64,
}

/// A changed record the table lists.
struct Listed {
    record: u64,
    line: u64,
    key: Option<String>,
    target_id: Option<String>,
    status: Status,
    /// Without values, only the field names.
    changes: Vec<FieldChange>,
}

/// A record nothing was written for, and why; ledger messages name file, line, field and
/// rule, no value.
struct Problem {
    record: u64,
    line: u64,
    key: Option<String>,
    target_id: Option<String>,
    status: Status,
    code: String,
    message: String,
}

impl Page {
    pub(super) fn new(values: bool) -> Page {
        Page {
            values,
            changed: Vec::new(),
            changed_total: 0,
            problems: Vec::new(),
            problems_total: 0,
            deletions_line: None,
            deletions: Vec::new(),
            deletions_total: 0,
        }
    }

    /// Notes one deletion line of a `[mirror]` run.
    pub(super) fn note_deletion(&mut self, deletion: &Deletion<'_>) {
        self.deletions_total += 1;
        if self.deletions.len() < TABLE_LIMIT {
            self.deletions.push((
                deletion.status,
                deletion.target_id.to_owned(),
                deletion.key.to_owned(),
            ));
        }
    }

    /// The deletions' count and the guard's verdict, for the "Deletions" section.
    pub(super) fn note_deletions_line(&mut self, line: String) {
        self.deletions_line = Some(line);
    }

    /// The "Deletions" section (`[mirror]` runs only), on the first screen: the count, the
    /// guard's verdict, the list.
    fn render_deletions(&self, out: &mut dyn Write) -> io::Result<()> {
        let Some(line) = &self.deletions_line else {
            return Ok(());
        };
        let class = if line.starts_with("deletions withheld") {
            " class=\"bad\""
        } else {
            ""
        };
        writeln!(
            out,
            "<section id=\"deletions\"><h2>Deletions ({})</h2>\n<p{class}>{}</p>",
            thousands(self.deletions_total),
            escape(line)
        )?;
        if self.deletions.is_empty() {
            return out.write_all(b"</section>\n");
        }
        if self.deletions_total > self.deletions.len() as u64 {
            writeln!(
                out,
                "<p class=\"note\">The first {} are listed; the ledger holds them all.</p>",
                thousands(self.deletions.len() as u64)
            )?;
        }
        out.write_all(
            b"<table class=\"list\"><thead><tr><th>target id</th><th>key</th><th>status</th>\
              </tr></thead><tbody>\n",
        )?;
        for (status, target_id, key) in &self.deletions {
            writeln!(
                out,
                "<tr data-status=\"{status}\"><td>{}</td><td>{}</td>\
                 <td><span class=\"st st-{status}\">{status}</span></td></tr>",
                escape(target_id),
                escape(key),
                status = status.name(),
            )?;
        }
        out.write_all(b"</tbody></table></section>\n")
    }

    /// Notes one settled record.
    pub(super) fn note(&mut self, entry: &Entry, changes: &[FieldChange]) {
        if !changes.is_empty() {
            self.changed_total += 1;
            if self.changed.len() < TABLE_LIMIT {
                let changes = changes
                    .iter()
                    .map(|c| match self.values {
                        true => c.clone(),
                        false => FieldChange {
                            field: c.field.clone(),
                            from: None,
                            to: String::new(),
                        },
                    })
                    .collect();
                self.changed.push(Listed {
                    record: entry.record,
                    line: entry.line,
                    key: entry.key.clone(),
                    target_id: entry.target_id.clone(),
                    status: entry.status,
                    changes,
                });
            }
        }
        if super::needs_a_look(entry.status) {
            self.problems_total += 1;
            if self.problems.len() < TABLE_LIMIT {
                let (code, message) = entry
                    .error
                    .as_ref()
                    .map(|e| (e.code.clone(), e.message.clone()))
                    .unwrap_or_default();
                self.problems.push(Problem {
                    record: entry.record,
                    line: entry.line,
                    key: entry.key.clone(),
                    target_id: entry.target_id.clone(),
                    status: entry.status,
                    code,
                    message,
                });
            }
        }
    }

    /// Writes the whole page.
    pub(super) fn render(
        &self,
        out: &mut dyn Write,
        run: &RunInfo,
        end: &RunEnd<'_>,
        names: &Names,
    ) -> io::Result<()> {
        let words = Words::of(run.mode);
        let nonce = format!("{:032x}", rand::random::<u128>());
        let command = match run.mode {
            Mode::Plan => "plan",
            Mode::Apply => "apply",
        };
        let started = run.started.format("%Y-%m-%d %H:%M:%S %:z").to_string();
        write!(
            out,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
             style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; base-uri 'none'; \
             form-action 'none'\">\n\
             <title>profilesync {command} report, {}</title>\n<style>{CSS}</style></head>\n\
             <body data-ready=\"0\">\n<header><h1>profilesync {command}: {}</h1>\n<p class=\"lead\">{}</p>\n",
            escape(&started),
            words.title,
            words.lead,
        )?;
        if !self.values {
            out.write_all(
                b"<p class=\"note\">Values are not shown: this report names the records and \
                  the fields that change. Run with <code>--show-values</code> for current and \
                  new values (they are personal data; the report's files are then readable \
                  only by their owner).</p>\n",
            )?;
        }
        out.write_all(b"</header>\n")?;
        self.render_run(out, run, end, &started)?;
        self.render_deletions(out)?;
        render_totals(out, end)?;
        render_fields(out, end, &words)?;
        self.render_problems(out)?;
        self.render_changed(out, end, &words, names)?;
        write!(
            out,
            "<footer>Written by profilesync {}. This page is self-contained: it loads nothing.\
             </footer>\n<script nonce=\"{nonce}\">{SCRIPT}</script>\n</body></html>\n",
            env!("CARGO_PKG_VERSION")
        )
    }

    fn render_run(
        &self,
        out: &mut dyn Write,
        run: &RunInfo,
        end: &RunEnd<'_>,
        started: &str,
    ) -> io::Result<()> {
        out.write_all(b"<section id=\"run\"><h2>The run</h2><dl>\n")?;
        let rows = [
            ("Command", format!("<code>{}</code>", escape(&run.command))),
            ("Config", format!("<code>{}</code>", escape(&run.config))),
            ("Input", format!("<code>{}</code>", escape(&run.input))),
            ("Target", escape(&run.target).into_owned()),
            ("Started", escape(started).into_owned()),
            ("Duration", format!("{:.2} s", end.duration.as_secs_f64())),
            (
                "Exit code",
                format!(
                    "<span id=\"exit-code\">{}</span> ({})",
                    end.exit_code,
                    exit_meaning(end.exit_code)
                ),
            ),
            (
                "Ledger",
                format!("<code>{}</code>", escape(&end.ledger.display().to_string())),
            ),
        ];
        for (name, value) in rows {
            writeln!(out, "<dt>{name}</dt><dd>{value}</dd>")?;
        }
        if let Some(reason) = end.stopped {
            writeln!(
                out,
                "<dt>Stopped early</dt><dd class=\"bad\">{}</dd>",
                escape(reason)
            )?;
        }
        out.write_all(b"</dl></section>\n")
    }

    fn render_problems(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "<section id=\"problems\"><h2>Records not written: failed, invalid, not found, \
             skipped ({})</h2>",
            thousands(self.problems_total)
        )?;
        if self.problems_total == 0 {
            return out.write_all(
                b"<p>None: no record failed, was invalid, or matched no target record.</p>\
                  </section>\n",
            );
        }
        if self.problems_total > self.problems.len() as u64 {
            writeln!(
                out,
                "<p class=\"note\">The first {} are listed; the ledger holds them all.</p>",
                thousands(self.problems.len() as u64)
            )?;
        }
        out.write_all(
            b"<table class=\"list\"><thead><tr><th>record</th><th>line</th><th>key</th>\
              <th>target id</th><th>status</th><th>code</th><th>reason</th></tr></thead><tbody>\n",
        )?;
        let mut problems: Vec<&Problem> = self.problems.iter().collect();
        problems.sort_by_key(|p| p.record);
        for p in problems {
            writeln!(
                out,
                "<tr data-status=\"{status}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td><span class=\"st st-{status}\">{status}</span></td><td><code>{}</code></td>\
                 <td>{}</td></tr>",
                p.record,
                p.line,
                escape(p.key.as_deref().unwrap_or("")),
                escape(p.target_id.as_deref().unwrap_or("")),
                escape(&p.code),
                escape(&p.message),
                status = p.status.name(),
            )?;
        }
        out.write_all(b"</tbody></table></section>\n")
    }

    fn render_changed(
        &self,
        out: &mut dyn Write,
        end: &RunEnd<'_>,
        words: &Words,
        names: &Names,
    ) -> io::Result<()> {
        writeln!(
            out,
            "<section id=\"changed\"><h2>{} (<span id=\"changed-total\">{}</span>)</h2>",
            words.records,
            thousands(self.changed_total)
        )?;
        if self.changed_total > self.changed.len() as u64 {
            writeln!(
                out,
                "<p class=\"note\" id=\"truncated\">The table lists {} of the {} changed \
                 records, the first to settle, in input order; <code>{}</code> holds them all (and <code>{}</code>, one row per \
                 field).</p>",
                thousands(self.changed.len() as u64),
                thousands(self.changed_total),
                escape(&names.jsonl),
                escape(&names.csv),
            )?;
        } else {
            writeln!(
                out,
                "<p class=\"files\">Also in <code>{}</code> (one line per record) and \
                 <code>{}</code> (one row per field).</p>",
                escape(&names.jsonl),
                escape(&names.csv),
            )?;
        }
        out.write_all(
            b"<div class=\"controls\"><label>Search <input type=\"search\" id=\"q\" \
              placeholder=\"key, id, field, record\" autocomplete=\"off\"></label> \
              <label>Status <select id=\"status\"><option value=\"\">any</option>",
        )?;
        let mut statuses: Vec<Status> = self.changed.iter().map(|r| r.status).collect();
        statuses.sort_unstable();
        statuses.dedup();
        for status in statuses {
            write!(out, "<option>{}</option>", status.name())?;
        }
        out.write_all(
            b"</select></label> <label>Field <select id=\"field\"><option value=\"\">any</option>",
        )?;
        for (field, _) in end.fields.ranked() {
            let field = escape(field);
            write!(out, "<option value=\"{field}\">{field}</option>")?;
        }
        out.write_all(
            b"</select></label> <span id=\"shown\" data-shown=\"\"></span></div>\n\
              <table class=\"list\" id=\"changes\"><thead><tr><th>record</th><th>line</th>\
              <th>key</th><th>target id</th><th>status</th><th>changes</th></tr></thead><tbody>\n",
        )?;
        let mut row = String::with_capacity(512);
        let mut changed: Vec<&Listed> = self.changed.iter().collect();
        changed.sort_by_key(|r| r.record);
        for listed in changed {
            row.clear();
            self.render_row(&mut row, listed);
            out.write_all(row.as_bytes())?;
        }
        out.write_all(b"</tbody></table></section>\n")
    }

    fn render_row(&self, row: &mut String, r: &Listed) {
        let status = r.status.name();
        let _ = write!(
            row,
            "<tr data-status=\"{status}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><span class=\"st st-{status}\">{status}</span></td><td>",
            r.record,
            r.line,
            escape(r.key.as_deref().unwrap_or("")),
            escape(r.target_id.as_deref().unwrap_or("")),
        );
        if self.values {
            row.push_str("<ul>");
            for c in &r.changes {
                let _ = write!(row, "<li><span class=\"f\">{}</span> ", escape(&c.field));
                match &c.from {
                    Some(from) if from.is_empty() => {
                        row.push_str("<span class=\"from none\">(none)</span>");
                    }
                    Some(from) => {
                        let _ = write!(row, "<span class=\"from\">{}</span>", escape(from));
                    }
                    None => {
                        let _ = write!(row, "<span class=\"from none\">{NOT_READ}</span>");
                    }
                }
                row.push_str(" <span class=\"arrow\">→</span> ");
                if c.to.is_empty() {
                    row.push_str("<span class=\"to none\">(cleared)</span>");
                } else {
                    let _ = write!(row, "<span class=\"to\">{}</span>", escape(&c.to));
                }
                row.push_str("</li>");
            }
            row.push_str("</ul>");
        } else {
            for (i, c) in r.changes.iter().enumerate() {
                if i > 0 {
                    row.push(' ');
                }
                let _ = write!(row, "<span class=\"f\">{}</span>", escape(&c.field));
            }
        }
        row.push_str("</td></tr>\n");
    }
}

/// The words that differ between a plan ("would") and an apply ("applied").
struct Words {
    title: &'static str,
    lead: &'static str,
    fields: &'static str,
    records: &'static str,
}

impl Words {
    fn of(mode: Mode) -> Words {
        match mode {
            Mode::Plan => Words {
                title: "what would change",
                lead: "A dry run: nothing was written to the target. This page shows what \
                       would change if the same input were applied now.",
                fields: "Records that would change each field",
                records: "Records that would change",
            },
            Mode::Apply => Words {
                title: "what was applied",
                lead: "These changes were applied to the target.",
                fields: "Records in which each field was applied",
                records: "Records applied",
            },
        }
    }
}

fn exit_meaning(code: i32) -> &'static str {
    match code {
        0 => "every record ended well",
        1 => "some records are invalid or failed",
        2 => "usage or configuration error",
        3 => "the run was stopped",
        4 => "deletions were withheld by the [mirror] guard",
        _ => "unexpected",
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn render_totals(out: &mut dyn Write, end: &RunEnd<'_>) -> io::Result<()> {
    out.write_all(
        b"<section id=\"totals\"><h2>Records by status</h2>\n<table class=\"totals\"><tbody>\n",
    )?;
    for status in Status::ALL {
        let n = end.tally.get(status);
        if n > 0 {
            writeln!(
                out,
                "<tr><th><span class=\"st st-{s}\">{s}</span></th>\
                 <td id=\"total-{s}\" data-count=\"{n}\">{}</td></tr>",
                thousands(n),
                s = status.name(),
            )?;
        }
    }
    let total = end.tally.total();
    writeln!(
        out,
        "<tr class=\"sum\"><th>total</th><td id=\"total-all\" data-count=\"{total}\">{}</td></tr>\
         </tbody></table>\n<p class=\"files\">These are the counts of the ledger, every record \
         of the run.</p>",
        thousands(total)
    )?;
    if end.carried > 0 {
        writeln!(
            out,
            "<p class=\"note\">{} of these records settled in an earlier run (<code>--resume\
             </code>): they are counted here, not listed below.</p>",
            thousands(end.carried)
        )?;
    }
    if end.duplicates > 0 {
        writeln!(
            out,
            "<p class=\"note\" id=\"duplicates\">Duplicate keys in the input: {} rows name a \
             target record an earlier row named; each was applied after it, in input order.</p>",
            thousands(end.duplicates)
        )?;
    }
    out.write_all(b"</section>\n")
}

/// Changes per field as an inline SVG bar chart.
fn render_fields(out: &mut dyn Write, end: &RunEnd<'_>, words: &Words) -> io::Result<()> {
    let ranked = end.fields.ranked();
    writeln!(out, "<section id=\"fields\"><h2>{}</h2>", words.fields)?;
    if ranked.is_empty() {
        return out.write_all(b"<p>No field changes.</p></section>\n");
    }
    let records = end.tally.total().saturating_sub(end.carried).max(1);
    let max = ranked.first().map_or(1, |(_, n)| *n).max(1);
    const ROW: usize = 24;
    const LABEL: f64 = 250.0;
    const BAR: f64 = 420.0;
    let height = ranked.len() * ROW + 4;
    writeln!(
        out,
        "<svg class=\"bars\" role=\"img\" aria-label=\"{}\" width=\"100%\" \
         viewBox=\"0 0 820 {height}\" preserveAspectRatio=\"xMinYMin meet\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        words.fields
    )?;
    for (i, (field, n)) in ranked.iter().enumerate() {
        let y = i * ROW;
        let width = (BAR * *n as f64 / max as f64).max(1.0);
        let label: String = if field.chars().count() > 34 {
            field.chars().take(33).chain(['…']).collect()
        } else {
            (*field).to_owned()
        };
        let percent = 100.0 * *n as f64 / records as f64;
        writeln!(
            out,
            "<g class=\"bar\" data-field=\"{f}\" data-count=\"{n}\" transform=\"translate(0 {y})\">\
             <title>{f}: {n} records</title>\
             <text x=\"{lx}\" y=\"16\" text-anchor=\"end\">{label}</text>\
             <rect x=\"{bx}\" y=\"4\" width=\"{width:.1}\" height=\"16\" rx=\"2\"></rect>\
             <text x=\"{cx:.1}\" y=\"16\">{count} ({percent:.1}%)</text></g>",
            f = escape(field),
            lx = LABEL - 8.0,
            label = escape(&label),
            bx = LABEL,
            cx = LABEL + width + 6.0,
            count = thousands(*n),
        )?;
    }
    out.write_all(b"</svg></section>\n")
}

const CSS: &str = "\
:root{color-scheme:light;--ink:#1d232b;--muted:#5b6673;--line:#d9dee4;--bg:#f6f7f9;--accent:#2f6fde}\
*{box-sizing:border-box}\
body{margin:0 auto;max-width:1180px;padding:24px;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);background:#fff}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}\
.lead{margin:0 0 8px;color:var(--muted)}\
.note{background:#fff8e1;border:1px solid #f0d98c;padding:8px 10px;border-radius:4px}\
.files{color:var(--muted)}\
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}dt{color:var(--muted)}dd{margin:0}\
.bad{color:#b3261e}\
table{border-collapse:collapse}\
.totals th,.totals td{padding:4px 12px;border-bottom:1px solid var(--line);text-align:left}\
.totals td{text-align:right;font-variant-numeric:tabular-nums;min-width:90px}\
.totals .sum th,.totals .sum td{font-weight:600;border-bottom:0}\
.list{width:100%;font-size:13px}\
.list th{position:sticky;top:0;background:var(--bg);text-align:left;font-weight:600}\
.list th,.list td{padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}\
.list td:nth-child(-n+2){font-variant-numeric:tabular-nums;text-align:right}\
.list ul{margin:0;padding:0;list-style:none}\
.st{display:inline-block;padding:0 6px;border-radius:9px;background:#e8ecf1;font-size:12px;white-space:nowrap}\
.st-would_update,.st-updated{background:#dde9ff}.st-would_create,.st-created{background:#dcf5e3}\
.st-invalid,.st-failed{background:#fde2e0}\
.f{font-weight:600}td>.f{display:inline-block;margin:0 4px 2px 0;padding:0 6px;background:#eef1f5;border-radius:3px;font-weight:500}\
.list code{white-space:nowrap;overflow-wrap:normal}.from{background:#fde2e0;text-decoration:line-through}.to{background:#dcf5e3}\
.from,.to{padding:0 3px;border-radius:3px;white-space:pre-wrap;overflow-wrap:anywhere}\
.none{font-style:italic;color:var(--muted);background:none;text-decoration:none}.arrow{color:var(--muted)}\
.controls{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin:8px 0 10px}\
.controls input,.controls select{font:inherit;padding:3px 6px}\
#shown{color:var(--muted)}\
.bars{max-width:820px;font-size:12px}.bars rect{fill:var(--accent)}.bars text{fill:var(--ink)}\
footer{margin-top:32px;color:var(--muted);font-size:12px}\
";

/// Filters the table by the search box, status and field; `#q=…&status=…&field=…` in the
/// address fills them in when the page opens.
const SCRIPT: &str = r#"(function () {
  'use strict';
  var q = document.getElementById('q');
  var status = document.getElementById('status');
  var field = document.getElementById('field');
  var shown = document.getElementById('shown');
  var rows = Array.prototype.map.call(document.querySelectorAll('#changes tbody tr'), function (tr) {
    return {
      tr: tr,
      text: tr.textContent.toLowerCase(),
      status: tr.getAttribute('data-status'),
      fields: Array.prototype.map.call(tr.querySelectorAll('.f'), function (e) { return e.textContent; })
    };
  });
  function filter() {
    var t = q.value.trim().toLowerCase(), s = status.value, f = field.value, n = 0;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      var ok = (!t || r.text.indexOf(t) !== -1) && (!s || r.status === s) &&
        (!f || r.fields.indexOf(f) !== -1);
      if (r.tr.hidden === ok) { r.tr.hidden = !ok; }
      if (ok) { n++; }
    }
    shown.textContent = n + ' of ' + rows.length + ' rows shown';
    shown.setAttribute('data-shown', String(n));
  }
  var wanted = new URLSearchParams(location.hash.slice(1));
  if (wanted.has('q')) { q.value = wanted.get('q'); }
  if (wanted.has('status')) { status.value = wanted.get('status'); }
  if (wanted.has('field')) { field.value = wanted.get('field'); }
  q.addEventListener('input', filter);
  status.addEventListener('change', filter);
  field.addEventListener('change', filter);
  filter();
  document.body.setAttribute('data-ready', String(Math.max(1, Math.round(performance.now()))));
})();
"#;
