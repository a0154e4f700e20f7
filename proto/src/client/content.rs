//! A streamed message's content: the body handed to the client piece by piece
//! ([`Outgoing::streamed`](super::Outgoing::streamed)) instead of whole.
//!
//! When the content is due the client queues what precedes it (`BDAT <size>
//! LAST`; nothing after `354` to DATA), says [`ClientEvent::SendContent`] and
//! waits in the content state: [`Client::send_content`] appends each piece to
//! the output (dot-stuffed for DATA, as is for BDAT), [`Client::end_content`]
//! ends it (DATA's terminator) and waits for the final reply. The size is
//! checked both ways for DATA and BDAT: a piece past the declared size, or an
//! end before it, fails the session instead of ending the content, so that a
//! truncated or overlong body is never sent as a complete message (and, for
//! BDAT, no octet past the chunk could be read by the server as a command).

use std::time::Instant;

use super::expect::Expect;
use super::{Client, ClientError, ClientEvent};
use crate::command::Command;
use crate::data::DataEncoder;

/// The content being given.
#[derive(Debug)]
pub(super) struct Streaming {
    /// Octets announced in [`Outgoing::streamed`](super::Outgoing::streamed).
    declared: u64,
    /// Octets given so far.
    given: u64,
    /// `Some` for DATA (dot-stuffing state), `None` for BDAT (octets as is).
    encoder: Option<DataEncoder>,
}

impl Client {
    /// Hands the next `piece` of a streamed content (after
    /// [`ClientEvent::SendContent`]) to the output, dot-stuffed for DATA, as
    /// is for BDAT, and re-arms the `data_block` deadline of
    /// [`ClientConfig::timeouts`](super::ClientConfig::timeouts). Empty pieces
    /// are allowed.
    ///
    /// A piece that takes the content past the declared size fails the session
    /// ([`ClientError::ContentSize`], the message reported with a synthetic
    /// `451 4.4.2`, then [`ClientEvent::Closed`]); the piece is not queued.
    ///
    /// Outside the content state (no streamed content due, or the session
    /// closed) it does nothing.
    pub fn send_content(&mut self, now: Instant, piece: &[u8]) {
        let Some(content) = self.content.as_mut() else { return };
        let given = content.given + piece.len() as u64;
        if given > content.declared {
            let declared = content.declared;
            return self.fail(ClientError::ContentSize { declared, given });
        }
        content.given = given;
        match &mut content.encoder {
            Some(encoder) => encoder.push(piece, &mut self.out),
            None => self.out.extend_from_slice(piece),
        }
        self.deadline = Some(now + self.config.timeouts.data_block);
    }

    /// Ends a streamed content: for DATA, CRLF when the body did not end with
    /// one, then `.` CRLF (as [`encode_data`](crate::data::encode_data));
    /// for BDAT nothing more is sent. Then the final reply is awaited, as for a
    /// body given whole.
    ///
    /// When fewer octets were given than declared, nothing is sent and the
    /// session fails ([`ClientError::ContentSize`], the message reported with a
    /// synthetic `451 4.4.2`, then [`ClientEvent::Closed`]): the driver closes
    /// the connection without ending the content, so the server drops it.
    ///
    /// Outside the content state it does nothing.
    pub fn end_content(&mut self, now: Instant) {
        let Some(content) = self.content.take() else { return };
        if content.given != content.declared {
            return self.fail(ClientError::ContentSize {
                declared: content.declared,
                given: content.given,
            });
        }
        if let Some(encoder) = content.encoder {
            encoder.finish(&mut self.out);
        }
        self.arm(now, &Expect::DataEnd);
        self.expect.push_back(Expect::DataEnd);
    }

    /// Whether a streamed content is due ([`ClientEvent::SendContent`] was
    /// given and [`Client::end_content`] not yet called).
    pub fn is_sending_content(&self) -> bool {
        self.content.is_some()
    }

    /// The content of a streamed message of `size` octets is due: queues
    /// `BDAT size LAST` when `chunked`, enters the content state and asks the
    /// driver for the body.
    pub(super) fn start_streamed(&mut self, now: Instant, size: u64, chunked: bool) {
        if chunked {
            Command::Bdat { size, last: true }.encode(&mut self.out);
        }
        self.content = Some(Streaming {
            declared: size,
            given: 0,
            encoder: (!chunked).then(DataEncoder::new),
        });
        self.deadline = Some(now + self.config.timeouts.data_block);
        self.events.push_back(ClientEvent::SendContent);
    }
}
