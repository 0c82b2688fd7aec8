//! Maps a field path ("listeners[0].virtualHosts[1].routes[2].match.regex") back to the line and
//! column where it stands in a YAML or JSON text, so that errors found after decoding (a bad regex,
//! a route naming an unknown cluster) can still point at the line the user must edit.
//!
//! Keys compare with case, `_` and `-` ignored, so "virtual_hosts" in the file and "virtualHosts"
//! in the path are the same key. A path that does not exist resolves to its nearest ancestor.
use saphyr_parser::{Event, Parser};

/// A 1-based line and column in the source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn normalize_key(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Parses "a.b[2].c" into segments; `None` if the path is malformed.
fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Key(normalize_key(name)));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']')?;
            out.push(Segment::Index(stripped[..end].parse().ok()?));
            rest = &stripped[end + 1..];
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

enum Frame {
    Map { expecting_key: bool },
    Seq { next: usize },
}

/// Every key and sequence element of the first document, with where it starts.
fn index(text: &str) -> Vec<(Vec<Segment>, Position)> {
    let mut records = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut path: Vec<Segment> = Vec::new();

    // A node (scalar, map or sequence) begins in value position.
    fn node_start(
        frames: &mut [Frame],
        path: &mut Vec<Segment>,
        records: &mut Vec<(Vec<Segment>, Position)>,
        pos: Position,
    ) {
        if let Some(Frame::Seq { next }) = frames.last_mut() {
            path.push(Segment::Index(*next));
            *next += 1;
            records.push((path.clone(), pos));
        }
    }
    // A node in value position ended: leave its segment.
    fn node_end(frames: &mut [Frame], path: &mut Vec<Segment>) {
        match frames.last_mut() {
            Some(Frame::Seq { .. }) => {
                path.pop();
            }
            Some(Frame::Map { expecting_key }) => {
                path.pop();
                *expecting_key = true;
            }
            None => {}
        }
    }

    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let pos = Position {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        let at_key = matches!(
            frames.last(),
            Some(Frame::Map {
                expecting_key: true
            })
        );
        match event {
            Event::Scalar(value, ..) if at_key => {
                path.push(Segment::Key(normalize_key(&value)));
                records.push((path.clone(), pos));
                if let Some(Frame::Map { expecting_key }) = frames.last_mut() {
                    *expecting_key = false;
                }
            }
            // Complex keys (a map or list as a key) never occur in a routing table.
            Event::MappingStart(..) | Event::SequenceStart(..) if at_key => break,
            Event::Scalar(..) | Event::Alias(..) => {
                node_start(&mut frames, &mut path, &mut records, pos);
                node_end(&mut frames, &mut path);
            }
            Event::MappingStart(..) => {
                node_start(&mut frames, &mut path, &mut records, pos);
                frames.push(Frame::Map {
                    expecting_key: true,
                });
            }
            Event::SequenceStart(..) => {
                node_start(&mut frames, &mut path, &mut records, pos);
                frames.push(Frame::Seq { next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                frames.pop();
                node_end(&mut frames, &mut path);
            }
            Event::DocumentEnd => break,
            _ => {}
        }
    }
    records
}

/// Where `field_path` (or its nearest existing ancestor) stands in `text`.
pub fn locate(text: &str, field_path: &str) -> Option<Position> {
    let mut wanted = parse_path(field_path)?;
    let records = index(text);
    loop {
        if let Some((_, pos)) = records.iter().find(|(p, _)| *p == wanted) {
            return Some(*pos);
        }
        wanted.pop()?;
        if wanted.is_empty() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
listeners:
  - name: web
    virtual_hosts:
      - domains: ['*']
        routes:
          - name: a
          - name: b
            match:
              regex: '('
";

    #[test]
    fn finds_nested_yaml_field_with_either_spelling() {
        let p = locate(YAML, "listeners[0].virtualHosts[0].routes[1].match.regex");
        assert_eq!(
            p,
            Some(Position {
                line: 9,
                column: 15
            })
        );
    }

    #[test]
    fn falls_back_to_nearest_ancestor() {
        let p = locate(
            YAML,
            "listeners[0].virtualHosts[0].routes[1].action.weightedTargets[0]",
        );
        assert_eq!(p.map(|p| p.line), Some(7));
    }

    #[test]
    fn finds_json_fields() {
        let json =
            "{\n  \"listeners\": [\n    {\"name\": \"x\",\n     \"address\": \"nope\"}\n  ]\n}\n";
        assert_eq!(
            locate(json, "listeners[0].address").map(|p| p.line),
            Some(4)
        );
    }

    #[test]
    fn unknown_path_is_none() {
        assert_eq!(locate(YAML, "clusters[3]"), None);
        assert_eq!(locate(YAML, "a[x]"), None);
    }
}
