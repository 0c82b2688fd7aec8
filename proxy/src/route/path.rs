//! Path normalization, as App Mesh turns on Envoy's `normalize_path` and `merge_slashes`:
//! "//a/./b/../c" matches and is forwarded as "/a/c", so a route cannot be bypassed by spelling.
use std::borrow::Cow;

/// Merges repeated slashes and resolves "." and ".." segments (never above the root).
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if !needs_normalizing(path) {
        return Cow::Borrowed(path);
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

/// One pass over the bytes: a path needs work when it does not start with '/', or has an empty,
/// "." or ".." segment anywhere (so "//", "/./", "/../", or a trailing "/." or "/..").
/// Clean paths, nearly all of them, cost one scan and no allocation.
fn needs_normalizing(path: &str) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return true;
    }
    // `seg` counts the bytes of the current segment while they are all dots (at most 3 needed);
    // a '/' ends a segment, which is bad when it was empty, "." or "..".
    let mut seg = 0u8; // bytes in the segment so far, capped
    let mut dots = true; // every byte of the segment so far is a '.'
    for &c in &b[1..] {
        if c == b'/' {
            if seg == 0 || (dots && seg <= 2) {
                return true;
            }
            seg = 0;
            dots = true;
        } else {
            seg = seg.saturating_add(1);
            dots &= c == b'.';
        }
    }
    // The last segment: "." or ".." at the end ("/a/.."); an empty one is a trailing '/', fine.
    seg != 0 && dots && seg <= 2
}

#[cfg(test)]
mod tests {
    use super::normalize_path as n;

    #[test]
    fn leaves_clean_paths_alone() {
        assert!(matches!(n("/a/b"), std::borrow::Cow::Borrowed("/a/b")));
        assert_eq!(n("/"), "/");
    }

    #[test]
    fn merges_and_resolves() {
        assert_eq!(n("//a///b"), "/a/b");
        assert_eq!(n("/a/./b/../c"), "/a/c");
        assert_eq!(n("/../../etc"), "/etc");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("a"), "/a");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("//"), "/");
        assert_eq!(n(""), "/");
    }

    #[test]
    fn dotted_names_are_clean() {
        for p in [
            "/a/.b",
            "/a/..b",
            "/a/...",
            "/.well-known/x",
            "/a.b/c.",
            "/a/b/",
            "/",
        ] {
            assert!(matches!(n(p), std::borrow::Cow::Borrowed(_)), "{p}");
        }
    }

    /// The one-pass check agrees with the five-scan definition it replaced.
    #[test]
    fn one_pass_check_matches_the_scans() {
        fn scans(path: &str) -> bool {
            !path.starts_with('/')
                || path.contains("//")
                || path.contains("/./")
                || path.contains("/../")
                || path.ends_with("/.")
                || path.ends_with("/..")
        }
        let alphabet = ["/", ".", "a"];
        let mut paths = vec![String::new()];
        for _ in 0..7 {
            let next: Vec<String> = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            for p in &next {
                assert_eq!(super::needs_normalizing(p), scans(p), "{p:?}");
            }
            paths = next;
        }
    }
}
