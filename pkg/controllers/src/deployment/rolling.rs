//! RollingUpdate steps without I/O, as upstream's deployment/rolling.go:
//! how far the new ReplicaSet may scale up within maxSurge, and which old
//! ReplicaSets scale down (unhealthy replicas first, then within
//! maxUnavailable).

use super::util::{by_creation, RsState};

/// The new ReplicaSet's size after one scale-up step (NewRSNewReplicas):
/// Recreate goes straight to `d_replicas`; RollingUpdate adds at most what
/// keeps all pods within replicas + maxSurge, never above `d_replicas`.
pub fn new_rs_new_replicas(
    rolling: bool,
    d_replicas: i32,
    max_surge: i32,
    current_total: i32,
    new_replicas: i32,
) -> i32 {
    if !rolling {
        return d_replicas;
    }
    let max_total = d_replicas + max_surge;
    if current_total >= max_total {
        return new_replicas;
    }
    let up = (max_total - current_total).min(d_replicas - new_replicas);
    new_replicas + up
}

/// The scale-downs of old ReplicaSets for one rolling step
/// (reconcileOldReplicaSets): `(name, new size)` in the order to apply.
/// First replicas that are not available are removed from the oldest
/// ReplicaSets (they do not count towards availability), then available
/// ones while at least replicas − maxUnavailable stay available.
pub fn plan_old_scale_down(
    all: &[RsState],
    new: &RsState,
    d_replicas: i32,
    max_unavailable: i32,
) -> Vec<(String, i32)> {
    let mut olds: Vec<RsState> = all
        .iter()
        .filter(|r| r.name != new.name && r.replicas > 0)
        .cloned()
        .collect();
    let old_pods: i32 = olds.iter().map(|r| r.replicas).sum();
    if old_pods == 0 {
        return Vec::new();
    }
    let all_pods: i32 = all.iter().map(|r| r.replicas).sum();
    let min_available = d_replicas - max_unavailable;
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    olds.sort_by(by_creation);
    let mut plan = Vec::new();

    // Clean up unhealthy replicas first.
    let mut cleaned = 0;
    for rs in olds.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        if rs.replicas == 0 || rs.available >= rs.replicas {
            continue;
        }
        let n = (max_scaled_down - cleaned).min(rs.replicas - rs.available);
        rs.replicas -= n;
        cleaned += n;
        plan.push((rs.name.clone(), rs.replicas));
    }

    // Then scale down within maxUnavailable.
    let available: i32 = olds.iter().map(|r| r.available).sum::<i32>() + new.available;
    if available <= min_available {
        return plan;
    }
    let to_scale_down = available - min_available;
    let mut scaled = 0;
    for rs in olds.iter_mut() {
        if scaled >= to_scale_down {
            break;
        }
        if rs.replicas == 0 {
            continue;
        }
        let n = rs.replicas.min(to_scale_down - scaled);
        rs.replicas -= n;
        scaled += n;
        plan.push((rs.name.clone(), rs.replicas));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::util::tests::rs;

    #[test]
    fn scale_up_within_surge() {
        // 3 replicas, surge 1: 3 old + 0 new → new may go to 1.
        assert_eq!(new_rs_new_replicas(true, 3, 1, 3, 0), 1);
        // Already at 4 pods: no more.
        assert_eq!(new_rs_new_replicas(true, 3, 1, 4, 1), 1);
        // Never above desired.
        assert_eq!(new_rs_new_replicas(true, 3, 5, 3, 2), 3);
        // Recreate: straight to desired.
        assert_eq!(new_rs_new_replicas(false, 3, 0, 0, 0), 3);
    }

    #[test]
    fn max_unavailable_zero_waits_for_new_pods() {
        // replicas 3, surge 1, unavailable 0: old 3 (3 available), new 1 (not available).
        let old = rs("old", 3, 3, 0);
        let new = rs("new", 1, 0, 10);
        assert!(plan_old_scale_down(&[old.clone(), new.clone()], &new, 3, 0).is_empty());
        // The new pod became available: one old pod may go.
        let new = rs("new", 1, 1, 10);
        assert_eq!(
            plan_old_scale_down(&[old, new.clone()], &new, 3, 0),
            vec![("old".to_string(), 2)]
        );
    }

    #[test]
    fn max_unavailable_allows_scale_down_first() {
        // replicas 4, surge 0, unavailable 1: the old set may lose one at once.
        let old = rs("old", 4, 4, 0);
        let new = rs("new", 0, 0, 10);
        assert_eq!(
            plan_old_scale_down(&[old, new.clone()], &new, 4, 1),
            vec![("old".to_string(), 3)]
        );
    }

    #[test]
    fn unhealthy_old_replicas_go_first_oldest_first() {
        // Two old sets with unavailable pods; new set fully available.
        let a = rs("a", 2, 0, 0);
        let b = rs("b", 2, 1, 5);
        let new = rs("new", 3, 3, 10);
        let plan = plan_old_scale_down(&[b.clone(), a.clone(), new.clone()], &new, 3, 0);
        assert_eq!(
            plan,
            vec![
                ("a".to_string(), 0),
                ("b".to_string(), 1),
                ("b".to_string(), 0)
            ]
        );
    }

    #[test]
    fn nothing_old_nothing_to_do() {
        let new = rs("new", 3, 3, 10);
        assert!(plan_old_scale_down(&[rs("a", 0, 0, 0), new.clone()], &new, 3, 1).is_empty());
    }
}
