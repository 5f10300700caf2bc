//! HTTP basic authentication against the bcrypt hashes of the web config's `basic_auth_users`.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), so a verified (user, hash, password)
//! is remembered: a remote-writer sending the same credentials with every request pays for one
//! bcrypt, not one per request. The cache holds only successes, keyed by an HMAC (with a key drawn
//! at startup) of user, hash and password, so it never holds a password and a changed hash
//! invalidates its entries. A wrong password is never cached: each costs a bcrypt, and at most
//! [`Authenticator::new`]'s `bcrypt_concurrency` of them run at once on blocking threads, so a
//! flood of wrong passwords takes that share of the CPU, while callers already verified are
//! answered from the cache. At most [`MAX_WAITING_PER_SLOT`] checks per slot wait for one; beyond
//! that a request is answered at once ([`Verdict::Busy`], 503, which remote-write clients retry)
//! rather than holding its connection in a queue that a flood of bad passwords would otherwise
//! fill. An unknown user is checked against a dummy hash of the same cost, so timing does not
//! reveal which users exist.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::HeaderValue;
use base64::Engine;
use ring::hmac;
use tokio::sync::Semaphore;

/// Verified credentials remembered at most; the oldest is forgotten first.
const VERIFIED_CACHE_ENTRIES: usize = 1024;
/// Checks that may wait for a bcrypt slot, per slot.
pub const MAX_WAITING_PER_SLOT: usize = 16;
/// Cost of the hash unknown users are checked against (exporter-toolkit's, htpasswd's default).
const DUMMY_HASH_COST: u32 = 10;

/// Checks `Authorization: Basic` headers; shared by all connections.
pub struct Authenticator {
    key: hmac::Key,
    verified: Mutex<Verified>,
    bcrypt_slots: Arc<Semaphore>,
    /// Checks waiting for a bcrypt slot, and how many may.
    waiting: AtomicUsize,
    max_waiting: usize,
    dummy_hash: Arc<OnceLock<String>>,
    stats: AuthStats,
}

/// The outcome of a credentials check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A configured user with their password.
    Allowed,
    /// No, malformed or wrong credentials.
    Denied,
    /// Not checked: too many password checks are waiting already.
    Busy,
}

/// Counts a check as waiting for a bcrypt slot until dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct AuthStats {
    /// Requests let through by their credentials.
    pub allowed: AtomicU64,
    /// Requests refused (no, malformed or wrong credentials).
    pub denied: AtomicU64,
    /// Requests answered 503 because too many password checks were waiting.
    pub busy: AtomicU64,
    /// bcrypt comparisons computed (each allowed request not answered from the cache, each denied one
    /// with credentials).
    pub bcrypt_checks: AtomicU64,
}

