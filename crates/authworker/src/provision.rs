//! Just-in-time provisioning: the berth user of an LDAP user at its first
//! login, made from what [`crate::authenticate`] found.
//!
//! The controller's LDAP login is `authenticate` (the password, checked by
//! the directory), then [`provision`] (the berth user), then its own checks
//! (disabled, locked) and the session.

use crate::directory::DirectoryUser;
use crate::sync::{check_username, new_ldap_user};
use api::auth::{account_key, LdapConfig, User, UserSource};
use api::{ApplyError, Object, Op};
use store::{Store, StoreError};

#[derive(Clone, Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The directory user has no berth user yet, and users are made by the
    /// sync only.
    #[error("{name:?} is in the directory but not yet a berth user, and just-in-time provisioning is off: run an LDAP sync first")]
    JitDisabled { name: String },
    /// The name belongs to a local user or an organization, which an LDAP
    /// login never takes over.
    #[error(
        "the name {name:?} is taken by {holder}; an LDAP login never takes over a local account"
    )]
    NameTaken { name: String, holder: &'static str },
    #[error("the directory's user name cannot be used here: {0}")]
    BadName(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProvisionError {
    /// Whether the same login may work later as it is (the store was
    /// unavailable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProvisionError::Store(e) if e.is_retryable())
    }
}

/// The berth user of `found`, made if it does not exist yet (idempotent:
/// an existing LDAP user of that name is returned). An existing user's DN
/// is brought up to date, and a user the sync disabled (see
/// [`crate::sync`]: an empty DN) is enabled again, since the directory has
/// just vouched for it. A user an admin disabled is returned disabled: the
/// caller refuses it.
pub async fn provision(
    store: &Store,
    config: &LdapConfig,
    found: &DirectoryUser,
) -> Result<User, ProvisionError> {
    check_username(&found.username).map_err(ProvisionError::BadName)?;
    // Twice at most: a creation that loses a race with the sync (or
    // another manager's login) finds the winner's user the second time.
    for _ in 0..2 {
        let existing = store.view(|s| s.auth_by_key(&account_key(&found.username)).cloned());
        match existing {
            Some(Object::User(u)) => match &u.source {
                UserSource::Local => {
                    return Err(ProvisionError::NameTaken {
                        name: found.username.clone(),
                        holder: "a local user",
                    })
                }
                UserSource::Ldap { dn } => {
                    if *dn == found.dn {
                        return Ok(u);
                    }
                    let mut new = u.clone();
                    if u.disabled && dn.is_empty() {
                        new.disabled = false;
                    }
                    new.source = UserSource::Ldap {
                        dn: found.dn.clone(),
                    };
                    match store.update(vec![Op::Update(new.into())]).await {
                        Ok(change) => return Ok(written_user(change, u)),
                        Err(StoreError::Apply(ApplyError::Conflict { .. })) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            },
            Some(_) => {
                return Err(ProvisionError::NameTaken {
                    name: found.username.clone(),
                    holder: "an organization",
                })
            }
            None if !config.jit_provisioning => {
                return Err(ProvisionError::JitDisabled {
                    name: found.username.clone(),
                })
            }
            None => {
                let user = new_ldap_user(api::new_id(), found);
                match store.update(vec![Op::Create(user.clone().into())]).await {
                    Ok(change) => {
                        tracing::info!(name = %user.name, dn = %found.dn, "LDAP user provisioned at first login");
                        return Ok(written_user(change, user));
                    }
                    Err(StoreError::Apply(ApplyError::NameTaken { .. })) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    // The name changed hands twice under us: say so rather than loop.
    Err(StoreError::Unavailable(format!(
        "the user {:?} kept changing while being provisioned; try again",
        found.username
    ))
    .into())
}

/// The user as the store wrote it (with its version), from the change.
fn written_user(change: api::Change, fallback: User) -> User {
    change
        .events
        .into_iter()
        .find_map(|e| match e.object() {
            Object::User(u) if u.meta.id == fallback.meta.id => Some(u.clone()),
            _ => None,
        })
        .unwrap_or(fallback)
}
