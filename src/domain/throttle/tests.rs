use std::net::IpAddr;
use std::time::Duration;

use super::counters::lock;
use super::*;
use proptest::prelude::*;

fn cfg() -> ThrottleConfig {
    ThrottleConfig {
        per_account_per_hour: 10,
        per_ip_per_hour: 50,
        free_failures: 3,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
    }
}

fn ip(n: u8) -> Option<IpAddr> {
    Some(IpAddr::from([10, 0, 0, n]))
}

#[test]
fn asvs_2_2_1_the_account_limit_counts_failures_from_every_address() {
    let t = LoginThrottle::new(cfg());
    for i in 0..10u8 {
        assert_eq!(t.check("alice", ip(i), None, 0), Verdict::Allowed);
        t.record_failure("alice", ip(i), None, 0);
    }
    match t.check("alice", ip(99), None, 0) {
        Verdict::Throttled {
            retry_after_secs,
            newly,
        } => {
            assert!(newly);
            // Allowed again an hour after the oldest failure.
            assert_eq!(retry_after_secs, 3600);
        }
        v => panic!("{v:?}"),
    }
    assert!(matches!(
        t.check("alice", ip(99), None, 1),
        Verdict::Throttled { newly: false, .. }
    ));
    assert!(matches!(
        t.check("alice", ip(99), None, 3_599_999),
        Verdict::Throttled { .. }
    ));
    assert_eq!(t.check("alice", ip(99), None, 3_600_000), Verdict::Allowed);
    // Another account is untouched.
    assert_eq!(t.check("bob", ip(99), None, 0), Verdict::Allowed);
}

#[test]
fn delays_grow_per_address_and_not_for_the_victims_own_address() {
    let t = LoginThrottle::new(cfg());
    let mut now = 0;
    for _ in 0..3 {
        t.record_failure("alice", ip(1), None, now);
    }
    assert!(matches!(
        t.check("alice", ip(1), None, now),
        Verdict::Throttled {
            retry_after_secs: 1,
            ..
        }
    ));
    assert_eq!(t.check("alice", ip(2), None, now), Verdict::Allowed);
    let mut gaps = Vec::new();
    for _ in 0..8 {
        let Verdict::Throttled {
            retry_after_secs, ..
        } = t.check("alice", ip(1), None, now)
        else {
            panic!("a delay is owed");
        };
        gaps.push(retry_after_secs);
        now += retry_after_secs as i64 * 1000;
        assert_eq!(t.check("alice", ip(1), None, now), Verdict::Allowed);
        t.record_failure("alice", ip(1), None, now);
    }
    // 1, 2, 4, … doubling, capped at max_delay (60 s), until the account limit
    // (10 an hour) takes over.
    assert_eq!(&gaps[..7], &[1, 2, 4, 8, 16, 32, 60]);
}

#[test]
fn a_success_resets_the_account_and_the_pair() {
    let t = LoginThrottle::new(cfg());
    for _ in 0..10 {
        t.record_failure("alice", ip(1), None, 0);
    }
    assert!(matches!(
        t.check("alice", ip(1), None, 0),
        Verdict::Throttled { .. }
    ));
    t.record_success("alice", ip(1), None);
    assert_eq!(t.check("alice", ip(1), None, 0), Verdict::Allowed);
}

#[test]
fn the_per_ip_limit_counts_failures_across_accounts() {
    let t = LoginThrottle::new(cfg());
    for i in 0..50 {
        t.record_failure(&format!("user{i}"), ip(7), None, 0);
    }
    assert!(matches!(
        t.check("someone-new", ip(7), None, 0),
        Verdict::Throttled { .. }
    ));
    assert_eq!(t.check("someone-new", ip(8), None, 0), Verdict::Allowed);
}

#[test]
fn ipv6_addresses_in_one_64_share_a_key() {
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(IpKey::from(a), IpKey::from(b));
    assert_ne!(IpKey::from(a), IpKey::from(c));
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(IpKey::from(mapped), IpKey::from(ip(1).unwrap()));
}

#[test]
fn prune_forgets_drained_entries() {
    let t = LoginThrottle::new(cfg());
    t.record_failure("alice", ip(1), None, 0);
    t.record_failure("alice", ip(1), Some(DeviceId([1; 16])), 0);
    assert_eq!(t.prune(0), 4);
    assert_eq!(t.prune(2 * 3_600_000), 0);
}

#[test]
fn owasp_device_cookies_a_trusted_device_is_exempt_from_the_account_lockout() {
    let t = LoginThrottle::new(cfg());
    let owner = Some(DeviceId([7; 16]));
    for i in 0..10u8 {
        t.record_failure("alice", ip(i), None, 0);
    }
    assert!(matches!(
        t.check("alice", ip(50), None, 0),
        Verdict::Throttled { .. }
    ));
    assert_eq!(t.check("alice", ip(50), owner, 0), Verdict::Allowed);
    // The device's own failures count on the device, not the account...
    for _ in 0..10 {
        assert_eq!(t.check("alice", ip(51), owner, 0), Verdict::Allowed);
        t.record_failure("alice", ip(51), owner, 0);
        lock(&t.pairs).clear();
    }
    // ...until it is locked out itself (OWASP: a device cookie on the lockout list is
    // rejected), while untrusted clients keep the account's allowance.
    assert!(matches!(
        t.check("alice", ip(52), owner, 0),
        Verdict::Throttled { .. }
    ));
    t.record_success("alice", ip(1), None);
    assert!(matches!(
        t.check("alice", ip(52), owner, 0),
        Verdict::Throttled { .. }
    ));
    assert_eq!(t.check("alice", ip(53), None, 0), Verdict::Allowed);
    // Another account's lockout does not touch this device's allowance elsewhere.
    assert_eq!(
        t.check("bob", ip(52), Some(DeviceId([8; 16])), 0),
        Verdict::Allowed
    );
}

#[test]
fn forget_drops_every_entry_kept_under_a_name() {
    let t = LoginThrottle::new(cfg());
    t.record_failure("alice", ip(1), None, 0);
    t.record_failure("alice", ip(2), None, 0);
    t.record_failure("bob", ip(1), None, 0);
    t.forget("alice");
    assert!(!lock(&t.accounts).contains_key("alice"));
    assert!(lock(&t.pairs).keys().all(|(name, _)| name != "alice"));
    assert!(lock(&t.accounts).contains_key("bob"));
}

proptest! {
    /// However failures and successes interleave, no more than the hourly limit of
    /// failures is let through in any sliding hour (between successes).
    #[test]
    fn never_more_than_the_account_limit_per_hour(
        steps in proptest::collection::vec((0u64..120_000, any::<bool>(), 0u8..4), 1..300)
    ) {
        let t = LoginThrottle::new(cfg());
        let mut now: i64 = 0;
        let mut allowed_failures: Vec<i64> = Vec::new();
        for (dt, succeed, addr) in steps {
            now += dt as i64;
            if t.check("alice", ip(addr), None, now) == Verdict::Allowed {
                if succeed {
                    t.record_success("alice", ip(addr), None);
                    allowed_failures.clear();
                } else {
                    t.record_failure("alice", ip(addr), None, now);
                    allowed_failures.push(now);
                }
            }
            let in_window = allowed_failures.iter().filter(|t| now - **t < 3_600_000).count();
            prop_assert!(in_window <= 10, "{in_window} failures in an hour");
        }
    }
}
