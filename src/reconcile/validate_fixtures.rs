//! [`validate`] against the message fixtures: `fixtures/odd` (odd but valid), `fixtures/broken`
//! (damaged) and the 514-message corpus, plus property tests on truncated and bit-flipped copies.

use super::*;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn fixture_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// `(file name, bytes)` of every `*.eml` in a fixture directory, sorted by name.
fn load(rel: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fixture_dir(rel);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, bytes)
        })
        .collect();
    out.sort();
    out
}

fn odd() -> &'static [(String, Vec<u8>)] {
    static ODD: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    ODD.get_or_init(|| load("odd"))
}

fn broken() -> &'static [(String, Vec<u8>)] {
    static BROKEN: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    BROKEN.get_or_init(|| load("broken"))
}

fn corpus() -> &'static [(String, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(|| load("corpus/msgs"))
}

/// Every fixture, valid and broken: inputs for the never-panics properties.
fn all_fixtures() -> &'static [Vec<u8>] {
    static ALL: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    ALL.get_or_init(|| {
        odd()
            .iter()
            .chain(broken())
            .chain(corpus())
            .map(|(_, b)| b.clone())
            .collect()
    })
}

/// For a valid fixture whose top-level entity is a multipart: the range of cut points that fall
/// inside its last part, i.e. from the start of the last part's content up to (not including) the
/// last byte of the first close delimiter line `--boundary--`. Found by a plain line scan written
/// from RFC 2046, not by the code under test (except for reading the boundary parameter).
fn last_part_cuts(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    let head = parse_head(bytes, 0, bytes.len());
    let (a, b) = head.content_type?;
    let Media::Multipart {
        boundary: Some(boundary),
        ..
    } = parse_content_type(&bytes[a..b])
    else {
        return None;
    };
    let mut open = b"--".to_vec();
    open.extend_from_slice(&boundary);
    let padding = |s: &[u8]| s.iter().all(|&c| matches!(c, b' ' | b'\t' | b'\r'));
    let mut last_open_next = None;
    let mut pos = head.body_start;
    while pos < bytes.len() {
        let line_end = bytes[pos..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(bytes.len(), |i| pos + i);
        let line = &bytes[pos..line_end];
        if let Some(rest) = line.strip_prefix(open.as_slice()) {
            if padding(rest) {
                last_open_next = Some(line_end + 1);
            } else if rest.starts_with(b"--") && padding(&rest[2..]) {
                // The close delimiter: cuts up to its last '-' leave it incomplete.
                return Some(last_open_next?..pos + open.len() + 1);
            }
        }
        pos = line_end + 1;
    }
    None
}

/// Multipart fixtures (odd and corpus) with their last-part cut ranges.
fn multipart_fixtures() -> &'static [(Vec<u8>, std::ops::Range<usize>)] {
    static MULTI: OnceLock<Vec<(Vec<u8>, std::ops::Range<usize>)>> = OnceLock::new();
    MULTI.get_or_init(|| {
        odd()
            .iter()
            .chain(corpus())
            .filter_map(|(_, b)| {
                let cuts = last_part_cuts(b)?;
                (!cuts.is_empty()).then(|| (b.clone(), cuts))
            })
            .collect()
    })
}

#[test]
fn fixture_sets_are_big_enough() {
    assert!(odd().len() >= 30, "{} odd fixtures", odd().len());
    assert!(broken().len() >= 8, "{} broken fixtures", broken().len());
    assert_eq!(corpus().len(), 514);
    assert!(
        multipart_fixtures().len() > 200,
        "{} multipart fixtures",
        multipart_fixtures().len()
    );
}

#[test]
fn fixtures_use_crlf_line_ends() {
    for (name, bytes) in odd().iter().chain(broken()) {
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                assert!(
                    i > 0 && bytes[i - 1] == b'\r',
                    "{name}: bare LF at byte {i}"
                );
            }
        }
    }
}

