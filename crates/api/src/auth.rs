//! The auth store's objects (ucp-auth-store): users, organizations, teams,
//! collections, custom roles, grants, tokens and client bundles.
//!
//! They live in the Raft store beside nodes and services, so every manager
//! can authenticate and authorize on its own copy. Each has unique keys
//! ([`AuthObject::unique_keys`]) that `State::apply` keeps unique, so two
//! managers creating `alice` at once cannot both succeed. Secrets are stored
//! only as hashes: a password as an argon2id PHC string, a token or session
//! as the SHA-256 of its random secret, a bundle as the SHA-256 of its
//! certificate's public key.

use crate::object::Meta;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The label that puts a resource (service, node, …) in a collection.
pub const COLLECTION_LABEL: &str = "berth.access.collection";

/// The label naming the user who created a service (UCP's owner label),
/// written by the API alone: the scheduler places the service's tasks
/// only on nodes that user may schedule on.
pub const OWNER_LABEL: &str = "berth.access.owner";

/// The root collection, and the ones every cluster has (as UCP's).
pub const ROOT_COLLECTION: &str = "/";
pub const SYSTEM_COLLECTION: &str = "/System";
pub const SHARED_COLLECTION: &str = "/Shared";
pub const PRIVATE_COLLECTION: &str = "/Shared/Private";

/// A user's own collection, its default for what it creates.
pub fn private_collection(user_name: &str) -> String {
    format!("{PRIVATE_COLLECTION}/{user_name}")
}

// ------------------------------------------------------------------ users

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub meta: Meta,
    /// Unique among users and organizations (both name a registry namespace).
    pub name: String,
    #[serde(default)]
    pub full_name: String,
    /// Admins bypass grants.
    #[serde(default)]
    pub admin: bool,
    /// A disabled user is refused at once, with every token and bundle.
    #[serde(default)]
    pub disabled: bool,
    /// argon2id PHC string; `None` for a user who can only sign in through
    /// LDAP or a bundle.
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub source: UserSource,
    /// Set after repeated failed logins: no password is accepted before it.
    #[serde(default)]
    pub locked_until: Option<Timestamp>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("meta", &self.meta)
            .field("name", &self.name)
            .field("admin", &self.admin)
            .field("disabled", &self.disabled)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("source", &self.source)
            .field("locked_until", &self.locked_until)
            .finish()
    }
}

/// Where a user comes from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum UserSource {
    /// Made through the API; its password is checked here.
    #[default]
    Local,
    /// Made by the LDAP sync (or at first login); its password is checked
    /// by binding to the directory as `dn`.
    Ldap { dn: String },
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub meta: Meta,
    pub name: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub meta: Meta,
    /// The organization's id.
    pub org_id: String,
    /// Unique within the organization.
    pub name: String,
    /// User ids.
    #[serde(default)]
    pub members: BTreeSet<String>,
    /// The LDAP group whose members the sync makes this team's.
    #[serde(default)]
    pub ldap_group_dn: Option<String>,
}

// ------------------------------------------------------------ collections

/// A node of the collection tree. Resources name their collection by path
/// in [`COLLECTION_LABEL`]; grants on a collection hold for everything
/// below it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    pub meta: Meta,
    /// Absolute, normalised (`/Shared/web`); its parent must exist.
    pub path: String,
}

impl Collection {
    /// The parent's path; `None` for the root.
    pub fn parent(&self) -> Option<&str> {
        parent_path(&self.path)
    }
}

/// The parent of a normalised collection path; `None` for `/`.
pub fn parent_path(path: &str) -> Option<&str> {
    if path == ROOT_COLLECTION {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some(ROOT_COLLECTION),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

// ----------------------------------------------------------- roles, grants

/// A custom role: a named set of operations (`service.create`, …). The
/// built-in roles are not stored (the `auth` crate defines them).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub meta: Meta,
    pub name: String,
    pub operations: BTreeSet<String>,
}

/// Who a grant is for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "id")]
pub enum Subject {
    User(String),
    Team(String),
    Organization(String),
}

impl Subject {
    pub fn id(&self) -> &str {
        match self {
            Subject::User(id) | Subject::Team(id) | Subject::Organization(id) => id,
        }
    }
}

/// Subject × role × collection, as UCP's grants.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub meta: Meta,
    pub subject: Subject,
    /// A built-in role's name or a custom role's name.
    pub role: String,
    /// The collection's path.
    pub collection: String,
}

