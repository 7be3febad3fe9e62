//! Media is streamed to and from disk, never held whole in memory (issue 18).
//!
//! The Client-Server API, "Content repository", Security considerations:
//! "Clients may try to upload very large files. Homeservers should not
//! store files that are too large and should not serve them to clients,
//! returning a HTTP 413 error with the `M_TOO_LARGE` code."
//! `POST /_matrix/media/v3/upload` answers "413: The uploaded content is too
//! large for the server" and "429: This request was rate-limited".
//!
//! Uploads here are request bodies made chunk by chunk (through the router
//! itself), so the test never holds a whole upload either.

mod common;

use axum::body::{Body, Bytes};
use axum::http::Request;
use common::{TestServer, User};
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The bytes at `offset..offset + len` of a deterministic pseudo-random file.
fn pattern(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|i| {
            let mut x = (i / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
            x ^= x >> 29;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x ^= x >> 32;
            (x >> ((i % 8) * 8)) as u8
        })
        .collect()
}

fn sha_of_pattern(seed: u64, total: u64, chunk: usize) -> String {
    let mut h = Sha256::new();
    let mut off = 0;
    while off < total {
        let n = chunk.min((total - off) as usize);
        h.update(pattern(seed, off, n));
        off += n as u64;
    }
    hex::encode(h.finalize())
}

/// A body of `total` pattern bytes in `chunk`-sized pieces, made as they
/// are read; `pulled` counts the bytes handed out.
fn generated(
    seed: u64,
    total: u64,
    chunk: usize,
    pulled: Arc<AtomicU64>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(0u64, move |off| {
        let pulled = pulled.clone();
        async move {
            if off >= total {
                return None;
            }
            let n = chunk.min((total - off) as usize);
            pulled.fetch_add(n as u64, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Some((Ok(Bytes::from(pattern(seed, off, n))), off + n as u64))
        }
    })
}

fn upload_request(user: &User, body: Body) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri("/_matrix/media/v3/upload?filename=data.bin")
        .header("authorization", format!("Bearer {}", user.token))
        .header("content-type", "application/octet-stream")
        .body(body)
        .unwrap()
}

async fn send(s: &TestServer, req: Request<Body>) -> (u16, Value) {
    let resp = conifer_homeserver::client::router(s.hs.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn media_dir(s: &TestServer) -> PathBuf {
    s.dir.path().join("media")
}

/// The stored media files (in the two-character shard directories).
fn stored_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap().flatten() {
        if shard.file_name().len() == 2 && shard.path().is_dir() {
            for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
                files.push(f.path());
            }
        }
    }
    files
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn mxc_path(content_uri: &Value) -> String {
    content_uri
        .as_str()
        .unwrap()
        .strip_prefix("mxc://")
        .unwrap()
        .to_owned()
}

/// The tests here run one at a time, so that the memory one measures only
/// itself.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// An upload that grows past `media.max_upload_bytes` (with no declared
/// length, so only reading can tell) is refused with 413 `M_TOO_LARGE` as
/// soon as it passes the limit, and leaves no file behind.
#[tokio::test]
async fn upload_past_the_limit_is_413_and_leaves_no_file() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start_with(|c| {
        c.rate_limits.enabled = false;
        c.media.max_upload_bytes = 1 << 20;
    })
    .await;
    let ann = s.register("ann").await;
    let pulled = Arc::new(AtomicU64::new(0));
    let body = Body::from_stream(generated(1, 8 << 20, 64 << 10, pulled.clone()));
    let (status, err) = send(&s, upload_request(&ann, body)).await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["errcode"], "M_TOO_LARGE");
    // Refused as soon as the limit was passed: the rest was never read.
    let read = pulled.load(Ordering::SeqCst);
    assert!(read <= (1 << 20) + (64 << 10), "read {read} bytes");
    assert!(stored_files(&media_dir(&s)).is_empty());
    assert!(temp_files(&media_dir(&s)).is_empty());
    // Exactly the limit is fine.
    let body = Body::from_stream(generated(1, 1 << 20, 64 << 10, pulled.clone()));
    let (status, r) = send(&s, upload_request(&ann, body)).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(stored_files(&media_dir(&s)).len(), 1);
    assert!(temp_files(&media_dir(&s)).is_empty());
}

