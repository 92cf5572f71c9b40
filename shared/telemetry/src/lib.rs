//! Logging for the Penguin pod: tracing set-up whose every line passes through
//! secret redaction, and a panic hook that does the same.
//!
//! The pod is a key vault, so redaction is not left to call sites: whatever a
//! log line, panic message or error string contains, the shapes of GitHub
//! tokens, JWTs, PEM private keys, API keys and registered literal secrets are
//! replaced before the bytes leave the process.

mod redact;
mod writer;

pub use redact::{redact, register_secret, Redacted};
pub use writer::RedactingWriter;

use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

/// How log lines are formatted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global tracing subscriber (filter from `RUST_LOG`, default
/// `info`) writing redacted lines to stderr, and the redacting panic hook.
///
/// Calling it twice is harmless: the second subscriber is ignored.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let make_writer = RedactingWriter::stderr;
    // Colour only for a person at a terminal; log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(make_writer)
                    .with_target(true)
                    .with_ansi(ansi),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(make_writer),
            )
            .try_init(),
    };
    install_panic_hook();
}

/// Replaces the default panic hook with one that redacts the message.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_string());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = redact(&payload);
        tracing::error!(%location, "panic: {message}");
        eprintln!("panic at {location}: {message}");
    }));
}