// ------------------------------------------------------ tokens and bundles

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    /// Made by a login; short-lived and renewed while in use.
    Session,
    /// Made by `berth token create`; named, lives until it expires or is removed.
    Api,
}

/// A bearer credential of a user. The secret is shown once, when made;
/// only its SHA-256 is kept (the secret is 256 random bits, so a fast hash
/// is as good as a slow one).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub meta: Meta,
    pub user_id: String,
    /// Unique among the user's API tokens; sessions are named by their id.
    pub name: String,
    pub purpose: TokenPurpose,
    /// SHA-256 (hex) of the secret.
    pub secret_sha256: String,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

/// A client bundle: a certificate the client root CA signed for a user. The
/// API maps a presented certificate to its user by the SHA-256 of its public
/// key, so removing the bundle revokes it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientBundle {
    pub meta: Meta,
    pub user_id: String,
    /// Unique among the user's bundles.
    pub label: String,
    /// SHA-256 (hex) of the certificate's SubjectPublicKeyInfo (DER).
    pub public_key_sha256: String,
    pub expires_at: Timestamp,
}

// ------------------------------------------------------------- the family

/// What the state machine needs of every auth object beyond its meta: the
/// keys that must stay unique across the store.
pub trait AuthObject {
    /// Each key is unique among all auth objects ("account:alice" is taken
    /// by a user or an organization, not both).
    fn unique_keys(&self) -> Vec<String>;
}

impl AuthObject for User {
    fn unique_keys(&self) -> Vec<String> {
        vec![account_key(&self.name)]
    }
}

impl AuthObject for Organization {
    fn unique_keys(&self) -> Vec<String> {
        vec![account_key(&self.name)]
    }
}

impl AuthObject for Team {
    fn unique_keys(&self) -> Vec<String> {
        vec![team_key(&self.org_id, &self.name)]
    }
}

impl AuthObject for Collection {
    fn unique_keys(&self) -> Vec<String> {
        vec![collection_key(&self.path)]
    }
}

impl AuthObject for Role {
    fn unique_keys(&self) -> Vec<String> {
        vec![role_key(&self.name)]
    }
}

impl AuthObject for Grant {
    fn unique_keys(&self) -> Vec<String> {
        vec![grant_key(&self.subject, &self.role, &self.collection)]
    }
}

impl AuthObject for Token {
    fn unique_keys(&self) -> Vec<String> {
        let mut keys = vec![token_secret_key(&self.secret_sha256)];
        if self.purpose == TokenPurpose::Api {
            keys.push(token_name_key(&self.user_id, &self.name));
        }
        keys
    }
}

impl AuthObject for ClientBundle {
    fn unique_keys(&self) -> Vec<String> {
        vec![
            bundle_key_key(&self.public_key_sha256),
            bundle_label_key(&self.user_id, &self.label),
        ]
    }
}

// The unique keys, public so that look-ups (`State::auth_by_key`) build them
// the same way.
pub fn account_key(name: &str) -> String {
    format!("account:{name}")
}
pub fn team_key(org_id: &str, name: &str) -> String {
    format!("team:{org_id}/{name}")
}
pub fn collection_key(path: &str) -> String {
    format!("collection:{path}")
}
pub fn role_key(name: &str) -> String {
    format!("role:{name}")
}
pub fn grant_key(subject: &Subject, role: &str, collection: &str) -> String {
    let (t, id) = match subject {
        Subject::User(id) => ("user", id),
        Subject::Team(id) => ("team", id),
        Subject::Organization(id) => ("org", id),
    };
    format!("grant:{t}:{id}|{role}|{collection}")
}
pub fn token_secret_key(secret_sha256: &str) -> String {
    format!("token-secret:{secret_sha256}")
}
pub fn token_name_key(user_id: &str, name: &str) -> String {
    format!("token-name:{user_id}/{name}")
}
pub fn bundle_key_key(public_key_sha256: &str) -> String {
    format!("bundle-key:{public_key_sha256}")
}
pub fn bundle_label_key(user_id: &str, label: &str) -> String {
    format!("bundle-label:{user_id}/{label}")
}

// -------------------------------------------------------------- settings

