//! The operations a role can allow, and the built-in roles.

use std::fmt;

/// Every operation, by name (`resource.action`). The order is the bit of
/// each in an [`OpSet`]; new ones go at the end.
const NAMES: &[&str] = &[
    "service.view",
    "service.create",
    "service.update",
    "service.delete",
    "service.logs",
    // What Restricted Control withholds: a service that reaches into its node.
    "service.host_mount",
    "service.privileged",
    "service.host_network",
    "task.view",
    "node.view",
    "node.update",
    "node.delete",
    "node.schedule",
    "secret.view",
    "secret.create",
    "secret.update",
    "secret.delete",
    "secret.use",
    "config.view",
    "config.create",
    "config.update",
    "config.delete",
    "collection.view",
    "collection.create",
    "collection.delete",
    "grant.view",
    "grant.create",
    "grant.delete",
    "user.view",
    "user.create",
    "user.update",
    "user.delete",
    "team.view",
    "team.create",
    "team.update",
    "team.delete",
    "repository.pull",
    "repository.push",
    "repository.create",
    "repository.delete",
    "repository.admin",
];

/// One operation on one type of resource.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Operation(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown operation {0:?} (operations are resource.action, such as service.create)")]
pub struct UnknownOperation(pub String);

impl Operation {
    pub fn parse(name: &str) -> Result<Operation, UnknownOperation> {
        NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Operation(i as u8))
            .ok_or_else(|| UnknownOperation(name.to_string()))
    }

    /// For names written in the code; an unknown one is a programming error.
    #[allow(clippy::expect_used)]
    pub fn named(name: &'static str) -> Operation {
        Operation::parse(name).expect("a known operation")
    }

    pub fn name(self) -> &'static str {
        NAMES[self.0 as usize]
    }

    pub fn all() -> impl Iterator<Item = Operation> {
        (0..NAMES.len()).map(|i| Operation(i as u8))
    }

    pub fn resource(self) -> &'static str {
        self.name().split('.').next().unwrap_or_default()
    }

    pub fn action(self) -> &'static str {
        self.name().split('.').nth(1).unwrap_or_default()
    }
}

impl fmt::Debug for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of operations: what a role allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OpSet(u64);

const _: () = assert!(NAMES.len() <= 64, "an OpSet holds 64 operations");

impl OpSet {
    pub const EMPTY: OpSet = OpSet(0);

    pub fn of(ops: impl IntoIterator<Item = Operation>) -> OpSet {
        ops.into_iter().fold(OpSet::EMPTY, |s, o| s.with(o))
    }

    /// The operations named, or the first unknown name.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<OpSet, UnknownOperation> {
        names
            .into_iter()
            .try_fold(OpSet::EMPTY, |s, n| Ok(s.with(Operation::parse(n)?)))
    }

    pub fn with(self, op: Operation) -> OpSet {
        OpSet(self.0 | 1 << op.0)
    }

    pub fn union(self, other: OpSet) -> OpSet {
        OpSet(self.0 | other.0)
    }

    pub fn contains(self, op: Operation) -> bool {
        self.0 & (1 << op.0) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Operation> {
        Operation::all().filter(move |o| self.contains(*o))
    }
}

/// The built-in roles, as UCP's, weakest first.
pub const BUILTIN_ROLES: &[&str] = &[
    "None",
    "View Only",
    "Restricted Control",
    "Scheduler",
    "Full Control",
];

/// What a built-in role allows; `None` for a name that is not one.
///
/// - View Only: see every resource, read service logs, pull images.
/// - Restricted Control: View Only, and create, change and remove services,
///   secrets and configs, use secrets, push images — but no service that
///   mounts a host path, runs privileged or on the host's network.
/// - Scheduler: see nodes and schedule tasks on them.
/// - Full Control: everything on the collection's resources, those three
///   included, and its nodes and sub-collections; never the cluster's
///   users, teams and grants, which only admins manage.
pub fn builtin_role(name: &str) -> Option<OpSet> {
    let ops = |pred: &dyn Fn(Operation) -> bool| OpSet::of(Operation::all().filter(|o| pred(*o)));
    let view = |o: Operation| {
        o.action() == "view" || matches!(o.name(), "service.logs" | "repository.pull")
    };
    let restricted = |o: Operation| {
        view(o)
            || matches!(o.resource(), "secret" | "config")
            || matches!(
                o.name(),
                "service.create" | "service.update" | "service.delete" | "repository.push"
            )
    };
    let identity =
        |o: Operation| matches!(o.resource(), "user" | "team" | "grant") && o.action() != "view";
    Some(match name {
        "None" => OpSet::EMPTY,
        "View Only" => ops(&view),
        "Restricted Control" => ops(&restricted),
        "Scheduler" => OpSet::of([
            Operation::named("node.view"),
            Operation::named("node.schedule"),
        ]),
        "Full Control" => ops(&|o| !identity(o)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for op in Operation::all() {
            assert_eq!(Operation::parse(op.name()), Ok(op));
        }
        let err = Operation::parse("service.fly").unwrap_err();
        assert!(err.to_string().contains("service.fly"), "{err}");
        assert!(OpSet::parse(["service.view", "nope"]).is_err());
    }

    /// Each built-in role, against operations chosen to sit on its edges.
    #[test]
    fn built_in_roles_allow_what_ucp_s_do() {
        let table: &[(&str, &str, bool)] = &[
            ("None", "service.view", false),
            ("View Only", "service.view", true),
            ("View Only", "task.view", true),
            ("View Only", "service.logs", true),
            ("View Only", "repository.pull", true),
            ("View Only", "service.create", false),
            ("View Only", "node.schedule", false),
            ("View Only", "secret.use", false),
            ("Restricted Control", "service.create", true),
            ("Restricted Control", "service.delete", true),
            ("Restricted Control", "secret.create", true),
            ("Restricted Control", "secret.use", true),
            ("Restricted Control", "repository.push", true),
            ("Restricted Control", "service.host_mount", false),
            ("Restricted Control", "service.privileged", false),
            ("Restricted Control", "service.host_network", false),
            ("Restricted Control", "node.schedule", false),
            ("Restricted Control", "node.update", false),
            ("Scheduler", "node.view", true),
            ("Scheduler", "node.schedule", true),
            ("Scheduler", "service.view", false),
            ("Scheduler", "service.create", false),
            ("Full Control", "service.privileged", true),
            ("Full Control", "service.host_mount", true),
            ("Full Control", "node.schedule", true),
            ("Full Control", "node.update", true),
            ("Full Control", "collection.create", true),
            ("Full Control", "repository.admin", true),
            ("Full Control", "user.view", true),
            ("Full Control", "user.create", false),
            ("Full Control", "team.update", false),
            ("Full Control", "grant.create", false),
        ];
        for (role, op, allowed) in table {
            let set = builtin_role(role).unwrap();
            assert_eq!(set.contains(Operation::named(op)), *allowed, "{role} {op}");
        }
        for r in BUILTIN_ROLES {
            assert!(builtin_role(r).is_some(), "{r}");
        }
        assert!(builtin_role("Admin").is_none());
    }
}
