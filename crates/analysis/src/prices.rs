//! LLM prices and the cost of a call.
//!
//! [`PriceTable`] holds USD-per-million-token rates for input, output, cache
//! reads and cache writes. The built-in table is `prices.toml` beside this
//! crate's manifest (it states its source and date); users replace or add
//! entries with a file of the same format ([`PriceTable::load_overrides`]).
//!
//! Cost never guesses: an unknown model, or a call that reports cache tokens
//! whose rate the table lacks, has no cost. Cached reads and cache writes are
//! priced at their own rates — charging them at the input rate is the most
//! reported cost bug of LLM-observability tools.
//!
//! This module reads no files; the caller passes the text.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::llm::TokenUsage;
use chaintrace_model::rollup::{CallTokens, SHAPE_TOKENS};

/// The built-in table's text.
const BUILTIN: &str = include_str!("../prices.toml");

/// Rates of one model, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Who sells it: `openai`, `anthropic`, `google`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Other spellings of the model name (e.g. `claude-3.5-sonnet`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens, reasoning included.
    pub output: f64,
    /// Input tokens read from the prompt cache; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    /// Input tokens written to the prompt cache; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

/// The cost of one call (or a sum of calls), in US dollars.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    /// The price-table entry that priced it.
    pub priced_as: String,
    /// Uncached input tokens.
    pub input_usd: f64,
    /// Cached input reads.
    pub cache_read_usd: f64,
    /// Cache writes.
    pub cache_write_usd: f64,
    /// Output tokens.
    pub output_usd: f64,
    /// The sum of the above.
    pub total_usd: f64,
}

/// Why a price file could not be used.
#[derive(Debug, Clone, PartialEq)]
pub enum PriceError {
    /// Not valid TOML, or not the expected shape (unknown key, missing `input`, …).
    Parse {
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A rate is negative or not a number.
    InvalidRate {
        /// The model entry.
        model: String,
        /// `input`, `output`, `cache_read` or `cache_write`.
        field: &'static str,
        /// The value found.
        value: f64,
    },
}

impl fmt::Display for PriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceError::Parse { message } => write!(f, "price file: {}", message.trim_end()),
            PriceError::InvalidRate {
                model,
                field,
                value,
            } => write!(
                f,
                "price file: model {model:?}: {field} is {value}, want a price >= 0 in USD per million tokens"
            ),
        }
    }
}

impl std::error::Error for PriceError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    as_of: Option<String>,
    #[serde(default)]
    models: BTreeMap<String, ModelPrice>,
}

/// Model prices, looked up by model name.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    /// Lowercased name → price.
    models: BTreeMap<String, ModelPrice>,
    /// Lowercased alias → lowercased entry name.
    aliases: BTreeMap<String, String>,
    source: Option<String>,
    as_of: Option<String>,
}

impl Default for PriceTable {
    /// The built-in table.
    fn default() -> Self {
        PriceTable::builtin()
    }
}

impl PriceTable {
    /// The built-in table from `prices.toml`.
    pub fn builtin() -> PriceTable {
        // The file ships inside this crate and a unit test parses it.
        PriceTable::parse(BUILTIN).expect("built-in prices.toml is valid")
    }

    /// A table with no prices: every cost is unknown.
    pub fn empty() -> PriceTable {
        PriceTable {
            models: BTreeMap::new(),
            aliases: BTreeMap::new(),
            source: None,
            as_of: None,
        }
    }

