//! Writes rkube's pause image and a busybox test image into a directory, for
//! checking them by hand with `ctr images import`, `skopeo` or `docker load`:
//! `cargo run -p rkube-image --example write_images -- DIR [BUSYBOX]`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: write_images DIR [BUSYBOX]")?);
    let busybox = args
        .next()
        .map_or_else(|| PathBuf::from("/usr/bin/busybox"), PathBuf::from);
    let pause = rkube_image::write_pause_archive(&dir.join("pause.tar"))?;
    println!("{pause:?}");
    let bb = rkube_image::write_busybox_archive(
        &dir.join("busybox.tar"),
        "rkube.local/busybox:test",
        &busybox,
    )?;
    println!("{bb:?}");
    Ok(())
}
