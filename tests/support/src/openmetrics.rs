//! A strict reader of the OpenMetrics text format (what `prometheus-client` writes and
//! `/metrics` serves), for tests: it refuses anything a scraper could misread instead of
//! skipping it — an unknown line, a sample before its `# TYPE`, a family split in two, a
//! counter sample without `_total`, a bad label, a histogram whose buckets do not add up,
//! anything after `# EOF`. The lenient parsers on crates.io drop lines they cannot read,
//! which would let a malformed exposition pass.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's own name (`orgx_peer_runs_total`, `…_bucket`).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Family {
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub families: BTreeMap<String, Family>,
}

impl Scrape {
    /// The value of the sample `name` whose labels include every pair of `labels`; an error
    /// when none or several match.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64, String> {
        let matching: Vec<&Sample> = self
            .families
            .values()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .collect();
        match matching.as_slice() {
            [one] => Ok(one.value),
            [] => Err(format!("no sample {name} with {labels:?}")),
            _ => Err(format!("{} samples {name} match {labels:?}", matching.len())),
        }
    }
}

/// Read an exposition; the error names the line.
pub fn parse(text: &str) -> Result<Scrape, String> {
    let body = text.strip_suffix("# EOF\n").ok_or("the exposition must end with `# EOF` and a newline")?;
    let mut scrape = Scrape::default();
    let mut current: Option<String> = None;
    for (i, line) in body.split_terminator('\n').enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (what, name, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());
            check_metric_name(name).map_err(at)?;
            if current.as_deref() != Some(name) {
                if scrape.families.contains_key(name) {
                    return Err(at("a family's lines must be together".into()));
                }
                scrape.families.insert(name.to_string(), Family::default());
                current = Some(name.to_string());
            }
            let family = scrape.families.get_mut(name).expect("inserted above");
            if !family.samples.is_empty() {
                return Err(at("metadata after the family's samples".into()));
            }
            match (what, rest) {
                ("TYPE", Some(kind)) if KINDS.contains(&kind) && family.kind.is_empty() => family.kind = kind.to_string(),
                ("HELP", Some(help)) if family.help.is_none() => family.help = Some(unescape(help, false).map_err(at)?),
                ("UNIT", Some(_)) => {}
                _ => return Err(at("not a TYPE, HELP or UNIT line (or a repeated one)".into())),
            }
            continue;
        }
        let sample = sample(line).map_err(at)?;
        let family_name = current.clone().ok_or_else(|| at("a sample before any `# TYPE`".into()))?;
        let family = scrape.families.get_mut(&family_name).expect("current family exists");
        let suffix = sample.name.strip_prefix(family_name.as_str()).ok_or_else(|| at(format!("not a sample of `{family_name}`")))?;
        let allowed: &[&str] = match family.kind.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" | "unknown" => &[""],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "" => return Err(at(format!("`{family_name}` has no `# TYPE`"))),
            _ => return Err(at(format!("this reader does not check `{}` families", family.kind))),
        };
        if !allowed.contains(&suffix) {
            return Err(at(format!("a {} sample must end in one of {allowed:?}", family.kind)));
        }
        if family.kind == "counter" && suffix == "_total" && (sample.value.is_nan() || sample.value < 0.0) {
            return Err(at("a counter is never negative or NaN".into()));
        }
        if (suffix == "_bucket") != sample.labels.contains_key("le") {
            return Err(at("`le` goes on buckets, and only there".into()));
        }
        family.samples.push(sample);
    }
    for (name, family) in &scrape.families {
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(scrape)
}

const KINDS: &[&str] = &["counter", "gauge", "histogram", "gaugehistogram", "stateset", "info", "summary", "unknown"];

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("`{name}` is not a metric name"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("`{name}` is not a label name"))
    }
}

/// `name{a="x",b="y"} value [timestamp]`.
fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        labels = parsed;
        rest = after;
    }
    let rest = rest.strip_prefix(' ').ok_or("one space before the value")?;
    let mut fields = rest.split(' ');
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) => {
            v.parse::<f64>().map_err(|_| format!("`{v}` is not a number"))?
        }
        v => return Err(format!("`{v}` is not a number")),
    };
    if let Some(ts) = fields.next() {
        ts.parse::<f64>().map_err(|_| format!("`{ts}` is not a timestamp"))?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok(Sample { name: name.to_string(), labels, value })
}

