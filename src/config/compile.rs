//! Phase two of config loading: check the raw config against the target and build the plan.
//!
//! Every check runs, and every failure is kept, so one run of `profilesync check` shows all
//! the mistakes of a config file, each with its line and what was expected.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::{RawConfig, RawLimits, RawMatch, RawMirror, RawState, RawTarget};
use super::{
    Config, ConfigError, ConfigErrors, DEFAULT_MAX_DELETE_PERCENT, DEFAULT_MAX_DELETES, Deletes,
    Duplicates, Limits, Match, MatchBy, Mirror, OperationLimits, Rate, RefreshSetting,
    RemoteSettings, SourceSettings, Target, WhenMissing,
};
use crate::mapping::{
    DateFormat, EmptyPolicy, FieldRule, Input, PhoneRegion, RegexRewrite, SearchRule, Transform,
    column_in_constant, parse_template,
};
use crate::schema::{self, TargetKind};

/// The transform names that take no argument, for error messages.
const SIMPLE_TRANSFORMS: &[&str] = &[
    "trim",
    "lowercase",
    "uppercase",
    "collapse_whitespace",
    "nfc",
    "e164",
    "email",
];
/// The transforms written as a one-key table.
const TABLE_TRANSFORMS: &[&str] = &["date", "map", "default", "split", "e164", "regex"];

/// Compiles the text of a config file.
pub fn compile(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut cx = Compiler {
        file,
        text,
        errors: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let line = e.span().map(|s| cx.line(s.start));
            cx.errors.push(ConfigError {
                file: file.to_owned(),
                line,
                message: e.message().to_owned(),
            });
            return Err(ConfigErrors(cx.errors));
        }
    };
    let config = cx.config(raw);
    if cx.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(cx.errors))
    }
}

