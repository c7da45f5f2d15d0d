//! An upstream answer's body as the built-in path reads it: straight from the connection, in
//! the task that polls it, decoded from its framing; the connection goes back to its idle list
//! when the body ended cleanly.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use switchyard_core::BoxError;
use tokio::net::TcpStream;

use super::Idle;

/// How much is read at a time.
const READ_CHUNK: usize = 8192;

/// A chunk-size line or a trailer line longer than this fails the body (hyper's budget for
/// chunk extensions is of the same order).
const MAX_LINE: usize = 4096;

/// Trailer bytes read (and dropped) at most.
const MAX_TRAILERS: usize = 16 * 1024;

/// How an answer's body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    /// A chunk-size line is next.
    Size,
    /// This much of a chunk's data is still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines until an empty one; how many bytes so far.
    Trailers(usize),
    UntilClose,
    Done,
}

/// The body of an answer read by the built-in path.
#[derive(Debug)]
pub(crate) struct OwnBody {
    stream: Option<TcpStream>,
    decoder: Decoder,
    /// Where the connection goes when the body ended cleanly; `None`: it closes.
    idle: Option<Arc<Idle>>,
}

/// A body's framing undone on the bytes read so far, without I/O.
#[derive(Debug)]
pub(crate) struct Decoder {
    buf: BytesMut,
    state: State,
}

/// What the bytes at hand gave.
pub(crate) enum Decoded {
    Data(Bytes),
    End,
    More,
}

impl OwnBody {
    pub(super) fn new(
        stream: TcpStream,
        buf: BytesMut,
        framing: Framing,
        idle: Option<Arc<Idle>>,
    ) -> Self {
        let mut body = OwnBody {
            stream: Some(stream),
            decoder: Decoder::new(buf, framing),
            idle,
        };
        if body.decoder.state == State::Done {
            body.finish();
        }
        body
    }

    /// The body ended: the connection goes back to its idle list if nothing is left over.
    fn finish(&mut self) {
        self.decoder.state = State::Done;
        let stream = self.stream.take();
        let clean = self.decoder.buf.is_empty();
        if let (Some(stream), Some(idle), true) = (stream, self.idle.take(), clean) {
            idle.put(stream);
        }
    }

    /// The connection is of no further use: the body failed or the upstream closed it.
    fn fail(&mut self) {
        self.stream = None;
        self.decoder.state = State::Done;
    }
}

impl Decoder {
    /// A decoder for a body framed so, `buf` holding what was read past the head.
    pub(crate) fn new(buf: BytesMut, framing: Framing) -> Decoder {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size,
            Framing::UntilClose => State::UntilClose,
        };
        Decoder { buf, state }
    }

    /// Bytes read from the connection, appended.
    pub(crate) fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Whether the body ended; bytes still in the buffer then belong to no answer.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes read past the end of the body (or not yet decoded).
    pub(crate) fn leftover(&self) -> usize {
        self.buf.len()
    }

    /// Whether the body ends where the upstream closes the connection.
    pub(crate) fn until_close(&self) -> bool {
        self.state == State::UntilClose
    }

    /// The next piece of the body the bytes at hand give.
    pub(crate) fn decode(&mut self) -> Result<Decoded, &'static str> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Length(left) | State::Data(left) => {
                    if self.buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take =
                        usize::try_from(left).map_or(self.buf.len(), |l| l.min(self.buf.len()));
                    let data = self.buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), n) => State::Length(n),
                        (_, 0) => State::DataEnd,
                        (_, n) => State::Data(n),
                    };
                    return Ok(Decoded::Data(data));
                }
                State::UntilClose => {
                    if self.buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    return Ok(Decoded::Data(self.buf.split().freeze()));
                }
                State::Size => {
                    let Some(line) = self.line()? else {
                        return Ok(Decoded::More);
                    };
                    let size =
                        chunk_size(&line).ok_or("the upstream sent a malformed chunk size")?;
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::DataEnd => {
                    let Some(line) = self.line()? else {
                        return Ok(Decoded::More);
                    };
                    if !line.is_empty() {
                        return Err("the upstream's chunk is longer than its size");
                    }
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let Some(line) = self.line()? else {
                        return Ok(Decoded::More);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(Decoded::End);
                    }
                    let seen = seen + line.len();
                    if seen > MAX_TRAILERS {
                        return Err("the upstream's trailers are too large");
                    }
                    self.state = State::Trailers(seen);
                }
            }
        }
    }

    /// The next line without its line ending, if a whole one is at hand.
    fn line(&mut self) -> Result<Option<Bytes>, &'static str> {
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(end) if end > MAX_LINE => Err("the upstream sent an overlong chunk line"),
            Some(end) => {
                let mut line = self.buf.split_to(end + 1);
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                Ok(Some(line.freeze()))
            }
            None if self.buf.len() > MAX_LINE => Err("the upstream sent an overlong chunk line"),
            None => Ok(None),
        }
    }
}

/// A chunk-size line: hex digits, then optional extensions after `;`.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?.trim_ascii();
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(16)?;
        Some((n << 4) | u64::from(d))
    })
}

impl http_body::Body for OwnBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match this.decoder.decode() {
                Ok(Decoded::Data(data)) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
                Err(why) => {
                    this.fail();
                    return Poll::Ready(Some(Err(why.into())));
                }
            }
            let Some(stream) = this.stream.as_ref() else {
                return Poll::Ready(None);
            };
            let buf = this.decoder.buf_mut();
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            match stream.try_read_buf(buf) {
                Ok(0) if this.decoder.until_close() => {
                    this.fail();
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.fail();
                    let why = "the upstream closed the connection mid-body";
                    return Poll::Ready(Some(Err(why.into())));
                }
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(error) = ready!(stream.poll_read_ready(cx)) {
                        this.fail();
                        return Poll::Ready(Some(Err(error.into())));
                    }
                }
                Err(error) => {
                    this.fail();
                    return Poll::Ready(Some(Err(error.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
