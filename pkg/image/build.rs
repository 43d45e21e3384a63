//! Builds rkube's pause program (pause/pause.c) as a static executable in
//! OUT_DIR; the library embeds it with `include_bytes!`.

use std::{env, path::PathBuf};

fn main() {
    let src = PathBuf::from("pause/pause.c");
    println!("cargo:rerun-if-changed={}", src.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo")).join("pause");

    // cc resolves the C compiler for the target; we link an executable
    // ourselves because cc only builds static libraries.
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .cargo_warnings(false)
        .opt_level_str("s")
        .debug(false)
        .pic(false)
        .get_compiler();
    let mut cmd = compiler.to_command();
    cmd.args(["-std=gnu99", "-Wall", "-static", "-Os", "-s", "-o"])
        .arg(&out)
        .arg(&src);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {:?}: {e}", compiler.path()));
    if !output.status.success() {
        panic!(
            "building the static pause binary failed ({}).\n\
             rkube's pause image needs a static C library: install glibc's static \
             libraries (Debian: `apt-get install libc6-dev`).\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let bytes = std::fs::read(&out).expect("read the pause binary");
    if has_interp(&bytes) {
        panic!(
            "the pause binary was linked dynamically; `-static` is not honoured by {:?}",
            compiler.path()
        );
    }
}

/// Whether a 64-bit ELF has a PT_INTERP program header (a dynamic executable).
fn has_interp(b: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a) as usize
    };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false; // not a little-endian ELF64; nothing to check
    }
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= b.len() && u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) == 3
    })
}
