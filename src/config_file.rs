//! The launcher's configuration file: the settings of the environment
//! variables, written down once in TOML instead of exported in every shell.
//!
//! The file is the one `HYBRID_TENANCY_CONFIG` names, or else
//! `hybrid-tenancy.toml` in the working directory when it exists. Its keys are
//! the variables' names, in upper or lower case (`database_url = "…"`), and
//! its values strings or numbers. The layers, lowest first: each setting's
//! documented default, then the file, then the environment; a variable that
//! is set wins over the file.
//!
//! A key that names no setting, or a value of another type, stops start-up
//! with an error naming the file and the key: a misspelt setting that is
//! silently ignored is worse than none.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The variable that names the configuration file.
pub const CONFIG_FILE_VARIABLE: &str = "HYBRID_TENANCY_CONFIG";

/// The file read when `HYBRID_TENANCY_CONFIG` is unset, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "hybrid-tenancy.toml";

/// Every setting the launcher's services read, by variable name.
pub const SETTINGS: &[&str] = &[
    "DATA_DIR",
    "DATABASE_URL",
    "DATABASE_PREFIX",
    "KAFKA_BROKERS",
    "GATEWAY_HOP_SECRET",
    "TENANT_SIGNUPS_TOPIC",
    "TENANT_PROVISIONING_TOPIC",
    "TENANT_POOL_CONNECTIONS",
    "TENANT_POOLS_MAX",
    "TENANT_POOL_IDLE_SECONDS",
    "SIGNING_KEY_FILE",
    "SIGNUP_TOKEN_DAYS",
    "GATEWAY_ADDR",
    "TENANT_ADDR",
    "FACT_ADDR",
    "ORG_ADDR",
    "TODO_ADDR",
    "TENANT_SUBGRAPH_URL",
    "FACT_SUBGRAPH_URL",
    "ORG_SUBGRAPH_URL",
    "TODO_SUBGRAPH_URL",
    "JWKS_URL",
    "GATEWAY_SUBGRAPH_TIMEOUT_MS",
    "GATEWAY_RECOMPOSE_INTERVAL_SECONDS",
    "GATEWAY_MAX_BODY_BYTES",
    "GATEWAY_MAX_QUERY_DEPTH",
    "GATEWAY_MAX_QUERY_FIELDS",
    "RUST_LOG",
];

/// The configuration file to read, if any: `HYBRID_TENANCY_CONFIG` (which
/// must then exist), else `hybrid-tenancy.toml` when it is there.
pub fn locate() -> anyhow::Result<Option<PathBuf>> {
    match std::env::var_os(CONFIG_FILE_VARIABLE).filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_file() {
                bail!("{CONFIG_FILE_VARIABLE}={}: no such file", path.display());
            }
            Ok(Some(path))
        }
        None => Ok(Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|path| path.is_file())),
    }
}

/// Reads the settings of the file at `path`, as (variable, value) pairs.
pub fn read(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("configuration file {}: cannot read it", path.display()))?;
    parse(&text).with_context(|| format!("configuration file {}", path.display()))
}

/// The settings of a configuration file's text.
pub fn parse(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let table: toml::Table = text.parse().context("not valid TOML")?;
    let mut settings = Vec::with_capacity(table.len());
    for (key, value) in table {
        let name = key.to_ascii_uppercase();
        if !SETTINGS.contains(&name.as_str()) {
            bail!("{key} is not a setting (see the README's configuration table)");
        }
        let value = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            other => bail!(
                "{key} must be a string or a number, not {}",
                other.type_str()
            ),
        };
        if settings.iter().any(|(seen, _)| *seen == name) {
            bail!("{name} is set twice (keys are read in either case)");
        }
        settings.push((name, value));
    }
    settings.sort();
    Ok(settings)
}

/// Puts the configuration file's settings into the environment, except
/// those the environment already sets, and returns the file read.
///
/// # Safety
///
/// It changes the process environment, so no other thread may exist yet:
/// call it first thing in `main`, before any runtime starts.
pub unsafe fn load_into_environment() -> anyhow::Result<Option<PathBuf>> {
    let Some(path) = locate()? else {
        return Ok(None);
    };
    for (name, value) in read(&path)? {
        if std::env::var_os(&name).is_none() {
            // SAFETY: the caller guarantees this process has one thread.
            unsafe { std::env::set_var(&name, value) };
        }
    }
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_by_their_variable_names_in_either_case() {
        let settings =
            parse("database_url = \"postgres://postgres@db:5432\"\nTENANT_POOLS_MAX = 64\n")
                .unwrap();
        assert_eq!(
            settings,
            [
                (
                    "DATABASE_URL".to_owned(),
                    "postgres://postgres@db:5432".to_owned()
                ),
                ("TENANT_POOLS_MAX".to_owned(), "64".to_owned()),
            ]
        );
    }

    #[test]
    fn an_unknown_key_or_a_wrong_type_is_named() {
        let unknown = parse("databse_url = \"postgres://db\"").unwrap_err();
        assert!(format!("{unknown:#}").contains("databse_url is not a setting"));
        let wrong = parse("KAFKA_BROKERS = [\"a:9092\"]").unwrap_err();
        assert!(format!("{wrong:#}").contains("KAFKA_BROKERS must be a string or a number"));
        let twice = parse("DATA_DIR = \"a\"\ndata_dir = \"b\"").unwrap_err();
        assert!(format!("{twice:#}").contains("DATA_DIR is set twice"));
        let broken = parse("DATABASE_URL = ").unwrap_err();
        assert!(format!("{broken:#}").contains("not valid TOML"));
    }

    #[test]
    fn every_setting_is_documented_in_the_readme() {
        let readme = include_str!("../README.md");
        for setting in SETTINGS {
            assert!(
                readme.contains(&format!("`{setting}`")),
                "{setting} is not in README.md"
            );
        }
    }
}