/// A body that fails halfway, or an upload whose request goes away, leaves
/// no temporary file; stale temporary files are removed at start-up.
#[tokio::test]
async fn failed_and_abandoned_uploads_leave_no_temp_file() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let failing =
        generated(2, 1 << 20, 64 << 10, Arc::default()).chain(futures_util::stream::once(async {
            Err(std::io::Error::other("connection reset"))
        }));
    let (status, err) = send(&s, upload_request(&ann, Body::from_stream(failing))).await;
    assert_eq!(status, 400, "{err}");
    assert!(temp_files(&media_dir(&s)).is_empty());
    assert!(stored_files(&media_dir(&s)).is_empty());

    // A request dropped while its body is still arriving.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let req = upload_request(&ann, Body::from_stream(body));
    let task = tokio::spawn(conifer_homeserver::client::router(s.hs.clone()).oneshot(req));
    for _ in 0..8 {
        tx.send(Ok(Bytes::from(vec![7u8; 64 << 10]))).await.unwrap();
    }
    wait_for(|| !temp_files(&media_dir(&s)).is_empty()).await;
    task.abort();
    let _ = task.await;
    wait_for(|| temp_files(&media_dir(&s)).is_empty()).await;
    assert!(stored_files(&media_dir(&s)).is_empty());
    // Its slot was given back: four more uploads go through at once.
    let uploads = (0..4).map(|i| {
        let body = Body::from_stream(generated(10 + i, 100_000, 32 << 10, Arc::default()));
        send(&s, upload_request(&ann, body))
    });
    for (status, r) in futures_util::future::join_all(uploads).await {
        assert_eq!(status, 200, "{r}");
    }

    // Stale temporary files of a previous run are removed when it starts.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("media/tmp")).unwrap();
    std::fs::create_dir_all(dir.path().join("media/ab")).unwrap();
    std::fs::write(dir.path().join("media/tmp/upload-stale"), b"half").unwrap();
    std::fs::write(dir.path().join("media/ab/abcdef.tmpXYZ"), b"half").unwrap();
    let s2 = TestServer::start_in(dir, |_| {}).await;
    assert!(temp_files(&media_dir(&s2)).is_empty());
    assert!(stored_files(&media_dir(&s2)).is_empty());
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

/// One user's uploads beyond `media.max_concurrent_uploads_per_user` are
/// answered 429 `M_LIMIT_EXCEEDED` with `retry_after_ms` at once, without
/// their bodies being read; other users are not held up, and the slots come
/// back when the uploads end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_beyond_the_cap_get_429() {
    let _serial = SERIAL.lock().await;
    let s = Arc::new(TestServer::start().await);
    assert_eq!(s.hs.config.media.max_concurrent_uploads_per_user, 4);
    let ann = Arc::new(s.register("ann").await);
    let bob = s.register("bob").await;
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    let mut polled = Vec::new();
    for _ in 0..12 {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let was_polled = Arc::new(AtomicBool::new(false));
        let flag = was_polled.clone();
        let body = futures_util::stream::unfold(rx, move |mut rx| {
            flag.store(true, Ordering::SeqCst);
            async move { rx.recv().await.map(|item| (item, rx)) }
        });
        let (s, ann) = (s.clone(), ann.clone());
        tasks.push(tokio::spawn(async move {
            send(&s, upload_request(&ann, Body::from_stream(body))).await
        }));
        senders.push(tx);
        polled.push(was_polled);
    }
    // Eight answers come back while four uploads wait for their bytes.
    wait_for(|| tasks.iter().filter(|t| t.is_finished()).count() == 8).await;
    let mut refused = 0;
    let mut pending = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if task.is_finished() {
            let (status, err) = task.await.unwrap();
            assert_eq!(status, 429, "{err}");
            assert_eq!(err["errcode"], "M_LIMIT_EXCEEDED");
            assert!(err["retry_after_ms"].as_u64().is_some(), "{err}");
            assert!(!polled[i].load(Ordering::SeqCst), "body {i} was read");
            refused += 1;
        } else {
            pending.push((i, task));
        }
    }
    assert_eq!((refused, pending.len()), (8, 4));
    // Another user uploads meanwhile.
    let body = Body::from_stream(generated(3, 10_000, 4096, Arc::default()));
    let (status, r) = send(&s, upload_request(&bob, body)).await;
    assert_eq!(status, 200, "{r}");
    // The four finish.
    for (i, _) in &pending {
        let tx = &senders[*i];
        tx.send(Ok(Bytes::from(pattern(*i as u64, 0, 50_000))))
            .await
            .unwrap();
    }
    drop(senders);
    for (_, task) in pending {
        let (status, r) = task.await.unwrap();
        assert_eq!(status, 200, "{r}");
    }
    // The slots are free again.
    let body = Body::from_stream(generated(4, 10_000, 4096, Arc::default()));
    assert_eq!(send(&s, upload_request(&ann, body)).await.0, 200);
}

