//! [`BlockMeta`], the small `meta.json` beside each block's Parquet files,
//! and the rules for block ids.
//!
//! The meta is what the store reads to plan a query without touching
//! Parquet: time range, counts, services and names, and per-value span
//! counts ([`SpanCounts`]) for choosing how to search it. It is written last, so
//! a directory with a valid meta.json is a complete block.

use std::fs;
use std::io;
use std::path::Path;

use chaintrace_model::{TraceId, UnixNanos};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::BlockError;
use super::schema::Format;
use super::stats::SpanCounts;
use super::READABLE_VERSIONS;

/// The most distinct span names kept in [`BlockMeta::names`].
pub const MAX_META_NAMES: usize = 1000;

/// What a block holds, as written in its `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// Block format version, [`FORMAT_VERSION`](super::FORMAT_VERSION) for blocks this build
    /// writes; older blocks may name `vparquet1`.
    pub version: String,
    /// Block id, also the name of its directory.
    pub id: String,
    /// Earliest span start.
    pub min_start: UnixNanos,
    /// Latest span end.
    pub max_end: UnixNanos,
    /// Spans in the block (after dropping duplicates).
    pub span_count: u64,
    /// Distinct traces in the block.
    pub trace_count: u64,
    /// Distinct `service.name`s of the spans, sorted.
    pub services: Vec<String>,
    /// Distinct span names, sorted, at most [`MAX_META_NAMES`].
    pub names: Vec<String>,
    /// Whether `names` was cut at [`MAX_META_NAMES`].
    pub names_truncated: bool,
    /// Bytes of `data.parquet`, `traces.parquet` and (`vparquet2` on)
    /// `resources.parquet`; meta.json excluded.
    pub data_bytes: u64,
    /// Inclusive range of WAL segment numbers whose spans this block holds;
    /// filled in by the store, carried here.
    pub wal_segments: Option<(u64, u64)>,
    /// Ids of the blocks this one supersedes after a compaction.
    pub replaces: Vec<String>,
    /// 0 for a block cut from the head, +1 for each compaction round.
    pub compaction_level: u32,
    /// When the block was written.
    pub created: UnixNanos,
    /// Spans per name, service, error class and error status, for search
    /// planning; `None` in blocks written before they were counted.
    #[serde(default)]
    pub span_counts: Option<SpanCounts>,
    /// The smallest and largest trace id in the block (rows are sorted by
    /// trace id, so the first and last row's); a lookup of an id outside
    /// it skips the block. `None` in blocks written before it was kept.
    #[serde(default, with = "trace_id_range")]
    pub trace_ids: Option<(TraceId, TraceId)>,
    /// Ids of every block written by the same compaction as this one
    /// (this one included). The compaction is complete only when all of
    /// them exist: until then its inputs, listed in `replaces`, stay. Empty
    /// for cut blocks and for compactions that wrote one block before this
    /// was kept.
    #[serde(default)]
    pub siblings: Vec<String>,
    /// Which rules of `chaintrace_model::conventions` the hot token and
    /// error-type columns were computed with ([`HOT_RULES`] for blocks
    /// this build writes); 0 for blocks written before it was kept, whose
    /// columns may follow older rules (readers that need today's answer
    /// recompute them from the attributes).
    #[serde(default)]
    pub hot_rules: u32,
}

/// The version of the hot-column rules this build writes: 1 since the
/// rules were unified in `chaintrace_model::conventions` (response model
/// first, plain cache counts added to input tokens, the first exception
/// event's type).
pub const HOT_RULES: u32 = 1;

impl BlockMeta {
    /// Whether the block may hold spans of trace `id`: false only when its
    /// [`trace_ids`](BlockMeta::trace_ids) range is known and excludes `id`.
    pub fn may_hold_trace(&self, id: TraceId) -> bool {
        self.trace_ids
            .is_none_or(|(min, max)| min <= id && id <= max)
    }
}

/// `trace_ids` as a pair of hex strings. Not `TraceId`'s own serde: that
/// refuses the all-zero id, and a meta that does not load makes the whole
/// block unreadable.
mod trace_id_range {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        range: &Option<(TraceId, TraceId)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        range
            .map(|(min, max)| [min.to_hex(), max.to_hex()])
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(TraceId, TraceId)>, D::Error> {
        let Some([min, max]) = Option::<[String; 2]>::deserialize(d)? else {
            return Ok(None);
        };
        let parse = |text: &str| {
            let mut id = [0u8; TraceId::LEN];
            let ok = text.len() == 2 * TraceId::LEN
                && text.is_ascii()
                && (0..TraceId::LEN).all(|i| {
                    u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                        .map(|b| id[i] = b)
                        .is_ok()
                });
            if ok {
                Ok(TraceId(id))
            } else {
                Err(serde::de::Error::custom(format!(
                    "trace id {text:?} is not 32 hex digits"
                )))
            }
        };
        Ok(Some((parse(&min)?, parse(&max)?)))
    }
}

