//! Logging in: with a password (AUTHENTICATE PLAIN, else LOGIN), as an admin acting for the
//! URL's user (PLAIN with an authorization identity), or with an OAuth 2.0 access token
//! (XOAUTH2, OAUTHBEARER), fetched again once when the server refuses it.
//!
//! No secret reaches a log or an error: payloads are built in wiped buffers (`sasl`), and an
//! error quotes only what the server said.

use base64::Engine;
use imap_proto::{Response, ResponseCode};
use zeroize::Zeroizing;

use super::connection::{quote, Completion, Connection, Ctx, Part};
use super::open::{capability_atom, complete};
use super::sasl;
use crate::config::{Mechanism, Secret, SideConfig};
use crate::mailstore::{Capabilities, StoreError};

/// Logs in as `config` says. Returns the capabilities the server sent with its OK, when
/// complete (Dovecot sends them; one round trip less per connection).
pub async fn login(
    conn: &mut Connection,
    caps: &Capabilities,
    config: &SideConfig,
) -> Result<Option<Capabilities>, StoreError> {
    let done = match (config.auth.mechanism, &config.auth.admin) {
        (Mechanism::Plain, None) => password(conn, caps, config).await?,
        (Mechanism::Plain, Some(admin)) => as_admin(conn, caps, config, admin).await?,
        (mechanism, _) => oauth(conn, caps, config, mechanism).await?,
    };
    // In the OK's code, or (Dovecot, when CAPABILITY was asked before) untagged.
    Ok(complete(match done.code() {
        Some(ResponseCode::Capabilities(list)) => Some(list.iter().map(capability_atom).collect()),
        _ => done.untagged.iter().find_map(|r| match r.parsed() {
            Response::Capabilities(list) => Some(list.iter().map(capability_atom).collect()),
            _ => None,
        }),
    }))
}

/// AUTHENTICATE PLAIN with an initial response where offered (UTF-8 safe, one round trip),
/// else LOGIN.
async fn password(
    conn: &mut Connection,
    caps: &Capabilities,
    config: &SideConfig,
) -> Result<Completion, StoreError> {
    let user = &config.endpoint.user;
    let password = config.password.expose();
    let result = if caps.has("AUTH=PLAIN") && caps.has("SASL-IR") {
        let payload = sasl::plain("", user, password);
        exchange(conn, caps, "PLAIN", &payload, b"", &mut None).await
    } else if caps.has("LOGINDISABLED") {
        return Err(StoreError::Refused {
            endpoint: conn.endpoint().to_string(),
            detail: "the server disables LOGIN and offers no AUTHENTICATE PLAIN with SASL-IR; use imaps:// or a TLS port".into(),
        });
    } else {
        let (qu, qp) = (quote(user), quote(password).map(Zeroizing::new));
        let mut parts: Vec<Part> = vec![Part::Text("LOGIN ")];
        match &qu {
            Some(q) => parts.push(Part::Text(q)),
            None => parts.push(Part::Literal(user.as_bytes())),
        }
        parts.push(Part::Text(" "));
        match &qp {
            Some(q) => parts.push(Part::Text(q)),
            None => parts.push(Part::Literal(password.as_bytes())),
        }
        conn.run(&parts, Ctx::new("LOGIN")).await
    };
    result.map_err(|e| match e {
        StoreError::No { endpoint, text, .. } => StoreError::Auth {
            endpoint,
            detail: text,
        },
        e => e,
    })
}

/// AUTHENTICATE PLAIN as `admin` with the admin's password, for the URL's user: a Dovecot
/// master user, a Cyrus admin (proxy authorization). LOGIN cannot carry the user to act as.
async fn as_admin(
    conn: &mut Connection,
    caps: &Capabilities,
    config: &SideConfig,
    admin: &str,
) -> Result<Completion, StoreError> {
    let user = &config.endpoint.user;
    if !caps.has("AUTH=PLAIN") {
        return Err(StoreError::Refused {
            endpoint: conn.endpoint().to_string(),
            detail: format!(
                "an admin login ({admin} acting as {user}) needs AUTHENTICATE PLAIN, which the server does not offer{}; log in as the user with its own password instead",
                offered(caps)
            ),
        });
    }
    let payload = sasl::plain(user, admin, config.password.expose());
    exchange(conn, caps, "PLAIN", &payload, b"", &mut None)
        .await
        .map_err(|e| match e {
            StoreError::No { endpoint, text, .. } => StoreError::Auth {
                endpoint,
                detail: format!(
                    "admin login as {admin} acting as {user} (AUTHENTICATE PLAIN) refused: {text}. Check the admin name and password, and that the server lets {admin} act for other users (a Dovecot master user, a Cyrus admin)"
                ),
            },
            e => e,
        })
}

