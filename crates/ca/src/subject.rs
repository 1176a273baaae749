//! The subject of berth's certificates: the one place that says how a node's
//! identity is written into a certificate and read back out of one.
//!
//! As in Swarm, a node certificate names the node in CN, its role in OU and
//! the cluster in O. A user's client certificate (from the client root CA)
//! names the user in CN and carries [`CLIENT_OU`] in OU, so it can never be
//! read as a node's. The CA writes these fields itself; nothing a requester
//! puts in its signing request reaches a subject.

use api::rpc::{PeerIdentity, PeerRole};
use rcgen::{DistinguishedName, DnType};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::CaError;

/// OU of a manager's node certificate.
pub const MANAGER_OU: &str = "manager";
/// OU of a worker's node certificate.
pub const WORKER_OU: &str = "worker";
/// OU of a user's client certificate: not a node, whatever its CN says.
pub const CLIENT_OU: &str = "client";
/// The OU of a manager's HTTPS API certificate.
pub const API_OU: &str = "api";

/// X.520's upper bound for CN, O and OU.
const MAX_NAME_LEN: usize = 64;

/// The user a client certificate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    pub user: String,
}

pub(crate) fn role_ou(role: PeerRole) -> &'static str {
    match role {
        PeerRole::Manager => MANAGER_OU,
        PeerRole::Worker => WORKER_OU,
    }
}

/// Refuses names that would make an ambiguous or unreadable subject.
pub(crate) fn check_name(field: &'static str, value: &str) -> Result<(), CaError> {
    let reason = if value.is_empty() {
        "must not be empty"
    } else if value.chars().count() > MAX_NAME_LEN {
        "must be at most 64 characters"
    } else if value.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(CaError::InvalidName { field, reason })
}

pub(crate) fn node_subject(
    node_id: &str,
    role: PeerRole,
    cluster_id: &str,
) -> Result<DistinguishedName, CaError> {
    check_name("node id", node_id)?;
    check_name("cluster id", cluster_id)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, cluster_id);
    dn.push(DnType::OrganizationalUnitName, role_ou(role));
    dn.push(DnType::CommonName, node_id);
    Ok(dn)
}

pub(crate) fn client_subject(user: &str) -> Result<DistinguishedName, CaError> {
    check_name("user name", user)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationalUnitName, CLIENT_OU);
    dn.push(DnType::CommonName, user);
    Ok(dn)
}

/// The subject of a manager's API certificate: OU "api", never read as a
/// node's or a user's (its OU is neither), and it authenticates a server only.
pub(crate) fn api_subject(node_id: &str, cluster_id: &str) -> Result<DistinguishedName, CaError> {
    check_name("node id", node_id)?;
    check_name("cluster id", cluster_id)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, cluster_id);
    dn.push(DnType::OrganizationalUnitName, API_OU);
    dn.push(DnType::CommonName, node_id);
    Ok(dn)
}

pub(crate) fn root_subject(common_name: &str) -> Result<DistinguishedName, CaError> {
    check_name("root CA name", common_name)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    Ok(dn)
}

pub(crate) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, CaError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(CaError::Certificate(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(CaError::Certificate(e.to_string())),
    }
}

/// The single value of an attribute that must appear exactly once.
fn single<'a>(
    mut values: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
    what: &str,
) -> Result<String, CaError> {
    let first = values
        .next()
        .ok_or_else(|| CaError::Certificate(format!("subject has no {what}")))?;
    if values.next().is_some() {
        return Err(CaError::Certificate(format!("subject has several {what}")));
    }
    first
        .as_str()
        .map(str::to_owned)
        .map_err(|e| CaError::Certificate(format!("subject {what} is not text: {e}")))
}

pub(crate) fn common_name(name: &X509Name<'_>) -> Result<String, CaError> {
    single(name.iter_common_name(), "CN")
}

/// The node a certificate (DER) was issued to, as the cluster CA wrote it.
///
/// This reads the subject only; it proves nothing by itself. Call it on
/// certificates that a TLS handshake has already verified.
pub fn identity_of(cert_der: &[u8]) -> Result<PeerIdentity, CaError> {
    let cert = parse_cert(cert_der)?;
    if cert.is_ca() {
        return Err(CaError::Certificate(
            "a CA certificate is not a node's".into(),
        ));
    }
    let subject = cert.subject();
    let role = match single(subject.iter_organizational_unit(), "OU")?.as_str() {
        MANAGER_OU => PeerRole::Manager,
        WORKER_OU => PeerRole::Worker,
        other => {
            return Err(CaError::Certificate(format!(
                "OU {other:?} is not a node role"
            )))
        }
    };
    Ok(PeerIdentity {
        node_id: common_name(subject)?,
        role,
        cluster_id: single(subject.iter_organization(), "O")?,
    })
}

/// The user a client certificate (DER) was issued to. Like [`identity_of`],
/// it only reads: the caller verifies the chain to the client root CA.
pub fn client_identity_of(cert_der: &[u8]) -> Result<ClientIdentity, CaError> {
    let cert = parse_cert(cert_der)?;
    let subject = cert.subject();
    let ou = single(subject.iter_organizational_unit(), "OU")?;
    if ou != CLIENT_OU || cert.is_ca() {
        return Err(CaError::Certificate(format!(
            "not a client certificate (OU {ou:?})"
        )));
    }
    Ok(ClientIdentity {
        user: common_name(subject)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let cases: &[(&str, bool)] = &[
            ("node1", true),
            ("", false),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
            ("a\nb", false),
            ("ünïcode", true),
        ];
        for (name, ok) in cases {
            assert_eq!(check_name("node id", name).is_ok(), *ok, "{name:?}");
        }
    }
}
