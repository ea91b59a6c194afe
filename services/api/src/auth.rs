//! User tokens and roles (deep dive §5.1).

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode};
use ct_platform::http_error::ApiError;
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Maintainer,
    Owner,
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

pub struct Users {
    by_digest: HashMap<[u8; 32], Role>,
}

impl Users {
    pub fn new(tokens: &std::collections::BTreeMap<String, Role>) -> Self {
        Self { by_digest: tokens.iter().map(|(t, r)| (Sha256::digest(t.as_bytes()).into(), *r)).collect() }
    }

    pub fn authorize(&self, headers: &HeaderMap, permission: Permission) -> Result<Role, ApiError> {
        self.actor(headers, permission).map(|(role, _)| role)
    }

    /// The role and who acted, for audit records: the role and the first 4 bytes of the token's
    /// SHA-256 in hex (enough to tell tokens apart, never the token).
    pub fn actor(&self, headers: &HeaderMap, permission: Permission) -> Result<(Role, String), ApiError> {
        let unauthorized = || {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or unknown bearer token")
                .with_field("Authorization")
        };
        let header = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or_else(unauthorized)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or_else(unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthorized());
        }
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let role = *self.by_digest.get(&digest).ok_or_else(unauthorized)?;
        if role.allows(permission) {
            let fingerprint: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
            Ok((role, format!("{}:{fingerprint}", format!("{role:?}").to_lowercase())))
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the {role:?} role may not {}",
                    if matches!(permission, Permission::Operate | Permission::Approve) {
                        "do this"
                    } else {
                        "read this"
                    }
                )
                .to_lowercase(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
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
}
