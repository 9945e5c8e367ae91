//! Structured logs (tracing) to stderr: text for people, JSON for machines.

use anyhow::{Result, bail};
use tracing_subscriber::EnvFilter;

/// Installs the subscriber. `SVCNET_LOG` (or `RUST_LOG`) sets the filter; default `info`.
pub fn init(format: &str) -> Result<()> {
    let filter = std::env::var("SVCNET_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let result = match format {
        "text" => builder.try_init(),
        "json" => builder.json().try_init(),
        other => bail!("--log-format must be text or json, not {other:?}"),
    };
    // A second init (tests) is harmless.
    let _ = result;
    Ok(())
}
