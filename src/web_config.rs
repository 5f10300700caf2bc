//! Prometheus's web configuration file (`--web.config.file`, the exporter-toolkit format): TLS for the
//! HTTP server, basic-auth users and extra response headers. This module only parses and checks the
//! file (every key, with its line, as [`crate::config_file`] does for the main file); it reads no
//! certificate and opens no socket. [`crate::http::tls`] turns [`TlsSettings`] into a TLS server
//! configuration and [`crate::http::auth`] checks passwords against [`WebConfig::users`].
//!
//! Relative file paths are taken from the web config file's directory, as exporter-toolkit does.
//! What Strata cannot do as Prometheus would (TLS 1.0/1.1, CBC cipher suites, the P-521 curve,
//! `client_allowed_sans`, `rate_limit`) is an error naming the key, never silently dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use saphyr::{MarkedYaml, Scalar, YamlData};

use crate::config_file::{load_yaml, scalar_text, ConfigFileError, Walk};

/// The web configuration: what the HTTP server applies to every connection and request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebConfig {
    /// TLS, when the file configures it; plain HTTP otherwise.
    pub tls: Option<TlsSettings>,
    /// `basic_auth_users`: user name → bcrypt hash. Empty: no authentication.
    pub users: BTreeMap<String, String>,
    /// `http_server_config.headers`, set on every response.
    pub headers: Vec<(String, String)>,
}

/// Where PEM text comes from: a file (re-read when it changes) or the config file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    /// `cert_file`, `key_file`, `client_ca_file`: a path, made absolute against the config's directory.
    File(PathBuf),
    /// `cert`, `key`, `client_ca`: the PEM text inline.
    Inline(String),
}

/// `tls_server_config`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub cert: PemSource,
    pub key: PemSource,
    pub client_auth: ClientAuth,
    /// Trust anchors for client certificates.
    pub client_ca: Option<PemSource>,
    /// TLS 1.2 cipher suites allowed, in the file's order; empty: all Strata supports. TLS 1.3's
    /// suites are not configurable (as in Go).
    pub cipher_suites: Vec<CipherSuite>,
    /// Key exchange groups in order of preference; empty: the default order.
    pub curves: Vec<Curve>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
}

