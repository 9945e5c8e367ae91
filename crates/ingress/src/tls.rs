//! TLS for the HTTPS listener: certificates chosen by SNI.
//!
//! A [`CertStore`] is built from the route table's `tls_hosts()` at each publish and
//! swapped atomically; the [`SniResolver`] picks, for the SNI of a ClientHello, the
//! precise host's certificate, then the wildcard one label up, then the default
//! certificate issued by the local CA (unknown or absent SNI). Hosts whose certificate
//! comes from the local CA are issued on first use and cached by host across publishes.
//! SNI selects the certificate; the `Host` header still selects the route.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::ca::LocalCa;
use crate::table::{CertSource, TlsHost};

/// The host name of the default certificate (served for unknown or absent SNI).
pub const DEFAULT_CERT_HOST: &str = "ingress.local";

/// The crypto provider svcnet uses everywhere (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a `kubernetes.io/tls` Secret's `tls.crt` and `tls.key` and checks that the key
/// matches the leaf and that the leaf covers `host`.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    host: &str,
) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.crt: invalid PEM: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err("tls.crt: no certificate".to_string());
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("tls.key: {e}"))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("tls.key: unsupported key: {e}"))?;
    let ee = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("tls.crt: not a valid X.509 certificate: {e}"))?;
    let name = if let Some(parent) = host.strip_prefix("*.") {
        // A wildcard host needs a wildcard certificate: check a name one label below.
        format!("svcnet-wildcard-check.{parent}")
    } else {
        host.to_string()
    };
    let server_name =
        ServerName::try_from(name.as_str()).map_err(|e| format!("host {host:?}: {e}"))?;
    ee.verify_is_valid_for_subject_name(&server_name)
        .map_err(|_| format!("tls.crt does not cover host {host}"))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| format!("tls.key does not match tls.crt: {e}"))?;
    Ok(ck)
}

fn issue(ca: &LocalCa, host: &str) -> Result<Arc<CertifiedKey>, String> {
    let issued = ca.issue(&[host.to_string()]).map_err(|e| e.to_string())?;
    let signing = provider()
        .key_provider
        .load_private_key(issued.key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(issued.chain, signing)))
}

/// Certificates issued by the local CA, by host, kept across publishes.
pub struct LocalCaCerts {
    ca: LocalCa,
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for LocalCaCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCaCerts").finish_non_exhaustive()
    }
}

