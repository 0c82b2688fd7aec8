//! Reading a Prometheus text exposition the way a query does: series by name and label matchers,
//! and promtool's verdict on it.
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// One sample line: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of `exposition` (comments skipped). Label values holding `,` or `}` are read
/// correctly; escapes other than `\"` are kept as written.
pub fn samples(exposition: &str) -> Vec<Sample> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => {
            let (n, v) = line.split_once(' ')?;
            return Some(Sample {
                name: n.to_owned(),
                labels: BTreeMap::new(),
                value: v.trim().parse().ok()?,
            });
        }
    };
    let mut labels = BTreeMap::new();
    let mut rest = rest;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            rest = after;
            break;
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => {
                    let (_, escaped) = chars.next()?;
                    value.push(escaped);
                }
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = &after[end + 1..];
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: rest.trim().parse().ok()?,
    })
}

/// `sum(name{matchers})`: the sum of the matching series, and how many there were.
pub fn sum(exposition: &str, name: &str, matchers: &[(&str, &str)]) -> (f64, usize) {
    let matching: Vec<Sample> = samples(exposition)
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            matchers
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    (matching.iter().map(|s| s.value).sum(), matching.len())
}

/// The metric family names of `exposition` (from its `# TYPE` lines).
pub fn family_names(exposition: &str) -> Vec<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// `promtool check metrics` on `exposition`: its exit code and what it printed.
pub fn promtool_check(exposition: &str) -> (i32, String) {
    let found = Command::new("sh")
        .args(["-c", "command -v promtool"])
        .output()
        .expect("sh");
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    assert!(
        !path.is_empty(),
        "promtool is not installed: `apt-get install -y prometheus` (scripts/test.sh does it for you)"
    );
    let mut child = Command::new(&path)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_separators_inside_values() {
        let text = "# TYPE a counter\na{x=\"1,2}\",y=\"q\\\"t\"} 3\nb 4\n";
        let s = samples(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels["x"], "1,2}");
        assert_eq!(s[0].labels["y"], "q\"t");
        assert_eq!(sum(text, "a", &[("y", "q\"t")]), (3.0, 1));
        assert_eq!(sum(text, "b", &[]), (4.0, 1));
        assert_eq!(family_names(text), vec!["a".to_owned()]);
    }
}
