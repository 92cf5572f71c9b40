//! A `MakeWriter` that redacts each formatted log line before writing it.

use crate::redact::redact;
use std::io::{self, Write};
use tracing_subscriber::fmt::MakeWriter;

/// Writes to stderr through [`redact`]. tracing's fmt layer hands each event
/// to one `write_all` call, so redaction sees whole lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedactingWriter;

impl RedactingWriter {
    /// The writer for `fmt::layer().with_writer(RedactingWriter::stderr)`.
    pub fn stderr() -> Self {
        RedactingWriter
    }
}

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().lock().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for RedactingWriter {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}
