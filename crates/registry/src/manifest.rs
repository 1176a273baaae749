//! Reading a pushed manifest: which of the four supported kinds it is (OCI
//! image manifest and index, Docker schema 2 manifest and manifest list),
//! whether it is well formed, and what it references (blobs, manifests, its
//! `subject`), which become its [`ManifestRecord`].

use crate::digest::Digest;
use crate::error::{Code, RegistryError};
use crate::metadata::ManifestRecord;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Media types of layers that live elsewhere (`urls`) and so need not be in
/// the repository.
const FOREIGN_LAYERS: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn invalid(message: impl Into<String>) -> RegistryError {
    RegistryError::new(Code::ManifestInvalid, message)
}

fn descriptor_digest(d: &Descriptor, field: &str) -> Result<Digest, RegistryError> {
    if d.size < 0 {
        return Err(invalid(format!("{field}: size is negative")));
    }
    if d.media_type.is_empty() {
        return Err(invalid(format!("{field}: mediaType is empty")));
    }
    d.digest
        .parse()
        .map_err(|e| invalid(format!("{field}: digest {:?}: {e}", d.digest)))
}

/// The media type without parameters (`; charset=…`), which the spec says
/// to ignore.
pub fn bare_media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Parses a manifest pushed with `content_type` whose bytes hash to
/// `digest`.
pub fn parse(
    content_type: Option<&str>,
    bytes: &[u8],
    digest: Digest,
) -> Result<ManifestRecord, RegistryError> {
    let doc: Document =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not a manifest: {e}")))?;
    // A manifest must be a JSON object; serde accepts an array for a struct.
    if !matches!(serde_json::from_slice::<Value>(bytes), Ok(Value::Object(_))) {
        return Err(invalid("a manifest is a JSON object"));
    }
    let content_type = content_type.map(bare_media_type).filter(|c| !c.is_empty());
    let media_type = match (&doc.media_type, content_type) {
        (Some(m), Some(c)) if m != c => {
            return Err(invalid(format!(
                "mediaType {m:?} differs from the Content-Type {c:?}"
            )))
        }
        (Some(m), _) => m.clone(),
        (None, Some(c)) => c.to_string(),
        // Neither says: what the fields make it (OCI allows leaving it out).
        (None, None) if doc.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    if doc.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let subject = doc
        .subject
        .as_ref()
        .map(|s| descriptor_digest(s, "subject"))
        .transpose()?;
    let mut blobs = vec![];
    let mut manifests = vec![];
    let artifact_type;
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            if doc.manifests.is_some() {
                return Err(invalid("an image manifest has no manifests field"));
            }
            let config = doc
                .config
                .as_ref()
                .ok_or_else(|| invalid("an image manifest has a config"))?;
            blobs.push(descriptor_digest(config, "config")?);
            let layers = doc.layers.as_deref().unwrap_or_default();
            if media_type == DOCKER_MANIFEST && doc.layers.is_none() {
                return Err(invalid("a schema 2 manifest has layers"));
            }
            for (i, l) in layers.iter().enumerate() {
                let d = descriptor_digest(l, &format!("layers[{i}]"))?;
                // A foreign layer with URLs lives elsewhere.
                if !FOREIGN_LAYERS.contains(&l.media_type.as_str()) || l.urls.is_empty() {
                    blobs.push(d);
                }
            }
            artifact_type = doc
                .artifact_type
                .clone()
                .filter(|a| !a.is_empty())
                .or_else(|| Some(config.media_type.clone()));
        }
        OCI_INDEX | DOCKER_LIST => {
            if doc.config.is_some() || doc.layers.is_some() {
                return Err(invalid("an index has no config or layers"));
            }
            let list = doc
                .manifests
                .as_deref()
                .ok_or_else(|| invalid("an index has manifests"))?;
            for (i, m) in list.iter().enumerate() {
                manifests.push(descriptor_digest(m, &format!("manifests[{i}]"))?);
            }
            artifact_type = doc.artifact_type.clone().filter(|a| !a.is_empty());
        }
        other => {
            return Err(invalid(format!(
                "unsupported manifest media type {other:?} (OCI image manifest or index, Docker schema 2 manifest or manifest list)"
            )))
        }
    }
    if media_type.starts_with("application/vnd.docker.")
        && (subject.is_some() || doc.artifact_type.is_some())
    {
        return Err(invalid("subject and artifactType are OCI fields"));
    }
    blobs.sort();
    blobs.dedup();
    manifests.sort();
    manifests.dedup();
    Ok(ManifestRecord {
        digest,
        media_type,
        size: bytes.len() as u64,
        subject,
        artifact_type,
        annotations: doc.annotations,
        blobs,
        manifests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use serde_json::json;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn try_parse(ct: Option<&str>, v: Value) -> Result<ManifestRecord, Vec<Code>> {
        let bytes = serde_json::to_vec(&v).unwrap();
        let digest = Algorithm::Sha256.digest_of(&bytes);
        parse(ct, &bytes, digest).map_err(|e| e.codes())
    }

    #[test]
    fn manifests_of_each_kind_and_their_references() {
        let image = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d('a'), "size": 2},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d('b'), "size": 3},
                {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar", "digest": d('c'), "size": 3, "urls": ["https://x"]},
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d('e'), "size": 9},
            "annotations": {"k": "v"},
        });
        let r = try_parse(Some(OCI_MANIFEST), image).unwrap();
        assert_eq!(
            r.blobs,
            vec![d('a').parse().unwrap(), d('b').parse().unwrap()]
        );
        assert_eq!(r.subject, Some(d('e').parse().unwrap()));
        assert_eq!(
            r.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(r.annotations.get("k").map(String::as_str), Some("v"));

        // No artifactType: the config's media type stands in for it.
        let plain = json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.example.config", "digest": d('a'), "size": 2},
            "layers": [],
        });
        let r = try_parse(None, plain).unwrap();
        assert_eq!(r.media_type, OCI_MANIFEST);
        assert_eq!(
            r.artifact_type.as_deref(),
            Some("application/vnd.example.config")
        );

        let index = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": d('f'), "size": 5, "platform": {"os": "linux", "architecture": "amd64"}}],
        });
        let r = try_parse(Some(&format!("{DOCKER_LIST}; charset=utf-8")), index).unwrap();
        assert_eq!(r.manifests, vec![d('f').parse().unwrap()]);
        assert_eq!(r.artifact_type, None);
    }

    #[test]
    fn malformed_manifests_are_manifest_invalid() {
        let config = json!({"mediaType": "x/y", "digest": d('a'), "size": 1});
        let cases = [
            (None, json!([1, 2])),
            (
                None,
                json!({"schemaVersion": 1, "config": config, "layers": []}),
            ),
            (
                Some(DOCKER_MANIFEST),
                json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []}),
            ),
            (
                Some(OCI_MANIFEST),
                json!({"schemaVersion": 2, "layers": []}),
            ),
            (
                Some(OCI_MANIFEST),
                json!({"schemaVersion": 2, "config": {"mediaType": "x/y", "digest": "sha256:zz", "size": 1}}),
            ),
            (
                Some(OCI_MANIFEST),
                json!({"schemaVersion": 2, "config": {"mediaType": "x/y", "digest": d('a'), "size": -1}}),
            ),
            (
                Some(OCI_INDEX),
                json!({"schemaVersion": 2, "manifests": [{"mediaType": "x/y", "digest": "nope", "size": 1}]}),
            ),
            (
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
                json!({"schemaVersion": 2}),
            ),
            (
                Some(DOCKER_MANIFEST),
                json!({"schemaVersion": 2, "config": config}),
            ),
        ];
        for (ct, v) in cases {
            assert_eq!(
                try_parse(ct, v.clone()).map(|_| ()),
                Err(vec![Code::ManifestInvalid]),
                "{ct:?} {v}"
            );
        }
        let bytes = b"not json";
        assert!(parse(None, bytes, Algorithm::Sha256.digest_of(bytes)).is_err());
    }
}
