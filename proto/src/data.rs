//! The message body: the DATA decoder (server side) and the dot-stuffing encoder
//! (client side).
//!
//! [`DataDecoder`] turns the octets a client sends after `354` into the message
//! body, incrementally, for any chunking of the input:
//! - the message ends only on CRLF `.` CRLF (the CRLF being the end of the last body
//!   line, or the very start of DATA); [`DataDecoder::decode`] stops consuming right
//!   after that terminator, so pipelined commands that follow stay with the caller;
//! - a line starting with `.` loses that dot (RFC 5321 §4.5.2);
//! - a bare LF or a bare CR anywhere is fatal ([`DataError::is_fatal`]): the decoder
//!   stops at once and the server closes the session. Since only CRLF ends a line,
//!   `\n.\n`, `\r.\r`, `\n.\r\n` and the like can neither end the message nor hide
//!   in it (SMTP smuggling);
//! - a NUL octet, a line over [`DataLimits::max_line_len`] or a body over
//!   [`DataLimits::max_message_size`] refuse the message but not the session: the
//!   decoder keeps reading to the terminator, then reports the first of them.
//!   Line lengths are counted after dot-unstuffing: a 998-octet text line that
//!   starts with `.` is 1,001 octets on the wire and is accepted with the default
//!   limit (RFC 5321 §4.5.3.1.6 counts the line without the transparency dot).
//!
//! [`DataDecoder::new_chunked`] applies the same line checks to BDAT chunks
//! (RFC 3030), which carry no terminator and no dot-stuffing: there every octet,
//! a leading dot included, counts.
//!
//! [`encode_data`] is the inverse: it dot-stuffs a body and appends the terminator;
//! [`DataEncoder`] does the same for a body given piece by piece.

use memchr::{memchr3, memmem};
use thiserror::Error;

use crate::reply::{EnhancedCode, Reply};

#[cfg(test)]
mod tests;

/// Limits a [`DataDecoder`] enforces while it streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataLimits {
    /// Longest line accepted, in octets of the decoded line, CRLF included: in
    /// DATA, the transparency dot of a line starting with `.` (RFC 5321 §4.5.2)
    /// is not counted, so a line may take `max_line_len + 1` octets on the wire.
    /// Default 1000, the minimum RFC 5321 §4.5.3.1.6 requires servers to accept
    /// (a limit it states for the text line, without the transparency dot);
    /// values under 3 allow only empty lines.
    pub max_line_len: usize,
    /// Largest body accepted, in decoded octets (after dot-unstuffing, final CRLF
    /// included, terminator excluded). Default 25 000 000: Mon espace santé refuses
    /// messages above 25 MB, so accepting more would only bounce later. The decoder
    /// never appends more than this to its output.
    pub max_message_size: usize,
}

impl Default for DataLimits {
    fn default() -> Self {
        Self {
            max_line_len: 1000,
            max_message_size: 25_000_000,
        }
    }
}

/// A body the server must refuse.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DataError {
    /// An LF not preceded by CR. Fatal.
    #[error("bare LF in message data")]
    BareLf,
    /// A CR not followed by LF. Fatal.
    #[error("bare CR in message data")]
    BareCr,
    /// A NUL octet in the body.
    #[error("NUL octet in message data")]
    Nul,
    /// A line longer than [`DataLimits::max_line_len`] once unstuffed.
    #[error("line longer than {limit} octets in message data")]
    LineTooLong {
        /// The limit, in octets, CRLF included.
        limit: usize,
    },
    /// A body larger than [`DataLimits::max_message_size`].
    #[error("message larger than {limit} octets")]
    TooLarge {
        /// The limit, in decoded octets.
        limit: usize,
    },
}

impl DataError {
    /// The reply that tells the client about this error.
    pub fn reply(&self) -> Reply {
        match self {
            Self::BareLf => Reply::new(
                554,
                EnhancedCode::new(5, 5, 2),
                "bare LF in message data is not allowed (RFC 5321 section 2.3.8)",
            ),
            Self::BareCr => Reply::new(
                554,
                EnhancedCode::new(5, 5, 2),
                "bare CR in message data is not allowed (RFC 5321 section 2.3.8)",
            ),
            Self::Nul => Reply::new(554, EnhancedCode::new(5, 6, 0), "NUL octet in message data"),
            Self::LineTooLong { limit } => Reply::new(
                500,
                EnhancedCode::new(5, 5, 2),
                format!("line too long in message data (limit {limit} octets including CRLF)"),
            ),
            Self::TooLarge { limit } => Reply::new(
                552,
                EnhancedCode::new(5, 3, 4),
                format!("message exceeds fixed maximum message size of {limit} octets"),
            ),
        }
    }

