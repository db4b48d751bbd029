//! The webhook's self-managed TLS material: a CA, a serving certificate it signs, the CA bundle
//! the API server trusts, and when to renew them. Pure: `now` is a parameter, no I/O.
//!
//! - The CA lives [`CA_VALIDITY`], the serving certificate [`SERVING_VALIDITY`] (never past the
//!   CA). Each is renewed once two thirds of its lifetime have passed.
//! - When the CA is renewed, the bundle keeps the previous CA until it expires, so a replica still
//!   serving a certificate from the old CA stays trusted while the new one spreads.
//! - Material that cannot be read, whose key does not match its certificate, or whose serving
//!   certificate is not signed by the CA or does not cover the names wanted, is replaced.
use std::net::IpAddr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use super::Error;

/// Lifetime of the self-managed CA.
pub const CA_VALIDITY: Duration = Duration::days(3 * 365);
/// Lifetime of a serving certificate.
pub const SERVING_VALIDITY: Duration = Duration::days(90);
/// Certificates start this much before they are made, for clocks a little behind ours.
pub const BACKDATE: Duration = Duration::minutes(5);
/// Common name of the self-managed CA.
pub const CA_COMMON_NAME: &str = "kubepim-webhook-ca";

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a private key.
        f.debug_struct("CertAndKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Everything the shared Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub ca: CertAndKey,
    pub serving: CertAndKey,
    /// PEM bundle the API server trusts: the CA, and the previous CA until it expires.
    pub bundle: String,
}

/// The names a serving certificate must cover: the Service's DNS names in the operator's
/// namespace, and loopback for out-of-cluster runs (plus the `--webhook-url` host, if any).
pub fn serving_names(service: &str, namespace: &str, url_host: Option<&str>) -> Vec<String> {
    let mut names = vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    if let Some(host) = url_host {
        names.push(host.to_string());
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

fn offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, Error> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| Error::Certificate(format!("time out of range: {e}")))
}

/// A new CA, valid from `now - BACKDATE` for [`CA_VALIDITY`].
pub fn new_authority(now: DateTime<Utc>) -> Result<CertAndKey, Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = offset(now - BACKDATE)?;
    params.not_after = offset(now + CA_VALIDITY)?;
    let cert = params.self_signed(&key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A serving certificate for `names`, signed by `ca`, valid for [`SERVING_VALIDITY`] but never
/// past the CA.
pub fn issue_serving(
    ca: &CertAndKey,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<CertAndKey, Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let ca_info = inspect(&ca.cert_pem).map_err(Error::Certificate)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names
            .first()
            .map(String::as_str)
            .unwrap_or("kubepim-webhook"),
    );
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = offset(now - BACKDATE)?;
    params.not_after = offset((now + SERVING_VALIDITY).min(ca_info.not_after))?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// DNS names and IP addresses (as text) of the subjectAltName extension.
    pub names: Vec<String>,
    pub is_ca: bool,
}

