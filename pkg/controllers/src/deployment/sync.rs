//! Scaling without I/O, as upstream's deployment/sync.go: detecting a
//! scaling event, scaling the only active ReplicaSet, scaling down old ones
//! behind a saturated new one, proportional scaling of every active
//! ReplicaSet during a rollout, and the revision-history cleanup.

use std::cmp::Ordering;

use super::util::{by_creation, RsState};

/// One ReplicaSet resize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOp {
    /// ReplicaSet name.
    pub name: String,
    /// New spec.replicas.
    pub size: i32,
    /// Also refresh the replicas annotations when the size is unchanged
    /// (proportional scaling); otherwise an unchanged size is a no-op.
    pub annotate: bool,
    /// "up" or "down" for the event.
    pub op: &'static str,
}

/// True when an active ReplicaSet was last scaled for a different
/// Deployment size (isScalingEvent).
pub fn is_scaling_event(all: &[RsState], d_replicas: i32) -> bool {
    all.iter()
        .filter(|r| r.replicas > 0)
        .any(|r| r.desired_annotation.is_some_and(|d| d != d_replicas))
}

/// The new ReplicaSet has all the Deployment's replicas, available.
pub fn is_saturated(new: Option<&RsState>, d_replicas: i32) -> bool {
    new.is_some_and(|n| {
        n.desired_annotation == Some(d_replicas)
            && n.replicas == d_replicas
            && n.available == d_replicas
    })
}

fn op(from: i32, to: i32) -> &'static str {
    if from < to {
        "up"
    } else {
        "down"
    }
}

/// Rounds half away from zero, as Go's math.Round.
fn round(v: f64) -> i32 {
    v.round() as i32
}

