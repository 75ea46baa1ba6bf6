//! Client-side failures: [`ClientError`] (building a transport) and the one place where an HTTP
//! answer that is not a success becomes a [`sync_core::Error`] of the right docs/SPEC.md §5 class
//! (docs/PROTOCOL.md "Client behaviour").
//!
//! Nothing here sends requests or decides about retries (that is [`super::retry`]).

use std::time::Duration;

use reqwest::StatusCode;
use sync_core::{ContentHash, CursorParseError, Error, Key, KeyError, KeyRule};

use crate::wire::WireError;

/// Why an [`super::HttpTransport`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL does not parse or is not `http`/`https`.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be set up (TLS roots, resolver).
    #[error("could not set up the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
    /// The CA certificate given to [`super::HttpTransport::with_ca_cert`] is not usable.
    #[error("the CA certificate cannot be used: {reason}. Give the PEM file of the CA that signed the server's certificate (a block starting with -----BEGIN CERTIFICATE-----)")]
    InvalidCaCert {
        /// What is wrong with it.
        reason: String,
    },
}

/// What the request was about, for building errors that name their item.
#[derive(Debug, Clone, Default)]
pub(crate) struct ErrorContext<'a> {
    /// The item, for item routes.
    pub key: Option<&'a Key>,
    /// The content sent and its announced hash, for uploads.
    pub sent: Option<(&'a [u8], ContentHash)>,
    /// The `since` cursor sent, for the feed.
    pub since: Option<String>,
    /// The client's own item limit, used when the server does not say its limit.
    pub limit: u64,
}

/// The error code and message of an error body; both empty when the body is not the protocol's
/// JSON (a proxy's HTML page, say).
pub(crate) fn parse_error_body(body: &[u8]) -> (String, String, Option<WireError>) {
    match serde_json::from_slice::<WireError>(body) {
        Ok(e) => (e.error.code.clone(), e.error.message.clone(), Some(e)),
        Err(_) => {
            let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
            (String::new(), text, None)
        }
    }
}

/// Maps a non-success answer to its [`sync_core::Error`].
pub(crate) fn error_for_status(
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
    ctx: &ErrorContext<'_>,
) -> Error {
    let (code, message, parsed) = parse_error_body(body);
    let said = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {message}")
    };
    let item_or_offline = |what: String| match ctx.key {
        Some(key) => Error::item(key, what),
        None => Error::offline(what),
    };
    match status.as_u16() {
        401 | 403 => Error::Auth { message: said },
        404 => match ctx.key {
            Some(key) => Error::NotFound { key: key.clone() },
            // The feed (or another tenant-wide route) is not there: whatever answers at this
            // URL is no sync server, and asking again will not change that.
            None => Error::NoServer {
                message: format!(
                    "the sync routes answered {said}; check the server URL (the part before \
                     /sync/v1)"
                ),
            },
        },
        400 => match code.as_str() {
            "invalid_key" => invalid_key(ctx.key, &message),
            "hash_mismatch" => match (ctx.key, ctx.sent) {
                (Some(key), Some((content, expected))) => Error::HashMismatch {
                    key: key.clone(),
                    expected,
                    actual: ContentHash::of(content),
                },
                _ => item_or_offline(said),
            },
            "invalid_cursor" => Error::InvalidCursor(CursorParseError {
                input: ctx.since.clone().unwrap_or_default(),
            }),
            _ => item_or_offline(format!("the server refused the request: {said}")),
        },
        410 => Error::CursorExpired,
        413 => match ctx.key {
            Some(key) => Error::TooLarge {
                key: key.clone(),
                size: ctx.sent.map_or(0, |(c, _)| c.len() as u64),
                limit: parsed.and_then(|p| p.error.limit).unwrap_or(ctx.limit),
            },
            None => Error::offline(said),
        },
        409 | 412 | 428 => item_or_offline(said),
        429 => Error::Throttled {
            retry_after,
            message: said,
        },
        _ => Error::offline(said),
    }
}

/// 400 `invalid_key`: the server's rule, recovered from its message when it names one of
/// docs/SPEC.md §1's rules, else an item error with the server's words.
fn invalid_key(key: Option<&Key>, message: &str) -> Error {
    const RULES: [KeyRule; 9] = [
        KeyRule::Empty,
        KeyRule::LeadingSlash,
        KeyRule::EmptySegment,
        KeyRule::DotSegment,
        KeyRule::Backslash,
        KeyRule::Nul,
        KeyRule::ControlChar,
        KeyRule::SegmentTooLong,
        KeyRule::TooLong,
    ];
    let rule = RULES.into_iter().find(|r| message.contains(r.describe()));
    match (key, rule) {
        (Some(key), Some(rule)) => Error::InvalidKey(KeyError {
            key: key.to_string(),
            rule,
        }),
        (Some(key), None) => Error::item(key, format!("the server refused the key: {message}")),
        (None, _) => Error::offline(format!("the server refused a key: {message}")),
    }
}

