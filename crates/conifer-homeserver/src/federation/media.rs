//! Media over federation (authenticated media): other servers download our
//! users' uploads from `/_matrix/federation/v1/media/download/{mediaId}` as
//! `multipart/mixed` (a JSON metadata part, then the bytes), and our clients'
//! downloads of remote media are fetched the same way once, then served
//! from the local store (keyed `server/mediaId`).

use super::FederationAuth;
use crate::api::Hs;
use crate::error::{ApiResult, MatrixError};
use crate::media::{MediaFiles, PutError};
use crate::{now_ms, random_token, Homeserver};
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use conifer_store::MediaRecord;
use futures_util::StreamExt;

/// Serves a local upload to another server.
pub async fn download(
    hs: Hs,
    Path(media_id): Path<String>,
    _auth: FederationAuth,
) -> ApiResult<Response> {
    let m = hs
        .store
        .media(&media_id)?
        .filter(|m| !m.media_id.contains('/'))
        .ok_or_else(|| MatrixError::not_found("media not found"))?;
    let (file, _) = hs
        .media
        .open_file(&m.sha256)
        .map_err(|_| MatrixError::not_found("media not found"))?;
    let boundary = random_token(24);
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\nContent-Type: {}\r\n\r\n",
        m.content_type
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    // The file's bytes are streamed between the two, in bounded chunks.
    let body = Body::from_stream(
        futures_util::stream::once(async move { Ok(Bytes::from(head)) })
            .chain(MediaFiles::stream_file(file))
            .chain(futures_util::stream::once(async move {
                Ok::<_, std::io::Error>(Bytes::from(tail))
            })),
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            format!("multipart/mixed; boundary={boundary}"),
        )],
        body,
    )
        .into_response())
}

/// Room for a remote media answer's multipart framing and metadata part.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The parts of a `multipart/mixed` body as (headers, bytes), taking the
/// boundary from the body's first line.
/// The parts borrow from the body (a remote file is not copied again).
pub(crate) fn multipart_parts(mut body: &[u8]) -> Option<Vec<(String, &[u8])>> {
    // A preamble before the first delimiter (Synapse sends an empty line) is ignored.
    while let Some(rest) = body.strip_prefix(b"\r\n") {
        body = rest;
    }
    let first = find(body, b"\r\n")?;
    let delimiter = &body[..first];
    if !delimiter.starts_with(b"--") || delimiter.len() < 3 {
        return None;
    }
    let separator = [b"\r\n".as_slice(), delimiter].concat();
    let mut rest = &body[first + 2..];
    let mut parts = Vec::new();
    loop {
        let end = find(rest, &separator)?;
        let part = &rest[..end];
        let split = find(part, b"\r\n\r\n")
            .map(|i| (i, i + 4))
            .or_else(|| part.starts_with(b"\r\n").then_some((0, 2)))?;
        let headers = String::from_utf8_lossy(&part[..split.0]).to_ascii_lowercase();
        parts.push((headers, &part[split.1..]));
        rest = &rest[end + separator.len()..];
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
    }
}

fn header_value<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

impl Homeserver {
    /// The record of `mxc://server/id`: local, cached, or fetched now from
    /// its server over federation.
    pub(crate) async fn media_record(&self, server: &str, id: &str) -> ApiResult<MediaRecord> {
        if server == self.server_name.as_str() {
            return self
                .store
                .media(id)?
                .filter(|m| !m.media_id.contains('/'))
                .ok_or_else(|| MatrixError::not_found("media not found"));
        }
        let key = format!("{server}/{id}");
        if let Some(m) = self.store.media(&key)? {
            return Ok(m);
        }
        let unavailable = |why: String| {
            MatrixError::new(
                StatusCode::NOT_FOUND,
                "M_NOT_FOUND",
                format!("{server}: {why}"),
            )
        };
        let uri = format!(
            "/_matrix/federation/v1/media/download/{}",
            percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        );
        let limit = self.config.media.max_upload_bytes;
        // "Remote homeservers may host very large files or images.
        // Homeservers should not proxy or thumbnail large files or images
        // from remote homeservers, returning a HTTP 502 error with the
        // `M_TOO_LARGE` code."
        let too_large = || {
            MatrixError::new(
                StatusCode::BAD_GATEWAY,
                "M_TOO_LARGE",
                format!("remote media exceeds {limit} bytes"),
            )
        };
        // The transport reads the answer whole (bounded by the transport);
        // an answer larger than the limit plus the multipart framing is
        // refused before it is parsed.
        let (status, body) = self
            .federation_call_raw(server, "GET", &uri, None)
            .await
            .map_err(unavailable)?;
        match status {
            200 => {}
            404 => return Err(MatrixError::not_found("media not found")),
            s => return Err(unavailable(format!("answered {s}"))),
        }
        if body.len() > limit.saturating_add(MULTIPART_OVERHEAD) {
            return Err(too_large());
        }
        let parts = multipart_parts(&body).ok_or_else(|| {
            let start = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
            unavailable(format!("the answer is not multipart/mixed: {start:?}"))
        })?;
        let (headers, bytes) = parts
            .get(1)
            .ok_or_else(|| unavailable("the answer has no content part".into()))?;
        if header_value(headers, "location").is_some() {
            return Err(unavailable(
                "redirects to another location (not followed)".into(),
            ));
        }
        if bytes.len() > limit {
            return Err(too_large());
        }
        // Written out in bounded chunks, like an upload.
        let chunks = futures_util::stream::iter(
            bytes
                .chunks(256 * 1024)
                .map(|c| Ok::<_, std::convert::Infallible>(Bytes::copy_from_slice(c))),
        );
        let (sha, size) = self
            .media
            .put_stream(chunks, limit)
            .await
            .map_err(|e| match e {
                PutError::TooLarge => too_large(),
                e => {
                    tracing::error!(error = ?e, "cannot store media");
                    MatrixError::unknown_internal("cannot store media")
                }
            })?;
        let record = MediaRecord {
            media_id: key,
            sha256: sha,
            content_type: header_value(headers, "content-type")
                .unwrap_or("application/octet-stream")
                .to_owned(),
            filename: None,
            size,
            uploader: String::new(),
            created_ts: now_ms(),
        };
        self.store.put_media(&record)?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_split_into_parts() {
        let body = b"\r\n--b1\r\nContent-Type: application/json\r\n\r\n{}\r\n--b1\r\nContent-Type: image/png\r\n\r\n\x89PNG\x00\r\n--b1--\r\n";
        let parts = multipart_parts(body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1, b"{}");
        assert_eq!(header_value(&parts[1].0, "content-type"), Some("image/png"));
        assert_eq!(parts[1].1, b"\x89PNG\x00");
        assert!(multipart_parts(b"nonsense").is_none());
        assert!(multipart_parts(b"--b\r\nno end").is_none());
    }
}
