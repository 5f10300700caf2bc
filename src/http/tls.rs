//! TLS for the HTTP server: turns the web config's [`TlsSettings`] and the PEM files they name into a
//! rustls server configuration (ring as the crypto provider, HTTP/1.1 by ALPN).
//!
//! Reading the PEM files ([`Material::read`]) is blocking and kept apart from building the
//! configuration ([`server_config`]), so the caller reads on a blocking thread and can tell from the
//! bytes whether anything changed. Client certificates follow Go's `tls.ClientAuthType`: the two
//! verifying modes check the chain against `client_ca`; `RequestClientCert` and
//! `RequireAnyClientCert` take any certificate, checking only that the client holds its key.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring as provider, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

use crate::web_config::{CipherSuite, ClientAuth, Curve, PemSource, TlsSettings, TlsVersion};

/// Why a TLS configuration cannot be built; each names the setting whose file or text is at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read {key} ({path}): {source}")]
    Read { key: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{key}: no PEM certificate found")]
    NoCertificate { key: &'static str },
    #[error("{key}: invalid PEM: {msg}")]
    Pem { key: &'static str, msg: String },
    #[error("{key}: cannot use the client CA certificates: {msg}")]
    ClientCa { key: &'static str, msg: String },
    #[error("certificate and key do not form a usable pair: {0}")]
    KeyPair(#[source] rustls::Error),
    #[error("TLS settings cannot be met: {0}")]
    Settings(#[source] rustls::Error),
}

/// The PEM bytes a [`TlsSettings`] names, as read (inline text included).
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Material {
    /// Sizes only: the key is secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("cert_bytes", &self.cert.len())
            .field("key_bytes", &self.key.len())
            .field("client_ca_bytes", &self.client_ca.as_ref().map(Vec::len))
            .finish()
    }
}

impl Material {
    /// Reads the files `settings` names (blocking).
    pub fn read(settings: &TlsSettings) -> Result<Material, TlsError> {
        let read = |source: &PemSource, key: &'static str| match source {
            PemSource::Inline(text) => Ok(text.as_bytes().to_vec()),
            PemSource::File(path) => {
                std::fs::read(path).map_err(|source| TlsError::Read { key, path: path.clone(), source })
            }
        };
        Ok(Material {
            cert: read(&settings.cert, file_key(&settings.cert, "cert_file", "cert"))?,
            key: read(&settings.key, file_key(&settings.key, "key_file", "key"))?,
            client_ca: match &settings.client_ca {
                Some(s) => Some(read(s, file_key(s, "client_ca_file", "client_ca"))?),
                None => None,
            },
        })
    }
}

fn file_key(source: &PemSource, file: &'static str, inline: &'static str) -> &'static str {
    match source {
        PemSource::File(_) => file,
        PemSource::Inline(_) => inline,
    }
}

/// Builds the server configuration for `settings` from the PEM bytes read for it.
pub fn server_config(settings: &TlsSettings, material: &Material) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_key = file_key(&settings.cert, "cert_file", "cert");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&material.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { key: cert_key, msg: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { key: cert_key });
    }
    let key = PrivateKeyDer::from_pem_slice(&material.key)
        .map_err(|e| TlsError::Pem { key: file_key(&settings.key, "key_file", "key"), msg: e.to_string() })?;
    let provider = Arc::new(crypto_provider(settings));
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(TlsVersion::Tls12, &rustls::version::TLS12), (TlsVersion::Tls13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (settings.min_version..=settings.max_version).contains(v))
            .map(|(_, p)| p)
            .collect();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(TlsError::Settings)?;
    let builder = match settings.client_auth {
        ClientAuth::NoClientCert => builder.with_no_client_auth(),
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            builder.with_client_cert_verifier(Arc::new(AnyClientCert {
                mandatory: settings.client_auth == ClientAuth::RequireAnyClientCert,
                algorithms: provider.signature_verification_algorithms,
            }))
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let ca_key =
                settings.client_ca.as_ref().map_or("client_ca_file", |s| file_key(s, "client_ca_file", "client_ca"));
            let ca_pem = material.client_ca.as_deref().unwrap_or_default();
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem) {
                let cert = cert.map_err(|e| TlsError::Pem { key: ca_key, msg: e.to_string() })?;
                roots.add(cert).map_err(|e| TlsError::ClientCa { key: ca_key, msg: e.to_string() })?;
            }
            if roots.is_empty() {
                return Err(TlsError::NoCertificate { key: ca_key });
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = if settings.client_auth == ClientAuth::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| TlsError::ClientCa { key: ca_key, msg: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(TlsError::KeyPair)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// ring's provider with the cipher suites and key exchange groups `settings` allow, in their order.
#[expect(
    deprecated,
    reason = "rustls deprecates ring's provider for lacking post-quantum key exchange (aws-lc-rs has it); \
              ring builds with a C compiler alone and offers the groups Prometheus's web config can name"
)]
fn crypto_provider(settings: &TlsSettings) -> CryptoProvider {
    let mut p = provider::default_provider();
    if !settings.cipher_suites.is_empty() {
        use provider::cipher_suite as cs;
        let tls13 = p.cipher_suites.iter().filter(|s| s.version() == &rustls::version::TLS13).copied();
        let tls12 = settings.cipher_suites.iter().map(|c| match c {
            CipherSuite::EcdheEcdsaAes128GcmSha256 => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            CipherSuite::EcdheEcdsaAes256GcmSha384 => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            CipherSuite::EcdheEcdsaChacha20Poly1305 => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            CipherSuite::EcdheRsaAes128GcmSha256 => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            CipherSuite::EcdheRsaAes256GcmSha384 => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            CipherSuite::EcdheRsaChacha20Poly1305 => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        });
        p.cipher_suites = tls13.chain(tls12).collect();
    }
    if !settings.curves.is_empty() {
        p.kx_groups = settings
            .curves
            .iter()
            .map(|c| match c {
                Curve::P256 => provider::kx_group::SECP256R1,
                Curve::P384 => provider::kx_group::SECP384R1,
                Curve::X25519 => provider::kx_group::X25519,
            })
            .collect();
    }
    p
}

/// `RequestClientCert` / `RequireAnyClientCert`: any certificate is taken as it is (Go verifies no
/// chain in these modes either); the handshake signature still proves the client holds its key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
