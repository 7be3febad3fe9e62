//! Homeserver configuration: a TOML file, then `CONIFER_*` environment
//! variables, then command-line flags (applied by the binary), each
//! overriding the one before. Every field has a default, so no file is needed.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The server name in user IDs. `None` on a P2P node: the name is then
    /// the hex form of the node's public key.
    pub server_name: Option<String>,
    /// Where the database, keys and media live.
    pub data_dir: PathBuf,
    pub client: ClientConfig,
    pub registration: RegistrationConfig,
    pub rooms: RoomsConfig,
    pub media: MediaConfig,
    pub rate_limits: RateLimitConfig,
    pub federation: FederationConfig,
    pub overlay: OverlayConfig,
}

/// The overlay of a P2P node (ignored with a classic server name).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverlayConfig {
    /// TCP address for overlay peerings, e.g. "0.0.0.0:65432". Off when unset.
    pub listen: Option<SocketAddr>,
    /// Static peers: "host:port" (TCP) or "ws://host:port/path".
    pub peers: Vec<String>,
    /// Discover peers on the LAN by multicast.
    pub multicast: bool,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        Self {
            listen: None,
            peers: Vec::new(),
            multicast: true,
        }
    }
}

/// Federation over HTTPS, for classic (DNS or IP-literal) server names. A P2P
/// node federates through the overlay and ignores the listener settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// The TLS listener of the Server-Server API, normally on the port the
    /// server name names (8448 if none). Off when unset.
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain and private key of the listener. Without them a
    /// self-signed certificate is made once and kept in the data directory
    /// (enough for peers that skip verification, such as test servers).
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// PEM files of extra certificate authorities outbound requests trust.
    pub trust_ca: Vec<PathBuf>,
    /// Server names whose certificates outbound requests do not check: for
    /// test peers with self-signed certificates only.
    pub insecure_skip_verify: Vec<String>,
    /// CIDR ranges outbound federation may reach although private (loopback
    /// and RFC 1918 ranges are refused by default).
    pub ip_range_allow: Vec<String>,
    /// If set, the only servers outbound federation talks to (a closed
    /// federation, or a test that must not look anything else up).
    pub allowed_servers: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Address of the Client-Server API listener.
    pub listen: SocketAddr,
    /// The URL clients should use to reach this server (behind a reverse
    /// proxy, say), advertised in `/.well-known/matrix/client` and login
    /// responses. Default: `http://` and the listen address.
    pub public_baseurl: Option<String>,
    /// Largest JSON request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// Longest `/sync` long-poll, in milliseconds.
    pub max_sync_timeout_ms: u64,
    /// Seconds a connection may take to send a request's head (the client
    /// and federation listeners); slower ones are closed.
    pub header_read_timeout_secs: u64,
    /// Open connections one client address may hold (an IPv6 /64 is one).
    pub max_connections_per_ip: usize,
    /// Whether `max_connections_per_ip` applies to loopback clients too
    /// (off: a reverse proxy or the machine's own apps connect from there).
    pub limit_loopback_per_ip: bool,
    /// Open connections in all, per listener.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Whether anyone can register with `m.login.dummy`.
    pub open: bool,
    /// Secret for `/_synapse/admin/v1/register`; admin registration is off without it.
    pub shared_secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Room version of new rooms when the client does not ask for one.
    pub default_version: String,
    /// Most decoded events kept in memory (least recently used leave first).
    pub event_cache_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Largest upload accepted, in bytes (also the largest remote media
    /// fetched over federation).
    pub max_upload_bytes: usize,
    /// Uploads one user may have in flight at once; more are refused with
    /// `429 M_LIMIT_EXCEEDED` before their bodies are read.
    pub max_concurrent_uploads_per_user: usize,
    /// Largest original a thumbnail is made from, in bytes (thumbnailing
    /// decodes the image in memory); larger ones get `413 M_TOO_LARGE`.
    pub max_thumbnail_source_bytes: u64,
}

/// Token buckets: `per_second` refill and `burst` capacity, per user (or per
/// client address before login).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub messages: Bucket,
    pub registration: Bucket,
    pub login: Bucket,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: None,
            data_dir: default_data_dir(),
            client: ClientConfig::default(),
            registration: RegistrationConfig::default(),
            rooms: RoomsConfig::default(),
            media: MediaConfig::default(),
            rate_limits: RateLimitConfig::default(),
            federation: FederationConfig::default(),
            overlay: OverlayConfig::default(),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            public_baseurl: None,
            max_request_bytes: 1 << 20,
            max_sync_timeout_ms: 60_000,
            header_read_timeout_secs: 30,
            max_connections_per_ip: 256,
            limit_loopback_per_ip: false,
            max_connections: 8_192,
        }
    }
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        // A P2P node's only users are its owner's: open registration on the
        // loopback client API is what Dendrite's P2P demos do too.
        Self {
            open: true,
            shared_secret: None,
        }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            default_version: "11".into(),
            event_cache_size: 20_000,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 << 20,
            max_concurrent_uploads_per_user: 4,
            max_thumbnail_source_bytes: 20 << 20,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            messages: Bucket {
                per_second: 20.0,
                burst: 100.0,
            },
            registration: Bucket {
                per_second: 1.0,
                burst: 20.0,
            },
            login: Bucket {
                per_second: 1.0,
                burst: 20.0,
            },
        }
    }
}

