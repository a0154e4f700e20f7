//! A stored body read back for delivery: the spool's pieces handed to
//! `net`'s client one at a time, each read on a blocking thread (RocksDB
//! reads are blocking; a 1 MiB piece from a blob file is a file read and a
//! decompression, which must not stall an async worker).

use std::io;

use bytes::Bytes;
use storage::{BodyReader, MessageId, Spool};

/// The body of one message, piece by piece, for one delivery attempt to
/// one destination (each attempt reads it again from its start).
pub(crate) struct SpoolContent {
    reader: Option<BodyReader>,
    id: MessageId,
}

impl SpoolContent {
    /// A body that is not there (removed meanwhile) fails the first read,
    /// which cuts the connection before the end of the content.
    ///
    /// # Errors
    /// The spool's read error.
    pub(crate) fn open(spool: &Spool, id: MessageId) -> Result<Self, storage::Error> {
        Ok(Self {
            reader: Some(spool.body_reader(id)?),
            id,
        })
    }
}

impl net::client::ContentSource for SpoolContent {
    async fn next_piece(&mut self) -> io::Result<Option<Bytes>> {
        let Some(mut reader) = self.reader.take() else {
            return Err(io::Error::other(format!("message {}: body reader lost", self.id)));
        };
        let (reader, piece) = tokio::task::spawn_blocking(move || {
            let piece = reader.next_piece();
            (reader, piece)
        })
        .await
        .map_err(io::Error::other)?;
        self.reader = Some(reader);
        piece.map_err(|e| io::Error::other(format!("message {}: {e}", self.id)))
    }
}