impl CertInfo {
    /// When it is due for renewal: two thirds into its lifetime.
    pub fn renew_at(&self) -> DateTime<Utc> {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

fn first_pem(pem: &str) -> Result<Pem, String> {
    Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .ok_or_else(|| "no PEM block".to_string())?
        .map_err(|e| format!("bad PEM: {e}"))
}

fn timestamp(t: x509_parser::time::ASN1Time) -> DateTime<Utc> {
    Utc.timestamp_opt(t.timestamp(), 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Reads the first certificate of a PEM text.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, String> {
    let pem = first_pem(cert_pem)?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("bad certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        not_before: timestamp(cert.validity().not_before),
        not_after: timestamp(cert.validity().not_after),
        names,
        is_ca: cert.is_ca(),
    })
}

/// Is `cert_pem` signed by the key of `ca_pem`?
pub fn is_signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (Ok(cert), Ok(ca)) = (first_pem(cert_pem), first_pem(ca_pem)) else {
        return false;
    };
    let (Ok(cert), Ok(ca)) = (cert.parse_x509(), ca.parse_x509()) else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Does the private key belong to the certificate?
pub fn key_matches(pair: &CertAndKey) -> bool {
    let Ok(key) = KeyPair::from_pem(&pair.key_pem) else {
        return false;
    };
    let Ok(pem) = first_pem(&pair.cert_pem) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

/// What to renew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// Everything is fine until `until` (the earlier renewal time of the two certificates).
    Keep { until: DateTime<Utc> },
    /// A new serving certificate from the existing CA.
    Serving(String),
    /// A new CA and serving certificate.
    Authority(String),
}

/// Decides what to renew, given what is stored (if anything), the names wanted and the time.
pub fn rotation(stored: Option<&Material>, names: &[String], now: DateTime<Utc>) -> Rotation {
    let Some(stored) = stored else {
        return Rotation::Authority("no certificate yet".into());
    };
    let ca = match inspect(&stored.ca.cert_pem) {
        Ok(info) if info.is_ca => info,
        Ok(_) => return Rotation::Authority("the stored CA is not a CA certificate".into()),
        Err(e) => return Rotation::Authority(format!("the stored CA is unreadable: {e}")),
    };
    if !key_matches(&stored.ca) {
        return Rotation::Authority("the stored CA key does not match its certificate".into());
    }
    if now >= ca.renew_at() {
        return Rotation::Authority(format!("the CA expires at {}", ca.not_after.to_rfc3339()));
    }
    let serving = match inspect(&stored.serving.cert_pem) {
        Ok(info) => info,
        Err(e) => return Rotation::Serving(format!("the serving certificate is unreadable: {e}")),
    };
    if !key_matches(&stored.serving) {
        return Rotation::Serving("the serving key does not match its certificate".into());
    }
    if !is_signed_by(&stored.serving.cert_pem, &stored.ca.cert_pem) {
        return Rotation::Serving("the serving certificate is not signed by the CA".into());
    }
    if let Some(missing) = names.iter().find(|n| !serving.names.contains(n)) {
        return Rotation::Serving(format!("the serving certificate does not cover {missing}"));
    }
    if now < serving.not_before {
        return Rotation::Serving("the serving certificate is not valid yet".into());
    }
    if now >= serving.renew_at() {
        return Rotation::Serving(format!(
            "the serving certificate expires at {}",
            serving.not_after.to_rfc3339()
        ));
    }
    if !stored.bundle.contains(stored.ca.cert_pem.trim()) {
        return Rotation::Serving("the CA bundle does not contain the CA".into());
    }
    Rotation::Keep {
        until: ca.renew_at().min(serving.renew_at()),
    }
}

/// The PEM blocks of a bundle (certificates only).
fn pem_blocks(bundle: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in bundle.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(format!("{line}\n"));
        } else if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
            if line == "-----END CERTIFICATE-----" {
                blocks.extend(current.take());
            }
        }
    }
    blocks
}

/// A bundle of `cas` (first first), without duplicates, unreadable or expired certificates.
pub fn bundle<'a>(cas: impl IntoIterator<Item = &'a str>, now: DateTime<Utc>) -> String {
    let mut out: Vec<String> = Vec::new();
    for pem in cas {
        for block in pem_blocks(pem) {
            let live = inspect(&block).is_ok_and(|info| info.not_after > now);
            if live && !out.contains(&block) {
                out.push(block);
            }
        }
    }
    out.concat()
}

/// Renews what [`rotation`] says is due: `None` when nothing is.
pub fn renew(
    stored: Option<&Material>,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<Option<Material>, Error> {
    match rotation(stored, names, now) {
        Rotation::Keep { .. } => Ok(None),
        Rotation::Serving(_) => {
            let stored = stored.ok_or_else(|| Error::Certificate("no CA to sign with".into()))?;
            let serving = issue_serving(&stored.ca, names, now)?;
            let bundle = bundle([stored.ca.cert_pem.as_str(), stored.bundle.as_str()], now);
            Ok(Some(Material {
                ca: stored.ca.clone(),
                serving,
                bundle,
            }))
        }
        Rotation::Authority(_) => {
            let ca = new_authority(now)?;
            let serving = issue_serving(&ca, names, now)?;
            // The previous CA stays trusted until it expires: replicas may still serve its
            // certificates until they pick up the new ones.
            let previous = stored.map(|s| s.ca.cert_pem.as_str()).unwrap_or_default();
            let bundle = bundle([ca.cert_pem.as_str(), previous], now);
            Ok(Some(Material {
                ca,
                serving,
                bundle,
            }))
        }
    }
}

#[cfg(test)]
#[path = "certs_tests.rs"]
mod tests;
