//! CPU time of a process, every thread included, from `/proc/PID/task/*/schedstat` (its
//! first field is nanoseconds on a CPU). Coarser sources (`/proc/PID/stat`, in clock ticks)
//! would round a 0.3 s bulk run away.

use std::path::Path;

use anyhow::{Context, Result};

/// Nanoseconds of CPU used so far by the threads `pid` has now (`None`: this process).
/// Threads that already exited are not counted; the peers keep theirs for their lifetime.
pub fn cpu_ns(pid: Option<u32>) -> Result<u64> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}/task"),
        None => "/proc/self/task".to_string(),
    };
    let mut total = 0u64;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = entry?.path().join("schedstat");
        match thread_ns(&path) {
            Ok(ns) => total += ns,
            // The thread exited between listing and reading: it has nothing more to add.
            Err(e) if thread_is_gone(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Linux `ESRCH`: reading the schedstat of a thread that exited after its directory was
/// opened fails with "No such process", not with `NotFound`.
const ESRCH: i32 = 3;

/// Whether reading a thread's schedstat failed because the thread is gone: its directory
/// vanished (`NotFound`) or it exited while being read (`ESRCH`).
fn thread_is_gone(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|e| {
        e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(ESRCH)
    })
}

fn thread_ns(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path)?;
    let first = text
        .split_whitespace()
        .next()
        .with_context(|| format!("{} is empty", path.display()))?;
    first
        .parse()
        .with_context(|| format!("{}: {first:?} is not a number", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_is_gone_is_not_an_error() {
        let gone = |e: std::io::Error| thread_is_gone(&anyhow::Error::from(e));
        assert!(gone(std::io::Error::from_raw_os_error(ESRCH)));
        assert!(gone(std::io::ErrorKind::NotFound.into()));
        assert!(!gone(std::io::ErrorKind::PermissionDenied.into()));
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let a = cpu_ns(None).unwrap();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_ns(None).unwrap() > a);
    }
}
