//! The daemon: the long-running process behind a profile. It runs the whole
//! start [`pipeline`](crate::pipeline), then waits for SIGTERM or SIGINT and
//! shuts the API server down gracefully, removing its pid file.

use rkube_host::{pidfile, PidFile};
use tokio::signal::unix::{signal, SignalKind};

use crate::console::Reporter;
use crate::pipeline::{self, Context, Step};
use crate::profile::Profile;
use crate::{Error, Result};

/// Runs `profile` until SIGTERM/SIGINT. `reporter` receives step progress.
pub async fn run(profile: Profile, reporter: &mut dyn Reporter) -> Result<()> {
    let config = profile.require_config()?;
    let mut term = signal(SignalKind::terminate())
        .map_err(Error::io("install SIGTERM handler for", profile.dir()))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(Error::io("install SIGINT handler for", profile.dir()))?;
    tracing::info!(
        profile = profile.name(),
        pid = std::process::id(),
        ?config,
        "starting"
    );
    let mut ctx = Context::new(profile, config);
    let result = pipeline::run(&mut ctx, Step::ALL, reporter).await;
    if let Err(e) = result {
        shutdown(&mut ctx).await;
        return Err(e);
    }
    tracing::info!("ready");
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
        _ = int.recv() => tracing::info!("received SIGINT, shutting down"),
    }
    shutdown(&mut ctx).await;
    Ok(())
}

async fn shutdown(ctx: &mut Context) {
    let _ = ctx.agents_shutdown.send(true);
    for task in ctx.agents.drain(..) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    if let Some(mut backend) = ctx.backend.take() {
        if let Err(e) = backend.stop().await {
            tracing::warn!("stopping the container runtime: {e}");
        }
    }
    if let Some(api) = ctx.apiserver.take() {
        api.shutdown().await;
        tracing::info!("api server stopped");
    }
    // Dropping the last handle closes the embedded store (flushes its writer).
    ctx.store.take();
    let pid_file = ctx.profile.pid_file();
    if let Ok(Some(f)) = PidFile::read(&pid_file) {
        if f.pid == std::process::id() as i32 {
            if let Err(e) = pidfile::remove(&pid_file) {
                tracing::warn!(error = %e, "cannot remove pid file");
            }
        }
    }
    tracing::info!("stopped");
}