/// XOAUTH2 or OAUTHBEARER with the current access token; when it is refused and the token
/// comes from a command or file, the token is fetched again once and tried again.
async fn oauth(
    conn: &mut Connection,
    caps: &Capabilities,
    config: &SideConfig,
    mechanism: Mechanism,
) -> Result<Completion, StoreError> {
    let name = mechanism.sasl_name();
    let endpoint = conn.endpoint().to_string();
    if !caps.has(&format!("AUTH={name}")) {
        return Err(StoreError::Refused {
            endpoint,
            detail: format!(
                "the server does not offer AUTHENTICATE {name}{}; choose a mechanism it offers (--source-auth/--target-auth, or auth in the account's configuration)",
                offered(caps)
            ),
        });
    }
    let refused = |detail: String| StoreError::Auth {
        endpoint: endpoint.clone(),
        detail,
    };
    let (seen, fetched) = match &config.auth.refresh {
        Some(refresh) => refresh.current().await,
        None => (0, None),
    };
    let token = fetched.unwrap_or_else(|| config.password.clone());
    let first = match with_token(conn, caps, config, mechanism, &token).await? {
        Ok(done) => return Ok(done),
        Err(why) => why,
    };
    let Some(refresh) = &config.auth.refresh else {
        return Err(refused(format!(
            "AUTHENTICATE {name} refused the access token ({first}). The token may have expired or lack the mail scope: get a new one (a token from a password command or file is fetched again when refused; one from the environment is not)"
        )));
    };
    tracing::info!(endpoint = %endpoint, mechanism = name, "access token refused; fetching a new one");
    let token = refresh
        .renew(seen, &config.endpoint)
        .await
        .map_err(|e| {
            refused(format!(
                "AUTHENTICATE {name} refused the access token ({first}), and fetching a new one failed: {e}"
            ))
        })?;
    match with_token(conn, caps, config, mechanism, &token).await? {
        Ok(done) => Ok(done),
        Err(again) => Err(refused(format!(
            "AUTHENTICATE {name} refused the access token ({first}), and the new one fetched from the token command or file too ({again}). Check that the token is for this user and grants mail access"
        ))),
    }
}

/// One OAuth attempt: the completion, or why the server refused the token (its error
/// challenge's status and its NO text). Other failures are errors.
async fn with_token(
    conn: &mut Connection,
    caps: &Capabilities,
    config: &SideConfig,
    mechanism: Mechanism,
    token: &Secret,
) -> Result<Result<Completion, String>, StoreError> {
    let ep = &config.endpoint;
    let (payload, abort): (_, &[u8]) = match mechanism {
        Mechanism::Xoauth2 => (sasl::xoauth2(&ep.user, token.expose()), &b""[..]),
        _ => (
            sasl::oauthbearer(&ep.user, &ep.host, ep.port, token.expose()),
            sasl::OAUTHBEARER_ABORT,
        ),
    };
    let mut challenge = None;
    match exchange(
        conn,
        caps,
        mechanism.sasl_name(),
        &payload,
        abort,
        &mut challenge,
    )
    .await
    {
        Ok(done) => Ok(Ok(done)),
        Err(StoreError::No { text, .. }) => Ok(Err(match challenge {
            Some(c) => format!("server: {}; {text}", sasl::oauth_error(&c)),
            None => format!("server: {text}"),
        })),
        Err(e) => Err(e),
    }
}

/// One AUTHENTICATE with `initial` as the initial response: inline where the server offers
/// SASL-IR, else as the answer to its first, empty challenge. A later challenge is an error
/// report (OAuth): it is kept in `error_challenge` and answered with `abort`.
async fn exchange(
    conn: &mut Connection,
    caps: &Capabilities,
    name: &str,
    initial: &[u8],
    abort: &[u8],
    error_challenge: &mut Option<Vec<u8>>,
) -> Result<Completion, StoreError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (command, mut pending) = if caps.has("SASL-IR") {
        (
            Zeroizing::new(format!("AUTHENTICATE {name} {}", b64.encode(initial))),
            None,
        )
    } else {
        (
            Zeroizing::new(format!("AUTHENTICATE {name}")),
            Some(initial),
        )
    };
    conn.authenticate(
        &command,
        |challenge| match pending.take() {
            Some(first) => Zeroizing::new(first.to_vec()),
            None => {
                *error_challenge = Some(challenge.to_vec());
                Zeroizing::new(abort.to_vec())
            }
        },
        Ctx::new("AUTHENTICATE"),
    )
    .await
}

/// ` (it offers AUTH=PLAIN AUTH=LOGIN)`, or nothing when it offers no mechanism.
fn offered(caps: &Capabilities) -> String {
    let auth: Vec<&str> = caps
        .raw
        .iter()
        .filter(|a| a.starts_with("AUTH="))
        .map(String::as_str)
        .collect();
    if auth.is_empty() {
        String::new()
    } else {
        format!(" (it offers {})", auth.join(" "))
    }
}