    /// Whether the session must end after the reply: the input can no longer be
    /// split into lines safely, so nothing after it may be read as a command.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::BareLf | Self::BareCr)
    }
}

/// What [`DataDecoder::decode`] found.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataStatus {
    /// All the input was consumed and the message goes on: feed more.
    NeedMore,
    /// The message ended (terminator seen) or a fatal error stopped it. `Ok` holds
    /// the body size in decoded octets; `Err` the first error (a fatal one is
    /// reported at once, even after a non-fatal one).
    Done(Result<u64, DataError>),
}

/// Where the decoder stands in the line it is reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pos {
    /// At the start of a line (or of DATA).
    LineStart,
    /// DATA only: the line began with `.`, not yet known to be stuffing or the end.
    Dot,
    /// DATA only: the line began with `.` CR: LF ends the message.
    DotCr,
    /// Inside a line.
    Mid,
    /// Inside a line, after a CR that ended the previous input.
    Cr,
}

/// Incremental decoder of one message body (DATA or a run of BDAT chunks).
///
/// Contract: after `decode` or `finish_chunked` has returned a final result, every
/// later call returns that same result and consumes nothing. On error, `out` holds
/// the body decoded before the first error's position (capped at the size limit)
/// and must be discarded; what it holds does not depend on how the input was
/// split.
#[derive(Clone, Debug)]
pub struct DataDecoder {
    limits: DataLimits,
    chunked: bool,
    pos: Pos,
    /// Decoded octets of the current line seen so far: neither the stuffed dot
    /// (DATA) nor the line end.
    line_len: usize,
    /// Decoded octets, counted even past an error.
    size: u64,
    /// First non-fatal error; once set, nothing more goes to `out`.
    error: Option<DataError>,
    /// Final result, once known.
    done: Option<Result<u64, DataError>>,
}

impl DataDecoder {
    /// A decoder for DATA: ends on CRLF `.` CRLF and removes stuffed dots.
    pub fn new(limits: DataLimits) -> Self {
        Self::with_mode(limits, false)
    }

    /// A decoder for BDAT: no terminator and no dot-stuffing, the same checks;
    /// feed every chunk's octets in order, then call [`Self::finish_chunked`]
    /// after the LAST chunk.
    pub fn new_chunked(limits: DataLimits) -> Self {
        Self::with_mode(limits, true)
    }

    fn with_mode(limits: DataLimits, chunked: bool) -> Self {
        Self {
            limits,
            chunked,
            pos: Pos::LineStart,
            line_len: 0,
            size: 0,
            error: None,
            done: None,
        }
    }

    /// Decoded octets so far, counting those past the size limit or after an error.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The first non-fatal error seen so far: the message will be refused. A BDAT
    /// server may reply with it before the LAST chunk.
    pub fn pending_error(&self) -> Option<&DataError> {
        self.error.as_ref()
    }

