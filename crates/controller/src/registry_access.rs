//! Who may pull, push or delete in which repository (DTR's rules), pure
//! over the state, for the registry's token service to grant from:
//!
//! - a repository's namespace is its first component, a user or an
//!   organization; a user may do anything in its own namespace;
//! - a public repository may be pulled by anyone, signed in or not;
//! - in an organization's namespace, teams' grants on the repository are
//!   additive: `read` pulls, `read-write` pushes too, `admin` deletes too;
//!   members of the organization's `owners` team (DTR's) may do anything
//!   there, creating repositories by pushing to them included;
//! - berth admins may do anything; a disabled user nothing.

use api::auth::{account_key, team_key, User};
use api::registry::{repo_grant_id, RepoAccess};
use api::{Kind, Object, State};

/// What a client may do to a repository (the token's actions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RepoAction {
    Pull,
    Push,
    Delete,
}

impl RepoAction {
    pub fn parse(s: &str) -> Option<RepoAction> {
        match s {
            "pull" => Some(RepoAction::Pull),
            "push" => Some(RepoAction::Push),
            "delete" => Some(RepoAction::Delete),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RepoAction::Pull => "pull",
            RepoAction::Push => "push",
            RepoAction::Delete => "delete",
        }
    }
}

/// The team of an organization whose members own its namespace.
pub const OWNERS_TEAM: &str = "owners";

fn allows(access: RepoAccess, action: RepoAction) -> bool {
    match action {
        RepoAction::Pull => true,
        RepoAction::Push => access >= RepoAccess::ReadWrite,
        RepoAction::Delete => access >= RepoAccess::Admin,
    }
}

