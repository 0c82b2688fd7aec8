//! Weighted choice among a route's target clusters. Weights are relative (0..100 each); weight 0
//! is never picked. Cumulative weights are precomputed, so a pick is one random number and a scan
//! over at most ten targets.
use std::sync::Arc;

use crate::cluster::Cluster;

pub struct WeightedTargets {
    /// (cluster, cumulative weight), weight-0 targets left out.
    targets: Box<[(Arc<Cluster>, u32)]>,
    total: u32,
}

impl WeightedTargets {
    /// `None` when no target has a positive weight.
    pub fn new(targets: Vec<(Arc<Cluster>, u32)>) -> Option<WeightedTargets> {
        let mut total = 0u32;
        let targets: Box<[(Arc<Cluster>, u32)]> = targets
            .into_iter()
            .filter(|(_, w)| *w > 0)
            .map(|(c, w)| {
                total += w;
                (c, total)
            })
            .collect();
        (total > 0).then_some(WeightedTargets { targets, total })
    }

    pub fn pick(&self) -> &Arc<Cluster> {
        if self.targets.len() == 1 {
            return &self.targets[0].0;
        }
        let r = fastrand::u32(..self.total);
        // Constructed non-empty with total > 0, so some cumulative weight exceeds r.
        let i = self
            .targets
            .iter()
            .position(|(_, cum)| *cum > r)
            .unwrap_or(0);
        &self.targets[i].0
    }

    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.targets.iter().map(|(c, _)| c)
    }
}
