//! [`RemoteMonitor`]: Keras's callback that posts each epoch's logs to a
//! server (feature `trackers`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::python::float_repr;
use super::tracker::{self, Body, FailureSink, Http, Sender};
use crate::callback::Callback;
use crate::context::Context;
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

const NAME: &str = "RemoteMonitor";

/// How long one POST may take before it is given up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the end of training waits for the posts still queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Posts `{"epoch": epoch, <every log>}` to `root + path` at each epoch end,
/// as `keras.callbacks.RemoteMonitor` does.
///
/// * **Form** (the default): the body is the form
///   `field=<the JSON text>` (`application/x-www-form-urlencoded`), the JSON
///   written as Python's `json.dumps` writes it (`{"epoch": 0, "loss":
///   0.25}`: `", "` and `": "` separators, floats as Python's `repr`, `NaN`
///   and `Infinity` for the non-finite ones), encoded as `requests` encodes
///   forms (`urllib.parse.urlencode`: space as `+`, other bytes `%XX`).
/// * **JSON** (`send_as_json`): the same JSON text is the body
///   (`application/json`). As with `requests`, logs holding a NaN or an
///   infinity cannot be sent as JSON: that epoch's post fails with the
///   warning.
/// * `headers` are sent with every post; a `Content-Type` among them
///   replaces the one above, as in `requests`.
/// * Keys keep the order of the logs, after `epoch` (0-based).
///
/// **Never in training's way.** Posts are made in order from a background
/// thread, with a 5 s timeout; a full queue drops posts. A root that cannot
/// be reached gives one warning, Keras's `Could not reach RemoteMonitor
/// root server at <root>`, and training goes on; as in Keras, a reply with
/// an error status is not a failure. At the end of training the posts still
/// queued get 10 s to go out.
///
/// ```
/// use burnfit_core::builtins::{CallbackConfig, RemoteMonitor, RemoteMonitorConfig};
///
/// let monitor = RemoteMonitor::new(RemoteMonitorConfig {
///     root: "http://127.0.0.1:9000".into(),
///     send_as_json: true,
///     ..Default::default()
/// })
/// .unwrap();
/// # let _ = monitor;
/// let config: CallbackConfig =
///     serde_json::from_str(r#"{"type": "RemoteMonitor", "field": "payload"}"#).unwrap();
/// assert_eq!(config.type_name(), "RemoteMonitor");
/// ```
pub struct RemoteMonitor {
    config: RemoteMonitorConfig,
    url: String,
    sender: Option<Sender<Vec<u8>>>,
}

impl RemoteMonitor {
    /// A monitor with `config`'s parameters; fails on an address that is not
    /// `http://` (or `https://` with the `trackers-https` feature).
    pub fn new(config: RemoteMonitorConfig) -> Result<Self> {
        let url = format!("{}{}", config.root, config.path);
        tracker::check_url(&url).map_err(|message| CallbackError::InvalidParameter {
            callback: NAME,
            param: "root",
            message,
        })?;
        Ok(Self {
            config,
            url,
            sender: None,
        })
    }

    /// The address posts go to (`root + path`).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn start(&mut self) -> Result<()> {
        let headers: Vec<(String, String)> = self
            .config
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let http = Http::new(REQUEST_TIMEOUT, headers);
        let url = self.url.clone();
        let content_type = if self.config.send_as_json {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        let warning = format!(
            "Could not reach RemoteMonitor root server at {}",
            self.config.root
        );
        let sender = Sender::spawn(
            "burnfit-remote-monitor",
            move |body: Vec<u8>, sink: &FailureSink| {
                if let Err(e) = http.request("POST", &url, Body::Bytes(content_type, body)) {
                    log::debug!("{NAME}: {url}: {e}");
                    sink.fail(warning.clone());
                }
            },
        )
        .map_err(|e| CallbackError::Runtime {
            callback: NAME,
            message: format!("cannot start its sender thread: {e}"),
        })?;
        self.sender = Some(sender);
        Ok(())
    }

    fn report(&mut self, ctx: &mut Context) {
        if let Some(warning) = self.sender.as_mut().and_then(Sender::take_warning) {
            ctx.warn(warning);
        }
    }
}

impl std::fmt::Debug for RemoteMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(NAME)
            .field("url", &self.url)
            .field("send_as_json", &self.config.send_as_json)
            .finish_non_exhaustive()
    }
}

