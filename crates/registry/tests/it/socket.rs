//! The registry over a real socket on 127.0.0.1: concurrent pushes of one
//! blob, an upload broken off and resumed after the store is reopened from
//! its directory, a wrong digest refused with nothing stored, a chunk out
//! of order answered 416, and headers as they reach the wire.

use crate::support::*;
use registry::access::AllowAll;
use registry::storage::FsBlobStore;
use registry::{Digest, MemoryMetadata, Registry};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

async fn serve_dir(dir: &Path, metadata: Arc<MemoryMetadata>) -> (Arc<FsBlobStore>, Served) {
    let store = Arc::new(FsBlobStore::open(dir).await.unwrap());
    let router = registry::app(Registry::new(store.clone(), metadata, Arc::new(AllowAll)));
    (store, Served::start(router).await)
}

fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_one_blob_all_succeed_and_store_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, served) = serve_dir(dir.path(), Arc::new(MemoryMetadata::new())).await;
    let blob = bytes_of(3 * 1024 * 1024 + 7, 1);
    let digest = sha256(&blob);
    let client = client();
    let mut pushes = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (client, blob, digest) = (client.clone(), blob.clone(), digest.clone());
        let base = served.url("");
        pushes.spawn(async move {
            if i % 2 == 0 {
                // Monolithic, in one POST.
                let r = client
                    .post(format!("{base}/v2/eng/app/blobs/uploads/?digest={digest}"))
                    .body(blob)
                    .send()
                    .await
                    .unwrap();
                return r.status().as_u16();
            }
            // Chunked: POST, three PATCHes, PUT.
            let r = client
                .post(format!("{base}/v2/eng/app/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 202);
            let loc = format!("{base}{}", r.headers()["location"].to_str().unwrap());
            let third = blob.len() / 3;
            for (a, b) in [(0, third), (third, 2 * third), (2 * third, blob.len())] {
                let r = client
                    .patch(&loc)
                    .header("content-range", format!("{a}-{}", b - 1))
                    .body(blob[a..b].to_vec())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 202, "{a}-{b}");
                assert_eq!(
                    r.headers()["range"].to_str().unwrap(),
                    format!("0-{}", b - 1)
                );
            }
            let r = client
                .put(format!("{loc}?digest={digest}"))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        });
    }
    while let Some(status) = pushes.join_next().await {
        assert_eq!(status.unwrap(), 201);
    }
    let r = client
        .get(served.url(&format!("/v2/eng/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap(), blob);
    let d: Digest = digest.parse().unwrap();
    let blobs = files_under(&dir.path().join("blobs"));
    assert_eq!(blobs, vec![store.blob_path(&d)]);
    assert!(files_under(&dir.path().join("uploads")).is_empty());
    assert!(files_under(&dir.path().join("tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_after_the_store_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let metadata = Arc::new(MemoryMetadata::new());
    let (store, served) = serve_dir(dir.path(), metadata.clone()).await;
    let blob = bytes_of(200_000, 2);
    let client = client();
    let r = client
        .post(served.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();

    // A client that announces the whole blob, sends half, and goes away.
    let mut tcp = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        served.addr,
        blob.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&blob[..100_000]).await.unwrap();
    tcp.flush().await.unwrap();
    drop(tcp);

    // What arrived is kept, made durable, and reported.
    let mut range = String::new();
    for _ in 0..200 {
        let r = client.get(served.url(&loc)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 204);
        range = r.headers()["range"].to_str().unwrap().to_string();
        if range == "0-99999" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        range, "0-99999",
        "the broken-off chunk's bytes were not kept"
    );

    // The process "restarts": the store is dropped and opened again from its
    // directory (the metadata, the Raft store's stand-in, survives).
    drop(served);
    drop(store);
    let (_store, served) = serve_dir(dir.path(), metadata).await;
    let r = client.get(served.url(&loc)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(r.headers()["range"].to_str().unwrap(), "0-99999");
    let r = client
        .patch(served.url(&loc))
        .header("content-range", "100000-199999")
        .body(blob[100_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let digest = sha256(&blob);
    let r = client
        .put(served.url(&format!("{loc}?digest={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = client
        .get(served.url(&format!("/v2/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), blob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_past_the_acknowledged_offset_are_cut_when_an_upload_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let metadata = Arc::new(MemoryMetadata::new());
    let (store, served) = serve_dir(dir.path(), metadata.clone()).await;
    let client = client();
    let r = client
        .post(served.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = client
        .patch(served.url(&loc))
        .body(&b"acknowledged "[..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    drop(served);
    drop(store);
    // A crash mid-chunk: bytes written, the state file not yet updated.
    let id = loc.rsplit('/').next().unwrap();
    let data = dir.path().join("uploads").join(id).join("data");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&data)
        .unwrap();
    std::io::Write::write_all(&mut f, b"GARBAGE").unwrap();
    drop(f);

    let (_store, served) = serve_dir(dir.path(), metadata).await;
    let r = client.get(served.url(&loc)).send().await.unwrap();
    assert_eq!(r.headers()["range"].to_str().unwrap(), "0-12");
    let r = client
        .patch(served.url(&loc))
        .header("content-range", "13-17")
        .body(&b"bytes"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let digest = sha256(b"acknowledged bytes");
    let r = client
        .put(served.url(&format!("{loc}?digest={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = client
        .get(served.url(&format!("/v2/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), &b"acknowledged bytes"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_digest_is_refused_over_the_socket_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, served) = serve_dir(dir.path(), Arc::new(MemoryMetadata::new())).await;
    let blob = bytes_of(2 * 1024 * 1024, 3);
    let claimed = sha256(b"not these bytes");
    let client = client();
    let r = client
        .post(served.url(&format!("/v2/app/blobs/uploads/?digest={claimed}")))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DIGEST_INVALID");
    // The same through a session closed with the wrong digest.
    let r = client
        .post(served.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    client
        .patch(served.url(&loc))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    let r = client
        .put(served.url(&format!("{loc}?digest={claimed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    for d in [claimed, sha256(&blob)] {
        let d: Digest = d.parse().unwrap();
        assert!(!store.blob_path(&d).exists());
        let r = client
            .head(served.url(&format!("/v2/app/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
    }
    assert!(files_under(&dir.path().join("blobs")).is_empty());
    assert!(files_under(&dir.path().join("tmp")).is_empty());
    assert!(files_under(&dir.path().join("uploads")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_out_of_order_is_416_over_the_socket_and_the_status_says_where_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, served) = serve_dir(dir.path(), Arc::new(MemoryMetadata::new())).await;
    let client = client();
    let r = client
        .post(served.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let chunk = bytes_of(100, 4);
    let r = client
        .patch(served.url(&loc))
        .header("content-range", "0-99")
        .body(chunk.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let r = client
        .patch(served.url(&loc))
        .header("content-range", "200-299")
        .body(chunk.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 416);
    assert_eq!(r.headers()["range"].to_str().unwrap(), "0-99");
    let r = client.get(served.url(&loc)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(r.headers()["range"].to_str().unwrap(), "0-99");
    assert_eq!(r.headers()["location"].to_str().unwrap(), loc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_range_answers_reach_the_wire_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, served) = serve_dir(dir.path(), Arc::new(MemoryMetadata::new())).await;
    let blob = bytes_of(1_000_000, 5);
    let digest = sha256(&blob);
    let client = client();
    let r = client
        .post(served.url(&format!("/v2/app/blobs/uploads/?digest={digest}")))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = client
        .head(served.url(&format!("/v2/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-length"].to_str().unwrap(), "1000000");
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
    let r = client
        .get(served.url(&format!("/v2/app/blobs/{digest}")))
        .header("range", "bytes=999000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().await.unwrap(), blob[999_000..]);
}
