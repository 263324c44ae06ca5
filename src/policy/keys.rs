//! Keys for pseudonymisation tokens and the blind subject index: the key material once loaded,
//! and the keyed functions over it. Pure: where keys come from (files, the environment) is
//! `app::keystore`'s business.
//!
//! Each agreement that tokenises has its own 256-bit keys, versioned: new transfers use the
//! highest version; older versions stay loaded so earlier tokens can be re-derived for checks.
//! A separate gateway-wide index key makes the blind subject index.
//!
//! No type here prints key material: `Debug` shows ids and versions only.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::nhs_number::NhsNumber;

type HmacSha256 = Hmac<Sha256>;

const TOKEN_DOMAIN: &[u8] = b"isa-gateway.token.v1\0";
const INDEX_DOMAIN: &[u8] = b"isa-gateway.subject-index.v1\0";
const REFERENCE_DOMAIN: &[u8] = b"isa-gateway.reference.v1\0";

fn keyed(material: &[u8; 32]) -> HmacSha256 {
    // HMAC accepts keys of any length; 32 bytes cannot fail.
    <HmacSha256 as Mac>::new_from_slice(material).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// One version of one agreement's token key, ready to use.
#[derive(Clone)]
pub struct AgreementKey {
    agreement_id: String,
    version: u32,
    mac: HmacSha256,
}

impl fmt::Debug for AgreementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgreementKey")
            .field("agreement_id", &self.agreement_id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl AgreementKey {
    pub fn from_bytes(agreement_id: &str, version: u32, material: &[u8; 32]) -> Self {
        Self {
            agreement_id: agreement_id.to_owned(),
            version,
            mac: keyed(material),
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// `agreement/<id>/v<N>`: what the ledger records as the key used.
    pub fn key_ref(&self) -> String {
        format!("agreement/{}/v{}", self.agreement_id, self.version)
    }

    /// `pt-v<version>-<32 hex>`: HMAC-SHA256 over a domain tag and the value, truncated to
    /// 128 bits. Stable for a key version; unrelated under another agreement's key.
    pub fn token(&self, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(TOKEN_DOMAIN);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("pt-v{}-{}", self.version, hex::encode(&digest[..16]))
    }
}

/// The gateway-wide key for the blind subject index.
#[derive(Clone)]
pub struct IndexKey {
    mac: HmacSha256,
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey(..)")
    }
}

impl IndexKey {
    pub fn from_bytes(material: &[u8; 32]) -> Self {
        Self { mac: keyed(material) }
    }

    /// What the ledger keeps of a reference a sender or a director typed (a case-record id, an
    /// evidence reference, an idempotency key): `ref:` and a keyed hash, never the text, which
    /// could be anything — an NHS number, a name. Whoever holds the reference can show it is the
    /// one recorded; nobody can read it back out of the ledger.
    pub fn reference(&self, text: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(REFERENCE_DOMAIN);
        mac.update(text.as_bytes());
        format!("ref:{}", &hex::encode(mac.finalize().into_bytes())[..32])
    }

    /// The keyed hash (hex) under which a person's disclosures are indexed.
    pub fn index(&self, nhs_number: &NhsNumber) -> String {
        let mut mac = self.mac.clone();
        mac.update(INDEX_DOMAIN);
        mac.update(nhs_number.digits().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Every loaded key.
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    agreements: BTreeMap<String, Vec<AgreementKey>>,
    index: Option<IndexKey>,
}

impl KeyRing {
    /// The version new transfers use.
    pub fn current(&self, agreement_id: &str) -> Option<&AgreementKey> {
        self.agreements.get(agreement_id).and_then(|v| v.last())
    }

    pub fn versions(&self, agreement_id: &str) -> &[AgreementKey] {
        self.agreements.get(agreement_id).map_or(&[], Vec::as_slice)
    }

    pub fn index(&self) -> Option<&IndexKey> {
        self.index.as_ref()
    }

    pub fn insert(&mut self, key: AgreementKey) {
        let v = self.agreements.entry(key.agreement_id.clone()).or_default();
        v.push(key);
        v.sort_by_key(|k| k.version);
    }

    pub fn set_index(&mut self, key: IndexKey) {
        self.index = Some(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_token() {
        // HMAC-SHA256(key = 32 bytes of 0x0b, "isa-gateway.token.v1\0" || "9434765919"), first 16
        // bytes. Computed independently with Python's hmac module.
        let key = AgreementKey::from_bytes("a", 1, &[0x0b; 32]);
        assert_eq!(key.token("9434765919"), KNOWN_TOKEN);
    }
    const KNOWN_TOKEN: &str = "pt-v1-eb3798d8f45697b213ef28fbd31230be";

    #[test]
    fn same_value_same_token_other_agreement_other_token() {
        let a1 = AgreementKey::from_bytes("a", 1, &[1; 32]);
        let a1_again = AgreementKey::from_bytes("a", 1, &[1; 32]);
        let b1 = AgreementKey::from_bytes("b", 1, &[2; 32]);
        assert_eq!(a1.token("9990000018"), a1_again.token("9990000018"));
        assert_ne!(a1.token("9990000018"), b1.token("9990000018"));
        assert!(a1.token("9990000018").starts_with("pt-v1-"));
    }

    #[test]
    fn debug_shows_no_material() {
        let k = AgreementKey::from_bytes("a", 3, &[0xab; 32]);
        let text = format!("{k:?} {:?}", IndexKey::from_bytes(&[0xab; 32]));
        assert!(!text.to_lowercase().contains("abab"), "{text}");
        assert!(text.contains("version: 3"));
    }
}
