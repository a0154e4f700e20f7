//! Reply expectations: what each reply the client waits for means.
//!
//! Every command sent pushes an [`Expect`] (with its timeout); every reply
//! received pops the oldest one and moves the session on: EHLO/HELO fallback,
//! STARTTLS, then a message's MAIL, RCPTs, DATA or BDAT, the final reply, RSET
//! and QUIT. With PIPELINING several expectations are outstanding at once, and
//! replies are matched to them in order (RFC 2920 §3.1).

use std::time::{Duration, Instant};

use super::config::Timeouts;
use super::{finish, Client, ClientError, ClientEvent, Stage, TlsPolicy};
use crate::command::Command;
use crate::data::encode_data;
use crate::ehlo::{Extension, Extensions};
use crate::reply::{Reply, Severity};

/// A reply the client waits for, one per command sent, in sending order.
#[derive(Debug)]
pub(super) enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Mail,
    Rcpt(usize),
    DataCommand,
    DataEnd,
    Rset,
    Quit,
}

impl Expect {
    /// The stage reported when this reply fails or never comes.
    pub(super) fn stage(&self) -> Stage {
        match self {
            Self::Greeting => Stage::Greeting,
            Self::Ehlo | Self::Helo => Stage::Ehlo,
            Self::StartTls => Stage::StartTls,
            Self::Mail => Stage::Mail,
            Self::Rcpt(_) => Stage::Rcpt,
            Self::DataCommand => Stage::DataCommand,
            Self::DataEnd => Stage::DataEnd,
            Self::Rset => Stage::Rset,
            Self::Quit => Stage::Quit,
        }
    }

    /// How long to wait for this reply.
    pub(super) fn timeout(&self, t: &Timeouts) -> Duration {
        match self {
            Self::Greeting => t.greeting,
            Self::Ehlo | Self::Helo | Self::StartTls | Self::Rset | Self::Quit => t.command,
            Self::Mail => t.mail,
            Self::Rcpt(_) => t.rcpt,
            Self::DataCommand => t.data_command,
            Self::DataEnd => t.data_end,
        }
    }
}

impl Client {
    /// Handles the reply to the oldest command still waiting for one.
    pub(super) fn on_reply(&mut self, now: Instant, reply: Reply) {
        let Some(expect) = self.expect.pop_front() else { return };
        // 421 means the server is closing, whatever we asked (RFC 5321 §3.8).
        if reply.code == 421 && !matches!(expect, Expect::Quit) {
            return self.fail(ClientError::Refused {
                stage: expect.stage(),
                reply,
            });
        }
        match expect {
            Expect::Greeting => {
                let ok = reply.code == 220;
                self.events.push_back(ClientEvent::Greeting(reply.clone()));
                if !ok {
                    return self.fail(ClientError::Refused {
                        stage: Stage::Greeting,
                        reply,
                    });
                }
                self.command(now, &Command::Ehlo(self.config.hostname.clone()), Expect::Ehlo);
            }
            Expect::Ehlo if reply.severity() == Severity::Permanent && !self.tls => {
                // An old server without ESMTP: fall back to HELO (no extensions,
                // so no STARTTLS: policy decides below).
                self.command(now, &Command::Helo(self.config.hostname.clone()), Expect::Helo);
            }
            Expect::Ehlo | Expect::Helo => {
                if !reply.is_success() {
                    return self.fail(ClientError::Refused {
                        stage: Stage::Ehlo,
                        reply,
                    });
                }
                if matches!(expect, Expect::Ehlo) {
                    self.extensions = Extensions::from_reply(&reply);
                }
                self.events.push_back(ClientEvent::Ehlo(self.extensions.clone()));
                self.after_hello(now);
            }
            Expect::StartTls => {
                if reply.code == 220 {
                    self.deadline = None;
                    self.events.push_back(ClientEvent::StartTls);
                } else if self.config.tls == TlsPolicy::Required {
                    self.fail(ClientError::Refused {
                        stage: Stage::StartTls,
                        reply,
                    });
                } else {
                    self.become_idle();
                }
            }
            Expect::Mail => self.on_mail_reply(now, reply),
            Expect::Rcpt(index) => self.on_rcpt_reply(now, index, reply),
            Expect::DataCommand => self.on_data_command_reply(now, reply),
            Expect::DataEnd => {
                if let Some(flight) = self.current.take() {
                    self.events
                        .push_back(ClientEvent::MessageDone(finish(flight, Some(reply))));
                }
                self.become_idle();
            }
            Expect::Rset => {
                if reply.is_success() {
                    self.become_idle();
                } else {
                    self.fail(ClientError::Refused {
                        stage: Stage::Rset,
                        reply,
                    });
                }
            }
            Expect::Quit => self.close(),
        }
    }

