//! Message content: DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030) assembly.
//!
//! The commands that open content (`DATA`, `BDAT`), the [`Phase`]s that read it
//! (the dot-terminated stream, a chunk's octets, a refused chunk's octets to
//! skip), and the end of content that hands the assembled message to the driver
//! as a [`DataDone`] token. The decoding itself (dot-unstuffing, smuggling
//! checks, limits) is [`DataDecoder`]'s; this file only routes octets to it and
//! turns its outcome into replies.
//!
//! With [`ServerConfig::content_chunk`](super::ServerConfig::content_chunk) set,
//! the assembled content goes to the driver in [`ServerEvent::Content`] pieces
//! as it arrives; [`window`] bounds how much one step decodes so a piece never
//! grows past the chunk size however much input the driver hands over at once.

use super::{code, Armed, CloseReason, DataDone, Phase, Server, ServerEvent, Transaction};
use crate::data::{DataDecoder, DataError, DataStatus};
use crate::reply::Reply;

/// The part of `input` to decode in one step: no more than fills the piece
/// being assembled (`held` octets of `chunk`), so the server keeps no more than
/// a piece of content whatever the driver's read size. All of it when content
/// is not streamed, or once the decoder has refused the message (nothing more
/// is kept then, and small steps would only cost time).
fn window<'a>(chunk: usize, held: usize, decoder: &DataDecoder, input: &'a [u8]) -> &'a [u8] {
    let room = chunk.saturating_sub(held);
    if room == 0 || decoder.pending_error().is_some() {
        input
    } else {
        &input[..input.len().min(room)]
    }
}

impl Server {
    /// Initial capacity of a transaction's content buffer: the declared SIZE
    /// within the limit, and within a piece when content is streamed.
    pub(super) fn body_capacity(&self, declared: Option<u64>) -> usize {
        let mut cap = declared.unwrap_or(0).min(self.config.data.max_message_size as u64);
        if self.config.content_chunk > 0 {
            cap = cap.min(self.config.content_chunk as u64);
        }
        usize::try_from(cap).unwrap_or(0)
    }

    /// Hands the assembled content to the driver as a [`ServerEvent::Content`]
    /// piece once it holds at least `content_chunk` octets; keeps an empty
    /// buffer with room for the next piece.
    fn hand_out_content(&mut self) {
        let chunk = self.config.content_chunk;
        let Some(tx) = self.tx.as_mut() else { return };
        if chunk == 0 || tx.body.len() < chunk {
            return;
        }
        let piece = std::mem::replace(&mut tx.body, Vec::with_capacity(chunk));
        tx.streamed += piece.len() as u64;
        self.events.push_back(ServerEvent::Content(piece));
    }

    /// Reads DATA content up to CRLF.CRLF (phase [`Phase::Data`]).
    pub(super) fn read_data(&mut self, input: &[u8]) -> Option<usize> {
        let (Phase::Data(decoder), Some(tx)) = (&mut self.phase, self.tx.as_mut()) else {
            self.phase = Phase::Command;
            return Some(0);
        };
        let input = window(self.config.content_chunk, tx.body.len(), decoder, input);
        let (used, status) = decoder.decode(input, &mut tx.body);
        match status {
            DataStatus::NeedMore => {
                if decoder.pending_error().is_none() {
                    self.hand_out_content();
                }
                (used > 0).then_some(used)
            }
            DataStatus::Done(result) => {
                self.phase = Phase::Command;
                self.end_of_content(result, false);
                Some(used)
            }
        }
    }