struct Compiler<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Compiler<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text.as_bytes()[..offset.min(self.text.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let line = span.map(|s| self.line(s.start));
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            message: message.into(),
        });
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let kind = *raw.target.kind.get_ref();
        let source = self.source(&raw);
        let target = self.target(raw.target);
        let mut matching = self.matching(kind, &source, raw.matching);
        let limits = self.limits(kind, &raw.limits);
        let mut rules = Vec::new();
        for (name, spec) in &raw.fields {
            if let Some(extension) = extension_named(&target, name.get_ref()) {
                self.error(
                    Some(name.span()),
                    format!(
                        "`{}` is the name of the declared extension `{extension}` ([target] \
                         extensions; UCS names are case-insensitive): a mapped attribute of \
                         that name would be written over the extension; map the attribute \
                         under another name",
                        name.get_ref()
                    ),
                );
                continue;
            }
            if let Some(rule) = self.field(kind, &source, name, spec) {
                rules.push(rule);
            }
        }
        if let MatchBy::Search { key, value } = &mut matching.by {
            borrow_transforms(kind, key, value, &rules);
        }
        if rules.is_empty() && raw.fields.is_empty() {
            self.error(None, "[fields] is empty: map at least one target field");
        }
        Config {
            file: self.file.to_owned(),
            source,
            target,
            matching,
            limits,
            refresh: self.refresh(&raw.state),
            state: self.state_path(&raw.state),
            remote: self.remote(&raw.state),
            mirror: raw.mirror.as_ref().and_then(|m| self.mirror(kind, m)),
            rules,
        }
    }

    /// `[mirror]`: `owner` is required unless `deletes = "off"`; Connect users are only
    /// reported (DeleteUser is irreversible and orphans quick connects).
    fn mirror(&mut self, kind: TargetKind, raw: &Spanned<RawMirror>) -> Option<Mirror> {
        let table = raw.get_ref();
        let deletes = table
            .deletes
            .as_ref()
            .map_or(Deletes::Off, |d| *d.get_ref());
        if deletes == Deletes::Delete && kind == TargetKind::ConnectUser {
            self.error(
                table.deletes.as_ref().map(Spanned::span),
                "[mirror] deletes = \"delete\" is not available for connect-user: DeleteUser \
                 cannot be undone and orphans quick connects; use deletes = \"report\"",
            );
        }
        let owner = match &table.owner {
            Some(owner) if owner.get_ref().trim().is_empty() => {
                self.error(Some(owner.span()), "[mirror] owner must not be empty");
                None
            }
            Some(owner) => Some(owner.get_ref().clone()),
            None if deletes != Deletes::Off => {
                self.error(
                    Some(raw.span()),
                    format!(
                        "[mirror] owner is required with deletes = \"{}\": name this sync \
                         (for example owner = \"crm-contacts\")",
                        deletes.name()
                    ),
                );
                None
            }
            None => None,
        };
        let max_deletes = self
            .bounded("[mirror] max_deletes", &table.max_deletes, 1_000_000_000)
            .map_or(DEFAULT_MAX_DELETES, |n| n as u64);
        let max_delete_percent = match &table.max_delete_percent {
            None => DEFAULT_MAX_DELETE_PERCENT,
            Some(value) => match value.get_ref() {
                toml::Value::Integer(n) if (0..=100).contains(n) => *n as f64,
                toml::Value::Float(f) if (0.0..=100.0).contains(f) => *f,
                _ => {
                    self.error(
                        Some(value.span()),
                        "[mirror] max_delete_percent must be a number from 0 to 100",
                    );
                    DEFAULT_MAX_DELETE_PERCENT
                }
            },
        };
        if deletes == Deletes::Off {
            return None;
        }
        Some(Mirror {
            deletes,
            owner: owner?,
            max_deletes,
            max_delete_percent,
        })
    }

    /// `[state] path`: a directory, or an `s3://BUCKET/PREFIX/` location that parses.
    fn state_path(&mut self, raw: &RawState) -> Option<PathBuf> {
        let path = raw.path.as_ref()?;
        if let Err(why) = crate::state::Location::parse(path.get_ref()) {
            self.error(Some(path.span()), format!("[state] path: {why}"));
        }
        Some(PathBuf::from(path.get_ref()))
    }

    /// `[state] lease_seconds` (10 s to a day) and the checkpoints' records and minutes.
    fn remote(&mut self, raw: &RawState) -> RemoteSettings {
        let mut settings = RemoteSettings::default();
        if let Some(lease) = &raw.lease_seconds {
            let n = *lease.get_ref();
            if (2..=86_400).contains(&n) {
                settings.lease_seconds = n as u64;
            } else {
                self.error(
                    Some(lease.span()),
                    "[state] lease_seconds must be between 2 and 86400",
                );
            }
        }
        if let Some(n) = self.bounded(
            "[state] checkpoint_records",
            &raw.checkpoint_records,
            1_000_000_000,
        ) {
            settings.checkpoints.records = n as u64;
        }
        if let Some(n) = self.bounded("[state] checkpoint_minutes", &raw.checkpoint_minutes, 1_440)
        {
            settings.checkpoints.every = std::time::Duration::from_secs(n as u64 * 60);
        }
        settings
    }

    fn refresh(&mut self, raw: &RawState) -> RefreshSetting {
        match (raw.refresh, &raw.refresh_days) {
            (Some(false), Some(days)) => {
                self.error(
                    Some(days.span()),
                    "[state] refresh_days needs refresh = true (or no refresh key)",
                );
                RefreshSetting::Off
            }
            (Some(false), None) => RefreshSetting::Off,
            (_, None) => RefreshSetting::Default,
            (_, Some(_)) => match self.bounded("[state] refresh_days", &raw.refresh_days, 3_650) {
                Some(days) => RefreshSetting::Days(days as u32),
                None => RefreshSetting::Default,
            },
        }
    }

    fn source(&mut self, raw: &RawConfig) -> SourceSettings {
        let s = &raw.source;
        if s.key.get_ref().trim().is_empty() {
            self.error(Some(s.key.span()), "[source] key must name a column");
        }
        let delimiter = match &s.delimiter {
            None => b',',
            Some(d) => match d.get_ref().as_bytes() {
                [b] if b.is_ascii() && *b != b'"' && *b != b'\n' => *b,
                _ => {
                    self.error(Some(d.span()), "[source] delimiter must be one ASCII character, such as \",\", \";\" or \"\\t\"");
                    b','
                }
            },
        };
        let phone_region = match &s.phone_region {
            None => PhoneRegion::parse("US").expect("US is a region"),
            Some(r) => self.region(r),
        };
        SourceSettings {
            path: s.path.clone(),
            key: s.key.get_ref().clone(),
            format: s.format,
            delimiter,
            empty: s.empty.unwrap_or_default(),
            phone_region,
        }
    }

    fn region(&mut self, code: &Spanned<String>) -> PhoneRegion {
        PhoneRegion::parse(code.get_ref()).unwrap_or_else(|| {
            self.error(
                Some(code.span()),
                format!("`{}` is not a region code; expected an ISO 3166 code such as \"US\", \"GB\" or \"DE\"", code.get_ref()),
            );
            PhoneRegion::parse("US").expect("US is a region")
        })
    }

    fn target(&mut self, raw: RawTarget) -> Target {
        let (target, problems) = Target::compile(raw);
        for (span, message) in problems {
            self.error(Some(span), message);
        }
        target
    }

    fn matching(
        &mut self,
        kind: TargetKind,
        source: &SourceSettings,
        raw: Option<Spanned<RawMatch>>,
    ) -> Match {
        let fallback = Match {
            by: MatchBy::Id(String::new()),
            when_missing: WhenMissing::Skip,
            duplicates: Duplicates::Update,
        };
        let Some(raw) = raw else {
            self.error(None, format!("[match] is missing: set `id` (the column holding the {}) or `search_key` and `search_column`", kind.id_name()));
            return fallback;
        };
        let span = raw.span();
        let raw = raw.into_inner();
        let by = match (raw.id, raw.search_key, raw.search_column) {
            (Some(id), None, None) => MatchBy::Id(id.into_inner()),
            (None, Some(key), Some(column)) => {
                self.search_key(kind, &key);
                let Some(value) = self.search_rule(kind, source, &column) else {
                    return fallback;
                };
                MatchBy::Search {
                    key: key.into_inner(),
                    value,
                }
            }
            (None, Some(key), None) => {
                self.error(Some(key.span()), "[match] search_key needs search_column (the column holding the value to search for)");
                return fallback;
            }
            (None, None, _) => {
                self.error(Some(span), format!("[match] needs `id` (the column holding the {}) or `search_key` with `search_column`", kind.id_name()));
                return fallback;
            }
            (Some(id), _, _) => {
                self.error(
                    Some(id.span()),
                    "[match] takes `id` or `search_key`, not both",
                );
                return fallback;
            }
        };
        let when_missing = raw.when_missing.map_or(WhenMissing::Skip, |w| {
            if *w.get_ref() == WhenMissing::Create && kind == TargetKind::ConnectUser {
                self.error(Some(w.span()), "[match] when_missing = \"create\" is not possible for connect-user (users are created in Connect)");
            }
            if *w.get_ref() == WhenMissing::Create && kind == TargetKind::CustomerProfiles && matches!(by, MatchBy::Id(_)) {
                self.error(Some(w.span()), "[match] when_missing = \"create\" needs search_key for customer-profiles: CreateProfile assigns a new ProfileId, so an id column cannot name a profile that does not exist yet");
            }
            w.into_inner()
        });
        Match {
            by,
            when_missing,
            duplicates: raw.duplicates.unwrap_or_default(),
        }
    }

    /// `search_column`: a column (whose field's transforms are borrowed once the fields are
    /// compiled), or a table deriving the value like a field mapping.
    fn search_rule(
        &mut self,
        kind: TargetKind,
        source: &SourceSettings,
        column: &Spanned<toml::Value>,
    ) -> Option<SearchRule> {
        const WHAT: &str = "[match] search_column";
        let span = column.span();
        let table = match column.get_ref() {
            toml::Value::String(name) => return Some(SearchRule::column(name)),
            toml::Value::Table(table) => table,
            _ => {
                self.error(Some(span), format!("{WHAT}: expected a column name, or a table with `from` (or `template`) and `transform`, such as {{ from = \"email\", transform = [{{ regex = {{ pattern = \"^([^@]+)@\", replace = \"$1\" }} }}] }}"));
                return None;
            }
        };
        if table.contains_key("empty") {
            self.error(Some(span.clone()), format!("{WHAT}: `empty` does not apply to a search value (an empty one is an invalid record)"));
        }
        let mut derived = table.clone();
        derived.remove("empty");
        let (input, transforms, _) = self.field_table(kind, source, WHAT, &derived, &span)?;
        match input? {
            Input::Constant(_) => {
                self.error(Some(span), format!("{WHAT}: `value` is the same for every record; a search value comes from the record (`from` or `template`)"));
                None
            }
            input => Some(SearchRule {
                input,
                transforms,
                also_raw: false,
            }),
        }
    }

    fn search_key(&mut self, kind: TargetKind, key: &Spanned<String>) {
        let name = key.get_ref();
        let problem = match kind {
            TargetKind::CustomerProfiles => {
                let ok = (1..=64).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                (!ok).then(|| "a SearchProfiles KeyName such as \"_email\", \"_phone\", \"_account\" or a custom key (1-64 letters, digits, _ and -)".to_owned())
            }
            TargetKind::ConnectUser => (name != "Username").then(|| "\"Username\"".to_owned()),
            TargetKind::GenesysUcs => {
                Some("nothing: genesys-ucs matches by [match] id (customer_id)".to_owned())
            }
        };
        if let Some(expected) = problem {
            self.error(
                Some(key.span()),
                format!("[match] search_key `{name}` is not valid for {kind}; expected {expected}"),
            );
        }
    }

    fn limits(&mut self, kind: TargetKind, raw: &RawLimits) -> Limits {
        let mut limits = default_limits(kind);
        let start = default_start_rate(kind);
        if let Some(rate) = self.rate("[limits]", &raw.rate, &raw.start_rate, start) {
            limits.rate = rate;
        }
        if let Some(n) = self.bounded("[limits] burst", &raw.burst, 10_000) {
            limits.burst = n as u32;
        }
        if let Some(n) = self.bounded("[limits] concurrency", &raw.concurrency, 1_024) {
            limits.concurrency = n as usize;
        }
        if let Some(n) = self.bounded("[limits] max_attempts", &raw.max_attempts, 100) {
            limits.max_attempts = n as u32;
        }
        if let Some(url) = &raw.shared {
            match crate::limiter::shared::check_url(url.get_ref()) {
                Ok(()) => limits.shared = Some(url.get_ref().clone()),
                Err(problem) => self.error(Some(url.span()), format!("[limits] shared {problem}")),
            }
        }
        if let Some(n) = self.bounded("[limits] shared_peers", &raw.shared_peers, 1_000) {
            limits.shared_peers = n as u32;
            if raw.shared.is_none() {
                self.error(
                    raw.shared_peers.as_ref().map(|v| v.span()),
                    "[limits] shared_peers needs [limits] shared (a redis:// URL)".to_owned(),
                );
            }
        }
        if let Some(n) = self.bounded("[limits] read_ahead", &raw.read_ahead, 100_000) {
            limits.read_ahead = n as usize;
        }
        let known = schema::operations(kind);
        for (name, own) in raw.operations.iter().flatten() {
            if !known.contains(&name.get_ref().as_str()) {
                self.error(
                    Some(name.span()),
                    format!(
                        "[limits.operations.{}]: {kind} has no such operation; expected one of: {}",
                        name.get_ref(),
                        known.join(", ")
                    ),
                );
                continue;
            }
            let table = format!("[limits.operations.{}]", name.get_ref());
            let limit = OperationLimits {
                rate: self.rate(&table, &own.rate, &own.start_rate, start),
                burst: self
                    .bounded(&format!("{table} burst"), &own.burst, 10_000)
                    .map(|n| n as u32),
            };
            limits.operations.insert(name.get_ref().clone(), limit);
        }
        limits
    }

    /// A `rate` (a positive number or `"auto"`) with its `start_rate`, in `table`.
    fn rate(
        &mut self,
        table: &str,
        rate: &Option<Spanned<toml::Value>>,
        start_rate: &Option<Spanned<toml::Value>>,
        default_start: f64,
    ) -> Option<Rate> {
        let number = |v: &toml::Value| match v {
            toml::Value::Integer(n) if *n > 0 => Some(*n as f64),
            toml::Value::Float(f) if *f > 0.0 && f.is_finite() => Some(*f),
            _ => None,
        };
        let compiled = rate
            .as_ref()
            .and_then(|rate| match (rate.get_ref(), number(rate.get_ref())) {
                (toml::Value::String(s), _) if s == "auto" => Some(Rate::Auto {
                    start: default_start,
                }),
                (_, Some(n)) => Some(Rate::PerSecond(n)),
                _ => {
                    self.error(
                        Some(rate.span()),
                        format!(
                            "{table} rate must be a positive number of requests per second, or \"auto\""
                        ),
                    );
                    None
                }
            });
        let Some(start) = start_rate else {
            return compiled;
        };
        match (compiled, number(start.get_ref())) {
            (Some(Rate::Auto { .. }), Some(n)) => Some(Rate::Auto { start: n }),
            (Some(Rate::Auto { .. }), None) => {
                self.error(
                    Some(start.span()),
                    format!("{table} start_rate must be a positive number"),
                );
                compiled
            }
            _ => {
                self.error(
                    Some(start.span()),
                    format!("{table} start_rate only goes with rate = \"auto\""),
                );
                compiled
            }
        }
    }

    /// An integer in `1..=max`, reported as `what` when it is not.
    fn bounded(&mut self, what: &str, value: &Option<Spanned<i64>>, max: i64) -> Option<i64> {
        let v = value.as_ref()?;
        let n = *v.get_ref();
        if (1..=max).contains(&n) {
            Some(n)
        } else {
            self.error(
                Some(v.span()),
                format!("{what} must be between 1 and {max}"),
            );
            None
        }
    }

    fn field(
        &mut self,
        kind: TargetKind,
        source: &SourceSettings,
        name: &Spanned<String>,
        spec: &Spanned<toml::Value>,
    ) -> Option<FieldRule> {
        let target = match schema::resolve(kind, name.get_ref()) {
            Ok(t) => Some(t),
            Err(unknown) => {
                self.error(
                    Some(name.span()),
                    format!(
                        "unknown target field: {}; expected one of: {}",
                        unknown.reason,
                        unknown.expected.join(", ")
                    ),
                );
                None
            }
        };
        let span = spec.span();
        let field = name.get_ref();
        let (input, transforms, empty) = match spec.get_ref() {
            toml::Value::String(column) => (
                Some(Input::Column(column.clone())),
                Vec::new(),
                source.empty,
            ),
            toml::Value::Table(table) => self.field_table(kind, source, field, table, &span)?,
            _ => {
                self.error(Some(span), format!("[fields] {field}: expected a column name or a table with `from`, `value` or `template`"));
                return None;
            }
        };
        Some(FieldRule {
            name: field.clone(),
            target: target?,
            input: input?,
            transforms,
            empty,
        })
    }

    fn field_table(
        &mut self,
        kind: TargetKind,
        source: &SourceSettings,
        field: &str,
        table: &toml::Table,
        span: &Range<usize>,
    ) -> Option<(Option<Input>, Vec<Transform>, EmptyPolicy)> {
        let mut input = None;
        let mut transforms = Vec::new();
        let mut empty = source.empty;
        let mut sources = 0;
        for (key, value) in table {
            match (key.as_str(), value) {
                ("from", toml::Value::String(c)) => {
                    sources += 1;
                    input = Some(Input::Column(c.clone()));
                }
                ("from", toml::Value::Array(items)) => {
                    sources += 1;
                    match first_of(items) {
                        Ok(first) => input = Some(first),
                        Err(why) => self.error(Some(span.clone()), format!("[fields] {field}: {why}")),
                    }
                }
                ("value", toml::Value::String(v)) => {
                    sources += 1;
                    match column_in_constant(v) {
                        Some(column) => self.error(Some(span.clone()), format!("[fields] {field}: {}", constant_with_column("value", column))),
                        None => input = Some(Input::Constant(v.clone())),
                    }
                }
                ("template", toml::Value::String(t)) => {
                    sources += 1;
                    match parse_template(t) {
                        Ok(parts) => input = Some(Input::Template(parts)),
                        Err(why) => self.error(Some(span.clone()), format!("[fields] {field}: {why}")),
                    }
                }
                ("transform", toml::Value::Array(items)) => {
                    for item in items {
                        if let Some(t) = self.transform(kind, source, field, item, span) {
                            transforms.push(t);
                        }
                    }
                }
                ("empty", toml::Value::String(p)) if p == "keep" => empty = EmptyPolicy::Keep,
                ("empty", toml::Value::String(p)) if p == "clear" => empty = EmptyPolicy::Clear,
                ("empty", _) => self.error(Some(span.clone()), format!("[fields] {field}: empty must be \"keep\" or \"clear\"")),
                ("from", _) => {
                    sources += 1;
                    self.error(Some(span.clone()), format!("[fields] {field}: `from` must be a column name, or a list of them whose first non-blank value is taken, such as [\"preferredName\", \"firstName\"]"));
                }
                ("value" | "template", _) => {
                    sources += 1;
                    self.error(Some(span.clone()), format!("[fields] {field}: `{key}` must be a string"));
                }
                ("transform", _) => self.error(Some(span.clone()), format!("[fields] {field}: transform must be a list, such as [\"trim\", \"lowercase\"]")),
                _ => self.error(
                    Some(span.clone()),
                    format!("[fields] {field}: unknown key `{key}`; expected `from`, `value`, `template`, `transform` or `empty`"),
                ),
            }
        }
        if sources != 1 {
            self.error(Some(span.clone()), format!("[fields] {field}: give exactly one of `from` (a column), `value` (a constant) or `template`"));
        }
        Some((input, transforms, empty))
    }

    fn transform(
        &mut self,
        kind: TargetKind,
        source: &SourceSettings,
        field: &str,
        item: &toml::Value,
        span: &Range<usize>,
    ) -> Option<Transform> {
        let result = match item {
            toml::Value::String(name) => simple_transform(name, source.phone_region),
            toml::Value::Table(t) if t.len() == 1 => {
                let (name, arg) = t.iter().next().expect("one entry");
                self.table_transform(name, arg)
            }
            _ => Err(format!(
                "a transform is a name ({}) or a one-key table ({})",
                SIMPLE_TRANSFORMS.join(", "),
                TABLE_TRANSFORMS.join(", ")
            )),
        };
        let result = result.and_then(|t| match t {
            Transform::Split(_) if !kind.multi_valued() => Err(format!(
                "`split` makes several values, but {kind} fields take one"
            )),
            t => Ok(t),
        });
        result
            .map_err(|why| self.error(Some(span.clone()), format!("[fields] {field}: {why}")))
            .ok()
    }

    fn table_transform(&mut self, name: &str, arg: &toml::Value) -> Result<Transform, String> {
        match (name, arg) {
            ("date", toml::Value::Table(t)) => {
                let get = |k: &str| t.get(k).and_then(toml::Value::as_str);
                match (get("from"), get("to"), t.len()) {
                    (Some(from), Some(to), 2) => DateFormat::new(from, to).map(Transform::Date),
                    _ => Err("date takes { from = \"%m/%d/%Y\", to = \"%Y-%m-%d\" }".to_owned()),
                }
            }
            ("map", toml::Value::Table(t)) => {
                let mut table = HashMap::new();
                let mut fallback = None;
                for (k, v) in t {
                    let v = v.as_str().ok_or("map values must be strings")?.to_owned();
                    if k == "*" {
                        fallback = Some(v);
                    } else {
                        table.insert(k.clone(), v);
                    }
                }
                Ok(Transform::Map { table, fallback })
            }
            ("default", toml::Value::String(v)) => match column_in_constant(v) {
                Some(column) => Err(constant_with_column("default", column)),
                None => Ok(Transform::Default(v.clone())),
            },
            ("split", toml::Value::String(sep)) if !sep.is_empty() => {
                Ok(Transform::Split(sep.clone()))
            }
            ("e164", toml::Value::Table(t)) => {
                match t.get("region").and_then(toml::Value::as_str) {
                    Some(code) if t.len() == 1 => PhoneRegion::parse(code)
                        .map(Transform::E164)
                        .ok_or_else(|| {
                            format!("`{code}` is not a region code such as \"US\" or \"GB\"")
                        }),
                    _ => Err("e164 takes { region = \"GB\" }".to_owned()),
                }
            }
            ("regex", toml::Value::Table(t)) => {
                let get = |k: &str| t.get(k).and_then(toml::Value::as_str);
                match (get("pattern"), get("replace"), t.len()) {
                    (Some(pattern), Some(replace), 2) => {
                        RegexRewrite::new(pattern, replace).map(Transform::Regex)
                    }
                    _ => {
                        Err("regex takes { pattern = \"^([^@]+)@\", replace = \"$1\" }".to_owned())
                    }
                }
            }
            ("date" | "map" | "default" | "split" | "e164" | "regex", _) => Err(format!(
                "`{name}` has the wrong argument; expected date = {{ from, to }}, map = {{ FROM = \"TO\" }}, \
                 default = \"value\", split = \";\", e164 = {{ region = \"GB\" }} or \
                 regex = {{ pattern, replace }}"
            )),
            _ => Err(format!(
                "unknown transform `{name}`; expected one of {}",
                TABLE_TRANSFORMS.join(", ")
            )),
        }
    }
}