    /// Decodes as much of `input` as possible, appending the body octets to `out`
    /// (dots unstuffed, the final CRLF included, the terminator not).
    ///
    /// Returns the octets consumed and the status. With [`DataStatus::NeedMore`] all
    /// of `input` was consumed. With [`DataStatus::Done`] consumption stops right
    /// after the terminator, or right after the offending octet of a fatal error (a
    /// bare CR's offending octet is the CR: the octet after it is not consumed).
    /// In chunked mode only a fatal error ends decoding.
    ///
    /// Hot path: no I/O, no allocation besides `out` growing, memchr scans and one
    /// copy per run of unstuffed lines.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, DataStatus) {
        if let Some(done) = &self.done {
            return (0, DataStatus::Done(done.clone()));
        }
        let mut i = 0;
        loop {
            let Some(&b) = input.get(i) else {
                return (i, DataStatus::NeedMore);
            };
            match self.pos {
                Pos::LineStart => {
                    self.line_len = 0;
                    if b == b'.' && !self.chunked {
                        self.pos = Pos::Dot;
                        i += 1;
                    } else {
                        self.pos = Pos::Mid;
                    }
                }
                Pos::Dot => {
                    if b == b'\r' {
                        self.pos = Pos::DotCr;
                        i += 1;
                    } else {
                        // A stuffed dot: dropped, and not counted toward the line
                        // length (RFC 5321 §4.5.3.1.6 limits the text line).
                        self.pos = Pos::Mid;
                    }
                }
                Pos::DotCr => {
                    if b != b'\n' {
                        return self.fatal(DataError::BareCr, i);
                    }
                    let result = match self.error.clone() {
                        Some(e) => Err(e),
                        None => Ok(self.size),
                    };
                    self.done = Some(result.clone());
                    return (i + 1, DataStatus::Done(result));
                }
                Pos::Cr => {
                    if b != b'\n' {
                        return self.fatal(DataError::BareCr, i);
                    }
                    self.emit(b"\r\n", out);
                    self.pos = Pos::LineStart;
                    i += 1;
                }
                Pos::Mid => match self.scan(input, i, out) {
                    Ok(next) => i = next,
                    Err(status) => return status,
                },
            }
        }
    }

    /// The hot loop: decodes from `start` (inside a line) until the input ends, a
    /// line starts with `.` (DATA) or a fatal error. Returns where to go on.
    fn scan(&mut self, input: &[u8], start: usize, out: &mut Vec<u8>) -> Result<usize, (usize, DataStatus)> {
        // Octets in `input[run..i]` are body not yet copied to `out`.
        let mut run = start;
        let mut i = start;
        loop {
            let Some(k) = memchr3(b'\r', b'\n', 0, &input[i..]) else {
                self.content(input, &mut run, i, input.len(), out);
                self.emit(&input[run..], out);
                return Ok(input.len());
            };
            let p = i + k;
            match input[p] {
                0 => {
                    // The NUL is line content: the length check comes first.
                    self.content(input, &mut run, i, p + 1, out);
                    if self.error.is_none() {
                        self.emit(&input[run..p], out);
                        run = p;
                        // Unless the copy just passed the size limit, before the NUL.
                        self.error.get_or_insert(DataError::Nul);
                    }
                    i = p + 1;
                }
                b'\n' => {
                    self.content(input, &mut run, i, p, out);
                    self.emit(&input[run..p], out);
                    return Err(self.fatal(DataError::BareLf, p + 1));
                }
                _ => {
                    self.content(input, &mut run, i, p, out);
                    match input.get(p + 1) {
                        Some(b'\n') => {}
                        Some(_) => {
                            self.emit(&input[run..p], out);
                            return Err(self.fatal(DataError::BareCr, p + 1));
                        }
                        None => {
                            self.emit(&input[run..p], out);
                            self.pos = Pos::Cr;
                            return Ok(p + 1);
                        }
                    }
                    i = p + 2;
                    self.line_len = 0;
                    // A line starts: hand dots and the end of input to `decode`.
                    if i == input.len() || (!self.chunked && input[i] == b'.') {
                        self.emit(&input[run..i], out);
                        self.pos = Pos::LineStart;
                        return Ok(i);
                    }
                }
            }
        }
    }

    /// Counts `input[from..to]` as content of the current line; if it makes the line
    /// too long (first error), copies the run up to the offending octet and records
    /// the error, moving `run` there.
    fn content(&mut self, input: &[u8], run: &mut usize, from: usize, to: usize, out: &mut Vec<u8>) {
        let n = to - from;
        let limit = self.limits.max_line_len.saturating_sub(2);
        if self.error.is_none() && self.line_len + n > limit {
            let cut = from + limit.saturating_sub(self.line_len);
            self.emit(&input[*run..cut], out);
            *run = cut;
            // Unless the copy just passed the size limit, before the cut.
            if self.error.is_none() {
                self.error = Some(self.line_too_long());
            }
        }
        self.line_len = self.line_len.saturating_add(n);
    }

    fn line_too_long(&self) -> DataError {
        DataError::LineTooLong {
            limit: self.limits.max_line_len,
        }
    }

    /// Counts decoded octets and copies them to `out` while there is no error and
    /// the size limit is not passed.
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.error.is_none() {
            let max = self.limits.max_message_size as u64;
            let room = max.saturating_sub(self.size);
            if bytes.len() as u64 > room {
                // `room` < bytes.len() fits in usize.
                out.extend_from_slice(&bytes[..room as usize]);
                self.error = Some(DataError::TooLarge {
                    limit: self.limits.max_message_size,
                });
            } else {
                out.extend_from_slice(bytes);
            }
        }
        self.size += bytes.len() as u64;
    }

    fn fatal(&mut self, error: DataError, consumed: usize) -> (usize, DataStatus) {
        self.done = Some(Err(error.clone()));
        (consumed, DataStatus::Done(Err(error)))
    }

    /// Ends a BDAT message after its LAST chunk: returns the body size, or the first
    /// error (a CR ending the last chunk is a bare CR). Later calls, and `decode`,
    /// return the same result.
    ///
    /// On a DATA decoder whose terminator has not been seen, this ends the message
    /// where it stands, as in chunked mode (a line begun with `.` keeps no dot).
    ///
    /// # Errors
    /// The first [`DataError`] of the message.
    pub fn finish_chunked(&mut self) -> Result<u64, DataError> {
        if let Some(done) = &self.done {
            return done.clone();
        }
        let result = match (self.pos, self.error.clone()) {
            (Pos::Cr | Pos::DotCr, _) => Err(DataError::BareCr),
            (_, Some(e)) => Err(e),
            _ => Ok(self.size),
        };
        self.done = Some(result.clone());
        result
    }
}

