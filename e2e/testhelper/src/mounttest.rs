//! `mounttest`: creates files with given modes and prints fs type, mode, perms, owner and content.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use crate::flags::{self, boolean, value};
use crate::sys;
use crate::util::{go_errno, go_quote};

const ABOUT: &str = "Creates files with given permissions and outputs FS type, owner, mode, permissions, contents of files";

const SPECS: &[flags::Spec] = &[
    value("fs_type", "", "Path to print the fs type for"),
    value("file_mode", "", "Path to print the mode bits of"),
    value("file_perm", "", "Path to print the perms of"),
    value("file_owner", "", "Path to print the owning UID and GID of"),
    value(
        "new_file_0644",
        "",
        "Path to write to and read from with perm 0644",
    ),
    value(
        "new_file_0666",
        "",
        "Path to write to and read from with perm 0666",
    ),
    value(
        "new_file_0660",
        "",
        "Path to write to and read from with perm 0660",
    ),
    value(
        "new_file_0777",
        "",
        "Path to write to and read from with perm 0777",
    ),
    value("file_content", "", "Path to read the file content from"),
    value(
        "file_content_in_loop",
        "",
        "Path to read the file content in loop from",
    ),
    value("retry_time", "180", "Retry time during the loop"),
    boolean(
        "break_on_expected_content",
        true,
        "Break out of loop on expected content, (use with --file_content_in_loop flag only)",
    ),
];

/// What `--new_file_*` writes.
const INITIAL_CONTENT: &str = "mount-tester new file\n";

/// tmpfs's statfs magic number.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Go's os.FileMode bits.
pub mod mode {
    pub const DIR: u32 = 1 << 31;
    pub const APPEND: u32 = 1 << 30;
    pub const EXCLUSIVE: u32 = 1 << 29;
    pub const TEMPORARY: u32 = 1 << 28;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
    pub const IRREGULAR: u32 = 1 << 19;
    pub const PERM: u32 = 0o777;
}

/// A Unix `st_mode` as Go's os.FileMode (what os.Stat reports on Linux).
pub fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & mode::PERM;
    m |= match st_mode & 0o170000 {
        0o060000 => mode::DEVICE,
        0o020000 => mode::DEVICE | mode::CHAR_DEVICE,
        0o040000 => mode::DIR,
        0o010000 => mode::NAMED_PIPE,
        0o120000 => mode::SYMLINK,
        0o140000 => mode::SOCKET,
        _ => 0,
    };
    if st_mode & 0o2000 != 0 {
        m |= mode::SETGID;
    }
    if st_mode & 0o4000 != 0 {
        m |= mode::SETUID;
    }
    if st_mode & 0o1000 != 0 {
        m |= mode::STICKY;
    }
    m
}

