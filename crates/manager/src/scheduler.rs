//! The scheduler: assigns pending tasks to nodes, as Swarm's does.
//!
//! A node is a candidate when it is Ready and Active, satisfies the task's
//! placement constraints and has room for its resource reservations. Among
//! candidates the task goes to the node with the fewest tasks of the same
//! service, then the fewest tasks overall (spread). A task that fits nowhere
//! stays Pending with `status.err` saying why, in Swarm's words.
//!
//! Placement is batched and fast: pending tasks are grouped by what decides
//! their placement (service, constraints, reservations); each group filters the
//! nodes once and then draws from a min-heap keyed by (service tasks, all
//! tasks), so a placement costs O(log nodes). Within a group a node's free
//! resources only shrink, so a node found too small is dropped for good.

use crate::plan::{node_available, Plan};
use api::validate::{Constraint, ConstraintKey};
use api::{Node, NodeRole, Op, Resources, State, Task, TaskState, TaskStatus, Timestamp};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Parses a task's placement constraints.
pub fn parse_constraints(exprs: &[String]) -> Result<Vec<Constraint>, String> {
    exprs.iter().map(|e| Constraint::parse(e)).collect()
}

/// Whether `node` satisfies every constraint. A missing label never equals a
/// value (so `!=` holds), as in Swarm.
pub fn constraints_match(constraints: &[Constraint], node: &Node) -> bool {
    constraints.iter().all(|c| {
        let actual: Option<&str> = match &c.key {
            ConstraintKey::NodeId => Some(&node.meta.id),
            ConstraintKey::Hostname => Some(&node.description.hostname),
            ConstraintKey::Role => Some(match node.spec.role {
                NodeRole::Manager => "manager",
                NodeRole::Worker => "worker",
            }),
            ConstraintKey::Label(k) => node.spec.labels.get(k).map(String::as_str),
        };
        (actual == Some(c.value.as_str())) == c.equal
    })
}

/// A reservation fits when each reserved quantity is zero or available.
fn fits(want: &Resources, free: &Resources) -> bool {
    (want.nano_cpus == 0 || want.nano_cpus <= free.nano_cpus)
        && (want.memory_bytes == 0 || want.memory_bytes <= free.memory_bytes)
}

/// Tasks that hold a place on their node: handed to it and not ended.
fn occupies_node(t: &Task) -> bool {
    t.node_id.is_some() && t.status.state >= TaskState::Assigned && !t.status.state.is_terminal()
}

/// Tasks waiting for the scheduler.
pub fn is_pending(t: &Task) -> bool {
    t.status.state <= TaskState::Pending && t.desired_state <= TaskState::Running
}

struct NodeSlot<'a> {
    node: &'a Node,
    available: bool,
    free: Resources,
    /// Tasks on the node, all services.
    tasks: u32,
}

/// A placement pass over a fixed set of nodes.
pub struct Scheduler<'a> {
    nodes: Vec<NodeSlot<'a>>,
    by_id: HashMap<&'a str, usize>,
    /// Per service, its task count on each node (indexed like `nodes`).
    per_service: HashMap<String, Vec<u32>>,
    /// Per service, the nodes its owner may schedule on (indexed like
    /// `nodes`); a service without an entry may go anywhere.
    allowed: HashMap<String, Vec<bool>>,
}

/// Why nodes were turned down for a task, for the pending message.
#[derive(Default)]
struct Refusals {
    /// The service's owner has no grant to schedule there.
    access: usize,
    unavailable: usize,
    constraints: usize,
    resources: usize,
}

fn nodes(n: usize) -> String {
    if n == 1 {
        "1 node".into()
    } else {
        format!("{n} nodes")
    }
}

impl Refusals {
    fn message(&self) -> String {
        let mut parts = Vec::new();
        if self.access > 0 {
            parts.push(format!(
                "the service's owner may not schedule on {}",
                nodes(self.access)
            ));
        }
        if self.unavailable > 0 {
            parts.push(format!(
                "{} not available for new tasks",
                nodes(self.unavailable)
            ));
        }
        if self.constraints > 0 {
            parts.push(format!(
                "scheduling constraints not satisfied on {}",
                nodes(self.constraints)
            ));
        }
        if self.resources > 0 {
            parts.push(format!(
                "insufficient resources on {}",
                nodes(self.resources)
            ));
        }
        if parts.is_empty() {
            parts.push("no nodes in the cluster".into());
        }
        format!("no suitable node ({})", parts.join("; "))
    }
}

