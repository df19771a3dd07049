use std::time::Duration;

use chaintrace_model::{Severity, SpanId, TraceId, UnixNanos};

use super::test_support::log;
use super::*;
use crate::embedded::EmbeddedConfig;
use crate::store::Store;
use crate::EmbeddedStore;

fn tid(t: u8) -> TraceId {
    TraceId::from_bytes(&[t; 16]).unwrap()
}

fn open(dir: &Path, segment_bytes: u64) -> LogStore {
    LogStore::open(dir, Disk::Std, segment_bytes).unwrap().0
}

fn messages(page: &LogPage) -> Vec<String> {
    page.logs.iter().map(|l| l.message()).collect()
}

#[tokio::test]
async fn logs_are_found_by_trace_span_time_severity_service_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 20);
    let mut warn = log(1, 2, 300, "Rate limit hit, retrying");
    warn.severity_number = 13;
    warn.severity_text = "WARNING".into();
    store
        .append(vec![
            log(1, 1, 100, "fetching context"),
            warn,
            log(2, 5, 200, "other trace"),
        ])
        .await
        .unwrap();
    store
        .append(vec![log(0, 0, 400, "no span at all")])
        .await
        .unwrap();

    let all = store.query(&LogQuery::default()).unwrap();
    assert_eq!(
        messages(&all),
        [
            "no span at all",
            "Rate limit hit, retrying",
            "other trace",
            "fetching context"
        ],
        "newest first"
    );
    assert_eq!(all.matched, 4);
    assert!(!all.truncated);

    let trace = store
        .query(&LogQuery {
            trace_id: Some(tid(1)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        messages(&trace),
        ["Rate limit hit, retrying", "fetching context"]
    );
    let span = store
        .query(&LogQuery {
            trace_id: Some(tid(1)),
            span_id: Some(SpanId::from_bytes(&[2; 8]).unwrap()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(messages(&span), ["Rate limit hit, retrying"]);
    let warnings = store
        .query(&LogQuery {
            min_severity: Some(Severity::Warn),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(messages(&warnings), ["Rate limit hit, retrying"]);
    let text = store
        .query(&LogQuery {
            text: Some("RATE LIMIT".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(messages(&text), ["Rate limit hit, retrying"]);
    let window = store
        .query(&LogQuery {
            start: Some(UnixNanos(150)),
            end: Some(UnixNanos(300)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        messages(&window),
        ["Rate limit hit, retrying", "other trace"]
    );
    let none = store
        .query(&LogQuery {
            service: Some("elsewhere".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(none.logs.is_empty());
    let unknown_trace = store
        .query(&LogQuery {
            trace_id: Some(tid(9)),
            ..Default::default()
        })
        .unwrap();
    assert!(unknown_trace.logs.is_empty());
    assert_eq!(
        unknown_trace.inspected, 0,
        "the index rules every segment out"
    );
}

#[tokio::test]
async fn the_newest_records_win_the_limit_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments: every batch gets its own.
    let store = open(dir.path(), 64);
    for (i, time) in [500u64, 100, 900, 300, 700].into_iter().enumerate() {
        store
            .append(vec![log(1, 1, time, &format!("at {time}, batch {i}"))])
            .await
            .unwrap();
    }
    assert_eq!(store.stats().segments, 5);
    let page = store
        .query(&LogQuery {
            limit: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(messages(&page), ["at 900, batch 2", "at 700, batch 4"]);
}

#[tokio::test]
async fn acknowledged_logs_survive_a_crash_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), 1 << 20);
        store.append(vec![log(1, 1, 100, "kept")]).await.unwrap();
        // No close: the process "dies" with the segment open.
        std::mem::forget(store);
    }
    let (_, path) = crate::wal::tests_list_segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let whole = bytes.len() as u64;
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2]);
    std::fs::write(&path, &bytes).unwrap();

    let (store, report) = LogStore::open(dir.path(), Disk::Std, 1 << 20).unwrap();
    assert_eq!(report.spans, 1);
    assert_eq!(report.truncated_bytes, 6);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
    store.append(vec![log(1, 1, 200, "after")]).await.unwrap();
    store.close();
    let store = open(dir.path(), 1 << 20);
    let page = store.query(&LogQuery::default()).unwrap();
    assert_eq!(messages(&page), ["after", "kept"]);
}

#[tokio::test]
async fn retention_deletes_old_segments_but_never_the_open_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 64);
    for time in [100, 200, 300] {
        store.append(vec![log(1, 1, time, "x")]).await.unwrap();
    }
    assert_eq!(store.retain(UnixNanos(250)).unwrap(), 2);
    assert_eq!(store.stats().records, 1);
    assert_eq!(store.stats().segments, 1);
    // Everything is old now, but the last segment is the one written to.
    assert_eq!(store.retain(UnixNanos(10_000)).unwrap(), 0);
    let page = store.query(&LogQuery::default()).unwrap();
    assert_eq!(page.logs.len(), 1);
}

#[tokio::test]
async fn span_and_log_segments_refuse_each_others_directories() {
    let dir = tempfile::tempdir().unwrap();
    let logs_dir = dir.path().join("logs");
    let store = open(&logs_dir, 1 << 20);
    store.append(vec![log(1, 1, 100, "x")]).await.unwrap();
    store.close();
    // A log segment copied among span segments is refused, not truncated.
    let wal_dir = dir.path().join("wal");
    std::fs::create_dir_all(&wal_dir).unwrap();
    let (_, from) = crate::wal::tests_list_segments(&logs_dir).pop().unwrap();
    let to = wal_dir.join(from.file_name().unwrap());
    std::fs::copy(&from, &to).unwrap();
    let before = std::fs::read(&to).unwrap();
    let err = Wal::open(&wal_dir, Disk::Std, 1 << 20, 0, &mut |_, _| {})
        .err()
        .expect("refused");
    assert!(err.to_string().contains("format version 4"), "{err}");
    assert_eq!(std::fs::read(&to).unwrap(), before);
}

#[tokio::test]
async fn the_embedded_store_keeps_logs_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig {
        retention: Some(Duration::from_secs(3600)),
        ..EmbeddedConfig::new(dir.path())
    };
    let now = UnixNanos::now().0;
    {
        let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
        store
            .append_logs(vec![log(1, 1, now, "fresh"), log(1, 1, 5, "ancient")])
            .await
            .unwrap();
        assert_eq!(store.stats().await.unwrap().log_records, 2);
        store.close();
    }
    let (store, _) = EmbeddedStore::open(config).unwrap();
    let page = store
        .logs(LogQuery {
            trace_id: Some(tid(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(messages(&page), ["fresh", "ancient"]);
    // One segment holding both, and it is the open one: retention keeps it.
    store.apply_retention().unwrap();
    assert_eq!(store.stats().await.unwrap().log_records, 2);
}

#[tokio::test]
async fn retention_deletes_the_embedded_stores_old_log_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig {
        retention: Some(Duration::from_secs(3600)),
        // Every batch rolls to a segment of its own.
        log_segment_bytes: 1,
        ..EmbeddedConfig::new(dir.path())
    };
    let now = UnixNanos::now().0;
    let (store, _) = EmbeddedStore::open(config).unwrap();
    store
        .append_logs(vec![log(1, 1, 5, "ancient")])
        .await
        .unwrap();
    store
        .append_logs(vec![log(1, 2, now, "fresh")])
        .await
        .unwrap();
    assert_eq!(store.stats().await.unwrap().log_records, 2);
    store.apply_retention().unwrap();
    let page = store
        .logs(LogQuery {
            trace_id: Some(tid(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        messages(&page),
        ["fresh"],
        "the ancient record's segment is gone"
    );
    assert_eq!(store.stats().await.unwrap().log_records, 1);
}
