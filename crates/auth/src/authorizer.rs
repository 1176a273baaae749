//! Decisions: may this user do this operation on a resource of this
//! collection?

use crate::collection::{is_within, self_and_ancestors};
use crate::ops::{builtin_role, OpSet, Operation};
use api::auth::{Subject, SYSTEM_COLLECTION};
use api::{Kind, Object, State};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One state's users, their subjects and grants, indexed for decisions.
#[derive(Debug, Default)]
pub struct Authorizer {
    auth_index: u64,
    users: HashMap<String, UserEntry>,
    /// subject → collection path → the union of the roles granted there
    /// (nested, so a decision looks both up by reference, without building
    /// a key per probe).
    grants: HashMap<Subject, HashMap<String, OpSet>>,
}

#[derive(Debug)]
struct UserEntry {
    admin: bool,
    disabled: bool,
    /// The user, its teams, and their organizations.
    subjects: Vec<Subject>,
}

impl Authorizer {
    pub fn new(state: &State) -> Authorizer {
        Authorizer::build(state, None)
    }

    /// The decisions of one user only: indexes just its subjects' grants,
    /// so it costs a pass over teams and grants, not the whole index (the
    /// scheduler asks about a service's owner this way).
    pub fn for_user(state: &State, user_id: &str) -> Authorizer {
        Authorizer::build(state, Some(user_id))
    }

    fn build(state: &State, only: Option<&str>) -> Authorizer {
        let mut roles: HashMap<&str, OpSet> = HashMap::new();
        for o in state.auth_objects(Kind::Role) {
            if let Object::Role(r) = o {
                // A custom role with an unknown operation (written by a
                // newer berth) allows the operations this one knows.
                let ops = OpSet::of(r.operations.iter().filter_map(|n| Operation::parse(n).ok()));
                roles.insert(&r.name, ops);
            }
        }
        let mut users: HashMap<String, UserEntry> = HashMap::new();
        let users_in = |id: &str| only.is_none_or(|o| o == id);
        for o in state.auth_objects(Kind::User) {
            if let Object::User(u) = o {
                if !users_in(&u.meta.id) {
                    continue;
                }
                users.insert(
                    u.meta.id.clone(),
                    UserEntry {
                        admin: u.admin,
                        disabled: u.disabled,
                        subjects: vec![Subject::User(u.meta.id.clone())],
                    },
                );
            }
        }
        for o in state.auth_objects(Kind::Team) {
            if let Object::Team(t) = o {
                for member in &t.members {
                    if let Some(entry) = users.get_mut(member) {
                        entry.subjects.push(Subject::Team(t.meta.id.clone()));
                        let org = Subject::Organization(t.org_id.clone());
                        if !entry.subjects.contains(&org) {
                            entry.subjects.push(org);
                        }
                    }
                }
            }
        }
        let mut grants: HashMap<Subject, HashMap<String, OpSet>> = HashMap::new();
        let wanted: Option<std::collections::HashSet<&Subject>> =
            only.map(|_| users.values().flat_map(|u| u.subjects.iter()).collect());
        for o in state.auth_objects(Kind::Grant) {
            if let Object::Grant(g) = o {
                if wanted.as_ref().is_some_and(|w| !w.contains(&g.subject)) {
                    continue;
                }
                let ops = builtin_role(&g.role)
                    .or_else(|| roles.get(g.role.as_str()).copied())
                    .unwrap_or(OpSet::EMPTY);
                let slot = grants
                    .entry(g.subject.clone())
                    .or_default()
                    .entry(g.collection.clone())
                    .or_default();
                *slot = slot.union(ops);
            }
        }
        Authorizer {
            auth_index: state.auth_index(),
            users,
            grants,
        }
    }

    /// The state's `auth_index` this was built from.
    pub fn auth_index(&self) -> u64 {
        self.auth_index
    }

    /// An admin who is not disabled.
    pub fn is_admin(&self, user_id: &str) -> bool {
        self.users
            .get(user_id)
            .is_some_and(|u| u.admin && !u.disabled)
    }

    /// Whether the user may do `op` on a resource of `collection` (a
    /// normalised path): admins may do anything; a disabled or unknown
    /// user nothing; anyone else what a grant to the user, one of its
    /// teams or their organizations allows on the collection or one of
    /// its ancestors — except below `/System`, which is the admins' alone.
    pub fn allows(&self, user_id: &str, op: Operation, collection: &str) -> bool {
        let Some(user) = self.users.get(user_id) else {
            return false;
        };
        if user.disabled {
            return false;
        }
        if user.admin {
            return true;
        }
        if is_within(collection, SYSTEM_COLLECTION) {
            return false;
        }
        let granted: Vec<&HashMap<String, OpSet>> = user
            .subjects
            .iter()
            .filter_map(|subject| self.grants.get(subject))
            .collect();
        self_and_ancestors(collection).any(|path| {
            granted
                .iter()
                .any(|g| g.get(path).is_some_and(|ops| ops.contains(op)))
        })
    }
}

/// The authorizer of the latest state seen, rebuilt only when an auth
/// object changed (the state's `auth_index` moved).
#[derive(Debug, Default)]
pub struct AuthorizerCache {
    current: Mutex<Option<Arc<Authorizer>>>,
}

impl AuthorizerCache {
    /// Keeps `a` unless the cache holds one of a later state already (a
    /// background rebuild finishing after a request rebuilt a newer one).
    pub fn offer(&self, a: Arc<Authorizer>) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_none_or(|c| c.auth_index < a.auth_index) {
            *current = Some(a);
        }
    }

    /// The `auth_index` of the authorizer held, if any.
    pub fn index(&self) -> Option<u64> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().map(|a| a.auth_index)
    }

    pub fn get(&self, state: &State) -> Arc<Authorizer> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match &*current {
            Some(a) if a.auth_index == state.auth_index() => a.clone(),
            _ => {
                let a = Arc::new(Authorizer::new(state));
                *current = Some(a.clone());
                a
            }
        }
    }
}

#[cfg(test)]
mod tests;
