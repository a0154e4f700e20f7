//! Errors a peer can cause. Each maps to the reply that tells the peer what went
//! wrong ([`CommandError::reply`]); parser text is never echoed back.
//!
//! "Incomplete input" is never an error: parsers return `Ok(None)` or consume 0 bytes.

use thiserror::Error;

use crate::reply::{EnhancedCode, Reply};

/// A reply from a peer that is not valid SMTP (client side).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ReplyError {
    /// A line without a three-digit code in 200..=599, or a bad separator.
    #[error("reply line without a valid code")]
    Syntax,
    /// The lines of a multi-line reply carry different codes.
    #[error("multi-line reply with different codes")]
    MixedCodes,
    /// A line longer than [`crate::reply::MAX_REPLY_LINE`].
    #[error("reply line too long")]
    LineTooLong,
    /// More lines than [`crate::reply::MAX_REPLY_LINES`].
    #[error("reply has too many lines")]
    TooManyLines,
    /// A line ended by LF without CR.
    #[error("reply line ended by bare LF")]
    BareLf,
    /// A CR inside a line (not followed by LF).
    #[error("bare CR inside a reply line")]
    BareCr,
}

/// A command line from a client that cannot be accepted as written.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CommandError {
    /// The verb is not one we know.
    #[error("unrecognised command")]
    UnknownCommand,
    /// The verb is known but its arguments do not parse.
    #[error("syntax error in parameters of {verb}")]
    Syntax {
        /// The command's verb, upper case.
        verb: &'static str,
    },
    /// A reverse or forward path that is not a valid address.
    #[error("malformed address")]
    BadAddress,
    /// A MAIL or RCPT parameter we do not know or that has a bad value.
    #[error("unsupported or malformed parameter {name}")]
    BadParameter {
        /// The parameter's keyword, upper case (truncated to 16 bytes).
        name: String,
    },
    /// A parameter given twice.
    #[error("duplicate parameter {name}")]
    DuplicateParameter {
        /// The parameter's keyword, upper case.
        name: String,
    },
    /// A command line longer than the configured limit.
    #[error("command line too long")]
    LineTooLong,
    /// A command line ended by LF without CR, or holding a bare CR.
    #[error("bare CR or LF in command line")]
    BareLineEnding,
    /// Non-UTF-8 bytes, or 8-bit bytes where SMTPUTF8 was not requested.
    #[error("invalid characters in command line")]
    BadCharacters,
}

impl CommandError {
    /// The reply that tells the client about this error.
    pub fn reply(&self) -> Reply {
        let syntax = EnhancedCode::new(5, 5, 2);
        match self {
            Self::UnknownCommand => Reply::new(500, syntax, "command unrecognised"),
            Self::Syntax { verb } => Reply::new(
                501,
                EnhancedCode::new(5, 5, 4),
                format!("syntax error in {verb} arguments"),
            ),
            Self::BadAddress => Reply::new(501, EnhancedCode::new(5, 1, 3), "malformed address"),
            Self::BadParameter { name } => Reply::new(
                555,
                EnhancedCode::new(5, 5, 4),
                format!("parameter {name} unrecognised or malformed"),
            ),
            Self::DuplicateParameter { name } => {
                Reply::new(501, EnhancedCode::new(5, 5, 4), format!("parameter {name} given twice"))
            }
            Self::LineTooLong => Reply::new(500, syntax, "command line too long"),
            Self::BareLineEnding => Reply::new(500, syntax, "bare CR or LF in command line"),
            Self::BadCharacters => Reply::new(500, EnhancedCode::new(5, 6, 7), "invalid characters in command line"),
        }
    }
}
