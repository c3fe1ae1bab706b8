//! Message-ID as a cheap key: read from a header block, normalised for comparison.

/// The Message-ID in a header block (`Message-ID: <a@b>`, possibly folded), without its angle
/// brackets and surrounding space; `None` when absent or empty.
pub fn message_id(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut value: Option<String> = None;
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line.trim()),
            Some(_) => break,
            None => {
                if let Some((name, rest)) = line.split_once(':') {
                    if name.trim().eq_ignore_ascii_case("message-id") {
                        value = Some(rest.trim().to_string());
                    }
                }
            }
        }
    }
    let v = value?;
    let v = v
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_folded_and_missing() {
        assert_eq!(
            message_id(b"Subject: x\r\nMessage-ID: <a@b.c>\r\n\r\n").as_deref(),
            Some("a@b.c")
        );
        assert_eq!(
            message_id(b"message-id:\r\n <long@x>\r\nFrom: y\r\n").as_deref(),
            Some("long@x")
        );
        assert_eq!(message_id(b"From: y\r\n\r\n"), None);
        assert_eq!(message_id(b"Message-ID: <>\r\n"), None);
    }
}
