//! The cluster state and its deterministic state machine.
//!
//! Every manager holds one [`State`] and changes it only through [`State::apply`],
//! called with the entries of the Raft log in order. `apply` takes the log index
//! and the proposer's time from the entry, so that every manager ends in the same
//! state; it reads no clock, draws no random number and does no I/O. A [`Batch`]
//! is applied whole or not at all.

use crate::object::*;
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One change to the state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Insert a new object; its id must be free (and a service's name too).
    Create(Object),
    /// Replace an object; `meta.version` must equal the stored version.
    Update(Object),
    /// Remove an object; with a version, only if it still has that version.
    Delete {
        kind: Kind,
        id: String,
        version: Option<u64>,
    },
    /// The agent's report of a task's observed state. It has one writer (the
    /// agent of the task's node), so it carries no version; a report for a task
    /// that is gone is dropped, and one that would move the task backwards is ignored.
    SetTaskStatus { id: String, status: TaskStatus },
}

/// Ops applied together, with the proposer's clock reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub time: crate::Timestamp,
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn new(ops: Vec<Op>) -> Batch {
        Batch {
            time: crate::Timestamp::now(),
            ops,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // see Object
pub enum Event {
    Created(Object),
    Updated { old: Object, new: Object },
    Deleted(Object),
}

impl Event {
    /// The object as it is after the event (before it, for a deletion).
    pub fn object(&self) -> &Object {
        match self {
            Event::Created(o) | Event::Deleted(o) => o,
            Event::Updated { new, .. } => new,
        }
    }
}

/// What one applied log entry changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub index: u64,
    pub events: Vec<Event>,
}

/// Why a batch was refused. Nothing of a refused batch is applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyError {
    #[error("{kind} {id} not found")]
    NotFound { kind: Kind, id: String },
    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: Kind, id: String },
    #[error("{kind} name {name:?} is already in use")]
    NameTaken { kind: Kind, name: String },
    #[error("{kind} {id} was changed concurrently (expected version {expected}, found {actual})")]
    Conflict {
        kind: Kind,
        id: String,
        expected: u64,
        actual: u64,
    },
}

/// The whole cluster state, with secondary indexes for the common look-ups.
///
/// Every map is a persistent B-tree ([`imbl::OrdMap`]) of shared objects, so
/// a clone is a handful of reference counts, whatever the size of the state:
/// the store takes one for each snapshot and keeps applying entries while the
/// copy is encoded and written. A write after a clone copies only the tree
/// nodes on its path (once), never an object.
#[derive(Clone, Debug, Default)]
pub struct State {
    index: u64,
    cluster: Option<Arc<Cluster>>,
    nodes: OrdMap<String, Arc<Node>>,
    services: OrdMap<String, Arc<Service>>,
    tasks: OrdMap<String, Arc<Task>>,
    service_names: OrdMap<String, String>,
    tasks_by_service: OrdMap<String, OrdSet<String>>,
    tasks_by_node: OrdMap<String, OrdSet<String>>,
    /// The auth store's objects (`crate::auth`), by kind and id.
    auth: OrdMap<(Kind, String), Arc<Object>>,
    /// Every auth object's unique keys (`Object::unique_keys`) → its kind and id.
    unique: OrdMap<String, (Kind, String)>,
    /// Index of the last entry that changed an auth object decisions depend
    /// on (`Kind::decides_access`; at least, after a load, the state's
    /// index), so caches of authorization decisions know when to start over.
    auth_index: u64,
}

/// A stored object, shared with every clone of the state that holds it.
#[derive(Clone)]
enum Stored {
    Cluster(Arc<Cluster>),
    Node(Arc<Node>),
    Service(Arc<Service>),
    Task(Arc<Task>),
    Auth(Arc<Object>),
}

impl Stored {
    fn new(obj: Object) -> Stored {
        match obj {
            Object::Cluster(c) => Stored::Cluster(Arc::new(c)),
            Object::Node(n) => Stored::Node(Arc::new(n)),
            Object::Service(s) => Stored::Service(Arc::new(s)),
            Object::Task(t) => Stored::Task(Arc::new(t)),
            auth => Stored::Auth(Arc::new(auth)),
        }
    }

