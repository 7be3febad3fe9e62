//! Media bytes on disk, content-addressed by SHA-256, and thumbnails.
//!
//! Bytes are never held whole in memory on their way in or out: uploads are
//! written to a temporary file under `tmp/` as they arrive (hashed on the
//! way), then renamed to their hash; downloads are read back in bounded
//! chunks. The number of uploads one user has in flight at once is capped.

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Bytes gathered from the request before they are written out.
const WRITE_BUFFER: usize = 256 * 1024;
/// Bytes read from a file per chunk of a download.
const READ_CHUNK: usize = 64 * 1024;

pub struct MediaFiles {
    dir: PathBuf,
    /// Uploads in flight per user.
    uploads: Mutex<HashMap<String, usize>>,
}

/// Why a streamed store failed.
#[derive(Debug)]
pub enum PutError {
    /// More than the limit arrived (the rest was not read).
    TooLarge,
    /// The body could not be read (the client went away, say).
    Body(String),
    /// The disk failed us.
    Io(std::io::Error),
}

impl From<std::io::Error> for PutError {
    fn from(e: std::io::Error) -> Self {
        PutError::Io(e)
    }
}

/// A hold on one of a user's concurrent upload slots, released on drop.
pub struct UploadSlot<'a> {
    files: &'a MediaFiles,
    user: String,
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        let mut uploads = self.files.uploads.lock();
        if let Some(n) = uploads.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                uploads.remove(&self.user);
            }
        }
    }
}

