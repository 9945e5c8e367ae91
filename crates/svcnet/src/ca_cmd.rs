//! `svcnet ca`: the local certificate authority of the Ingress controller.
//!
//! Prints the CA certificate (PEM) that signs the certificates of TLS hosts without a
//! usable Secret, creating the CA in the state directory when missing, so that clients
//! can trust it (`curl --cacert`, a browser's authorities).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::ingress_args::StateArgs;

/// Arguments of `svcnet ca`.
#[derive(clap::Args, Debug)]
pub struct CaArgs {
    /// Where the CA lives.
    #[command(flatten)]
    pub state: StateArgs,
}

/// Prints the local CA certificate, creating the CA when missing.
pub fn run(args: CaArgs) -> anyhow::Result<ExitCode> {
    let dir = args.state.dir();
    let ca = svcnet_ingress::LocalCa::load_or_create(&dir)
        .with_context(|| format!("local CA in {}", dir.display()))?;
    let mut out = std::io::stdout().lock();
    out.write_all(ca.cert_pem().as_bytes())
        .context("writing the CA certificate")?;
    out.flush().context("writing the CA certificate")?;
    Ok(ExitCode::SUCCESS)
}
