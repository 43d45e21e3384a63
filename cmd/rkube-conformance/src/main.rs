//! `rkube-conformance`: runs rkube's conformance-lite suite against any
//! cluster, writes the test images, lists the tests, and renders the
//! per-runtime table. All logic is in the `rkube-conformance` crate.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use regex::Regex;
use rkube_conformance::{ctx::Env, images, inventory, report, runner};

#[derive(Parser)]
#[command(
    name = "rkube-conformance",
    about = "Conformance-lite tests for any Kubernetes cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the suite against the cluster of a kubeconfig
    Run(RunArgs),
    /// Write the test images as archives (load them into the cluster, or push them to --image-registry)
    Images {
        /// Directory for the archives
        #[arg(long)]
        out: PathBuf,
        /// Name the images under this registry/prefix
        #[arg(long, default_value = images::DEFAULT_PREFIX)]
        image_registry: String,
        /// The rkube-testhelper binary [default: next to this program]
        #[arg(long)]
        testhelper: Option<PathBuf>,
        /// A static busybox
        #[arg(long, default_value = "/usr/bin/busybox")]
        busybox: PathBuf,
    },
    /// List the upstream tests and whether the suite implements each
    List {
        /// Only tests matching this regex
        #[arg(long)]
        focus: Option<Regex>,
    },
    /// Render results of several runs (LABEL=results.json) as one Markdown table
    Table {
        /// LABEL=FILE, one per runtime, in column order
        #[arg(long = "results", required = true)]
        results: Vec<String>,
        /// Output file
        #[arg(long)]
        out: PathBuf,
        /// Text put above the tables
        #[arg(long, default_value = "# Conformance-lite results")]
        header: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// kubeconfig file [default: $KUBECONFIG or ~/.kube/config]
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// kubeconfig context [default: the current one]
    #[arg(long)]
    context: Option<String>,
    /// Only tests whose testname or codename matches this regex
    #[arg(long)]
    focus: Option<Regex>,
    /// Leave out tests whose testname or codename matches this regex
    #[arg(long)]
    skip: Option<Regex>,
    /// Tests run at once (each in its own namespace)
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Time limit per test, seconds
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// How long a pod may take to start or finish, seconds
    #[arg(long, default_value_t = 120)]
    pod_start: u64,
    /// Also run [Serial] and [Disruptive] tests, one at a time, at the end
    #[arg(long)]
    include_serial: bool,
    /// Runs a failing test gets in all; a later pass is reported as flaky
    #[arg(long, default_value_t = 1)]
    flake_attempts: usize,
    /// Registry/prefix the test images were loaded or pushed under
    #[arg(long, default_value = images::DEFAULT_PREFIX)]
    image_registry: String,
    /// Write JUnit XML here
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write the results as JSON here (input of `table`)
    #[arg(long)]
    json: Option<PathBuf>,
    /// Fail if a test listed in this file does not pass; print passing tests it does not list
    #[arg(long)]
    passing: Option<PathBuf>,
}

async fn client(a: &RunArgs) -> anyhow::Result<kube::Client> {
    let opts = kube::config::KubeConfigOptions {
        context: a.context.clone(),
        ..Default::default()
    };
    let config = match &a.kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .with_context(|| format!("read kubeconfig {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &opts).await?
        }
        None => kube::Config::from_kubeconfig(&opts).await?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let client = client(&a).await?;
    let env = Env {
        images: images::Images::with_prefix(&a.image_registry),
        kubeconfig: a.kubeconfig.clone(),
        context: a.context.clone(),
        pod_start: Duration::from_secs(a.pod_start),
    };
    let opts = runner::Options {
        focus: a.focus.clone(),
        skip: a.skip.clone(),
        parallel: a.parallel,
        timeout: Duration::from_secs(a.timeout),
        include_serial: a.include_serial,
        progress: true,
        flake_attempts: a.flake_attempts,
    };
    let started = std::time::Instant::now();
    let results = runner::run(client, env, &opts).await;
    println!("{}", report::summary(&results));
    println!(
        "wall time {:.1}s with --parallel {}",
        started.elapsed().as_secs_f64(),
        a.parallel
    );
    if let Some(p) = &a.junit {
        std::fs::write(p, report::junit(&results))?;
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json_string(&results)?)?;
    }
    let mut ok = true;
    if let Some(p) = &a.passing {
        let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        let (regressed, new) = report::check_list(&results, &report::parse_list(&text));
        if !new.is_empty() {
            println!(
                "passing but not in {} (add once they pass three runs in a row):",
                p.display()
            );
            for n in &new {
                println!("  {n}");
            }
        }
        if !regressed.is_empty() {
            println!("listed in {} but did not pass:", p.display());
            for r in &regressed {
                println!("  {r}");
            }
            ok = false;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn serde_json_string(r: &[runner::Outcome]) -> anyhow::Result<String> {
    Ok(report::to_json(r)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Cmd::Run(a) => run(a).await,
        Cmd::Images {
            out,
            image_registry,
            testhelper,
            busybox,
        } => {
            let helper = images::find_helper(testhelper.as_deref())?;
            let imgs = images::Images::with_prefix(&image_registry);
            for p in images::write_archives(&imgs, &out, &busybox, &helper)? {
                println!("{}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::List { focus } => {
            let implemented: std::collections::HashSet<&str> = rkube_conformance::suites::all()
                .iter()
                .map(|t| t.name)
                .collect();
            for e in inventory::all()
                .iter()
                .filter(|e| focus.as_ref().is_none_or(|re| re.is_match(&e.codename)))
            {
                let mark = if implemented.contains(e.codename.as_str())
                    || implemented.contains(e.testname.as_str())
                {
                    "yes"
                } else {
                    "no "
                };
                let lite = if e.lite() { "lite" } else { "    " };
                println!("{mark} {lite} {:<8} {}", e.bucket, e.codename);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Table {
            results,
            out,
            header,
        } => {
            let mut runs = Vec::new();
            for r in results {
                let (label, file) = r.split_once('=').context("--results takes LABEL=FILE")?;
                let text = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
                runs.push((label.to_string(), report::from_json(&text)?));
            }
            std::fs::write(&out, report::markdown(&runs, &header))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
