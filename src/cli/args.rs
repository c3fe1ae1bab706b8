//! Argument definitions, shared by every subcommand and by the man pages.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Mechanism;

#[derive(Debug, Parser)]
#[command(
    name = "mailreplica",
    version,
    about = "Keep a hot copy of mailboxes on a recovery mail server, over IMAP",
    long_about = "mailreplica replicates mailboxes from a primary IMAP server to a recovery IMAP server: \
folders, messages byte for byte, flags and keywords, INTERNALDATE. It keeps what it synced in a state \
file so each run transfers only what changed, and never removes mail on the target unless the state \
proves it was synced and then removed on the source.",
    after_help = "Exit codes: 0 in sync; 1 differences found (verify); 2 usage or configuration error; \
3 held removals or refused messages need attention; 69 a server is unavailable; 75 temporary failure, \
retry later; 77 authentication refused; 78 configuration refused by a server."
)]
pub struct Cli {
    /// More log output (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log lines as plain text or as one JSON object per line (for log shippers)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-way sync: make the target account match the source account
    Sync(SyncArgs),
    /// Compare two accounts folder by folder and message by message
    Verify(VerifyArgs),
    /// Show what the state knows: last pass, held removals, given-up messages
    Status(StatusArgs),
    /// Release held removals so that the next sync applies them
    Release(ReleaseArgs),
    /// Keep pairs in step continuously: a pass at start, then on every change the primary
    /// reports (IDLE) and at least every poll interval; --once for cron
    Watch(WatchArgs),
    /// Log in to both sides and show capabilities, folders, the target's fidelity class, the
    /// folder mapping and the connection cap; writes nothing but a probe message it removes
    Check(CheckArgs),
    /// Freeze the pair at switch-over to the recovery side: one-way sync stops until failback
    Failover(FailoverArgs),
    /// Merge both sides three ways against the base frozen by failover, then resume one-way sync
    Failback(FailbackArgs),
    /// Copy an account to another provider: the source is only read, the target only gains
    /// messages; folder patterns, size and date limits; verify at the end
    Migrate(MigrateArgs),
}

/// The two accounts of a pair and how to reach them.
#[derive(Debug, Clone, Args)]
pub struct PairArgs {
    /// Source (primary) account: imap://user@host:port (STARTTLS) or imaps://user@host:port
    #[arg(long, value_name = "URL")]
    pub source: String,

    /// Target (recovery) account: imap://user@host:port or imaps://user@host:port
    #[arg(long, value_name = "URL")]
    pub target: String,

    /// Read the source password from the first line of this file (else MAILREPLICA_SOURCE_PASSWORD)
    #[arg(long, value_name = "FILE")]
    pub source_password_file: Option<PathBuf>,

    /// Run this command (no shell) and use the first line of its output as the source password
    #[arg(long, value_name = "COMMAND")]
    pub source_password_command: Option<String>,

    /// Read the target password from the first line of this file (else MAILREPLICA_TARGET_PASSWORD)
    #[arg(long, value_name = "FILE")]
    pub target_password_file: Option<PathBuf>,

    /// Run this command (no shell) and use the first line of its output as the target password
    #[arg(long, value_name = "COMMAND")]
    pub target_password_command: Option<String>,

    /// How to log in to the source: plain (a password, by AUTHENTICATE PLAIN or LOGIN),
    /// xoauth2 or oauthbearer (an OAuth 2.0 access token, read from the source password file,
    /// command or MAILREPLICA_SOURCE_PASSWORD; a token from a command or file that the server
    /// refuses is fetched again once: the command runs again)
    #[arg(long, value_name = "MECHANISM", default_value = "plain")]
    pub source_auth: Mechanism,

    /// Log in to the source as this admin, with the admin's password (from the source password
    /// file, command or variable), and act as the URL's user: SASL PLAIN with an authorization
    /// identity (Dovecot master users, Cyrus admins). The user's own password is not needed
    #[arg(long, value_name = "NAME")]
    pub source_admin: Option<String>,