/// The `Retry-After` header as a duration (seconds form; an HTTP date is ignored).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A failure without an HTTP answer: [`Error::Untrusted`] when the server's TLS certificate
/// was refused (retrying cannot help: the user must give its CA), else `Offline`.
pub(crate) fn no_answer(err: &reqwest::Error, what: &str) -> Error {
    match tls_error(err) {
        Some(rustls::Error::InvalidCertificate(refused)) => {
            return Error::Untrusted {
                message: format!("{what}: {}", certificate_advice(refused)),
            }
        }
        Some(tls) => {
            return Error::offline(format!(
                "{what}: the TLS handshake failed: {tls}; check that the server serves HTTPS \
                 at this URL (a plain HTTP server needs an http:// URL)"
            ))
        }
        None => {}
    }
    let kind = if err.is_connect() {
        "could not connect to"
    } else if err.is_timeout() {
        "no answer in time from"
    } else if err.is_decode() || err.is_body() {
        "an unreadable answer from"
    } else {
        "the request failed to"
    };
    // Short for the app's error area: what failed and which server, with the last cause
    // (e.g. "Connection refused") but no URL path, query or cursor. The whole chain is the
    // detail (reqwest's Display omits the causes).
    let server = err
        .url()
        .and_then(|u| {
            let host = u.host_str()?;
            Some(match u.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
        })
        .unwrap_or_else(|| "the server".to_owned());
    let mut detail = format!("{what}: {err}");
    let mut last = None;
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let text = s.to_string();
        detail.push_str(": ");
        detail.push_str(&text);
        last = Some(text);
        source = s.source();
    }
    let message = match last {
        Some(cause) => format!("{kind} {server} ({cause})"),
        None => format!("{kind} {server}"),
    };
    Error::offline_with_detail(message, detail)
}

/// What was wrong with the server's certificate, in words, and what to do.
fn certificate_advice(refused: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    let give_ca = "if the server uses a certificate of its own CA (or a self-signed one), give \
                   that CA's certificate (folder-sync --ca-cert FILE, \
                   HttpTransport::with_ca_cert)";
    match refused {
        E::UnknownIssuer => format!("it is signed by a CA this client does not trust; {give_ca}"),
        E::NotValidForName | E::NotValidForNameContext { .. } => format!(
            "it is not made out for the host in the server URL ({refused}); use the name or \
             address the certificate was made for"
        ),
        E::Expired | E::ExpiredContext { .. } | E::NotValidYet | E::NotValidYetContext { .. } => {
            format!("{refused}; renew the server's certificate, or check this machine's clock")
        }
        // webpki's words for a certificate that is a CA (openssl req -x509 makes one).
        other if format!("{other:?}").contains("CaUsedAsEndEntity") => "the server's \
            certificate is a CA certificate, which cannot serve a host: sign the server's \
            certificate with that CA, or make the self-signed one with \
            basicConstraints=critical,CA:FALSE"
            .to_owned(),
        other => format!("{other}; {give_ca}; else check the server's certificate"),
    }
}

/// The rustls error somewhere in `err`'s chain of causes, if any. An `io::Error` does not
/// list the error it wraps as its source (and the TLS stack wraps one in another), so the walk
/// goes into each wrapped error instead.
fn tls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sync_core::ErrorClass;

    fn map(status: u16, body: &str, key: Option<&Key>) -> Error {
        let ctx = ErrorContext {
            key,
            limit: 10,
            ..ErrorContext::default()
        };
        error_for_status(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            None,
            &ctx,
        )
    }

    #[test]
    fn certificate_refusals_say_what_to_do() {
        use rustls::CertificateError as E;
        assert!(certificate_advice(&E::UnknownIssuer).contains("--ca-cert"));
        assert!(certificate_advice(&E::NotValidForName).contains("host"));
        assert!(certificate_advice(&E::Expired).contains("renew"));
        assert!(certificate_advice(&E::BadSignature).contains("--ca-cert"));
    }

    #[test]
    fn every_status_has_its_class() {
        let k = Key::new("a.txt").unwrap();
        let body = |code: &str| format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
        assert_eq!(
            map(401, &body("unauthorized"), None).class(),
            ErrorClass::Auth
        );
        assert_eq!(map(500, "<html>", None).class(), ErrorClass::Offline);
        assert_eq!(map(503, "", Some(&k)).class(), ErrorClass::Offline);
        assert_eq!(
            map(429, &body("rate_limited"), None).class(),
            ErrorClass::Throttled
        );
        assert!(matches!(
            map(404, &body("not_found"), Some(&k)),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            map(410, &body("cursor_expired"), None),
            Error::CursorExpired
        ));
        assert!(matches!(
            map(400, &body("invalid_cursor"), None),
            Error::InvalidCursor(_)
        ));
        assert!(matches!(
            map(
                413,
                r#"{"error":{"code":"too_large","message":"m","limit":7}}"#,
                Some(&k)
            ),
            Error::TooLarge { limit: 7, .. }
        ));
        assert!(matches!(
            map(413, &body("too_large"), Some(&k)),
            Error::TooLarge { limit: 10, .. }
        ));
        let msg = format!(
            r#"{{"error":{{"code":"invalid_key","message":"invalid key: {}"}}}}"#,
            KeyRule::DotSegment.describe()
        );
        assert!(matches!(
            map(400, &msg, Some(&k)),
            Error::InvalidKey(KeyError {
                rule: KeyRule::DotSegment,
                ..
            })
        ));
        assert_eq!(
            map(400, &body("invalid_key"), Some(&k)).class(),
            ErrorClass::Item
        );
        assert_eq!(
            map(409, &body("not_a_folder"), Some(&k)).class(),
            ErrorClass::Item
        );
    }
}
