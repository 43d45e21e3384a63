//! One module per verb; each parses its flags and calls the launcher.

pub mod bench;
pub mod daemon;
pub mod delete;
pub mod docker_env;
pub mod image;
pub mod logs;
pub mod profile;
pub mod start;
pub mod status;
pub mod stop;
pub mod version;

/// `--profile`, shared by most verbs.
#[derive(Debug, clap::Args)]
pub struct ProfileArg {
    /// Profile (cluster) name
    #[arg(short, long, env = "RKUBE_PROFILE", default_value = rkube_launcher::DEFAULT_PROFILE)]
    pub profile: String,
}
