//! User tokens, roles (deep dive §5.1) and the dashboards' sign-in sessions.
//!
//! A request proves who it is with `Authorization: Bearer <token>`, or, from the dashboards, with
//! the session cookie that signing in with that token set. The cookie holds, encrypted and
//! authenticated (AES-256-GCM, [`cookie::PrivateJar`]), the SHA-256 of the token and an expiry:
//! the role is looked up on every request, so removing a token from the configuration ends its
//! sessions, and the token itself is never in the cookie.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use cookie::{Cookie, CookieJar, Key, SameSite};
use ct_platform::http_error::ApiError;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ct_session";
/// A JSON API request authenticated by the session cookie must carry this header (any value).
/// Pages on other sites cannot add a header to a request without a CORS preflight, which this
/// API never grants: with `SameSite=Strict`, the second guard against cross-site requests.
pub const CSRF_HEADER: &str = "x-ct-csrf";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Maintainer,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Maintainer => "maintainer",
            Role::Owner => "owner",
        }
    }
}

/// Who may read what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// systems, health, runs
    ReadStatus,
    /// events
    ReadEvents,
    /// act on alerts (acknowledge), trigger and cancel runs: operator and above
    Operate,
    /// approve or reject runs awaiting approval: maintainer and above
    Approve,
}

impl Role {
    pub fn allows(self, permission: Permission) -> bool {
        match permission {
            Permission::ReadStatus => true,
            Permission::ReadEvents | Permission::Approve => matches!(self, Role::Maintainer | Role::Owner),
            Permission::Operate => matches!(self, Role::Operator | Role::Maintainer | Role::Owner),
        }
    }
}

/// The dashboards' session cookies: issued at sign-in, read on every page.
pub struct Sessions {
    key: Key,
    ttl: chrono::Duration,
    secure: bool,
}

impl Sessions {
    /// `secret` must be at least 32 bytes (checked by the configuration's rules).
    pub fn new(secret: &[u8], ttl_s: u64, secure: bool) -> Sessions {
        Sessions {
            key: Key::derive_from(secret),
            // The configuration bounds it to 30 days.
            ttl: chrono::Duration::seconds(i64::try_from(ttl_s.min(30 * 86_400)).unwrap_or(86_400)),
            secure,
        }
    }

    /// The `Set-Cookie` value of a session for the token whose SHA-256 is `digest`.
    fn issue(&self, digest: &[u8; 32], now: DateTime<Utc>) -> String {
        let expires = now + self.ttl;
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key).add(Cookie::new(SESSION_COOKIE, format!("{}.{}", hex(digest), expires.timestamp())));
        let sealed = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
        self.attributes(
            Cookie::build((SESSION_COOKIE, sealed)).max_age(cookie::time::Duration::seconds(self.ttl.num_seconds())),
        )
    }

    /// The `Set-Cookie` value that ends a session.
    pub fn clear(&self) -> String {
        self.attributes(Cookie::build((SESSION_COOKIE, "")).max_age(cookie::time::Duration::ZERO))
    }

    fn attributes(&self, cookie: cookie::CookieBuilder<'static>) -> String {
        cookie.path("/").http_only(true).same_site(SameSite::Strict).secure(self.secure).build().to_string()
    }

    /// The token digest of a valid, unexpired session cookie among `headers`' cookies.
    fn read(&self, headers: &HeaderMap, now: DateTime<Utc>) -> Option<[u8; 32]> {
        let mut jar = CookieJar::new();
        for value in headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()) {
            for cookie in Cookie::split_parse(value.to_owned()).flatten() {
                if cookie.name() == SESSION_COOKIE {
                    jar.add_original(cookie);
                }
            }
        }
        let opened = jar.private(&self.key).get(SESSION_COOKIE)?;
        let (digest, expires) = opened.value().split_once('.')?;
        if expires.parse::<i64>().ok()? <= now.timestamp() {
            return None;
        }
        unhex(digest)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub struct Users {
    by_digest: HashMap<[u8; 32], Role>,
    sessions: Sessions,
}

/// Who is asking: the role, and the actor name audit records carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// The role and the first 4 bytes of the token's SHA-256 in hex (enough to tell tokens
    /// apart, never the token).
    pub actor: String,
}