/// `from = ["preferredName", "firstName"]`: the first of these columns that is not blank.
fn first_of(items: &[toml::Value]) -> Result<Input, String> {
    let columns: Option<Vec<String>> = items
        .iter()
        .map(|item| item.as_str().filter(|c| !c.is_empty()).map(str::to_owned))
        .collect();
    match columns {
        Some(mut columns) if columns.len() == 1 => Ok(Input::Column(columns.remove(0))),
        Some(columns) if !columns.is_empty() => Ok(Input::FirstOf(columns)),
        _ => Err("`from` as a list takes one or more column names, such as [\"preferredName\", \"firstName\"] (the first that is not blank is taken)".to_owned()),
    }
}

/// Why a `value` or `default` holding `{column}` is refused: it would be sent as written.
fn constant_with_column(key: &str, column: &str) -> String {
    format!(
        "`{key}` is sent as written, so `{{{column}}}` would reach the target as those \
         characters; to insert the column's value write `template = \"...{{{column}}}...\"`, \
         and to fall back on another column when this one is blank write \
         `from = [\"<this column>\", \"{column}\"]`"
    )
}

fn simple_transform(name: &str, region: PhoneRegion) -> Result<Transform, String> {
    Ok(match name {
        "trim" => Transform::Trim,
        "lowercase" => Transform::Lowercase,
        "uppercase" => Transform::Uppercase,
        "collapse_whitespace" => Transform::CollapseWhitespace,
        "nfc" => Transform::Nfc,
        "e164" => Transform::E164(region),
        "email" => Transform::Email,
        _ => {
            return Err(format!(
                "unknown transform `{name}`; expected one of {} or a table ({})",
                SIMPLE_TRANSFORMS.join(", "),
                TABLE_TRANSFORMS.join(", ")
            ));
        }
    })
}