/// Go's FileMode.String(): type/attribute letters (or `-`) then `rwxrwxrwx`.
pub fn go_mode_string(m: u32) -> String {
    const LETTERS: [(u32, char); 13] = [
        (mode::DIR, 'd'),
        (mode::APPEND, 'a'),
        (mode::EXCLUSIVE, 'l'),
        (mode::TEMPORARY, 'T'),
        (mode::SYMLINK, 'L'),
        (mode::DEVICE, 'D'),
        (mode::NAMED_PIPE, 'p'),
        (mode::SOCKET, 'S'),
        (mode::SETUID, 'u'),
        (mode::SETGID, 'g'),
        (mode::CHAR_DEVICE, 'c'),
        (mode::STICKY, 't'),
        (mode::IRREGULAR, '?'),
    ];
    let mut s: String = LETTERS
        .iter()
        .filter(|(bit, _)| m & bit != 0)
        .map(|(_, c)| *c)
        .collect();
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if m & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

/// Runs the subcommand.
pub fn run(argv: &[String]) -> i32 {
    let p = flags::parse_or_exit("mounttest", ABOUT, SPECS, argv);
    let retry = flags::int_or_exit(&p, "retry_time");
    let break_on_expected = flags::bool_or_exit(&p, "break_on_expected_content");

    // Clear the umask so new files get exactly the requested modes.
    sys::set_umask(0);

    // Upstream's order matters: fs type, new files, mode, perm, owner, content.
    let results = [
        fs_type(p.str("fs_type")),
        new_file(p.str("new_file_0644"), 0o644),
        new_file(p.str("new_file_0666"), 0o666),
        new_file(p.str("new_file_0660"), 0o660),
        new_file(p.str("new_file_0777"), 0o777),
        file_mode(p.str("file_mode")),
        file_perm(p.str("file_perm")),
        file_owner(p.str("file_owner")),
        file_content(p.str("file_content")),
        content_in_loop(p.str("file_content_in_loop"), retry, break_on_expected),
    ];
    if results.iter().any(|ok| !ok) {
        1
    } else {
        0
    }
}

fn fs_type(path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    match sys::fs_magic(path) {
        Ok(magic) => {
            let name = if magic == TMPFS_MAGIC {
                "tmpfs".to_string()
            } else {
                magic.to_string()
            };
            println!("mount type of {}: {name}", go_quote(path));
            true
        }
        Err(e) => {
            println!("error from statfs({}): {}", go_quote(path), go_errno(&e));
            false
        }
    }
}

fn file_content(path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    match std::fs::read(path) {
        Ok(bytes) => {
            println!(
                "content of file {}: {}",
                go_quote(path),
                String::from_utf8_lossy(&bytes)
            );
            true
        }
        Err(e) => {
            println!(
                "error reading file content for {}: open {path}: {}",
                go_quote(path),
                go_errno(&e)
            );
            false
        }
    }
}

fn new_file(path: &str, perm: u32) -> bool {
    if path.is_empty() {
        return true;
    }
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(perm)
        .open(path)
        .map_err(|e| format!("open {path}: {}", go_errno(&e)))
        .and_then(|mut f| {
            f.write_all(INITIAL_CONTENT.as_bytes())
                .map_err(|e| format!("write {path}: {}", go_errno(&e)))
        });
    if let Err(e) = written {
        println!("error writing new file {}: {e}", go_quote(path));
        return false;
    }
    file_content(path)
}

fn stat_mode(path: &str) -> Result<u32, String> {
    std::fs::metadata(path)
        .map(|m| go_mode(m.mode()))
        .map_err(|e| {
            println!(
                "error from Stat({}): stat {path}: {}",
                go_quote(path),
                go_errno(&e)
            );
            String::new()
        })
}

fn file_mode(path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    match stat_mode(path) {
        Ok(m) => {
            println!("mode of file {}: {}", go_quote(path), go_mode_string(m));
            true
        }
        Err(_) => false,
    }
}

fn file_perm(path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    match stat_mode(path) {
        Ok(m) => {
            println!(
                "perms of file {}: {}",
                go_quote(path),
                go_mode_string(m & mode::PERM)
            );
            true
        }
        Err(_) => false,
    }
}

fn file_owner(path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    match std::fs::metadata(path) {
        Ok(m) => {
            println!("owner UID of {}: {}", go_quote(path), m.uid());
            println!("owner GID of {}: {}", go_quote(path), m.gid());
            true
        }
        Err(e) => {
            println!("error from stat({}): {}", go_quote(path), go_errno(&e));
            false
        }
    }
}

/// Reads `path` every 2 seconds for `retry` seconds, stopping early once it
/// holds the new-file content (when `break_on_expected`).
fn content_in_loop(path: &str, retry: i64, break_on_expected: bool) -> bool {
    if path.is_empty() {
        return true;
    }
    let limit = Duration::from_secs(retry.max(0) as u64);
    let start = Instant::now();
    let mut ok = true;
    let mut first = true;
    while start.elapsed() < limit {
        if !first {
            std::thread::sleep(Duration::from_secs(2));
            if start.elapsed() >= limit {
                break;
            }
        }
        first = false;
        match std::fs::read(path) {
            Err(e) => {
                println!(
                    "Error reading file {path}: open {path}: {}, retrying",
                    go_errno(&e)
                );
                ok = false;
            }
            Ok(bytes) => {
                ok = true;
                let content = String::from_utf8_lossy(&bytes);
                println!("content of file {}: {content}", go_quote(path));
                if break_on_expected {
                    if content != INITIAL_CONTENT {
                        print!("Unexpected content. Expected: {INITIAL_CONTENT}. Retrying");
                        let _ = std::io::stdout().flush();
                        continue;
                    }
                    break;
                }
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes_format_like_go() {
        assert_eq!(go_mode_string(go_mode(0o100644)), "-rw-r--r--");
        assert_eq!(go_mode_string(go_mode(0o100777)), "-rwxrwxrwx");
        assert_eq!(go_mode_string(go_mode(0o040755)), "drwxr-xr-x");
        // An fsGroup emptyDir: setgid directory, as the e2e tests expect.
        assert_eq!(go_mode_string(go_mode(0o042777)), "dgrwxrwxrwx");
        assert_eq!(go_mode_string(go_mode(0o043777)), "dgtrwxrwxrwx");
        assert_eq!(go_mode_string(go_mode(0o041777)), "dtrwxrwxrwx");
        assert_eq!(go_mode_string(go_mode(0o104755)), "urwxr-xr-x");
        assert_eq!(go_mode_string(go_mode(0o120777)), "Lrwxrwxrwx");
        assert_eq!(go_mode_string(go_mode(0o020666)), "Dcrw-rw-rw-");
        assert_eq!(go_mode_string(go_mode(0o060660)), "Drw-rw----");
        assert_eq!(go_mode_string(go_mode(0o010600)), "prw-------");
        assert_eq!(go_mode_string(go_mode(0o140755)), "Srwxr-xr-x");
        assert_eq!(go_mode_string(0), "----------");
    }

    #[test]
    fn perms_drop_type_bits() {
        let m = go_mode(0o042777);
        assert_eq!(go_mode_string(m & mode::PERM), "-rwxrwxrwx");
    }
}
