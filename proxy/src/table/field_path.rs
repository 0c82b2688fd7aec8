//! Field paths for compile errors (`listeners[0].virtualHosts[1].routes[2].match`), written out
//! only when an error needs one.
//!
//! Compiling a table used to format a path string per route, per match, per header, per target
//! and per timeout before it knew whether anything was wrong: with 10,000 routes that was ~10% of
//! a JSON table's load (perf, the loader thread). These borrow their parent and format nothing
//! until they are displayed.
use std::fmt;

/// `parent.name` (`name` may itself hold dots: `timeouts.idle`).
pub(super) struct Field<'a, P: ?Sized>(pub &'a P, pub &'static str);

/// `parent[index]`.
pub(super) struct Index<'a, P: ?Sized>(pub &'a P, pub usize);

impl<P: fmt::Display + ?Sized> fmt::Display for Field<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl<P: fmt::Display + ?Sized> fmt::Display for Index<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_as_the_fields_they_name() {
        let vhost = "listeners[0].virtualHosts[1]";
        let routes = Field(vhost, "routes");
        let route = Index(&routes, 2);
        let headers = Field(&Field(&route, "match"), "headers");
        assert_eq!(
            Field(&Index(&headers, 0), "regex").to_string(),
            "listeners[0].virtualHosts[1].routes[2].match.headers[0].regex"
        );
        assert_eq!(
            Field(&Field(&route, "action"), "timeouts.idle").to_string(),
            "listeners[0].virtualHosts[1].routes[2].action.timeouts.idle"
        );
    }
}
