//! svcnet's local certificate authority.
//!
//! Hosts in `spec.tls` without a usable Secret, and Ingresses annotated
//! `cert-manager.io/(cluster-)issuer` in standalone mode, get a certificate issued here,
//! as a cert-manager CA issuer would. The CA key and certificate persist in the state
//! directory (`ca.key` mode 0600, `ca.crt`) so that a client trusting `svcnet ca`'s output
//! keeps trusting every later run. This module does no network I/O.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The CA certificate's file name in the state directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA key's file name in the state directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

const CA_COMMON_NAME: &str = "svcnet local CA";
const CA_ORGANIZATION: &str = "svcnet";

/// Why the CA could not be loaded, created or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A file of the state directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `ca.crt` or `ca.key` is not what svcnet wrote.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Key generation or signing failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The default state directory: `$SVCNET_STATE_DIR`, else `$XDG_STATE_HOME/svcnet`, else
/// `$HOME/.local/state/svcnet`, else `./.svcnet-state` when `HOME` is unset.
pub fn default_state_dir() -> PathBuf {
    state_dir_from(|name| std::env::var_os(name))
}

fn state_dir_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("SVCNET_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("svcnet");
    }
    if let Some(home) = var("HOME") {
        return PathBuf::from(home).join(".local/state/svcnet");
    }
    PathBuf::from(".svcnet-state")
}

/// A certificate issued by the local CA: the chain (leaf, then the CA) and its key.
pub struct IssuedCert {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The chain in DER: the leaf, then the CA certificate.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key, DER.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// The local CA: a key and a self-signed CA certificate.
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

/// The CA's distinguished name and usages: the same at creation and at every load, so
/// that certificates issued after a restart chain to the stored `ca.crt`.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Sets the validity to `[today + from_days, today + to_days]` (UTC dates).
fn set_validity(params: &mut CertificateParams, from_days: i64, to_days: i64) {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let ymd = |days: i64| {
        let d = today
            .checked_add(jiff::Span::new().days(days))
            .unwrap_or(today);
        // Months and days of a valid civil date fit in u8.
        rcgen::date_time_ymd(
            i32::from(d.year()),
            u8::try_from(d.month()).unwrap_or(1),
            u8::try_from(d.day()).unwrap_or(1),
        )
    };
    params.not_before = ymd(from_days);
    params.not_after = ymd(to_days);
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and non-zero as RFC 5280 wants.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl LocalCa {
    /// Loads the CA from `dir` (`ca.crt`, `ca.key`), creating the directory and a new CA
    /// when neither file exists. One file without the other is an error: svcnet never
    /// overwrites a key a client may already trust.
    pub fn load_or_create(dir: &Path) -> Result<LocalCa, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Self::load(&cert_path, &key_path),
            (false, false) => Self::create(dir, &cert_path, &key_path),
            (true, false) => Err(CaError::Invalid {
                path: key_path,
                reason: format!("missing while {} exists", cert_path.display()),
            }),
            (false, true) => Err(CaError::Invalid {
                path: cert_path,
                reason: format!("missing while {} exists", key_path.display()),
            }),
        }
    }

    fn load(cert_path: &Path, key_path: &Path) -> Result<LocalCa, CaError> {
        let cert_pem = fs::read_to_string(cert_path).map_err(io_err(cert_path))?;
        let key_pem = fs::read_to_string(key_path).map_err(io_err(key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Invalid {
            path: key_path.to_path_buf(),
            reason: format!("not a private key: {e}"),
        })?;
        use rustls::pki_types::pem::PemObject;
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| CaError::Invalid {
                path: cert_path.to_path_buf(),
                reason: format!("not a PEM certificate: {e}"),
            })?;
        // The certificate must hold this key and svcnet's CA name, else issued
        // certificates would not chain to it.
        let der: &[u8] = cert_der.as_ref();
        if !contains(der, key.public_key_raw()) {
            return Err(CaError::Invalid {
                path: cert_path.to_path_buf(),
                reason: format!("does not hold the public key of {}", key_path.display()),
            });
        }
        if !contains(der, CA_COMMON_NAME.as_bytes()) {
            return Err(CaError::Invalid {
                path: cert_path.to_path_buf(),
                reason: format!("not svcnet's CA (subject is not {CA_COMMON_NAME:?})"),
            });
        }
        Ok(LocalCa {
            issuer: Issuer::new(ca_params(), key),
            cert_pem,
            cert_der,
        })
    }

    fn create(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<LocalCa, CaError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        set_validity(&mut params, -1, 3650);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        write_private(key_path, key.serialize_pem().as_bytes())?;
        let cert_pem = cert.pem();
        fs::write(cert_path, cert_pem.as_bytes()).map_err(io_err(cert_path))?;
        Ok(LocalCa {
            issuer: Issuer::new(ca_params(), key),
            cert_pem,
            cert_der: cert.der().clone(),
        })
    }

    /// The CA certificate, PEM (what `svcnet ca` prints and clients trust).
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// Issues a server certificate for `hosts` (DNS names, `*.example.com` wildcards, or
    /// IP addresses), valid from yesterday for 397 days.
    pub fn issue(&self, hosts: &[String]) -> Result<IssuedCert, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(first) = hosts.first() {
            dn.push(DnType::CommonName, first.as_str());
        }
        params.distinguished_name = dn;
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => h.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, -1, 397);
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            chain: vec![cert.der().clone(), self.cert_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "svcnet-ca-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn creates_then_reloads_the_same_ca_and_issues_chaining_certificates() {
        let dir = tempdir("reload");
        let ca = LocalCa::load_or_create(&dir).unwrap();
        let pem = ca.cert_pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = LocalCa::load_or_create(&dir).unwrap();
        assert_eq!(again.cert_pem(), pem);
        // A certificate issued after the reload verifies against the stored CA.
        let issued = again.issue(&["a.example.com".to_string()]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der.clone()).unwrap();
        let ee = webpki::EndEntityCert::try_from(&issued.chain[0]).unwrap();
        ee.verify_is_valid_for_subject_name(
            &rustls::pki_types::ServerName::try_from("a.example.com").unwrap(),
        )
        .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(
                &issued.chain[0],
                &issued.chain[1..],
                &rustls::pki_types::ServerName::try_from("a.example.com").unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_without_its_certificate_is_refused() {
        let dir = tempdir("half");
        let _ = LocalCa::load_or_create(&dir).unwrap();
        fs::remove_file(dir.join(CA_CERT_FILE)).unwrap();
        let err = LocalCa::load_or_create(&dir).unwrap_err().to_string();
        assert!(err.contains("ca.crt") && err.contains("missing"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn state_dir_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        const ALL: [(&str, &str); 3] = [
            ("SVCNET_STATE_DIR", "/s"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(state_dir_from(env(&ALL[..])), PathBuf::from("/s"));
        assert_eq!(state_dir_from(env(&ALL[1..])), PathBuf::from("/x/svcnet"));
        assert_eq!(
            state_dir_from(env(&ALL[2..])),
            PathBuf::from("/h/.local/state/svcnet")
        );
        assert_eq!(
            state_dir_from(env(&[("SVCNET_STATE_DIR", ""), ("HOME", "/h")])),
            PathBuf::from("/h/.local/state/svcnet")
        );
    }
}
