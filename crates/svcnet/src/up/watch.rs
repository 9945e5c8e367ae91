//! Watches manifest files and folders; any change sends one event to the controller,
//! which coalesces bursts and reloads.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use super::Event;

/// Starts watching; the watcher stops when the returned value is dropped.
pub(crate) fn watch(
    paths: &[PathBuf],
    events: UnboundedSender<Event>,
) -> Result<notify::RecommendedWatcher> {
    let files: Vec<PathBuf> = paths
        .iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let dirs: Vec<PathBuf> = paths
        .iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let relevant = move |path: &Path| {
        dirs.iter().any(|d| path.starts_with(d)) || files.iter().any(|f| f == path)
    };
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) => {
                if ev.kind.is_access() {
                    return;
                }
                if ev.paths.iter().any(|p| relevant(p)) {
                    let _ = events.send(Event::FilesChanged);
                }
            }
            Err(e) => warn!(error = %e, "file watch error"),
        })
        .context("starting the file watcher")?;
    for p in paths {
        if p.as_os_str() == "-" {
            continue;
        }
        if p.is_dir() {
            watcher
                .watch(p, RecursiveMode::Recursive)
                .with_context(|| format!("watching {}", p.display()))?;
        } else {
            // Editors replace files by renaming over them, which ends a watch on the file
            // itself: watch its folder and filter.
            let parent = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            watcher
                .watch(parent, RecursiveMode::NonRecursive)
                .with_context(|| format!("watching {}", parent.display()))?;
        }
    }
    Ok(watcher)
}