    fn after_hello(&mut self, now: Instant) {
        if self.tls || self.config.tls == TlsPolicy::Never {
            return self.become_idle();
        }
        if self.extensions.contains(Extension::StartTls) {
            self.command(now, &Command::StartTls, Expect::StartTls);
        } else if self.config.tls == TlsPolicy::Required {
            // No plaintext fallback: say goodbye properly, then report.
            Command::Quit.encode(&mut self.out);
            self.fail(ClientError::TlsNotOffered);
        } else {
            self.become_idle();
        }
    }

    fn on_mail_reply(&mut self, now: Instant, reply: Reply) {
        let Some(flight) = self.current.as_mut() else { return };
        let ok = reply.is_success();
        flight.mail = Some(reply);
        if ok {
            if self.expect.is_empty() {
                // Not pipelined: RCPTs one by one.
                self.next_rcpt(now, 0);
            }
        } else if self.expect.is_empty() {
            self.end_failed(now);
        }
    }

    fn next_rcpt(&mut self, now: Instant, index: usize) {
        let Some(flight) = self.current.as_ref() else { return };
        match flight.msg.recipients.get(index) {
            Some((to, params)) => {
                let rcpt = Command::Rcpt {
                    to: to.clone(),
                    params: params.clone(),
                };
                self.command(now, &rcpt, Expect::Rcpt(index));
            }
            None => self.start_content(now),
        }
    }

    fn on_rcpt_reply(&mut self, now: Instant, index: usize, reply: Reply) {
        let Some(flight) = self.current.as_mut() else { return };
        flight.rcpts.push(reply.clone());
        self.events.push_back(ClientEvent::RcptResult { index, reply });
        let pipelined = flight.data_pipelined || !self.expect.is_empty();
        let mail_ok = flight.mail.as_ref().is_some_and(Reply::is_success);
        if pipelined {
            // With pipelining, every RCPT is already sent. Once the last reply is
            // in and DATA was not pipelined (BDAT), start the content.
            if self.expect.is_empty() {
                if mail_ok {
                    self.start_content(now);
                } else {
                    self.end_failed(now);
                }
            }
        } else {
            self.next_rcpt(now, index + 1);
        }
    }

    /// All RCPT replies are in and DATA was not pipelined.
    fn start_content(&mut self, now: Instant) {
        let Some(flight) = self.current.as_mut() else { return };
        if !flight.rcpts.iter().any(Reply::is_success) {
            return self.end_failed(now);
        }
        if flight.chunked {
            if let Some(size) = flight.msg.streamed {
                return self.start_streamed(now, size, true);
            }
            let size = flight.msg.body.len() as u64;
            Command::Bdat { size, last: true }.encode(&mut self.out);
            self.out.extend_from_slice(&flight.msg.body);
            self.arm(now, &Expect::DataEnd);
            self.expect.push_back(Expect::DataEnd);
        } else {
            self.command(now, &Command::Data, Expect::DataCommand);
        }
    }

    fn on_data_command_reply(&mut self, now: Instant, reply: Reply) {
        let Some(flight) = self.current.as_mut() else { return };
        let any_rcpt = flight.rcpts.iter().any(Reply::is_success);
        let mail_ok = flight.mail.as_ref().is_some_and(Reply::is_success);
        if reply.code == 354 && any_rcpt && mail_ok {
            if let Some(size) = flight.msg.streamed {
                return self.start_streamed(now, size, false);
            }
            encode_data(&flight.msg.body, &mut self.out);
            self.arm(now, &Expect::DataEnd);
            self.expect.push_back(Expect::DataEnd);
        } else if reply.code == 354 {
            // Pipelined DATA was accepted although no recipient was: send an
            // empty message terminator, the server will reject it or we RSET.
            self.out.extend_from_slice(b".\r\n");
            self.arm(now, &Expect::DataEnd);
            self.expect.push_back(Expect::DataEnd);
            if let Some(flight) = self.current.as_mut() {
                flight.data_pipelined = false;
            }
        } else {
            if let Some(flight) = self.current.take() {
                let data = (mail_ok && any_rcpt).then_some(reply);
                self.events.push_back(ClientEvent::MessageDone(finish(flight, data)));
            }
            self.reset(now);
        }
    }

    /// The message cannot go on (MAIL refused or no recipient): report, RSET.
    fn end_failed(&mut self, now: Instant) {
        if let Some(flight) = self.current.take() {
            self.events.push_back(ClientEvent::MessageDone(finish(flight, None)));
        }
        self.reset(now);
    }

    fn reset(&mut self, now: Instant) {
        self.command(now, &Command::Rset, Expect::Rset);
    }
}
