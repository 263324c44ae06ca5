//! Tokens already verified, so that a case system sending many transfers on one token does not
//! pay a signature verification and two JSON parses per request.
//!
//! Keyed by SHA-256 of the calling system's id and the whole token (a token that differs by one
//! byte, or the same token through another system, is verified afresh); kept only while the token
//! would still pass (`exp` plus the leeway: every other check a token passed once — signature,
//! issuer, audience, `nbf`, its lifetime — stays passed as time goes on). Bounded: when full, the
//! expired are dropped, and a new token that still finds no room is verified every time rather
//! than pushing one out. Only successes are kept; refusals are not remembered.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

use super::auth::User;

/// How many verified tokens are kept at most (a few hundred bytes each).
pub const CAPACITY: usize = 4096;

#[derive(Default)]
pub struct TokenCache {
    verified: Mutex<HashMap<[u8; 32], (User, u64)>>,
}

impl TokenCache {
    pub fn key(system: &str, token: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(system.as_bytes());
        h.update([0]);
        h.update(token.as_bytes());
        h.finalize().into()
    }

    /// The user of a token verified before, if it is still good at `now` (Unix seconds).
    pub fn get(&self, key: &[u8; 32], now: u64) -> Option<User> {
        let map = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key)
            .filter(|(_, until)| now <= *until)
            .map(|(user, _)| user.clone())
    }

    /// Keeps a verified token's user until `until` (Unix seconds).
    pub fn put(&self, key: [u8; 32], user: User, until: u64, now: u64) {
        let mut map = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CAPACITY {
            map.retain(|_, (_, u)| now <= *u);
        }
        if map.len() < CAPACITY {
            map.insert(key, (user, until));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(cache: &TokenCache) -> usize {
        cache.verified.lock().unwrap().len()
    }

    fn user(sub: &str) -> User {
        User {
            issuer: "https://idp".into(),
            sub: sub.into(),
            roles: Vec::new(),
        }
    }

    #[test]
    fn a_token_is_kept_until_it_would_expire_and_only_for_its_system() {
        let cache = TokenCache::default();
        let key = TokenCache::key("tt-case-system", "a.b.c");
        cache.put(key, user("sam"), 100, 10);
        assert_eq!(cache.get(&key, 100).map(|u| u.sub), Some("sam".into()));
        assert_eq!(cache.get(&key, 101), None);
        assert_eq!(cache.get(&TokenCache::key("other-system", "a.b.c"), 50), None);
        assert_eq!(cache.get(&TokenCache::key("tt-case-system", "a.b.d"), 50), None);
    }

    #[test]
    fn when_full_the_expired_go_and_new_tokens_find_no_room_rather_than_push_one_out() {
        let cache = TokenCache::default();
        for i in 0..CAPACITY {
            let until = if i % 2 == 0 { 5 } else { 100 };
            cache.put(TokenCache::key("s", &i.to_string()), user("u"), until, 1);
        }
        assert_eq!(held(&cache), CAPACITY);
        // At 10 the even half has expired: the next one finds room.
        cache.put(TokenCache::key("s", "new"), user("new"), 100, 10);
        assert_eq!(held(&cache), CAPACITY / 2 + 1);
        for i in 0..CAPACITY {
            cache.put(TokenCache::key("s", &format!("more{i}")), user("u"), 100, 10);
        }
        assert_eq!(held(&cache), CAPACITY);
        assert!(
            cache.get(&TokenCache::key("s", "new"), 10).is_some(),
            "nothing live was pushed out"
        );
    }
}
