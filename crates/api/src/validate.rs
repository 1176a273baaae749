//! Checks of user input, each error naming the field at fault, so that the API
//! can answer 400 with a message a user can act on.

use crate::spec::*;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Highest replica count one service may ask for.
pub const MAX_REPLICAS: u64 = 100_000;

/// Service names as Docker's: letters, digits, `-` and `_`, starting with a
/// letter or digit, at most 63 characters (they become DNS labels later).
pub fn service_name(name: &str) -> Result<(), FieldError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if name.is_empty() {
        return Err(err("name", "must not be empty"));
    }
    if name.len() > 63 {
        return Err(err("name", "must be at most 63 characters"));
    }
    if !ok_chars || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(err("name", format!("{name:?} is not valid: use letters, digits, '-' and '_', starting with a letter or digit")));
    }
    Ok(())
}

pub fn service_spec(spec: &ServiceSpec) -> Result<(), FieldError> {
    service_name(&spec.name)?;
    if let ServiceMode::Replicated { replicas } = spec.mode {
        if replicas > MAX_REPLICAS {
            return Err(err(
                "mode.replicated.replicas",
                format!("must be at most {MAX_REPLICAS}"),
            ));
        }
    }
    task_spec(&spec.task_template, "task_template")?;
    update_config(&spec.update_config, "update_config")?;
    update_config(&spec.rollback_config, "rollback_config")?;
    Ok(())
}

/// A node's spec as a user sets it: label keys as Docker's (not empty, no
/// spaces or `=`, at most 128 characters).
pub fn node_spec(spec: &crate::NodeSpec) -> Result<(), FieldError> {
    for key in spec.labels.keys() {
        if key.is_empty() {
            return Err(err("spec.labels", "a label key must not be empty"));
        }
        if key.len() > 128 || key.contains(|c: char| c.is_whitespace() || c == '=') {
            return Err(err(
                "spec.labels",
                format!(
                    "{key:?} is not a valid label key: no spaces or '=', at most 128 characters"
                ),
            ));
        }
    }
    Ok(())
}

pub fn task_spec(t: &TaskSpec, at: &str) -> Result<(), FieldError> {
    if t.command.is_empty() || t.command[0].trim().is_empty() {
        return Err(err(
            &format!("{at}.command"),
            "must name the program to run",
        ));
    }
    for (i, e) in t.env.iter().enumerate() {
        match e.split_once('=') {
            Some((k, _)) if !k.is_empty() && !k.contains('\0') => {}
            _ => {
                return Err(err(
                    &format!("{at}.env[{i}]"),
                    format!("{e:?} is not KEY=VALUE"),
                ))
            }
        }
    }
    if let Some(dir) = &t.dir {
        if !dir.starts_with('/') {
            return Err(err(
                &format!("{at}.dir"),
                format!("{dir:?} must be an absolute path"),
            ));
        }
    }
    let r = &t.resources;
    if r.limits.nano_cpus > 0 && r.reservations.nano_cpus > r.limits.nano_cpus {
        return Err(err(
            &format!("{at}.resources.reservations.nano_cpus"),
            "must not exceed the limit",
        ));
    }
    if r.limits.memory_bytes > 0 && r.reservations.memory_bytes > r.limits.memory_bytes {
        return Err(err(
            &format!("{at}.resources.reservations.memory_bytes"),
            "must not exceed the limit",
        ));
    }
    for (i, c) in t.placement.constraints.iter().enumerate() {
        Constraint::parse(c).map_err(|m| err(&format!("{at}.placement.constraints[{i}]"), m))?;
    }
    Ok(())
}

fn update_config(u: &UpdateConfig, at: &str) -> Result<(), FieldError> {
    if !(0.0..=1.0).contains(&u.max_failure_ratio) {
        return Err(err(
            &format!("{at}.max_failure_ratio"),
            "must be between 0 and 1",
        ));
    }
    Ok(())
}

/// A parsed placement constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    pub key: ConstraintKey,
    pub equal: bool,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConstraintKey {
    NodeId,
    Hostname,
    Role,
    Label(String),
}

impl Constraint {
    /// Parses `node.id==x`, `node.hostname!=y`, `node.role==manager`, `node.labels.k==v`.
    pub fn parse(s: &str) -> Result<Constraint, String> {
        let (key, value, equal) = if let Some((k, v)) = s.split_once("!=") {
            (k, v, false)
        } else if let Some((k, v)) = s.split_once("==") {
            (k, v, true)
        } else {
            return Err(format!("{s:?} has no operator: use == or !="));
        };
        let key = key.trim();
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("{s:?} has no value"));
        }
        let key = match key {
            "node.id" => ConstraintKey::NodeId,
            "node.hostname" => ConstraintKey::Hostname,
            "node.role" => {
                if value != "manager" && value != "worker" {
                    return Err(format!("{s:?}: node.role is manager or worker"));
                }
                ConstraintKey::Role
            }
            k => match k.strip_prefix("node.labels.") {
                Some(l) if !l.is_empty() => ConstraintKey::Label(l.to_string()),
                _ => return Err(format!("{s:?}: unknown key {k:?} (use node.id, node.hostname, node.role or node.labels.KEY)")),
            },
        };
        Ok(Constraint {
            key,
            equal,
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas: 3 },
            task_template: TaskSpec::exec(["sleep", "100"]),
            update_config: Default::default(),
            rollback_config: Default::default(),
        }
    }

    #[test]
    fn errors_name_the_field() {
        type Mutation = Box<dyn Fn(&mut ServiceSpec)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|s| s.name = "".into()), "name"),
            (Box::new(|s| s.name = "-bad".into()), "name"),
            (Box::new(|s| s.name = "a b".into()), "name"),
            (
                Box::new(|s| s.task_template.command.clear()),
                "task_template.command",
            ),
            (
                Box::new(|s| s.task_template.env = vec!["NOEQUALS".into()]),
                "task_template.env[0]",
            ),
            (
                Box::new(|s| s.task_template.dir = Some("rel".into())),
                "task_template.dir",
            ),
            (
                Box::new(|s| {
                    s.task_template.placement.constraints = vec!["node.colour==red".into()]
                }),
                "task_template.placement.constraints[0]",
            ),
            (
                Box::new(|s| {
                    s.mode = ServiceMode::Replicated {
                        replicas: MAX_REPLICAS + 1,
                    }
                }),
                "mode.replicated.replicas",
            ),
            (
                Box::new(|s| s.update_config.max_failure_ratio = 2.0),
                "update_config.max_failure_ratio",
            ),
        ];
        for (mutate, field) in cases {
            let mut s = spec();
            mutate(&mut s);
            let e = service_spec(&s).expect_err(field);
            assert_eq!(e.field, field, "{e}");
        }
        service_spec(&spec()).unwrap();
    }

    #[test]
    fn constraints_parse() {
        let c = Constraint::parse("node.labels.zone == east").unwrap();
        assert_eq!(
            c,
            Constraint {
                key: ConstraintKey::Label("zone".into()),
                equal: true,
                value: "east".into()
            }
        );
        let c = Constraint::parse("node.role!=manager").unwrap();
        assert_eq!(c.key, ConstraintKey::Role);
        assert!(!c.equal);
        assert!(Constraint::parse("node.role==boss").is_err());
        assert!(Constraint::parse("node.id").is_err());
    }
}
