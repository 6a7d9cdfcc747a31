//! The diff report of `plan` and `apply --report` (issue 9), from the real binary against
//! the emulator: CSV neutralised, JSONL per record, one self-contained HTML page whose
//! totals are the ledger's, values only with `--show-values`, mode 0600; and the page in a
//! real headless Chromium.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use profilesync::emulator::EmulatorConfig;
use serde_json::{Value, json};

use crate::support::{
    DOMAIN, Dir, TestCommand, needs_tool, pid, profiles_config, read_ledger, run, start_emulator,
    sync_args,
};

/// First names that try to become formulas, elements and attributes.
const HOSTILE: [&str; 5] = [
    "=HYPERLINK(\"http://evil.example\",\"click\")",
    "<script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">",
    "\"><b id=\"injected\">bold</b>",
    "' onmouseover='alert(1)' &amp; &lt;",
];

/// The input: records 1-5 change FirstName to a hostile value (record 4 also its City, 1
/// and 2 their Tier), 6 is unchanged, 7 has no profile, 8 has a broken ProfileId.
fn input() -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["crm_id", "profile_id", "first", "city", "tier"])
        .unwrap();
    for (i, first) in HOSTILE.iter().enumerate() {
        let i = i as u32 + 1;
        let city = if i == 4 {
            "Zqzanzibar".to_owned()
        } else {
            format!("Zqtown{i}")
        };
        let tier = match i {
            1 => "+14155550123",
            2 => "-5",
            _ => "Zqgold",
        };
        out.write_record([&format!("C{i}"), &pid(i), *first, &city, tier])
            .unwrap();
    }
    out.write_record(["C6", &pid(6), "Zqsame6", "Zqtown6", "Zqgold"])
        .unwrap();
    out.write_record(["C7", &pid(7), "Zqnew7", "Zqtown7", "Zqgold"])
        .unwrap();
    out.write_record(["C8", "not-a-profile-id", "Zqbad8", "Zqtown8", "Zqgold"])
        .unwrap();
    String::from_utf8(out.into_inner().unwrap()).unwrap()
}

/// Every value of the input and the seed that is not an id: none may reach a report
/// written without `--show-values`.
fn values() -> Vec<String> {
    let mut values: Vec<String> = HOSTILE.iter().map(|v| (*v).to_owned()).collect();
    values.extend(["Zq", "+14155550123"].map(str::to_owned));
    values
}

fn seed() -> Value {
    let profiles: serde_json::Map<String, Value> = (1..=6)
        .map(|i| {
            let first = if i == 6 {
                "Zqsame6".to_owned()
            } else {
                format!("Zqold{i}")
            };
            (
                pid(i),
                json!({"FirstName": first, "Address": {"City": format!("Zqtown{i}")},
                       "Attributes": {"Tier": "Zqgold"}}),
            )
        })
        .collect();
    json!({"domains": {DOMAIN: {"profiles": profiles}}})
}

/// The fields of the input, mapped to the profile.
const FIELDS: &str = r#"FirstName = "first"
"Address.City" = "city"
"Attributes.Tier" = "tier"
"#;

/// The report's files, from the lines of the summary that name them.
struct Files {
    html: PathBuf,
    csv: PathBuf,
    jsonl: PathBuf,
}

fn files(dir: &Dir, stdout: &str) -> Files {
    let find = |label: &str| {
        let path = stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no `{label}` in: {stdout}"));
        dir.path(path)
    };
    Files {
        html: find("report: "),
        csv: find("diff csv: "),
        jsonl: find("diff jsonl: "),
    }
}

/// `plan` (or `apply`) of the input with `--report rep` and `extra`; checks the exit code
/// (1: record 8 is invalid) and returns the stdout and the ledger.
async fn sync(dir: &Dir, command: &str, extra: &[&str]) -> (String, Vec<Value>) {
    let emulator = start_emulator(EmulatorConfig::default().with_seed(seed())).await;
    dir.write("in.csv", input());
    dir.write("c.toml", profiles_config(FIELDS));
    let mut args = sync_args(command, "c.toml", "l.jsonl", &["--report", "rep"]);
    args.extend_from_slice(extra);
    let out = run(dir, &emulator, &args).await;
    out.assert_exit(1);
    let ledger = dir.ledger("l.jsonl");
    assert_eq!(ledger.len(), 8);
    (out.stdout(), ledger)
}

