//! The README's walk-through, run as written against a test server (only the `LK=`
//! line is pointed at the test's port).

use crate::helpers::spawn_app;

fn walkthrough() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("walkthrough start marker");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("walkthrough end marker");
    let block = &readme[start..end];
    let code_start = block.find("```bash\n").expect("bash block") + "```bash\n".len();
    let code_end = block[code_start..].find("```").unwrap() + code_start;
    block[code_start..code_end].to_owned()
}

#[tokio::test]
#[ignore = "needs curl and jq: scripts/test runs it"]
async fn the_readme_walkthrough_works_verbatim() {
    let app = spawn_app().await;
    let script = walkthrough();
    assert!(script.starts_with("LK=http://127.0.0.1:8080\n"));
    let script = script.replacen("LK=http://127.0.0.1:8080", &format!("LK={}", app.base), 1);
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .await
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(stdout.contains("\"username\":\"alice\""), "{stdout}");
    assert!(stdout.contains("\"keys\""), "{stdout}");
    // The replayed parent printed the same token as R1 (two consecutive lines).
    let tokens: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("lk1_") && !l.contains(' '))
        .collect();
    assert!(
        tokens.len() >= 2 && tokens[tokens.len() - 2] == tokens[tokens.len() - 1],
        "{stdout}"
    );
    // The last two commands answer invalid_grant.
    let grants = stdout.matches("\"error\":\"invalid_grant\"").count();
    assert_eq!(grants, 2, "{stdout}");
    assert!(
        stdout.ends_with(
            "\"error_description\":\"the session was revoked: refresh token reuse was detected\"}"
        ),
        "{stdout}"
    );
}
