//! The Unix-socket listener's `:authority` repair.
//!
//! gRPC's C core (Python, Ruby, C++, PHP) sends the percent-encoded socket
//! path as `:authority` for `unix:` targets, grpc-java the raw path, and some
//! clients an empty value. None of these is an RFC 3986 authority, and h2
//! resets such a stream with `PROTOCOL_ERROR` before tonic sees it
//! (hyperium/h2#487), so a default Python client cannot call the socket.
//!
//! On a Unix socket the authority names nothing, so each accepted connection
//! runs through a small relay: frames from the client pass unchanged, except
//! header blocks, which are decoded with the client's HPACK context and
//! encoded again for the server's, with an invalid `:authority` replaced by
//! `localhost`. Every block is re-encoded, not only repaired ones, because the
//! two HPACK contexts must stay in step. Frames from the server pass
//! unchanged. TCP listeners do not use this: there the authority is checked as
//! usual.

use futures::Stream;
use loona_hpack::{Decoder, Encoder};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::UnixListener;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The largest frame h2 accepts by default (SETTINGS_MAX_FRAME_SIZE), both
/// what a client may send and what the relay writes.
const MAX_FRAME: usize = 16_384;
/// The largest header block the relay collects across CONTINUATION frames.
const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// HPACK's default dynamic table size; the server advertises no other.
const HPACK_TABLE: usize = 4_096;
/// The value an unusable authority is replaced with (what tonic, grpc-go and
/// Kubernetes send for Unix sockets).
const LOCAL_AUTHORITY: &[u8] = b"localhost";

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Accepts connections on `listener` and yields, for each, the server end of
/// a relay that repairs `:authority` (see the module docs).
pub fn incoming(listener: UnixListener) -> impl Stream<Item = io::Result<DuplexStream>> {
    async_stream::stream! {
        loop {
            let (client, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    yield Err(e);
                    continue;
                }
            };
            let (server, relay) = tokio::io::duplex(4 * MAX_FRAME);
            tokio::spawn(async move {
                if let Err(e) = relay_connection(client, relay).await {
                    tracing::debug!(error = %e, "unix socket connection ended");
                }
            });
            yield Ok(server);
        }
    }
}

/// Copies both directions between the client and the server end until either
/// side closes.
async fn relay_connection(client: tokio::net::UnixStream, server: DuplexStream) -> io::Result<()> {
    let (client_read, mut client_write) = client.into_split();
    // Frames are parsed from a buffer, not read a few bytes per syscall.
    let mut client_read = tokio::io::BufReader::with_capacity(64 * 1024, client_read);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let upstream = async {
        let result = repair_frames(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
        result
    };
    let downstream = async {
        let result = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
        result.map(|_| ())
    };
    tokio::try_join!(upstream, downstream).map(|_| ())
}

/// Reads the client's preface and frames and writes them to `out`. The first
/// header block decides: when its `:authority` is usable (tonic, grpc-go and
/// Kubernetes clients send `localhost`), the connection passes through
/// untouched from there on, as the authority is a channel's setting;
/// otherwise every header block is re-encoded with the authority repaired.
/// Ends at the client's EOF; a malformed stream ends the connection with an
/// error (h2 would have refused it too).
async fn repair_frames<R, W>(input: &mut R, out: &mut W) -> io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    if !read_or_eof(input, &mut preface).await? {
        return Ok(());
    }
    if &preface != PREFACE {
        return Err(invalid("not an HTTP/2 connection preface"));
    }
    out.write_all(&preface).await?;

    let mut blocks = BlockCodec::new();
    let mut pending: Option<PendingBlock> = None;
    // The frames of the first header block as they came, for pass-through.
    let mut first_block: Option<Vec<u8>> = Some(Vec::new());
    let mut header = [0u8; 9];
    let mut payload = Vec::with_capacity(MAX_FRAME);
    loop {
        if !read_or_eof(input, &mut header).await? {
            return Ok(());
        }
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        if length > MAX_FRAME {
            return Err(invalid("frame larger than SETTINGS_MAX_FRAME_SIZE"));
        }
        payload.resize(length, 0);
        input.read_exact(&mut payload).await?;
        if let (Some(raw), HEADERS | CONTINUATION) = (first_block.as_mut(), kind) {
            raw.extend_from_slice(&header);
            raw.extend_from_slice(&payload);
        }
        // A whole header block, once its last frame is in.
        let mut complete = None;

        match (kind, pending.as_mut()) {
            (CONTINUATION, Some(block)) if block.stream == stream => {
                block.push(&payload)?;
                if flags & END_HEADERS != 0 {
                    complete = pending.take();
                }
            }
            (_, Some(_)) => return Err(invalid("header block interrupted")),
            (CONTINUATION, None) => return Err(invalid("CONTINUATION without HEADERS")),
            (HEADERS, None) => {
                let block = PendingBlock::from_headers(stream, flags, &payload)?;
                if flags & END_HEADERS != 0 {
                    complete = Some(block);
                } else {
                    pending = Some(block);
                }
            }
            // A client never sends PUSH_PROMISE; h2 refuses it, and its block
            // would have to be decoded too, so the relay refuses it first.
            (PUSH_PROMISE, None) => return Err(invalid("PUSH_PROMISE from a client")),
            (_, None) => {
                out.write_all(&header).await?;
                out.write_all(&payload).await?;
            }
        }
        let Some(block) = complete else {
            continue;
        };
        let fields = blocks.decode(&block)?;
        match first_block.take() {
            Some(raw) if !needs_repair(&fields) => {
                out.write_all(&raw).await?;
                tokio::io::copy(input, out).await?;
                return Ok(());
            }
            _ => blocks.encode_and_write(&block, fields, out).await?,
        }
    }
}