/// `client_auth_type`: Go's `tls.ClientAuthType` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    NoClientCert,
    /// One is asked for; none, or any, is accepted without verification.
    RequestClientCert,
    /// One is required, but not verified.
    RequireAnyClientCert,
    /// One is optional; if sent, it must chain to `client_ca`.
    VerifyClientCertIfGiven,
    /// One is required and must chain to `client_ca`.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    const NAMES: &'static str = "NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, \
                                 RequireAndVerifyClientCert";

    fn parse(s: &str) -> Option<ClientAuth> {
        Some(match s {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // exporter-toolkit's older name.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    /// Whether a client certificate is checked against `client_ca`.
    pub fn verifies(self) -> bool {
        matches!(self, ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert)
    }
}

/// `min_version`/`max_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The TLS 1.2 cipher suites Strata's TLS library offers, by their Go names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherSuite {
    EcdheEcdsaAes128GcmSha256,
    EcdheEcdsaAes256GcmSha384,
    EcdheEcdsaChacha20Poly1305,
    EcdheRsaAes128GcmSha256,
    EcdheRsaAes256GcmSha384,
    EcdheRsaChacha20Poly1305,
}

impl CipherSuite {
    const ALL: [(&'static str, CipherSuite); 6] = [
        ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", CipherSuite::EcdheEcdsaAes128GcmSha256),
        ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", CipherSuite::EcdheEcdsaAes256GcmSha384),
        ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", CipherSuite::EcdheEcdsaChacha20Poly1305),
        ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", CipherSuite::EcdheRsaAes128GcmSha256),
        ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", CipherSuite::EcdheRsaAes256GcmSha384),
        ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", CipherSuite::EcdheRsaChacha20Poly1305),
    ];

    fn parse(s: &str) -> Option<CipherSuite> {
        // Go also knows the ChaCha20 suites without the `_SHA256` suffix.
        let full = match s {
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => format!("{s}_SHA256"),
            _ => s.to_owned(),
        };
        CipherSuite::ALL.iter().find(|(name, _)| *name == full).map(|&(_, c)| c)
    }
}

/// `curve_preferences` entries Strata's TLS library offers, by their Go names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    X25519,
}

impl Curve {
    fn parse(s: &str) -> Option<Curve> {
        Some(match s {
            "CurveP256" => Curve::P256,
            "CurveP384" => Curve::P384,
            "X25519" => Curve::X25519,
            _ => return None,
        })
    }
}

/// Response headers exporter-toolkit lets a web config set, with the values allowed (`None`: any).
/// Any other header (`Authorization`, `Content-Type`, `Server`...) is refused, as there.
const ALLOWED_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

const TOP_KEYS: &[&str] = &["tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"];
const TLS_KEYS: &[&str] = &[
    "cert_file",
    "key_file",
    "cert",
    "key",
    "client_ca_file",
    "client_ca",
    "client_auth_type",
    "cipher_suites",
    "curve_preferences",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
];
const HTTP_KEYS: &[&str] = &["http2", "headers"];

/// Checks the YAML `text`; `path` is only used in messages, `dir` resolves relative file paths.
pub fn parse(path: &str, dir: &Path, text: &str) -> Result<WebConfig, ConfigFileError> {
    let docs = load_yaml(path, text)?;
    let mut walk = Walk { path, out: WebConfig::default() };
    let Some(root) = docs.first() else { return Ok(walk.out) };
    if let Some(second) = docs.get(1) {
        return Err(walk.bad(second, "", "more than one YAML document"));
    }
    for (key, value, line) in walk.mapping(root, "")? {
        match key.as_str() {
            "tls_server_config" => walk.out.tls = tls(&walk, value, line, dir)?,
            "http_server_config" => walk.out.headers = http(&walk, value)?,
            "basic_auth_users" => walk.out.users = users(&walk, value)?,
            // Newer than Prometheus 2.42's exporter-toolkit; an empty section asks for nothing.
            "rate_limit" if !is_empty(value) => return Err(walk.not_implemented(key, line)),
            "rate_limit" => {}
            _ => return Err(walk.unknown(key, line, TOP_KEYS)),
        }
    }
    Ok(walk.out)
}

fn is_empty(node: &MarkedYaml<'_>) -> bool {
    match &node.data {
        YamlData::Value(Scalar::Null) => true,
        YamlData::Mapping(m) => m.is_empty(),
        YamlData::Sequence(s) => s.is_empty(),
        _ => false,
    }
}

/// A string-valued key; `null` is the empty string, as in Go.
fn string<T>(walk: &Walk<'_, T>, node: &MarkedYaml<'_>, key: &str) -> Result<String, ConfigFileError> {
    match &node.data {
        YamlData::Value(Scalar::Null) => Ok(String::new()),
        YamlData::Mapping(_) | YamlData::Sequence(_) => Err(walk.bad(node, key, "expected a string")),
        _ => scalar_text(node).ok_or_else(|| walk.bad(node, key, "expected a string")),
    }
}

fn strings<T>(walk: &Walk<'_, T>, node: &MarkedYaml<'_>, key: &str) -> Result<Vec<String>, ConfigFileError> {
    match &node.data {
        YamlData::Value(Scalar::Null) => Ok(Vec::new()),
        YamlData::Sequence(items) => items.iter().map(|item| string(walk, item, key)).collect(),
        _ => Err(walk.bad(node, key, "expected a list of strings")),
    }
}

fn boolean<T>(walk: &Walk<'_, T>, node: &MarkedYaml<'_>, key: &str) -> Result<(), ConfigFileError> {
    match &node.data {
        YamlData::Value(Scalar::Boolean(_) | Scalar::Null) => Ok(()),
        _ => Err(walk.bad(node, key, "expected true or false")),
    }
}

fn tls<T>(
    walk: &Walk<'_, T>,
    node: &MarkedYaml<'_>,
    section_line: usize,
    dir: &Path,
) -> Result<Option<TlsSettings>, ConfigFileError> {
    let mut text: BTreeMap<&'static str, (String, &MarkedYaml<'_>)> = BTreeMap::new();
    let mut cipher_suites = Vec::new();
    let mut curves = Vec::new();
    for (key, value, line) in walk.mapping(node, "tls_server_config")? {
        let name = key.trim_start_matches("tls_server_config.");
        match name {
            "cipher_suites" => {
                for s in strings(walk, value, &key)? {
                    let Some(c) = CipherSuite::parse(&s) else {
                        let known: Vec<&str> = CipherSuite::ALL.iter().map(|(n, _)| *n).collect();
                        let msg =
                            format!("cipher suite {s:?} is not supported by Strata (supported: {})", known.join(", "));
                        return Err(walk.bad(value, &key, &msg));
                    };
                    cipher_suites.push(c);
                }
            }
            "curve_preferences" => {
                for s in strings(walk, value, &key)? {
                    let Some(c) = Curve::parse(&s) else {
                        let msg =
                            format!("curve {s:?} is not supported by Strata (supported: CurveP256, CurveP384, X25519)");
                        return Err(walk.bad(value, &key, &msg));
                    };
                    curves.push(c);
                }
            }
            "prefer_server_cipher_suites" => boolean(walk, value, &key)?,
            "client_allowed_sans" if is_empty(value) => {}
            "client_allowed_sans" => return Err(walk.not_implemented(key, line)),
            _ => match TLS_KEYS.iter().find(|k| **k == name) {
                Some(k) => {
                    let v = string(walk, value, &key)?;
                    text.insert(k, (v, value));
                }
                None => return Err(walk.unknown(key, line, TLS_KEYS)),
            },
        }
    }
    let get = |k: &str| text.get(k).map(|(v, _)| v.as_str()).filter(|v| !v.is_empty());
    let enabled = ["cert_file", "cert", "key_file", "key", "client_ca_file", "client_ca", "client_auth_type"]
        .iter()
        .any(|k| get(k).is_some());
    if !enabled {
        if !cipher_suites.is_empty()
            || !curves.is_empty()
            || get("min_version").is_some()
            || get("max_version").is_some()
        {
            let msg = "TLS settings given without cert_file and key_file";
            return Err(ConfigFileError::BadValue {
                path: walk.path.to_owned(),
                line: section_line,
                key: "tls_server_config".into(),
                msg: msg.into(),
            });
        }
        return Ok(None);
    }
    let missing = |msg: &str| ConfigFileError::BadValue {
        path: walk.path.to_owned(),
        line: section_line,
        key: "tls_server_config".into(),
        msg: msg.into(),
    };
    let source = |file: &str, inline: &str| -> Result<Option<PemSource>, ConfigFileError> {
        match (get(file), get(inline)) {
            (Some(_), Some(_)) => {
                let node = text.get(inline).map(|(_, n)| *n).unwrap_or(node);
                Err(walk.bad(
                    node,
                    &format!("tls_server_config.{inline}"),
                    &format!("set {file} or {inline}, not both"),
                ))
            }
            (Some(p), None) => Ok(Some(PemSource::File(dir.join(p)))),
            (None, Some(t)) => Ok(Some(PemSource::Inline(t.to_owned()))),
            (None, None) => Ok(None),
        }
    };
    let cert = source("cert_file", "cert")?.ok_or_else(|| missing("missing one of cert or cert_file"))?;
    let key = source("key_file", "key")?.ok_or_else(|| missing("missing one of key or key_file"))?;
    let client_ca = source("client_ca_file", "client_ca")?;
    let client_auth = match text.get("client_auth_type") {
        None => ClientAuth::NoClientCert,
        Some((v, n)) => ClientAuth::parse(v).ok_or_else(|| {
            walk.bad(
                n,
                "tls_server_config.client_auth_type",
                &format!("unknown client_auth_type {v:?} (one of {})", ClientAuth::NAMES),
            )
        })?,
    };
    if client_ca.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(missing("client CAs configured without a client_auth_type that asks for client certificates"));
    }
    if client_auth.verifies() && client_ca.is_none() {
        return Err(missing("client_auth_type verifies client certificates: set client_ca_file"));
    }
    let version = |k: &str, default: TlsVersion| -> Result<TlsVersion, ConfigFileError> {
        let Some((v, n)) = text.get(k) else { return Ok(default) };
        match v.as_str() {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            "TLS10" | "TLS11" => Err(walk.bad(
                n,
                &format!("tls_server_config.{k}"),
                &format!("{v} is not supported by Strata (TLS12 or TLS13)"),
            )),
            _ => Err(walk.bad(
                n,
                &format!("tls_server_config.{k}"),
                &format!("unknown TLS version {v:?} (TLS12 or TLS13)"),
            )),
        }
    };
    let min_version = version("min_version", TlsVersion::Tls12)?;
    let max_version = version("max_version", TlsVersion::Tls13)?;
    if min_version > max_version {
        return Err(missing("min_version is above max_version"));
    }
    if !cipher_suites.is_empty() && min_version == TlsVersion::Tls13 {
        return Err(missing("cipher_suites apply to TLS 1.2 only, but min_version is TLS13"));
    }
    Ok(Some(TlsSettings { cert, key, client_auth, client_ca, cipher_suites, curves, min_version, max_version }))
}

