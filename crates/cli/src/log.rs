//! One log style for everything a subcommand reports while it runs: its own lines (the
//! market's start, trades, clients, stop) and the library's diagnostics (`tracing` warnings).
//! Every line is a `tracing` event; this layer writes it.
//!
//! - `BOOKSTORE_LOG_FORMAT=human` (the default): information is the event's sentence alone, on
//!   stdout; a warning or error is `PROGRAM: warning: sentence (key=value, …)` on stderr. No
//!   timestamps or module paths: the lines read like the rest of the program's output.
//! - `BOOKSTORE_LOG_FORMAT=json`: one JSON object per line, on the same streams:
//!   `{"unix_ms", "level", "program", "message", …the event's fields}`.
//!
//! `BOOKSTORE_LOG` filters the library's diagnostics as before (`warn` by default); the
//! subcommands' own lines (target [`TARGET`]) always pass.
//!
//! Information is buffered (a busy market prints a line per trade) and flushed by [`flush`]:
//! the market flushes whenever it goes idle, and at exit.

use std::fmt::Write as _;
use std::io::{BufWriter, Stdout, Write};
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The target of the subcommands' own lines (`tracing::info!(target: log::TARGET, …)`): the
/// binary's module paths start with `bookstore::`, like the library's, so they get a name of
/// their own that the filter always lets through.
pub const TARGET: &str = "bookstore_cli";

/// The value `BOOKSTORE_LOG_FORMAT` may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl LogFormat {
    /// From `BOOKSTORE_LOG_FORMAT`; unset means human. Anything else is an error naming it.
    pub fn from_env() -> Result<Self, String> {
        let Some(value) = std::env::var_os("BOOKSTORE_LOG_FORMAT") else {
            return Ok(Self::Human);
        };
        match value.to_str() {
            Some("human") => Ok(Self::Human),
            Some("json") => Ok(Self::Json),
            _ => Err(format!(
                "BOOKSTORE_LOG_FORMAT: {value:?} is neither `human` nor `json`"
            )),
        }
    }
}

/// Buffered stdout for information lines, shared by the layer and [`flush`].
fn stdout() -> &'static Mutex<BufWriter<Stdout>> {
    static OUT: OnceLock<Mutex<BufWriter<Stdout>>> = OnceLock::new();
    OUT.get_or_init(|| Mutex::new(BufWriter::new(std::io::stdout())))
}

/// Writes the buffered information lines out.
pub fn flush() {
    if let Ok(mut out) = stdout().lock() {
        let _ = out.flush();
    }
}

/// Installs the subscriber: the filter of `BOOKSTORE_LOG` and this layer.
pub fn init(format: LogFormat, program: &'static str) {
    use tracing_subscriber::prelude::*;
    let own_lines = format!("{TARGET}=info").parse().expect("a valid directive");
    let filter = tracing_subscriber::EnvFilter::try_from_env("BOOKSTORE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
        .add_directive(own_lines);
    tracing_subscriber::registry()
        .with(LineLayer { format, program }.with_filter(filter))
        .init();
}

struct LineLayer {
    format: LogFormat,
    program: &'static str,
}

/// An event's message and fields, as text.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(&'static str, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields
                .push((field.name(), format!("{value:?}").into()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.push((field.name(), value.into()));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name(), value.into()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.push((field.name(), value.into()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.push((field.name(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name(), value.into()));
    }
}

impl LineLayer {
    fn line(&self, level: Level, f: &Fields) -> String {
        match self.format {
            LogFormat::Json => {
                let mut object = serde_json::Map::new();
                object.insert("unix_ms".into(), crate::watch::wall_ms().into());
                object.insert("level".into(), level.as_str().to_lowercase().into());
                object.insert("program".into(), self.program.into());
                object.insert("message".into(), f.message.clone().into());
                for (name, value) in &f.fields {
                    object.insert((*name).into(), value.clone());
                }
                serde_json::Value::Object(object).to_string()
            }
            LogFormat::Human if level > Level::WARN => f.message.clone(),
            LogFormat::Human => {
                let kind = if level == Level::ERROR {
                    "error"
                } else {
                    "warning"
                };
                let mut line = format!("{}: {kind}: {}", self.program, f.message);
                if !f.fields.is_empty() {
                    let fields: Vec<String> = f
                        .fields
                        .iter()
                        .map(|(name, value)| match value {
                            serde_json::Value::String(s) => format!("{name}={s}"),
                            other => format!("{name}={other}"),
                        })
                        .collect();
                    let _ = write!(line, " ({})", fields.join(", "));
                }
                line
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let line = self.line(level, &fields);
        if level <= Level::WARN {
            // Warnings go out at once, after what was said before them.
            flush();
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        } else if let Ok(mut out) = stdout().lock() {
            let _ = writeln!(out, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(message: &str, fields: &[(&'static str, serde_json::Value)]) -> Fields {
        Fields {
            message: message.into(),
            fields: fields.to_vec(),
        }
    }

    #[test]
    fn people_read_information_as_a_sentence_and_warnings_with_their_fields() {
        let layer = LineLayer {
            format: LogFormat::Human,
            program: "market",
        };
        let f = fields(
            "dropping client",
            &[("client", 3.into()), ("why", "it stopped reading".into())],
        );
        assert_eq!(
            layer.line(Level::WARN, &f),
            "market: warning: dropping client (client=3, why=it stopped reading)"
        );
        assert_eq!(
            layer.line(
                Level::INFO,
                &fields("trade #1: …", &[("trade_id", 1.into())])
            ),
            "trade #1: …"
        );
    }

    #[test]
    fn machines_read_one_json_object_per_line_with_every_field() {
        let layer = LineLayer {
            format: LogFormat::Json,
            program: "market",
        };
        let line = layer.line(Level::INFO, &fields("trade #1", &[("trade_id", 1.into())]));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["program"], "market");
        assert_eq!(v["message"], "trade #1");
        assert_eq!(v["trade_id"], 1);
        assert!(v["unix_ms"].as_u64().is_some());
    }
}