/// Uploads of the same bytes at the same time all succeed (each with its
/// own `mxc://` URI) and end as one content-addressed file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_the_same_content_end_as_one_file() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let bob = s.register("bob").await;
    let uploads = (0..6).map(|i| {
        let body = Body::from_stream(generated(5, 3 << 20, 64 << 10, Arc::default()));
        send(
            &s,
            upload_request(if i % 2 == 0 { &ann } else { &bob }, body),
        )
    });
    let mut uris = Vec::new();
    for (status, r) in futures_util::future::join_all(uploads).await {
        assert_eq!(status, 200, "{r}");
        uris.push(r["content_uri"].as_str().unwrap().to_owned());
    }
    uris.sort();
    uris.dedup();
    assert_eq!(uris.len(), 6);
    let files = stored_files(&media_dir(&s));
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        files[0].file_name().unwrap().to_str().unwrap(),
        sha_of_pattern(5, 3 << 20, 64 << 10)
    );
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), 3 << 20);
    assert!(temp_files(&media_dir(&s)).is_empty());
}

/// A download is streamed back over HTTP with the headers media is served
/// with: "When serving content, the server SHOULD provide a
/// `Content-Security-Policy` header."
#[tokio::test]
async fn download_streams_the_bytes_back_with_their_headers() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let bytes = pattern(6, 0, 2 << 20);
    let r = s
        .http
        .post(format!(
            "{}/_matrix/media/v3/upload?filename=song.ogg",
            s.url
        ))
        .bearer_auth(&ann.token)
        .header("content-type", "audio/ogg")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mxc = mxc_path(&r.json::<Value>().await.unwrap()["content_uri"]);
    for url in [
        format!("{}/_matrix/client/v1/media/download/{mxc}", s.url),
        format!("{}/_matrix/media/v3/download/{mxc}/other.ogg", s.url),
    ] {
        let mut down = s
            .http
            .get(&url)
            .bearer_auth(&ann.token)
            .send()
            .await
            .unwrap();
        assert_eq!(down.status(), 200);
        let h = down.headers();
        assert_eq!(h["content-type"], "audio/ogg");
        assert_eq!(h["content-length"], (2u64 << 20).to_string().as_str());
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox;"));
        let disposition = h["content-disposition"].to_str().unwrap().to_owned();
        let name = if url.ends_with("other.ogg") {
            "other.ogg"
        } else {
            "song.ogg"
        };
        assert!(disposition.contains(name), "{disposition}");
        let mut got = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = down.chunk().await.unwrap() {
            got.extend_from_slice(&chunk);
            chunks += 1;
        }
        assert!(got == bytes, "the bytes differ");
        assert!(chunks > 1, "sent in one piece");
    }
}

