//! `burnfit serve`: hosts this machine's device for a coordinator's
//! `train --remote` (Burn's remote backend over WebSocket; the `remote`
//! cargo feature).

use std::path::PathBuf;

use crate::config::BackendChoice;
#[cfg(feature = "remote")]
use crate::error::CliError;
use crate::error::CliResult;
#[cfg(not(feature = "remote"))]
use crate::remote::without_feature;

/// `burnfit serve` options.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The address to listen on. Loopback unless told otherwise: the
    /// transport is unencrypted, so only bind an address of a trusted network.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: String,
    /// The backend whose device is served.
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Also write the address served to this file (for scripts).
    #[arg(long, value_name = "FILE")]
    pub address_file: Option<PathBuf>,
}

/// `burnfit serve`: hosts the chosen backend's device until Ctrl-C.
#[cfg(feature = "remote")]
pub fn serve_command(args: &ServeArgs) -> CliResult<()> {
    use std::io::Write;

    use burn::server::{RemoteServer, WebSocketTransport};

    let choice = args.backend.unwrap_or(BackendChoice::Auto);
    let backend = crate::backend::choose(choice, true)?;
    let listener = std::net::TcpListener::bind(&args.bind).map_err(|e| {
        CliError::usage(format!(
            "--bind {}: cannot listen there ({e}); give HOST:PORT with a free port, or port 0 \
             for any",
            args.bind
        ))
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| CliError::failed(format!("serve: {e}")))?;
    let url = format!("ws://{address}");
    if let Some(file) = &args.address_file {
        burnfit_callbacks::atomic::write_atomic(file, format!("{url}\n").as_bytes())?;
    }
    println!(
        "burnfit: serving {} ({}) on {url}; unencrypted: use it on a trusted network only; \
         Ctrl-C stops",
        backend.name, backend.reason
    );
    let _ = std::io::stdout().flush();
    RemoteServer::new([backend.started()])
        .serve(WebSocketTransport::from_listener(listener))
        .map_err(|e| CliError::failed(format!("serve: {e}")))
}

/// Without the `remote` feature: the one-line error.
#[cfg(not(feature = "remote"))]
pub fn serve_command(_args: &ServeArgs) -> CliResult<()> {
    Err(without_feature("burnfit serve"))
}
