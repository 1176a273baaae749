//! The LDAP sync's decisions, pure: from the state and what the directory
//! holds ([`Found`]), the store's changes and a report of them
//! ([`plan`] → [`SyncPlan`]).
//!
//! Rules:
//! - A directory user is matched to the berth account of the same name.
//!   None: with just-in-time provisioning off it is created (source
//!   `Ldap { dn }`, no password, not admin); with it on, it is created at
//!   its first login instead. A local user or an organization of that
//!   name is never taken over: the entry is skipped, with the reason.
//! - An LDAP user no longer found is disabled, and its `source` DN is
//!   cleared (`Ldap { dn: "" }`): it is nowhere in the directory any more.
//!   That empty DN is how a later sync tells the users it disabled itself
//!   from those an admin disabled: only a disabled LDAP user with an empty
//!   DN is re-enabled when found again. An LDAP user an admin disabled
//!   keeps its DN, and stays disabled whatever the directory says.
//! - A found LDAP user's DN and full name follow the directory (an empty
//!   full name in the directory leaves berth's as it is).
//! - A team with an `ldap_group_dn` gets as members the berth LDAP users
//!   (created in the same plan included) whose DNs the group lists, and
//!   loses the LDAP users it does not list; local users are members by an
//!   admin's choice and are left alone. A group that could not be read
//!   leaves its teams as they are.
//!
//! DNs are compared in a normal form ([`normalize_dn`]): without case and
//! without the spaces around `,` and `=`.

use crate::directory::DirectoryUser;
use api::auth::{account_key, Team, User, UserSource};
use api::{Kind, Meta, Object, Op, State, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What the directory holds, as the worker read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub users: Vec<DirectoryUser>,
    /// A group's DN (as a team names it) → the DNs of its members.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// A group's DN → why it could not be read.
    pub unreadable_groups: BTreeMap<String, String>,
}

/// The changes of one sync, in the order they must be applied (users
/// before the teams that name them).
#[derive(Clone, Debug, PartialEq)]
pub struct SyncPlan {
    pub ops: Vec<Op>,
    pub report: SyncReport,
}

/// What a sync did (or, for a dry run, would do), by names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// When the sync was planned.
    pub at: Timestamp,
    pub users_created: Vec<String>,
    /// LDAP users no longer in the directory.
    pub users_disabled: Vec<String>,
    /// Users this sync had disabled, found again.
    pub users_enabled: Vec<String>,
    /// Users whose DN or full name changed in the directory.
    pub users_updated: Vec<String>,
    /// Teams whose members changed.
    pub teams: Vec<TeamChange>,
    /// Directory entries and teams the sync left alone, and why.
    pub skipped: Vec<Skipped>,
}

/// The members a sync added to or removed from one team (user names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamChange {
    pub organization: String,
    pub team: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// An entry (a DN, or `organization/team`) the sync did not act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub entry: String,
    pub reason: String,
}

/// A report's counts, for a status line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummary {
    pub users_created: usize,
    pub users_disabled: usize,
    pub users_enabled: usize,
    pub users_updated: usize,
    pub members_added: usize,
    pub members_removed: usize,
    pub skipped: usize,
}

impl SyncReport {
    pub fn summary(&self) -> SyncSummary {
        SyncSummary {
            users_created: self.users_created.len(),
            users_disabled: self.users_disabled.len(),
            users_enabled: self.users_enabled.len(),
            users_updated: self.users_updated.len(),
            members_added: self.teams.iter().map(|t| t.added.len()).sum(),
            members_removed: self.teams.iter().map(|t| t.removed.len()).sum(),
            skipped: self.skipped.len(),
        }
    }

    /// Whether the sync changes nothing.
    pub fn no_changes(&self) -> bool {
        let s = self.summary();
        s.users_created
            + s.users_disabled
            + s.users_enabled
            + s.users_updated
            + s.members_added
            + s.members_removed
            == 0
    }
}

