//! APPEND with flags and INTERNALDATE: messages grouped into MULTIAPPEND commands where the
//! server offers it, every command pipelined with LITERAL+; APPENDUID read where offered,
//! BINARY (literal8) for messages holding NUL.

use std::ops::Range;

use imap_proto::rfc4315::UidSetMember;
use imap_proto::ResponseCode;

use super::connection::{Completion, Ctx, Part};
use super::list::quote_mailbox;
use super::ImapStore;
use crate::mailstore::error::throttling_in;
use crate::mailstore::{AppendRequest, StoreError};
use crate::model::FolderPath;

/// One message's outcome: its UID when the server said (APPENDUID), or why it was refused.
type Appended = Result<Option<u32>, StoreError>;

impl ImapStore {
    /// Appends in order.
    ///
    /// Where the server offers MULTIAPPEND (RFC 3502) the messages go in groups of at most
    /// `append_group_bytes` (the whole batch by default), one command per group, which the
    /// server commits as one transaction: Dovecot takes about a quarter of the time of as many
    /// single APPENDs (measured: 200 messages of 20 KB, 0.06 s against 0.2 s). With LITERAL+
    /// every command is written before any answer is read (one round trip per batch);
    /// otherwise each literal waits for its continuation.
    ///
    /// A MULTIAPPEND is all or nothing, so a group it refuses is sent again one message per
    /// command, after the other groups, and each message gets its own answer; a refusal that
    /// would refuse every message alike (throttling, a missing folder) is not sent again.
    /// A per-message NO is returned in its slot; a connection failure fails the whole call,
    /// and the caller must treat the batch's outcome as unknown (groups answered before it
    /// are stored).
    pub(super) async fn append_batch(
        &mut self,
        path: &FolderPath,
        messages: &[AppendRequest<'_>],
    ) -> Result<Vec<Appended>, StoreError> {
        let wire = self.wire_name(path)?;
        let display = path.to_string();
        let ctx = Ctx::on("APPEND", &display);
        let mailbox = quote_mailbox(&wire);
        let mut results: Vec<Option<Appended>> = messages.iter().map(|_| None).collect();
        let groups = self.append_groups(messages);
        let mut each = Vec::new();
        for (group, outcome) in self.send_groups(&mailbox, messages, groups, ctx).await? {
            match outcome {
                Ok(done) => {
                    let uids = if group.len() == 1 {
                        vec![append_uid(&done)]
                    } else {
                        append_uids(&done, group.len())
                    };
                    for (i, uid) in group.zip(uids) {
                        crate::crashpoint::hit("after_append_ok");
                        results[i] = Some(Ok(uid));
                    }
                }
                Err(StoreError::No {
                    endpoint,
                    command,
                    folder,
                    text,
                    code,
                }) => {
                    let alike = group.len() == 1
                        || code.as_deref() == Some("TRYCREATE")
                        || throttling_in(code.as_deref(), &text).is_some();
                    if !alike {
                        tracing::debug!(%endpoint, %folder, %text, "MULTIAPPEND refused; sending its messages one per APPEND");
                        each.extend(group.map(|i| i..i + 1));
                        continue;
                    }
                    for i in group {
                        results[i] = Some(Err(StoreError::No {
                            endpoint: endpoint.clone(),
                            command: command.clone(),
                            folder: folder.clone(),
                            text: text.clone(),
                            code: code.clone(),
                        }));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        for (group, outcome) in self.send_groups(&mailbox, messages, each, ctx).await? {
            let i = group.start;
            results[i] = Some(match outcome {
                Ok(done) => {
                    crate::crashpoint::hit("after_append_ok");
                    Ok(append_uid(&done))
                }
                Err(e @ StoreError::No { .. }) => Err(e),
                Err(e) => return Err(e),
            });
        }
        // Every message is in exactly one command; one without an answer would be a bug, and
        // its batch's outcome is then unknown (the journal resolves it on the next pass).
        results
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| StoreError::Protocol {
                    endpoint: self.endpoint.clone(),
                    command: "APPEND".into(),
                    detail: format!("a message of {display} got no answer (a mailreplica bug)"),
                })
            })
            .collect()
    }

    /// The messages of each APPEND command, in order: consecutive messages up to
    /// `append_group_bytes` each (at least one) with MULTIAPPEND, one each without.
    fn append_groups(&self, messages: &[AppendRequest<'_>]) -> Vec<Range<usize>> {
        let mut groups: Vec<Range<usize>> = Vec::new();
        let mut bytes = 0u64;
        for (i, m) in messages.iter().enumerate() {
            let size = m.bytes.len() as u64;
            match groups.last_mut() {
                Some(g)
                    if self.caps.multiappend
                        && bytes.saturating_add(size) <= self.append_group_bytes =>
                {
                    g.end = i + 1;
                    bytes += size;
                }
                _ => {
                    groups.push(i..i + 1);
                    bytes = size;
                }
            }
        }
        groups
    }

    /// Sends one APPEND command per group (pipelined with LITERAL+) and reads every answer.
    /// The outer error is a failure of the connection.
    async fn send_groups(
        &mut self,
        mailbox: &str,
        messages: &[AppendRequest<'_>],
        groups: Vec<Range<usize>>,
        ctx: Ctx<'_>,
    ) -> Result<Vec<(Range<usize>, Result<Completion, StoreError>)>, StoreError> {
        let mut outcomes = Vec::with_capacity(groups.len());
        if self.caps.literal_plus {
            let mut tags = Vec::with_capacity(groups.len());
            for group in &groups {
                let heads = command_heads(mailbox, &messages[group.clone()]);
                let parts = self.command_parts(&heads, &messages[group.clone()]);
                tags.push(self.conn.send(&parts, ctx).await?);
            }
            for (group, tag) in groups.into_iter().zip(tags) {
                outcomes.push((group, connection_kept(self.conn.finish(&tag, ctx).await)?));
            }
        } else {
            for group in groups {
                let heads = command_heads(mailbox, &messages[group.clone()]);
                let parts = self.command_parts(&heads, &messages[group.clone()]);
                let outcome = connection_kept(self.conn.run(&parts, ctx).await)?;
                outcomes.push((group, outcome));
            }
        }
        Ok(outcomes)
    }

    /// An APPEND command's parts: each message's head, then its literal.
    fn command_parts<'a>(
        &self,
        heads: &'a [String],
        messages: &[AppendRequest<'a>],
    ) -> Vec<Part<'a>> {
        let mut parts = Vec::with_capacity(2 * messages.len());
        for (head, m) in heads.iter().zip(messages) {
            parts.push(Part::Text(head));
            parts.push(self.literal(m.bytes));
        }
        parts
    }

    /// A message with a NUL byte goes as a literal8 where the server offers BINARY (RFC 3516):
    /// servers refuse NUL in a plain literal. Everything else as a plain literal.
    fn literal<'a>(&self, bytes: &'a [u8]) -> Part<'a> {
        if self.caps.binary && memchr::memchr(0, bytes).is_some() {
            Part::Literal8(bytes)
        } else {
            Part::Literal(bytes)
        }
    }
}

/// The text before each message's literal in one APPEND command: the mailbox before the
/// first, then each message's flags and date.
fn command_heads(mailbox: &str, messages: &[AppendRequest<'_>]) -> Vec<String> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let head = format!(
                "{} {} ",
                m.flags.to_imap_list(),
                m.internaldate.to_imap_quoted()
            );
            if i == 0 {
                format!("APPEND {mailbox} {head}")
            } else {
                format!(" {head}")
            }
        })
        .collect()
}