fn counts(ledger: &[Value]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in ledger {
        *counts
            .entry(entry["status"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    counts
}

/// The page's totals are the ledger's: each status's count, and no other status.
fn assert_totals_are_the_ledgers(html: &str, ledger: &[Value]) {
    let counts = counts(ledger);
    for (status, n) in &counts {
        let cell = format!("id=\"total-{status}\" data-count=\"{n}\"");
        assert!(html.contains(&cell), "{cell} not in the page");
    }
    assert_eq!(html.matches("id=\"total-").count(), counts.len() + 1);
    let total = format!("id=\"total-all\" data-count=\"{}\"", ledger.len());
    assert!(html.contains(&total), "{total}");
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_report_with_values_neutralises_escapes_and_totals_the_ledger() {
    let dir = Dir::new();
    let (stdout, ledger) = sync(&dir, "plan", &["--show-values"]).await;
    let counts = counts(&ledger);
    assert_eq!(counts["would_update"], 5);
    assert_eq!(counts["would_refresh"], 1);
    assert_eq!(counts["not_found"], 1);
    assert_eq!(counts["invalid"], 1);
    // The summary: counts, then the fields most records change, then the files.
    assert!(
        stdout.contains(
            "top fields, by records that change them:\n  FirstName               5\n  \
             Attributes.Tier         2\n  Address.City            1\nledger: l.jsonl\n"
        ),
        "{stdout}"
    );
    let files = files(&dir, &stdout);
    assert!(files.html.starts_with(dir.path("rep")));
    #[cfg(unix)]
    for path in [&files.html, &files.csv, &files.jsonl] {
        assert_eq!(mode_of(path), 0o600, "{}", path.display());
    }

    // CSV: the formula is plain text behind an apostrophe; numbers and phones are kept.
    let mut csv = csv::Reader::from_path(&files.csv).unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    let cell = |key: &str, field: &str| {
        rows.iter()
            .find(|r| &r[2] == key && &r[5] == field)
            .map(|r| (r[6].to_owned(), r[7].to_owned()))
            .unwrap_or_else(|| panic!("no row {key} {field}"))
    };
    assert_eq!(
        cell("C1", "FirstName"),
        ("Zqold1".into(), format!("'{}", HOSTILE[0]))
    );
    assert_eq!(cell("C1", "Attributes.Tier").1, "+14155550123");
    assert_eq!(cell("C2", "Attributes.Tier").1, "-5");
    assert_eq!(
        cell("C4", "Address.City"),
        ("Zqtown4".into(), "Zqzanzibar".into())
    );
    // One row per changed field, then one per record not written, with its reason (issue
    // 19): the profile that does not exist and the invalid record.
    assert_eq!(rows.len(), 5 + 2 + 1 + 2);
    let not_written: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| r[5].is_empty())
        .map(|r| (&r[4], &r[8], &r[9]))
        .collect();
    assert_eq!(not_written.len(), 2, "{rows:?}");
    assert!(
        not_written
            .iter()
            .any(|(status, code, reason)| *status == "not_found"
                && *code == "not_found"
                && reason.contains("no profile has this ProfileId")),
        "{not_written:?}"
    );
    assert!(
        not_written
            .iter()
            .any(|(status, code, _)| *status == "invalid" && !code.is_empty())
    );
    for row in &rows {
        for cell in row {
            let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
            assert!(
                !risky || cell.parse::<f64>().is_ok(),
                "a live formula cell: {cell}"
            );
        }
    }

    // JSONL: one object per changed record, exact values, and one per record not written.
    let jsonl = read_ledger(&files.jsonl);
    assert_eq!(jsonl.len(), 5 + 2);
    let missing = jsonl.iter().find(|l| l["status"] == "not_found").unwrap();
    assert_eq!(missing["error"]["code"], "not_found");
    assert_eq!(missing["changes"], json!([]));
    let c1 = jsonl.iter().find(|l| l["key"] == "C1").unwrap();
    assert_eq!(c1["status"], "would_update");
    assert_eq!(c1["target_id"], pid(1));
    assert_eq!(c1["line"], 2);
    let first = c1["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "FirstName")
        .unwrap();
    assert_eq!(
        first,
        &json!({"field": "FirstName", "from": "Zqold1", "to": HOSTILE[0]})
    );

    // HTML: the ledger's totals, every value escaped, the invalid record with its reason.
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert_totals_are_the_ledgers(&html, &ledger);
    for value in HOSTILE {
        assert!(!html.contains(value), "unescaped in the page: {value}");
        assert!(html.contains(profilesync::report::escape(value).as_ref()));
    }
    assert!(!html.contains("<img") && !html.contains("<b ") && !html.contains("onerror=\""));
    assert_eq!(html.matches("<script").count(), 1);
    let reason = ledger.iter().find(|e| e["status"] == "invalid").unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        html.contains(profilesync::report::escape(&reason).as_ref()),
        "{reason}"
    );
    assert!(html.contains("<code>c.toml</code>") && html.contains("<code>in.csv</code>"));
    assert!(html.contains("<span id=\"exit-code\">1</span>"));
    assert!(html.contains("what would change"));
    // It loads nothing.
    assert!(!html.contains(" src=\"") && !html.contains("href="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_show_values_no_value_reaches_the_report_and_quiet_prints_nothing() {
    let dir = Dir::new();
    let (stdout, ledger) = sync(&dir, "plan", &[]).await;
    let files = files(&dir, &stdout);
    let texts =
        [&files.csv, &files.jsonl, &files.html].map(|p| std::fs::read_to_string(p).unwrap());
    for text in &texts {
        for value in values() {
            assert!(
                !text.contains(&value),
                "{value} is in a report without --show-values"
            );
            let escaped = profilesync::report::escape(&value);
            assert!(
                !text.contains(escaped.as_ref()),
                "{value} is in a report, escaped"
            );
        }
        assert!(
            text.contains("C1") && text.contains("FirstName"),
            "ids and fields stay"
        );
    }
    assert!(texts[2].contains("Values are not shown"));
    assert_totals_are_the_ledgers(&texts[2], &ledger);
    assert_eq!(read_ledger(&files.jsonl).len(), 5 + 2);

    // --quiet: nothing on stdout, the report written all the same.
    let quiet = Dir::new();
    let (stdout, _) = sync(&quiet, "plan", &["--quiet"]).await;
    assert_eq!(stdout, "");
    let written: Vec<_> = std::fs::read_dir(quiet.path("rep"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written.len(), 3, "{written:?}");
    assert!(written.iter().any(|n| n.ends_with("-plan-report.html")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_report_says_what_was_applied() {
    let dir = Dir::new();
    let (stdout, ledger) = sync(&dir, "apply", &["--show-values"]).await;
    let files = files(&dir, &stdout);
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert_totals_are_the_ledgers(&html, &ledger);
    assert!(html.contains("what was applied"));
    assert!(!html.contains("would change"));
    assert!(html.contains("id=\"total-updated\""));
    // apply reads each profile before writing what differs: `from` is the value read.
    let jsonl = read_ledger(&files.jsonl);
    assert!(!jsonl.is_empty());
    assert!(jsonl.iter().all(|l| {
        l["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["from"].is_string())
    }));
    assert!(!html.contains("(not read)"));
}

/// Chromium from Debian's package (`.ci/run` installs it when missing).
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The page's DOM after its script ran, from a headless Chromium opening `page#hash`.
async fn dump_dom(chromium: &Path, page: &Path, hash: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}{hash}", page.canonicalize().unwrap().display());
    let run = TestCommand::program(chromium, profile.path())
        .args(&[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(&["--dump-dom", &url])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("chromium answers within 2 minutes");
    assert!(out.status.success(), "chromium: {}", out.stderr());
    out.stdout()
}

/// The elements `report/html.rs` writes.
const PAGE_TAGS: &[&str] = &[
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "code", "section",
    "dl", "dt", "dd", "span", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "div",
    "label", "input", "select", "option", "svg", "g", "text", "rect", "footer", "script",
];

/// The attributes `report/html.rs` writes, and `hidden`, which its script sets.
const PAGE_ATTRIBUTES: &[&str] = &[
    "lang",
    "charset",
    "name",
    "content",
    "http-equiv",
    "data-ready",
    "class",
    "id",
    "data-status",
    "data-count",
    "data-field",
    "data-shown",
    "type",
    "placeholder",
    "autocomplete",
    "value",
    "role",
    "aria-label",
    "width",
    "viewbox",
    "preserveaspectratio",
    "xmlns",
    "transform",
    "x",
    "y",
    "text-anchor",
    "height",
    "rx",
    "nonce",
    "hidden",
];

/// Every start tag of a serialized DOM (outside `<script>` and `<style>`): its name and
/// its attributes' names, lower case. The serializer always double-quotes attribute values.
fn elements(dom: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let tag = rest[..name_end].to_ascii_lowercase();
        let mut attrs = Vec::new();
        let mut inside = &rest[name_end..];
        loop {
            inside = inside.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
            if inside.is_empty() || inside.starts_with('>') {
                break;
            }
            let end = inside
                .find(|c: char| c.is_whitespace() || c == '=' || c == '>')
                .unwrap_or(inside.len());
            attrs.push(inside[..end].to_ascii_lowercase());
            inside = &inside[end..];
            if let Some(value) = inside.strip_prefix("=\"") {
                let close = value.find('"').expect("a closing quote");
                inside = &value[close + 1..];
            }
        }
        rest = inside;
        if tag == "script" || tag == "style" {
            let close = format!("</{tag}>");
            rest = rest.find(&close).map_or("", |i| &rest[i..]);
        }
        found.push((tag, attrs));
    }
    found
}

/// The rows of the changes table in a DOM dump: (shown, text) each.
fn table_rows(dom: &str) -> Vec<(bool, String)> {
    let table = dom
        .split("id=\"changes\"")
        .nth(1)
        .expect("the changes table")
        .split("<tbody>")
        .nth(1)
        .unwrap()
        .split("</tbody>")
        .next()
        .unwrap();
    table
        .split("<tr")
        .skip(1)
        .map(|row| {
            let open = row.split('>').next().unwrap();
            (!open.contains("hidden"), row.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_in_a_real_headless_chromium() {
    let Some(chromium) = needs_tool(
        chromium(),
        "no /usr/bin/chromium",
        "apt-get install chromium",
    ) else {
        return;
    };
    let dir = Dir::new();
    let (stdout, ledger) = sync(&dir, "plan", &["--show-values"]).await;
    let page = files(&dir, &stdout).html;

    // It renders and its script ran: every changed record shown, the ledger's totals.
    let dom = dump_dom(&chromium, &page, "").await;
    assert!(!dom.contains("data-ready=\"0\""), "the script did not run");
    assert!(dom.contains("data-ready=\""));
    assert_totals_are_the_ledgers(&dom, &ledger);
    let rows = table_rows(&dom);
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|(shown, _)| *shown));
    assert!(dom.contains("data-shown=\"5\""));

    // Nothing from an input value became an element or an attribute, or ran: every element
    // and attribute in the DOM is one the page writes.
    for (tag, attributes) in elements(&dom) {
        assert!(
            PAGE_TAGS.contains(&tag.as_str()),
            "an element <{tag}> in the DOM"
        );
        for attribute in attributes {
            assert!(
                PAGE_ATTRIBUTES.contains(&attribute.as_str()),
                "an attribute {attribute} on <{tag}> in the DOM"
            );
        }
    }
    for evil in ["<img", "<b ", "<b>", "data-pwned=\""] {
        assert!(!dom.contains(evil), "{evil} in the DOM");
    }
    assert!(!dom.contains("<title>pwned"));
    assert_eq!(dom.matches("<script").count(), 1);
    // The values are there, as text.
    assert!(dom.contains("\"&gt;&lt;b id=\"injected\"&gt;bold&lt;/b&gt;"));

    // The search box filters the table (here filled in from the address).
    let dom = dump_dom(&chromium, &page, "#q=zanzibar").await;
    let shown: Vec<_> = table_rows(&dom).into_iter().filter(|(s, _)| *s).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].1.contains("<td>C4</td>"), "{}", shown[0].1);
    assert!(dom.contains("data-shown=\"1\""));
    // A search for a value of the record, with markup in it, finds it as text.
    let dom = dump_dom(&chromium, &page, "#q=%3Cscript%3Edocument").await;
    let shown: Vec<_> = table_rows(&dom).into_iter().filter(|(s, _)| *s).collect();
    assert_eq!(shown.len(), 1);
    assert!(shown[0].1.contains("<td>C2</td>"));
    // And the filters by field and status.
    let dom = dump_dom(
        &chromium,
        &page,
        "#field=Attributes.Tier&status=would_update",
    )
    .await;
    let shown: Vec<_> = table_rows(&dom)
        .into_iter()
        .filter(|(s, _)| *s)
        .map(|(_, row)| row)
        .collect();
    assert_eq!(shown.len(), 2);
    assert!(shown[0].contains("<td>C1</td>") || shown[1].contains("<td>C1</td>"));
    let dom = dump_dom(&chromium, &page, "#q=no-such-record").await;
    assert!(table_rows(&dom).iter().all(|(shown, _)| !shown));
    assert!(dom.contains("data-shown=\"0\""));
}
