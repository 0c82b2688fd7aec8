//! Where a cluster's endpoints come from: listed in the table, or the addresses of a DNS name kept
//! up to date by a resolution loop (`crate::discovery`). Shown on `/clusters`, and named in the 503
//! a request gets when the cluster has no endpoint, so "no healthy upstream" says which name did
//! not resolve and why.
use super::Cluster;
use crate::discovery::Subscription;

impl Cluster {
    /// Makes this cluster follow a DNS name; done once, when the cluster is built.
    pub fn follow_dns(&self, subscription: Subscription) {
        // A second call would mean a cluster subscribed twice: keep the first.
        let _ = self.dns.set(subscription);
    }

    /// The DNS name this cluster follows, if its endpoints come from DNS.
    pub fn dns(&self) -> Option<&Subscription> {
        self.dns.get()
    }

    /// `static` or `dns:HOSTNAME`.
    pub fn endpoint_source(&self) -> String {
        match self.dns() {
            Some(d) => format!("dns:{}", d.hostname()),
            None => "static".to_owned(),
        }
    }

    /// The body of the 503 a request gets when there is no endpoint to pick.
    pub fn no_endpoint_message(&self) -> String {
        let dns_reason = self
            .dns()
            .filter(|_| self.endpoints().is_empty())
            .and_then(Subscription::why_no_endpoint);
        match dns_reason {
            Some(why) => format!("no healthy upstream in cluster {:?}: {why}\n", self.name),
            None => format!("no healthy upstream in cluster {:?}\n", self.name),
        }
    }
}