#[test]
fn every_odd_fixture_is_valid() {
    let failures: Vec<String> = odd()
        .iter()
        .filter_map(|(name, bytes)| {
            let v = validate(bytes, &Expectation::exact(bytes.len() as u32));
            (!v.is_valid()).then(|| format!("{name}: {v:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_broken_fixture_is_not_valid() {
    let mut failures = Vec::new();
    for (name, bytes) in broken() {
        match validate(bytes, &Expectation::exact(bytes.len() as u32)) {
            Verdict::Structural(_) => {}
            other => failures.push(format!("{name}: {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_corpus_message_is_valid() {
    let failures: Vec<String> = corpus()
        .iter()
        .filter_map(|(name, bytes)| {
            let v = validate(bytes, &Expectation::unknown());
            (!v.is_valid()).then(|| format!("{name}: {v:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn corpus_sizes_right_and_wrong() {
    for (name, bytes) in corpus().iter().step_by(7).chain(odd()) {
        let n = bytes.len() as u32;
        assert_eq!(
            validate(bytes, &Expectation::exact(n)),
            Verdict::Valid,
            "{name}"
        );
        for wrong in [n + 1, n - 1, n / 2, n + 4096] {
            assert_eq!(
                validate(bytes, &Expectation::exact(wrong)),
                Verdict::Transport(format!("size {n} differs from RFC822.SIZE {wrong}")),
                "{name}"
            );
            // Not an exact side: the size is not compared.
            let loose = Expectation {
                size: Some(wrong),
                exact: false,
            };
            assert_eq!(validate(bytes, &loose), Verdict::Valid, "{name}");
        }
    }
}

#[test]
fn corpus_cut_before_its_last_close_is_never_valid() {
    // Deterministic companion of the property below: cut each multipart fixture right before the
    // close delimiter and in the middle of its last part.
    for (bytes, cuts) in multipart_fixtures() {
        for at in [cuts.start, (cuts.start + cuts.end) / 2, cuts.end - 1] {
            let v = validate(&bytes[..at], &Expectation::unknown());
            assert!(!v.is_valid(), "cut at {at} of {} bytes", bytes.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn truncated_prefixes_never_panic(pick in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(), size in any::<Option<u32>>(), exact in any::<bool>()) {
        let bytes = pick.get(all_fixtures());
        let prefix = &bytes[..cut.index(bytes.len() + 1)];
        let _ = validate(prefix, &Expectation { size, exact });
        let v = validate(prefix, &Expectation::exact(bytes.len() as u32));
        if prefix.len() < bytes.len() {
            prop_assert!(matches!(v, Verdict::Transport(_)), "{v:?}");
        }
    }

    #[test]
    fn bit_flipped_copies_never_panic(
        pick in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..16),
    ) {
        let mut bytes = pick.get(all_fixtures()).clone();
        for (at, bit) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        let v = validate(&bytes, &Expectation::unknown());
        // A flipped copy keeps its length, so an exact size still matches; only content decides.
        prop_assert_eq!(validate(&bytes, &Expectation::exact(bytes.len() as u32)), v);
    }

    #[test]
    fn truncated_inside_the_last_part_is_never_valid(pick in any::<prop::sample::Index>(), at in any::<prop::sample::Index>()) {
        let (bytes, cuts) = pick.get(multipart_fixtures());
        let cut = cuts.start + at.index(cuts.len());
        let v = validate(&bytes[..cut], &Expectation::unknown());
        prop_assert!(!v.is_valid(), "cut at {} of {} bytes is Valid", cut, bytes.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), size in any::<Option<u32>>(), exact in any::<bool>()) {
        let v = validate(&bytes, &Expectation { size, exact });
        if let Some(reason) = v.reason() {
            prop_assert!(!reason.is_empty() && reason.len() < 300, "{:?}", reason);
        }
    }

    #[test]
    fn mime_shaped_noise_never_panics(lines in prop::collection::vec(prop::sample::select(vec![
        "Content-Type: multipart/mixed; boundary=b",
        "Content-Type: multipart/alternative; boundary=\"c d\"",
        "Content-Type: message/rfc822",
        "Content-Transfer-Encoding: base64",
        "Content-Transfer-Encoding: quoted-printable",
        "--b", "--b--", "--c d", "--c d--", "", " folded", "=", "QUJD", "QQ=", "x=\t", "Subject: s",
    ]), 0..40)) {
        let text = lines.join("\r\n");
        let _ = validate(text.as_bytes(), &Expectation::unknown());
    }
}