    /// A copy of the object, for an event.
    fn to_object(&self) -> Object {
        match self {
            Stored::Cluster(c) => Object::Cluster(Cluster::clone(c)),
            Stored::Node(n) => Object::Node(Node::clone(n)),
            Stored::Service(s) => Object::Service(Service::clone(s)),
            Stored::Task(t) => Object::Task(Task::clone(t)),
            Stored::Auth(o) => Object::clone(o),
        }
    }

    fn meta(&self) -> &Meta {
        match self {
            Stored::Cluster(c) => &c.meta,
            Stored::Node(n) => &n.meta,
            Stored::Service(s) => &s.meta,
            Stored::Task(t) => &t.meta,
            Stored::Auth(o) => o.meta(),
        }
    }
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        // The indexes are derived from the maps.
        self.index == other.index
            && self.cluster == other.cluster
            && self.nodes == other.nodes
            && self.services == other.services
            && self.tasks == other.tasks
            && self.auth == other.auth
    }
}

impl State {
    /// Index of the last applied entry.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Records that entry `index` was applied without changing objects (a
    /// membership or blank Raft entry).
    pub fn advance(&mut self, index: u64) {
        self.index = self.index.max(index);
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_deref()
    }
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id).map(|n| &**n)
    }
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().map(|n| &**n)
    }
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.get(id).map(|s| &**s)
    }
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values().map(|s| &**s)
    }
    pub fn service_by_name(&self, name: &str) -> Option<&Service> {
        self.service_names.get(name).and_then(|id| self.service(id))
    }
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.get(id).map(|t| &**t)
    }
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values().map(|t| &**t)
    }
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }
    pub fn tasks_by_service<'a>(&'a self, service_id: &str) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks_by_service
            .get(service_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.task(id))
    }
    pub fn tasks_by_node<'a>(&'a self, node_id: &str) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks_by_node
            .get(node_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.task(id))
    }

    /// Index of the last entry that changed a user, organization, team,
    /// role, grant or collection.
    pub fn auth_index(&self) -> u64 {
        self.auth_index
    }

    /// The auth objects of one kind, in id order.
    pub fn auth_objects(&self, kind: Kind) -> impl Iterator<Item = &Object> {
        self.auth
            .range((kind, String::new())..)
            .take_while(move |((k, _), _)| *k == kind)
            .map(|(_, o)| &**o)
    }

    /// An auth object by kind and id.
    pub fn auth_object(&self, kind: Kind, id: &str) -> Option<&Object> {
        self.auth.get(&(kind, id.to_string())).map(|o| &**o)
    }

    /// The keyed objects of one kind whose ids start with `prefix`, in id
    /// order (a repository's tags, blobs or manifests: `crate::registry`).
    pub fn auth_range<'a>(
        &'a self,
        kind: Kind,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a Object> + 'a {
        self.auth
            .range((kind, prefix.to_string())..)
            .take_while(move |((k, id), _)| *k == kind && id.starts_with(prefix))
            .map(|(_, o)| &**o)
    }

    /// The auth object holding a unique key (`crate::auth::account_key`, …).
    pub fn auth_by_key(&self, key: &str) -> Option<&Object> {
        let (kind, id) = self.unique.get(key)?;
        self.auth_object(*kind, id)
    }

    /// A copy of any object by kind and id.
    pub fn get(&self, kind: Kind, id: &str) -> Option<Object> {
        self.stored(kind, id).map(|s| s.to_object())
    }

    /// The stored object by kind and id, shared.
    fn stored(&self, kind: Kind, id: &str) -> Option<Stored> {
        match kind {
            Kind::Cluster => self
                .cluster
                .clone()
                .filter(|c| c.meta.id == id)
                .map(Stored::Cluster),
            Kind::Node => self.nodes.get(id).cloned().map(Stored::Node),
            Kind::Service => self.services.get(id).cloned().map(Stored::Service),
            Kind::Task => self.tasks.get(id).cloned().map(Stored::Task),
            auth => self
                .auth
                .get(&(auth, id.to_string()))
                .cloned()
                .map(Stored::Auth),
        }
    }

    /// Whether an object of `kind` with `id` is stored.
    pub fn contains(&self, kind: Kind, id: &str) -> bool {
        match kind {
            Kind::Cluster => self.cluster.as_ref().is_some_and(|c| c.meta.id == id),
            Kind::Node => self.nodes.contains_key(id),
            Kind::Service => self.services.contains_key(id),
            Kind::Task => self.tasks.contains_key(id),
            auth => self.auth.contains_key(&(auth, id.to_string())),
        }
    }

    /// Applies the batch of log entry `index` whole, or refuses it whole.
    pub fn apply(&mut self, index: u64, batch: &Batch) -> Result<Vec<Event>, ApplyError> {
        let mut events: Vec<Event> = Vec::with_capacity(batch.ops.len());
        // Undo log: the previous value of every object touched, restored in
        // reverse order if a later op of the batch fails.
        let mut undo: Vec<(Kind, String, Option<Stored>)> = Vec::new();
        for op in &batch.ops {
            match self.apply_op(index, batch.time, op, &mut undo) {
                Ok(Some(ev)) => events.push(ev),
                Ok(None) => {}
                Err(e) => {
                    for (kind, id, old) in undo.into_iter().rev() {
                        self.remove(kind, &id);
                        if let Some(o) = old {
                            self.insert(o);
                        }
                    }
                    self.index = self.index.max(index);
                    return Err(e);
                }
            }
        }
        self.index = self.index.max(index);
        if events.iter().any(|e| e.object().kind().decides_access()) {
            self.auth_index = self.index;
        }
        Ok(events)
    }

    fn apply_op(
        &mut self,
        index: u64,
        time: crate::Timestamp,
        op: &Op,
        undo: &mut Vec<(Kind, String, Option<Stored>)>,
    ) -> Result<Option<Event>, ApplyError> {
        match op {
            Op::Create(obj) => {
                let kind = obj.kind();
                let id = obj.id().to_string();
                if self.contains(kind, &id) || (kind == Kind::Cluster && self.cluster.is_some()) {
                    return Err(ApplyError::AlreadyExists { kind, id });
                }
                self.check_name(obj)?;
                let mut new = obj.clone();
                let m = new.meta_mut();
                m.version = index;
                m.created_at = time;
                m.updated_at = time;
                undo.push((kind, id, None));
                let stored = Stored::new(new);
                let event = Event::Created(stored.to_object());
                self.insert(stored);
                Ok(Some(event))
            }
            Op::Update(obj) => {
                let kind = obj.kind();
                let id = obj.id().to_string();
                let old = self.stored(kind, &id).ok_or_else(|| ApplyError::NotFound {
                    kind,
                    id: id.clone(),
                })?;
                let actual = old.meta().version;
                if obj.meta().version != actual {
                    return Err(ApplyError::Conflict {
                        kind,
                        id,
                        expected: obj.meta().version,
                        actual,
                    });
                }
                self.check_name(obj)?;
                let mut new = obj.clone();
                let m = new.meta_mut();
                m.version = index;
                m.created_at = old.meta().created_at;
                m.updated_at = time;
                let event = Event::Updated {
                    old: old.to_object(),
                    new: new.clone(),
                };
                undo.push((kind, id.clone(), Some(old)));
                self.remove(kind, &id);
                self.insert(Stored::new(new));
                Ok(Some(event))
            }
            Op::Delete { kind, id, version } => {
                let old = self.stored(*kind, id).ok_or_else(|| ApplyError::NotFound {
                    kind: *kind,
                    id: id.clone(),
                })?;
                if let Some(expected) = version {
                    let actual = old.meta().version;
                    if *expected != actual {
                        return Err(ApplyError::Conflict {
                            kind: *kind,
                            id: id.clone(),
                            expected: *expected,
                            actual,
                        });
                    }
                }
                let event = Event::Deleted(old.to_object());
                undo.push((*kind, id.clone(), Some(old)));
                self.remove(*kind, id);
                Ok(Some(event))
            }
            Op::SetTaskStatus { id, status } => {
                let Some(old) = self.tasks.get(id).cloned() else {
                    return Ok(None);
                };
                if status.state < old.status.state {
                    return Ok(None);
                }
                let mut new = Task::clone(&old);
                new.status = status.clone();
                new.meta.version = index;
                new.meta.updated_at = time;
                let event = Event::Updated {
                    old: Object::Task(Task::clone(&old)),
                    new: Object::Task(new.clone()),
                };
                undo.push((Kind::Task, id.clone(), Some(Stored::Task(old))));
                // Same id, service and node: the indexes stay as they are.
                self.tasks.insert(id.clone(), Arc::new(new));
                Ok(Some(event))
            }
        }
    }

    /// Service names are unique among services; an auth object's unique
    /// keys are free or its own, and what it refers to exists.
    fn check_name(&self, obj: &Object) -> Result<(), ApplyError> {
        for key in obj.unique_keys() {
            if let Some((kind, id)) = self.unique.get(&key) {
                if (*kind, id.as_str()) != (obj.kind(), obj.id()) {
                    let name = key.split_once(':').map_or(&*key, |(_, n)| n);
                    return Err(ApplyError::NameTaken {
                        kind: obj.kind(),
                        name: name.to_string(),
                    });
                }
            }
        }
        self.check_references(obj)?;
        if let Object::Service(s) = obj {
            if let Some(owner) = self.service_names.get(&s.spec.name) {
                if owner != &s.meta.id {
                    return Err(ApplyError::NameTaken {
                        kind: Kind::Service,
                        name: s.spec.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// An auth object refers only to objects that exist (a team to its
    /// organization, a grant to its subject and collection, a token or
    /// bundle to its user, a collection to its parent).
    fn check_references(&self, obj: &Object) -> Result<(), ApplyError> {
        use crate::auth::{collection_key, Subject};
        let missing = |kind: Kind, id: &str| ApplyError::NotFound {
            kind,
            id: id.to_string(),
        };
        let has_collection = |path: &str| self.unique.contains_key(&collection_key(path));
        match obj {
            Object::Team(t) if !self.contains(Kind::Organization, &t.org_id) => {
                Err(missing(Kind::Organization, &t.org_id))
            }
            Object::Collection(c) => match c.parent() {
                Some(parent) if !has_collection(parent) => Err(missing(Kind::Collection, parent)),
                _ => Ok(()),
            },
            Object::Grant(g) => {
                let (kind, id) = match &g.subject {
                    Subject::User(id) => (Kind::User, id),
                    Subject::Team(id) => (Kind::Team, id),
                    Subject::Organization(id) => (Kind::Organization, id),
                };
                if !self.contains(kind, id) {
                    Err(missing(kind, id))
                } else if !has_collection(&g.collection) {
                    Err(missing(Kind::Collection, &g.collection))
                } else {
                    Ok(())
                }
            }
            Object::Token(t) if !self.contains(Kind::User, &t.user_id) => {
                Err(missing(Kind::User, &t.user_id))
            }
            Object::ClientBundle(b) if !self.contains(Kind::User, &b.user_id) => {
                Err(missing(Kind::User, &b.user_id))
            }
            Object::RepoBlob(b) if !self.contains(Kind::Repository, &b.repo) => {
                Err(missing(Kind::Repository, &b.repo))
            }
            Object::RepoManifest(m) => {
                use crate::registry::{blob_id, manifest_id};
                if !self.contains(Kind::Repository, &m.repo) {
                    return Err(missing(Kind::Repository, &m.repo));
                }
                for d in &m.blobs {
                    let id = blob_id(&m.repo, d);
                    if !self.contains(Kind::RepoBlob, &id) {
                        return Err(missing(Kind::RepoBlob, &id));
                    }
                }
                for d in &m.manifests {
                    let id = manifest_id(&m.repo, d);
                    if !self.contains(Kind::RepoManifest, &id) {
                        return Err(missing(Kind::RepoManifest, &id));
                    }
                }
                Ok(())
            }
            Object::RepoTag(t) => {
                let id = crate::registry::manifest_id(&t.repo, &t.digest);
                if !self.contains(Kind::RepoManifest, &id) {
                    Err(missing(Kind::RepoManifest, &id))
                } else {
                    Ok(())
                }
            }
            Object::RepoGrant(g) => {
                if !self.contains(Kind::Repository, &g.repo) {
                    Err(missing(Kind::Repository, &g.repo))
                } else if !self.contains(Kind::Team, &g.team_id) {
                    Err(missing(Kind::Team, &g.team_id))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    fn insert(&mut self, obj: Stored) {
        match obj {
            Stored::Cluster(c) => self.cluster = Some(c),
            Stored::Node(n) => {
                self.nodes.insert(n.meta.id.clone(), n);
            }
            Stored::Service(s) => {
                self.service_names
                    .insert(s.spec.name.clone(), s.meta.id.clone());
                self.services.insert(s.meta.id.clone(), s);
            }
            Stored::Task(t) => {
                index(&mut self.tasks_by_service, &t.service_id, &t.meta.id);
                if let Some(n) = &t.node_id {
                    index(&mut self.tasks_by_node, n, &t.meta.id);
                }
                self.tasks.insert(t.meta.id.clone(), t);
            }
            Stored::Auth(o) => {
                let key = (o.kind(), o.id().to_string());
                for unique in o.unique_keys() {
                    self.unique.insert(unique, key.clone());
                }
                self.auth.insert(key, o);
            }
        }
    }

    fn remove(&mut self, kind: Kind, id: &str) {
        match kind {
            Kind::Cluster => self.cluster = None,
            Kind::Node => {
                self.nodes.remove(id);
            }
            Kind::Service => {
                if let Some(s) = self.services.remove(id) {
                    if self.service_names.get(&s.spec.name).map(String::as_str) == Some(id) {
                        self.service_names.remove(&s.spec.name);
                    }
                }
            }
            Kind::Task => {
                if let Some(t) = self.tasks.remove(id) {
                    unindex(&mut self.tasks_by_service, &t.service_id, id);
                    if let Some(n) = &t.node_id {
                        unindex(&mut self.tasks_by_node, n, id);
                    }
                }
            }
            auth => {
                let key = (auth, id.to_string());
                if let Some(o) = self.auth.remove(&key) {
                    for unique in o.unique_keys() {
                        if self.unique.get(&unique) == Some(&key) {
                            self.unique.remove(&unique);
                        }
                    }
                }
            }
        }
    }
}

fn index(index: &mut OrdMap<String, OrdSet<String>>, key: &str, id: &str) {
    match index.get_mut(key) {
        Some(set) => {
            set.insert(id.to_string());
        }
        None => {
            index.insert(key.to_string(), OrdSet::unit(id.to_string()));
        }
    }
}

fn unindex(index: &mut OrdMap<String, OrdSet<String>>, key: &str, id: &str) {
    if let Some(set) = index.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

/// The serialized form of a [`State`] (snapshots): the objects only; indexes
/// are rebuilt on load.
#[derive(Deserialize)]
struct StateData {
    index: u64,
    cluster: Option<Cluster>,
    nodes: Vec<Node>,
    services: Vec<Service>,
    tasks: Vec<Task>,
    /// Absent from snapshots taken before the auth store existed.
    #[serde(default)]
    auth: Vec<Object>,
}

/// The objects of one map as a JSON array, in id order.
struct Values<'a, T>(&'a OrdMap<String, Arc<T>>);

impl<T: Serialize> Serialize for Values<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.values())
    }
}

struct AuthValues<'a>(&'a OrdMap<(Kind, String), Arc<Object>>);

impl Serialize for AuthValues<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.values())
    }
}

impl Serialize for State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("StateData", 6)?;
        st.serialize_field("index", &self.index)?;
        st.serialize_field("cluster", &self.cluster)?;
        st.serialize_field("nodes", &Values(&self.nodes))?;
        st.serialize_field("services", &Values(&self.services))?;
        st.serialize_field("tasks", &Values(&self.tasks))?;
        // Written only when there is one, so a state without auth objects
        // encodes as it did before they existed (the v1 golden bytes).
        if self.auth.is_empty() {
            st.skip_field("auth")?;
        } else {
            st.serialize_field("auth", &AuthValues(&self.auth))?;
        }
        st.end()
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let data = StateData::deserialize(d)?;
        let mut state = State {
            index: data.index,
            auth_index: data.index,
            ..State::default()
        };
        if let Some(c) = data.cluster {
            state.insert(Stored::Cluster(Arc::new(c)));
        }
        for n in data.nodes {
            state.insert(Stored::Node(Arc::new(n)));
        }
        for s in data.services {
            state.insert(Stored::Service(Arc::new(s)));
        }
        for t in data.tasks {
            state.insert(Stored::Task(Arc::new(t)));
        }
        for o in data.auth {
            if !o.kind().is_auth() {
                return Err(serde::de::Error::custom(format!(
                    "a {} among the auth objects",
                    o.kind()
                )));
            }
            state.insert(Stored::Auth(Arc::new(o)));
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::*;
    use crate::Timestamp;

    fn service(id: &str, name: &str) -> Service {
        Service::new(
            id,
            ServiceSpec {
                name: name.into(),
                labels: Default::default(),
                mode: ServiceMode::Replicated { replicas: 1 },
                task_template: TaskSpec::exec(["sleep", "1"]),
                update_config: Default::default(),
                rollback_config: Default::default(),
            },
        )
    }

    fn task(id: &str, service: &str, node: Option<&str>) -> Task {
        Task {
            meta: Meta::new(id),
            service_id: service.into(),
            slot: 1,
            node_id: node.map(Into::into),
            spec: TaskSpec::exec(["sleep", "1"]),
            spec_version: 1,
            desired_state: TaskState::Running,
            status: TaskStatus::default(),
            restarts: vec![],
        }
    }

    fn batch(ops: Vec<Op>) -> Batch {
        Batch {
            time: Timestamp(1000),
            ops,
        }
    }

    #[test]
    fn create_sets_version_and_times_from_the_entry() {
        let mut s = State::default();
        let ev = s
            .apply(7, &batch(vec![Op::Create(service("s1", "web").into())]))
            .unwrap();
        assert_eq!(ev.len(), 1);
        let svc = s.service("s1").unwrap();
        assert_eq!(svc.meta.version, 7);
        assert_eq!(svc.meta.created_at, Timestamp(1000));
        assert_eq!(s.service_by_name("web").unwrap().meta.id, "s1");
        assert_eq!(s.index(), 7);
    }

    #[test]
    fn stale_update_is_refused_and_nothing_of_the_batch_stays() {
        let mut s = State::default();
        s.apply(1, &batch(vec![Op::Create(service("s1", "web").into())]))
            .unwrap();
        let before = s.clone();
        let mut stale = s.service("s1").unwrap().clone();
        stale.meta.version = 0;
        let err = s
            .apply(
                2,
                &batch(vec![
                    Op::Create(task("t1", "s1", Some("n1")).into()),
                    Op::Update(stale.into()),
                ]),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApplyError::Conflict {
                    expected: 0,
                    actual: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(s.task("t1").is_none());
        assert_eq!(s.tasks_by_node("n1").count(), 0);
        assert_eq!(s.nodes.len(), before.nodes.len());
        assert_eq!(s.services, before.services);
    }

    #[test]
    fn service_names_are_unique_and_follow_renames() {
        let mut s = State::default();
        s.apply(1, &batch(vec![Op::Create(service("s1", "web").into())]))
            .unwrap();
        let err = s
            .apply(2, &batch(vec![Op::Create(service("s2", "web").into())]))
            .unwrap_err();
        assert_eq!(
            err,
            ApplyError::NameTaken {
                kind: Kind::Service,
                name: "web".into()
            }
        );
        let mut renamed = s.service("s1").unwrap().clone();
        renamed.spec.name = "api".into();
        s.apply(3, &batch(vec![Op::Update(renamed.into())]))
            .unwrap();
        assert!(s.service_by_name("web").is_none());
        s.apply(4, &batch(vec![Op::Create(service("s2", "web").into())]))
            .unwrap();
    }

    #[test]
    fn task_status_never_moves_backwards_and_is_dropped_for_missing_tasks() {
        let mut s = State::default();
        s.apply(
            1,
            &batch(vec![Op::Create(task("t1", "s1", Some("n1")).into())]),
        )
        .unwrap();
        let running = TaskStatus {
            state: TaskState::Running,
            ..Default::default()
        };
        let starting = TaskStatus {
            state: TaskState::Starting,
            ..Default::default()
        };
        s.apply(
            2,
            &batch(vec![Op::SetTaskStatus {
                id: "t1".into(),
                status: running,
            }]),
        )
        .unwrap();
        let ev = s
            .apply(
                3,
                &batch(vec![Op::SetTaskStatus {
                    id: "t1".into(),
                    status: starting,
                }]),
            )
            .unwrap();
        assert!(ev.is_empty());
        assert_eq!(s.task("t1").unwrap().status.state, TaskState::Running);
        let ev = s
            .apply(
                4,
                &batch(vec![Op::SetTaskStatus {
                    id: "gone".into(),
                    status: TaskStatus::default(),
                }]),
            )
            .unwrap();
        assert!(ev.is_empty());
    }

    #[test]
    fn indexes_survive_a_serialization_round_trip() {
        let mut s = State::default();
        s.apply(
            1,
            &batch(vec![
                Op::Create(Cluster::new("c").into()),
                Op::Create(service("s1", "web").into()),
                Op::Create(task("t1", "s1", Some("n1")).into()),
                Op::Create(task("t2", "s1", None).into()),
            ]),
        )
        .unwrap();
        let json = serde_json::to_vec(&s).unwrap();
        let back: State = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.tasks_by_service("s1").count(), 2);
        assert_eq!(back.tasks_by_node("n1").count(), 1);
        assert_eq!(back.service_by_name("web").unwrap().meta.id, "s1");
    }

    fn user(id: &str, name: &str) -> crate::auth::User {
        crate::auth::User {
            meta: Meta::new(id),
            name: name.into(),
            full_name: String::new(),
            admin: false,
            disabled: false,
            password_hash: None,
            source: Default::default(),
            locked_until: None,
        }
    }

    fn collection(id: &str, path: &str) -> crate::auth::Collection {
        crate::auth::Collection {
            meta: Meta::new(id),
            path: path.into(),
        }
    }

    #[test]
    fn users_and_organizations_share_one_namespace() {
        use crate::auth::*;
        let mut s = State::default();
        s.apply(1, &batch(vec![Op::Create(user("u1", "eng").into())]))
            .unwrap();
        let org = Organization {
            meta: Meta::new("o1"),
            name: "eng".into(),
        };
        let err = s
            .apply(2, &batch(vec![Op::Create(org.clone().into())]))
            .unwrap_err();
        assert_eq!(
            err,
            ApplyError::NameTaken {
                kind: Kind::Organization,
                name: "eng".into()
            }
        );
        assert_eq!(s.auth_index(), 1);
        s.apply(
            3,
            &batch(vec![Op::Delete {
                kind: Kind::User,
                id: "u1".into(),
                version: None,
            }]),
        )
        .unwrap();
        assert_eq!(s.auth_index(), 3);
        assert!(s.auth_by_key(&account_key("eng")).is_none());
        s.apply(4, &batch(vec![Op::Create(org.into())])).unwrap();
        let found = s.auth_by_key(&account_key("eng")).unwrap();
        assert_eq!((found.kind(), found.id()), (Kind::Organization, "o1"));
        assert_eq!(s.auth_objects(Kind::Organization).count(), 1);
        assert_eq!(s.auth_objects(Kind::User).count(), 0);
    }

    #[test]
    fn auth_objects_refer_only_to_what_exists() {
        use crate::auth::*;
        let mut s = State::default();
        let err = s
            .apply(
                1,
                &batch(vec![Op::Create(collection("c1", "/Shared").into())]),
            )
            .unwrap_err();
        assert_eq!(
            err,
            ApplyError::NotFound {
                kind: Kind::Collection,
                id: "/".into()
            }
        );
        // Parent and child in one batch, in order, is fine.
        s.apply(
            2,
            &batch(vec![
                Op::Create(collection("c0", "/").into()),
                Op::Create(collection("c1", "/Shared").into()),
                Op::Create(user("u1", "alice").into()),
            ]),
        )
        .unwrap();
        let grant = |id: &str, subject: Subject, coll: &str| Grant {
            meta: Meta::new(id),
            subject,
            role: "View Only".into(),
            collection: coll.into(),
        };
        let err = s
            .apply(
                3,
                &batch(vec![Op::Create(
                    grant("g1", Subject::Team("t9".into()), "/Shared").into(),
                )]),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApplyError::NotFound {
                    kind: Kind::Team,
                    ..
                }
            ),
            "{err}"
        );
        let err = s
            .apply(
                3,
                &batch(vec![Op::Create(
                    grant("g1", Subject::User("u1".into()), "/Nope").into(),
                )]),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApplyError::NotFound {
                    kind: Kind::Collection,
                    ..
                }
            ),
            "{err}"
        );
        s.apply(
            3,
            &batch(vec![Op::Create(
                grant("g1", Subject::User("u1".into()), "/Shared").into(),
            )]),
        )
        .unwrap();
        // The same subject, role and collection twice is one grant.
        let err = s
            .apply(
                4,
                &batch(vec![Op::Create(
                    grant("g2", Subject::User("u1".into()), "/Shared").into(),
                )]),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApplyError::NameTaken {
                    kind: Kind::Grant,
                    ..
                }
            ),
            "{err}"
        );
        let token = Token {
            meta: Meta::new("k1"),
            user_id: "nobody".into(),
            name: "ci".into(),
            purpose: TokenPurpose::Api,
            secret_sha256: "ab".into(),
            expires_at: None,
        };
        let err = s
            .apply(5, &batch(vec![Op::Create(token.into())]))
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApplyError::NotFound {
                    kind: Kind::User,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_renamed_user_frees_its_old_name_and_an_update_keeps_its_own() {
        use crate::auth::*;
        let mut s = State::default();
        s.apply(1, &batch(vec![Op::Create(user("u1", "alice").into())]))
            .unwrap();
        let mut same = match s.auth_object(Kind::User, "u1").unwrap() {
            Object::User(u) => u.clone(),
            other => panic!("{other:?}"),
        };
        same.admin = true;
        s.apply(2, &batch(vec![Op::Update(same.clone().into())]))
            .unwrap();
        same.meta.version = 2;
        same.name = "alicia".into();
        s.apply(3, &batch(vec![Op::Update(same.into())])).unwrap();
        assert!(s.auth_by_key(&account_key("alice")).is_none());
        s.apply(4, &batch(vec![Op::Create(user("u2", "alice").into())]))
            .unwrap();
        assert_eq!(s.auth_by_key(&account_key("alicia")).unwrap().id(), "u1");
        assert_eq!(s.auth_index(), 4);
        // A new token (a login) changes no decision: the index stays.
        let token = Token {
            meta: Meta::new("k1"),
            user_id: "u1".into(),
            name: "k1".into(),
            purpose: TokenPurpose::Session,
            secret_sha256: "ab".into(),
            expires_at: None,
        };
        s.apply(5, &batch(vec![Op::Create(token.into())])).unwrap();
        assert_eq!(s.auth_index(), 4);
        assert_eq!(s.auth_by_key(&token_secret_key("ab")).unwrap().id(), "k1");
    }

    #[test]
    fn auth_objects_survive_a_snapshot_and_old_snapshots_still_load() {
        let mut s = State::default();
        s.apply(
            1,
            &batch(vec![
                Op::Create(Cluster::new("c").into()),
                Op::Create(collection("c0", "/").into()),
                Op::Create(user("u1", "alice").into()),
            ]),
        )
        .unwrap();
        let json = serde_json::to_vec(&s).unwrap();
        let back: State = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            back.auth_by_key(&crate::auth::account_key("alice"))
                .unwrap()
                .id(),
            "u1"
        );
        // Written before the auth store: no `auth` field.
        let old = r#"{"index":3,"cluster":null,"nodes":[],"services":[],"tasks":[]}"#;
        let back: State = serde_json::from_str(old).unwrap();
        assert_eq!(back.index(), 3);
        assert_eq!(back.auth_index(), 3);
        // And a state without auth objects is written as before.
        let empty = serde_json::to_string(&State::default()).unwrap();
        assert!(!empty.contains("auth"), "{empty}");
    }

    #[test]
    fn deleting_with_a_stale_version_is_refused() {
        let mut s = State::default();
        s.apply(5, &batch(vec![Op::Create(service("s1", "web").into())]))
            .unwrap();
        let err = s
            .apply(
                6,
                &batch(vec![Op::Delete {
                    kind: Kind::Service,
                    id: "s1".into(),
                    version: Some(4),
                }]),
            )
            .unwrap_err();
        assert!(matches!(err, ApplyError::Conflict { .. }));
        s.apply(
            7,
            &batch(vec![Op::Delete {
                kind: Kind::Service,
                id: "s1".into(),
                version: Some(5),
            }]),
        )
        .unwrap();
        assert!(s.service_by_name("web").is_none());
    }
}
