//! JMAP (RFC 8620, 8621): our own transport on reqwest + serde_json, and the mapping between
//! JMAP objects and the project's IMAP-shaped model; [`JmapStore`] puts an account behind
//! [`super::MailStore`].
//!
//! # Why our own transport
//!
//! jmap-client 0.4.3 fails against Cyrus as it is (relative session URLs, an 11-capability
//! `using` that Cyrus refuses, unknown error types failing the whole parse, `existingId`
//! dropped). We reuse its [`jmap_client::mailbox::MailboxRights`] and write the rest.
//!
//! # Files
//!
//! - [`session`]: `jmap://user@host[:port][/path]` (HTTPS) and `jmap+http://` (plain HTTP,
//!   loopback only unless allowed), Basic or Bearer [`session::Credentials`], the session
//!   document with relative URLs resolved against the URL it was served from, the limits.
//! - [`client`]: [`JmapClient`]: one pooled HTTP client, session discovery (following the
//!   redirect Cyrus gives), the request envelope with `using` = core + mail only, method calls
//!   with back-references, packing of independent calls within `maxCallsInRequest` and
//!   `maxSizeRequest`, concurrency within `maxConcurrentRequests`.
//! - [`error`]: [`JmapError`] (what failed, where, what to do; tolerant of unknown error types),
//!   method errors, per-object [`error::SetError`] with `existingId`.
//! - [`set`]: the `/set` answer and per-object outcomes.
//! - [`changes`]: `/changes` with `hasMoreChanges` paging and the changed objects fetched by
//!   back-reference in the same request; pages merged into net changes.
//! - [`mailbox`]: `Mailbox/get`, `Mailbox/changes`, create (parents first, role), rename,
//!   destroy, and [`mailbox::MailboxTree`] (parent ids to folder paths).
//! - [`email`]: listing a mailbox, `Email/get`, `Email/changes`, `Email/import`, keyword and
//!   `mailboxIds` patches, destroy, and removal from one mailbox.
//! - [`blob`]: upload and bounded download.
//! - [`push`]: waiting for a change over the session's EventSource (RFC 8620 section 7.3),
//!   Server-Sent Events framing, StateChange parsing; [`push::PushOutcome::Unavailable`] with
//!   the reason when the server does not push (Cyrus answers 204), so the caller polls.
//! - [`keywords`]: pure flag <-> keyword, SPECIAL-USE <-> role, JSON Pointer escaping.
//! - [`uid_map`]: [`uid_map::UidMap`], UIDVALIDITY and UIDs for a JMAP account's mailboxes,
//!   kept in a redb file beside the pair's state (JMAP's answer to `dovecot-uidlist`).
//! - [`store`]: [`JmapStore`], the account as IMAP-shaped folders behind `MailStore`.
//!
//! What the `MailStore` trait and the engine would need to host a JMAP side is written at the
//! end of this file.

pub mod blob;
pub mod changes;
pub mod client;
pub mod email;
pub mod error;
pub mod keywords;
pub mod mailbox;
pub mod push;
pub mod session;
pub mod set;
pub mod store;
pub mod uid_map;

pub use client::{ConnectOptions, JmapClient};
pub use error::JmapError;
pub use store::JmapStore;