/// A 20 MiB upload round-trips byte-identical, and the process does not
/// grow by anything like its size while taking it in or giving it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_upload_round_trips_without_holding_it_in_memory() {
    let _serial = SERIAL.lock().await;
    const SIZE: u64 = 20 << 20;
    const CHUNK: usize = 64 << 10;
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let expected = sha_of_pattern(8, SIZE, CHUNK);
    // Warm up allocator and blocking threads with a small upload first.
    let body = Body::from_stream(generated(9, 1 << 20, CHUNK, Arc::default()));
    assert_eq!(send(&s, upload_request(&ann, body)).await.0, 200);

    let before = vm_rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let peak_in = peak.clone();
    let body = generated(8, SIZE, CHUNK, Arc::default()).inspect(move |_| {
        peak_in.fetch_max(vm_rss_kib(), Ordering::SeqCst);
    });
    let (status, r) = send(&s, upload_request(&ann, Body::from_stream(body))).await;
    assert_eq!(status, 200, "{r}");
    let after_upload = vm_rss_kib();
    let upload_peak = peak.load(Ordering::SeqCst).max(after_upload);

    let mxc = mxc_path(&r["content_uri"]);
    let req = Request::builder()
        .uri(format!("/_matrix/client/v1/media/download/{mxc}"))
        .header("authorization", format!("Bearer {}", ann.token))
        .body(Body::empty())
        .unwrap();
    let resp = conifer_homeserver::client::router(s.hs.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.into_body().into_data_stream();
    let (mut hasher, mut total, mut largest, mut download_peak) = (Sha256::new(), 0u64, 0, 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        hasher.update(&chunk);
        total += chunk.len() as u64;
        largest = largest.max(chunk.len());
        download_peak = download_peak.max(vm_rss_kib());
    }
    assert_eq!(total, SIZE);
    assert_eq!(
        hex::encode(hasher.finalize()),
        expected,
        "not byte-identical"
    );
    eprintln!(
        "VmRSS: before {before} KiB, peak while uploading {upload_peak} KiB, \
         after upload {after_upload} KiB, peak while downloading {download_peak} KiB; \
         largest download chunk {largest} bytes"
    );
    let limit = SIZE / 1024 / 4; // a quarter of the upload, in KiB
    assert!(
        upload_peak.saturating_sub(before) < limit,
        "uploading grew the process by {} KiB",
        upload_peak - before
    );
    assert!(
        download_peak.saturating_sub(before) < limit,
        "downloading grew the process by {} KiB",
        download_peak - before
    );
    assert!(largest <= 1 << 20);
}

/// Delivers federation requests to in-process routers, reading answers of up
/// to 64 MiB (as the HTTPS transport does).
#[derive(Clone, Default)]
struct WholeAnswers {
    servers: Arc<std::sync::Mutex<std::collections::HashMap<String, axum::Router>>>,
}

impl conifer_federation::Transport for WholeAnswers {
    fn send(
        &self,
        r: conifer_federation::FederationRequest,
    ) -> conifer_federation::TransportFuture<'_> {
        Box::pin(async move {
            let router = self.servers.lock().unwrap().get(&r.destination).cloned();
            let router = router.ok_or_else(|| {
                conifer_federation::TransportError::Unreachable(r.destination.clone())
            })?;
            let mut req = Request::builder().method(r.method.as_str()).uri(&r.uri);
            if let Some(a) = &r.authorization {
                req = req.header("authorization", a);
            }
            let req = req.body(Body::from(r.body.unwrap_or_default())).unwrap();
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
                .await
                .map_err(|e| conifer_federation::TransportError::Io(e.to_string()))?;
            Ok(conifer_federation::FederationResponse {
                status,
                body: body.to_vec(),
            })
        })
    }
}

