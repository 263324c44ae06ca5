//! Keys for pseudonymisation tokens and the blind subject index: the key material once loaded,
//! and the keyed functions over it. Pure: where keys come from (files, the environment) is
//! `app::keystore`'s business.
//!
//! Each agreement that tokenises has its own 256-bit keys, versioned: new transfers use the
//! highest version; older versions stay loaded so earlier tokens can be re-derived for checks.
//! A gateway-wide index key makes the keyed hashes of typed references. The blind subject index
//! is made with keys per agreement and calendar year (UTC, [`SubjectKeys`]): when an agreement's
//! retention period for a year has passed, destroying that year's key makes its entries
//! unlinkable to a person (crypto-shredding) while the ledger's hashes stay intact.
//!
//! No type here prints key material: `Debug` shows ids and versions only.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::nhs_number::NhsNumber;

type HmacSha256 = Hmac<Sha256>;

const TOKEN_DOMAIN: &[u8] = b"isa-gateway.token.v1\0";
const INDEX_DOMAIN: &[u8] = b"isa-gateway.subject-index.v1\0";
const REFERENCE_DOMAIN: &[u8] = b"isa-gateway.reference.v1\0";
const SUBJECT_RATCHET_DOMAIN: &[u8] = b"isa-gateway.subject-key.next.v1\0";
const FINGERPRINT_DOMAIN: &[u8] = b"isa-gateway.subject-key.fingerprint.v1\0";

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

    /// A fingerprint of this key (128 bits, hex): a keyed hash of a fixed label, so two holders
    /// can tell whether they hold the same key without either showing it.
    pub fn fingerprint(&self) -> String {
        let mut mac = self.mac.clone();
        mac.update(FINGERPRINT_DOMAIN);
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// The keyed hash (hex) under which a person's disclosures are indexed.
    pub fn index(&self, nhs_number: &NhsNumber) -> String {
        let mut mac = self.mac.clone();
        mac.update(INDEX_DOMAIN);
        mac.update(nhs_number.digits().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Subject-index keys by scope and calendar year (UTC). A scope is an agreement id, or
/// [`SUBJECT_ACCESS_SCOPE`] for the lookups themselves. Each scope keeps one seed: the key of its
/// earliest live year. A later year's key is derived forward from it ([`next_subject_key`]), never
/// backward, so replacing the seed with the next year's key destroys that year's key for good
/// while every later one stays derivable (a one-way ratchet). Several gateways that start from
/// the same seed derive the same keys, and no key needs making at the turn of a year.
///
/// Shared between clones of the ring, so retention in a running gateway takes effect at once.
#[derive(Default, Clone)]
pub struct SubjectKeys(Arc<RwLock<BTreeMap<String, SubjectSeed>>>);

struct SubjectSeed {
    first_year: i16,
    material: Zeroizing<[u8; 32]>,
}

/// The scope under which subject access lookups are indexed (they belong to no agreement).
pub const SUBJECT_ACCESS_SCOPE: &str = "subject-access";

/// The most years a key is derived forward from its seed.
const MAX_SUBJECT_YEARS: i16 = 200;

/// The next year's subject-index key material from this year's: HMAC-SHA256 under this year's
/// key over a domain tag. One-way: this year's cannot be recovered from the next.
pub fn next_subject_key(material: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut mac = keyed(material);
    mac.update(SUBJECT_RATCHET_DOMAIN);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// `year`'s key material from a seed that is `first_year`'s; `None` for a year before the seed
/// (destroyed, or never made) or too far after it.
pub fn subject_key_material(first_year: i16, seed: &[u8; 32], year: i16) -> Option<Zeroizing<[u8; 32]>> {
    if year < first_year || i32::from(year) - i32::from(first_year) > i32::from(MAX_SUBJECT_YEARS) {
        return None;
    }
    let mut k = Zeroizing::new(*seed);
    for _ in first_year..year {
        k = next_subject_key(&k);
    }
    Some(k)
}

impl fmt::Debug for SubjectKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SubjectKeys").field(&self.scopes()).finish()
    }
}

impl SubjectKeys {
    /// `scope`'s key for `year`; `None` if the scope has no seed or that year's key is destroyed.
    pub fn get(&self, scope: &str, year: i16) -> Option<IndexKey> {
        let map = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let seed = map.get(scope)?;
        subject_key_material(seed.first_year, &seed.material, year).map(|m| IndexKey::from_bytes(&m))
    }

    /// Sets `scope`'s seed: the key of `first_year`, its earliest live year. One way only: a seed
    /// older than the one held is ignored (a destroyed year never comes back into memory).
    pub fn set(&self, scope: &str, first_year: i16, material: &[u8; 32]) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if map.get(scope).is_some_and(|held| held.first_year > first_year) {
            return;
        }
        map.insert(
            scope.to_owned(),
            SubjectSeed {
                first_year,
                material: Zeroizing::new(*material),
            },
        );
    }

    /// Each scope with its earliest live year.
    pub fn scopes(&self) -> Vec<(String, i16)> {
        let map = self.0.read().unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(s, seed)| (s.clone(), seed.first_year)).collect()
    }
}

/// Every loaded key.
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    agreements: BTreeMap<String, Vec<AgreementKey>>,
    index: Option<IndexKey>,
    subject: SubjectKeys,
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

    /// The subject-index keys per agreement and year.
    pub fn subject(&self) -> &SubjectKeys {
        &self.subject
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
    fn subject_keys_ratchet_forward_only() {
        let keys = SubjectKeys::default();
        keys.set("gp", 2026, &[7; 32]);
        let n = NhsNumber::parse("9434765919").unwrap();
        let k2026 = keys.get("gp", 2026).unwrap().index(&n);
        let k2027 = keys.get("gp", 2027).unwrap().index(&n);
        assert_ne!(k2026, k2027, "each year its own key");
        assert!(keys.get("gp", 2025).is_none() && keys.get("other", 2026).is_none());
        // Retention: the seed becomes 2027's key; 2026's is gone, 2027's is unchanged.
        keys.set("gp", 2027, &next_subject_key(&[7; 32]));
        assert!(keys.get("gp", 2026).is_none());
        assert_eq!(keys.get("gp", 2027).unwrap().index(&n), k2027);
        assert_eq!(keys.scopes(), [("gp".to_owned(), 2027)]);
        // One way: the old seed set again (a stale copy) does not bring 2026 back.
        keys.set("gp", 2026, &[7; 32]);
        assert!(keys.get("gp", 2026).is_none());
        assert!(keys.get("gp", i16::MAX).is_none() && keys.get("gp", i16::MIN).is_none());
        assert!(!format!("{keys:?}").contains("0707"));
    }

    #[test]
    fn debug_shows_no_material() {
        let k = AgreementKey::from_bytes("a", 3, &[0xab; 32]);
        let text = format!("{k:?} {:?}", IndexKey::from_bytes(&[0xab; 32]));
        assert!(!text.to_lowercase().contains("abab"), "{text}");
        assert!(text.contains("version: 3"));
    }
}
