//! Who may call what, for gRPC services served by [`crate::serve`]: a call
//! without a node certificate is `Unauthenticated`, a node of the wrong role
//! is `PermissionDenied` (a worker cannot call manager-only RPCs).
//!
//! Wrap a whole service with an interceptor
//! (`FooServer::with_interceptor(svc, require_role(PeerRole::Manager))`), or
//! call [`check_peer`] inside a handler when only some of a service's methods
//! are restricted (the CA service answers joining nodes without a certificate).

use api::rpc::{peer, PeerIdentity, PeerRole};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// An interceptor that lets through callers with a node certificate of the
/// required role (or of any role).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequirePeer {
    role: Option<PeerRole>,
}

/// Only nodes of `role`. Roles are not ranked: `require_role(Worker)` refuses
/// a manager; use [`require_node`] for "any node".
pub fn require_role(role: PeerRole) -> RequirePeer {
    RequirePeer { role: Some(role) }
}

/// Any node of the cluster (a verified node certificate of either role).
pub fn require_node() -> RequirePeer {
    RequirePeer { role: None }
}

/// The caller's identity if it satisfies `role` (`None`: any node), or the
/// status to answer with.
pub fn check_peer<T>(
    request: &Request<T>,
    role: Option<PeerRole>,
) -> Result<&PeerIdentity, Status> {
    let Some(id) = peer(request) else {
        return Err(Status::unauthenticated(
            "this call needs a node certificate",
        ));
    };
    match role {
        Some(role) if id.role != role => Err(Status::permission_denied(format!(
            "this call is for {} nodes; node {} is a {}",
            role_name(role),
            id.node_id,
            role_name(id.role)
        ))),
        _ => Ok(id),
    }
}

fn role_name(role: PeerRole) -> &'static str {
    crate::subject::role_ou(role)
}

impl Interceptor for RequirePeer {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        check_peer(&request, self.role)?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::rpc::PeerInfo;

    fn request(identity: Option<PeerIdentity>) -> Request<()> {
        let mut r = Request::new(());
        r.extensions_mut().insert(PeerInfo {
            remote_addr: None,
            identity,
        });
        r
    }

    fn node(role: PeerRole) -> Option<PeerIdentity> {
        Some(PeerIdentity {
            node_id: "n1".into(),
            role,
            cluster_id: "c1".into(),
        })
    }

    #[test]
    fn table() {
        use tonic::Code::*;
        let cases = [
            (require_node(), None, Some(Unauthenticated)),
            (require_node(), node(PeerRole::Worker), None),
            (require_node(), node(PeerRole::Manager), None),
            (require_role(PeerRole::Manager), None, Some(Unauthenticated)),
            (
                require_role(PeerRole::Manager),
                node(PeerRole::Worker),
                Some(PermissionDenied),
            ),
            (
                require_role(PeerRole::Manager),
                node(PeerRole::Manager),
                None,
            ),
            (
                require_role(PeerRole::Worker),
                node(PeerRole::Manager),
                Some(PermissionDenied),
            ),
        ];
        for (mut interceptor, identity, want) in cases {
            let got = interceptor
                .call(request(identity.clone()))
                .err()
                .map(|s| s.code());
            assert_eq!(got, want, "{interceptor:?} {identity:?}");
        }
        // A request that did not come through `serve` has no PeerInfo at all.
        assert_eq!(
            require_node()
                .call(Request::new(()))
                .err()
                .map(|s| s.code()),
            Some(Unauthenticated)
        );
    }
}
