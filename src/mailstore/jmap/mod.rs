//! JMAP (RFC 8620, 8621): our own transport on reqwest + serde_json, and the mapping between
//! JMAP objects and the project's IMAP-shaped model. Not yet behind [`super::MailStore`].
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
//! - [`keywords`]: pure flag <-> keyword, SPECIAL-USE <-> role, JSON Pointer escaping.

pub mod blob;
pub mod changes;
pub mod client;
pub mod email;
pub mod error;
pub mod keywords;
pub mod mailbox;
pub mod session;
pub mod set;

pub use client::{ConnectOptions, JmapClient};
pub use error::JmapError;
