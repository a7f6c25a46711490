//! The S3 path, against a real S3-compatible server (moto) started on loopback for
//! the test: flush to a bucket under a prefix, reopen and read back from it, and the
//! manifest's conditional put refusing a version that exists.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allsource::engine::{Durability, EventStore, ExpectedVersion, StoreConfig};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use crate::util::{append, event};

/// A moto S3 server on a free loopback port, stopped when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        // `python3 -m moto.server` rather than the `moto_server` script, which a
        // fresh pip install may not have put on PATH yet.
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting python3 -m moto.server (pip install 'moto[server]'): {e}")
            });
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto's server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create a bucket with a plain HTTP PUT.
    fn create_bucket(&self, bucket: &str) {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).unwrap_or_else(|e| panic!("{e}"));
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3_config(dir: &std::path::Path, moto: &Moto) -> StoreConfig {
    let mut config = StoreConfig::new(dir)
        .with_durability(Durability::Always)
        .with_flush_interval_ms(0)
        .with_storage_url("s3://allsource-test/stores/one");
    config.s3.endpoint = Some(moto.endpoint());
    config.s3.region = Some("us-east-1".into());
    config.s3.access_key_id = Some("test".into());
    config.s3.secret_access_key = Some("test".into());
    config.s3.allow_http = Some(true);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tier_to_s3_and_read_back_after_reopen() {
    let moto = Moto::start();
    moto.create_bucket("allsource-test");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(s3_config(dir.path(), &moto)).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..60u64 {
        append(
            &store,
            &format!("s{}", i % 4),
            ExpectedVersion::Any,
            vec![event("x", i)],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let before = store
        .read_stream("t", "s1", 1, usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let report = store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.events, 60);
    store.close().unwrap_or_else(|e| panic!("{e}"));

    // The bucket holds the manifest and the files, under the prefix.
    let bucket: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name("allsource-test")
            .with_endpoint(moto.endpoint())
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_allow_http(true)
            .build()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let keys: Vec<String> = bucket
        .list(Some(&ObjectPath::from("stores/one")))
        .map_ok(|o| o.location.to_string())
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        keys.contains(&"stores/one/manifest/00000000000000000001.json".to_string()),
        "{keys:?}"
    );
    let parquet = keys.iter().filter(|k| k.ends_with(".parquet")).count();
    assert_eq!(parquet as u64, report.files, "{keys:?}");

    // Reopen: the buffer is empty, the events come from the bucket.
    let store = EventStore::open(s3_config(dir.path(), &moto)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.stats().tier.flushed_position, 60);
    let after = store
        .read_stream("t", "s1", 1, usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after, before);
    store.close().unwrap_or_else(|e| panic!("{e}"));

    // A manifest version that exists is never overwritten.
    let existing = ObjectPath::from("stores/one/manifest/00000000000000000001.json");
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let again = bucket
        .put_opts(&existing, PutPayload::from_static(b"{}"), create)
        .await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "{again:?}"
    );
}
