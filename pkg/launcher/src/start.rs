//! `rkube start`: resolve the profile's settings, run the quick preparation
//! steps with timing output, spawn the daemon detached (its own session,
//! output appended to `rkube.log`) and poll `/readyz` until it answers.

use std::io::{Read, Seek, SeekFrom};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rkube_host::{pidfile, process, Procfs};

use crate::console::{Console, Reporter};
use crate::logs::tail_lines;
use crate::pipeline::{self, server_url, Context, Step};
use crate::probe::Prober;
use crate::profile::{self, ContainerRuntime, Datastore, Overrides, Profile, ProfileConfig};
use crate::timing::format_duration;
use crate::{daemon, Error, Result, VERSION};

/// How long `start` waits for `/readyz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `start` waits for the node to report Ready.
pub const NODE_READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A client with the profile's admin credentials.
async fn admin_client(profile: &Profile) -> Option<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(profile.kubeconfig_file()).ok()?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .ok()?;
    kube::Client::try_from(cfg).ok()
}

/// Lines of `rkube.log` shown when the daemon dies during start.
const LOG_TAIL: usize = 25;

/// What `rkube start` was asked for.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Profile name.
    pub profile: String,
    /// Settings given explicitly.
    pub overrides: Overrides,
    /// Run the daemon in this process instead of detached.
    pub foreground: bool,
}

/// Stored settings with the explicit ones applied, validated.
pub fn resolve(existing: Option<ProfileConfig>, overrides: &Overrides) -> Result<ProfileConfig> {
    let mut cfg = existing.unwrap_or_else(ProfileConfig::new_default);
    cfg.apply(overrides);
    // A docker profile without a recorded dockerd takes DOCKER_HOST once,
    // at this start; stop and delete then use what the profile recorded,
    // whatever the shell they run in says.
    if cfg.container_runtime == ContainerRuntime::Docker
        && cfg.docker_host.is_none()
        && overrides.docker_host.is_none()
    {
        cfg.docker_host = crate::backend::docker::docker_host_from_env();
    }
    if cfg.datastore == Datastore::Etcd {
        return Err(Error::EtcdUnavailable);
    }
    if profile::validate_name(&cfg.node_name).is_err() {
        return Err(Error::InvalidNodeName(cfg.node_name));
    }
    Ok(cfg)
}

/// Fails with a message naming `--apiserver-port` if `port` cannot be bound
/// (retrying for a few seconds: a daemon killed a moment ago may still hold it).
pub fn check_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::net::TcpListener::bind(("0.0.0.0", port)) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if Instant::now() >= deadline {
                    return Err(Error::PortInUse { port });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(source) => return Err(Error::PortUnavailable { port, source }),
        }
    }
}

/// Runs `rkube start`.
pub async fn run(opts: StartOptions) -> Result<()> {
    let profile = Profile::new(&opts.profile)?;
    let mut console = Console;
    console.info(
        "😄",
        &format!("rkube v{VERSION} (profile \"{}\")", profile.name()),
    );
    let existing = profile.load_config()?;
    let config = resolve(existing.clone(), &opts.overrides)?;

    let procfs = Procfs::default();
    if let Some(pid) = procfs.running(&profile.pid_file(), profile.dir())? {
        let port = existing
            .as_ref()
            .map_or(config.apiserver_port, |c| c.apiserver_port);
        console.info(
            "👍",
            &format!(
                "profile \"{}\" is already running (pid {pid}) on {}",
                profile.name(),
                server_url(port)
            ),
        );
        if existing.as_ref() != Some(&config) {
            console.info(
                "⚠️ ",
                "new settings were not applied; run `rkube stop` first, then start again",
            );
        }
        return Ok(());
    }
    pidfile::remove(&profile.pid_file())?;
    check_port(config.apiserver_port)?;
    profile.create_dirs()?;
    profile.save_config(&config)?;

    if opts.foreground {
        return daemon::run(profile, &mut console).await;
    }

    let mut ctx = Context::new(profile.clone(), config.clone());
    pipeline::run(&mut ctx, Step::PREPARE, &mut console).await?;
    drop(ctx);

    let started = Instant::now();
    let (child, log_offset) = spawn(&profile)?;
    wait_ready(&profile, config.apiserver_port, child, log_offset).await?;
    console.info(
        "🚀",
        &format!(
            "API server ready on {} ({})",
            server_url(config.apiserver_port),
            format_duration(started.elapsed())
        ),
    );
    if !config.disable_agent {
        let started = Instant::now();
        let ready = match admin_client(&profile).await {
            Some(client) => {
                crate::node::wait_node_ready(&client, &config.node_name, NODE_READY_TIMEOUT).await
            }
            None => false,
        };
        if !ready {
            return Err(Error::Node(format!(
                "node \"{}\" did not become Ready within {}s; see `rkube logs --profile {}` and `kubectl describe node {}`",
                config.node_name,
                NODE_READY_TIMEOUT.as_secs(),
                profile.name(),
                config.node_name
            )));
        }
        console.info(
            "🤖",
            &format!(
                "Node \"{}\" Ready ({})",
                config.node_name,
                format_duration(started.elapsed())
            ),
        );
    }
    console.info(
        "🏄",
        &format!(
            "Done! kubectl is now configured to use \"{}\"",
            profile.name()
        ),
    );
    Ok(())
}

