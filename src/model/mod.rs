//! Vocabulary shared by every layer, with no I/O: folder paths, flags, fingerprints, sides.

pub mod content_sha1;
pub mod date;
pub mod fingerprint;
pub mod flags;
pub mod folder;
pub mod message_id;
pub mod side;
pub mod tokens;
pub mod tolerant_key;

pub use content_sha1::ContentSha1;
pub use date::InternalDate;
pub use fingerprint::Fingerprint;
pub use flags::{Flag, FlagSet};
pub use folder::FolderPath;
pub use side::Side;
pub use tokens::FolderTokens;
