//! `rkube logs`: print the daemon's `rkube.log`, optionally only its last
//! lines, optionally following it as it grows.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use crate::profile::Profile;
use crate::{Error, Result};

/// The last `n` lines of `text` (all of it if it has fewer).
pub fn tail_lines(text: &str, n: usize) -> &str {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut start = body.len();
    for _ in 0..n {
        match body[..start].rfind('\n') {
            Some(i) => start = i,
            None => return text,
        }
    }
    &text[start + 1..]
}

/// Runs `rkube logs`.
pub async fn run(profile_name: &str, tail: Option<usize>, follow: bool) -> Result<()> {
    let profile = Profile::new(profile_name)?;
    let path = profile.log_file();
    if !profile.exists() {
        return Err(Error::NoSuchProfile(profile_name.to_string()));
    }
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => {
            println!(
                "no logs yet for profile \"{}\"; start it with `rkube start --profile {}`",
                profile.name(),
                profile.name()
            );
            return Ok(());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            wait_for(&path).await;
            std::fs::File::open(&path).map_err(Error::io("open", &path))?
        }
        Err(e) => return Err(Error::io("open", &path)(e)),
    };
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(Error::io("read", &path))?;
    let shown = match tail {
        Some(n) => tail_lines(&text, n),
        None => &text,
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(shown.as_bytes());
    let _ = out.flush();
    drop(out);
    if follow {
        follow_file(file, &path).await?;
    }
    Ok(())
}

async fn wait_for(path: &std::path::Path) {
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints what is appended to `file`; starts over if it is truncated.
async fn follow_file(mut file: std::fs::File, path: &std::path::Path) -> Result<()> {
    let mut pos = file.stream_position().map_err(Error::io("read", path))?;
    let mut buf = Vec::new();
    loop {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0;
            file.seek(SeekFrom::Start(0))
                .map_err(Error::io("read", path))?;
        }
        buf.clear();
        file.read_to_end(&mut buf)
            .map_err(Error::io("read", path))?;
        if !buf.is_empty() {
            pos += buf.len() as u64;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&buf);
            let _ = out.flush();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail_lines("a\nb\nc", 1), "c");
        assert_eq!(tail_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(tail_lines("", 3), "");
        assert_eq!(tail_lines("a\nb\n", 0), "");
    }
}
