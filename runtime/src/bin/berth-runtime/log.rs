//! Log set-up: text or runc-style JSON lines (`{"level","msg","time"}`),
//! to `--log FILE` or stderr.

use std::fmt;
use std::fs::OpenOptions;
use std::path::Path;

use anyhow::Context as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::LogFormat;

/// Keeps the subscriber alive for the process lifetime.
pub struct LogGuard;

/// Installs the global subscriber.
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) -> anyhow::Result<LogGuard> {
    let level = if debug { Level::DEBUG } else { Level::INFO };
    let writer = match path {
        Some(p) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("{}", p.display()))?;
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(f))
        }
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    // Without --log only warnings and errors reach stderr (it is the
    // container's stderr for `run`), unless --debug.
    let level = if path.is_none() && !debug {
        Level::WARN
    } else {
        level
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(writer)
        .with_ansi(false);
    match format {
        LogFormat::Json => builder.event_format(JsonLine).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(LogGuard)
}

/// runc/logrus JSON line: `{"level":"info","msg":"...","time":"RFC3339"}` plus fields.
struct JsonLine;

#[derive(Default)]
struct Fields {
    msg: String,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.extra.insert(field.name().to_string(), value.into());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.msg = text;
        } else {
            self.extra.insert(field.name().to_string(), text.into());
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let mut obj = fields.extra;
        obj.insert("level".into(), level.into());
        obj.insert("msg".into(), fields.msg.into());
        obj.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .into(),
        );
        writeln!(writer, "{}", serde_json::Value::Object(obj))
    }
}