/// Keeps a command's answer (OK or NO) for its messages; a failure of the connection is
/// returned.
fn connection_kept(
    result: Result<Completion, StoreError>,
) -> Result<Result<Completion, StoreError>, StoreError> {
    match result {
        Err(e @ StoreError::No { .. }) => Ok(Err(e)),
        Err(e) => Err(e),
        ok => Ok(ok),
    }
}

/// The UIDs of a MULTIAPPEND's messages, in order (RFC 4315: APPENDUID's set lists them in
/// the order appended); all `None` when the server gave none, or not one per message.
fn append_uids(done: &Completion, count: usize) -> Vec<Option<u32>> {
    let uids: Vec<u32> = match done.code() {
        Some(ResponseCode::AppendUid(_, members)) => members
            .iter()
            .flat_map(|m| match m {
                UidSetMember::Uid(u) => *u..=*u,
                UidSetMember::UidRange(r) => *r.start().min(r.end())..=*r.start().max(r.end()),
            })
            .take(count + 1)
            .collect(),
        _ => Vec::new(),
    };
    if uids.len() == count {
        uids.into_iter().map(Some).collect()
    } else {
        vec![None; count]
    }
}

fn append_uid(done: &Completion) -> Option<u32> {
    match done.code() {
        Some(ResponseCode::AppendUid(_, members)) => members.first().map(|m| match m {
            UidSetMember::Uid(u) => *u,
            UidSetMember::UidRange(r) => *r.start(),
        }),
        _ => None,
    }
}
