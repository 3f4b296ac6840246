//! A real SMTP server for the tests: `tests/smtp_sink.py` (aiosmtpd, pinned in
//! tests/requirements.txt), started by the test on a free port with its own temporary
//! folder, one JSON file per message received.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::free_port;

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// One received message: envelope, headers, decoded bodies.
#[derive(Debug, Clone)]
pub struct Mail(pub Value);

impl Mail {
    pub fn header(&self, name: &str) -> Option<String> {
        let headers = self.0["headers"].as_object()?;
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str().map(str::to_owned))
    }
    pub fn text(&self) -> &str {
        self.0["text"].as_str().unwrap_or_default()
    }
    pub fn html(&self) -> &str {
        self.0["html"].as_str().unwrap_or_default()
    }
    pub fn rcpt(&self) -> Vec<String> {
        serde_json::from_value(self.0["rcpt_tos"].clone()).unwrap_or_default()
    }
    /// The token in the link of the text body (`…token=<43 characters>`).
    pub fn token(&self) -> String {
        let text = self.text();
        let at = text
            .find("token=")
            .expect("a link with a token in the mail")
            + 6;
        text[at..at + 43].to_owned()
    }
    /// The link itself (the line holding `token=`).
    pub fn link(&self) -> String {
        self.text()
            .lines()
            .find(|l| l.contains("token="))
            .expect("a link")
            .trim()
            .to_owned()
    }
}

impl SmtpSink {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs tests/smtp_sink.py (scripts/test installs aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Self { child, port, dir }
    }

    /// The folder the messages are written to (one JSON file each).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in order.
    pub fn received(&self) -> Vec<Mail> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| Mail(serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()))
            .collect()
    }

    /// Waits (up to 20 s) until `n` messages have arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "expected {n} mails, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `n`-th message (1-based), once it has arrived.
    pub async fn nth(&self, n: usize) -> Mail {
        self.wait_for(n).await[n - 1].clone()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}
