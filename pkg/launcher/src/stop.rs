//! `rkube stop`: SIGTERM every live process recorded in the profile's
//! `*.pid` files, wait for them to exit, SIGKILL the stragglers, remove the
//! pid files. Pids that are gone or now belong to someone else are only
//! cleaned up, never signalled.

use std::path::PathBuf;
use std::time::Duration;

use rkube_host::{pidfile, process, PidFile, Procfs};

use crate::profile::Profile;
use crate::{Error, Result};

/// How long processes get to exit after SIGTERM.
pub const GRACE: Duration = Duration::from_secs(10);

/// Stops every process of `profile`; returns the pids that were running.
pub fn stop(profile: &Profile, procfs: &Procfs, grace: Duration) -> Result<Vec<i32>> {
    let mut live: Vec<(i32, PathBuf)> = Vec::new();
    for file in profile.pid_files()? {
        match PidFile::read(&file)?.and_then(|f| procfs.live_process(&f, profile.dir())) {
            Some(pid) => live.push((pid, file)),
            None => {
                tracing::debug!(file = %file.display(), "removing stale pid file");
                pidfile::remove(&file)?;
            }
        }
    }
    let pids: Vec<i32> = live.iter().map(|(p, _)| *p).collect();
    process::terminate(procfs, &pids, grace)?;
    for (_, file) in &live {
        pidfile::remove(file)?;
    }
    Ok(pids)
}

/// Runs `rkube stop` and prints the outcome.
pub fn run(profile_name: &str) -> Result<()> {
    let profile = Profile::new(profile_name)?;
    if !profile.exists() {
        return Err(Error::NoSuchProfile(profile_name.to_string()));
    }
    let stopped = stop(&profile, &Procfs::default(), GRACE)?;
    if stopped.is_empty() {
        println!("🤷  Profile \"{}\" is not running", profile.name());
    } else {
        println!("✋  Stopped profile \"{}\"", profile.name());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn stale_pid_files_are_removed_without_signalling() {
        let home = tempfile::tempdir().unwrap();
        let fake_proc = tempfile::tempdir().unwrap();
        let profile = Profile::in_home(home.path(), "dev").unwrap();
        profile.create_dirs().unwrap();
        // pid 1 is alive on the real system, but absent from the fake /proc.
        std::fs::write(profile.pid_file(), "1\n").unwrap();
        std::fs::write(profile.dir().join("junk.pid"), "not a pid\n").unwrap();
        let stopped = stop(&profile, &Procfs::new(fake_proc.path()), GRACE).unwrap();
        assert!(stopped.is_empty());
        assert!(profile.pid_files().unwrap().is_empty());
    }

    #[test]
    fn stops_a_real_child() {
        let home = tempfile::tempdir().unwrap();
        let profile = Profile::in_home(home.path(), "dev").unwrap();
        profile.create_dirs().unwrap();
        // The child's command line mentions the profile dir, so it counts as ours.
        let mut child = std::process::Command::new("sleep")
            .arg0(profile.dir().join("fake-runtime"))
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        PidFile { pid, exe: None }
            .write(&profile.pid_file())
            .unwrap();
        // spawn() can return before exec has replaced the command line.
        while Procfs::default()
            .cmdline(pid)
            .unwrap_or_default()
            .is_empty()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let reaper = std::thread::spawn(move || child.wait().unwrap());
        let stopped = stop(&profile, &Procfs::default(), GRACE).unwrap();
        assert_eq!(stopped, vec![pid]);
        assert!(!reaper.join().unwrap().success());
        assert!(!profile.pid_file().exists());
    }
}
