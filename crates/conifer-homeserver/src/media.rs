//! Media bytes on disk, content-addressed by SHA-256, and thumbnails.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct MediaFiles {
    dir: PathBuf,
}

impl MediaFiles {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("thumbnails"))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path_of(&self, sha256: &str) -> PathBuf {
        self.dir.join(&sha256[..2]).join(sha256)
    }

    /// Stores the bytes (once per distinct content) and returns their hash.
    /// The file is written to a temporary name, synced, then renamed, so a
    /// crash never leaves a half-written file under the final name.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let sha = hex::encode(Sha256::digest(bytes));
        let path = self.path_of(&sha);
        if path.exists() {
            return Ok(sha);
        }
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let tmp = path.with_extension(format!("tmp{}", crate::random_token(8)));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(sha)
    }

    pub fn get(&self, sha256: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path_of(sha256))
    }

    /// A thumbnail no larger than `width`×`height` ("scale") or exactly that
    /// size ("crop"), as PNG; `None` if the media is not an image we decode.
    pub fn thumbnail(
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
        if let Ok(bytes) = std::fs::read(&cached) {
            return Some((bytes, "image/png"));
        }
        let original = self.get(sha256).ok()?;
        let image = image::load_from_memory(&original).ok()?;
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
        let _ = std::fs::write(&cached, &bytes);
        Some((bytes, "image/png"))
    }
}
