//! The example SPA's "Sign in with …" buttons in a real headless Chromium against a real
//! OpenID provider (`tests/interop/spa_federation.mjs`, oidc-provider from
//! `federation_oidc_provider.rs`; docs/identity-providers-guide.md): sign-up and sign-in
//! again through the provider, and a password user linking it, being asked for the
//! account's TOTP code on latchkey's page after the provider, and unlinking it; the issue's
//! "done when" for the browser. A screenshot of the page with the linked identity is saved
//! to `tests/artifacts/spa-federation.png`.

use crate::federation::provider;
use crate::federation_oidc_provider::upstream_redirecting_to;
use crate::helpers::{fresh_screenshot, run_browser_script};
use crate::helpers::{spawn_app_with, PASSWORD};

/// Three distinct ports nothing listens on right now.
fn free_ports() -> [u16; 3] {
    let held: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

#[tokio::test]
#[ignore = "needs Chromium and Node: scripts/test runs it"]
async fn a_user_signs_up_and_in_with_a_provider_button_and_a_password_user_links_and_unlinks_it() {
    // The provider redirects to latchkey's issuer, so the server listens where its issuer
    // says; the SPA and latchkey share the site "localhost" (the SameSite=Strict refresh
    // cookie flows), the provider is another site (127.0.0.1).
    let [api_port, spa_port, idp_port] = free_ports();
    let api = format!("http://localhost:{api_port}");
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let spa = format!("http://localhost:{spa_port}");
    // latchkey binds its port first (discovery waits for the first sign-in).
    let app = spawn_app_with(move |s| {
        s.server.bind = format!("127.0.0.1:{api_port}");
        s.issuer = api.clone();
        s.clients[0].allowed_origins = vec![spa];
        let mut p = provider("oidc", &issuer);
        p.display_name = Some("Example ID".into());
        p.client_secret = Some(latchkey::secret::Secret::new(
            "oidc-provider-test-secret".into(),
        ));
        s.identity_providers = vec![p];
    })
    .await;
    let up = upstream_redirecting_to(
        &format!("{}/federate/oidc/callback", app.settings.issuer),
        idp_port,
    )
    .await;
    assert_eq!(up.issuer, format!("http://127.0.0.1:{idp_port}"));
    let screenshot = fresh_screenshot("spa-federation.png");
    run_browser_script(
        "spa_federation.mjs",
        &[
            &app.settings.issuer,
            &spa_port.to_string(),
            &screenshot,
            "carol",
            PASSWORD,
            &latchkey::clock::Clock::now_millis(app.clock.as_ref()).to_string(),
        ],
    )
    .await;
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);

    // Server side: ann's account made by the provider, bob's identity linked by the
    // password user and unlinked; ann's refused link left nothing behind.
    let linked = app.events_of("identity_linked");
    let by = |how: &str| {
        linked
            .iter()
            .filter(|(_, d)| d.as_deref().unwrap().contains(&format!("\"by\":\"{how}\"")))
            .count()
    };
    assert_eq!((by("signup"), by("user"), linked.len()), (1, 1, 2));
    assert_eq!(app.events_of("identity_unlinked").len(), 1);
    let fed = app
        .sql()
        .count("SELECT count(*) FROM sessions WHERE amr = 'fed'", &[]);
    assert_eq!(fed, 2, "two sign-ins through the provider alone");
    let fed_otp = app
        .sql()
        .count("SELECT count(*) FROM sessions WHERE amr = 'fed otp'", &[]);
    assert_eq!(
        fed_otp, 1,
        "one through the provider and the account's code"
    );
    assert_eq!(app.sql().count("SELECT count(*) FROM identities", &[]), 1);
}
