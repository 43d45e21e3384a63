//! `rkube profile list`: every profile with its settings and state.

use crate::profile::Profile;
use crate::Result;
use rkube_host::Procfs;

/// One row of the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Profile name.
    pub name: String,
    /// API server port, or "-" when the config is missing.
    pub port: String,
    /// Container runtime.
    pub runtime: String,
    /// Datastore.
    pub datastore: String,
    /// "Running (pid N)", "Stopped" or "Invalid".
    pub state: String,
}

/// Describes `profile`.
pub fn row(profile: &Profile, procfs: &Procfs) -> Row {
    let (port, runtime, datastore) = match profile.load_config() {
        Ok(Some(c)) => (
            c.apiserver_port.to_string(),
            c.container_runtime.to_string(),
            c.datastore.to_string(),
        ),
        _ => ("-".into(), "-".into(), "-".into()),
    };
    let state = match procfs.running(&profile.pid_file(), profile.dir()) {
        Ok(Some(pid)) => format!("Running (pid {pid})"),
        Ok(None) if port != "-" => "Stopped".into(),
        _ => "Invalid".into(),
    };
    Row {
        name: profile.name().to_string(),
        port,
        runtime,
        datastore,
        state,
    }
}

/// Formats rows as an aligned table.
pub fn table(rows: &[Row]) -> String {
    let header = ["PROFILE", "PORT", "RUNTIME", "DATASTORE", "STATE"];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| [&*r.name, &*r.port, &*r.runtime, &*r.datastore, &*r.state])
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |c: [&str; 5]| {
        let parts: Vec<String> = c
            .iter()
            .zip(widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{}\n", parts.join("   ").trim_end())
    };
    let mut out = line(header);
    for c in cells {
        out.push_str(&line(c));
    }
    out
}

/// Runs `rkube profile list`.
pub fn run() -> Result<()> {
    let procfs = Procfs::default();
    let rows: Vec<Row> = Profile::list()?.iter().map(|p| row(p, &procfs)).collect();
    if rows.is_empty() {
        println!("🤷  No profiles; create one with `rkube start`");
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_table() {
        let home = tempfile::tempdir().unwrap();
        let p = Profile::in_home(home.path(), "dev").unwrap();
        p.create_dirs().unwrap();
        let procfs = Procfs::default();
        assert_eq!(row(&p, &procfs).state, "Invalid");
        p.save_config(&crate::profile::ProfileConfig::new_default())
            .unwrap();
        let r = row(&p, &procfs);
        assert_eq!((r.port.as_str(), r.state.as_str()), ("8443", "Stopped"));
        let t = table(&[r]);
        assert!(t.starts_with("PROFILE   PORT   RUNTIME"), "{t}");
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .starts_with("dev       8443   cri-o     embedded"),
            "{t}"
        );
    }
}
