//! The token spec's scopes: what a client asks the token endpoint for
//! (`scope=repository:eng/app:pull,push`) and what a token's `access` claim
//! grants. One [`ResourceScope`] is `type[(class)]:name:action[,action]*`;
//! a [`Scope`] is several, from one parameter (space-separated, the spec's
//! grammar) or several `scope` parameters (what Docker clients send).
//!
//! Resource types other than `repository` and `registry` parse and print
//! unchanged, so a request naming one is not refused as a whole; the token
//! endpoint grants nothing on them ([`ResourceScope::is_known`]).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The resource type of a repository's scopes.
pub const REPOSITORY: &str = "repository";
/// The resource type of registry-wide scopes (`registry:catalog:*`).
pub const REGISTRY: &str = "registry";
/// The action that stands for every action of its resource.
pub const ALL_ACTIONS: &str = "*";

/// One resource and the actions asked on (or granted over) it; also the
/// form of one entry of a token's `access` claim
/// (`{"type","class"?,"name","actions"}`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceScope {
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The type's class, `plugin` in `repository(plugin)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub name: String,
    pub actions: Vec<String>,
}

/// Why a scope string is refused; it names the part at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {scope:?}: {reason}")]
pub struct ScopeError {
    pub scope: String,
    pub reason: &'static str,
}

impl ResourceScope {
    pub fn new(resource_type: &str, name: &str, actions: &[&str]) -> ResourceScope {
        ResourceScope {
            resource_type: resource_type.to_string(),
            class: None,
            name: name.to_string(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// `repository:<name>:<actions>`.
    pub fn repository(name: &str, actions: &[&str]) -> ResourceScope {
        ResourceScope::new(REPOSITORY, name, actions)
    }

    /// `registry:catalog:*`, the right to list every repository.
    pub fn catalog() -> ResourceScope {
        ResourceScope::new(REGISTRY, "catalog", &[ALL_ACTIONS])
    }

    /// Parses one resource scope. The name is whatever lies between the
    /// first and the last colon, so a name with a registry host and port
    /// (`repository:localhost:5000/app:pull`) parses as the grammar says.
    pub fn parse(s: &str) -> Result<ResourceScope, ScopeError> {
        let bad = |reason| ScopeError {
            scope: s.to_string(),
            reason,
        };
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| bad("no ':' after the type"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("no ':' before the actions"))?;
        let (resource_type, class) = match kind.split_once('(') {
            None => (kind, None),
            Some((t, c)) => {
                let c = c
                    .strip_suffix(')')
                    .ok_or_else(|| bad("the type's class is not closed by ')'"))?;
                (t, Some(c))
            }
        };
        if !is_type_value(resource_type) {
            return Err(bad("the type must be lowercase letters and digits"));
        }
        if let Some(c) = class {
            if !is_type_value(c) {
                return Err(bad("the class must be lowercase letters and digits"));
            }
        }
        if !is_resource_name(name) {
            return Err(bad("the name is not a resource name"));
        }
        let mut list: Vec<String> = Vec::new();
        for a in actions.split(',') {
            let ok =
                a == ALL_ACTIONS || (!a.is_empty() && a.bytes().all(|b| b.is_ascii_lowercase()));
            if !ok {
                return Err(bad("an action must be lowercase letters, or '*'"));
            }
            if !list.iter().any(|x| x == a) {
                list.push(a.to_string());
            }
        }
        Ok(ResourceScope {
            resource_type: resource_type.to_string(),
            class: class.map(str::to_string),
            name: name.to_string(),
            actions: list,
        })
    }

    /// Whether berth grants anything on this type of resource.
    pub fn is_known(&self) -> bool {
        self.resource_type == REPOSITORY || self.resource_type == REGISTRY
    }

    /// Whether `other` names the same resource (type, class and name).
    pub fn same_resource(&self, other: &ResourceScope) -> bool {
        self.resource_type == other.resource_type
            && self.class == other.class
            && self.name == other.name
    }

    /// Whether this grants `action` (itself or through `*`).
    pub fn allows(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action || a == ALL_ACTIONS)
    }

    /// What of this request `granted` covers: the actions asked that it
    /// allows (`*` asked is covered only by `*` granted), or `None` when
    /// nothing is, or it is another resource.
    pub fn intersect(&self, granted: &ResourceScope) -> Option<ResourceScope> {
        if !self.same_resource(granted) {
            return None;
        }
        let actions: Vec<String> = self
            .actions
            .iter()
            .filter(|a| {
                if *a == ALL_ACTIONS {
                    granted.actions.iter().any(|g| g == ALL_ACTIONS)
                } else {
                    granted.allows(a)
                }
            })
            .cloned()
            .collect();
        (!actions.is_empty()).then(|| ResourceScope {
            actions,
            ..self.clone()
        })
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource_type)?;
        if let Some(c) = &self.class {
            write!(f, "({c})")?;
        }
        write!(f, ":{}:{}", self.name, self.actions.join(","))
    }
}

impl std::str::FromStr for ResourceScope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceScope::parse(s)
    }
}