/// Remote media comes over federation as `multipart/mixed` (the origin
/// streams its file into it) and is served from the local store; remote
/// media larger than `media.max_upload_bytes` is refused: "Homeservers
/// should not proxy or thumbnail large files or images from remote
/// homeservers, returning a HTTP 502 error with the `M_TOO_LARGE` code."
#[tokio::test]
async fn remote_media_is_fetched_within_the_limit() {
    let _serial = SERIAL.lock().await;
    let local = TestServer::start_with(|c| {
        c.rate_limits.enabled = false;
        c.media.max_upload_bytes = 1 << 20;
    })
    .await;
    let ann = local.register("ann").await;
    let net = common::federation::InProcess::default();
    let remote = common::federation::server("remote.test", "r1", 9, &net);
    net.servers.lock().unwrap().insert(
        common::SERVER.to_owned(),
        conifer_homeserver::federation::router(local.hs.clone()),
    );
    let whole = WholeAnswers::default();
    whole.servers.lock().unwrap().insert(
        "remote.test".to_owned(),
        conifer_homeserver::federation::router(remote.hs.clone()),
    );
    let _ = local.hs.transport.set(Arc::new(whole));

    // Someone on the remote server uploads a small and a large file.
    let remote_client = || conifer_homeserver::client::router(remote.hs.clone());
    let register = Request::builder()
        .method("POST")
        .uri("/_matrix/client/v3/register")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"username":"rob","password":"secret-password","auth":{"type":"m.login.dummy"}}"#,
        ))
        .unwrap();
    let resp = remote_client().oneshot(register).await.unwrap();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let rob: Value = serde_json::from_slice(&body).unwrap();
    let rob = User {
        user_id: rob["user_id"].as_str().unwrap().to_owned(),
        token: rob["access_token"].as_str().unwrap().to_owned(),
        device_id: rob["device_id"].as_str().unwrap().to_owned(),
    };
    let mut uris = Vec::new();
    for size in [300_000u64, 2 << 20] {
        let body = Body::from_stream(generated(11, size, 64 << 10, Arc::default()));
        let resp = remote_client()
            .oneshot(upload_request(&rob, body))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let r: Value = serde_json::from_slice(&body).unwrap();
        uris.push(mxc_path(&r["content_uri"]));
    }
    assert!(uris[0].starts_with("remote.test/"));

    let url = |mxc: &str| format!("{}/_matrix/client/v1/media/download/{mxc}", local.url);
    let small = local
        .http
        .get(url(&uris[0]))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
    assert_eq!(small.headers()["content-type"], "application/octet-stream");
    let got = small.bytes().await.unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&got)),
        sha_of_pattern(11, 300_000, 64 << 10)
    );
    let big = local
        .http
        .get(url(&uris[1]))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 502);
    assert_eq!(big.json::<Value>().await.unwrap()["errcode"], "M_TOO_LARGE");
    assert_eq!(stored_files(&media_dir(&local)).len(), 1);
    assert!(temp_files(&media_dir(&local)).is_empty());
}

/// Thumbnails decode the image in memory, so they are made only of
/// originals up to `media.max_thumbnail_source_bytes`: "Homeservers should
/// not attempt to generate thumbnails for images that are too large,
/// returning a HTTP 413 error with the `M_TOO_LARGE` code."
#[tokio::test]
async fn thumbnails_of_too_large_originals_are_413() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start_with(|c| {
        c.rate_limits.enabled = false;
        c.media.max_thumbnail_source_bytes = 1000;
    })
    .await;
    let ann = s.register("ann").await;
    let body = Body::from_stream(generated(12, 5000, 1000, Arc::default()));
    let (status, r) = send(&s, upload_request(&ann, body)).await;
    assert_eq!(status, 200, "{r}");
    let mxc = mxc_path(&r["content_uri"]);
    let (status, err) = s
        .get(
            &format!("/_matrix/client/v1/media/thumbnail/{mxc}?width=32&height=32&method=crop"),
            &ann.token,
        )
        .await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["errcode"], "M_TOO_LARGE");
    // The original itself is still served.
    let (status, _) = s
        .get(
            &format!("/_matrix/client/v1/media/download/{mxc}"),
            &ann.token,
        )
        .await;
    assert_eq!(status, 200);
}
