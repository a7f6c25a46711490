//! The store's identity file (`store.json`): format version and partition count,
//! written once when the store is created, atomically (temp file, fsync, rename,
//! directory fsync).

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// Name of the identity file inside the data directory.
pub const META_FILE: &str = "store.json";

/// The on-disk format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// What is fixed for the life of a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeta {
    /// On-disk format version.
    pub format_version: u32,
    /// Partition count, fixed at creation.
    pub partitions: u16,
    /// Creation time, microseconds since the Unix epoch.
    pub created_at_micros: i64,
}

/// Read the identity file, or create it when the directory holds no store yet.
pub(crate) fn load_or_create(
    dir: &Path,
    partitions: Option<u16>,
    now_micros: i64,
) -> Result<StoreMeta> {
    let path = dir.join(META_FILE);
    if path.exists() {
        let text = fs::read_to_string(&path).context(|| format!("reading {}", path.display()))?;
        let meta: StoreMeta = serde_json::from_str(&text).map_err(|e| Error::Corrupt {
            file: path.clone(),
            offset: 0,
            reason: format!("not a valid store identity file: {e}"),
        })?;
        if meta.format_version != FORMAT_VERSION {
            return Err(Error::Config(format!(
                "{} has format version {}, this build reads version {FORMAT_VERSION}",
                path.display(),
                meta.format_version
            )));
        }
        if let Some(wanted) = partitions.filter(|p| *p != meta.partitions) {
            return Err(Error::Config(format!(
                "the store was created with {} partitions; it cannot be opened with {wanted} \
                 (the partition count is fixed at creation)",
                meta.partitions
            )));
        }
        return Ok(meta);
    }
    let meta = StoreMeta {
        format_version: FORMAT_VERSION,
        partitions: partitions.unwrap_or(32),
        created_at_micros: now_micros,
    };
    let text = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomically(&path, &text)?;
    Ok(meta)
}

/// Write `bytes` to `path` so that a crash leaves either the old file or the new one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).context(|| format!("renaming {} into place", tmp.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Fsync a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(|| format!("fsync of directory {}", dir.display()))
}
