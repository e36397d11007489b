//! Every log line of a test run in one folder (`RTCHAT_TEST_LOGS`, set by
//! the test command), so that one check over the whole run can show no
//! token or secret ever reached a log: servers running as processes, those
//! running inside a test, and the nginx in front of them.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::{Mutex, Once};

/// The run's log folder, when the test command asked for one.
pub fn dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("RTCHAT_TEST_LOGS")?);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// A new file in the run's log folder, named after `what` and this test
/// process.
pub fn file(what: &str) -> Option<(PathBuf, File)> {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir()?.join(format!("{what}-{}-{n}.log", std::process::id()));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    Some((path, file))
}

/// Servers run inside the test log there too, at the level the processes
/// use. Once per test process; a no-op without the folder.
pub fn capture_in_process() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Some((_, file)) = file("in-process") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("warn,rtchat=debug")
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .try_init();
        }
    });
}
