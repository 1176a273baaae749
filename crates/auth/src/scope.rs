//! Which collection a resource lives in, for decisions: the value of its
//! `berth.access.collection` label. A service gets the label when it is
//! created (its owner's private collection unless the request names one);
//! a node without one is in `/System` if it is a manager (as UCP's) and in
//! `/Shared` otherwise; anything older than access control, unlabelled, is
//! in `/`, where only grants on the root (and admins) reach it.

use api::auth::{COLLECTION_LABEL, ROOT_COLLECTION, SHARED_COLLECTION, SYSTEM_COLLECTION};
use api::{Node, NodeRole, Service, State, Task};

/// The label naming the user who created a service (UCP's owner label).
pub const OWNER_LABEL: &str = api::auth::OWNER_LABEL;

pub fn service_collection(svc: &Service) -> &str {
    service_collection_of(&svc.spec)
}

pub fn service_collection_of(spec: &api::ServiceSpec) -> &str {
    spec.labels
        .get(COLLECTION_LABEL)
        .map_or(ROOT_COLLECTION, String::as_str)
}

pub fn node_collection(node: &Node) -> &str {
    match node.spec.labels.get(COLLECTION_LABEL) {
        Some(c) => c,
        None if node.spec.role == NodeRole::Manager => SYSTEM_COLLECTION,
        None => SHARED_COLLECTION,
    }
}

/// A task is in its service's collection (a task whose service is gone, in `/`).
pub fn task_collection<'a>(state: &'a State, task: &Task) -> &'a str {
    state
        .service(&task.service_id)
        .map_or(ROOT_COLLECTION, service_collection)
}
