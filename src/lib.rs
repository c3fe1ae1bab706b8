//! mailreplica keeps a hot copy of mailboxes on a recovery mail server over IMAP and JMAP.
//!
//! # Layers
//!
//! Data flows top to bottom; each layer only calls the ones below it.
//!
//! - [`cli`]: argument parsing (clap), one file per subcommand, progress bars and summaries,
//!   errors to exit codes. The only layer that prints. `cli::migrate` is `sync` with a
//!   selection and no removal on the target, then `verify`. `cli::watch` runs one agent per pair
//!   as local tokio tasks (the pass shares per-pass state in `RefCell`s), bounds connections
//!   per server with fair semaphores, and turns SIGTERM/SIGINT into the agents' stop signal.
//! - [`engine`]: drives a pass (`engine::sync`): list the folders of both sides with their tokens
//!   (LIST-STATUS), freeze on time travel, propagate folder renames and deletions
//!   (`engine::folders`), skip folders whose tokens prove them unchanged, and work on the others
//!   concurrently over up to 4 connection pairs (`engine::workers`). Per folder: read each side in
//!   full or as the base plus what changed since the last pass (CONDSTORE/QRESYNC, else a flag
//!   rescan: `engine::snapshot`), resolve a batch a previous run left unfinished
//!   (`engine::recover`), plan, then validate and place messages (adopt what the target holds, MOVE
//!   or COPY content it holds elsewhere, APPEND the rest under a journal, fetching the next batch
//!   while this one uploads; a worker about to upload content another worker is uploading waits
//!   and copies it instead). Last, the pass's removals: moves first, the rest through the removal
//!   budget, expunged folder by folder over the same connection pairs; last, subscriptions follow
//!   the source. The target is seen through `engine::mapped` (the engine speaks source paths; a
//!   special-use folder named apart on the target is translated, see `reconcile::folder_map`).
//!   Keywords a target refuses are learned from its refusals and kept as a fidelity note
//!   (`engine::keywords`): the message goes without them. A copy uploaded with 8-bit header bytes
//!   is read back until the target is known to keep them (`engine::readback`): one stored otherwise
//!   gets a fidelity note, and the target's class becomes `normalising`, so `verify` and rebuilding
//!   match such copies by the tolerant key. Refusals of identical copies (a server's limit) are one
//!   report, accepted by verify. Emits progress as events. `engine::paced` is the store decorator
//!   the CLI puts under each side's folder mapping: the one place where a command a server answers
//!   "slow down" (`[THROTTLED]`, `[LIMIT]`, a suggested back-off time; classified by
//!   `StoreError::throttling`) is sent again after a wait, and where writes to the target are
//!   admitted by the rate limits of `migrate`/`sync` (`engine::throttle`: one token bucket per
//!   limit, shared by every connection to the target account). It also sizes multi-message
//!   APPEND commands: a connection lost during one cuts the run's group size to a quarter. `engine::probe` runs the fidelity
//!   probe `check` uses: one message in a folder of its own, read back, then removed.
//!   `engine::failover` holds the failed-over mark (every one-way pass refuses while it is set, and
//!   takes the request file `failover` leaves beside a state a running watch holds);
//!   `engine::failback` lists both sides in full, links them to the frozen base, and applies a
//!   merge plan to both sides. `engine::watch` is the agent of `watch`: the same pass at start, on
//!   every change the primary reports (IDLE on INBOX, or a JMAP primary's event stream;
//!   leading-edge debounce) and every poll
//!   interval, over one pass connection per side; outages back off and recover, a frozen pair
//!   stops, the stop signal ends it at a safe point. It reaches the servers through a `Link` the
//!   CLI implements over both protocols. `failover` and `sync --accept-regression` hand their request to a
//!   running watch through a file beside the state (`cli::handover`).
//! - [`reconcile`]: the pure core. Given the base (state) and what each side holds now, it
//!   returns a change set (placements, flag updates, removals); the removal budget decides which
//!   removals a pass applies; validation judges a message's bytes; adoption pairs copies by
//!   identity; `reconcile::fidelity` classifies a probe's round trip (exact, normalising,
//!   rewriting); `reconcile::merge` is failback's three-way merge (base x primary x recovery
//!   -> actions per side, conflicts, held items and the merged state), run by `failback`;
//!   `reconcile::folder_map` maps special-use folders named apart; `reconcile::selection` is
//!   what `migrate` copies (folder patterns, size and date limits); `reconcile::gmail` knows a
//!   Gmail source's folders (`migrate --preset gmail`: views left out, system folders to the
//!   target's, All Mail copied only for what no label holds, found by `engine::all_mail`).
//!   No I/O.
//! - [`mailstore`]: one narrow async trait, [`mailstore::MailStore`], implemented over IMAP
//!   ([`mailstore::imap`], on async-imap's framing with our own command layer, IDLE included;
//!   login by PLAIN/LOGIN, PLAIN with an authorization identity, XOAUTH2 or OAUTHBEARER;
//!   NAMESPACE read raw, its personal prefix left out of folder paths; literal8 in responses
//!   read as literals under the framing; a batch's messages go as one MULTIAPPEND where
//!   offered, several pipelined commands otherwise, and BINARY APPEND for messages with NUL), over JMAP
//!   ([`mailstore::jmap`]: our own transport on reqwest + serde_json, session discovery,
//!   batched calls with back-references within the session's limits, blob upload/download,
//!   push over the event stream; `jmap::store::JmapStore` shows an account as IMAP folders
//!   through `jmap::uid_map`, a redb file beside the state giving each email a UID per
//!   mailbox and each mailbox a change counter raised by `Email/changes`, its
//!   HIGHESTMODSEQ) and in memory ([`mailstore::memory`], for fast engine tests).
//!   [`mailstore::any::AnyStore`] picks IMAP or JMAP by the URL's scheme; the CLI uses it for
//!   every command.
//! - [`state`]: the redb state file: per folder, per message instance, what was synced
//!   (instances as compact binary records, `state::instance_codec`), plus journal, held
//!   removals, quarantine, refusals and fidelity notes. A folder worker tracks the changes it
//!   commits (`StateFile::track`) instead of reading its instances twice.
//! - [`model`]: the vocabulary (folder paths as components, with a reversible stand-in for a
//!   server's separator inside a name; flags, fingerprints, the tolerant key, dates), no I/O.
//! - [`config`]: URLs, password sources, how a side logs in (password, an admin acting for
//!   the user, an OAuth access token that a refusal fetches again, shared by every connection
//!   to the side) and connection settings, validated; the TOML configuration file (servers,
//!   accounts, pairs) of `watch` and `status`.
//! - [`crashpoint`]: `MAILREPLICA_CRASH_AT` hooks that let crash tests kill the process at a
//!   chosen step.
//!
//! # Invariants
//!
//! - A message's identity is the SHA-256 of its CRLF-normalised bytes; copies in one folder are
//!   distinct instances (the state is keyed by source UID, and adoption pairs copies in UID
//!   order). The state also keeps, per content read from or uploaded to a side that names
//!   content by SHA-1 (Cyrus over JMAP), that SHA-1, so such a side that lost its UIDs is
//!   matched again without reading bodies (`engine::rekey` for a source, adoption by SHA-1
//!   for a target).
//! - The source is opened with EXAMINE and read with BODY.PEEK: a sync never changes it.
//! - A target message is removed only when the state maps it to a source message that a complete
//!   listing no longer shows, and only below the removal guard. A failed or partial listing
//!   aborts the pass; it never reads as "empty".
//! - Each upload batch is journaled before it is sent and committed after; a crash in between
//!   leaves a journal entry the next pass resolves by identity, so nothing is uploaded twice
//!   (order of operations in [`state`]).
//! - A folder is read from changes only when the last pass left it complete (every source
//!   message mapped, its removals applied); its tokens are stored only after its writes
//!   are proven to be the only change. UIDNEXT or HIGHESTMODSEQ going down freezes the pair
//!   before anything is written.
//! - A failed-over pair keeps its base frozen until a failback has applied its whole plan to
//!   both sides and a second merge plans nothing; only then is the base replaced (by a sync
//!   pass that adopts by identity). A failback stopped anywhere is run again and re-merges.
//! - Removals that look like damage (a folder suddenly empty, more than the 24 h budget) are held
//!   for the user, never applied by a later pass on its own.
//! - Secrets live in [`config::Secret`] (zeroized, redacted in `Debug`), never in logs, errors
//!   or the state.

pub mod cli;
pub mod config;
pub mod crashpoint;
pub mod engine;
pub mod mailstore;
pub mod model;
pub mod reconcile;
pub mod state;
