use super::Fixture;
use crate::config::HumanDuration;
use crate::service::Error;

/// Three failures an hour per account, and no growing delays to wait out.
fn three_strikes() -> Fixture {
    Fixture::with(|s| {
        s.login.max_failures_per_account_per_hour = 3;
        s.login.failures_before_delay = 100;
        s.login.first_delay = HumanDuration::secs(1);
    })
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_name_answer_alike() {
    let f = Fixture::new();
    f.user("alice", "correct horse battery").await;
    let wrong = f.login("alice", "not the password").await;
    let nobody = f.login("bob", "not the password").await;
    assert!(
        matches!(wrong, Err(Error::InvalidCredentials)),
        "{:?}",
        wrong.as_ref().err()
    );
    assert!(
        matches!(nobody, Err(Error::InvalidCredentials)),
        "{:?}",
        nobody.as_ref().err()
    );
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_even_against_the_right_one() {
    let f = three_strikes();
    f.user("alice", "correct horse battery").await;
    for _ in 0..3 {
        let e = f.login("alice", "not the password").await;
        assert!(
            matches!(e, Err(Error::InvalidCredentials)),
            "{:?}",
            e.as_ref().err()
        );
    }
    let locked = f.login("alice", "correct horse battery").await;
    assert!(
        matches!(locked, Err(Error::RateLimited { .. })),
        "{:?}",
        locked.as_ref().err()
    );
    // The lock lasts the hour, then the failures age out.
    f.advance(3601);
    f.login("alice", "correct horse battery").await.unwrap();
}

#[tokio::test]
async fn a_device_that_signed_in_before_is_not_locked_out_by_others_failures() {
    let f = three_strikes();
    f.user("alice", "correct horse battery").await;
    let earlier = f.login("alice", "correct horse battery").await.unwrap();
    let device = earlier.body.device_token.clone().expect("a device token");
    for _ in 0..3 {
        let _ = f.login("alice", "an attacker's guess").await;
    }
    let stranger = f.login("alice", "correct horse battery").await;
    assert!(
        matches!(stranger, Err(Error::RateLimited { .. })),
        "{:?}",
        stranger.as_ref().err()
    );
    f.login_with("alice", "correct horse battery", Some(device))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_name_no_account_can_have_is_refused_before_any_check() {
    let f = Fixture::new();
    let long = "x".repeat(300);
    let e = f.login(&long, "whatever password").await;
    assert!(
        matches!(e, Err(Error::InvalidRequest(_))),
        "{:?}",
        e.as_ref().err()
    );
}
