//! Media: upload, download, thumbnails and config, under the legacy
//! `/_matrix/media/*` paths and the authenticated `/_matrix/client/v1/media`.

use super::{Hs, Resp};
use crate::error::{ApiResult, MatrixError};
use crate::extract::Auth;
use crate::extract::Query;
use crate::media::{MediaFiles, PutError};
use crate::{now_ms, random_token, Homeserver};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use conifer_store::MediaRecord;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Characters escaped in an RFC 5987 `filename*` value (everything but attr-chars).
const FILENAME_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'%')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'{')
    .add(b'}');

pub fn legacy_routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/upload", post(upload))
        .route("/config", get(config))
        .route("/download/:server/:id", get(download_legacy))
        .route(
            "/download/:server/:id/:filename",
            get(download_named_legacy),
        )
        .route("/thumbnail/:server/:id", get(thumbnail_legacy))
}

pub fn client_v1_routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/media/config", get(config))
        .route("/media/download/:server/:id", get(download))
        .route("/media/download/:server/:id/:filename", get(download_named))
        .route("/media/thumbnail/:server/:id", get(thumbnail))
}

async fn config(hs: Hs, _auth: Auth) -> Resp {
    Ok(Json(
        json!({ "m.upload.size": hs.config.media.max_upload_bytes }),
    ))
}

#[derive(Deserialize)]
struct UploadQuery {
    filename: Option<String>,
}

/// How long a client refused for too many uploads in flight is asked to wait.
const UPLOAD_RETRY_MS: u64 = 1000;

async fn upload(hs: Hs, auth: Auth, Query(q): Query<UploadQuery>, req: Request) -> Resp {
    let limit = hs.config.media.max_upload_bytes;
    // Refused at once, before any of the body is read.
    let Some(_slot) = hs.media.begin_upload(
        &auth.user_id,
        hs.config.media.max_concurrent_uploads_per_user,
    ) else {
        return Err(MatrixError::limit_exceeded(UPLOAD_RETRY_MS));
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let (sha, size) = hs
        .media
        .put_stream(req.into_body().into_data_stream(), limit)
        .await
        .map_err(|e| match e {
            PutError::TooLarge => {
                MatrixError::too_large(format!("uploads are limited to {limit} bytes"))
            }
            PutError::Body(e) => {
                tracing::debug!(error = %e, "upload body not read to its end");
                MatrixError::new(
                    StatusCode::BAD_REQUEST,
                    "M_UNKNOWN",
                    format!("cannot read the upload: {e}"),
                )
            }
            PutError::Io(e) => {
                tracing::error!(error = %e, "cannot store media");
                MatrixError::unknown_internal("cannot store media")
            }
        })?;
    let media_id = random_token(24);
    hs.store.put_media(&MediaRecord {
        media_id: media_id.clone(),
        sha256: sha,
        content_type,
        filename: q.filename,
        size,
        uploader: auth.user_id,
        created_ts: now_ms(),
    })?;
    Ok(Json(
        json!({ "content_uri": format!("mxc://{}/{}", hs.server_name, media_id) }),
    ))
}

async fn serve(
    hs: &Homeserver,
    server: &str,
    id: &str,
    filename: Option<&str>,
) -> ApiResult<Response> {
    let m = hs.media_record(server, id).await?;
    serve_record(hs, &m, filename)
}

/// The media's bytes, streamed from its file in bounded chunks.
fn serve_record(hs: &Homeserver, m: &MediaRecord, filename: Option<&str>) -> ApiResult<Response> {
    let (file, len) = hs
        .media
        .open_file(&m.sha256)
        .map_err(|_| MatrixError::not_found("media not found"))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&m.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    // Media never runs as active content in the homeserver's origin.
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"));
    if let Some(name) = filename.or(m.filename.as_deref()) {
        let encoded = percent_encoding::utf8_percent_encode(name, FILENAME_ESCAPES);
        if let Ok(v) = HeaderValue::from_str(&format!("inline; filename*=utf-8''{encoded}")) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    let body = Body::from_stream(MediaFiles::stream_file(file));
    Ok((headers, body).into_response())
}

async fn download(
    hs: Hs,
    _auth: Auth,
    Path((server, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    serve(&hs, &server, &id, None).await
}
async fn download_named(
    hs: Hs,
    _auth: Auth,
    Path((server, id, name)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    serve(&hs, &server, &id, Some(&name)).await
}
async fn download_legacy(
    hs: Hs,
    Path((server, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    serve(&hs, &server, &id, None).await
}
async fn download_named_legacy(
    hs: Hs,
    Path((server, id, name)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    serve(&hs, &server, &id, Some(&name)).await
}

#[derive(Deserialize)]
struct ThumbQuery {
    width: Option<u32>,
    height: Option<u32>,
    method: Option<String>,
}

async fn thumb(hs: &Homeserver, server: &str, id: &str, q: &ThumbQuery) -> ApiResult<Response> {
    let (Some(w), Some(h)) = (q.width, q.height) else {
        return Err(MatrixError::missing_param("width and height"));
    };
    let crop = match q.method.as_deref() {
        Some("crop") => true,
        Some("scale") | None => false,
        Some(_) => return Err(MatrixError::invalid_param("method must be crop or scale")),
    };
    let m = hs.media_record(server, id).await?;
    let max_source = hs.config.media.max_thumbnail_source_bytes;
    if m.size > max_source {
        // "Homeservers should not attempt to generate thumbnails for images
        // that are too large, returning a HTTP 413 error with the
        // `M_TOO_LARGE` code."
        return Err(MatrixError::too_large(format!(
            "thumbnails are made of media up to {max_source} bytes"
        )));
    }
    match hs.media.thumbnail(&m.sha256, w, h, crop).await {
        Some((bytes, kind)) => {
            Ok(([(header::CONTENT_TYPE, kind)], Bytes::from(bytes)).into_response())
        }
        // Not an image we can scale: the spec allows serving the original.
        None => serve_record(hs, &m, None),
    }
}

async fn thumbnail(
    hs: Hs,
    _auth: Auth,
    Path((server, id)): Path<(String, String)>,
    Query(q): Query<ThumbQuery>,
) -> ApiResult<Response> {
    thumb(&hs, &server, &id, &q).await
}
async fn thumbnail_legacy(
    hs: Hs,
    Path((server, id)): Path<(String, String)>,
    Query(q): Query<ThumbQuery>,
) -> ApiResult<Response> {
    thumb(&hs, &server, &id, &q).await
}