/// The actions of `wanted` that `user` (`None`: anonymous) may do on
/// `repo`, in the order asked.
pub fn granted(
    state: &State,
    user: Option<&User>,
    repo: &str,
    wanted: &[RepoAction],
) -> Vec<RepoAction> {
    let public = matches!(
        state.auth_object(Kind::Repository, repo),
        Some(Object::Repository(r)) if r.public
    );
    let Some(user) = user.filter(|u| !u.disabled) else {
        return wanted
            .iter()
            .copied()
            .filter(|a| public && *a == RepoAction::Pull)
            .collect();
    };
    let namespace = repo.split('/').next().unwrap_or_default();
    if user.admin || namespace == user.name {
        return wanted.to_vec();
    }
    let org = match state.auth_by_key(&account_key(namespace)) {
        Some(Object::Organization(o)) => Some(o),
        _ => None,
    };
    let mut best: Option<RepoAccess> = None;
    if let Some(org) = org {
        let owner = matches!(
            state.auth_by_key(&team_key(&org.meta.id, OWNERS_TEAM)),
            Some(Object::Team(t)) if t.members.contains(&user.meta.id)
        );
        if owner {
            return wanted.to_vec();
        }
        for o in state.auth_objects(Kind::Team) {
            let Object::Team(t) = o else { continue };
            if t.org_id != org.meta.id || !t.members.contains(&user.meta.id) {
                continue;
            }
            if let Some(Object::RepoGrant(g)) =
                state.auth_object(Kind::RepoGrant, &repo_grant_id(repo, &t.meta.id))
            {
                best = best.max(Some(g.access));
            }
        }
    }
    wanted
        .iter()
        .copied()
        .filter(|a| (public && *a == RepoAction::Pull) || best.is_some_and(|b| allows(b, *a)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::auth::{Organization, Team};
    use api::registry::{RepoGrant, Repository};
    use api::{Batch, Meta, Op, Timestamp};
    use RepoAction::*;

    fn user(id: &str, admin: bool, disabled: bool) -> User {
        User {
            meta: Meta::new(id),
            name: id.into(),
            full_name: String::new(),
            admin,
            disabled,
            password_hash: None,
            source: Default::default(),
            locked_until: None,
        }
    }

    fn state() -> State {
        let mut s = State::default();
        let team = |id: &str, name: &str, members: &[&str]| {
            Op::Create(
                Team {
                    meta: Meta::new(id),
                    org_id: "eng".into(),
                    name: name.into(),
                    members: members.iter().map(|m| m.to_string()).collect(),
                    ldap_group_dn: None,
                }
                .into(),
            )
        };
        let repo = |name: &str, public: bool| {
            Op::Create(
                Repository {
                    meta: Meta::new(name),
                    description: String::new(),
                    public,
                    immutable_tags: false,
                }
                .into(),
            )
        };
        let grant = |repo: &str, team: &str, access: RepoAccess| {
            Op::Create(
                RepoGrant {
                    meta: Meta::new(repo_grant_id(repo, team)),
                    repo: repo.into(),
                    team_id: team.into(),
                    access,
                }
                .into(),
            )
        };
        let mut ops = vec![];
        for u in ["alice", "bob", "carol", "dave", "root", "gone"] {
            ops.push(Op::Create(user(u, u == "root", u == "gone").into()));
        }
        ops.push(Op::Create(
            Organization {
                meta: Meta::new("eng"),
                name: "eng".into(),
            }
            .into(),
        ));
        ops.push(team("t-readers", "readers", &["alice", "bob"]));
        ops.push(team("t-writers", "writers", &["bob"]));
        ops.push(team("t-owners", OWNERS_TEAM, &["carol"]));
        ops.push(repo("eng/app", false));
        ops.push(repo("eng/site", true));
        ops.push(repo("dave/tool", false));
        ops.push(grant("eng/app", "t-readers", RepoAccess::Read));
        ops.push(grant("eng/app", "t-writers", RepoAccess::ReadWrite));
        ops.push(grant("eng/site", "t-writers", RepoAccess::Admin));
        s.apply(
            1,
            &Batch {
                time: Timestamp(1),
                ops,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        s
    }

    #[test]
    fn dtr_permissions_by_namespace_team_and_visibility() {
        let s = state();
        let all = [Pull, Push, Delete];
        let who = |name: &str| match s.auth_by_key(&account_key(name)) {
            Some(Object::User(u)) => Some(u.clone()),
            _ => None,
        };
        // (user, repository, what is granted of pull, push, delete)
        let table: &[(Option<&str>, &str, &[RepoAction])] = &[
            (None, "eng/app", &[]),
            (None, "eng/site", &[Pull]),
            (Some("alice"), "eng/app", &[Pull]),
            (Some("alice"), "eng/site", &[Pull]),
            // Additive: bob reads through one team, writes through another.
            (Some("bob"), "eng/app", &[Pull, Push]),
            (Some("bob"), "eng/site", &[Pull, Push, Delete]),
            (Some("bob"), "eng/new", &[]),
            // An owner of the organization, even where no grant names it.
            (Some("carol"), "eng/new", &[Pull, Push, Delete]),
            // Their own namespace; nobody else's.
            (Some("dave"), "dave/tool", &[Pull, Push, Delete]),
            (Some("dave"), "dave/new", &[Pull, Push, Delete]),
            (Some("alice"), "dave/tool", &[]),
            (Some("dave"), "eng/app", &[]),
            (Some("root"), "dave/tool", &[Pull, Push, Delete]),
            // Disabled: as anonymous.
            (Some("gone"), "gone/x", &[]),
            (Some("gone"), "eng/site", &[Pull]),
        ];
        for (u, repo, want) in table {
            let user = u.and_then(who);
            assert_eq!(
                granted(&s, user.as_ref(), repo, &all),
                want.to_vec(),
                "{u:?} on {repo}"
            );
        }
        // Only what was asked, in its order.
        let bob = who("bob");
        assert_eq!(granted(&s, bob.as_ref(), "eng/app", &[Push]), vec![Push]);
        assert_eq!(
            granted(&s, bob.as_ref(), "eng/app", &[Delete, Pull]),
            vec![Pull]
        );
    }
}
