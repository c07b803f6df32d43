//! The switch's configuration file (`cardswitch serve --config FILE`, `cardswitch config check
//! FILE`): one TOML file for what an operations team sets once — addresses, the data
//! directory, partitions, limits, where the secrets are, the catalog (which carries the
//! cutover schedule, S1). Command-line flags override it. Every problem names its key; paths
//! are relative to the file's directory.
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:7700"
//! data = "/var/lib/cardswitch"
//! partitions = 2
//! max_connections = 10000
//! idle_timeout_ms = 300000
//!
//! [secrets]
//! master_key_file = "/etc/cardswitch/master.key"
//! admin_key_file = "/etc/cardswitch/admin.key"
//!
//! [rules]
//! catalog = "/etc/cardswitch/hotel.toml"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::server::{DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, MAX_PARTITIONS};

/// Most connections a switch may be configured for.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;
/// Shortest idle timeout: a terminal between two sales is idle for longer than a second.
pub const MIN_IDLE_TIMEOUT_MS: u64 = 1_000;
/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    secrets: RawSecrets,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    metrics: Option<String>,
    data: Option<PathBuf>,
    partitions: Option<usize>,
    max_connections: Option<usize>,
    idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    master_key_file: Option<PathBuf>,
    admin_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    catalog: Option<PathBuf>,
}

/// A checked configuration file: what it sets (anything unset takes the flag or the default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub partitions: Option<usize>,
    pub max_connections: Option<usize>,
    pub idle_timeout_ms: Option<u64>,
    pub master_key_file: Option<PathBuf>,
    pub admin_key_file: Option<PathBuf>,
    pub catalog: Option<PathBuf>,
    /// A log level or filter (as RUST_LOG).
    pub log_level: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
}

