//! Logging as runc does it: `--log FILE` (default stderr), `--log-format
//! text|json` (json lines with `level`, `msg`, `time`, which containerd's
//! shim reads back on failure), `--debug` for debug level. SNAPRUN_LOG or
//! `--log-level` set a tracing filter instead.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use snaprun_runtime::oci::state::rfc3339_now;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

enum Sink {
    Stderr,
    File(Mutex<File>),
}

struct RuncLayer {
    sink: Sink,
    format: Format,
}

#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.msg = format!("{value:?}");
        } else {
            self.rest
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.rest
                .push((field.name().to_string(), value.to_string()));
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// One log line in the chosen format.
fn line(format: Format, level: &str, msg: &str, rest: &[(String, String)]) -> String {
    match format {
        Format::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("level".into(), level.into());
            obj.insert("msg".into(), msg.into());
            obj.insert("time".into(), rfc3339_now().into());
            for (k, v) in rest {
                obj.insert(k.clone(), v.clone().into());
            }
            format!("{}\n", serde_json::Value::Object(obj))
        }
        Format::Text => {
            let mut s = format!("time=\"{}\" level={level} msg={msg:?}", rfc3339_now());
            for (k, v) in rest {
                let _ = write!(s, " {k}={v:?}");
            }
            s.push('\n');
            s
        }
    }
}

impl RuncLayer {
    fn write(&self, text: &str) {
        match &self.sink {
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(text.as_bytes());
            }
            Sink::File(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(text.as_bytes());
                }
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for RuncLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let level = level_name(event.metadata().level());
        self.write(&line(self.format, level, &f.msg, &f.rest));
    }
}

pub struct Logger {
    file: Option<Mutex<File>>,
    format: Format,
}

impl Logger {
    /// Writes the error that ends the command into the log file (stderr
    /// gets it from the caller).
    pub fn fatal(&self, msg: &str) {
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                let _ = f.write_all(line(self.format, "error", msg, &[]).as_bytes());
            }
        }
    }
}

pub fn init(filter: Option<&str>, debug: bool, log: Option<&Path>, format: Format) -> Logger {
    let filter = filter
        .map(str::to_string)
        .or_else(|| std::env::var("SNAPRUN_LOG").ok())
        .unwrap_or_else(|| if debug { "debug" } else { "warn" }.to_string());
    let open = |p: &Path| OpenOptions::new().create(true).append(true).open(p);
    let (sink, file) = match log.map(open) {
        Some(Ok(f)) => {
            let again = f.try_clone().ok().map(Mutex::new);
            (Sink::File(Mutex::new(f)), again)
        }
        Some(Err(e)) => {
            eprintln!("snaprun: warning: cannot open the log file: {e}");
            (Sink::Stderr, None)
        }
        None => (Sink::Stderr, None),
    };
    let layer = RuncLayer { sink, format };
    let _ = tracing_subscriber::registry()
        .with(EnvFilter::new(filter))
        .with(layer)
        .try_init();
    Logger { file, format }
}
