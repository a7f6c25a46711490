//! Where the Parquet tables live: a local directory (the default), an S3 bucket, or
//! memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;

use crate::config::StoreConfig;
use crate::error::{Error, Result};

/// Folder of the tables inside the data directory when no storage URL is given.
pub const LOCAL_TABLES_DIR: &str = "tables";

/// The object store named by the configuration:
///
/// - no `storage_url`: `<data_dir>/tables`;
/// - `file:///absolute/path`: that directory;
/// - `memory://`: process memory (tests; gone when the store closes);
/// - `s3://bucket/prefix`: S3 or an S3-compatible server. The usual `AWS_*`
///   variables are read (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
///   `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...); the `s3_*` settings override them.
pub fn open_storage(config: &StoreConfig) -> Result<Arc<dyn ObjectStore>> {
    let Some(url) = config.storage_url.as_deref() else {
        return local(&config.data_dir.join(LOCAL_TABLES_DIR));
    };
    if let Some(path) = url.strip_prefix("file://") {
        return local(Path::new(path));
    }
    if url == "memory://" {
        return Ok(Arc::new(InMemory::new()));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Config(format!(
                "storage URL {url:?} names no bucket"
            )));
        }
        let s3 = &config.s3;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &s3.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(allow) = s3.allow_http {
            builder = builder.with_allow_http(allow);
        }
        let store = builder
            .build()
            .map_err(|e| Error::Config(format!("storage URL {url:?}: {e}")))?;
        let prefix = prefix.trim_matches('/');
        return Ok(if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        });
    }
    Err(Error::Config(format!(
        "storage URL {url:?} is not supported: use file:///path, s3://bucket/prefix or memory://"
    )))
}

/// The directory of the table storage when the configuration names a local one (the
/// default); `None` for S3 and memory, whose writes need no fsync of ours.
pub fn local_dir(config: &StoreConfig) -> Option<PathBuf> {
    match config.storage_url.as_deref() {
        None => Some(config.data_dir.join(LOCAL_TABLES_DIR)),
        Some(url) => url.strip_prefix("file://").map(PathBuf::from),
    }
}

/// Make the files at `paths` (relative to `root`) durable: fsync each file, then each
/// directory from the files' folders up to `root`, so a power loss after this returns
/// keeps both the files' data and their names. A local object store writes through
/// the page cache and never fsyncs by itself.
pub fn sync_files(root: &Path, paths: &[String]) -> Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    for path in paths {
        let file = root.join(path);
        std::fs::File::open(&file)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(format!("fsync of {}", file.display()), e))?;
        let mut dir = file.parent();
        while let Some(d) = dir.filter(|d| d.starts_with(root)) {
            dirs.insert(d.to_path_buf());
            dir = d.parent();
        }
    }
    // Deepest first: a folder's entry in its parent is synced after the folder.
    for dir in dirs.iter().rev() {
        crate::meta::sync_dir(dir)?;
    }
    Ok(())
}

fn local(dir: &Path) -> Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let store = LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| Error::Config(format!("table directory {}: {e}", dir.display())))?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_storage_has_a_directory_to_fsync() {
        let config = StoreConfig::new("/srv/allsource");
        assert_eq!(
            local_dir(&config),
            Some(PathBuf::from("/srv/allsource/tables"))
        );
        let with = |url: &str| {
            let mut config = config.clone();
            config.storage_url = Some(url.into());
            local_dir(&config)
        };
        assert_eq!(with("file:///mnt/t"), Some(PathBuf::from("/mnt/t")));
        assert_eq!(with("memory://"), None);
        assert_eq!(with("s3://bucket/prefix"), None);
    }

    #[test]
    fn syncing_files_names_the_one_that_is_missing() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let nested = root.path().join("data/p00001");
        std::fs::create_dir_all(&nested).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(nested.join("a.parquet"), b"x").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.path().join("m.json"), b"{}").unwrap_or_else(|e| panic!("{e}"));
        let present = ["data/p00001/a.parquet".to_string(), "m.json".to_string()];
        sync_files(root.path(), &present).unwrap_or_else(|e| panic!("{e}"));
        let missing = sync_files(root.path(), &["data/p00002/b.parquet".to_string()]);
        let message = missing.map_or_else(|e| e.to_string(), |()| "synced".into());
        assert!(message.contains("p00002/b.parquet"), "{message}");
    }
}