/// Spawns `rkube daemon --profile <name>` in its own session, output
/// appended to the profile's log. Returns the child and the log size
/// before it started.
fn spawn(profile: &Profile) -> Result<(Child, u64)> {
    let exe = std::env::current_exe().map_err(|source| Error::Spawn {
        exe: "rkube".into(),
        source,
    })?;
    let log_path = profile.log_file();
    let offset = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let mut cmd = Command::new(&exe);
    cmd.args(["daemon", "--profile", profile.name()]);
    let child = process::spawn_detached(cmd, &log_path)?;
    Ok((child, offset))
}

async fn wait_ready(profile: &Profile, port: u16, mut child: Child, log_offset: u64) -> Result<()> {
    let prober = Prober::new(profile, port, Duration::from_secs(1))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::DaemonExited {
                status: status.to_string(),
                log: profile.log_file(),
                tail: log_since(profile, log_offset),
            });
        }
        if prober.ready().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::NotReady {
                profile: profile.name().to_string(),
                secs: READY_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The last lines the daemon wrote since `offset`.
fn log_since(profile: &Profile, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(profile.log_file()) {
        let _ = f.seek(SeekFrom::Start(offset));
        let _ = f.read_to_string(&mut text);
    }
    tail_lines(&text, LOG_TAIL).trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ContainerRuntime;

    #[test]
    fn explicit_flags_override_stored_settings() {
        let mut stored = ProfileConfig::new_default();
        stored.apiserver_port = 9443;
        stored.container_runtime = ContainerRuntime::Containerd;
        let cfg = resolve(
            Some(stored.clone()),
            &Overrides {
                container_runtime: Some(ContainerRuntime::Docker),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.apiserver_port, 9443, "kept");
        assert_eq!(
            cfg.container_runtime,
            ContainerRuntime::Docker,
            "overridden"
        );
        assert_eq!(
            resolve(Some(stored.clone()), &Overrides::default()).unwrap(),
            stored
        );
    }

    #[test]
    fn refuses_etcd_and_bad_node_names() {
        let etcd = Overrides {
            datastore: Some(Datastore::Etcd),
            ..Default::default()
        };
        assert!(matches!(resolve(None, &etcd), Err(Error::EtcdUnavailable)));
        let bad = Overrides {
            node_name: Some("Bad_Name".into()),
            ..Default::default()
        };
        assert!(resolve(None, &bad)
            .unwrap_err()
            .to_string()
            .contains("--node-name"));
    }

    #[test]
    fn taken_port_names_the_flag() {
        let l = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let err = check_port(port).unwrap_err().to_string();
        assert!(
            err.contains("--apiserver-port") && err.contains(&port.to_string()),
            "{err}"
        );
        drop(l);
        check_port(port).unwrap();
    }
}