/// Every problem of a configuration file, each `FILE: key: problem`.
#[derive(Debug, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl FileConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let shown = path.display().to_string();
        let fail = |problem: String| ConfigError { problems: vec![format!("{shown}: {problem}")] };
        let size = std::fs::metadata(path).map_err(|e| fail(format!("cannot read it: {e}")))?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(fail(format!("{size} bytes, more than a configuration file has ({MAX_CONFIG_BYTES})")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        FileConfig::parse(&shown, &text, &base)
    }

    /// Checks `text` (named `source` in problems); relative paths are taken from `base`.
    pub fn parse(source: &str, text: &str, base: &Path) -> Result<FileConfig, ConfigError> {
        let raw: Raw = serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().message().trim().replace('\n', ": ");
            ConfigError { problems: vec![format!("{source}: {key}: {message}")] }
        })?;
        let mut problems = Vec::new();
        let mut problem = |key: &str, text: String| problems.push(format!("{source}: {key}: {text}"));
        let mut address = |key: &str, text: Option<&str>| {
            text.and_then(|text| match text.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    problem(key, format!("`{text}` is not an address HOST:PORT with a numeric host"));
                    None
                }
            })
        };
        let listen = address("server.listen", raw.server.listen.as_deref());
        let metrics = address("server.metrics", raw.server.metrics.as_deref());
        if let Some(n) = raw.server.partitions.filter(|n| !(1..=MAX_PARTITIONS).contains(n)) {
            problem("server.partitions", format!("must be between 1 and {MAX_PARTITIONS}, not {n}"));
        }
        if let Some(n) = raw.server.max_connections.filter(|n| !(1..=MAX_CONNECTIONS_LIMIT).contains(n)) {
            problem("server.max_connections", format!("must be between 1 and {MAX_CONNECTIONS_LIMIT}, not {n}"));
        }
        if let Some(ms) = raw.server.idle_timeout_ms.filter(|ms| *ms < MIN_IDLE_TIMEOUT_MS) {
            problem("server.idle_timeout_ms", format!("must be at least {MIN_IDLE_TIMEOUT_MS}, not {ms}"));
        }
        let path = |p: Option<PathBuf>| p.map(|p| if p.is_absolute() { p } else { base.join(p) });
        let config = FileConfig {
            listen,
            metrics,
            data: path(raw.server.data),
            partitions: raw.server.partitions,
            max_connections: raw.server.max_connections,
            idle_timeout_ms: raw.server.idle_timeout_ms,
            master_key_file: path(raw.secrets.master_key_file),
            admin_key_file: path(raw.secrets.admin_key_file),
            catalog: path(raw.rules.catalog),
            log_level: raw.log.level,
            log_format: raw.log.format,
        };
        if let Some(format) = config.log_format.as_deref().filter(|f| !matches!(*f, "text" | "json")) {
            problem("log.format", format!("`{format}` is not a format: text or json"));
        }
        if let Some(level) = &config.log_level {
            if let Err(error) = tracing_subscriber::EnvFilter::try_new(level) {
                problem("log.level", format!("`{level}`: {error}"));
            }
        }
        for (key, file) in
            [("secrets.master_key_file", &config.master_key_file), ("secrets.admin_key_file", &config.admin_key_file)]
        {
            // Created at the first start when missing; its directory must exist.
            if let Some(file) = file.as_ref().filter(|f| !f.exists()) {
                if !file.parent().is_some_and(Path::is_dir) {
                    problem(
                        key,
                        format!("{} does not exist, nor does the directory it would be created in", file.display()),
                    );
                }
            }
        }
        if let Some(catalog) = &config.catalog {
            match std::fs::read_to_string(catalog) {
                Err(e) => problem("rules.catalog", format!("cannot read {}: {e}", catalog.display())),
                Ok(text) => {
                    if let Err(e) =
                        crate::engine::catalog::Catalog::from_toml_str(&catalog.display().to_string(), &text)
                    {
                        problem("rules.catalog", e.to_string().replace('\n', "; "));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The defaults of what neither the flags nor the file set.
    pub fn or_defaults(&self) -> (usize, usize, u64) {
        (
            self.partitions.unwrap_or_else(crate::server::default_partitions),
            self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            self.idle_timeout_ms.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse("cs.toml", text, Path::new("/etc/cardswitch"))
    }

    #[test]
    fn the_example_file_is_valid_and_relative_paths_follow_the_file() {
        // The example names /etc/cardswitch for the keys, as a deployment would; here a
        // directory that exists stands in for it.
        let keys = tempfile::tempdir().unwrap();
        let example =
            include_str!("../docs/cardswitch.toml").replace("/etc/cardswitch", &keys.path().display().to_string());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        let config = FileConfig::parse("docs/cardswitch.toml", &example, &dir).unwrap();
        assert_eq!(config.master_key_file, Some(keys.path().join("master.key")));
        assert_eq!(config.listen, Some("127.0.0.1:7700".parse().unwrap()));
        assert_eq!(config.catalog, Some(dir.join("../catalogs/hotel.toml")));
        let relative = parse("[server]\ndata = \"data\"\n").unwrap();
        assert_eq!(relative.data, Some(PathBuf::from("/etc/cardswitch/data")));
        assert_eq!(parse("").unwrap(), FileConfig::default());
    }

    #[test]
    fn every_problem_names_its_key() {
        let all = |text: &str| parse(text).unwrap_err().problems.join("\n");
        assert!(all("[server]\nlisten = \"localhost\"\n").contains("cs.toml: server.listen: `localhost`"));
        assert!(
            all("[server]\npartitions = 0\n").contains("cs.toml: server.partitions: must be between 1 and 256, not 0")
        );
        assert!(all("[server]\nidle_timeout_ms = 5\n").contains("server.idle_timeout_ms"));
        assert!(all("[server]\nmax_connections = 0\n").contains("server.max_connections"));
        assert!(all("[server]\nport = 7700\n").contains("cs.toml: server.port: unknown field `port`"));
        assert!(all("[server]\npartitions = \"two\"\n").contains("cs.toml: server.partitions: invalid type"));
        assert!(all("[rules]\ncatalog = \"/nonexistent/catalog.toml\"\n").contains("rules.catalog: cannot read"));
        assert!(
            all("[secrets]\nmaster_key_file = \"/nonexistent/dir/master.key\"\n").contains("secrets.master_key_file")
        );
        // Several at once, each on its line.
        assert_eq!(parse("[server]\npartitions = 0\nmax_connections = 0\n").unwrap_err().problems.len(), 2);
        assert!(all("[log]\nformat = \"xml\"\n").contains("cs.toml: log.format: `xml` is not a format"));
        assert_eq!(
            parse("[log]\nlevel = \"warn,cardswitch::days=debug\"\nformat = \"json\"\n").unwrap().log_format.as_deref(),
            Some("json")
        );
    }
}
