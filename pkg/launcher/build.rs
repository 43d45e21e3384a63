//! Embeds every `manifests/*.yaml` of the workspace: writes
//! `$OUT_DIR/manifests.rs` with one `(file name, include_str!)` pair per file,
//! sorted by name, so files added later are picked up on the next build.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dir = manifest_dir.join("../../manifests");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml") && p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    let mut out =
        String::from("/// Embedded bootstrap manifests: (file name, contents), sorted by name.\n");
    out.push_str("pub static EMBEDDED: &[(&str, &str)] = &[\n");
    for path in &files {
        let path = path.canonicalize().expect("canonical manifest path");
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let out_path = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("manifests.rs");
    fs::write(out_path, out).expect("write manifests.rs");
}