/// Whether a header block carries an `:authority` h2 would refuse.
fn needs_repair(fields: &[(Vec<u8>, Vec<u8>)]) -> bool {
    fields
        .iter()
        .any(|(name, value)| name == b":authority" && !usable_authority(value))
}

/// A header block collected from HEADERS and CONTINUATION frames.
struct PendingBlock {
    stream: u32,
    end_stream: bool,
    /// The 5 bytes of stream dependency and weight, when PRIORITY was set.
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

impl PendingBlock {
    fn from_headers(stream: u32, flags: u8, payload: &[u8]) -> io::Result<Self> {
        let mut body = payload;
        let mut padding = 0;
        if flags & PADDED != 0 {
            let (&pad, rest) = body.split_first().ok_or_else(|| invalid("short HEADERS"))?;
            padding = usize::from(pad);
            body = rest;
        }
        let mut priority = None;
        if flags & PRIORITY != 0 {
            if body.len() < 5 {
                return Err(invalid("short HEADERS"));
            }
            let mut bytes = [0u8; 5];
            bytes.copy_from_slice(&body[..5]);
            priority = Some(bytes);
            body = &body[5..];
        }
        if padding > body.len() {
            return Err(invalid("HEADERS padding longer than its payload"));
        }
        Ok(Self {
            stream,
            end_stream: flags & END_STREAM != 0,
            priority,
            fragment: body[..body.len() - padding].to_vec(),
        })
    }

    fn push(&mut self, fragment: &[u8]) -> io::Result<()> {
        if self.fragment.len() + fragment.len() > MAX_HEADER_BLOCK {
            return Err(invalid("header block too large"));
        }
        self.fragment.extend_from_slice(fragment);
        Ok(())
    }
}

/// The two HPACK contexts: the client's (decoded) and the server's (encoded).
struct BlockCodec {
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
}

impl BlockCodec {
    fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HPACK_TABLE);
        Self {
            decoder,
            encoder: Encoder::new(),
        }
    }

    /// The fields of `block`, decoded with the client's HPACK context.
    fn decode(&mut self, block: &PendingBlock) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                fields.push((name.into_owned(), value.into_owned()))
            })
            .map_err(|e| invalid(&format!("undecodable header block: {e:?}")))?;
        Ok(fields)
    }

    /// Encodes `fields` of `block` for the server with `:authority` repaired
    /// and writes them as a HEADERS frame and as many CONTINUATION frames as
    /// they need.
    async fn encode_and_write<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        block: &PendingBlock,
        mut fields: Vec<(Vec<u8>, Vec<u8>)>,
        out: &mut W,
    ) -> io::Result<()> {
        for (name, value) in fields.iter_mut() {
            if name == b":authority" && !usable_authority(value) {
                *value = LOCAL_AUTHORITY.to_vec();
            }
        }
        let encoded = self
            .encoder
            .encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));

        let mut first = Vec::with_capacity(5 + encoded.len().min(MAX_FRAME));
        if let Some(priority) = block.priority {
            first.extend_from_slice(&priority);
        }
        let room = MAX_FRAME - first.len();
        let (head, mut rest) = encoded.split_at(encoded.len().min(room));
        first.extend_from_slice(head);
        let mut flags = 0;
        if block.end_stream {
            flags |= END_STREAM;
        }
        if block.priority.is_some() {
            flags |= PRIORITY;
        }
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        write_frame(out, HEADERS, flags, block.stream, &first).await?;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
            rest = tail;
            let flags = if rest.is_empty() { END_HEADERS } else { 0 };
            write_frame(out, CONTINUATION, flags, block.stream, chunk).await?;
        }
        Ok(())
    }
}

