//! Virtual-host selection by Host / :authority, in Envoy's order: an exact domain, then the
//! longest `*.suffix` wildcard, then `*`. A domain written with a port matches only that port;
//! one written without matches any port.
use std::collections::HashMap;

use super::Route;

pub struct VirtualHost {
    pub name: String,
    pub routes: Box<[Route]>,
}

#[derive(Default)]
pub struct VirtualHosts {
    pub hosts: Vec<VirtualHost>,
    exact: HashMap<String, usize>,
    /// ("suffix" including its leading '.', index), longest first.
    suffixes: Vec<(String, usize)>,
    any: Option<usize>,
}

impl VirtualHosts {
    /// Adds `host` answering for `domains` (already validated, lowercase).
    pub fn push(&mut self, host: VirtualHost, domains: &[String]) {
        let i = self.hosts.len();
        self.hosts.push(host);
        for d in domains {
            if d == "*" {
                self.any.get_or_insert(i);
            } else if let Some(suffix) = d.strip_prefix('*') {
                if !self.suffixes.iter().any(|(s, _)| s == suffix) {
                    self.suffixes.push((suffix.to_owned(), i));
                }
            } else {
                self.exact.entry(d.clone()).or_insert(i);
            }
        }
        self.suffixes
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    }

    /// The virtual host (and its index) for `authority` (Host header or :authority), if any.
    pub fn find(&self, authority: &str) -> Option<(usize, &VirtualHost)> {
        let lowered;
        let host = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = authority.to_ascii_lowercase();
            lowered.as_str()
        } else {
            authority
        };
        let without_port = strip_port(host);
        let i = self
            .exact
            .get(host)
            .or_else(|| without_port.and_then(|h| self.exact.get(h)))
            .copied()
            .or_else(|| self.suffix_match(host))
            .or_else(|| without_port.and_then(|h| self.suffix_match(h)))
            .or(self.any)?;
        Some((i, self.hosts.get(i)?))
    }

    fn suffix_match(&self, host: &str) -> Option<usize> {
        self.suffixes
            .iter()
            .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
            .map(|(_, i)| *i)
    }
}

/// An authority's host: "host:port" -> "host"; "[::1]:80" -> "[::1]"; "host" -> "host".
pub fn host_without_port(authority: &str) -> &str {
    strip_port(authority).unwrap_or(authority)
}

/// "host:port" -> Some("host"); "[::1]:80" -> Some("[::1]"); no port -> None.
fn strip_port(authority: &str) -> Option<&str> {
    let colon = authority.rfind(':')?;
    if authority[colon + 1..].bytes().all(|b| b.is_ascii_digit())
        && !authority[colon..].contains(']')
    {
        Some(&authority[..colon])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> VirtualHosts {
        let mut v = VirtualHosts::default();
        for (name, domains) in [
            ("exact", vec!["api.local"]),
            ("ported", vec!["api.local:8080"]),
            ("wild", vec!["*.local"]),
            ("deeper", vec!["*.svc.local"]),
            ("any", vec!["*"]),
        ] {
            let domains: Vec<String> = domains.into_iter().map(String::from).collect();
            v.push(
                VirtualHost {
                    name: name.into(),
                    routes: Box::new([]),
                },
                &domains,
            );
        }
        v
    }

    fn name(v: &VirtualHosts, a: &str) -> String {
        v.find(a).map(|(_, h)| h.name.clone()).unwrap_or_default()
    }

    #[test]
    fn order_is_exact_then_longest_suffix_then_any() {
        let v = table();
        assert_eq!(name(&v, "api.local"), "exact");
        assert_eq!(name(&v, "API.local"), "exact");
        assert_eq!(name(&v, "api.local:8080"), "ported");
        assert_eq!(name(&v, "api.local:9090"), "exact");
        assert_eq!(name(&v, "x.svc.local"), "deeper");
        assert_eq!(name(&v, "x.local:1"), "wild");
        assert_eq!(name(&v, "example.com"), "any");
        assert_eq!(name(&v, "[::1]:80"), "any");
    }

    #[test]
    fn no_default_means_none() {
        let mut v = VirtualHosts::default();
        v.push(
            VirtualHost {
                name: "a".into(),
                routes: Box::new([]),
            },
            &["a".into()],
        );
        assert!(v.find("b").is_none());
    }
}
