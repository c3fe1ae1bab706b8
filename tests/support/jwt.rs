//! JSON Web Tokens for the Dovecot "auth" instance: HS256 (HMAC-SHA256, RFC 2104 over
//! `sha2`), claims `sub`, `iat` and `exp`, as its oauth2 passdb validates them locally.

use base64::Engine;
use sha2::{Digest, Sha256};

/// A JWT for `user`, signed with `key`, expiring `valid_for` seconds from now (negative:
/// already expired).
pub fn hs256(key: &[u8], user: &str, valid_for: i64) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "sub": user,
        "iat": now.min(now + valid_for) - 60,
        "exp": now + valid_for,
    });
    let body = b64.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    let signature = b64.encode(hmac_sha256(key, signed.as_bytes()));
    format!("{signed}.{signature}")
}

/// HMAC-SHA256 (RFC 2104): H((K ^ opad) || H((K ^ ipad) || message)).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[test]
fn hmac_sha256_matches_rfc_4231_test_case_2() {
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
