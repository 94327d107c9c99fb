//! A strict parser for the Prometheus/OpenMetrics text exposition `GET /metrics` serves.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed text exposition. Strict: every sample belongs to a family declared with
/// `# TYPE` before it (with a suffix its type allows), label sets are well-formed and
/// never repeated, values are numbers, and the text ends with `# EOF`.
pub struct Exposition {
    pub samples: Vec<Sample>,
}

impl Exposition {
    pub fn parse(text: &str) -> Self {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = Vec::new();
        let mut seen = BTreeSet::new();
        let mut lines = text.lines();
        let mut ended = false;
        for line in lines.by_ref() {
            if line == "# EOF" {
                ended = true;
                break;
            }
            if let Some(meta) = line.strip_prefix("# ") {
                let mut parts = meta.splitn(3, ' ');
                let (kind, name, rest) =
                    (parts.next().unwrap(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                assert!(is_metric_name(name), "bad family name in {line:?}");
                match kind {
                    "TYPE" => {
                        assert!(
                            [
                                "counter",
                                "gauge",
                                "histogram",
                                "summary",
                                "info",
                                "stateset",
                                "gaugehistogram",
                                "unknown"
                            ]
                            .contains(&rest),
                            "bad type in {line:?}"
                        );
                        assert!(types.insert(name.to_owned(), rest.to_owned()).is_none(), "{name} typed twice");
                    }
                    "HELP" | "UNIT" => {}
                    _ => panic!("unknown comment {line:?}"),
                }
                continue;
            }
            let sample = parse_sample(line);
            let family = family_of(&sample.name, &types).unwrap_or_else(|| panic!("{line:?} has no declared family"));
            assert!(family.starts_with("tiketi_"), "{line:?} lacks the tiketi_ prefix");
            assert!(seen.insert((sample.name.clone(), sample.labels.clone())), "repeated series {line:?}");
            samples.push(sample);
        }
        assert!(ended, "the exposition does not end with # EOF");
        assert_eq!(lines.next(), None, "text after # EOF");
        Self { samples }
    }

    /// The value of the series `name` with exactly `labels`, if there is one.
    pub fn get(&self, name: &str, labels: &[(&str, String)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        self.samples.iter().find(|s| s.name == name && s.labels == want).map(|s| s.value)
    }

    /// As [`Exposition::get`], insisting the series exists.
    pub fn value(&self, name: &str, labels: &[(&str, String)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no series {name} {labels:?}"))
    }

    /// The sum of every series `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.value)
            .sum()
    }

    /// Every label name on the samples called `name`, or `None` if there are none.
    pub fn labels_of(&self, name: &str) -> Option<BTreeSet<String>> {
        let mut samples = self.samples.iter().filter(|s| s.name == name).peekable();
        samples.peek()?;
        Some(samples.flat_map(|s| s.labels.keys().cloned()).collect())
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The declared family a sample name belongs to, given the suffixes its type allows.
fn family_of<'a>(sample: &str, types: &'a BTreeMap<String, String>) -> Option<&'a str> {
    types.iter().find_map(|(family, kind)| {
        let suffix = sample.strip_prefix(family.as_str())?;
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        allowed.contains(&suffix).then_some(family.as_str())
    })
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = &line[..name_end];
    assert!(is_metric_name(name), "bad metric name in {line:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            if let Some(&(i, '}')) = chars.peek() {
                rest = &body[i + 1..];
                break;
            }
            let key: String = chars.by_ref().take_while(|&(_, c)| c != '=').map(|(_, c)| c).collect();
            assert!(is_metric_name(&key) && !key.contains(':'), "bad label name {key:?} in {line:?}");
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "unquoted label value in {line:?}");
            let mut value = String::new();
            loop {
                match chars.next().unwrap_or_else(|| panic!("unterminated label value in {line:?}")).1 {
                    '"' => break,
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    c => value.push(c),
                }
            }
            assert!(labels.insert(key, value).is_none(), "repeated label in {line:?}");
            match chars.peek() {
                Some(&(_, ',')) => {
                    chars.next();
                }
                Some(&(_, '}')) => {}
                _ => panic!("expected , or }} in {line:?}"),
            }
        }
    }
    let mut fields = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no value in {line:?}")).split(' ');
    let value = fields.next().unwrap();
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}")),
    };
    if let Some(timestamp) = fields.next() {
        assert!(timestamp.parse::<f64>().is_ok(), "bad timestamp in {line:?}");
    }
    assert_eq!(fields.next(), None, "trailing text in {line:?}");
    Sample { name: name.to_owned(), labels, value }
}