/// Several resource scopes, as one request asks them: each resource once,
/// in the order first asked, with the union of the actions asked on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope(Vec<ResourceScope>);

impl Scope {
    /// The spec's `scope`: resource scopes separated by spaces.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        Scope::from_params([s])
    }

    /// The `scope` parameters of one request, each possibly holding several
    /// resource scopes. Scopes on one resource are merged.
    pub fn from_params<'a>(params: impl IntoIterator<Item = &'a str>) -> Result<Scope, ScopeError> {
        let mut scope = Scope::default();
        for p in params {
            for rs in p.split(' ').filter(|s| !s.is_empty()) {
                scope.add(ResourceScope::parse(rs)?);
            }
        }
        Ok(scope)
    }

    /// Adds a resource scope, merged into the one on the same resource.
    pub fn add(&mut self, rs: ResourceScope) {
        match self.0.iter_mut().find(|s| s.same_resource(&rs)) {
            None => self.0.push(rs),
            Some(s) => {
                for a in rs.actions {
                    if !s.actions.contains(&a) {
                        s.actions.push(a);
                    }
                }
            }
        }
    }

    pub fn resources(&self) -> &[ResourceScope] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What of this request the `granted` scopes cover, resource by
    /// resource: never more than was asked, whatever was granted.
    pub fn intersect(&self, granted: &[ResourceScope]) -> Vec<ResourceScope> {
        let mut out = Scope::default();
        for asked in &self.0 {
            for g in granted {
                if let Some(i) = asked.intersect(g) {
                    out.add(i);
                }
            }
        }
        out.0
    }
}

impl From<Vec<ResourceScope>> for Scope {
    fn from(list: Vec<ResourceScope>) -> Scope {
        let mut scope = Scope::default();
        for rs in list {
            scope.add(rs);
        }
        scope
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rs) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{rs}")?;
        }
        Ok(())
    }
}

/// `resourcetypevalue := /[a-z0-9]+/`
fn is_type_value(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `resourcename := [ hostname '/' ] component [ '/' component ]*`
fn is_resource_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    let rest = match parts.as_slice() {
        [] => return false,
        [host, rest @ ..] if !rest.is_empty() && !is_component(host) => {
            if !is_hostname(host) {
                return false;
            }
            rest
        }
        all => all,
    };
    rest.iter().all(|c| is_component(c))
}

