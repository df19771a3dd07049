//! `chaintrace keys add|list|revoke`: edit the keys file that
//! `chaintrace serve --keys FILE` reads (and reads again when it changes,
//! so a revoked key stops working within seconds, without a restart).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use chaintrace_model::UnixNanos;
use chaintrace_server::auth::{KeysFile, Scopes};
use clap::{Args, Subcommand};

/// Flags of `chaintrace keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new key, add its hash to the file, print the key (the only time it is shown).
    Add {
        #[command(flatten)]
        file: FileArg,
        /// Who holds the key (unique in the file; shown in logs and metrics).
        #[arg(long)]
        name: String,
        /// What it may do, comma-separated: ingest, read, admin (admin may do everything).
        #[arg(long)]
        scopes: String,
        /// The tenant it acts for.
        #[arg(long, default_value = chaintrace_server::auth::DEFAULT_TENANT)]
        tenant: String,
    },
    /// List the keys in the file (names, scopes, tenants; never keys).
    List {
        #[command(flatten)]
        file: FileArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a key from the file: a running server refuses it within seconds.
    Revoke {
        #[command(flatten)]
        file: FileArg,
        /// The name of the key to remove.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Args)]
struct FileArg {
    /// The keys file (made when missing), as given to `chaintrace serve --keys`.
    #[arg(long, env = "CHAINTRACE_KEYS")]
    file: PathBuf,
}

/// Runs `chaintrace keys …`.
pub fn run(args: KeysArgs) -> Result<()> {
    match args.command {
        KeysCommand::Add {
            file,
            name,
            scopes,
            tenant,
        } => {
            let mut keys = read(&file.file)?;
            let scopes = Scopes::parse(scopes.split(',')).map_err(|e| anyhow!("--scopes: {e}"))?;
            let created = UnixNanos::now().to_rfc3339_millis();
            let key = keys
                .add(&name, scopes, &tenant, created)
                .map_err(|e| anyhow!("{e}"))?;
            write(&keys, &file.file)?;
            println!("{key}");
            eprintln!(
                "added the key {name:?} (scopes {}, tenant {tenant:?}) to {}.\n\
                 This is the only time the key is shown: only its hash is kept.",
                scopes.names().join(", "),
                file.file.display()
            );
            Ok(())
        }
        KeysCommand::List { file, json } => {
            let keys = read(&file.file)?;
            if json {
                let rows: Vec<serde_json::Value> = keys
                    .keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "name": k.name, "scopes": k.scopes, "tenant": k.tenant, "created": k.created,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if keys.keys.is_empty() {
                println!("no keys in {}", file.file.display());
                return Ok(());
            }
            let width = keys
                .keys
                .iter()
                .map(|k| k.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            let tenant_width = keys
                .keys
                .iter()
                .map(|k| k.tenant.len())
                .max()
                .unwrap_or(6)
                .max(6);
            println!(
                "{:width$}  {:19}  {:tenant_width$}  CREATED",
                "NAME", "SCOPES", "TENANT"
            );
            for k in &keys.keys {
                println!(
                    "{:width$}  {:19}  {:tenant_width$}  {}",
                    k.name,
                    k.scopes.join(","),
                    k.tenant,
                    k.created
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { file, name } => {
            if !file.file.exists() {
                return Err(anyhow!("there is no keys file {}", file.file.display()));
            }
            let mut keys = read(&file.file)?;
            let gone = keys.revoke(&name).map_err(|e| anyhow!("{e}"))?;
            write(&keys, &file.file)?;
            eprintln!(
                "revoked the key {:?} (tenant {:?}); a running server refuses it within seconds",
                gone.name, gone.tenant
            );
            Ok(())
        }
    }
}

fn read(path: &Path) -> Result<KeysFile> {
    KeysFile::read(path).map_err(|e| anyhow!("{e}"))
}

/// Writes the file whole, readable by its owner only: a new file beside
/// it, synced, then renamed over it, so that a server reading it meanwhile
/// sees the old file or the new one, never half of one.
fn write(keys: &KeysFile, path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(".{}.new", name.to_string_lossy()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(keys.to_toml().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot replace {} with {}", path.display(), tmp.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