    /// Reads a table in the `prices.toml` format on its own.
    ///
    /// ```
    /// use chaintrace_analysis::PriceTable;
    /// let t = PriceTable::parse("[models.my-llm]\ninput = 1.0\noutput = 2.0\n").unwrap();
    /// assert!(t.lookup("my-llm-20250101").is_some());
    /// ```
    pub fn parse(text: &str) -> Result<PriceTable, PriceError> {
        let file: PriceFile = toml::from_str(text).map_err(|e| PriceError::Parse {
            message: e.to_string(),
        })?;
        let mut table = PriceTable {
            source: file.source,
            as_of: file.as_of,
            ..PriceTable::empty()
        };
        for (name, price) in file.models {
            let rates = [
                ("input", Some(price.input)),
                ("output", Some(price.output)),
                ("cache_read", price.cache_read),
                ("cache_write", price.cache_write),
            ];
            for (field, value) in rates {
                if let Some(value) = value.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                    return Err(PriceError::InvalidRate {
                        model: name,
                        field,
                        value,
                    });
                }
            }
            table.insert(name, price);
        }
        Ok(table)
    }

    /// The built-in table with the entries of `text` (the `--prices FILE`
    /// contents) added; an entry of the same name replaces the built-in one
    /// whole.
    ///
    /// ```
    /// use chaintrace_analysis::PriceTable;
    /// let t = PriceTable::load_overrides("[models.gpt-4o]\ninput = 2.0\noutput = 8.0\n").unwrap();
    /// assert_eq!(t.lookup("gpt-4o").unwrap().1.input, 2.0);
    /// assert!(t.lookup("claude-3-opus").is_some());
    /// ```
    pub fn load_overrides(text: &str) -> Result<PriceTable, PriceError> {
        let mut table = PriceTable::builtin();
        table.merge(PriceTable::parse(text)?);
        Ok(table)
    }

    /// Adds `other`'s entries, replacing same-named ones; its source and
    /// date, when given, replace this table's.
    pub fn merge(&mut self, other: PriceTable) {
        for (name, price) in other.models {
            self.insert(name, price);
        }
        self.source = other.source.or(self.source.take());
        self.as_of = other.as_of.or(self.as_of.take());
    }

    fn insert(&mut self, name: String, price: ModelPrice) {
        let key = name.to_ascii_lowercase();
        self.aliases.retain(|_, target| *target != key);
        for alias in &price.aliases {
            self.aliases.insert(alias.to_ascii_lowercase(), key.clone());
        }
        self.models.insert(key, price);
    }

    /// Where the prices come from, as the file states it.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// When the prices were compiled, as the file states it.
    pub fn as_of(&self) -> Option<&str> {
        self.as_of.as_deref()
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether the table has no models.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// All entries, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        self.models.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The entry for `model`: exact (case-insensitive) or an alias, else the
    /// longest entry name that `model` extends by a date or version suffix
    /// (`-20240229`, `-2024-08-06`, `-002`, `@20240620`, `-latest`, `-v1:0`).
    /// A provider prefix (`openai/`, `models/`, Bedrock's `anthropic.` and
    /// `us.anthropic.`) is ignored.
    ///
    /// Names longer than [`MAX_MODEL_NAME_BYTES`] are never priced, and only
    /// the last [`MAX_SUFFIX_PARTS`] `-`/`@` positions are tried as suffix
    /// starts, so a lookup costs time linear in a bounded name, whatever a
    /// sender puts in its model attribute.
    pub fn lookup(&self, model: &str) -> Option<(&str, &ModelPrice)> {
        if model.len() > MAX_MODEL_NAME_BYTES {
            return None;
        }
        let name = normalize(model);
        let find = |key: &str| -> Option<(&str, &ModelPrice)> {
            let key = self.aliases.get(key).map(String::as_str).unwrap_or(key);
            self.models.get_key_value(key).map(|(k, v)| (k.as_str(), v))
        };
        if let Some(hit) = find(&name) {
            return Some(hit);
        }
        // Try ever shorter prefixes that end where a suffix may begin.
        let cut_points = name
            .char_indices()
            .filter(|&(_, c)| c == '-' || c == '@')
            .map(|(i, _)| i)
            .rev()
            .take(MAX_SUFFIX_PARTS);
        for cut in cut_points {
            if is_version_suffix(&name[cut..]) {
                if let Some(hit) = find(&name[..cut]) {
                    return Some(hit);
                }
            }
        }
        None
    }

    /// The cost of a call to `model` with `usage`, or `None` when the model is
    /// not in the table, no tokens are known, or the call reports cache tokens
    /// whose rate the table lacks.
    ///
    /// `usage.input_tokens` includes cache reads and writes (the GenAI
    /// convention); the uncached rest is priced at the input rate.
    pub fn cost(&self, model: &str, usage: &TokenUsage) -> Option<Cost> {
        let (name, price) = self.lookup(model)?;
        Self::cost_at(name, price, usage)
    }

    /// The cost of `usage` at `price`, the entry named `name` (what
    /// [`PriceTable::lookup`] found).
    pub(crate) fn cost_at(name: &str, price: &ModelPrice, usage: &TokenUsage) -> Option<Cost> {
        if usage.input_tokens.is_none() && usage.output_tokens.is_none() {
            return None;
        }
        let read = usage.cache_read_tokens.unwrap_or(0);
        let write = usage.cache_creation_tokens.unwrap_or(0);
        let uncached = usage
            .input_tokens
            .unwrap_or(0)
            .saturating_sub(read)
            .saturating_sub(write);
        let output = usage.output_tokens.unwrap_or(0);
        Self::cost_of(name, price, [uncached, read, write, output])
    }

    /// The cost of the calls of a rollup cell: `tokens` summed over calls
    /// of one token `shape` (see `chaintrace_model::rollup`). Prices are
    /// linear in tokens and the shape says which calls [`PriceTable::cost`]
    /// leaves unpriced, so this is the sum of the calls' costs.
    pub fn cost_of_sums(&self, model: &str, shape: u8, tokens: &CallTokens) -> Option<Cost> {
        if shape & SHAPE_TOKENS == 0 {
            return None;
        }
        let (name, price) = self.lookup(model)?;
        Self::cost_of(
            name,
            price,
            [
                tokens.uncached,
                tokens.cache_read,
                tokens.cache_write,
                tokens.output,
            ],
        )
    }

    /// The cost of `[uncached input, cache reads, cache writes, output]`
    /// tokens; `None` when cache tokens have no price.
    fn cost_of(
        name: &str,
        price: &ModelPrice,
        [uncached, read, write, output]: [u64; 4],
    ) -> Option<Cost> {
        let rate = |rate: Option<f64>, tokens: u64| match (rate, tokens) {
            (_, 0) => Some(0.0),
            (Some(r), n) => Some(r * n as f64 / 1e6),
            (None, _) => None,
        };
        let input_usd = price.input * uncached as f64 / 1e6;
        let output_usd = price.output * output as f64 / 1e6;
        let cache_read_usd = rate(price.cache_read, read)?;
        let cache_write_usd = rate(price.cache_write, write)?;
        Some(Cost {
            priced_as: name.to_string(),
            input_usd,
            cache_read_usd,
            cache_write_usd,
            output_usd,
            total_usd: input_usd + cache_read_usd + cache_write_usd + output_usd,
        })
    }
}

