//! Media metadata.

use super::{optional, SqliteStore};
use crate::{MediaRecord, MediaStore, Result, StoreError};
use rusqlite::params;

impl MediaStore for SqliteStore {
    fn put_media(&self, media: &MediaRecord) -> Result<()> {
        let m = media.clone();
        self.write(move |c, _| {
            let n = c.execute(
                "INSERT OR IGNORE INTO media(media_id, sha256, content_type, filename, size, uploader, created_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![m.media_id, m.sha256, m.content_type, m.filename, m.size as i64, m.uploader, m.created_ts as i64],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
    }

    fn media(&self, media_id: &str) -> Result<Option<MediaRecord>> {
        self.read(|c| {
            optional(c.query_row(
                "SELECT media_id, sha256, content_type, filename, size, uploader, created_ts FROM media WHERE media_id = ?1",
                [media_id],
                |r| {
                    Ok(MediaRecord {
                        media_id: r.get(0)?,
                        sha256: r.get(1)?,
                        content_type: r.get(2)?,
                        filename: r.get(3)?,
                        size: r.get::<_, i64>(4)? as u64,
                        uploader: r.get(5)?,
                        created_ts: r.get::<_, i64>(6)? as u64,
                    })
                },
            ))
        })
    }
}