impl Users {
    pub fn new(tokens: &std::collections::BTreeMap<String, Role>, sessions: Sessions) -> Self {
        Self { by_digest: tokens.iter().map(|(t, r)| (Sha256::digest(t.as_bytes()).into(), *r)).collect(), sessions }
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    pub fn authorize(&self, headers: &HeaderMap, permission: Permission) -> Result<Role, ApiError> {
        self.actor(headers, permission).map(|(role, _)| role)
    }

    /// The role and who acted, for audit records. A bearer token when the request has an
    /// `Authorization` header; else the session cookie with the [`CSRF_HEADER`].
    pub fn actor(&self, headers: &HeaderMap, permission: Permission) -> Result<(Role, String), ApiError> {
        let unauthorized = || {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or unknown bearer token")
                .with_field("Authorization")
        };
        let digest = match headers.get(header::AUTHORIZATION) {
            Some(value) => {
                let (scheme, token) =
                    value.to_str().ok().and_then(|v| v.trim().split_once(' ')).ok_or_else(unauthorized)?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(unauthorized());
                }
                Sha256::digest(token.trim().as_bytes()).into()
            }
            None => {
                let digest = self.sessions.read(headers, Utc::now()).ok_or_else(unauthorized)?;
                if !headers.contains_key(CSRF_HEADER) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "csrf",
                        format!("a request signed in by the session cookie must carry the `{CSRF_HEADER}` header"),
                    )
                    .with_field(CSRF_HEADER));
                }
                digest
            }
        };
        let caller = self.caller_of(&digest).ok_or_else(unauthorized)?;
        if caller.role.allows(permission) {
            Ok((caller.role, caller.actor))
        } else {
            Err(forbidden(caller.role, permission))
        }
    }

    fn caller_of(&self, digest: &[u8; 32]) -> Option<Caller> {
        let role = *self.by_digest.get(digest)?;
        Some(Caller { role, actor: format!("{}:{}", role.as_str(), hex(&digest[..4])) })
    }

    /// The signed-in caller of a dashboard page (the session cookie only), if any.
    pub fn session(&self, headers: &HeaderMap) -> Option<Caller> {
        self.caller_of(&self.sessions.read(headers, Utc::now())?)
    }

    /// Sign-in: the `Set-Cookie` value of a new session when `token` is known.
    pub fn sign_in(&self, token: &str) -> Option<(Caller, String)> {
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let caller = self.caller_of(&digest)?;
        Some((caller, self.sessions.issue(&digest, Utc::now())))
    }
}

fn forbidden(role: Role, permission: Permission) -> ApiError {
    let verb = if matches!(permission, Permission::Operate | Permission::Approve) { "do this" } else { "read this" };
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("the {} role may not {verb}", role.as_str()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn events_need_maintainer_or_owner() {
        for (role, events) in
            [(Role::Viewer, false), (Role::Operator, false), (Role::Maintainer, true), (Role::Owner, true)]
        {
            assert_eq!(role.allows(Permission::ReadEvents), events, "{role:?}");
            assert_eq!(role.allows(Permission::Operate), role != Role::Viewer, "{role:?}");
            assert!(role.allows(Permission::ReadStatus));
        }
    }

    fn users() -> Users {
        let tokens = [("token-viewer-1".to_owned(), Role::Viewer), ("token-owner-1".to_owned(), Role::Owner)];
        Users::new(&tokens.into_iter().collect(), Sessions::new(&[7u8; 32], 3_600, true))
    }

    fn with_cookie(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {pair}")).unwrap());
        headers
    }

    #[test]
    fn a_session_cookie_is_sealed_strict_http_only_and_names_the_role() {
        let users = users();
        assert!(users.sign_in("not-a-token").is_none());
        let (caller, set_cookie) = users.sign_in("token-owner-1").unwrap();
        assert_eq!(caller.role, Role::Owner);
        for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/", "Max-Age=3600"] {
            assert!(set_cookie.contains(attribute), "{attribute} missing from {set_cookie}");
        }
        assert!(!set_cookie.contains("token-owner-1"));
        assert!(!set_cookie.contains(&hex(&Sha256::digest(b"token-owner-1"))), "the digest must be sealed");
        assert_eq!(users.session(&with_cookie(&set_cookie)), Some(caller));
    }

    #[test]
    fn a_tampered_expired_or_foreign_cookie_is_no_session() {
        let users = users();
        let (_, set_cookie) = users.sign_in("token-viewer-1").unwrap();
        let mut tampered = set_cookie.clone();
        tampered.replace_range(12..13, if &set_cookie[12..13] == "A" { "B" } else { "A" });
        assert_eq!(users.session(&with_cookie(&tampered)), None);
        let other = Users::new(&Default::default(), Sessions::new(&[8u8; 32], 3_600, true));
        assert_eq!(other.session(&with_cookie(&set_cookie)), None);
        let digest: [u8; 32] = Sha256::digest(b"token-viewer-1").into();
        let old = users.sessions.issue(&digest, Utc::now() - chrono::Duration::seconds(3_601));
        assert_eq!(users.session(&with_cookie(&old)), None);
    }

    #[test]
    fn the_json_api_takes_a_session_cookie_only_with_the_csrf_header() {
        let users = users();
        let (_, set_cookie) = users.sign_in("token-owner-1").unwrap();
        let mut headers = with_cookie(&set_cookie);
        let refused = users.actor(&headers, Permission::Operate).unwrap_err();
        assert_eq!((refused.status, refused.code), (StatusCode::FORBIDDEN, "csrf"));
        headers.insert(CSRF_HEADER, HeaderValue::from_static("1"));
        let (role, actor) = users.actor(&headers, Permission::Operate).unwrap();
        assert_eq!(role, Role::Owner);
        assert!(actor.starts_with("owner:"), "{actor}");
    }
}