/// `component := alpha-numeric [ separator alpha-numeric ]*` where a
/// separator is `.`, `_`, `__` or any run of `-`.
fn is_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `hostname := hostcomponent ['.' hostcomponent]* [':' port-number]`
fn is_hostname(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    host.split('.').all(|c| {
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_print_as_they_parse() {
        for s in [
            "repository:eng/app:pull,push",
            "repository:app:pull",
            "repository(plugin):vieux/sshfs:pull",
            "registry:catalog:*",
            "repository:localhost:5000/eng/app:pull",
            "repository:registry.example.com/a__b/c-d--e.f:delete",
            "repository:a/b/c:*",
            // The grammar lets a first component be a host's name.
            "repository:Registry-1/app:pull",
            "helm:charts/x:get",
        ] {
            let rs = ResourceScope::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(rs.to_string(), s);
            assert_eq!(Scope::parse(s).unwrap().to_string(), s);
        }
        let rs = ResourceScope::parse("repository(plugin):localhost:5000/x:pull,push").unwrap();
        assert_eq!(rs.resource_type, "repository");
        assert_eq!(rs.class.as_deref(), Some("plugin"));
        assert_eq!(rs.name, "localhost:5000/x");
        assert_eq!(rs.actions, ["pull", "push"]);
    }

    #[test]
    fn bad_scopes_are_refused_naming_why() {
        for (s, why) in [
            ("", "no ':' after the type"),
            ("repository", "no ':' after the type"),
            ("repository:app", "no ':' before the actions"),
            (
                "Repository:app:pull",
                "the type must be lowercase letters and digits",
            ),
            (":app:pull", "the type must be lowercase letters and digits"),
            (
                "repository(plugin:app:pull",
                "the type's class is not closed by ')'",
            ),
            (
                "repository():app:pull",
                "the class must be lowercase letters and digits",
            ),
            ("repository::pull", "the name is not a resource name"),
            ("repository:eng/App:pull", "the name is not a resource name"),
            ("repository:App:pull", "the name is not a resource name"),
            (
                "repository:eng//app:pull",
                "the name is not a resource name",
            ),
            ("repository:-app:pull", "the name is not a resource name"),
            ("repository:a..b:pull", "the name is not a resource name"),
            ("repository:a___b:pull", "the name is not a resource name"),
            (
                "repository:host:x/app:pull",
                "the name is not a resource name",
            ),
            (
                "repository:app:",
                "an action must be lowercase letters, or '*'",
            ),
            (
                "repository:app:pull,",
                "an action must be lowercase letters, or '*'",
            ),
            (
                "repository:app:Pull",
                "an action must be lowercase letters, or '*'",
            ),
            (
                "repository:app:pull push",
                "an action must be lowercase letters, or '*'",
            ),
        ] {
            match ResourceScope::parse(s) {
                Ok(rs) => panic!("{s:?} parsed as {rs:?}"),
                Err(e) => assert_eq!(e.reason, why, "{s:?}"),
            }
        }
    }

    #[test]
    fn several_params_merge_by_resource() {
        let scope = Scope::from_params([
            "repository:eng/app:pull",
            "repository:eng/app:push,pull repository:eng/base:pull",
            "",
            "registry:catalog:*  helm:x:get",
        ])
        .unwrap();
        assert_eq!(
            scope.to_string(),
            "repository:eng/app:pull,push repository:eng/base:pull registry:catalog:* helm:x:get"
        );
        let unknown = &scope.resources()[3];
        assert!(!unknown.is_known());
        assert!(scope.resources()[..3].iter().all(ResourceScope::is_known));
        // A plugin repository is another resource than the repository.
        let s = Scope::from_params(["repository:a:pull", "repository(plugin):a:push"]).unwrap();
        assert_eq!(s.resources().len(), 2);
        assert!(Scope::from_params(["repository:a:pull", "bad"]).is_err());
    }

    #[test]
    fn an_intersection_never_exceeds_the_request() {
        let asked =
            Scope::parse("repository:a:pull,push repository:b:pull registry:catalog:*").unwrap();
        let granted = [
            ResourceScope::repository("a", &["pull", "delete"]),
            ResourceScope::repository("b", &["*"]),
            ResourceScope::repository("c", &["pull"]),
            ResourceScope::new(REGISTRY, "catalog", &["pull"]),
        ];
        assert_eq!(
            Scope::from(asked.intersect(&granted)).to_string(),
            "repository:a:pull repository:b:pull"
        );
        let all = ResourceScope::catalog();
        assert_eq!(asked.intersect(std::slice::from_ref(&all)), vec![all]);
    }

    #[test]
    fn access_entries_serialise_as_the_jwt_spec_says() {
        let rs = ResourceScope::repository("eng/app", &["pull", "push"]);
        assert_eq!(
            serde_json::to_string(&rs).unwrap(),
            r#"{"type":"repository","name":"eng/app","actions":["pull","push"]}"#
        );
        let plugin = ResourceScope::parse("repository(plugin):x:pull").unwrap();
        let json = serde_json::to_string(&plugin).unwrap();
        assert_eq!(
            json,
            r#"{"type":"repository","class":"plugin","name":"x","actions":["pull"]}"#
        );
        assert_eq!(
            serde_json::from_str::<ResourceScope>(&json).unwrap(),
            plugin
        );
    }
}
