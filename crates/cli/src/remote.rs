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
    reachable(url)?;
    let host = burn::remote::RemoteHost::websocket(url);
    // Burn's handshake waits for an answer with no limit of its own: a
    // listener that never answers would hang here, deaf to Ctrl-C.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(
            Device::remote_options(&host)
                .init()
                .map_err(|e| e.to_string()),
        );
    });
    match receiver.recv_timeout(HANDSHAKE_TIMEOUT) {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(CliError::usage(format!(
            "--remote {url}: cannot connect ({e}); is `burnfit serve` running there, and is the \
             address reachable?"
        ))),
        Err(_) => Err(CliError::usage(format!(
            "--remote {url}: something listens there but did not answer as a `burnfit serve` \
             within {} s; check the address and that the server is not stopped",
            HANDSHAKE_TIMEOUT.as_secs()
        ))),
    }
}

/// How long a server gets to answer the first handshake.
#[cfg(feature = "remote")]
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Checks `url` (`ws://HOST:PORT`) names a port and that something accepts
/// connections there, in seconds rather than Burn's retries.
#[cfg(feature = "remote")]
fn reachable(url: &str) -> CliResult<()> {
    use std::net::ToSocketAddrs;
    let bad = |why: String| CliError::usage(format!("--remote {url}: {why}"));
    let authority = url["ws://".len()..].split('/').next().unwrap_or_default();
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(bad(
            "no port: give ws://HOST:PORT, the address `burnfit serve` printed".into(),
        ));
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| bad(format!("`{port}` is not a port (1 to 65535)")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve `{host}` ({e})")))?
        .collect();
    let timeout = std::time::Duration::from_secs(5);
    let mut last = None;
    for address in &addresses {
        match std::net::TcpStream::connect_timeout(address, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(bad(format!(
        "cannot connect ({}); is `burnfit serve` running there, and is the address reachable?",
        last.map_or_else(|| "no address".to_string(), |e| e.to_string())
    )))
}

/// Without the `remote` feature: the one-line error.
#[cfg(not(feature = "remote"))]
pub fn connect(url: &str) -> CliResult<Device> {
    Err(without_feature(&format!("--remote {url}")))
}