    /// Reads the rest of a BDAT chunk (phase [`Phase::Bdat`]).
    pub(super) fn read_bdat(&mut self, input: &[u8], remaining: u64, last: bool) -> Option<usize> {
        let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len());
        if take == 0 && remaining > 0 {
            return None;
        }
        let take = match self.tx.as_ref() {
            Some(Transaction {
                body, bdat: Some(d), ..
            }) => window(self.config.content_chunk, body.len(), d, &input[..take]).len(),
            _ => take,
        };
        self.bdat_chunk(&input[..take], remaining - take as u64, last);
        Some(take)
    }

    /// Skips the rest of a refused BDAT chunk, then sends its reply (phase
    /// [`Phase::BdatDiscard`]).
    pub(super) fn discard_bdat(&mut self, input: &[u8]) -> Option<usize> {
        let Phase::BdatDiscard { remaining, .. } = &mut self.phase else {
            return None;
        };
        let take = usize::try_from(*remaining).unwrap_or(usize::MAX).min(input.len());
        *remaining -= take as u64;
        if *remaining > 0 {
            return (take > 0).then_some(take);
        }
        if let Phase::BdatDiscard { reply, .. } = std::mem::replace(&mut self.phase, Phase::Command) {
            self.refuse(reply);
        }
        Some(take)
    }

    pub(super) fn on_data(&mut self) {
        match &self.tx {
            None => self.refuse(Reply::new(503, code(5, 5, 1), "need MAIL before DATA")),
            Some(tx) if tx.bdat.is_some() => self.refuse(Reply::new(503, code(5, 5, 1), "DATA not allowed after BDAT")),
            Some(tx) if tx.rcpts.is_empty() => self.refuse(Reply::new(554, code(5, 5, 1), "no valid recipients")),
            Some(_) => {
                self.send(&Reply::plain(354, "end data with <CR><LF>.<CR><LF>"));
                self.phase = Phase::Data(DataDecoder::new(self.config.data));
            }
        }
    }

    pub(super) fn on_bdat(&mut self, size: u64, last: bool) {
        let refusal = match &self.tx {
            None => Some(Reply::new(503, code(5, 5, 1), "need MAIL before BDAT")),
            Some(tx) if tx.rcpts.is_empty() => Some(Reply::new(554, code(5, 5, 1), "no valid recipients")),
            Some(_) if !self.config.chunking => Some(Reply::new(502, code(5, 5, 1), "BDAT not offered")),
            Some(_) => None,
        };
        match refusal {
            // The chunk's octets follow the command whatever we answer: skip them.
            Some(reply) => {
                self.reset_transaction();
                self.phase = Phase::BdatDiscard { remaining: size, reply };
            }
            None => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.bdat
                        .get_or_insert_with(|| DataDecoder::new_chunked(self.config.data));
                }
                self.phase = Phase::Bdat { remaining: size, last };
            }
        }
    }

    /// Feeds part of a BDAT chunk; at its end, replies or completes the message.
    fn bdat_chunk(&mut self, chunk: &[u8], remaining: u64, last: bool) {
        let Some(tx) = self.tx.as_mut() else {
            self.phase = Phase::Command;
            return;
        };
        let Some(decoder) = tx.bdat.as_mut() else {
            self.phase = Phase::Command;
            return;
        };
        let (_, status) = decoder.decode(chunk, &mut tx.body);
        let clean = decoder.pending_error().is_none();
        if let DataStatus::Done(Err(e)) = status {
            // A bad chunk ends the transaction; the rest of its octets are skipped.
            self.reset_transaction();
            if e.is_fatal() {
                self.phase = Phase::Command;
                self.events.push_back(ServerEvent::Refused(e.reply()));
                self.close_with(&e.reply(), CloseReason::BadFraming);
            } else {
                self.phase = Phase::BdatDiscard {
                    remaining,
                    reply: e.reply(),
                };
            }
            return;
        }
        if clean {
            self.hand_out_content();
        }
        if remaining > 0 {
            self.phase = Phase::Bdat { remaining, last };
            return;
        }
        self.phase = Phase::Command;
        let Some(decoder) = self.tx.as_mut().and_then(|tx| tx.bdat.as_mut()) else {
            return;
        };
        if let (false, Some(e)) = (last, decoder.pending_error()) {
            // Refuse now rather than at LAST: the client stops sending chunks
            // (RFC 3030 §2: a failed chunk fails the transaction).
            let reply = e.reply();
            self.reset_transaction();
            self.refuse(reply);
            return;
        }
        if last {
            let result = decoder.finish_chunked();
            self.end_of_content(result, true);
        } else {
            let size = decoder.size();
            self.send(&Reply::new(250, code(2, 0, 0), format!("{size} octets received")));
        }
    }

    /// The message content ended (DATA terminator or BDAT LAST).
    /// `Ok` holds the decoder's count of content octets.
    fn end_of_content(&mut self, result: Result<u64, DataError>, chunked: bool) {
        match result {
            Ok(size) => {
                self.hand_out_content();
                let Some(tx) = self.tx.take() else { return };
                debug_assert_eq!(tx.streamed + tx.body.len() as u64, size, "pieces + body = content");
                self.await_decision(ServerEvent::Message(DataDone {
                    from: tx.from,
                    params: tx.params,
                    recipients: tx.rcpts,
                    body: tx.body,
                    size,
                    chunked,
                    armed: Armed::new("DataDone"),
                }));
            }
            Err(e) => {
                self.reset_transaction();
                if e.is_fatal() {
                    self.events.push_back(ServerEvent::Refused(e.reply()));
                    self.close_with(&e.reply(), CloseReason::BadFraming);
                } else {
                    self.refuse(e.reply());
                }
            }
        }
    }
}
