//! Fuzz target: `reconcile::validate::validate` must never panic, whatever the bytes and the
//! expectation. The first 5 input bytes choose the expectation (flags, then a little-endian size);
//! the rest is the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailreplica::reconcile::validate::{validate, Expectation, Verdict};

/// libfuzzer-sys aborts on every panic, even one that is caught. mail-parser panics on a few
/// inputs in builds with overflow checks (cargo-fuzz's default), and `validate` catches that on
/// purpose (`Structural("parser panicked")`); let those unwind to its `catch_unwind`, abort on
/// anything else.
fn let_mail_parser_panics_unwind() {
    let aborting = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_mail_parser = info
            .location()
            .is_some_and(|l| l.file().contains("mail-parser-"));
        if !in_mail_parser {
            aborting(info);
        }
    }));
}

fuzz_target!(init: let_mail_parser_panics_unwind(), |data: &[u8]| {
    let (expect, message) = match data {
        [flags, a, b, c, d, rest @ ..] => {
            let size = u32::from_le_bytes([*a, *b, *c, *d]);
            let expect = Expectation {
                size: (flags & 1 == 1).then_some(size),
                exact: flags & 2 == 2,
            };
            (expect, rest)
        }
        _ => (Expectation::default(), data),
    };
    let verdict = validate(message, &expect);
    // Properties that hold for any input.
    if let (true, Some(size)) = (expect.exact, expect.size) {
        if message.len() as u64 != u64::from(size) {
            assert!(matches!(verdict, Verdict::Transport(_)));
        }
    }
    if message.is_empty() {
        assert!(matches!(verdict, Verdict::Transport(_)));
    }
    if let Some(reason) = verdict.reason() {
        assert!(!reason.is_empty() && reason.len() < 300, "{reason:?}");
    }
});