impl LocalCaCerts {
    /// Wraps the CA.
    pub fn new(ca: LocalCa) -> LocalCaCerts {
        LocalCaCerts {
            ca,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The CA.
    pub fn ca(&self) -> &LocalCa {
        &self.ca
    }

    /// The certificate for `host`, issued on first use.
    pub fn get(&self, host: &str) -> Result<Arc<CertifiedKey>, String> {
        if let Some(ck) = self.lock().get(host) {
            return Ok(ck.clone());
        }
        // Issued outside the lock: a race issues twice and keeps the first.
        let ck = issue(&self.ca, host)?;
        Ok(self.lock().entry(host.to_string()).or_insert(ck).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CertifiedKey>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single
        // inserts), so a poisoned lock is used as is.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone, Debug)]
enum Entry {
    Ready(Arc<CertifiedKey>),
    LocalCa,
}

/// The certificates of one published table.
#[derive(Debug, Default)]
pub struct CertStore {
    exact: HashMap<String, Entry>,
    /// By parent domain: `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Entry>,
}

/// Parsed Secret certificates, by (Secret, host, content), reused across publishes.
#[derive(Default)]
pub struct SecretCache {
    parsed: HashMap<(String, String, u64), Result<Arc<CertifiedKey>, String>>,
}

impl std::fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCache")
            .field("entries", &self.parsed.len())
            .finish()
    }
}

fn content_hash(a: &[u8], b: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    a.hash(&mut h);
    b.hash(&mut h);
    h.finish()
}

impl CertStore {
    /// Builds the store for `hosts`. Returns the per-host problems of Secret
    /// certificates; those hosts fall back to a local-CA certificate.
    pub fn build(hosts: &[TlsHost], cache: &mut SecretCache) -> (CertStore, Vec<(String, String)>) {
        let mut store = CertStore::default();
        let mut problems = Vec::new();
        let mut next = HashMap::new();
        for th in hosts {
            let host = th.host.to_ascii_lowercase();
            let entry = match &th.source {
                CertSource::LocalCa { .. } => Entry::LocalCa,
                CertSource::Secret {
                    secret,
                    cert_pem,
                    key_pem,
                } => {
                    let key = (
                        secret.to_string(),
                        host.clone(),
                        content_hash(cert_pem, key_pem),
                    );
                    let parsed = match cache.parsed.remove(&key) {
                        Some(p) => p,
                        None => certified_key_from_pem(cert_pem, key_pem, &host).map(Arc::new),
                    };
                    let entry = match &parsed {
                        Ok(ck) => Entry::Ready(ck.clone()),
                        Err(why) => {
                            problems.push((
                                host.clone(),
                                format!("Secret {secret}: {why}; serving a local-CA certificate"),
                            ));
                            Entry::LocalCa
                        }
                    };
                    next.insert(key, parsed);
                    entry
                }
            };
            let slot = match host.strip_prefix("*.") {
                Some(parent) => store.wildcard.entry(parent.to_string()),
                None => store.exact.entry(host.clone()),
            };
            // The first Ingress to name a host wins (the table lists them in priority
            // order); a later Secret for the same host does not replace it.
            slot.or_insert(entry);
        }
        cache.parsed = next;
        (store, problems)
    }

    /// The entry for an SNI name: precise, then wildcard one label up.
    fn lookup(&self, sni: &str) -> Option<(&Entry, String)> {
        if let Some(e) = self.exact.get(sni) {
            return Some((e, sni.to_string()));
        }
        let (_, parent) = sni.split_once('.')?;
        self.wildcard
            .get(parent)
            .map(|e| (e, format!("*.{parent}")))
    }
}

/// rustls's certificate resolver over the current [`CertStore`].
pub struct SniResolver {
    store: Arc<ArcSwap<CertStore>>,
    local: Arc<LocalCaCerts>,
    default: Arc<CertifiedKey>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl SniResolver {
    /// A resolver over `store`; the default certificate is issued now.
    pub fn new(store: Arc<ArcSwap<CertStore>>, local: Arc<LocalCaCerts>) -> Result<Self, String> {
        let default = local.get(DEFAULT_CERT_HOST)?;
        Ok(SniResolver {
            store,
            local,
            default,
        })
    }

    /// The certificate for an SNI name (lower-cased by rustls), or the default.
    pub fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(sni) = sni else {
            return self.default.clone();
        };
        let store = self.store.load();
        match store.lookup(sni) {
            Some((Entry::Ready(ck), _)) => ck.clone(),
            Some((Entry::LocalCa, name)) => match self.local.get(&name) {
                Ok(ck) => ck,
                Err(e) => {
                    tracing::warn!(host = %name, error = %e, "local CA could not issue a certificate");
                    self.default.clone()
                }
            },
            None => self.default.clone(),
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// The listener's rustls configuration: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts any upstream certificate, as ingress-nginx does by default
/// (`proxy-ssl-verify: off`): pod certificates are rarely issued for the pod address.
#[derive(Debug)]
pub struct NoUpstreamVerification(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoUpstreamVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration for HTTPS/GRPCS upstreams, with the given ALPN protocols.
pub fn upstream_client_config(alpn: &[&[u8]]) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoUpstreamVerification(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use svcnet_model::types::ObjectKey;

    fn ca() -> Arc<LocalCaCerts> {
        let dir = std::env::temp_dir().join(format!(
            "svcnet-tls-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        Arc::new(LocalCaCerts::new(LocalCa::load_or_create(&dir).unwrap()))
    }

    fn secret(host_cert: &LocalCaCerts, hosts: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let issued = host_cert.ca().issue(&hosts).unwrap();
        (issued.cert_pem.into_bytes(), issued.key_pem.into_bytes())
    }

    fn th(host: &str, source: CertSource) -> TlsHost {
        TlsHost {
            host: host.to_string(),
            source,
            ingress: ObjectKey::new("default", "ing"),
        }
    }

    fn leaf(ck: &CertifiedKey) -> Vec<u8> {
        ck.cert[0].as_ref().to_vec()
    }

    #[test]
    fn sni_picks_precise_then_wildcard_then_default() {
        let local = ca();
        let (c1, k1) = secret(&local, &["a.example.com"]);
        let (c2, k2) = secret(&local, &["*.example.com"]);
        let hosts = vec![
            th(
                "a.example.com",
                CertSource::Secret {
                    secret: ObjectKey::new("default", "a"),
                    cert_pem: c1,
                    key_pem: k1,
                },
            ),
            th(
                "*.example.com",
                CertSource::Secret {
                    secret: ObjectKey::new("default", "w"),
                    cert_pem: c2,
                    key_pem: k2,
                },
            ),
            th(
                "local.test",
                CertSource::LocalCa {
                    why: "no secretName".into(),
                },
            ),
        ];
        let mut cache = SecretCache::default();
        let (store, problems) = CertStore::build(&hosts, &mut cache);
        assert!(problems.is_empty(), "{problems:?}");
        let r = SniResolver::new(Arc::new(ArcSwap::from_pointee(store)), local.clone()).unwrap();
        let a = r.pick(Some("a.example.com"));
        let b = r.pick(Some("b.example.com"));
        let deep = r.pick(Some("x.b.example.com"));
        let none = r.pick(None);
        let loc = r.pick(Some("local.test"));
        assert_ne!(leaf(&a), leaf(&b));
        assert_eq!(leaf(&deep), leaf(&none), "wildcards match one label only");
        assert_ne!(leaf(&loc), leaf(&none));
        // Issued once, cached by host.
        assert_eq!(leaf(&loc), leaf(&r.pick(Some("local.test"))));
        let ee = webpki::EndEntityCert::try_from(&b.cert[0]).unwrap();
        ee.verify_is_valid_for_subject_name(&ServerName::try_from("b.example.com").unwrap())
            .unwrap();
    }

    #[test]
    fn bad_secrets_are_reported_and_fall_back() {
        let local = ca();
        let (c1, _) = secret(&local, &["a.example.com"]);
        let (_, k2) = secret(&local, &["a.example.com"]);
        let (c3, k3) = secret(&local, &["other.example.com"]);
        let mk = |host: &str, c: Vec<u8>, k: Vec<u8>| {
            th(
                host,
                CertSource::Secret {
                    secret: ObjectKey::new("default", host),
                    cert_pem: c,
                    key_pem: k,
                },
            )
        };
        let hosts = vec![
            mk("a.example.com", c1, k2),
            mk("b.example.com", b"garbage".to_vec(), b"x".to_vec()),
            mk("c.example.com", c3, k3),
        ];
        let (store, problems) = CertStore::build(&hosts, &mut SecretCache::default());
        let text = format!("{problems:?}");
        assert_eq!(problems.len(), 3, "{text}");
        assert!(problems[0].1.contains("does not match"), "{text}");
        assert!(
            problems[2].1.contains("does not cover host c.example.com"),
            "{text}"
        );
        let r = SniResolver::new(Arc::new(ArcSwap::from_pointee(store)), local).unwrap();
        let a = r.pick(Some("a.example.com"));
        let ee = webpki::EndEntityCert::try_from(&a.cert[0]).unwrap();
        ee.verify_is_valid_for_subject_name(&ServerName::try_from("a.example.com").unwrap())
            .unwrap();
    }
}