/// [`PriceTable::lookup`] remembered per model name: a trace's 50 000 calls
/// name a handful of models, and each lookup normalises the name and tries
/// its suffixes.
pub(crate) struct PriceMemo<'p> {
    table: &'p PriceTable,
    seen: HashMap<String, Option<(&'p str, &'p ModelPrice)>>,
}

impl<'p> PriceMemo<'p> {
    pub(crate) fn new(table: &'p PriceTable) -> PriceMemo<'p> {
        PriceMemo {
            table,
            seen: HashMap::new(),
        }
    }

    pub(crate) fn lookup(&mut self, model: &str) -> Option<(&'p str, &'p ModelPrice)> {
        if let Some(hit) = self.seen.get(model) {
            return *hit;
        }
        let hit = self.table.lookup(model);
        self.seen.insert(model.to_string(), hit);
        hit
    }
}

/// Longest model name [`PriceTable::lookup`] prices. Real ones (Bedrock
/// ARNs included) stay far below.
pub const MAX_MODEL_NAME_BYTES: usize = 256;

/// Most `-`/`@`-separated parts a date or version suffix is tried with
/// (`-2024-08-06-v1:0` has four).
pub const MAX_SUFFIX_PARTS: usize = 6;

/// Lowercases and drops provider prefixes: `openai/gpt-4o` → `gpt-4o`,
/// `us.anthropic.claude-3-haiku-…` → `claude-3-haiku-…`.
fn normalize(model: &str) -> String {
    let lower = model.trim().to_ascii_lowercase();
    let mut name = lower.rsplit('/').next().unwrap_or("");
    for region in ["us.", "eu.", "apac.", "global."] {
        if let Some(rest) = name.strip_prefix(region) {
            name = rest;
            break;
        }
    }
    for vendor in ["anthropic.", "openai.", "google."] {
        if let Some(rest) = name.strip_prefix(vendor) {
            name = rest;
            break;
        }
    }
    name.to_string()
}

/// Whether `suffix` (starting with `-` or `@`) is only dates and versions:
/// `YYYYMMDD`, `YYYY-MM-DD`, three-digit versions (`001`), `latest`, `vN`
/// or `vN:M`. One- and two-digit parts are model generations
/// (`claude-opus-4-5`), never suffixes.
fn is_version_suffix(suffix: &str) -> bool {
    let parts: Vec<&str> = suffix[1..].split(['-', '@']).collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let version = |s: &str| {
        s.strip_prefix('v').is_some_and(|rest| {
            let mut it = rest.splitn(2, ':');
            let major = it.next().unwrap_or("");
            let minor = it.next();
            !major.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.is_none_or(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    let mut i = 0;
    while i < parts.len() {
        let p = parts[i];
        if digits(p, 4) && i + 2 < parts.len() && digits(parts[i + 1], 2) && digits(parts[i + 2], 2)
        {
            i += 3;
        } else if digits(p, 8) || digits(p, 3) || p == "latest" || version(p) {
            i += 1;
        } else {
            return false;
        }
    }
    !parts.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, read: u64, write: u64) -> TokenUsage {
        TokenUsage {
            input_tokens: Some(input),
            output_tokens: Some(output),
            cache_read_tokens: Some(read),
            cache_creation_tokens: Some(write),
            ..TokenUsage::default()
        }
    }

    #[test]
    fn builtin_table_parses_and_states_source_and_date() {
        let t = PriceTable::builtin();
        assert!(t.len() >= 30, "{}", t.len());
        assert_eq!(t.as_of(), Some("2026-11-26"));
        assert!(t.source().unwrap().contains("pricing"));
        for (name, p) in t.iter() {
            assert!(p.provider.is_some(), "{name} has no provider");
        }
    }

    #[test]
    fn names_match_exactly_by_alias_and_by_date_or_version_suffix() {
        let t = PriceTable::builtin();
        let key = |m: &str| t.lookup(m).map(|(k, _)| k.to_string());
        assert_eq!(
            key("claude-3-opus-20250219").as_deref(),
            Some("claude-3-opus")
        );
        assert_eq!(key("Claude-3-Opus").as_deref(), Some("claude-3-opus"));
        assert_eq!(key("gpt-4o-2024-08-06").as_deref(), Some("gpt-4o"));
        assert_eq!(
            key("gpt-4o-2024-05-13").as_deref(),
            Some("gpt-4o-2024-05-13")
        );
        assert_eq!(
            key("gpt-4o-mini-2024-07-18").as_deref(),
            Some("gpt-4o-mini")
        );
        assert_eq!(key("gemini-1.5-pro-002").as_deref(), Some("gemini-1.5-pro"));
        assert_eq!(
            key("claude-3-5-sonnet@20240620").as_deref(),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(
            key("claude-3-5-sonnet-latest").as_deref(),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(
            key("anthropic/claude-3.5-sonnet").as_deref(),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(
            key("us.anthropic.claude-3-haiku-20240307-v1:0").as_deref(),
            Some("claude-3-haiku")
        );
        assert_eq!(key("openai/gpt-4.1").as_deref(), Some("gpt-4.1"));
        assert_eq!(
            key("claude-sonnet-4-20250514").as_deref(),
            Some("claude-sonnet-4")
        );
        assert_eq!(
            key("claude-sonnet-4-5-20250929").as_deref(),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            key("claude-opus-4-1-20250805").as_deref(),
            Some("claude-opus-4-1")
        );
        // Never a neighbour's price.
        assert_eq!(key("o1-mini"), None);
        assert_eq!(key("gpt-4o-audio-preview"), None);
        assert_eq!(key("gemini-1.5-flash-8b"), None);
        assert_eq!(key("claude-opus-4-9"), None);
        assert_eq!(key("llama-3-70b"), None);
        assert_eq!(key(""), None);
    }

    #[test]
    fn huge_or_dash_laden_model_names_cost_bounded_work_and_no_price() {
        let table = PriceTable::builtin();
        let huge = "claude-3-opus-".repeat(80_000);
        assert!(table.lookup(&huge).is_none());
        let at_limit = format!("gpt-4o{}", "-2024".repeat((MAX_MODEL_NAME_BYTES - 6) / 5));
        assert!(at_limit.len() <= MAX_MODEL_NAME_BYTES);
        assert!(table.lookup(&at_limit).is_none());
        // Real suffixes still resolve within the parts tried.
        assert!(table.lookup("gpt-4o-2024-08-06").is_some());
        assert!(table
            .lookup("us.anthropic.claude-3-haiku-20240307-v1:0")
            .is_some());
    }

    #[test]
    fn cost_prices_cache_reads_and_writes_at_their_own_rates() {
        let t = PriceTable::builtin();
        // claude-3-5-sonnet: input $3, output $15, cache read $0.30, write $3.75 per MTok.
        // 10 000 input tokens of which 6 000 cache reads and 2 000 cache writes,
        // so 2 000 uncached: 2000*3 + 6000*0.30 + 2000*3.75 + 500*15
        //   = 6000 + 1800 + 7500 + 7500 = 22 800 µ$ = $0.0228.
        let c = t
            .cost(
                "claude-3-5-sonnet-20241022",
                &usage(10_000, 500, 6_000, 2_000),
            )
            .unwrap();
        assert_eq!(c.priced_as, "claude-3-5-sonnet");
        assert!((c.input_usd - 0.006).abs() < 1e-12);
        assert!((c.cache_read_usd - 0.0018).abs() < 1e-12);
        assert!((c.cache_write_usd - 0.0075).abs() < 1e-12);
        assert!((c.output_usd - 0.0075).abs() < 1e-12);
        assert!((c.total_usd - 0.0228).abs() < 1e-12);
    }

    #[test]
    fn unknown_model_or_unknown_cache_rate_has_no_cost() {
        let t = PriceTable::builtin();
        assert_eq!(t.cost("my-private-llm", &usage(100, 100, 0, 0)), None);
        // gpt-4o has no cache write rate in the table: writes make it unknown…
        assert_eq!(t.cost("gpt-4o", &usage(100, 100, 0, 50)), None);
        // …but a call without writes is priced.
        let c = t.cost("gpt-4o", &usage(1_000_000, 0, 500_000, 0)).unwrap();
        assert!((c.total_usd - (1.25 + 0.625)).abs() < 1e-9);
        // No tokens at all: nothing to price.
        assert_eq!(t.cost("gpt-4o", &TokenUsage::default()), None);
    }

    #[test]
    fn overrides_replace_and_extend_the_builtin_table() {
        let text = r#"
            source = "our negotiated rates"
            [models."gpt-4o"]
            input = 2.0
            output = 8.0
            [models."acme-llm"]
            provider = "acme"
            aliases = ["acme"]
            input = 1.0
            output = 1.0
            cache_read = 0.1
        "#;
        let t = PriceTable::load_overrides(text).unwrap();
        let (_, p) = t.lookup("gpt-4o-2024-11-20").unwrap();
        assert_eq!((p.input, p.output, p.cache_read), (2.0, 8.0, None));
        assert_eq!(t.lookup("ACME").unwrap().0, "acme-llm");
        assert!(t.lookup("claude-3-haiku").is_some());
        assert_eq!(t.source(), Some("our negotiated rates"));
        assert_eq!(t.as_of(), Some("2026-11-26"));
        assert_eq!(t.len(), PriceTable::builtin().len() + 1);
    }

    #[test]
    fn bad_price_files_say_what_is_wrong() {
        let e = PriceTable::load_overrides("[models.x]\ninput = 1\nouput = 2\n").unwrap_err();
        assert!(matches!(e, PriceError::Parse { .. }));
        assert!(e.to_string().contains("ouput"), "{e}");
        let e = PriceTable::parse("[models.x]\ninput = -1.0\noutput = 2.0\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "price file: model \"x\": input is -1, want a price >= 0 in USD per million tokens"
        );
        let e = PriceTable::parse("[models.x]\ninput = 1.0\n").unwrap_err();
        assert!(e.to_string().contains("output"), "{e}");
    }
}
