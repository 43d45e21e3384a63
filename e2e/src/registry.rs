//! An image registry on loopback for pull tests: Debian's `docker-registry`
//! (distribution 2.8) on a free 127.0.0.1 port, optionally behind htpasswd
//! basic auth, filled with skopeo. Nothing here reaches off the machine.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tempfile::TempDir;

use crate::{describe, eventually, free_port};

/// A running registry; dropping it stops it and removes its storage.
pub struct Registry {
    child: Child,
    port: u16,
    auth: Option<(String, String)>,
    dir: TempDir,
}

impl Registry {
    /// Starts a registry; with `auth`, every request needs that user and password.
    pub fn start(auth: Option<(&str, &str)>) -> Result<Registry> {
        let bin = Path::new("/usr/bin/docker-registry");
        if !bin.is_file() {
            bail!(
                "{} not found: install Debian's docker-registry package",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("rkube-e2e-registry-")
            .tempdir()?;
        let port = free_port()?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = auth {
            let hash = bcrypt::hash(password, 5).context("bcrypt")?;
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rkube-e2e\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = File::create(dir.path().join("registry.log"))?;
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut reg = Registry {
            child,
            port,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            dir,
        };
        let up = eventually(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !up || reg.child.try_wait()?.is_some() {
            bail!(
                "the registry did not come up on 127.0.0.1:{port}:\n{}",
                reg.log()
            );
        }
        Ok(reg)
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes the docker archive at `archive` as `<host>/<repo_tag>` and
    /// returns the manifest digest the registry stored.
    pub fn push(&self, archive: &Path, repo_tag: &str) -> Result<String> {
        let digest_file = self.dir.path().join("digest");
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false", "--digestfile"])
            .arg(&digest_file);
        if let Some((u, p)) = &self.auth {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        let out = cmd
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()))
            .output()
            .context("run skopeo (install Debian's skopeo package)")?;
        if !out.status.success() {
            bail!(
                "skopeo copy to {}/{repo_tag}: {}",
                self.host(),
                describe(&out)
            );
        }
        Ok(std::fs::read_to_string(&digest_file)?.trim().to_string())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