/// Access control's cluster-wide settings, kept in the cluster object (so
/// every manager applies the same ones). Defaults are UCP's where it has one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// How long a login session lasts without being renewed (UCP: 60 min).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "crate::duration")]
    pub session_lifetime: std::time::Duration,
    /// The longest a session may be renewed to, counted from its login.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "crate::duration")]
    pub session_max_lifetime: std::time::Duration,
    /// Failed logins in a row before the account is locked.
    pub lockout_failures: u32,
    /// How long a locked account stays locked.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "crate::duration")]
    pub lockout_duration: std::time::Duration,
    pub audit_level: AuditLevel,
    /// `None`: users are only the local ones.
    pub ldap: Option<LdapConfig>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_lifetime: std::time::Duration::from_secs(3600),
            session_max_lifetime: std::time::Duration::from_secs(24 * 3600),
            lockout_failures: 5,
            lockout_duration: std::time::Duration::from_secs(15 * 60),
            audit_level: AuditLevel::Metadata,
            ldap: None,
        }
    }
}

impl AuthSettings {
    pub fn is_default(&self) -> bool {
        *self == AuthSettings::default()
    }
}

/// What the audit log keeps of each API call (UCP's levels).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditLevel {
    None,
    /// Who, method, path, object, status, time, remote address.
    #[default]
    Metadata,
    /// Metadata and the request body, secrets redacted.
    Request,
}

/// The auth worker's LDAP settings (UCP's "LDAP" admin page).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LdapConfig {
    /// Tried in order; the first that answers is used. `ldap://` or `ldaps://`.
    pub servers: Vec<String>,
    /// Upgrade `ldap://` connections with StartTLS.
    pub start_tls: bool,
    /// Skip certificate verification of the server (testing only).
    pub tls_skip_verify: bool,
    /// The DN the worker binds as to search, and its password.
    pub reader_dn: String,
    pub reader_password: String,
    /// Where users are searched, and the filter that selects them.
    pub user_base_dn: String,
    pub user_filter: String,
    /// The attribute that becomes the berth user name (e.g. `uid`).
    pub username_attr: String,
    /// The attribute that becomes the full name (e.g. `cn`); may be empty.
    pub fullname_attr: String,
    /// Search the whole subtree under `user_base_dn`, not only one level.
    pub subtree: bool,
    /// Users found in LDAP but not here are created at their first login
    /// (just in time) rather than by the sync.
    pub jit_provisioning: bool,
    /// How often the sync runs; zero only syncs on demand.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "crate::duration")]
    pub sync_interval: std::time::Duration,
    /// Group attribute naming a team's members (e.g. `member`, `uniqueMember`).
    pub group_member_attr: String,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            servers: Vec::new(),
            start_tls: false,
            tls_skip_verify: false,
            reader_dn: String::new(),
            reader_password: String::new(),
            user_base_dn: String::new(),
            user_filter: "(objectClass=person)".into(),
            username_attr: "uid".into(),
            fullname_attr: "cn".into(),
            subtree: true,
            jit_provisioning: true,
            sync_interval: std::time::Duration::from_secs(3600),
            group_member_attr: "member".into(),
        }
    }
}

impl std::fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConfig")
            .field("servers", &self.servers)
            .field("start_tls", &self.start_tls)
            .field("reader_dn", &self.reader_dn)
            .field("reader_password", &"<redacted>")
            .field("user_base_dn", &self.user_base_dn)
            .field("user_filter", &self.user_filter)
            .field("username_attr", &self.username_attr)
            .field("jit_provisioning", &self.jit_provisioning)
            .field("sync_interval", &self.sync_interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_of_collection_paths() {
        assert_eq!(parent_path("/"), None);
        assert_eq!(parent_path("/Shared"), Some("/"));
        assert_eq!(parent_path("/Shared/web"), Some("/Shared"));
        assert_eq!(
            parent_path("/Shared/Private/alice"),
            Some("/Shared/Private")
        );
    }

    #[test]
    fn a_user_never_shows_its_password_hash_in_debug() {
        let u = User {
            meta: Meta::new("u1"),
            name: "alice".into(),
            full_name: String::new(),
            admin: false,
            disabled: false,
            password_hash: Some("$argon2id$secret".into()),
            source: UserSource::Local,
            locked_until: None,
        };
        let shown = format!("{u:?}");
        assert!(!shown.contains("argon2id"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn users_and_organizations_share_the_account_names() {
        assert_eq!(account_key("eng"), account_key("eng"));
        assert_ne!(team_key("o1", "web"), team_key("o2", "web"));
    }
}
