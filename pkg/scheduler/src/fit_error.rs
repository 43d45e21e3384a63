//! The "0/N nodes are available: ..." message kube-scheduler writes into the
//! PodScheduled condition and the FailedScheduling event.
//!
//! Each node contributes its distinct reasons once; the histogram entries
//! ("`<count> <reason>`") are sorted as strings and joined with ", ", as
//! upstream's `FitError.Error()` does. rkube does not preempt, so the
//! preemption sentence reports, per node, either that preemption cannot help
//! (the node failed for an unresolvable reason) or that no victims were found.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::filters::Reason;

/// Why a pod fits no node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    /// Number of nodes considered.
    pub num_nodes: usize,
    /// Each rejected node with its reasons.
    pub node_reasons: Vec<(String, Vec<Reason>)>,
    /// The pod has `preemptionPolicy: Never`.
    pub preemption_never: bool,
}

fn histogram<I: IntoIterator<Item = String>>(per_node: impl Iterator<Item = I>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for reasons in per_node {
        for r in reasons.into_iter().collect::<BTreeSet<_>>() {
            *counts.entry(r).or_insert(0) += 1;
        }
    }
    let mut parts: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    parts.sort();
    parts.join(", ")
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num_nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let n = self.num_nodes;
        let filters = histogram(
            self.node_reasons
                .iter()
                .map(|(_, rs)| rs.iter().map(ToString::to_string).collect::<Vec<_>>()),
        );
        write!(f, "0/{n} nodes are available: {filters}.")?;
        if self.preemption_never {
            return f.write_str(" preemption: not eligible due to preemptionPolicy=Never.");
        }
        let preemption = histogram(self.node_reasons.iter().map(|(_, rs)| {
            let msg = if rs.iter().any(Reason::unresolvable) {
                "Preemption is not helpful for scheduling"
            } else {
                "No preemption victims found for incoming pod"
            };
            [msg.to_string()]
        }));
        write!(f, " preemption: 0/{n} nodes are available: {preemption}.")
    }
}

impl std::error::Error for FitError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn insufficient(r: &str) -> Reason {
        Reason::Insufficient {
            resource: r.into(),
            unresolvable: false,
        }
    }

    #[test]
    fn one_node_insufficient_cpu() {
        let e = FitError {
            num_nodes: 1,
            node_reasons: vec![("n1".into(), vec![insufficient("cpu")])],
            preemption_never: false,
        };
        assert_eq!(
            e.to_string(),
            "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn mixed_reasons_are_counted_and_sorted() {
        let e = FitError {
            num_nodes: 4,
            node_reasons: vec![
                (
                    "a".into(),
                    vec![insufficient("memory"), insufficient("cpu")],
                ),
                ("b".into(), vec![insufficient("memory")]),
                ("c".into(), vec![Reason::NodeAffinity]),
                (
                    "d".into(),
                    vec![Reason::UntoleratedTaint {
                        key: "k".into(),
                        value: "v".into(),
                    }],
                ),
            ],
            preemption_never: false,
        };
        assert_eq!(
            e.to_string(),
            "0/4 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) had untolerated taint {k: v}, 2 Insufficient memory. \
             preemption: 0/4 nodes are available: 2 No preemption victims found for incoming pod, \
             2 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn selector_ports_and_pod_count_wording() {
        let e = FitError {
            num_nodes: 1,
            node_reasons: vec![("n".into(), vec![Reason::NodeAffinity])],
            preemption_never: false,
        };
        assert_eq!(
            e.to_string(),
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
        let ports = FitError {
            num_nodes: 1,
            node_reasons: vec![("n".into(), vec![Reason::NodePorts])],
            preemption_never: false,
        };
        assert!(ports
            .to_string()
            .starts_with("0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."));
        let pods = FitError {
            num_nodes: 1,
            node_reasons: vec![(
                "n".into(),
                vec![Reason::TooManyPods {
                    unresolvable: false,
                }],
            )],
            preemption_never: true,
        };
        assert_eq!(
            pods.to_string(),
            "0/1 nodes are available: 1 Too many pods. preemption: not eligible due to preemptionPolicy=Never."
        );
    }

    #[test]
    fn no_nodes() {
        let e = FitError {
            num_nodes: 0,
            node_reasons: vec![],
            preemption_never: false,
        };
        assert_eq!(e.to_string(), "no nodes available to schedule pods");
    }
}