    /// How to log in to the target: plain, xoauth2 or oauthbearer (as --source-auth; the token
    /// from the target password file, command or MAILREPLICA_TARGET_PASSWORD)
    #[arg(long, value_name = "MECHANISM", default_value = "plain")]
    pub target_auth: Mechanism,

    /// Log in to the target as this admin with the admin's password, acting as the URL's user
    /// (as --source-admin)
    #[arg(long, value_name = "NAME")]
    pub target_admin: Option<String>,

    /// Trust this extra CA certificate (PEM), e.g. for self-signed test servers
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// Do not check TLS certificates at all (dangerous; said on stderr)
    #[arg(long)]
    pub insecure: bool,

    /// Allow imap:// without STARTTLS to a non-loopback host (passwords travel in clear)
    #[arg(long)]
    pub allow_plaintext: bool,

    /// Seconds to wait for any server answer before giving up on a connection
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub pair: PairArgs,

    /// State file (default: $XDG_STATE_HOME/mailreplica/<pair id>.redb)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Show what would be done; change nothing on the target or in the state
    #[arg(long)]
    pub dry_run: bool,

    /// Print the summary as one JSON object on stdout
    #[arg(long)]
    pub json: bool,

    /// Apply removals even when they reach 5 % of a folder (otherwise held, exit 3)
    #[arg(long)]
    pub allow_deletions: bool,

    /// After a lost connection, a timeout or an unavailable server, reconnect and resume up to
    /// this many times, waiting longer each time (exponential backoff with jitter)
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,

    /// Block messages that are broken as stored on the source (cut MIME parts, broken base64)
    /// instead of replicating them once they have settled
    #[arg(long)]
    pub strict_validation: bool,

    /// Upload messages that fail validation anyway (migrations of old, odd mail); the summary
    /// says how many
    #[arg(long)]
    pub accept_invalid: bool,

    /// Try again now the messages the target refused (otherwise a refused message is reported
    /// once and tried again a day later)
    #[arg(long)]
    pub retry_refused: bool,

    /// Seconds a message broken as stored must stay unchanged before it is replicated as it is
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub settle: u64,

    /// Connections per side for copying several folders at once (the primary is a live
    /// mailbox: servers cap connections per user, Dovecot at 10 by default)
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub connections: u16,

    /// Confirm that the source went back in time (restored from a backup) and thaw the pair:
    /// the regressed folders are matched again by identity; nothing is deleted on the target.
    /// When a running watch holds the state, the confirmation is handed to it
    #[arg(long)]
    pub accept_regression: bool,

    /// Throw away this pair's state and rebuild it by matching messages by identity (nothing
    /// the target already holds is uploaded again). A damaged state file is moved aside.
    #[arg(long)]
    pub rebuild_state: bool,

    /// Upload at most this many bytes per second to the target, over all connections
    /// together (message bytes of APPEND); a number with an optional K, M or G suffix
    /// (1024-based), e.g. 500K or 2M
    #[arg(long, value_name = "BYTES", value_parser = parse_byte_rate)]
    pub max_bytes_per_second: Option<u64>,

    /// Write at most this many messages per second to the target, over all connections
    /// together (APPEND, and COPY/MOVE of a message the target holds already); may be
    /// fractional, e.g. 0.5
    #[arg(long, value_name = "N", value_parser = parse_message_rate)]
    pub max_messages_per_second: Option<f64>,
}

