//! `rkube image load|ls|rm`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Subcommands of `rkube image`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import docker-archive or OCI archives, or OCI layout directories
    Load {
        #[command(flatten)]
        profile: super::ProfileArg,
        /// Image archives (`docker save`, OCI archive) or OCI layout directories
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
    },
    /// List the images in the cluster's container runtime
    #[command(visible_alias = "list")]
    Ls {
        #[command(flatten)]
        profile: super::ProfileArg,
        /// Print only image names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove images (with every name they have) from the container runtime
    #[command(visible_alias = "remove")]
    Rm {
        #[command(flatten)]
        profile: super::ProfileArg,
        /// Image names or ids
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
}

pub async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    use rkube_launcher::image;
    match cmd {
        Command::Load { profile, paths } => image::load(&profile.profile, &paths).await?,
        Command::Ls { profile, quiet } => image::list(&profile.profile, quiet).await?,
        Command::Rm { profile, images } => image::remove(&profile.profile, &images).await?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Command,
    }

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("image").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn load_takes_paths_and_a_profile() {
        match parse(&["load", "--profile", "dev", "a.tar", "oci-dir"]).unwrap() {
            Command::Load { profile, paths } => {
                assert_eq!(profile.profile, "dev");
                assert_eq!(
                    paths,
                    vec![PathBuf::from("a.tar"), PathBuf::from("oci-dir")]
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&["load", "a.tar", "-p", "x"]).unwrap() {
            Command::Load { profile, .. } => assert_eq!(profile.profile, "x"),
            other => panic!("{other:?}"),
        }
        let err = parse(&["load"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn ls_and_rm() {
        match parse(&["list", "-q"]).unwrap() {
            Command::Ls { quiet, profile } => {
                assert!(quiet);
                assert!(!profile.profile.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match parse(&["rm", "busybox", "sha256:abc"]).unwrap() {
            Command::Rm { images, .. } => assert_eq!(images, ["busybox", "sha256:abc"]),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["rm"]).is_err());
        assert!(parse(&["push", "x"]).is_err());
    }
}