/// A `search_column` given as a column name searches by what the record writes: the
/// transforms of the first field filled from that column among those the search key
/// indexes, with the value as read searched too when they change it.
fn borrow_transforms(kind: TargetKind, key: &str, value: &mut SearchRule, rules: &[FieldRule]) {
    let Some(column) = value.column_name() else {
        return;
    };
    if !value.transforms.is_empty() || value.also_raw {
        return;
    }
    let filled = rules.iter().find(|rule| {
        rule.input == Input::Column(column.to_owned()) && schema::indexed_by(kind, key, &rule.name)
    });
    if let Some(rule) = filled {
        value.transforms = rule.transforms.clone();
        value.also_raw = !rule.transforms.is_empty();
    }
}

/// `[limits] shared_peers` when left out.
pub const DEFAULT_SHARED_PEERS: u32 = 4;
/// Records read ahead of the writes by default: ten full `BatchGetProfile` calls.
const READ_AHEAD: usize = 200;

/// The limits a target gets when `[limits]` leaves them out: under the documented quotas.
pub fn default_limits(kind: TargetKind) -> Limits {
    match kind {
        // 100 TPS account-wide; leave room for other users of the account.
        TargetKind::CustomerProfiles => Limits {
            rate: Rate::PerSecond(50.0),
            burst: 10,
            concurrency: 16,
            max_attempts: 8,
            read_ahead: READ_AHEAD,
            operations: BTreeMap::new(),
            shared: None,
            shared_peers: DEFAULT_SHARED_PEERS,
        },
        // 2 requests/s, burst 5, per operation, account-wide.
        TargetKind::ConnectUser => Limits {
            rate: Rate::PerSecond(2.0),
            burst: 5,
            concurrency: 4,
            max_attempts: 8,
            read_ahead: READ_AHEAD,
            operations: BTreeMap::new(),
            shared: None,
            shared_peers: DEFAULT_SHARED_PEERS,
        },
        // On-premises server with no documented quota.
        TargetKind::GenesysUcs => Limits {
            rate: Rate::PerSecond(20.0),
            burst: 10,
            concurrency: 8,
            max_attempts: 8,
            read_ahead: READ_AHEAD,
            operations: BTreeMap::new(),
            shared: None,
            shared_peers: DEFAULT_SHARED_PEERS,
        },
    }
}

