//! Several machines: `burnfit serve` hosts this machine's device for a
//! coordinator, and `ws://HOST:PORT` entries of `--remote` / `--devices`
//! connect to such servers (Burn's remote backend over WebSocket). Both need
//! the `remote` cargo feature; without it they fail with one line saying so.

use std::path::PathBuf;

use burn::tensor::Device;

use crate::config::BackendChoice;
use crate::error::{CliError, CliResult};

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

/// Whether a `--devices` entry names a remote server.
pub fn is_remote(entry: &str) -> bool {
    entry.starts_with("ws://")
}

#[cfg_attr(feature = "remote", allow(dead_code))]
fn without_feature(what: &str) -> CliError {
    CliError::usage(format!(
        "{what}: this burnfit was built without the `remote` feature; build it with \
         `cargo build --release -p burnfit-cli --features remote`"
    ))
}

/// Connects the device of the `burnfit serve` at `url` (`ws://HOST:PORT`).
#[cfg(feature = "remote")]
pub fn connect(url: &str) -> CliResult<Device> {
    if !is_remote(url) {
        return Err(CliError::usage(format!(
            "--remote {url}: give the address of a `burnfit serve` as ws://HOST:PORT"
        )));
    }
    let host = burn::remote::RemoteHost::websocket(url);
    Device::remote_options(&host).init().map_err(|e| {
        CliError::usage(format!(
            "--remote {url}: cannot connect ({e}); is `burnfit serve` running there, and is the \
             address reachable?"
        ))
    })
}

/// Without the `remote` feature: the one-line error.
#[cfg(not(feature = "remote"))]
pub fn connect(url: &str) -> CliResult<Device> {
    Err(without_feature(&format!("--remote {url}")))
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
    RemoteServer::new([backend.device.clone()])
        .serve(WebSocketTransport::from_listener(listener))
        .map_err(|e| CliError::failed(format!("serve: {e}")))
}

/// Without the `remote` feature: the one-line error.
#[cfg(not(feature = "remote"))]
pub fn serve_command(_args: &ServeArgs) -> CliResult<()> {
    Err(without_feature("burnfit serve"))
}