/// The labels after `{`, and what follows the closing `}`.
fn label_set(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    if let Some(after) = s.strip_prefix('}') {
        return Ok((labels, after));
    }
    loop {
        let eq = s.find('=').ok_or("a label without `=`")?;
        let name = &s[..eq];
        check_label_name(name)?;
        let quoted = s[eq + 1..].strip_prefix('"').ok_or("a label value must be quoted")?;
        let (value, after) = quoted_value(quoted)?;
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label `{name}` twice"));
        }
        if let Some(after) = after.strip_prefix(',') {
            s = after;
        } else if let Some(after) = after.strip_prefix('}') {
            return Ok((labels, after));
        } else {
            return Err("labels are separated by `,` and closed by `}`".into());
        }
    }
}

/// A label value up to its closing quote (escapes `\\`, `\"`, `\n`), and the rest.
fn quoted_value(s: &str) -> Result<(String, &str), String> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match (escaped, c) {
            (false, '"') => return Ok((unescape(&s[..i], true)?, &s[i + 1..])),
            (false, '\\') => escaped = true,
            _ => escaped = false,
        }
    }
    Err("an unterminated label value".into())
}

fn unescape(s: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('"') if quotes => out.push('"'),
                other => return Err(format!("a bad escape `\\{}`", other.map(String::from).unwrap_or_default())),
            },
            '\n' => return Err("a raw newline".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// One histogram series: its buckets (`le`, cumulative count) and its `_count`.
type HistogramSeries = (Vec<(f64, f64)>, Option<f64>);

/// Per label set: buckets cumulative and ascending, ending at `+Inf`, which equals `_count`.
fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    let mut series: BTreeMap<Vec<(String, String)>, HistogramSeries> = BTreeMap::new();
    for s in &family.samples {
        let key: Vec<(String, String)> = s.labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone())).collect();
        let entry = series.entry(key).or_default();
        if s.name.ends_with("_bucket") {
            let le = &s.labels["le"];
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse::<f64>().map_err(|_| format!("{name}: le=\"{le}\""))? };
            entry.0.push((bound, s.value));
        } else if s.name.ends_with("_count") {
            entry.1 = Some(s.value);
        }
    }
    for (labels, (buckets, count)) in series {
        let ascending = buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        let last = buckets.last().copied();
        if !ascending || last.map(|l| l.0) != Some(f64::INFINITY) || last.map(|l| l.1) != count {
            return Err(format!("{name} {labels:?}: buckets {buckets:?} do not add up to the count {count:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP a_runs Runs.\n# TYPE a_runs counter\na_runs_total{driver=\"x\",outcome=\"ok\"} 2\n\
        # TYPE a_depth gauge\na_depth 0\n# TYPE a_secs histogram\na_secs_sum 0.5\na_secs_count 2\n\
        a_secs_bucket{le=\"0.1\"} 1\na_secs_bucket{le=\"+Inf\"} 2\n# EOF\n";

    #[test]
    fn reads_a_good_exposition() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.value("a_runs_total", &[("driver", "x")]), Ok(2.0));
        assert_eq!(s.value("a_depth", &[]), Ok(0.0));
        assert_eq!(s.families["a_runs"].help.as_deref(), Some("Runs."));
        assert!(s.value("a_runs_total", &[("driver", "y")]).is_err());
    }

    #[test]
    fn refuses_what_a_scraper_could_misread() {
        for (what, text) in [
            ("no EOF", GOOD.trim_end_matches("# EOF\n").to_string()),
            ("text after EOF", format!("{GOOD}a_depth 1\n")),
            ("counter without _total", GOOD.replace("a_runs_total{", "a_runs{")),
            ("sample before TYPE", GOOD.replace("# TYPE a_depth gauge\n", "")),
            ("split family", format!("{}a_runs_total 1\n# EOF\n", GOOD.trim_end_matches("# EOF\n"))),
            ("unquoted label", GOOD.replace("\"x\"", "x")),
            ("bad label name", GOOD.replace("driver=", "dri-ver=")),
            ("duplicate label", GOOD.replace("outcome=\"ok\"", "driver=\"y\"")),
            ("bad value", GOOD.replace("a_depth 0", "a_depth zero")),
            ("two spaces", GOOD.replace("a_depth 0", "a_depth  0")),
            ("negative counter", GOOD.replace("\"ok\"} 2", "\"ok\"} -2")),
            ("buckets do not add up", GOOD.replace("a_secs_count 2", "a_secs_count 3")),
            ("unknown comment", GOOD.replace("# HELP a_runs Runs.", "# HELLO a_runs Runs.")),
            ("bad escape", GOOD.replace("\"x\"", "\"\\x\"")),
        ] {
            assert!(parse(&text).is_err(), "{what} was accepted:\n{text}");
        }
    }
}