/// `--max-bytes-per-second`: a positive whole number of bytes, with an optional K, M or G
/// suffix (1024-based; a trailing `B` or `iB` is allowed: `2MiB`).
pub fn parse_byte_rate(raw: &str) -> Result<u64, String> {
    let expected = "expected a positive number of bytes per second, optionally with a K, M or G suffix (1024-based), e.g. 500K or 2M";
    let text = raw.trim();
    let upper = text.to_ascii_uppercase();
    let unit = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (digits, factor) = match unit.chars().last() {
        Some('K') => (&unit[..unit.len() - 1], 1u64 << 10),
        Some('M') => (&unit[..unit.len() - 1], 1 << 20),
        Some('G') => (&unit[..unit.len() - 1], 1 << 30),
        _ => (unit, 1),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{raw:?}: {expected}"))?;
    match n.checked_mul(factor) {
        Some(0) => Err(format!("{raw:?} would stop every upload: {expected}")),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{raw:?} is too large: {expected}")),
    }
}

/// `--max-messages-per-second`: a positive number, fractions allowed.
pub fn parse_message_rate(raw: &str) -> Result<f64, String> {
    let expected = "expected a positive number of messages per second, e.g. 50 or 0.5";
    let n: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("{raw:?}: {expected}"))?;
    if !n.is_finite() || n <= 0.0 {
        return Err(format!("{raw:?}: {expected}"));
    }
    // Below one message a day is surely a typo (and the waits would overflow nothing useful).
    if n < 1.0 / 86_400.0 {
        return Err(format!("{raw:?} is below one message a day: {expected}"));
    }
    Ok(n)
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub pair: PairArgs,

    /// The pair's state file, whose fidelity notes verify accepts: keywords the target
    /// refuses, copies over its identical-message limit, copies it stores rewritten (matched by
    /// the tolerant key) (default: the pair's default state file, when there is one)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Folders only on the target (e.g. ones the server creates for every account) are
    /// differences, not notes
    #[arg(long)]
    pub strict: bool,

    /// Print the report as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// State file (default: every state file in $XDG_STATE_HOME/mailreplica/)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Every pair of this configuration file (see mailreplica-config(5)), by name; while a
    /// watch runs, what it last recorded
    #[arg(long, value_name = "FILE", conflicts_with = "state")]
    pub config: Option<PathBuf>,

    /// Print the status as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// State file of the pair
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,

    /// Release only the removals held in this folder (path with `/`, e.g. `Archive/2024`)
    #[arg(long, value_name = "FOLDER")]
    pub folder: Option<String>,
}

#[derive(Debug, Args)]
#[command(
    long_about = "Logs in to both sides and shows what a sync would meet: the capabilities that \
matter, the folder separator, folders and special-use folders, the folder mapping (same path on \
both sides: folders on both, folders sync would create, target-only folders it leaves alone), the \
connection cap, and the target's fidelity class from a probe.\n\nThe probe appends one small message \
(8-bit header, a 998-character line, a multipart with a base64 part) to a folder of its own, \
mailreplica-probe, reads it back, removes it by its UID and deletes the folder: exact (bytes and \
RFC822.SIZE round-trip), normalising (known transforms such as munged 8-bit header bytes) or \
rewriting (re-rendered, estimated sizes). The class is stored in the state file (shown by status). \
Nothing else is written to either side; the source is only read unless --probe-source is given."
)]
pub struct CheckArgs {
    #[command(flatten)]
    pub pair: PairArgs,

    /// State file where the probe result is stored (default: the one sync uses,
    /// $XDG_STATE_HOME/mailreplica/<pair id>.redb)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Print the report as one JSON object on stdout
    #[arg(long)]
    pub json: bool,

    /// Probe the source too: writes one message to a mailreplica-probe folder on the primary (the
    /// live mailbox) and removes it. Off by default: sync never writes to the source
    #[arg(long)]
    pub probe_source: bool,
}

