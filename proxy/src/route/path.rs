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

fn needs_normalizing(path: &str) -> bool {
    !path.starts_with('/')
        || path.contains("//")
        || path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/..")
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
    }
}
