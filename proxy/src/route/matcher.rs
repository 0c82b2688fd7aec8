//! Compiled matchers for paths, headers and query parameters. Regexes must match the whole value
//! (as Envoy's safe_regex does), so they are anchored when compiled.
use http::{HeaderMap, HeaderName};
use regex::Regex;

#[derive(Debug)]
pub enum PathMatch {
    Any,
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

/// Compiles `pattern` to match a whole value.
pub fn full_match_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        // Bounded compiled size: a hostile or careless pattern cannot take the process's memory.
        .size_limit(1 << 20)
        .build()
}

#[derive(Debug)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Regex),
    /// Integer in [start, end).
    Range(i64, i64),
    /// Present (true) or absent (false).
    Present(bool),
}

#[derive(Debug)]
pub struct HeaderMatcher {
    pub name: HeaderName,
    pub rule: StringMatch,
    pub invert: bool,
}

impl HeaderMatcher {
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        self.test(headers) != self.invert
    }

    fn test(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let Some(first) = values.next() else {
            return matches!(self.rule, StringMatch::Present(false));
        };
        if let StringMatch::Present(want) = self.rule {
            return want;
        }
        // Several values of one header are matched as one comma-joined value, as Envoy does.
        let joined;
        let bytes = match values.next() {
            None => first.as_bytes(),
            Some(second) => {
                let mut v = Vec::from(first.as_bytes());
                for more in std::iter::once(second).chain(values) {
                    v.push(b',');
                    v.extend_from_slice(more.as_bytes());
                }
                joined = v;
                &joined
            }
        };
        let Ok(value) = std::str::from_utf8(bytes) else {
            return false;
        };
        match &self.rule {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(s) => value.starts_with(s.as_str()),
            StringMatch::Suffix(s) => value.ends_with(s.as_str()),
            StringMatch::Regex(r) => r.is_match(value),
            StringMatch::Range(start, end) => value
                .trim()
                .parse::<i64>()
                .is_ok_and(|n| n >= *start && n < *end),
            StringMatch::Present(_) => true,
        }
    }
}

#[derive(Debug)]
pub struct QueryMatcher {
    pub name: String,
    /// `Some(v)`: the parameter equals v; `None`: it is present.
    pub exact: Option<String>,
    /// For `present: false`.
    pub absent: bool,
}

impl QueryMatcher {
    pub fn matches(&self, query: Option<&str>) -> bool {
        let found = query.and_then(|q| {
            q.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == self.name).then_some(v)
            })
        });
        match (&self.exact, found) {
            (_, None) => self.absent,
            (_, Some(_)) if self.absent => false,
            (None, Some(_)) => true,
            (Some(want), Some(v)) => v == want,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn hm(rule: StringMatch, invert: bool) -> HeaderMatcher {
        HeaderMatcher {
            name: HeaderName::from_static("x-v"),
            rule,
            invert,
        }
    }

    #[test]
    fn header_rules() {
        let h = headers(&[("x-v", "canary-42")]);
        assert!(hm(StringMatch::Exact("canary-42".into()), false).matches(&h));
        assert!(hm(StringMatch::Prefix("canary".into()), false).matches(&h));
        assert!(hm(StringMatch::Suffix("-42".into()), false).matches(&h));
        let re = full_match_regex("canary-[0-9]+").expect("regex");
        assert!(hm(StringMatch::Regex(re), false).matches(&h));
        let partial = full_match_regex("canary").expect("regex");
        assert!(
            !hm(StringMatch::Regex(partial), false).matches(&h),
            "regex is anchored"
        );
        assert!(hm(StringMatch::Present(true), false).matches(&h));
        assert!(!hm(StringMatch::Present(false), false).matches(&h));
        assert!(
            hm(StringMatch::Exact("other".into()), true).matches(&h),
            "inverted"
        );
    }

    #[test]
    fn range_is_half_open() {
        let r = |v: &'static str| {
            hm(StringMatch::Range(10, 20), false).matches(&headers(&[("x-v", v)]))
        };
        assert!(r("10") && r("19"));
        assert!(!r("20") && !r("9") && !r("abc"));
    }

    #[test]
    fn absent_header() {
        let h = HeaderMap::new();
        assert!(!hm(StringMatch::Exact("x".into()), false).matches(&h));
        assert!(hm(StringMatch::Exact("x".into()), true).matches(&h));
        assert!(hm(StringMatch::Present(false), false).matches(&h));
    }

    #[test]
    fn repeated_headers_join_with_commas() {
        let h = headers(&[("x-v", "a"), ("x-v", "b")]);
        assert!(hm(StringMatch::Exact("a,b".into()), false).matches(&h));
    }

    #[test]
    fn query_rules() {
        let q = QueryMatcher {
            name: "v".into(),
            exact: Some("2".into()),
            absent: false,
        };
        assert!(q.matches(Some("a=1&v=2")));
        assert!(!q.matches(Some("v=3")));
        assert!(!q.matches(None));
        let p = QueryMatcher {
            name: "debug".into(),
            exact: None,
            absent: false,
        };
        assert!(p.matches(Some("debug")) && p.matches(Some("x=1&debug=")));
        let a = QueryMatcher {
            name: "debug".into(),
            exact: None,
            absent: true,
        };
        assert!(a.matches(None) && !a.matches(Some("debug=1")));
    }
}