/// The body Keras posts for `epoch` and `logs`: the JSON text, or the form
/// `field=<JSON text>`; `None` when the JSON body cannot hold the logs (a
/// NaN or an infinity, which `requests` refuses to send as JSON).
pub(crate) fn remote_monitor_payload(
    epoch: usize,
    logs: &Logs,
    send_as_json: bool,
    field: &str,
) -> Option<Vec<u8>> {
    let mut json = format!("{{\"epoch\": {epoch}");
    for (key, value) in logs.iter() {
        if send_as_json && !value.is_finite() {
            return None;
        }
        json.push_str(", ");
        json.push_str(&python_json_string(key));
        json.push_str(": ");
        json.push_str(&python_json_float(value));
    }
    json.push('}');
    Some(if send_as_json {
        json.into_bytes()
    } else {
        format!(
            "{}={}",
            tracker::quote_plus(field),
            tracker::quote_plus(&json)
        )
        .into_bytes()
    })
}

/// A float as Python's `json.dumps` writes it.
fn python_json_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        float_repr(value)
    }
}

/// A string as Python's `json.dumps` writes it (`ensure_ascii=True`).
fn python_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Callback for RemoteMonitor {
    fn name(&self) -> String {
        NAME.to_string()
    }

    fn on_train_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        if self.sender.is_none() {
            self.start()?;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        if self.sender.is_none() {
            self.start()?;
        }
        let payload =
            remote_monitor_payload(epoch, logs, self.config.send_as_json, &self.config.field);
        let sender = self.sender.as_mut().expect("started above");
        match payload {
            Some(body) => sender.send(body),
            None => sender.fail(format!(
                "Could not reach RemoteMonitor root server at {}",
                self.config.root
            )),
        }
        self.report(ctx);
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        if let Some(sender) = self.sender.as_mut()
            && !sender.flush(FLUSH_TIMEOUT)
        {
            log::debug!("{NAME}: posts still queued at the end of training are dropped");
        }
        self.report(ctx);
        if let Some(mut sender) = self.sender.take() {
            sender.close();
        }
        Ok(())
    }

    fn on_exception(&mut self, _error: &str, ctx: &mut Context) -> Result<()> {
        self.on_train_end(&Logs::new(), ctx)
    }
}

fn default_root() -> String {
    "http://localhost:9000".into()
}

fn default_path() -> String {
    "/publish/epoch/end/".into()
}

fn default_field() -> String {
    "data".into()
}

/// The parameters of [`RemoteMonitor`], with Keras's names and defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteMonitorConfig {
    /// The server's root address (default `http://localhost:9000`).
    #[serde(default = "default_root")]
    pub root: String,
    /// The path posts go to, appended to `root` (default `/publish/epoch/end/`).
    #[serde(default = "default_path")]
    pub path: String,
    /// The form field that holds the JSON text (default `data`); unused
    /// with `send_as_json`.
    #[serde(default = "default_field")]
    pub field: String,
    /// HTTP headers sent with every post.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Post the JSON as the body (`application/json`) instead of a form.
    #[serde(default)]
    pub send_as_json: bool,
}

impl Default for RemoteMonitorConfig {
    fn default() -> Self {
        Self {
            root: default_root(),
            path: default_path(),
            field: default_field(),
            headers: BTreeMap::new(),
            send_as_json: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs() -> Logs {
        [("loss", 0.25), ("accuracy", 0.1 + 0.2), ("val_loss", 1e-5)]
            .into_iter()
            .collect()
    }

    #[test]
    fn json_payload_is_pythons_json_dumps() {
        // json.dumps({"epoch": 3, "loss": 0.25, "accuracy": 0.1 + 0.2, "val_loss": 1e-05})
        let body = remote_monitor_payload(3, &logs(), true, "data").unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"epoch": 3, "loss": 0.25, "accuracy": 0.30000000000000004, "val_loss": 1e-05}"#
        );
        let nan: Logs = [("loss", f64::NAN)].into_iter().collect();
        assert_eq!(remote_monitor_payload(0, &nan, true, "data"), None);
    }

    #[test]
    fn form_payload_is_requests_urlencode() {
        // urllib.parse.urlencode({"data": json.dumps({"epoch": 0, "loss": nan, "x": inf})})
        let logs: Logs = [("loss", f64::NAN), ("x", f64::INFINITY)]
            .into_iter()
            .collect();
        let body = remote_monitor_payload(0, &logs, false, "data").unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "data=%7B%22epoch%22%3A+0%2C+%22loss%22%3A+NaN%2C+%22x%22%3A+Infinity%7D"
        );
    }

    #[test]
    fn keys_are_escaped_as_python_does() {
        assert_eq!(python_json_string("a\"b\\é\n"), r#""a\"b\\\u00e9\n""#);
        assert_eq!(python_json_string("😀"), r#""\ud83d\ude00""#);
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config: RemoteMonitorConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, RemoteMonitorConfig::default());
        assert_eq!(config.root, "http://localhost:9000");
        assert!(serde_json::from_str::<RemoteMonitorConfig>(r#"{"roots": "x"}"#).is_err());
        assert!(
            RemoteMonitor::new(RemoteMonitorConfig {
                root: "ftp://x".into(),
                ..Default::default()
            })
            .is_err()
        );
    }
}