/// `$XDG_DATA_HOME/conifer`, else `~/.local/share/conifer`, else `./conifer-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("conifer");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/conifer");
    }
    PathBuf::from("conifer-data")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("environment variable {name}: {why}")]
    Env { name: &'static str, why: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// The base URL clients are told to use: `client.public_baseurl`
    /// without a trailing slash, else `http://` and the listen address.
    pub fn client_base_url(&self) -> String {
        match &self.client.public_baseurl {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.client.listen),
        }
    }

    /// Reads the file (if given), then applies environment overrides.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.into(),
                    source,
                })?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Applies `CONIFER_*` overrides read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("CONIFER_SERVER_NAME") {
            self.server_name = Some(v);
        }
        if let Some(v) = get("CONIFER_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("CONIFER_CLIENT_ADDR") {
            self.client.listen = v.parse().map_err(|e| ConfigError::Env {
                name: "CONIFER_CLIENT_ADDR",
                why: format!("{e}"),
            })?;
        }
        if let Some(v) = get("CONIFER_REGISTRATION_OPEN") {
            self.registration.open = parse_bool(&v).ok_or(ConfigError::Env {
                name: "CONIFER_REGISTRATION_OPEN",
                why: "expected true or false".into(),
            })?;
        }
        if let Some(v) = get("CONIFER_REGISTRATION_SHARED_SECRET") {
            self.registration.shared_secret = Some(v);
        }
        if let Some(v) = get("CONIFER_DEFAULT_ROOM_VERSION") {
            self.rooms.default_version = v;
        }
        if let Some(v) = get("CONIFER_RATE_LIMITS") {
            self.rate_limits.enabled = parse_bool(&v).ok_or(ConfigError::Env {
                name: "CONIFER_RATE_LIMITS",
                why: "expected true or false".into(),
            })?;
        }
        if let Some(v) = get("CONIFER_FEDERATION_ADDR") {
            self.federation.listen = Some(v.parse().map_err(|e| ConfigError::Env {
                name: "CONIFER_FEDERATION_ADDR",
                why: format!("{e}"),
            })?);
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !conifer_rooms::is_supported(&self.rooms.default_version) {
            return Err(ConfigError::Invalid(format!(
                "rooms.default_version {:?} is not supported (supported: {})",
                self.rooms.default_version,
                conifer_rooms::SUPPORTED_VERSIONS.join(", ")
            )));
        }
        if let Some(url) = &self.client.public_baseurl {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.contains(char::is_whitespace)
            {
                return Err(ConfigError::Invalid(format!(
                    "client.public_baseurl {url:?} must be an http:// or https:// URL"
                )));
            }
        }
        if self.client.header_read_timeout_secs == 0
            || self.client.max_connections_per_ip == 0
            || self.client.max_connections == 0
        {
            return Err(ConfigError::Invalid(
                "client.header_read_timeout_secs, max_connections_per_ip and max_connections must be above 0".into(),
            ));
        }
        if let Some(name) = &self.server_name {
            if ruma_server_name(name).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "server_name {name:?} is not a valid Matrix server name"
                )));
            }
        }
        Ok(())
    }
}

fn ruma_server_name(name: &str) -> Option<conifer_rooms::ruma::OwnedServerName> {
    conifer_rooms::ruma::OwnedServerName::try_from(name).ok()
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_env_overrides_it() {
        let text = include_str!("../../../docs/conifer.example.toml");
        let mut c: Config = toml::from_str(text).unwrap();
        c.apply_env(|n| match n {
            "CONIFER_CLIENT_ADDR" => Some("127.0.0.1:9999".into()),
            "CONIFER_REGISTRATION_OPEN" => Some("false".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.client.listen.port(), 9999);
        assert!(!c.registration.open);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(toml::from_str::<Config>("nonsense = 1").is_err());
        let mut c = Config::default();
        assert!(c
            .apply_env(|n| (n == "CONIFER_CLIENT_ADDR").then(|| "nope".into()))
            .is_err());
        c.rooms.default_version = "3".into();
        assert!(c.validate().is_err());
    }
}
