//! Several machines, the coordinator's side: `ws://HOST:PORT` entries of
//! `--remote` / `--devices` connect to `burnfit serve` processes (Burn's
//! remote backend over WebSocket; the server is `serve.rs`). Both need the
//! `remote` cargo feature; without it they fail with one line saying so.

use burn::tensor::Device;

use crate::error::{CliError, CliResult};

/// Whether a `--devices` entry names a remote server.
pub fn is_remote(entry: &str) -> bool {
    entry.starts_with("ws://")
}

#[cfg_attr(feature = "remote", allow(dead_code))]
pub fn without_feature(what: &str) -> CliError {
    CliError::usage(format!(
        "{what}: this {} was built without the `remote` feature; build it with that \
         feature (burnfit: `cargo build -p burnfit-cli -p burnfit-workspace-hack --features \
         burnfit-cli/remote`, the build `make test` makes)",
        crate::program()
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
