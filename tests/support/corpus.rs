//! The fixture corpus (`fixtures/corpus/manifest.tsv` + message files):
//! loading it, seeding it into an account, and generating big messages.
//!
//! Manifest: UTF-8, one entry per line, tab-separated
//! `folder<TAB>file<TAB>flags<TAB>internaldate`; `#` starts a comment line;
//! `file` is relative to the manifest's directory, or empty for a line that
//! only declares a folder; `flags` are space-separated; `internaldate` is
//! like `17-Jul-2024 02:44:25 +0200` or empty. Trailing empty columns may
//! be left out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::imap_client::TestImap;
use super::servers::manifest_dir;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusMessage {
    pub folder: String,
    /// The file name as written in the manifest (for messages).
    pub file: String,
    pub bytes: Vec<u8>,
    pub flags: Vec<String>,
    pub internaldate: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Corpus {
    /// Every folder named in the manifest, in order of first mention.
    pub folders: Vec<String>,
    /// The messages in manifest order.
    pub messages: Vec<CorpusMessage>,
}

/// `fixtures/corpus/manifest.tsv` under the project root.
pub fn manifest_path() -> PathBuf {
    manifest_dir().join("fixtures/corpus/manifest.tsv")
}

impl Corpus {
    /// Loads the project's corpus; panics with the reason if it cannot.
    pub fn load() -> Corpus {
        Self::load_from(&manifest_path()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Loads a manifest; message files are relative to its directory.
    pub fn load_from(manifest: &Path) -> Result<Corpus, String> {
        let text = std::fs::read_to_string(manifest)
            .map_err(|e| format!("reading {}: {e}", manifest.display()))?;
        let base = manifest.parent().unwrap_or(Path::new("."));
        let mut corpus = Corpus::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let at = || format!("{}:{}", manifest.display(), i + 1);
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() > 4 {
                return Err(format!("{}: more than 4 tab-separated columns", at()));
            }
            let folder = cols[0].trim();
            if folder.is_empty() {
                return Err(format!("{}: empty folder", at()));
            }
            if !corpus.folders.iter().any(|f| f == folder) {
                corpus.folders.push(folder.to_string());
            }
            let file = cols.get(1).map(|s| s.trim()).unwrap_or("");
            let flags: Vec<String> = cols
                .get(2)
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
            let date = cols.get(3).map(|s| s.trim()).unwrap_or("");
            if file.is_empty() {
                if !flags.is_empty() || !date.is_empty() {
                    return Err(format!("{}: flags or date without a file", at()));
                }
                continue;
            }
            let path = base.join(file);
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("{}: reading {}: {e}", at(), path.display()))?;
            corpus.messages.push(CorpusMessage {
                folder: folder.to_string(),
                file: file.to_string(),
                bytes,
                flags,
                internaldate: (!date.is_empty()).then(|| date.to_string()),
            });
        }
        Ok(corpus)
    }

    /// Number of messages per folder (folders without messages map to 0).
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut m: BTreeMap<String, usize> = self.folders.iter().map(|f| (f.clone(), 0)).collect();
        for msg in &self.messages {
            *m.entry(msg.folder.clone()).or_default() += 1;
        }
        m
    }

    /// The messages of one folder, in manifest order.
    pub fn in_folder<'a>(
        &'a self,
        folder: &'a str,
    ) -> impl Iterator<Item = &'a CorpusMessage> + 'a {
        self.messages.iter().filter(move |m| m.folder == folder)
    }

    /// Creates every folder (parents first; INBOX and existing ones are
    /// fine), then APPENDs every message in manifest order.
    pub async fn seed(&self, imap: &mut TestImap) {
        for f in &self.folders {
            if !f.eq_ignore_ascii_case("INBOX") {
                imap.create(f).await;
            }
        }
        for m in &self.messages {
            let flags: Vec<&str> = m.flags.iter().map(String::as_str).collect();
            imap.append(&m.folder, &flags, m.internaldate.as_deref(), &m.bytes)
                .await;
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), same for the same seed.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A deterministic, valid multipart/mixed message of about `size_bytes`
/// (never less than ~1 KiB): a short text part plus a base64
/// `application/octet-stream` attachment in 76-column lines, CRLF line ends.
/// The same size gives the same bytes; the Message-ID names the size.
pub fn big_message(size_bytes: usize) -> Vec<u8> {
    let boundary = "=_mailreplica_big_boundary_0123456789";
    let head = format!(
        "From: Big Sender <big.sender@example.org>\r\n\
         To: Recipient <recipient@example.net>\r\n\
         Subject: Big message of about {size_bytes} bytes\r\n\
         Date: Wed, 17 Jul 2024 02:44:25 +0200\r\n\
         Message-ID: <big-{size_bytes}@mailreplica.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\
         \r\n\
         This is a multi-part message in MIME format.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         Content-Transfer-Encoding: 7bit\r\n\
         \r\n\
         The attachment holds deterministic pseudo-random data.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: application/octet-stream; name=\"data.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"data.bin\"\r\n\
         \r\n"
    );
    let tail = format!("--{boundary}--\r\n");
    // Each full base64 line: 76 chars + CRLF = 78 bytes for 57 raw bytes.
    let room = size_bytes.saturating_sub(head.len() + tail.len()).max(78);
    let lines = room / 78;
    let raw = pseudo_random_bytes(size_bytes as u64, lines * 57);
    let encoded = base64(&raw);
    let mut out = Vec::with_capacity(head.len() + room + tail.len());
    out.extend_from_slice(head.as_bytes());
    for chunk in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(tail.as_bytes());
    out
}