#[derive(Default)]
struct Verified {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl Verified {
    fn insert(&mut self, k: [u8; 32]) {
        if self.set.insert(k) {
            self.order.push_back(k);
            if self.order.len() > VERIFIED_CACHE_ENTRIES {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("bcrypt_slots", &self.bcrypt_slots.available_permits()).finish()
    }
}

impl Authenticator {
    /// At most `bcrypt_concurrency` (at least 1) password hashes are computed at once.
    pub fn new(bcrypt_concurrency: usize) -> Result<Authenticator, ring::error::Unspecified> {
        let slots = bcrypt_concurrency.max(1);
        Ok(Authenticator {
            waiting: AtomicUsize::new(0),
            max_waiting: slots * MAX_WAITING_PER_SLOT,
            key: hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())?,
            verified: Mutex::new(Verified::default()),
            bcrypt_slots: Arc::new(Semaphore::new(slots)),
            dummy_hash: Arc::new(OnceLock::new()),
            stats: AuthStats::default(),
        })
    }

    /// The counters.
    pub fn stats(&self) -> &AuthStats {
        &self.stats
    }

    /// Whether `authorization` carries a user of `users` with their password.
    pub async fn check(&self, users: &BTreeMap<String, String>, authorization: Option<&HeaderValue>) -> Verdict {
        let verdict = self.verify(users, authorization).await;
        let counter = match verdict {
            Verdict::Allowed => &self.stats.allowed,
            Verdict::Denied => &self.stats.denied,
            Verdict::Busy => &self.stats.busy,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        verdict
    }

    async fn verify(&self, users: &BTreeMap<String, String>, authorization: Option<&HeaderValue>) -> Verdict {
        let Some((user, password)) = authorization.and_then(parse_basic) else { return Verdict::Denied };
        let hash = std::str::from_utf8(&user).ok().and_then(|u| users.get(u));
        let cache_key = hash.map(|h| self.cache_key(&user, h, &password));
        if let Some(k) = &cache_key {
            if self.lock().set.contains(k) {
                return Verdict::Allowed;
            }
        }
        let waiting = Waiting(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            return Verdict::Busy;
        }
        let Ok(slot) = Arc::clone(&self.bcrypt_slots).acquire_owned().await else { return Verdict::Denied };
        drop(waiting);
        self.stats.bcrypt_checks.fetch_add(1, Ordering::Relaxed);
        let hash = hash.cloned();
        let dummy = Arc::clone(&self.dummy_hash);
        // The permit moves into the task: a client that goes away does not free its slot before the
        // hash is done.
        let matched = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            match hash {
                Some(h) => bcrypt::verify(&password, &h).unwrap_or(false),
                None => {
                    let d =
                        dummy.get_or_init(|| bcrypt::hash(b"strata-unknown-user", DUMMY_HASH_COST).unwrap_or_default());
                    let _ = bcrypt::verify(&password, d);
                    false
                }
            }
        })
        .await
        .unwrap_or(false);
        if !matched {
            return Verdict::Denied;
        }
        if let Some(k) = cache_key {
            self.lock().insert(k);
        }
        Verdict::Allowed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Verified> {
        // The set stays consistent whatever panicked while it was held.
        self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cache_key(&self, user: &[u8], hash: &str, password: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [user, hash.as_bytes(), password] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

/// User and password of an `Authorization: Basic` value (scheme case-insensitive, split at the first
/// `:`), as Go's `Request.BasicAuth` reads it.
fn parse_basic(value: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    let bytes = value.as_bytes();
    let (scheme, rest) = bytes.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let (user, password) = decoded.split_at(colon);
    Some((user.to_vec(), password.get(1..)?.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let text = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {text}")).unwrap()
    }

    #[test]
    fn basic_header_parsing() {
        assert_eq!(parse_basic(&header("a", "b:c")), Some((b"a".to_vec(), b"b:c".to_vec())));
        assert_eq!(parse_basic(&HeaderValue::from_static("bAsIc YTo=")), Some((b"a".to_vec(), Vec::new())));
        for bad in ["Bearer YTpi", "Basic !!!", "Basic YWI=", "Basic"] {
            assert_eq!(parse_basic(&HeaderValue::from_static(bad)), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn verifies_and_caches_only_successes() {
        let auth = Authenticator::new(1).unwrap();
        let hash = bcrypt::hash("secret", 4).unwrap();
        let users = BTreeMap::from([("alice".to_owned(), hash.clone())]);
        assert_eq!(auth.check(&users, None).await, Verdict::Denied);
        assert_eq!(auth.check(&users, Some(&header("alice", "wrong"))).await, Verdict::Denied);
        assert_eq!(auth.check(&users, Some(&header("bob", "secret"))).await, Verdict::Denied);
        assert!(auth.lock().set.is_empty(), "failures are not cached");
        assert_eq!(auth.check(&users, Some(&header("alice", "secret"))).await, Verdict::Allowed);
        assert_eq!(auth.lock().set.len(), 1);
        assert_eq!(auth.check(&users, Some(&header("alice", "secret"))).await, Verdict::Allowed);
        assert_eq!(auth.stats().bcrypt_checks.load(Ordering::Relaxed), 3, "the second success came from the cache");
        // Another hash for the same user: the cached entry does not apply.
        let users = BTreeMap::from([("alice".to_owned(), bcrypt::hash("other", 4).unwrap())]);
        assert_eq!(auth.check(&users, Some(&header("alice", "secret"))).await, Verdict::Denied);
    }

    #[tokio::test]
    async fn checks_beyond_the_waiting_bound_are_busy_but_cached_ones_pass() {
        let auth = Arc::new(Authenticator::new(1).unwrap());
        let users = Arc::new(BTreeMap::from([("alice".to_owned(), bcrypt::hash("secret", 4).unwrap())]));
        assert_eq!(auth.check(&users, Some(&header("alice", "secret"))).await, Verdict::Allowed);
        // The only bcrypt slot is taken: every uncached check waits.
        let held = Arc::clone(&auth.bcrypt_slots).acquire_owned().await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..MAX_WAITING_PER_SLOT {
            let (auth, users) = (Arc::clone(&auth), Arc::clone(&users));
            waiters.push(tokio::spawn(async move { auth.check(&users, Some(&header("alice", "nope"))).await }));
        }
        for _ in 0..1000 {
            if auth.waiting.load(Ordering::Acquire) == MAX_WAITING_PER_SLOT {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(auth.waiting.load(Ordering::Acquire), MAX_WAITING_PER_SLOT);
        assert_eq!(auth.check(&users, Some(&header("alice", "nope"))).await, Verdict::Busy);
        assert_eq!(auth.check(&users, Some(&header("alice", "secret"))).await, Verdict::Allowed, "cached");
        drop(held);
        for w in waiters {
            assert_eq!(w.await.unwrap(), Verdict::Denied);
        }
        assert_eq!(auth.waiting.load(Ordering::Acquire), 0);
    }

    #[test]
    fn cache_is_bounded() {
        let mut v = Verified::default();
        for i in 0..(VERIFIED_CACHE_ENTRIES + 10) {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            v.insert(k);
        }
        assert_eq!((v.set.len(), v.order.len()), (VERIFIED_CACHE_ENTRIES, VERIFIED_CACHE_ENTRIES));
        assert!(!v.set.contains(&[0u8; 32]));
    }
}
