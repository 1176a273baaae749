//! Failed logins, counted on each manager: per account name, so that
//! repeated failures lock the account (the lock is then written to the
//! store, so every manager honours it), and per remote address, so one
//! client guessing across many names is slowed down with 429s.
//!
//! Unknown names are counted like real ones, so a lockout does not tell
//! which names exist. The table is bounded: entries whose window passed
//! are dropped, and at capacity the oldest go first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures from one address within [`ADDRESS_WINDOW`] before it must wait.
pub const ADDRESS_FAILURES: u32 = 30;
pub const ADDRESS_WINDOW: Duration = Duration::from_secs(60);
const CAPACITY: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Lockout {
    accounts: Mutex<HashMap<String, Failures>>,
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

/// Why a login may not be tried now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The account is locked for this long still.
    Account(Duration),
    /// The address failed too often; retry after this long.
    Address(Duration),
}

fn prune<K: Clone + Eq + std::hash::Hash>(
    map: &mut HashMap<K, Failures>,
    window: Duration,
    now: Instant,
) {
    if map.len() < CAPACITY {
        return;
    }
    map.retain(|_, f| {
        f.locked_until.is_some_and(|l| l > now) || now.duration_since(f.first) < window
    });
    if map.len() >= CAPACITY {
        let mut ages: Vec<(K, Instant)> = map.iter().map(|(k, f)| (k.clone(), f.first)).collect();
        ages.sort_by_key(|(_, t)| *t);
        for (k, _) in ages.into_iter().take(CAPACITY / 10) {
            map.remove(&k);
        }
    }
}

impl Lockout {
    /// Whether `account` may try a password from `addr` now.
    pub fn check(&self, account: &str, addr: Option<IpAddr>, now: Instant) -> Result<(), Refusal> {
        if let Some(ip) = addr {
            let addrs = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = addrs.get(&ip).and_then(|f| f.locked_until) {
                if l > now {
                    return Err(Refusal::Address(l - now));
                }
            }
        }
        let accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = accounts.get(account).and_then(|f| f.locked_until) {
            if l > now {
                return Err(Refusal::Account(l - now));
            }
        }
        Ok(())
    }

    /// Counts a failure; `true` when it locked the account just now (the
    /// caller then records the lock in the store).
    pub fn failed(
        &self,
        account: &str,
        addr: Option<IpAddr>,
        limit: u32,
        lock_for: Duration,
        now: Instant,
    ) -> bool {
        if let Some(ip) = addr {
            let mut addrs = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
            prune(&mut addrs, ADDRESS_WINDOW, now);
            let f = addrs.entry(ip).or_insert(Failures {
                count: 0,
                first: now,
                locked_until: None,
            });
            if now.duration_since(f.first) >= ADDRESS_WINDOW {
                *f = Failures {
                    count: 0,
                    first: now,
                    locked_until: None,
                };
            }
            f.count += 1;
            if f.count >= ADDRESS_FAILURES {
                f.locked_until = Some(now + ADDRESS_WINDOW);
            }
        }
        if limit == 0 {
            return false;
        }
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut accounts, lock_for, now);
        let f = accounts.entry(account.to_string()).or_insert(Failures {
            count: 0,
            first: now,
            locked_until: None,
        });
        if f.locked_until.is_some_and(|l| l <= now) {
            // A lock that ran out starts a fresh count.
            *f = Failures {
                count: 0,
                first: now,
                locked_until: None,
            };
        }
        f.count += 1;
        if f.count >= limit && f.locked_until.is_none() {
            f.locked_until = Some(now + lock_for);
            return true;
        }
        false
    }

    /// A correct password clears the account's count (not the address's).
    pub fn succeeded(&self, account: &str) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        accounts.remove(account);
    }

    /// An admin lifted the lock.
    pub fn unlock(&self, account: &str) {
        self.succeeded(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_locks_after_the_limit_and_unlocks_after_the_duration() {
        let l = Lockout::default();
        let t0 = Instant::now();
        let lock = Duration::from_secs(60);
        for i in 0..4 {
            assert!(!l.failed("alice", None, 5, lock, t0), "failure {i}");
            assert!(l.check("alice", None, t0).is_ok());
        }
        assert!(l.failed("alice", None, 5, lock, t0), "the fifth locks");
        assert_eq!(l.check("alice", None, t0), Err(Refusal::Account(lock)));
        // Another account is not affected.
        assert!(l.check("bob", None, t0).is_ok());
        // After the duration, a fresh count.
        let later = t0 + lock;
        assert!(l.check("alice", None, later).is_ok());
        assert!(!l.failed("alice", None, 5, lock, later));
    }

    #[test]
    fn a_success_resets_the_count() {
        let l = Lockout::default();
        let t0 = Instant::now();
        let lock = Duration::from_secs(60);
        for _ in 0..4 {
            l.failed("alice", None, 5, lock, t0);
        }
        l.succeeded("alice");
        for _ in 0..4 {
            assert!(!l.failed("alice", None, 5, lock, t0));
        }
    }

    #[test]
    fn an_address_guessing_many_names_must_wait() {
        let l = Lockout::default();
        let t0 = Instant::now();
        let ip: IpAddr = [127, 0, 0, 9].into();
        for i in 0..ADDRESS_FAILURES {
            assert!(l.check(&format!("u{i}"), Some(ip), t0).is_ok());
            l.failed(&format!("u{i}"), Some(ip), 5, Duration::from_secs(60), t0);
        }
        assert!(matches!(
            l.check("anyone", Some(ip), t0),
            Err(Refusal::Address(_))
        ));
        assert!(l.check("anyone", Some([127, 0, 0, 10].into()), t0).is_ok());
        assert!(l.check("anyone", Some(ip), t0 + ADDRESS_WINDOW).is_ok());
    }
}