fn http<T>(walk: &Walk<'_, T>, node: &MarkedYaml<'_>) -> Result<Vec<(String, String)>, ConfigFileError> {
    let mut headers = Vec::new();
    for (key, value, line) in walk.mapping(node, "http_server_config")? {
        match key.trim_start_matches("http_server_config.") {
            // Strata serves HTTP/1.1 (over TLS too); like Go's server with http2 off.
            "http2" => boolean(walk, value, &key)?,
            "headers" => {
                for (hkey, hvalue, hline) in walk.mapping(value, "http_server_config.headers")? {
                    let name = hkey.trim_start_matches("http_server_config.headers.");
                    let v = string(walk, hvalue, &hkey)?;
                    match ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) {
                        None => {
                            let allowed: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
                            let msg =
                                format!("HTTP header {name:?} can not be configured (allowed: {})", allowed.join(", "));
                            return Err(ConfigFileError::BadValue {
                                path: walk.path.to_owned(),
                                line: hline,
                                key: hkey,
                                msg,
                            });
                        }
                        Some((_, Some(values))) if !values.contains(&v.as_str()) => {
                            let msg = format!("invalid value {v:?} (one of {})", values.join(", "));
                            return Err(walk.bad(hvalue, &hkey, &msg));
                        }
                        Some(_) => {}
                    }
                    if axum::http::HeaderValue::from_str(&v).is_err() {
                        return Err(walk.bad(hvalue, &hkey, "not a valid header value"));
                    }
                    headers.push((name.to_owned(), v));
                }
            }
            _ => return Err(walk.unknown(key, line, HTTP_KEYS)),
        }
    }
    Ok(headers)
}

