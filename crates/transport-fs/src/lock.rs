//! The remote folder's inter-process write lock: an exclusive `flock` on
//! `.sync-remote/lock`, taken on a blocking thread and released when the guard is dropped
//! (closing the file releases it, also when a process dies).
//!
//! Each acquisition opens the lock file anew, so two transports in one process (or one
//! transport used from several tasks) exclude each other exactly like two processes do. This
//! module knows nothing about the store; it must not be held across anything but one write.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs4::{FileExt, TryLockError};

use crate::error::FsTransportError;

/// How long a writer waits for another client's write before giving up (an `Offline` error,
/// retried by the engine).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct WriteLock {
    _file: File,
}

/// Takes the lock at `path`, waiting up to `timeout`. Blocking: call from a blocking thread.
pub(crate) fn acquire(path: &Path, timeout: Duration) -> Result<WriteLock, FsTransportError> {
    let fail = |source| FsTransportError::Lock {
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    // Never through a symlink: one in its place (even a dangling one) would make this create
    // or lock a file outside the remote folder.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path).map_err(fail)?;
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match FileExt::try_lock(&file) {
            Ok(()) => return Ok(WriteLock { _file: file }),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(fail(e)),
        }
        if start.elapsed() >= timeout {
            return Err(FsTransportError::LockTimeout {
                path: path.to_path_buf(),
                seconds: timeout.as_secs(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Takes the lock at `path` from async code, waiting on a blocking thread.
pub(crate) async fn acquire_async(
    path: PathBuf,
    timeout: Duration,
) -> Result<WriteLock, FsTransportError> {
    tokio::task::spawn_blocking(move || acquire(&path, timeout))
        .await
        .map_err(|e| FsTransportError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = acquire(&path, LOCK_TIMEOUT).unwrap();
        match acquire(&path, Duration::from_millis(50)) {
            Err(FsTransportError::LockTimeout { .. }) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
        drop(held);
        acquire(&path, Duration::from_millis(50)).unwrap();
    }
}