/// Whether h2 accepts `value` as an authority (`host[:port]`, no path, no
/// percent-encoding, not empty).
fn usable_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    out: &mut W,
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> io::Result<()> {
    let length = payload.len();
    let mut header = [0u8; 9];
    header[0] = (length >> 16) as u8;
    header[1] = (length >> 8) as u8;
    header[2] = length as u8;
    header[3] = kind;
    header[4] = flags;
    header[5..].copy_from_slice(&stream.to_be_bytes());
    out.write_all(&header).await?;
    out.write_all(payload).await
}

/// Fills `buf`, or returns `false` on a clean EOF before its first byte.
async fn read_or_eof<R: tokio::io::AsyncRead + Unpin>(
    input: &mut R,
    buf: &mut [u8],
) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = input.read(&mut buf[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(false)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        filled += n;
    }
    Ok(true)
}

fn invalid(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![
            (payload.len() >> 16) as u8,
            (payload.len() >> 8) as u8,
            payload.len() as u8,
            kind,
            flags,
        ];
        bytes.extend_from_slice(&stream.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn request(authority: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (
                b":path".to_vec(),
                b"/penguin.tokenator.v1.TokenService/GetToken".to_vec(),
            ),
            (b":authority".to_vec(), authority.to_vec()),
            (b"te".to_vec(), b"trailers".to_vec()),
        ]
    }

    /// Runs `input` through the relay and decodes the header blocks it wrote.
    async fn relay(input: Vec<u8>) -> io::Result<(Vec<Vec<(Vec<u8>, Vec<u8>)>>, Vec<u8>)> {
        let mut out = Vec::new();
        repair_frames(&mut input.as_slice(), &mut out).await?;
        let mut decoder = Decoder::new();
        let mut blocks = Vec::new();
        let mut rest = &out[24..];
        let mut block = Vec::new();
        let mut others = Vec::new();
        while !rest.is_empty() {
            let length =
                usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let (kind, flags) = (rest[3], rest[4]);
            let payload = &rest[9..9 + length];
            match kind {
                HEADERS | CONTINUATION => {
                    let start = if flags & PRIORITY != 0 { 5 } else { 0 };
                    block.extend_from_slice(&payload[start..]);
                    if flags & END_HEADERS != 0 {
                        blocks.push(decoder.decode(&block).unwrap());
                        block.clear();
                    }
                }
                _ => others.extend_from_slice(&rest[..9 + length]),
            }
            rest = &rest[9 + length..];
        }
        Ok((blocks, others))
    }

    #[tokio::test]
    async fn the_authorities_unix_clients_send_become_usable() {
        for (sent, expected) in [
            (&b"%2Frun%2Fpenguin%2Ftokenator.sock"[..], &b"localhost"[..]),
            (b"/run/penguin/tokenator.sock", b"localhost"),
            (b"", b"localhost"),
            (b"localhost", b"localhost"),
            (b"tokenator:50051", b"tokenator:50051"),
        ] {
            let mut encoder = Encoder::new();
            let mut input = PREFACE.to_vec();
            let fields = request(sent);
            let block = encoder.encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
            input.extend(frame(HEADERS, END_HEADERS, 1, &block));
            let (blocks, _) = relay(input).await.unwrap();
            let authority = blocks[0].iter().find(|(n, _)| n == b":authority").unwrap();
            assert_eq!(authority.1, expected, "{}", String::from_utf8_lossy(sent));
            assert_eq!(blocks[0].len(), fields.len());
        }
    }

    #[tokio::test]
    async fn continuations_padding_priority_and_other_frames_survive() {
        let mut encoder = Encoder::new();
        let mut fields = request(b"%2Ftmp%2Fs.sock");
        fields.push((b"x-big".to_vec(), vec![b'a'; 40_000]));
        let block = encoder.encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut input = PREFACE.to_vec();
        // SETTINGS, then a padded, prioritised HEADERS split over CONTINUATIONs.
        input.extend(frame(0x4, 0, 0, &[]));
        let mut first = vec![3u8];
        first.extend_from_slice(&[0, 0, 0, 0, 15]);
        first.extend_from_slice(&block[..10_000]);
        first.extend_from_slice(&[0, 0, 0]);
        input.extend(frame(HEADERS, PADDED | PRIORITY, 3, &first));
        input.extend(frame(CONTINUATION, 0, 3, &block[10_000..20_000]));
        input.extend(frame(CONTINUATION, 0, 3, &block[20_000..36_000]));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, &block[36_000..]));
        input.extend(frame(0x0, END_STREAM, 3, b"data"));
        // A second request, encoded against the client's dynamic table.
        let second = request(b"");
        let again = encoder.encode(second.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 5, &again));

        let (blocks, others) = relay(input).await.unwrap();
        assert_eq!(blocks.len(), 2);
        for block in &blocks {
            assert!(block.contains(&(b":authority".to_vec(), b"localhost".to_vec())));
        }
        assert!(blocks[0].contains(&(b"x-big".to_vec(), vec![b'a'; 40_000])));
        assert_eq!(blocks[1].len(), second.len());
        assert_eq!(
            others,
            [frame(0x4, 0, 0, &[]), frame(0x0, END_STREAM, 3, b"data")].concat()
        );
    }

    #[tokio::test]
    async fn a_connection_that_starts_with_a_usable_authority_passes_through_untouched() {
        let mut encoder = Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[]));
        for (stream, authority) in [(1, &b"localhost"[..]), (3, b"localhost")] {
            let fields = request(authority);
            let block = encoder.encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
            input.extend(frame(HEADERS, END_HEADERS, stream, &block));
            input.extend(frame(0x0, END_STREAM, stream, b"\0\0\0\0\0"));
        }
        let mut out = Vec::new();
        repair_frames(&mut input.as_slice(), &mut out)
            .await
            .unwrap();
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn malformed_streams_end_the_connection() {
        let block = Encoder::new().encode(
            request(b"localhost")
                .iter()
                .map(|(n, v)| (n.as_slice(), v.as_slice())),
        );
        let cases = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            [
                PREFACE.to_vec(),
                frame(CONTINUATION, END_HEADERS, 1, &block),
            ]
            .concat(),
            [
                PREFACE.to_vec(),
                frame(HEADERS, 0, 1, &block),
                frame(0x0, 0, 1, b"x"),
            ]
            .concat(),
            [
                PREFACE.to_vec(),
                frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff]),
            ]
            .concat(),
            [
                PREFACE.to_vec(),
                frame(HEADERS, PADDED | END_HEADERS, 1, &[200, 1, 2]),
            ]
            .concat(),
            [
                PREFACE.to_vec(),
                frame(PUSH_PROMISE, END_HEADERS, 1, &block),
            ]
            .concat(),
            [PREFACE.to_vec(), vec![0x01, 0, 0, 0x0, 0, 0, 0, 0, 1]].concat(),
        ];
        for (i, input) in cases.into_iter().enumerate() {
            assert!(relay(input).await.is_err(), "case {i} was relayed");
        }
    }

    #[tokio::test]
    async fn an_empty_connection_ends_quietly() {
        let (blocks, others) = relay(PREFACE.to_vec()).await.unwrap();
        assert!(blocks.is_empty() && others.is_empty());
        let mut out = Vec::new();
        repair_frames(&mut &b""[..], &mut out).await.unwrap();
        assert!(out.is_empty());
    }
}
