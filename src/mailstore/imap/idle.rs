//! IMAP IDLE (RFC 2177) on the open folder: wait for the server to report a change.
//!
//! async-imap's IDLE reports a server EOF as `ManualInterrupt`, the same as our own interrupt
//! (CRATES.md hazard 5), so IDLE is written here on the guarded connection instead: our stop
//! is a future the caller passes in, and ends the wait as [`IdleEnd::Stopped`]; a server EOF,
//! BYE or error is a [`StoreError::ConnectionLost`]. IDLE is renewed (DONE, then IDLE again)
//! every `renew`, and the DONE must be answered within the connection's timeout: a link that
//! went silent (TCP keepalive is on, but a middlebox can swallow it) is found dead at most
//! `renew` + timeout after its last sign of life, under twice `renew` with the defaults.

use std::future::Future;
use std::time::Duration;

use imap_proto::{MailboxDatum, Response, Status};
use tokio::time::Instant;

use super::connection::{Ctx, Part};
use super::ImapStore;
use crate::mailstore::StoreError;

/// Why [`ImapStore::idle`] returned without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleEnd {
    /// Our stop future completed; IDLE was ended with DONE and the connection is usable.
    Stopped,
}

/// What an untagged response during IDLE means.
fn is_change(response: &Response<'_>) -> bool {
    match response {
        Response::MailboxData(MailboxDatum::Exists(_) | MailboxDatum::Recent(_)) => true,
        Response::Expunge(_) | Response::Fetch(..) | Response::Vanished { .. } => true,
        // `* OK Still here` and other status chatter: the link is alive, nothing changed.
        _ => false,
    }
}

impl ImapStore {
    /// True when the server offers IDLE.
    pub fn can_idle(&self) -> bool {
        self.caps.idle
    }

    /// IDLEs on the open folder until `stop` completes, calling `on_change` for every change
    /// the server reports (new, expunged, flags changed). Returns only when stopped or when the
    /// connection failed; the caller then drops the connection.
    pub async fn idle<F: Future<Output = ()>>(
        &mut self,
        renew: Duration,
        on_change: &dyn Fn(),
        stop: F,
    ) -> Result<IdleEnd, StoreError> {
        let folder = self.selected_display();
        let ctx = Ctx::on("IDLE", &folder);
        self.selected_name("IDLE")?;
        let renew = renew.max(Duration::from_secs(1));
        tokio::pin!(stop);
        loop {
            let tag = self.conn.send(&[Part::Text("IDLE")], ctx).await?;
            self.conn.await_continuation(&tag, ctx).await?;
            let renew_at = Instant::now() + renew;
            let stopped = loop {
                let now = Instant::now();
                if now >= renew_at {
                    break false;
                }
                let wait = renew_at - now;
                let read = tokio::select! {
                    biased;
                    _ = &mut stop => None,
                    r = self.conn.read_within(wait, ctx) => Some(r),
                };
                let Some(read) = read else {
                    break true;
                };
                let Some(response) = read? else {
                    continue;
                };
                match response.parsed() {
                    Response::Data {
                        status: Status::Bye,
                        outcome,
                    } => {
                        let text = outcome.information.as_deref().unwrap_or("").to_string();
                        self.conn.invalidate("BYE during IDLE");
                        return Err(StoreError::ConnectionLost {
                            endpoint: self.endpoint.clone(),
                            command: "IDLE".into(),
                            detail: format!(
                                "the server ended the session while idling on {folder} (BYE {text})"
                            ),
                        });
                    }
                    Response::Done { .. } => {
                        // A completion we did not ask for: the server ended IDLE on its own.
                        // The connection is out of step; the caller opens a new one.
                        let detail = format!("the server ended IDLE on {folder} on its own");
                        return Err(self.conn.protocol_error(ctx, detail));
                    }
                    r if is_change(r) => on_change(),
                    _ => {}
                }
            };
            // Renewal or stop: end this IDLE. The tagged OK must come within the connection's
            // timeout, or the connection is dead.
            self.conn.write_line("DONE", ctx).await?;
            let done = self.conn.finish(&tag, ctx).await?;
            if done.untagged.iter().any(|r| is_change(r.parsed())) {
                on_change();
            }
            if stopped {
                return Ok(IdleEnd::Stopped);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mailbox_changes_count() {
        let (_, exists) = Response::parse(b"* 3 EXISTS\r\n").unwrap();
        assert!(is_change(&exists));
        let (_, expunge) = Response::parse(b"* 2 EXPUNGE\r\n").unwrap();
        assert!(is_change(&expunge));
        let (_, fetch) = Response::parse(b"* 1 FETCH (FLAGS (\\Seen))\r\n").unwrap();
        assert!(is_change(&fetch));
        let (_, still) = Response::parse(b"* OK Still here\r\n").unwrap();
        assert!(!is_change(&still));
    }
}