/// A temporary file that is removed when dropped unless it was renamed into
/// place: an upload that fails, is refused or is abandoned halfway (its
/// future dropped) leaves nothing behind.
struct TempFile {
    path: PathBuf,
    kept: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

impl MediaFiles {
    /// Opens (creating) the media directory and removes the temporary files
    /// of uploads a previous run did not finish.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("thumbnails"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        let mut stale = 0usize;
        for entry in std::fs::read_dir(dir.join("tmp"))?.flatten() {
            if std::fs::remove_file(entry.path()).is_ok() {
                stale += 1;
            }
        }
        // Earlier versions wrote `<hash>.tmp<token>` next to the final file.
        for shard in std::fs::read_dir(dir)?.flatten() {
            let name = shard.file_name();
            if name.len() != 2 || !shard.path().is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(shard.path())?.flatten() {
                if entry.file_name().to_string_lossy().contains(".tmp")
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    stale += 1;
                }
            }
        }
        if stale > 0 {
            tracing::info!(count = stale, "removed unfinished media uploads");
        }
        Ok(Self {
            dir: dir.to_owned(),
            uploads: Mutex::new(HashMap::new()),
        })
    }

    fn path_of(&self, sha256: &str) -> PathBuf {
        self.dir.join(&sha256[..2]).join(sha256)
    }

    /// Takes one of `user`'s upload slots, or `None` if `cap` are in use.
    pub fn begin_upload(&self, user: &str, cap: usize) -> Option<UploadSlot<'_>> {
        let mut uploads = self.uploads.lock();
        let n = uploads.entry(user.to_owned()).or_insert(0);
        if *n >= cap {
            if *n == 0 {
                uploads.remove(user);
            }
            return None;
        }
        *n += 1;
        Some(UploadSlot {
            files: self,
            user: user.to_owned(),
        })
    }

    /// Stores the bytes of `body` as they arrive (once per distinct content)
    /// and returns their hash and size. At most `limit` bytes are accepted:
    /// the first chunk past it ends the upload with [`PutError::TooLarge`].
    /// The bytes go to a temporary file, synced, then renamed, so a crash
    /// never leaves a half-written file under the final name; on any error
    /// (or if this future is dropped) the temporary file is removed.
    pub async fn put_stream<S, E>(&self, body: S, limit: usize) -> Result<(String, u64), PutError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut temp = TempFile {
            path: self
                .dir
                .join("tmp")
                .join(format!("upload-{}", crate::random_token(16))),
            kept: false,
        };
        let path = temp.path.clone();
        let mut file = Some(blocking(move || std::fs::File::create_new(path)).await?);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer: Vec<u8> = Vec::with_capacity(WRITE_BUFFER);
        let mut body = std::pin::pin!(body);
        loop {
            let chunk = match body.next().await {
                Some(Ok(chunk)) => Some(chunk),
                Some(Err(e)) => return Err(PutError::Body(e.to_string())),
                None => None,
            };
            if let Some(chunk) = &chunk {
                size += chunk.len() as u64;
                if size > limit as u64 {
                    return Err(PutError::TooLarge);
                }
                hasher.update(chunk);
                buffer.extend_from_slice(chunk);
            }
            let last = chunk.is_none();
            if buffer.len() >= WRITE_BUFFER || (last && !buffer.is_empty()) {
                let mut f = file.take().expect("the file is back after each write");
                let data = std::mem::take(&mut buffer);
                let (f, mut data) = blocking(move || {
                    f.write_all(&data)?;
                    Ok((f, data))
                })
                .await?;
                data.clear();
                file = Some(f);
                buffer = data;
            }
            if last {
                break;
            }
        }
        let sha = hex::encode(hasher.finalize());
        let final_path = self.path_of(&sha);
        let temp_path = temp.path.clone();
        let f = file.take().expect("the file is back after each write");
        let renamed = blocking(move || {
            if final_path.exists() {
                // The same content is stored already: the temp file goes.
                return Ok(false);
            }
            f.sync_all()?;
            drop(f);
            std::fs::create_dir_all(final_path.parent().expect("has a parent"))?;
            // Two uploads of the same bytes may both get here: the rename is
            // atomic and either file is the right one.
            std::fs::rename(&temp_path, &final_path)?;
            Ok(true)
        })
        .await?;
        temp.kept = renamed;
        Ok((sha, size))
    }

    /// The file holding `sha256` and its length.
    pub fn open_file(&self, sha256: &str) -> std::io::Result<(std::fs::File, u64)> {
        let file = std::fs::File::open(self.path_of(sha256))?;
        let len = file.metadata()?.len();
        Ok((file, len))
    }

    /// The bytes of an open file as a stream of bounded chunks.
    pub fn stream_file(file: std::fs::File) -> impl Stream<Item = std::io::Result<Bytes>> {
        futures_util::stream::try_unfold(Some(file), |file| async move {
            let Some(mut file) = file else {
                return Ok(None);
            };
            let (file, chunk) = blocking(move || {
                let mut chunk = vec![0u8; READ_CHUNK];
                let n = file.read(&mut chunk)?;
                chunk.truncate(n);
                Ok((file, chunk))
            })
            .await?;
            if chunk.is_empty() {
                return Ok(None);
            }
            Ok(Some((Bytes::from(chunk), Some(file))))
        })
    }

    /// A thumbnail no larger than `width`×`height` ("scale") or exactly that
    /// size ("crop"), as PNG; `None` if the media is not an image we decode.
    /// The original is decoded in memory (off the async threads): the caller
    /// bounds the size of the originals it passes here, and decoding may
    /// allocate at most [`DECODE_LIMIT`] bytes.
    pub async fn thumbnail(
        &self,
        sha256: &str,
        width: u32,
        height: u32,
        crop: bool,
    ) -> Option<(Vec<u8>, &'static str)> {
        let (width, height) = (width.clamp(1, 2048), height.clamp(1, 2048));
        let cached = self.dir.join("thumbnails").join(format!(
            "{sha256}-{width}x{height}-{}.png",
            if crop { "crop" } else { "scale" }
        ));
        let source = self.path_of(sha256);
        blocking(move || Ok(make_thumbnail(&source, &cached, width, height, crop)))
            .await
            .ok()
            .flatten()
    }
}

/// Most bytes decoding an image for a thumbnail may allocate.
const DECODE_LIMIT: u64 = 128 << 20;

fn make_thumbnail(
    source: &Path,
    cached: &Path,
    width: u32,
    height: u32,
    crop: bool,
) -> Option<(Vec<u8>, &'static str)> {
    if let Ok(bytes) = std::fs::read(cached) {
        return Some((bytes, "image/png"));
    }
    let original = std::fs::read(source).ok()?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&original))
        .with_guessed_format()
        .ok()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(DECODE_LIMIT);
    reader.limits(limits);
    let image = reader.decode().ok()?;
    drop(original);
    let thumb = if crop {
        image.resize_to_fill(width, height, image::imageops::FilterType::Triangle)
    } else if image.width() <= width && image.height() <= height {
        image
    } else {
        image.resize(width, height, image::imageops::FilterType::Triangle)
    };
    let mut out = std::io::Cursor::new(Vec::new());
    thumb.write_to(&mut out, image::ImageFormat::Png).ok()?;
    let bytes = out.into_inner();
    let _ = std::fs::write(cached, &bytes);
    Some((bytes, "image/png"))
}
