//! The few libc calls std lacks (signal, umask, statfs) and a signal dispatcher thread.
//!
//! This is the only module with `unsafe`: each call passes plain integers or a
//! NUL-terminated path and a buffer larger than the kernel's `struct statfs`.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CString};
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// SIGINT on Linux.
pub const SIGINT: i32 = 2;
/// SIGTERM on Linux.
pub const SIGTERM: i32 = 15;

extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    fn umask(mask: u32) -> u32;
    fn statfs(path: *const c_char, buf: *mut u64) -> c_int;
}

/// The last signal caught and not yet dispatched (0 = none).
static PENDING: AtomicI32 = AtomicI32::new(0);

type Handler = Arc<dyn Fn(i32) + Send + Sync>;

static HANDLER: Mutex<Option<Handler>> = Mutex::new(None);

/// Async-signal-safe: only an atomic store.
extern "C" fn record(sig: c_int) {
    PENDING.store(sig, Ordering::SeqCst);
}

/// Catches SIGTERM and SIGINT and starts the thread that acts on them.
///
/// Until a subcommand installs its own handler with [`on_signal`], a signal
/// makes the process exit 2: what a Go program does when it runs as PID 1 in
/// a container and receives a signal it did not ask to be notified about.
pub fn init_signals() {
    for sig in [SIGINT, SIGTERM] {
        // SAFETY: `record` is an `extern "C" fn(c_int)` that only stores to an
        // atomic, which is async-signal-safe; the previous handler is dropped.
        unsafe {
            signal(sig, record);
        }
    }
    std::thread::spawn(|| loop {
        std::thread::sleep(Duration::from_millis(50));
        let sig = PENDING.swap(0, Ordering::SeqCst);
        if sig == 0 {
            continue;
        }
        let handler = HANDLER.lock().ok().and_then(|h| h.clone());
        match handler {
            // On its own thread, so a handler that sleeps (delayed shutdown)
            // does not keep later signals from being acted on.
            Some(h) => {
                std::thread::spawn(move || h(sig));
            }
            None => std::process::exit(2),
        }
    });
}

/// Runs `f(signal)` on the dispatcher thread when SIGTERM or SIGINT arrives.
pub fn on_signal(f: impl Fn(i32) + Send + Sync + 'static) {
    if let Ok(mut h) = HANDLER.lock() {
        *h = Some(Arc::new(f));
    }
}

/// Go's name for a signal (`terminated`, `interrupt`).
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "interrupt",
        SIGTERM => "terminated",
        _ => "signal",
    }
}

/// Sets the process umask, returning the previous one.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask takes and returns a plain integer and cannot fail.
    unsafe { umask(mask) }
}

/// The filesystem magic number (`f_type`) of the filesystem holding `path`.
pub fn fs_magic(path: &str) -> io::Result<i64> {
    let c = CString::new(path)?;
    // struct statfs is 120 bytes on 64-bit Linux (f_type first); 512 is ample.
    let mut buf = [0u64; 64];
    // SAFETY: `c` is NUL-terminated and outlives the call; `buf` is writable,
    // 8-byte aligned and larger than struct statfs on every Linux target.
    let rc = unsafe { statfs(c.as_ptr(), buf.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[cfg(target_pointer_width = "64")]
    let magic = buf[0] as i64;
    #[cfg(not(target_pointer_width = "64"))]
    let magic = i64::from(buf[0] as u32);
    Ok(magic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statfs_reports_proc_magic() {
        // PROC_SUPER_MAGIC
        assert_eq!(fs_magic("/proc").unwrap(), 0x9fa0);
        assert!(fs_magic("/definitely/not/here").is_err());
    }

    #[test]
    fn umask_round_trips() {
        let old = set_umask(0o022);
        assert_eq!(set_umask(old), 0o022);
    }
}