/// The share of `to_add` for `rs` (GetProportion).
fn proportion(
    rs: &RsState,
    d_replicas: i32,
    max_surge: i32,
    status_replicas: i32,
    to_add: i32,
    added: i32,
) -> i32 {
    if rs.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if d_replicas == 0 {
        -rs.replicas
    } else {
        let max_now = d_replicas + max_surge;
        let before = match rs.max_annotation {
            Some(m) if m != 0 => m,
            _ => status_replicas,
        };
        if before == 0 {
            0
        } else {
            round(f64::from(rs.replicas) * f64::from(max_now) / f64::from(before)) - rs.replicas
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The resizes of one `scale` pass for a Deployment of `d_replicas`.
pub fn plan_scale(
    new: Option<&RsState>,
    olds: &[RsState],
    d_replicas: i32,
    max_surge: i32,
    rolling: bool,
    status_replicas: i32,
) -> Vec<ScaleOp> {
    // FindActiveOrLatest.
    let mut olds_newest: Vec<RsState> = olds.to_vec();
    olds_newest.sort_by(|a, b| by_creation(b, a));
    let mut active: Vec<RsState> = olds_newest
        .iter()
        .chain(new)
        .filter(|r| r.replicas > 0)
        .cloned()
        .collect();
    let single = match active.len() {
        0 => new.cloned().or_else(|| olds_newest.first().cloned()),
        1 => active.first().cloned(),
        _ => None,
    };
    if new.is_none() && olds.is_empty() {
        return Vec::new();
    }
    if let Some(rs) = single {
        if rs.replicas == d_replicas {
            return Vec::new();
        }
        return vec![ScaleOp {
            name: rs.name.clone(),
            size: d_replicas,
            annotate: false,
            op: op(rs.replicas, d_replicas),
        }];
    }
    if is_saturated(new, d_replicas) {
        return olds
            .iter()
            .filter(|r| r.replicas > 0)
            .map(|r| ScaleOp {
                name: r.name.clone(),
                size: 0,
                annotate: false,
                op: "down",
            })
            .collect();
    }
    if !rolling {
        return Vec::new();
    }
    let total: i32 = active.iter().map(|r| r.replicas).sum();
    let allowed = if d_replicas > 0 {
        d_replicas + max_surge
    } else {
        0
    };
    let to_add = allowed - total;
    let direction = match to_add.cmp(&0) {
        Ordering::Greater => {
            // Larger first; for equal sizes newer first.
            active.sort_by(|a, b| b.replicas.cmp(&a.replicas).then_with(|| by_creation(b, a)));
            "up"
        }
        Ordering::Less => {
            // Larger first; for equal sizes older first.
            active.sort_by(|a, b| b.replicas.cmp(&a.replicas).then_with(|| by_creation(a, b)));
            "down"
        }
        Ordering::Equal => "",
    };
    let mut added = 0;
    let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
    for rs in &active {
        if to_add != 0 {
            let p = proportion(rs, d_replicas, max_surge, status_replicas, to_add, added);
            sizes.push(rs.replicas + p);
            added += p;
        } else {
            sizes.push(rs.replicas);
        }
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
    }
    active
        .iter()
        .zip(sizes)
        .map(|(rs, size)| ScaleOp {
            name: rs.name.clone(),
            size,
            annotate: true,
            op: direction,
        })
        .collect()
}

/// Old ReplicaSets to delete beyond revisionHistoryLimit: the lowest
/// revisions first, only those fully scaled down and observed.
pub fn plan_cleanup(olds: &[RsState], limit: i32) -> Vec<String> {
    let mut alive: Vec<&RsState> = olds.iter().filter(|r| !r.deleting).collect();
    let diff = i64::try_from(alive.len()).unwrap_or(0) - i64::from(limit);
    if diff <= 0 {
        return Vec::new();
    }
    alive.sort_by(|a, b| a.revision.cmp(&b.revision).then_with(|| by_creation(a, b)));
    alive
        .into_iter()
        .take(usize::try_from(diff).unwrap_or(0))
        .filter(|r| {
            r.status_replicas == 0 && r.replicas == 0 && r.generation <= r.observed_generation
        })
        .map(|r| r.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::util;

    fn rs(name: &str, replicas: i32, available: i32, created: i64, max: Option<i32>) -> RsState {
        RsState {
            desired_annotation: max.map(|m| m - 1),
            max_annotation: max,
            ..util::tests::rs(name, replicas, available, created)
        }
    }

    fn sizes(ops: &[ScaleOp]) -> Vec<(&str, i32)> {
        ops.iter().map(|o| (o.name.as_str(), o.size)).collect()
    }

    #[test]
    fn single_active_set_takes_everything() {
        let new = rs("new", 3, 3, 10, Some(4));
        let ops = plan_scale(Some(&new), &[rs("old", 0, 0, 0, None)], 5, 1, true, 3);
        assert_eq!(sizes(&ops), vec![("new", 5)]);
        assert_eq!(ops[0].op, "up");
        assert!(plan_scale(Some(&new), &[], 3, 1, true, 3).is_empty());
        // No active set: the new one (or the newest old one) is scaled.
        let ops = plan_scale(
            None,
            &[rs("a", 0, 0, 0, None), rs("b", 0, 0, 5, None)],
            2,
            1,
            true,
            0,
        );
        assert_eq!(sizes(&ops), vec![("b", 2)]);
    }

    #[test]
    fn saturated_new_scales_old_to_zero() {
        let mut new = rs("new", 3, 3, 10, None);
        new.desired_annotation = Some(3);
        let ops = plan_scale(
            Some(&new),
            &[rs("old", 1, 1, 0, None), rs("older", 0, 0, -5, None)],
            3,
            1,
            true,
            4,
        );
        assert_eq!(sizes(&ops), vec![("old", 0)]);
    }

    #[test]
    fn proportional_scale_up_mid_rollout() {
        // 10 replicas, surge 3 → annotations max 13; old 8, new 5 (13 pods).
        // Scaled to 20 (surge 5 → 25): 12 more, split 8:5.
        let old = rs("old", 8, 8, 0, Some(13));
        let new = rs("new", 5, 0, 10, Some(13));
        let ops = plan_scale(Some(&new), &[old], 20, 5, true, 13);
        let mut s = sizes(&ops);
        s.sort();
        assert_eq!(s, vec![("new", 10), ("old", 15)]);
        assert!(ops.iter().all(|o| o.op == "up" && o.annotate));
    }

    #[test]
    fn proportional_scale_down_and_leftovers() {
        // 10 → 5 replicas with surge 0: from 10 pods (6 old, 4 new) to 5.
        let old = rs("old", 6, 6, 0, Some(10));
        let new = rs("new", 4, 2, 10, Some(10));
        let ops = plan_scale(Some(&new), &[old], 5, 0, true, 10);
        let total: i32 = ops.iter().map(|o| o.size).sum();
        assert_eq!(total, 5);
        assert_eq!(sizes(&ops), vec![("old", 3), ("new", 2)]);
        // Scaling to zero removes everything.
        let ops = plan_scale(
            Some(&rs("new", 4, 2, 10, Some(10))),
            &[rs("old", 6, 6, 0, Some(10))],
            0,
            0,
            true,
            10,
        );
        assert!(ops.iter().all(|o| o.size == 0));
    }

    #[test]
    fn recreate_does_not_scale_proportionally() {
        let ops = plan_scale(
            Some(&rs("new", 2, 0, 10, None)),
            &[rs("old", 1, 1, 0, None)],
            5,
            0,
            false,
            3,
        );
        assert!(ops.is_empty());
    }

    #[test]
    fn scaling_event_detection() {
        let a = rs("a", 3, 3, 0, Some(4));
        assert!(!is_scaling_event(std::slice::from_ref(&a), 3));
        assert!(is_scaling_event(&[a], 5));
        assert!(!is_scaling_event(&[rs("b", 0, 0, 0, Some(4))], 5));
    }

    #[test]
    fn cleanup_keeps_limit_and_busy_sets() {
        let mut olds: Vec<RsState> = (1..=5)
            .map(|i| rs(&format!("r{i}"), 0, 0, i, None))
            .collect();
        olds[1].replicas = 1; // r2 still has pods: kept.
        olds[2].generation = 2; // r3 not observed yet: kept.
        assert_eq!(plan_cleanup(&olds, 2), vec!["r1".to_string()]);
        assert!(plan_cleanup(&olds, 10).is_empty());
        assert_eq!(plan_cleanup(&olds, 0).len(), 3);
    }
}