#[derive(Debug, Args)]
#[command(
    long_about = "Records in the pair's state that the pair is failed over, with the time: the \
base (what both sides last agreed on) is frozen, and sync refuses to run (exit 3) until \
`mailreplica failback` merges both sides. Connects to no server. Running it again changes nothing."
)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub pair: PairArgs,

    /// State file (default: $XDG_STATE_HOME/mailreplica/<pair id>.redb)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Print the result as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(
    long_about = "Lists both sides in full, links their folders and messages to the base frozen by \
failover (folders by UIDVALIDITY, messages by UID), fetches the bodies of new messages only, and \
merges three ways: folders first (created, renamed, deleted on one side -> the same on the other; \
renamed differently on both -> both names kept), then messages (new on one side -> placed on the \
other, the same content new on both counts once; removed on one side and unchanged on the other -> \
removed; removed on one side and changed on the other -> kept, reported; moved -> moved; flags \
(A and B) or (A - base) or (B - base)). Prints the plan per side, grouped by folder, with the \
conflicts (as diffs) and the held items, then applies it to both sides and returns the pair to \
one-way replication with a fresh base. Killed midway, run it again: it re-lists and re-merges, \
and what was already applied reads as the same on both sides."
)]
pub struct FailbackArgs {
    #[command(flatten)]
    pub pair: PairArgs,

    /// State file (default: $XDG_STATE_HOME/mailreplica/<pair id>.redb)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Print the plan; change nothing on either side or in the state
    #[arg(long)]
    pub dry_run: bool,

    /// Print the plan (and what was applied) as one JSON object on stdout
    #[arg(long)]
    pub json: bool,

    /// Apply the plan even when a side would lose more messages than the removal budget
    /// (max(50, 5 % of the side)); otherwise nothing is applied and the exit code is 3
    #[arg(long)]
    pub allow_deletions: bool,
}

#[derive(Debug, Args)]
#[command(
    long_about = "Keeps one pair (--source/--target) or every pair of a configuration file \
(--config, see mailreplica-config(5)) in step until stopped. Each pair gets an agent: a full \
incremental pass at start (cheap when nothing changed: unchanged folders are skipped by their \
LIST-STATUS tokens), then a pass whenever the primary reports a change on INBOX (IMAP IDLE, renewed \
every --idle-renew seconds) and at least every --poll-interval seconds for the other folders. A \
change seen during a pass leads to one more pass right after it. On the primary an agent uses two \
connections: one idling, one for passes.\n\nA lost connection or a failed pass is retried with \
growing delays (at most a minute) and never stops the process; the outage and the recovery are \
logged. A pair whose primary went back in time (restored from a backup) is frozen: it is no longer \
replicated, the log and `mailreplica status` say why, the other pairs go on.\n\nSIGTERM or SIGINT \
stops every agent: a pass under way gets a few seconds to finish, else it is abandoned (its upload \
batch is journaled and resolved by the next run); the state is flushed and the exit code is 0.\n\n\
--once runs one pass of every pair and exits: 0 all in sync, 3 held removals or messages not \
replicated, 69/75/77 a server unavailable, a temporary failure, a refused login. Each pair's state \
file is locked while a watch runs, so an overlapping run exits at once (75) saying who holds it."
)]
pub struct WatchArgs {
    /// Configuration file (TOML) naming servers, accounts and pairs (see mailreplica-config(5))
    #[arg(long, value_name = "FILE", conflicts_with_all = ["source", "target", "state"])]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub pair: Option<PairArgs>,

    /// State file of the pair given by --source/--target (default:
    /// $XDG_STATE_HOME/mailreplica/<pair id>.redb)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// One pass of every pair, then exit with the common exit codes (for cron)
    #[arg(long)]
    pub once: bool,

    /// Seconds between passes when no change is reported (every folder is checked); default
    /// 60 (5 for a JMAP primary), or poll_interval in the file's [watch]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub poll_interval: Option<u64>,

    /// Seconds after which IDLE is ended and started again (silence for twice this long means
    /// the connection is dead); default 600, or idle_renew in the file's [watch]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=1740))]
    pub idle_renew: Option<u64>,

    /// Do not IDLE: find changes by polling only (one connection to the primary)
    #[arg(long)]
    pub no_idle: bool,

    /// Apply removals even when they reach the removal guard (otherwise held, see status)
    #[arg(long)]
    pub allow_deletions: bool,
}

/// A source provider whose quirks `migrate` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Gmail (or Google Workspace) as the source
    Gmail,
}