// ------------------------------------------------------------------------------------------
// Hosting a JMAP side behind `MailStore`: what the trait and the engine would need
// (recommendation, written with what Cyrus 3.6 showed in tests/jmap_cyrus.rs)
// ------------------------------------------------------------------------------------------
//
// Where the two models differ:
//
// 1. Identity. IMAP has instances, (folder, UID), each with its own flags. JMAP has emails with
//    an account-wide id, in one or more mailboxes (`mailboxIds`), with ONE keyword set. Cyrus
//    holds at most one email per content per account: importing a blob it already holds,
//    into any mailbox, answers `alreadyExists` + `existingId` and changes nothing (neither
//    mailboxes nor keywords). So on a JMAP side, "the same message twice in one folder" cannot
//    exist, and the same content in two folders is one email with two mailboxIds.
// 2. Change detection is per account, not per folder: one `Email/changes` + `Mailbox/changes`
//    from two saved state strings says whether anything changed anywhere (a no-op pass is one
//    request). There is no UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ; the mailbox id is the folder id.
// 3. Writes are upload-then-import (bytes once, placed in several mailboxes at once), a
//    `mailboxIds` patch for COPY/MOVE, keyword patches for STORE, and a destroy only when the
//    last mailbox goes (a patch emptying `mailboxIds` is refused, except on Cyrus after the
//    email was once moved, when it silently destroys it: always decide explicitly, as
//    `email::removal` does).
//
// Trait changes (src/mailstore/mod.rs), smallest first:
//
// a. An opaque message key instead of `u32` UIDs everywhere: `enum MessageKey { Uid(u32),
//    Id(String) }` (Ord, serde), in `MessageMeta`, `fetch_bodies`, `fetch_message_ids`,
//    `store_flags`, `copy`, `expunge`, and as `append`'s result. IMAP keeps `Uid`.
// b. `FolderStatus` gets `folder_id: Option<String>` (JMAP mailbox id; IMAP MAILBOXID where
//    offered) and its UID fields become one `FolderToken` enum (`Imap { uidvalidity, uidnext,
//    highest_modseq }` | `Jmap`), so the engine stops reading UIDVALIDITY on a JMAP side.
//    `permanent_flags` on JMAP: from `myRights.maySetKeywords`/`maySetSeen`, `\Deleted` never.
// c. `MessageMeta` gets `content_hint: Option<String>` (JMAP blobId; on Cyrus `G` + SHA-1 of the
//    stored bytes, so identity and adoption need no download) and `message_id` (JMAP gives it
//    with the metadata for free, saving `fetch_message_ids`).
// d. `Capabilities` gets protocol-neutral facts the planner must respect:
//    `flags_per_instance` (false on JMAP: flags are per email, the target's keywords are the
//    union of its instances' flags, as DESIGN says), `duplicates_in_folder` (false on JMAP),
//    `copy_keeps_key` (true on JMAP: a copy is the same email id), `account_changes` (true on
//    JMAP), `max_batch` (maxObjectsInSet), `max_message_size` (maxSizeUpload).
// e. New operations with IMAP defaults: `move_messages(keys, to)` (IMAP: UID MOVE or
//    COPY+EXPUNGE; JMAP: one `mailboxIds` patch), `rename_folder(from, to)` (IMAP RENAME;
//    JMAP `Mailbox/set` name/parentId; Cyrus refuses to rename or move a nested mailbox that
//    has a role: report it, do not retry), and `account_changes(since: &SideToken) ->
//    Option<AccountChanges>` (None on IMAP; on JMAP the folder-level and email-level changes
//    with the new states; `cannotCalculateChanges` -> the caller lists everything).
// f. `append` on JMAP = upload each message (within maxConcurrentUpload), one `Email/import` per
//    batch; on `alreadyExists` the adapter itself adds the mailbox (and the missing keywords)
//    to the existing email by patch and returns its id, flagged as "placed on an existing
//    email" so the engine can record the fidelity note "one email per content". `open_folder`
//    only remembers the mailbox id (JMAP is stateless); `list_messages` is
//    `JmapClient::list_mailbox`; `fetch_bodies` is `download` by blobId; `expunge` is
//    `remove_from_mailbox`. A read-only side refuses every write before the wire, as IMAP does
//    (JMAP reads never set `$seen`).
//
// Engine and state changes:
//
// - State keys: (folder, source UID) becomes (folder id, source MessageKey); the target's
//   MessageKey is stored as is. Bump the schema version; old files read as `Uid` keys.
// - Per-side tokens: an account-level token (JMAP Email and Mailbox states) beside the
//   per-folder ones; a pass on a side with `account_changes` asks for changes first and
//   re-lists only the mailboxes they touch (or all on `cannotCalculateChanges`). A full
//   listing takes the state first (`list_mailbox` does) and catches up with changes after.
// - Planning for a JMAP target groups instances by target email: flags to write are the union
//   over the email's instances; placing content the target holds anywhere is a `mailboxIds`
//   add (the existing "COPY what the target holds" path with `copy_keeps_key`); the per-folder
//   ordinal of duplicate copies collapses to one email (a fidelity note, accepted by verify).
// - Journal and recovery: before an import batch, journal the Email state instead of UIDNEXT;
//   to resolve an interrupted batch, `Email/changes` from that state lists the emails created,
//   matched by blobId/size/receivedAt (no bodies needed on Cyrus).
// - Removals from a JMAP source: RFC 8621 hides `\Deleted` messages, so a disappearance may be
//   a pending IMAP delete; keep the removal budget as it is, it covers this.
// - Errors: `From<JmapError> for StoreError` (error.rs) already maps to the engine's classes;
//   "connection lost" on JMAP only means "connect again" (a new session, cheap).
//
// Suggested order: (a)-(c) with no behaviour change for IMAP; then a `JmapStore` adapter as a
// JMAP *target* (the recovery-server case, Cyrus), with the union-of-flags rule in the
// planner; then account-level change detection; then a JMAP source.
