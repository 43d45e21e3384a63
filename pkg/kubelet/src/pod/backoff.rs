//! State `BackOff`: the pod cannot progress until a back-off window ends
//! (its sandbox failed to start, or an init container crash-loops with
//! CrashLoopBackOff). Status keeps showing the waiting reason; when the
//! window is over the pod resumes where it stopped (or rebuilds its
//! sandbox if that died meanwhile).

use std::time::{Duration, Instant};

use super::common;
use super::{Resume, State, Step, Worker};

/// One step of the state.
pub(super) async fn step(w: &mut Worker, resume: Resume, until: Instant) -> Step {
    let now = Instant::now();
    if now >= until {
        return Step::Go(match resume {
            Resume::Sandbox => State::Sandbox,
            Resume::Init => State::Init,
        });
    }
    if resume == Resume::Init {
        common::invalidate(w);
        if common::observe(w).await.is_some() && !w.sandbox_ready {
            return Step::Go(State::Sandbox);
        }
    }
    Step::Stay((until - now).min(Duration::from_secs(2)))
}