fn users<T>(walk: &Walk<'_, T>, node: &MarkedYaml<'_>) -> Result<BTreeMap<String, String>, ConfigFileError> {
    let mut users = BTreeMap::new();
    for (key, value, _) in walk.mapping(node, "basic_auth_users")? {
        let user = key.trim_start_matches("basic_auth_users.").to_owned();
        if user.contains(':') {
            return Err(walk.bad(value, &key, "a user name cannot contain ':' (basic auth splits there)"));
        }
        let hash = string(walk, value, &key)?;
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(walk.bad(value, &key, "not a bcrypt hash (such as htpasswd -nBC 10 \"\" prints)"));
        }
        users.insert(user, hash);
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

    fn parse_text(text: &str) -> Result<WebConfig, ConfigFileError> {
        parse("web.yml", Path::new("/etc/strata"), text)
    }

    #[test]
    fn empty_files_configure_nothing() {
        for text in ["", "tls_server_config:\n", "http_server_config: {}\n", "basic_auth_users:\n", "rate_limit: {}\n"]
        {
            assert_eq!(parse_text(text).unwrap(), WebConfig::default(), "{text:?}");
        }
    }

    #[test]
    fn full_config() {
        let text = format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: /keys/server.key\n  client_auth_type: RequireAndVerifyClientCert\n  \
             client_ca_file: ca.crt\n  min_version: TLS13\n  curve_preferences: [X25519, CurveP256]\n  \
             prefer_server_cipher_suites: true\nhttp_server_config:\n  http2: false\n  headers:\n    \
             X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\nbasic_auth_users:\n  alice: '{HASH}'\n"
        );
        let c = parse_text(&text).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, PemSource::File(PathBuf::from("/etc/strata/server.crt")));
        assert_eq!(tls.key, PemSource::File(PathBuf::from("/keys/server.key")));
        assert_eq!(tls.client_ca, Some(PemSource::File(PathBuf::from("/etc/strata/ca.crt"))));
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!((tls.min_version, tls.max_version), (TlsVersion::Tls13, TlsVersion::Tls13));
        assert_eq!(tls.curves, [Curve::X25519, Curve::P256]);
        assert_eq!(c.headers.len(), 2);
        assert_eq!(c.users.get("alice").map(String::as_str), Some(HASH));
    }

    #[test]
    fn cipher_suites_map_to_go_names() {
        let c = parse_text(
            "tls_server_config:\n  cert: x\n  key: y\n  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n    \
             - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305\n",
        )
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cipher_suites, [CipherSuite::EcdheRsaAes128GcmSha256, CipherSuite::EcdheEcdsaChacha20Poly1305]);
        assert_eq!(tls.cert, PemSource::Inline("x".into()));
    }

    #[test]
    fn errors_name_key_and_line() {
        let cases = [
            ("tls_server_config:\n  cert_file: a\n  key_fille: b\n", "line 3", "tls_server_config.key_fille"),
            ("tls_server_config:\n  cert_file: a\n", "line 1", "missing one of key or key_file"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n",
                "line 4",
                "Sometimes",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n",
                "line 4",
                "TLS10 is not supported",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n",
                "line 4",
                "cipher_suites",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [CurveP521]\n",
                "line 4",
                "CurveP521",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
                "line 1",
                "client CAs configured",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: VerifyClientCertIfGiven\n",
                "line 1",
                "client_ca_file",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n",
                "line 4",
                "not implemented",
            ),
            ("http_server_config:\n  headers:\n    Content-Type: text/html\n", "line 3", "can not be configured"),
            ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "line 3", "invalid value"),
            ("http_server_config:\n  http3: true\n", "line 2", "http_server_config.http3"),
            ("basic_auth_users:\n  alice: plaintext\n", "line 2", "not a bcrypt hash"),
            ("basic_auth_user:\n  alice: x\n", "line 1", "did you mean \"basic_auth_users\""),
            ("rate_limit:\n  burst: 10\n", "line 1", "not implemented"),
            ("tls_server_config:\n  max_version: TLS12\n", "line 1", "without cert_file"),
        ];
        for (text, line, what) in cases {
            let e = parse_text(text).unwrap_err().to_string();
            assert!(e.contains(line) && e.contains(what), "{text:?}: {e}");
        }
    }
}