/// What decides where a task may go; tasks that share it are placed together.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct GroupKey<'t> {
    service: &'t str,
    constraints: &'t [String],
    nano_cpus: u64,
    memory_bytes: u64,
    /// Set for global tasks, created for one node.
    node: Option<&'t str>,
}

impl<'a> Scheduler<'a> {
    /// Takes the nodes and the tasks already on them (any task may be passed;
    /// those that do not occupy a node are ignored).
    pub fn new<'t>(
        nodes: impl IntoIterator<Item = &'a Node>,
        tasks: impl IntoIterator<Item = &'t Task>,
    ) -> Scheduler<'a> {
        let nodes: Vec<NodeSlot<'a>> = nodes
            .into_iter()
            .map(|n| NodeSlot {
                node: n,
                available: node_available(n),
                free: n.description.resources,
                tasks: 0,
            })
            .collect();
        let by_id: HashMap<&'a str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, s)| (s.node.meta.id.as_str(), i))
            .collect();
        let mut s = Scheduler {
            nodes,
            by_id,
            per_service: HashMap::new(),
            allowed: HashMap::new(),
        };
        for t in tasks {
            if !occupies_node(t) {
                continue;
            }
            let Some(&i) = t.node_id.as_deref().and_then(|id| s.by_id.get(id)) else {
                continue;
            };
            if !s.per_service.contains_key(&t.service_id) {
                s.per_service
                    .insert(t.service_id.clone(), vec![0; s.nodes.len()]);
            }
            if let Some(counts) = s.per_service.get_mut(&t.service_id) {
                counts[i] += 1;
            }
            let want = &t.spec.resources.reservations;
            let slot = &mut s.nodes[i];
            slot.tasks += 1;
            slot.free.nano_cpus = slot.free.nano_cpus.saturating_sub(want.nano_cpus);
            slot.free.memory_bytes = slot.free.memory_bytes.saturating_sub(want.memory_bytes);
        }
        s
    }

    /// Takes a service's per-node counts out of the map for a group's
    /// duration, so the hot loop indexes a plain vector; [`Self::put_counts`]
    /// returns it.
    fn take_counts(&mut self, service: &str) -> Vec<u32> {
        self.per_service
            .remove(service)
            .unwrap_or_else(|| vec![0; self.nodes.len()])
    }

    fn put_counts(&mut self, service: &str, counts: Vec<u32>) {
        self.per_service.insert(service.to_string(), counts);
    }

    /// Books a task of a service whose counts are `counts` on node `i`.
    fn book(&mut self, counts: &mut [u32], i: usize, want: &Resources) {
        counts[i] += 1;
        let slot = &mut self.nodes[i];
        slot.tasks += 1;
        slot.free.nano_cpus = slot.free.nano_cpus.saturating_sub(want.nano_cpus);
        slot.free.memory_bytes = slot.free.memory_bytes.saturating_sub(want.memory_bytes);
    }

    /// Lets `service`'s tasks go only to the nodes `may(node)` accepts.
    pub fn restrict(&mut self, service: &str, may: impl Fn(&Node) -> bool) {
        let mask = self.nodes.iter().map(|s| may(s.node)).collect();
        self.allowed.insert(service.to_string(), mask);
    }

    fn allowed(&self, service: &str, i: usize) -> bool {
        self.allowed.get(service).is_none_or(|m| m[i])
    }

    /// How many tasks each node holds (indexed in the order nodes were given).
    pub fn load(&self) -> Vec<(&'a str, u32)> {
        self.nodes
            .iter()
            .map(|s| (s.node.meta.id.as_str(), s.tasks))
            .collect()
    }

    /// Places `tasks`, returning for each (in the given order) its node, or why
    /// it fits nowhere. Later tasks see the placements of earlier ones.
    pub fn place<'t>(
        &mut self,
        tasks: impl IntoIterator<Item = &'t Task>,
    ) -> Vec<(String, Result<String, String>)> {
        let tasks: Vec<&Task> = tasks.into_iter().collect();
        let mut groups: HashMap<GroupKey<'_>, Vec<usize>> = HashMap::new();
        let mut order: Vec<GroupKey<'_>> = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            let r = &t.spec.resources.reservations;
            let key = GroupKey {
                service: &t.service_id,
                constraints: &t.spec.placement.constraints,
                nano_cpus: r.nano_cpus,
                memory_bytes: r.memory_bytes,
                node: if t.slot == 0 {
                    t.node_id.as_deref()
                } else {
                    None
                },
            };
            match groups.get_mut(&key) {
                Some(v) => v.push(i),
                None => {
                    groups.insert(key, vec![i]);
                    order.push(key);
                }
            }
        }
        let mut out: Vec<Option<Result<usize, String>>> = vec![None; tasks.len()];
        // Groups go in order of first appearance, so the result does not
        // depend on hash order.
        for key in order {
            let members = groups.remove(&key).unwrap_or_default();
            let want = Resources {
                nano_cpus: key.nano_cpus,
                memory_bytes: key.memory_bytes,
            };
            let results = match key.node {
                Some(node) => {
                    self.place_on(node, key.service, key.constraints, &want, members.len())
                }
                None => self.place_group(key.service, key.constraints, &want, members.len()),
            };
            for (i, r) in members.into_iter().zip(results) {
                out[i] = Some(r);
            }
        }
        tasks
            .iter()
            .zip(out)
            .map(|(t, r)| {
                let r = r.unwrap_or_else(|| Err("not placed".into()));
                (
                    t.meta.id.clone(),
                    r.map(|i| self.nodes[i].node.meta.id.clone()),
                )
            })
            .collect()
    }

    /// `count` tasks of one service, same constraints and reservations, on any node.
    fn place_group(
        &mut self,
        service: &str,
        constraint_exprs: &[String],
        want: &Resources,
        count: usize,
    ) -> Vec<Result<usize, String>> {
        let constraints = match parse_constraints(constraint_exprs) {
            Ok(c) => c,
            Err(e) => return vec![Err(format!("invalid placement constraint: {e}")); count],
        };
        let mut refused = Refusals::default();
        let mut counts = self.take_counts(service);
        let mut heap: Vec<Reverse<(u32, u32, usize)>> = Vec::with_capacity(self.nodes.len());
        for (i, s) in self.nodes.iter().enumerate() {
            if !self.allowed(service, i) {
                refused.access += 1;
            } else if !s.available {
                refused.unavailable += 1;
            } else if !constraints_match(&constraints, s.node) {
                refused.constraints += 1;
            } else if !fits(want, &s.free) {
                refused.resources += 1;
            } else {
                heap.push(Reverse((counts[i], s.tasks, i)));
            }
        }
        let mut heap = BinaryHeap::from(heap);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let placed = loop {
                let Some(Reverse((svc, all, i))) = heap.pop() else {
                    break None;
                };
                if !fits(want, &self.nodes[i].free) {
                    // Free resources only shrink during the group.
                    refused.resources += 1;
                    continue;
                }
                self.book(&mut counts, i, want);
                heap.push(Reverse((svc + 1, all + 1, i)));
                break Some(i);
            };
            match placed {
                Some(i) => out.push(Ok(i)),
                None => {
                    let msg = refused.message();
                    out.resize(count, Err(msg));
                    break;
                }
            }
        }
        self.put_counts(service, counts);
        out
    }

    /// `count` tasks bound to one node (a global service's): check it takes them.
    fn place_on(
        &mut self,
        node_id: &str,
        service: &str,
        constraint_exprs: &[String],
        want: &Resources,
        count: usize,
    ) -> Vec<Result<usize, String>> {
        let constraints = match parse_constraints(constraint_exprs) {
            Ok(c) => c,
            Err(e) => return vec![Err(format!("invalid placement constraint: {e}")); count],
        };
        let Some(&i) = self.by_id.get(node_id) else {
            return vec![Err(format!("node {node_id} is not in the cluster")); count];
        };
        let mut counts = self.take_counts(service);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let s = &self.nodes[i];
            let mut refused = Refusals::default();
            if !self.allowed(service, i) {
                refused.access = 1;
            } else if !s.available {
                refused.unavailable = 1;
            } else if !constraints_match(&constraints, s.node) {
                refused.constraints = 1;
            } else if !fits(want, &s.free) {
                refused.resources = 1;
            } else {
                self.book(&mut counts, i, want);
                out.push(Ok(i));
                continue;
            }
            out.push(Err(refused.message()));
        }
        self.put_counts(service, counts);
        out
    }
}