#[derive(Debug, Args)]
#[command(
    long_about = "One-way copy of an account to another server (a move between providers). The \
source is opened read-only (EXAMINE, BODY.PEEK: not even \\Seen changes); the target only gains \
messages: nothing is ever removed there, not even when the source loses a message later. Folders \
keep their paths, with the target's separator and namespace prefix, and special-use folders go \
into the target's folder of the same use (`Sent Items` -> `Sent`). Resumable: run the same \
command again and it copies only what is missing (the state file remembers what was copied). \
--dry-run prints the folder mapping and what would be copied. At the end, `verify` compares both \
accounts (skipped with --no-verify, and when a selection leaves messages out)."
)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub sync: SyncArgs,

    /// Copy only folders whose path (as printed, `Archive/2024`) matches this regular
    /// expression; repeatable
    #[arg(long, value_name = "REGEX")]
    pub include: Vec<String>,

    /// Leave out folders whose path matches this regular expression; repeatable
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,

    /// Rename folders on the way: 'REGEX=>TEMPLATE' on the folder's path (`$1`... from the
    /// regex's groups), the first matching rule wins; repeatable. Example:
    /// --map '^Old/(.*)=>Archive/$1'
    #[arg(long = "map", value_name = "RULE")]
    pub map: Vec<String>,

    /// Put every folder below this one on the target (INBOX too: NAME/INBOX)
    #[arg(long, value_name = "NAME")]
    pub subfolder: Option<String>,

    /// More folder rules from a TOML file: a [migrate] table with subfolder = "NAME" and
    /// [[migrate.map]] tables of from = "REGEX" and to = "TEMPLATE" (tried after --map)
    #[arg(long, value_name = "FILE")]
    pub rules: Option<std::path::PathBuf>,

    /// The source's provider, for its quirks. gmail: labels are copied as folders (each
    /// message uploaded once, copied on the target into its other folders); [Gmail]/All Mail
    /// is not copied as a folder of duplicates, only its archived messages (in no other
    /// folder) go to the target's archive folder; Important and Starred are views, not
    /// copied; Sent Mail, Drafts, Trash and Spam go to the target's folders of their use
    #[arg(long, value_enum, value_name = "PROVIDER")]
    pub preset: Option<Preset>,

    /// Skip (and report) messages larger than this many bytes
    #[arg(long, value_name = "BYTES")]
    pub max_size: Option<u32>,

    /// Skip messages received (INTERNALDATE) before this day, YYYY-MM-DD (UTC)
    #[arg(long, value_name = "DATE")]
    pub min_date: Option<String>,

    /// Skip messages received on or after this day, YYYY-MM-DD (UTC)
    #[arg(long, value_name = "DATE")]
    pub max_date: Option<String>,

    /// Do not run verify at the end
    #[arg(long)]
    pub no_verify: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_rates_take_suffixes() {
        assert_eq!(parse_byte_rate("1000"), Ok(1000));
        assert_eq!(parse_byte_rate("500K"), Ok(500 * 1024));
        assert_eq!(parse_byte_rate("2m"), Ok(2 << 20));
        assert_eq!(parse_byte_rate("1G"), Ok(1 << 30));
        assert_eq!(parse_byte_rate("2MiB"), Ok(2 << 20));
        assert_eq!(parse_byte_rate("64KB"), Ok(64 << 10));
        for bad in [
            "0",
            "0M",
            "",
            "-5",
            "1.5M",
            "fast",
            "5T",
            "99999999999999999999G",
        ] {
            let e = parse_byte_rate(bad).expect_err(bad);
            assert!(
                e.contains("expected a positive number of bytes"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn message_rates_may_be_fractional() {
        assert_eq!(parse_message_rate("50"), Ok(50.0));
        assert_eq!(parse_message_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "nan", "inf", "", "lots", "0.000001"] {
            let e = parse_message_rate(bad).expect_err(bad);
            assert!(
                e.contains("expected a positive number of messages"),
                "{bad}: {e}"
            );
        }
    }
}