/// Appends `body` to `out` as DATA content: dots at line starts doubled, a final
/// CRLF added when missing (a CR alone gets its LF), then the terminator `.` CRLF.
/// An empty body gives just the terminator.
///
/// For a body of CRLF-separated lines without CR, LF or NUL inside,
/// [`DataDecoder::decode`] gives back `body` (plus a final CRLF if it had none).
/// A dot is stuffed after every LF, bare or not. Hot path: no allocation besides
/// `out` growing, a memchr scan and one copy per run between stuffed dots. The
/// same code as [`DataEncoder`], in one piece.
pub fn encode_data(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(body.len() + 5);
    let mut encoder = DataEncoder::new();
    encoder.push(body, out);
    encoder.finish(out);
}

/// [`encode_data`] for a body given piece by piece (a message streamed from the
/// spool): [`push`](Self::push) each piece in order, then
/// [`finish`](Self::finish). The output is the same as `encode_data` of the
/// concatenated pieces, however the body is split: a dot at the start of a
/// piece is doubled when the previous piece ended a line, and the final line
/// end follows the body's last two octets, whichever pieces they came in.
#[derive(Clone, Debug, Default)]
pub struct DataEncoder {
    /// The last two octets pushed, older first (zero where fewer were pushed).
    tail: [u8; 2],
    /// Octets pushed so far.
    len: u64,
}

impl DataEncoder {
    /// An encoder at the start of the body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Body octets pushed so far (before dot-stuffing).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `piece`, the next octets of the body, to `out`, dot-stuffed.
    pub fn push(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        let (Some(&first), Some(&last)) = (piece.first(), piece.last()) else {
            return;
        };
        // A line starts at the body's start and after every LF, bare or not.
        if first == b'.' && (self.len == 0 || self.tail[1] == b'\n') {
            out.push(b'.');
        }
        let mut run = 0;
        for p in memmem::find_iter(piece, b"\n.") {
            // Copy up to and including the dot, then the dot again on the next run.
            out.extend_from_slice(&piece[run..p + 2]);
            run = p + 1;
        }
        out.extend_from_slice(&piece[run..]);
        self.tail = match piece {
            [.., a, _] => [*a, last],
            _ => [self.tail[1], last],
        };
        self.len += piece.len() as u64;
    }

    /// Ends the body: CRLF when it did not end with one (LF alone after a
    /// final CR), then the terminator `.` CRLF. An empty body gives just the
    /// terminator.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.len > 0 && self.tail != *b"\r\n" {
            if self.tail[1] == b'\r' {
                out.push(b'\n');
            } else {
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b".\r\n");
    }
}