/// A service lands only on nodes its owner (the user who created it, in
/// its `berth.access.owner` label) may schedule on: `node.schedule` on the
/// node's collection. An admin owner, or a service with no owner (made
/// before access control), may go anywhere; an owner that no longer exists
/// nowhere.
fn restrict_to_owners(scheduler: &mut Scheduler<'_>, state: &State, pending: &[&Task]) {
    let schedule = auth::Operation::named("node.schedule");
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for t in pending {
        if !seen.insert(&t.service_id) {
            continue;
        }
        let Some(svc) = state.service(&t.service_id) else {
            continue;
        };
        let Some(owner) = svc.spec.labels.get(api::auth::OWNER_LABEL) else {
            continue;
        };
        match state.auth_by_key(&api::auth::account_key(owner)) {
            Some(api::Object::User(u)) if u.admin && !u.disabled => {}
            Some(api::Object::User(u)) => {
                let authz = auth::Authorizer::for_user(state, &u.meta.id);
                let id = u.meta.id.clone();
                scheduler.restrict(&t.service_id, |n| {
                    authz.allows(&id, schedule, auth::scope::node_collection(n))
                });
            }
            _ => scheduler.restrict(&t.service_id, |_| false),
        }
    }
}

/// Assigns every pending task that fits somewhere; records why the others wait.
pub fn reconcile(state: &State, now: Timestamp) -> Plan {
    let pending: Vec<&Task> = state.tasks().filter(|t| is_pending(t)).collect();
    let mut plan = Plan::default();
    if pending.is_empty() {
        return plan;
    }
    let mut scheduler = Scheduler::new(state.nodes(), state.tasks());
    restrict_to_owners(&mut scheduler, state, &pending);
    let results = scheduler.place(pending.iter().copied());
    for (t, (_, result)) in pending.into_iter().zip(results) {
        match result {
            Ok(node) => {
                let mut t = t.clone();
                t.node_id = Some(node);
                t.status = TaskStatus {
                    state: TaskState::Assigned,
                    timestamp: now,
                    message: "scheduler assigned task to node".into(),
                    ..TaskStatus::default()
                };
                plan.ops.push(Op::Update(t.into()));
            }
            Err(why) => {
                // Rewriting an unchanged reason would wake every component
                // for nothing, over and over.
                if t.status.err.as_deref() == Some(why.as_str())
                    && t.status.state == TaskState::Pending
                {
                    continue;
                }
                let mut t = t.clone();
                t.status = TaskStatus {
                    state: TaskState::Pending,
                    timestamp: now,
                    message: "pending task scheduling".into(),
                    err: Some(why),
                    ..TaskStatus::default()
                };
                plan.ops.push(Op::Update(t.into()));
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testutil::*;
    use api::*;
    use std::collections::BTreeMap;

    fn pending(w: &mut World, svc: &Service, n: u64) {
        for slot in 1..=n {
            w.create(T0, crate::plan::new_task(svc, slot, None, vec![], T0));
        }
    }

    fn placement(w: &World, svc: &str) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for t in w.tasks(svc) {
            if let Some(n) = t.node_id {
                *m.entry(n).or_default() += 1;
            }
        }
        m
    }

    fn schedule(w: &mut World) {
        let plan = reconcile(&w.state, at(1));
        w.apply(at(1), plan.ops);
    }

    #[test]
    fn spreads_a_service_then_all_tasks() {
        let mut w = World::new();
        for n in ["n1", "n2", "n3"] {
            w.add_node(n);
        }
        let a = replicated("a", 2);
        w.create(T0, a.clone());
        pending(&mut w, &a, 2);
        schedule(&mut w);
        // a's two tasks land on n1 and n2 (ties go to the first node).
        assert_eq!(placement(&w, "a").len(), 2);
        let b = replicated("b", 4);
        w.create(T0, b.clone());
        pending(&mut w, &b, 4);
        schedule(&mut w);
        let pb = placement(&w, "b");
        // b spreads over all three nodes; its 4th task goes to the node that
        // has the fewest tasks overall, the one a left empty.
        let a_nodes: Vec<String> = placement(&w, "a").into_keys().collect();
        let free = ["n1", "n2", "n3"]
            .into_iter()
            .find(|n| !a_nodes.iter().any(|a| a == n))
            .expect("one node without a");
        assert_eq!(pb.get(free), Some(&2), "{pb:?}");
        assert_eq!(pb.values().sum::<usize>(), 4);
        for t in w.tasks("b") {
            assert_eq!(t.status.state, TaskState::Assigned);
        }
    }

    #[test]
    fn constraints_select_nodes() {
        let mut w = World::new();
        for n in ["n1", "n2", "n3"] {
            w.add_node(n);
        }
        w.update_node("n2", |n| {
            n.spec.labels.insert("zone".into(), "east".into());
        });
        w.update_node("n3", |n| n.spec.role = NodeRole::Manager);
        let cases: [(&str, &[&str]); 6] = [
            ("node.labels.zone==east", &["n2"]),
            ("node.labels.zone!=east", &["n1", "n3"]),
            ("node.role==manager", &["n3"]),
            ("node.role!=manager", &["n1", "n2"]),
            ("node.hostname==host-n1", &["n1"]),
            ("node.id!=n1", &["n2", "n3"]),
        ];
        for (i, (expr, want)) in cases.into_iter().enumerate() {
            let mut svc = replicated(&format!("s{i}"), 6);
            svc.spec.task_template.placement.constraints = vec![expr.into()];
            w.create(T0, svc.clone());
            pending(&mut w, &svc, 6);
            schedule(&mut w);
            let got: Vec<String> = placement(&w, &svc.meta.id).into_keys().collect();
            assert_eq!(got, want.to_vec(), "{expr}");
        }
    }

    #[test]
    fn reservations_must_fit_and_running_tasks_hold_theirs() {
        let mut w = World::new();
        w.add_node("n1"); // 4 CPUs, 8 GiB
        let mut svc = replicated("s", 5);
        svc.spec.task_template.resources.reservations.nano_cpus = 1_000_000_000;
        w.create(T0, svc.clone());
        pending(&mut w, &svc, 5);
        schedule(&mut w);
        let tasks = w.tasks("s");
        let assigned = tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Assigned)
            .count();
        assert_eq!(assigned, 4);
        let waiting: Vec<&Task> = tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Pending)
            .collect();
        assert_eq!(waiting.len(), 1);
        assert_eq!(
            waiting[0].status.err.as_deref(),
            Some("no suitable node (insufficient resources on 1 node)")
        );
        // A zero reservation always fits, even on a full node.
        let free = replicated("free", 1);
        w.create(T0, free.clone());
        pending(&mut w, &free, 1);
        schedule(&mut w);
        assert_eq!(placement(&w, "free").len(), 1);
        // A new pass counts the assigned tasks' reservations: still no room.
        let plan = reconcile(&w.state, at(2));
        assert!(plan.ops.is_empty(), "the unchanged reason is not rewritten");
    }

    #[test]
    fn a_service_lands_only_where_its_owner_may_schedule() {
        use api::auth::{Collection, Grant, Subject, User};
        let mut w = World::new();
        for n in ["w1", "w2", "m1"] {
            w.add_node(n);
        }
        w.update_node("w2", |n| {
            n.spec
                .labels
                .insert(api::auth::COLLECTION_LABEL.into(), "/Shared/gpu".into());
        });
        w.update_node("m1", |n| n.spec.role = NodeRole::Manager);
        for (id, path) in [
            ("c0", "/"),
            ("c1", "/System"),
            ("c2", "/Shared"),
            ("c3", "/Shared/gpu"),
        ] {
            w.create(
                T0,
                Collection {
                    meta: Meta::new(id),
                    path: path.into(),
                },
            );
        }
        let user = |id: &str, admin: bool| User {
            meta: Meta::new(id),
            name: id.into(),
            full_name: String::new(),
            admin,
            disabled: false,
            password_hash: None,
            source: Default::default(),
            locked_until: None,
        };
        w.create(T0, user("alice", false));
        w.create(T0, user("root", true));
        w.create(T0, user("bob", false));
        // alice may schedule on /Shared/gpu only; bob nowhere.
        w.create(
            T0,
            Grant {
                meta: Meta::new("g1"),
                subject: Subject::User("alice".into()),
                role: "Scheduler".into(),
                collection: "/Shared/gpu".into(),
            },
        );
        let owned = |id: &str, owner: Option<&str>| {
            let mut svc = replicated(id, 4);
            if let Some(o) = owner {
                svc.spec
                    .labels
                    .insert(api::auth::OWNER_LABEL.into(), o.into());
            }
            svc
        };
        for (id, owner) in [
            ("a", Some("alice")),
            ("r", Some("root")),
            ("b", Some("bob")),
            ("gone", Some("carol")),
            ("old", None),
        ] {
            let svc = owned(id, owner);
            w.create(T0, svc.clone());
            pending(&mut w, &svc, 4);
        }
        schedule(&mut w);
        assert_eq!(placement(&w, "a"), BTreeMap::from([("w2".to_string(), 4)]));
        // An admin's service, and one from before access control, go anywhere.
        assert_eq!(placement(&w, "r").len(), 3);
        assert_eq!(placement(&w, "old").len(), 3);
        for id in ["b", "gone"] {
            let tasks = w.tasks(id);
            assert!(tasks.iter().all(|t| t.node_id.is_none()), "{id}");
            assert_eq!(
                tasks[0].status.err.as_deref(),
                Some("no suitable node (the service's owner may not schedule on 3 nodes)"),
                "{id}"
            );
        }
        // A grant on /Shared reaches the plain worker too, never the manager.
        w.create(
            T0,
            Grant {
                meta: Meta::new("g2"),
                subject: Subject::User("bob".into()),
                role: "Scheduler".into(),
                collection: "/".into(),
            },
        );
        schedule(&mut w);
        let b = placement(&w, "b");
        assert_eq!(b.values().sum::<usize>(), 4);
        assert!(!b.contains_key("m1"), "{b:?}");
    }

    #[test]
    fn pending_reason_names_each_cause() {
        let mut w = World::new();
        for n in ["n1", "n2", "n3", "n4"] {
            w.add_node(n);
        }
        w.update_node("n1", |n| n.status.state = NodeState::Down);
        w.update_node("n2", |n| n.spec.availability = Availability::Drain);
        w.update_node("n3", |n| n.spec.availability = Availability::Pause);
        w.update_node("n4", |n| n.description.resources.memory_bytes = 1);
        let mut svc = replicated("s", 1);
        svc.spec.task_template.resources.reservations.memory_bytes = 1 << 20;
        w.create(T0, svc.clone());
        pending(&mut w, &svc, 1);
        schedule(&mut w);
        let t = &w.tasks("s")[0];
        assert_eq!(t.status.state, TaskState::Pending);
        assert_eq!(
            t.status.err.as_deref(),
            Some("no suitable node (3 nodes not available for new tasks; insufficient resources on 1 node)")
        );
        let mut c = replicated("c", 1);
        c.spec.task_template.placement.constraints = vec!["node.labels.x==y".into()];
        w.update_node("n4", |n| n.description.resources.memory_bytes = 1 << 30);
        w.create(T0, c.clone());
        pending(&mut w, &c, 1);
        schedule(&mut w);
        assert_eq!(
            w.tasks("c")[0].status.err.as_deref(),
            Some("no suitable node (3 nodes not available for new tasks; scheduling constraints not satisfied on 1 node)")
        );
        // Once a node can take it, the task is assigned and the reason cleared.
        assert_eq!(w.tasks("s")[0].status.state, TaskState::Assigned);
    }

    #[test]
    fn no_nodes_at_all() {
        let mut w = World::new();
        let svc = replicated("s", 1);
        w.create(T0, svc.clone());
        pending(&mut w, &svc, 1);
        schedule(&mut w);
        assert_eq!(
            w.tasks("s")[0].status.err.as_deref(),
            Some("no suitable node (no nodes in the cluster)")
        );
    }

    #[test]
    fn place_returns_results_in_input_order_and_sees_earlier_placements() {
        let nodes: Vec<Node> = ["n1", "n2"].into_iter().map(node).collect();
        let a = replicated("a", 1);
        let b = replicated("b", 1);
        let tasks: Vec<Task> = vec![
            crate::plan::new_task(&a, 1, None, vec![], T0),
            crate::plan::new_task(&b, 1, None, vec![], T0),
            crate::plan::new_task(&a, 2, None, vec![], T0),
        ];
        let mut s = Scheduler::new(nodes.iter(), std::iter::empty::<&Task>());
        let out = s.place(tasks.iter());
        let ids: Vec<&str> = out.iter().map(|(id, _)| id.as_str()).collect();
        let want: Vec<&str> = tasks.iter().map(|t| t.meta.id.as_str()).collect();
        assert_eq!(ids, want);
        let nodes_of: Vec<&str> = out
            .iter()
            .map(|(_, r)| r.as_deref().unwrap_or("-"))
            .collect();
        // Tasks are placed by group in order of first appearance: a's two
        // spread over n1 and n2, then b takes the first of two equal nodes.
        assert_eq!(nodes_of, vec!["n1", "n1", "n2"]);
        assert_eq!(s.load(), vec![("n1", 2), ("n2", 1)]);
    }
}
