//! Development and test certificates, made with rcgen.
//!
//! `isa-gateway certs dev` writes a complete development PKI; the integration tests build the
//! same in memory. Nothing here is for production: the CA's name says so, and the production
//! profile refuses to start with it (see [`DEV_CA_COMMON_NAME`]).

use std::net::IpAddr;

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

/// The common name of every development CA. The production profile refuses a client CA or a
/// server certificate issued under this name.
pub const DEV_CA_COMMON_NAME: &str = "isa-gateway DEVELOPMENT ONLY CA";
/// The URI prefix of system identities in development certificates.
pub const IDENTITY_PREFIX: &str = "urn:isa-gateway:system:";
/// The identity of the gateway's own outbound client certificate in development.
pub const GATEWAY_CLIENT_IDENTITY: &str = "urn:isa-gateway:gateway";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// A private key in PEM. No `Debug`, no `Display`: it cannot be printed by accident.
pub struct KeyPem(String);

impl KeyPem {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A certificate with its key.
pub struct Issued {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key: KeyPem,
    pub serial: SerialNumber,
}

impl Issued {
    /// Certificate then key, as curl's `--cert` and reqwest's `Identity::from_pem` accept.
    pub fn combined_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key.expose())
    }
}

/// How long an issued certificate is valid, relative to now.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    pub fn days_from_now(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }

    /// Already expired: for tests of expiry.
    pub fn expired() -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::days(30),
            not_after: now - Duration::days(1),
        }
    }
}

/// A certificate authority able to issue server and client certificates and CRLs.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    key_pem: KeyPem,
}

impl Ca {
    pub fn new(common_name: &str, validity: Validity) -> Result<Self, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(random_serial());
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = KeyPem(key.serialize_pem());
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            key_pem,
        })
    }

    /// A development CA, named so that production refuses it.
    pub fn development() -> Result<Self, PkiError> {
        Self::new(DEV_CA_COMMON_NAME, Validity::days_from_now(365))
    }

    /// A server certificate (ServerAuth) for the given DNS names and IP addresses.
    pub fn issue_server(&self, names: &[&str], validity: Validity) -> Result<Issued, PkiError> {
        let sans = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*n).try_into()?)),
            })
            .collect::<Result<Vec<_>, rcgen::Error>>()?;
        self.issue(
            names.first().copied().unwrap_or("server"),
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            validity,
        )
    }

    /// A client certificate (ClientAuth) carrying `identity` as its URI subject alternative name.
    pub fn issue_client(&self, identity: &str, validity: Validity) -> Result<Issued, PkiError> {
        let cn = identity.rsplit(':').next().unwrap_or(identity);
        let sans = vec![SanType::URI(identity.try_into()?)];
        self.issue(cn, sans, ExtendedKeyUsagePurpose::ClientAuth, validity)
    }

    fn issue(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        eku: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![eku];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key: KeyPem(key.serialize_pem()),
            serial,
        })
    }

    /// A CRL revoking the given certificates, valid for `days`.
    pub fn crl(&self, revoked: &[&SerialNumber], days: i64) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(days),
            crl_number: random_serial(),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: (*serial).clone(),
                    revocation_time: now - Duration::minutes(5),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    pub fn key(&self) -> &KeyPem {
        &self.key_pem
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn random_serial() -> SerialNumber {
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[0] &= 0x7f; // keep the serial positive
    SerialNumber::from_slice(&bytes)
}

/// What `certs dev` wrote, for messages and for the dev start-up.
#[derive(Debug)]
pub struct DevPkiLayout {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// Writes a development PKI into `dir`:
///
/// ```text
/// ca.crt  ca.key                     the development CA (the key is 0600)
/// ca.crl                             its CRL; revokes clients/revoked-example
/// server.crt  server.key             the gateway's server certificate: localhost, 127.0.0.1, ::1
/// clients/<system>.crt|.key          one client certificate per registered system
/// clients/revoked-example.crt|.key   a client certificate the CRL revokes
/// gateway-client.crt|.key            the gateway's own client certificate for HTTPS destinations
/// token-issuer.key  .pub.pem         the development token issuer's ES256 key pair (`token dev`)
/// ```
pub fn write_dev_pki(dir: &Path, system_ids: &[&str]) -> Result<DevPkiLayout, PkiError> {
    let ca = Ca::development()?;
    let year = Validity::days_from_now(365);
    let server = ca.issue_server(&["localhost", "127.0.0.1", "::1"], year)?;
    let revoked = ca.issue_client(&format!("{IDENTITY_PREFIX}revoked-example"), year)?;
    let gateway = ca.issue_client(GATEWAY_CLIENT_IDENTITY, year)?;
    let crl = ca.crl(&[&revoked.serial], 365)?;

    let mut files = Vec::new();
    let mut put = |rel: &str, text: &str, secret: bool| -> Result<(), PkiError> {
        let path = dir.join(rel);
        write_file(&path, text.as_bytes(), secret).map_err(|source| PkiError::Write {
            path: path.clone(),
            source,
        })?;
        files.push(path);
        Ok(())
    };
    put("ca.crt", &ca.cert_pem, false)?;
    put("ca.key", ca.key().expose(), true)?;
    put("ca.crl", &crl, false)?;
    put("server.crt", &server.cert_pem, false)?;
    put("server.key", server.key.expose(), true)?;
    put("gateway-client.crt", &gateway.cert_pem, false)?;
    put("gateway-client.key", gateway.key.expose(), true)?;
    let issuer = KeyPair::generate()?;
    put("token-issuer.key", &issuer.serialize_pem(), true)?;
    put("token-issuer.pub.pem", &issuer.public_key_pem(), false)?;
    put("clients/revoked-example.crt", &revoked.cert_pem, false)?;
    put("clients/revoked-example.key", revoked.key.expose(), true)?;
    for id in system_ids {
        let client = ca.issue_client(&format!("{IDENTITY_PREFIX}{id}"), year)?;
        put(&format!("clients/{id}.crt"), &client.cert_pem, false)?;
        put(&format!("clients/{id}.key"), client.key.expose(), true)?;
    }
    Ok(DevPkiLayout {
        dir: dir.to_path_buf(),
        files,
    })
}

pub use crate::platform::fs::write_file;

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn dev_pki_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let layout = write_dev_pki(dir.path(), &["case-system"]).unwrap();
        for f in &layout.files {
            let mode = fs::metadata(f).unwrap().permissions().mode() & 0o777;
            if f.extension().is_some_and(|e| e == "key") {
                assert_eq!(mode, 0o600, "{}", f.display());
            } else {
                assert_eq!(mode, 0o644, "{}", f.display());
            }
        }
        assert!(dir.path().join("clients/case-system.crt").is_file());
    }
}
