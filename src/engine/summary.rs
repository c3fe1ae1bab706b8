//! What a sync pass did, for the human summary and `--json`.

use serde::Serialize;

/// One folder of a migration: its messages on the source, what this run copied, skipped (by
/// the selection) and saw refused, and how many of its messages the target now holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderReport {
    pub folder: String,
    pub source: u64,
    pub copied: u64,
    pub skipped: u64,
    pub refused: u64,
    pub on_target: u64,
}

/// A run's pace: the rate limit on the target and the servers' requests to slow down.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PaceReport {
    /// The limit in effect on the target, as the run said it (`5 MiB/s and 50 messages/s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes_per_second: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages_per_second: Option<f64>,
    /// Seconds uploads waited for the limit, summed over the connections.
    pub limit_wait_seconds: f64,
    /// Times a server asked to slow down (`[THROTTLED]`, `[LIMIT]`, a suggested back-off)
    /// and the command was sent again after a wait; both sides, every connection.
    pub server_backoffs: u64,
    /// Seconds waited for those, summed over the connections.
    pub server_backoff_seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncSummary {
    pub source: String,
    pub target: String,
    pub state_file: String,
    pub dry_run: bool,
    pub folders: u64,
    /// Folders whose tokens proved them unchanged on both sides: not even opened.
    pub folders_unchanged: u64,
    /// Folders read from what changed since the last pass instead of listed in full.
    pub folders_incremental: u64,
    pub folders_created: u64,
    /// Folders subscribed or unsubscribed on the target to match the source.
    pub subscriptions: u64,
    /// Messages the target refused in an earlier pass, not tried again before a day passed
    /// (reported then; `status` lists them).
    pub refused_waiting: u64,
    /// Folders left out by the selection (`migrate --include/--exclude`).
    pub folders_excluded: u64,
    /// Messages left out by the selection (`migrate --max-size/--min-date/--max-date`).
    pub skipped_by_selection: u64,
    /// The messages skipped for their size, one line each (reported, never silently).
    pub skipped: Vec<String>,
    /// Per folder worked on, what `migrate` reports (empty for `sync`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub folder_reports: Vec<FolderReport>,
    /// Folders renamed on the source and renamed on the target (one RENAME each).
    pub folders_renamed: u64,
    /// Folders deleted on the source, emptied through the removal budget and deleted on the target.
    pub folders_deleted: u64,
    /// Messages uploaded to the target.
    pub copied: u64,
    /// Source messages found already on the target and mapped without upload.
    pub adopted: u64,
    /// Messages placed by UID COPY from a copy the target already held (bytes sent once).
    pub copied_on_target: u64,
    /// Messages the source moved to another folder, moved on the target too (UID MOVE, or a
    /// COPY and the removal of the original); never counted against the removal budget.
    pub moved: u64,
    pub flags_updated: u64,
    pub removed: u64,
    /// Removals held by the guard (exit 3 until released with --allow-deletions).
    pub removals_held: u64,
    /// Messages the target refused, with the server's words (identical copies refused alike
    /// are one line).
    pub refused: Vec<String>,
    /// Messages the target stores otherwise than sent, learned this pass (reported once).
    pub fidelity_notes: Vec<String>,
    /// How many messages the target refused in this pass.
    pub refused_messages: u64,
    /// Messages not uploaded because validation failed (see `status`).
    pub quarantined: Vec<String>,
    /// Messages that failed validation and were uploaded because of --accept-invalid.
    pub accepted_invalid: u64,
    /// Messages whose upload failed too often; not tried again until the state is rebuilt.
    pub gave_up: Vec<String>,
    /// Folders skipped because a server refused something about them.
    pub folder_errors: Vec<String>,
    /// Messages on the target that the source does not have (kept, never removed).
    pub target_only: u64,
    pub bytes_uploaded: u64,
    /// Bytes of all messages placed on the target (uploaded, copied there, or adopted): what a
    /// naive copy would have uploaded.
    pub bytes_placed: u64,
    pub seconds: f64,
    /// Unix seconds when the run ended.
    pub finished_at: u64,
    /// Notices: UIDVALIDITY changes, folders gone from the source, ...
    pub notices: Vec<String>,
    /// With --dry-run: what would be done.
    pub actions: Vec<String>,
    /// The rate limit and the servers' back-offs, when there was either (set by the CLI,
    /// which paces the stores: `engine::paced`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pace: Option<PaceReport>,
}

impl SyncSummary {
    /// Adds what a worker of the same pass did (see workers.rs).
    pub fn absorb(&mut self, other: SyncSummary) {
        self.folders += other.folders;
        self.folders_unchanged += other.folders_unchanged;
        self.folders_incremental += other.folders_incremental;
        self.folders_created += other.folders_created;
        self.folders_renamed += other.folders_renamed;
        self.folders_deleted += other.folders_deleted;
        self.copied += other.copied;
        self.adopted += other.adopted;
        self.copied_on_target += other.copied_on_target;
        self.moved += other.moved;
        self.flags_updated += other.flags_updated;
        self.removed += other.removed;
        self.removals_held += other.removals_held;
        self.refused.extend(other.refused);
        self.refused_messages += other.refused_messages;
        self.fidelity_notes.extend(other.fidelity_notes);
        self.refused_waiting += other.refused_waiting;
        self.folders_excluded += other.folders_excluded;
        self.skipped_by_selection += other.skipped_by_selection;
        self.skipped.extend(other.skipped);
        self.folder_reports.extend(other.folder_reports);
        self.quarantined.extend(other.quarantined);
        self.accepted_invalid += other.accepted_invalid;
        self.gave_up.extend(other.gave_up);
        self.folder_errors.extend(other.folder_errors);
        self.target_only += other.target_only;
        self.bytes_uploaded += other.bytes_uploaded;
        self.bytes_placed += other.bytes_placed;
        self.notices.extend(other.notices);
        self.actions.extend(other.actions);
    }

    /// True when something needs the user's attention (exit 3).
    pub fn needs_attention(&self) -> bool {
        self.removals_held > 0
            || !self.refused.is_empty()
            || !self.folder_errors.is_empty()
            || !self.gave_up.is_empty()
            || !self.quarantined.is_empty()
    }
}