/// Where `rate = "auto"` starts: the documented quota of the target's write operation, or,
/// for UCS, which documents none, its default fixed rate.
pub fn default_start_rate(kind: TargetKind) -> f64 {
    match kind {
        TargetKind::CustomerProfiles => 100.0,
        TargetKind::ConnectUser => 2.0,
        TargetKind::GenesysUcs => 20.0,
    }
}

/// The Genesys extension (`[target] extensions`) a `[fields]` name matches, ignoring case.
fn extension_named<'a>(target: &'a Target, field: &str) -> Option<&'a str> {
    match target {
        Target::GenesysUcs(t) => t
            .extensions
            .iter()
            .find(|e| e.to_lowercase() == field.to_lowercase())
            .map(String::as_str),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match compile(Path::new("t.toml"), text) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    const GOOD: &str = r#"
[source]
key = "crm_id"

[target]
kind = "customer-profiles"
domain = "ExampleDomainName"

[match]
id = "connect_profile_id"

[limits]
rate = 50
burst = 10
concurrency = 16
max_attempts = 8

[fields]
FirstName = "first_name"
LastName = "last_name"
EmailAddress = { from = "email", transform = ["trim", "lowercase"] }
PhoneNumber = { from = "phone", transform = ["e164"] }
BirthDate = { from = "dob", transform = [{ date = { from = "%m/%d/%Y", to = "%Y-%m-%d" } }] }
"Address.City" = "city"
"Attributes.LoyaltyPoints" = "points"
"#;

    #[test]
    fn an_s3_state_compiles_with_its_lease_and_checkpoints_and_bad_ones_name_their_line() {
        let s3 = format!(
            "{GOOD}\n[state]\npath = \"s3://my-bucket/crm\"\nlease_seconds = 60\n\
             checkpoint_records = 500\ncheckpoint_minutes = 2\n"
        );
        let config = compile(Path::new("t.toml"), &s3).unwrap();
        assert_eq!(config.state, Some(PathBuf::from("s3://my-bucket/crm")));
        assert_eq!(config.remote.lease_seconds, 60);
        assert_eq!(config.remote.checkpoints.records, 500);
        assert_eq!(
            config.remote.checkpoints.every,
            std::time::Duration::from_secs(120)
        );
        let defaults = compile(Path::new("t.toml"), GOOD).unwrap().remote;
        assert_eq!(defaults, RemoteSettings::default());
        assert_eq!(defaults.lease_seconds, 300);
        let bad = format!("{GOOD}\n[state]\npath = \"s3://B_/x\"\nlease_seconds = 0\nlease = 3\n");
        let unknown = errors(&bad);
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        assert!(unknown[0].contains("lease"), "{unknown:?}");
        let bad = format!("{GOOD}\n[state]\npath = \"s3://B_/x\"\nlease_seconds = 0\n");
        let errors = errors(&bad);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("bucket name")),
            "{errors:?}"
        );
        assert!(errors.iter().all(|e| e.contains("t.toml:")), "{errors:?}");
    }

    #[test]
    fn the_contract_example_compiles() {
        let config = compile(Path::new("t.toml"), GOOD).unwrap();
        assert_eq!(config.target.kind(), TargetKind::CustomerProfiles);
        assert_eq!(config.matching.by, MatchBy::Id("connect_profile_id".into()));
        assert_eq!(config.rules.len(), 7);
        assert_eq!(config.limits.rate, Rate::PerSecond(50.0));
        let email = config
            .rules
            .iter()
            .find(|r| r.name == "EmailAddress")
            .unwrap();
        assert_eq!(
            email.transforms,
            vec![Transform::Trim, Transform::Lowercase]
        );
    }

    #[test]
    fn a_shared_quota_is_a_redis_url_with_its_peers() {
        let with =
            |lines: &str| GOOD.replace("max_attempts = 8", &format!("max_attempts = 8\n{lines}"));
        let config = compile(Path::new("t.toml"), GOOD).unwrap();
        assert_eq!(config.limits.shared, None);
        assert_eq!(config.limits.shared_peers, DEFAULT_SHARED_PEERS);
        let config = compile(
            Path::new("t.toml"),
            &with("shared = \"redis://127.0.0.1:6379/0\"\nshared_peers = 3"),
        )
        .unwrap();
        assert_eq!(
            config.limits.shared.as_deref(),
            Some("redis://127.0.0.1:6379/0")
        );
        assert_eq!(config.limits.shared_peers, 3);
        let errors = errors(&with("shared = \"http://cache:6379\"\nshared_peers = 0"));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("t.toml:17: [limits] shared must be a redis:// or rediss:// URL"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("[limits] shared_peers must be between 1 and"),
            "{errors:?}"
        );
        let alone = super::tests::errors(&with("shared_peers = 2"));
        assert!(
            alone[0].contains("[limits] shared_peers needs [limits] shared"),
            "{alone:?}"
        );
    }

    #[test]
    fn each_operation_may_have_its_own_limits() {
        let with = |table: &str| GOOD.replace("[fields]", &format!("{table}\n[fields]"));
        let config = compile(
            Path::new("t.toml"),
            &with("[limits.operations.SearchProfiles]\nrate = 20\n[limits.operations.UpdateProfile]\nrate = \"auto\"\nstart_rate = 80\nburst = 4"),
        )
        .unwrap();
        let limits = &config.limits;
        assert_eq!(
            limits.of("SearchProfiles"),
            (Rate::PerSecond(20.0), limits.burst)
        );
        assert_eq!(limits.of("UpdateProfile"), (Rate::Auto { start: 80.0 }, 4));
        assert_eq!(limits.of("CreateProfile"), (limits.rate, limits.burst));

        let errors = errors(&with(
            "[limits.operations.DescribeUser]\nrate = 2\n[limits.operations.SearchProfiles]\nrate = -1\nburst = 0",
        ));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("customer-profiles has no such operation; expected one of: GetDomain, BatchGetProfile, SearchProfiles"), "{errors:?}");
        assert!(
            errors[1].contains("[limits.operations.SearchProfiles] rate must be a positive number"),
            "{errors:?}"
        );
        assert!(
            errors[2].contains("[limits.operations.SearchProfiles] burst must be between 1 and"),
            "{errors:?}"
        );
        assert!(
            errors.iter().all(|e| e.starts_with("t.toml:")),
            "each with its line: {errors:?}"
        );
    }

    #[test]
    fn read_ahead_defaults_to_ten_batches_and_must_be_positive() {
        let config = compile(Path::new("t.toml"), GOOD).unwrap();
        assert_eq!(config.limits.read_ahead, 200);
        let with = |n: &str| GOOD.replace("max_attempts = 8", &format!("read_ahead = {n}"));
        let config = compile(Path::new("t.toml"), &with("40")).unwrap();
        assert_eq!(config.limits.read_ahead, 40);
        let errors = errors(&with("0"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("t.toml:16:")
                && errors[0].contains("[limits] read_ahead must be between 1 and 100000"),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_keys_fail_in_phase_one_with_the_expected_keys() {
        let errs = errors(&GOOD.replace("burst = 10", "burts = 10"));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("t.toml:14:"), "{}", errs[0]);
        assert!(errs[0].contains("burst"), "{}", errs[0]);
    }

    #[test]
    fn every_phase_two_error_is_reported_with_its_line() {
        let text = GOOD
            .replace("FirstName = ", "Firstname = ")
            .replace("[\"e164\"]", "[\"e165\"]")
            .replace("rate = 50", "rate = -1")
            .replace("domain = \"ExampleDomainName\"", "domain = \"bad domain\"");
        let errs = errors(&text);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("t.toml:7:") && e.contains("DomainName"))
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("t.toml:13:") && e.contains("rate"))
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("Firstname") && e.contains("FirstName")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("t.toml:22:") && e.contains("e165"))
        );
    }

    #[test]
    fn target_keys_must_match_the_kind() {
        let errs = errors(&GOOD.replace("domain = \"ExampleDomainName\"", "instance_id = \"abc\""));
        assert!(
            errs.iter()
                .any(|e| e.contains("instance_id is for connect-user")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("customer-profiles needs [target] domain")),
            "{errs:#?}"
        );
    }

    #[test]
    fn split_is_only_for_multi_valued_targets() {
        let text = GOOD.replace(
            "\"Address.City\" = \"city\"",
            "\"Address.City\" = { from = \"city\", transform = [{ split = \";\" }] }",
        );
        let errs = errors(&text);
        assert!(errs.iter().any(|e| e.contains("split")), "{errs:#?}");
    }

    #[test]
    fn field_tables_need_exactly_one_source() {
        let text = GOOD.replace(
            "\"Address.City\" = \"city\"",
            "\"Address.City\" = { from = \"city\", value = \"x\", colour = 1 }",
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs.iter().any(|e| e.contains("unknown key `colour`")));
        assert!(errs.iter().any(|e| e.contains("exactly one of")));
    }

    #[test]
    fn derived_values_compile() {
        let text = GOOD.replace(
            "FirstName = \"first_name\"",
            "FirstName = { from = [\"preferred\", \"first_name\"], transform = [\"trim\"] }\n\
             AccountNumber = { from = \"email\", transform = [{ regex = { pattern = \"^([^@]+)@\", replace = \"$1\" } }] }\n\
             MiddleName = { from = [\"middle\"] }",
        );
        let config = compile(Path::new("t.toml"), &text).unwrap();
        let rule = |name: &str| config.rules.iter().find(|r| r.name == name).unwrap();
        assert_eq!(
            rule("FirstName").input,
            Input::FirstOf(vec!["preferred".into(), "first_name".into()])
        );
        assert_eq!(rule("MiddleName").input, Input::Column("middle".into()));
        assert_eq!(
            rule("AccountNumber").transforms,
            vec![Transform::Regex(
                RegexRewrite::new("^([^@]+)@", "$1").unwrap()
            )]
        );
    }

    #[test]
    fn a_constant_holding_a_column_points_to_template() {
        let text = GOOD
            .replace(
                "FirstName = \"first_name\"",
                "FirstName = { from = \"first_name\", transform = [{ default = \"{nickname}\" }] }",
            )
            .replace(
                "LastName = \"last_name\"",
                "LastName = { value = \"Mr {last_name}\" }\nMiddleName = { value = \"{{braces}}\" }",
            );
        let errs = errors(&text);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        for (field, key, column) in [
            ("FirstName", "default", "nickname"),
            ("LastName", "value", "last_name"),
        ] {
            assert!(
                errs.iter().any(|e| e
                    .contains(&format!("[fields] {field}: `{key}` is sent as written"))
                    && e.contains(&format!("template = \"...{{{column}}}...\""))
                    && e.contains("from = [")),
                "{field}: {errs:#?}"
            );
        }
        assert!(errs[0].starts_with("t.toml:19:"), "{errs:#?}");
        assert!(errs[1].starts_with("t.toml:20:"), "{errs:#?}");
    }

    #[test]
    fn derived_value_mistakes_are_config_errors() {
        for (spec, says) in [
            ("{ from = [] }", "one or more column names"),
            ("{ from = [\"a\", 1] }", "one or more column names"),
            ("{ from = 3 }", "list of them"),
            (
                "{ from = \"e\", transform = [{ regex = { pattern = \"(\", replace = \"$1\" } }] }",
                "does not compile",
            ),
            (
                "{ from = \"e\", transform = [{ regex = { pattern = \"(a)\", replace = \"$2\" } }] }",
                "group `2`",
            ),
            (
                "{ from = \"e\", transform = [{ regex = { pattern = \"a\" } }] }",
                "regex takes",
            ),
        ] {
            let text = GOOD.replace("FirstName = \"first_name\"", &format!("FirstName = {spec}"));
            let errs = errors(&text);
            assert_eq!(errs.len(), 1, "{spec}: {errs:#?}");
            assert!(
                errs[0].contains("[fields] FirstName") && errs[0].contains(says),
                "{spec}: {errs:#?}"
            );
        }
    }

    #[test]
    fn match_rules_per_target() {
        let text = GOOD.replace(
            "id = \"connect_profile_id\"",
            "search_key = \"Username\"\nsearch_column = \"u\"\nwhen_missing = \"create\"",
        );
        assert!(errors(&text).is_empty());
        let connect = text
            .replace("kind = \"customer-profiles\"", "kind = \"connect-user\"")
            .replace("domain = \"ExampleDomainName\"", "instance_id = \"i-1\"")
            .replace("\"Address.City\" = \"city\"\n", "")
            .replace("\"Attributes.LoyaltyPoints\" = \"points\"\n", "")
            .replace("EmailAddress", "Email")
            .replace("PhoneNumber", "Mobile")
            .replace("BirthDate = { from = \"dob\", transform = [{ date = { from = \"%m/%d/%Y\", to = \"%Y-%m-%d\" } }] }\n", "");
        let errs = errors(&connect);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("not possible for connect-user"));
    }

    #[test]
    fn mirror_is_off_by_default_and_needs_an_owner_when_on() {
        let with = |table: &str| GOOD.replace("[fields]", &format!("{table}\n[fields]"));
        assert_eq!(compile(Path::new("t.toml"), GOOD).unwrap().mirror, None);
        let off = compile(Path::new("t.toml"), &with("[mirror]\ndeletes = \"off\"")).unwrap();
        assert_eq!(off.mirror, None);
        let on = compile(
            Path::new("t.toml"),
            &with("[mirror]\ndeletes = \"delete\"\nowner = \"crm-contacts\""),
        )
        .unwrap();
        assert_eq!(
            on.mirror,
            Some(Mirror {
                deletes: Deletes::Delete,
                owner: "crm-contacts".into(),
                max_deletes: 100,
                max_delete_percent: 5.0,
            })
        );
        let line = GOOD.lines().position(|l| l == "[fields]").unwrap() + 1;
        let errs = errors(&with(
            "[mirror]\ndeletes = \"report\"\nmax_deletes = 0\nmax_delete_percent = 101",
        ));
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].contains(&format!("t.toml:{line}:")), "{errs:#?}");
        assert!(errs[0].contains("[mirror] owner is required"), "{errs:#?}");
        assert!(
            errs[1].contains(&format!("t.toml:{}:", line + 2)),
            "{errs:#?}"
        );
        assert!(errs[2].contains("max_delete_percent must be"), "{errs:#?}");
        let typo = errors(&with(
            "[mirror]\ndeletes = \"delete\"\nowner = \"a\"\nmax_delete = 3",
        ));
        assert!(typo[0].contains("unknown field `max_delete`"), "{typo:#?}");
    }

    #[test]
    fn connect_users_are_only_reported_never_deleted() {
        let connect = GOOD
            .replace("kind = \"customer-profiles\"", "kind = \"connect-user\"")
            .replace("domain = \"ExampleDomainName\"", "instance_id = \"i-1\"")
            .replace("id = \"connect_profile_id\"", "id = \"user_id\"")
            .replace("\"Address.City\" = \"city\"\n", "")
            .replace("\"Attributes.LoyaltyPoints\" = \"points\"\n", "")
            .replace("EmailAddress", "Email")
            .replace("PhoneNumber", "Mobile")
            .replace("BirthDate = { from = \"dob\", transform = [{ date = { from = \"%m/%d/%Y\", to = \"%Y-%m-%d\" } }] }\n", "");
        assert!(errors(&connect).is_empty(), "{:#?}", errors(&connect));
        let with = |deletes: &str| {
            connect.replace(
                "[fields]",
                &format!("[mirror]\ndeletes = \"{deletes}\"\nowner = \"hr\"\n[fields]"),
            )
        };
        assert!(errors(&with("report")).is_empty());
        let errs = errors(&with("delete"));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].contains("not available for connect-user"),
            "{errs:#?}"
        );
    }
}