/// The form DNs are compared in: lower case, no spaces around the `,`
/// between RDNs or the `=` in them. (`uid=Alice, ou=People` and
/// `uid=alice,ou=people` are one DN; the attributes berth maps are
/// case-insensitive in every common schema.)
pub fn normalize_dn(dn: &str) -> String {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            current.push(c);
            escaped = true;
        } else if c == ',' {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
        .iter()
        .map(|rdn| match rdn.split_once('=') {
            Some((attr, value)) => format!("{}={}", attr.trim(), value.trim()),
            None => rdn.trim().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// Why a directory user name cannot be a berth account name, if it cannot.
/// Names become registry namespaces and collection paths
/// (`/Shared/Private/<name>`), so no `/`, no spaces or control characters,
/// and not `.` or `..`.
pub fn check_username(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the user name is empty".into());
    }
    if name.len() > 255 {
        return Err("the user name is longer than 255 bytes".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} cannot be a user name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '/')
    {
        return Err(format!("the user name {name:?} contains {c:?}"));
    }
    Ok(())
}

fn skip(skipped: &mut Vec<Skipped>, entry: &str, reason: String) {
    skipped.push(Skipped {
        entry: entry.to_string(),
        reason,
    });
}

/// The LDAP user made from a directory entry (by the sync or at a first
/// login).
pub fn new_ldap_user(id: String, found: &DirectoryUser) -> User {
    User {
        meta: Meta::new(id),
        name: found.username.clone(),
        full_name: found.full_name.clone(),
        admin: false,
        disabled: false,
        password_hash: None,
        source: UserSource::Ldap {
            dn: found.dn.clone(),
        },
        locked_until: None,
    }
}

/// The sync's changes; see the module's rules. `jit`: users are created at
/// their first login, not here. New ids come from [`api::new_id`]; every
/// update carries the object's current version.
pub fn plan(state: &State, found: &Found, now: Timestamp, jit: bool) -> SyncPlan {
    let mut report = SyncReport {
        at: now,
        ..SyncReport::default()
    };
    let mut creates = Vec::new();
    let mut user_updates = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();

    // One directory entry per name: the first by DN wins, so that the
    // choice does not depend on the order the server answered in.
    let mut entries: Vec<&DirectoryUser> = found.users.iter().collect();
    entries.sort_by_cached_key(|u| normalize_dn(&u.dn));
    let mut by_name: BTreeMap<&str, &DirectoryUser> = BTreeMap::new();
    for u in entries {
        if let Err(reason) = check_username(&u.username) {
            skip(&mut skipped, &u.dn, reason);
            continue;
        }
        match by_name.get(u.username.as_str()) {
            Some(first) => skip(
                &mut skipped,
                &u.dn,
                format!(
                    "the user name {:?} is also {}'s, which the sync uses",
                    u.username, first.dn
                ),
            ),
            None => {
                by_name.insert(&u.username, u);
            }
        }
    }

    // Normalised DN → the berth user the entry is (existing or new), and
    // the names of the new ones for the report.
    let mut user_of_dn: HashMap<String, String> = HashMap::new();
    let mut new_names: HashMap<String, String> = HashMap::new();
    for (&name, &entry) in &by_name {
        match state.auth_by_key(&account_key(name)) {
            None if jit => {}
            None => {
                let user = new_ldap_user(api::new_id(), entry);
                user_of_dn.insert(normalize_dn(&entry.dn), user.meta.id.clone());
                new_names.insert(user.meta.id.clone(), name.to_string());
                report.users_created.push(name.to_string());
                creates.push(Op::Create(user.into()));
            }
            Some(Object::Organization(_)) => skip(
                &mut skipped,
                &entry.dn,
                format!("{name:?} is an organization's name"),
            ),
            Some(Object::User(u)) => match &u.source {
                UserSource::Local => skip(
                    &mut skipped,
                    &entry.dn,
                    format!(
                        "a local user is named {name:?}; the sync never takes over a local account"
                    ),
                ),
                UserSource::Ldap { dn } => {
                    let mut new = u.clone();
                    if u.disabled && dn.is_empty() {
                        new.disabled = false;
                        report.users_enabled.push(name.to_string());
                    }
                    let mut updated = false;
                    if *dn != entry.dn {
                        new.source = UserSource::Ldap {
                            dn: entry.dn.clone(),
                        };
                        // A DN filled in again is part of re-enabling.
                        updated |= !dn.is_empty();
                    }
                    if !entry.full_name.is_empty() && entry.full_name != u.full_name {
                        new.full_name = entry.full_name.clone();
                        updated = true;
                    }
                    if updated {
                        report.users_updated.push(name.to_string());
                    }
                    if new != *u {
                        user_updates.push(Op::Update(new.into()));
                    }
                    user_of_dn.insert(normalize_dn(&entry.dn), u.meta.id.clone());
                }
            },
            Some(other) => skip(
                &mut skipped,
                &entry.dn,
                format!("the name {name:?} is taken by a {}", other.kind()),
            ),
        }
    }

    // LDAP users the directory no longer has.
    for obj in state.auth_objects(Kind::User) {
        let Object::User(u) = obj else { continue };
        if !matches!(u.source, UserSource::Ldap { .. })
            || u.disabled
            || by_name.contains_key(u.name.as_str())
        {
            continue;
        }
        let mut new = u.clone();
        new.disabled = true;
        new.source = UserSource::Ldap { dn: String::new() };
        report.users_disabled.push(u.name.clone());
        user_updates.push(Op::Update(new.into()));
    }

    // Teams mapped to groups.
    let groups: HashMap<String, &BTreeSet<String>> = found
        .groups
        .iter()
        .map(|(dn, members)| (normalize_dn(dn), members))
        .collect();
    let unreadable: HashMap<String, &String> = found
        .unreadable_groups
        .iter()
        .map(|(dn, why)| (normalize_dn(dn), why))
        .collect();
    let is_ldap_user = |id: &str| {
        matches!(
            state.auth_object(Kind::User, id),
            Some(Object::User(User {
                source: UserSource::Ldap { .. },
                ..
            }))
        )
    };
    let name_of = |id: &str| match state.auth_object(Kind::User, id) {
        Some(Object::User(u)) => u.name.clone(),
        _ => new_names.get(id).cloned().unwrap_or_else(|| id.to_string()),
    };
    let mut team_updates = Vec::new();
    for obj in state.auth_objects(Kind::Team) {
        let Object::Team(team) = obj else { continue };
        let Some(group_dn) = &team.ldap_group_dn else {
            continue;
        };
        let organization = match state.auth_object(Kind::Organization, &team.org_id) {
            Some(Object::Organization(o)) => o.name.clone(),
            _ => team.org_id.clone(),
        };
        let key = normalize_dn(group_dn);
        let Some(members) = groups.get(&key) else {
            let why = unreadable
                .get(&key)
                .map_or("it was not read", |w| w.as_str());
            skip(
                &mut skipped,
                &format!("{organization}/{}", team.name),
                format!("group {group_dn:?}: {why}; its members are left as they are"),
            );
            continue;
        };
        let wanted: BTreeSet<&str> = members
            .iter()
            .filter_map(|dn| user_of_dn.get(&normalize_dn(dn)).map(String::as_str))
            .collect();
        let removed: Vec<&str> = team
            .members
            .iter()
            .map(String::as_str)
            .filter(|id| is_ldap_user(id) && !wanted.contains(id))
            .collect();
        let added: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|id| !team.members.contains(*id))
            .collect();
        if added.is_empty() && removed.is_empty() {
            continue;
        }
        let mut new: Team = team.clone();
        for id in &removed {
            new.members.remove(*id);
        }
        for id in &added {
            new.members.insert(id.to_string());
        }
        let names = |ids: &[&str]| {
            let mut n: Vec<String> = ids.iter().map(|id| name_of(id)).collect();
            n.sort();
            n
        };
        report.teams.push(TeamChange {
            organization,
            team: team.name.clone(),
            added: names(&added),
            removed: names(&removed),
        });
        team_updates.push(Op::Update(new.into()));
    }

    report.skipped = skipped;
    report.users_created.sort();
    report.users_disabled.sort();
    report.users_enabled.sort();
    report.users_updated.sort();
    let mut ops = creates;
    ops.extend(user_updates);
    ops.extend(team_updates);
    SyncPlan { ops, report }
}

#[cfg(test)]
mod tests;
