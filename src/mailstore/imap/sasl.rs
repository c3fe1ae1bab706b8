//! SASL messages of the mechanisms we log in with: PLAIN (RFC 4616, with an authorization
//! identity for admin logins), XOAUTH2 (Google's) and OAUTHBEARER (RFC 7628), and the error
//! an OAuth server sends back. Pure functions, no I/O; every buffer that holds a secret is
//! wiped on drop.

use zeroize::Zeroizing;

/// PLAIN: `authzid NUL authcid NUL password`. `authzid` empty: log in as `authcid` itself;
/// else `authcid` (an admin, a Dovecot master user, a Cyrus proxy-auth user) logs in with its
/// own password and acts as `authzid`.
pub fn plain(authzid: &str, authcid: &str, password: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        authzid.len() + authcid.len() + password.len() + 2,
    ));
    out.extend_from_slice(authzid.as_bytes());
    out.push(0);
    out.extend_from_slice(authcid.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    out
}

/// XOAUTH2: `user=USER ^A auth=Bearer TOKEN ^A ^A`.
pub fn xoauth2(user: &str, token: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(user.len() + token.len() + 24));
    out.extend_from_slice(b"user=");
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(b"\x01auth=Bearer ");
    out.extend_from_slice(token.as_bytes());
    out.extend_from_slice(b"\x01\x01");
    out
}

/// OAUTHBEARER (RFC 7628 §3.1): the GS2 header naming the user (`n,a=USER,`), then
/// `host=`, `port=` and `auth=Bearer TOKEN` key-value pairs, each ended by ^A, and a final ^A.
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        user.len() + host.len() + token.len() + 48,
    ));
    out.extend_from_slice(b"n,a=");
    out.extend_from_slice(gs2_saslname(user).as_bytes());
    out.extend_from_slice(b",\x01host=");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(format!("\x01port={port}").as_bytes());
    out.extend_from_slice(b"\x01auth=Bearer ");
    out.extend_from_slice(token.as_bytes());
    out.extend_from_slice(b"\x01\x01");
    out
}

/// The client's answer to an OAUTHBEARER error challenge (RFC 7628 §3.2.3): a single ^A, after
/// which the server fails the exchange. XOAUTH2 servers expect an empty answer instead.
pub const OAUTHBEARER_ABORT: &[u8] = b"\x01";

/// A user name in a GS2 header: `,` and `=` escaped as `=2C` and `=3D` (RFC 5801).
fn gs2_saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// What an OAuth server's error challenge says, for an error message: its `status` (and
/// `scope`, when given) from the JSON (RFC 7628 §3.2.2; XOAUTH2 sends the same shape), or the
/// text itself, shortened and stripped of control characters, when it is not that JSON.
pub fn oauth_error(challenge: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct OauthError {
        status: Option<serde_json::Value>,
        scope: Option<String>,
    }
    let as_text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match serde_json::from_slice::<OauthError>(challenge) {
        Ok(OauthError {
            status: Some(status),
            scope,
        }) => {
            let status = printable(&as_text(&status));
            match scope {
                Some(scope) => format!("status {status:?}, scope {:?}", printable(&scope)),
                None => format!("status {status:?}"),
            }
        }
        _ => format!("{:?}", printable(&String::from_utf8_lossy(challenge))),
    }
}

fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_and_without_an_authorization_identity() {
        assert_eq!(&plain("", "alice", "pw")[..], b"\0alice\0pw");
        assert_eq!(
            &plain("alice", "admin", "masterpw")[..],
            b"alice\0admin\0masterpw"
        );
    }

    #[test]
    fn xoauth2_payload() {
        assert_eq!(
            &xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")[..],
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_payload_is_rfc_7628s_example() {
        // RFC 7628 §4.1, without the line breaks of the printed example.
        assert_eq!(
            &oauthbearer("user@example.com", "server.example.com", 143, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==")[..],
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_escapes_the_user_name() {
        let p = oauthbearer("a,b=c", "h", 1, "t");
        assert!(p.starts_with(b"n,a=a=2Cb=3Dc,\x01"), "{p:?}");
    }

    #[test]
    fn oauth_errors_read_as_their_status() {
        assert_eq!(
            oauth_error(br#"{"status":"invalid_token"}"#),
            r#"status "invalid_token""#
        );
        assert_eq!(
            oauth_error(br#"{"status":"401","schemes":"bearer","scope":"mail"}"#),
            r#"status "401", scope "mail""#
        );
        assert_eq!(oauth_error(br#"{"status":401}"#), r#"status "401""#);
        assert_eq!(oauth_error(b"not json\x07"), r#""not json""#);
    }
}