/// Checks that `id` can name a block directory: 1–128 characters of
/// `A-Z a-z 0-9 - _`, not starting with `-`. Such an id never starts with
/// `.`, so it cannot clash with the writer's `.tmp-<id>` directories.
pub(crate) fn check_id(id: &str) -> Result<(), BlockError> {
    let ok = (1..=128).contains(&id.len())
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(BlockError::InvalidId { id: id.to_string() })
    }
}

/// Reads and checks `<dir>/meta.json`: refuses a version this build does
/// not read ([`READABLE_VERSIONS`]) before looking at any other field.
pub(crate) fn read_meta(dir: &Path) -> Result<BlockMeta, BlockError> {
    let path = dir.join(super::META_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BlockError::NotABlock {
                path: dir.to_path_buf(),
                reason: format!("it has no {}", super::META_FILE),
            })
        }
        Err(e) => return Err(BlockError::io(&path, e)),
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| BlockError::Meta {
            path: path.clone(),
            source,
        })?;
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| BlockError::corrupt(&path, "no \"version\" string"))?;
    if Format::from_name(version).is_none() {
        return Err(BlockError::UnknownVersion {
            path,
            version: version.to_string(),
            supported: READABLE_VERSIONS,
        });
    }
    let meta: BlockMeta = serde_json::from_value(value).map_err(|source| BlockError::Meta {
        path: path.clone(),
        source,
    })?;
    let dir_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if meta.id != dir_name {
        return Err(BlockError::corrupt(
            &path,
            format!(
                "block id {:?} differs from its directory name {dir_name:?}",
                meta.id
            ),
        ));
    }
    Ok(meta)
}

/// The JSON text of `meta`.
pub(crate) fn meta_json(meta: &BlockMeta) -> Vec<u8> {
    // Serializing plain strings, numbers and vectors cannot fail.
    let mut out = serde_json::to_vec_pretty(meta).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_of_a_block_written_before_span_counts_still_reads() {
        let json = r#"{"version":"vparquet1","id":"b1","min_start":1,"max_end":2,
            "span_count":1,"trace_count":1,"services":["rag"],"names":["a"],
            "names_truncated":false,"data_bytes":10,"wal_segments":null,
            "replaces":[],"compaction_level":0,"created":3}"#;
        let meta: BlockMeta = serde_json::from_str(json).unwrap();
        assert_eq!(meta.span_counts, None);
        assert_eq!(meta.names, ["a"]);
        assert_eq!(meta.trace_ids, None);
        assert!(meta.siblings.is_empty());
        // Without a range, every id may be there.
        assert!(meta.may_hold_trace(TraceId([7; 16])));
    }

    #[test]
    fn the_trace_id_range_round_trips_and_rules_out_ids_outside_it() {
        let json = r#"{"version":"vparquet2","id":"b1","min_start":1,"max_end":2,
            "span_count":1,"trace_count":1,"services":[],"names":[],
            "names_truncated":false,"data_bytes":10,"wal_segments":null,
            "replaces":[],"compaction_level":0,"created":3}"#;
        let mut meta: BlockMeta = serde_json::from_str(json).unwrap();
        meta.trace_ids = Some((TraceId([0; 16]), TraceId([5; 16])));
        meta.siblings = vec!["b1".into(), "b2".into()];
        let back: BlockMeta = serde_json::from_slice(&meta_json(&meta)).unwrap();
        assert_eq!(back, meta);
        assert!(meta.may_hold_trace(TraceId([0; 16])));
        assert!(meta.may_hold_trace(TraceId([5; 16])));
        assert!(!meta.may_hold_trace(TraceId([6; 16])));
        let bad = String::from_utf8(meta_json(&meta))
            .unwrap()
            .replace(&"05".repeat(16), "zz");
        assert!(serde_json::from_str::<BlockMeta>(&bad).is_err());
    }

    #[test]
    fn ids_that_cannot_name_a_block_are_refused() {
        for good in ["b1", "01J9ZK7Q", "level-2_0001", &"x".repeat(128)] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".tmp-1",
            "-x",
            "a/b",
            "..",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(
                matches!(check_id(bad), Err(BlockError::InvalidId { .. })),
                "{bad}"
            );
        }
    }
}
