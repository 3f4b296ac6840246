//! The mails' text: a plain-text and an HTML body per kind, built in and overridable by
//! files in `mail.templates_dir` (`reset.txt`, `reset.html`, `verify.txt`,
//! `verify.html`). A `.txt` template starts with a `Subject:` line and a blank line.
//! Placeholders: `{{username}}`, `{{link}}`, `{{minutes}}` (how long the link works);
//! the HTML body gets them HTML-escaped.

use std::path::Path;

use anyhow::Context;

use super::MailKind;

const RESET_TXT: &str = "Subject: Reset your password

Hello {{username}},

Someone asked to reset the password of your account. To choose a new password, open
this link within {{minutes}} minutes:

{{link}}

The link works once. If you did not ask for this, ignore this mail: your password has
not changed.
";

const RESET_HTML: &str = "<!doctype html>
<html><body>
<p>Hello {{username}},</p>
<p>Someone asked to reset the password of your account. To choose a new password,
open this link within {{minutes}} minutes:</p>
<p><a href=\"{{link}}\">Reset your password</a></p>
<p>The link works once. If you did not ask for this, ignore this mail: your password
has not changed.</p>
</body></html>
";

const VERIFY_TXT: &str = "Subject: Confirm your email address

Hello {{username}},

To confirm that this is your address, open this link within {{minutes}} minutes:

{{link}}

If you did not add this address to an account, ignore this mail.
";

const VERIFY_HTML: &str = "<!doctype html>
<html><body>
<p>Hello {{username}},</p>
<p>To confirm that this is your address, open this link within {{minutes}} minutes:</p>
<p><a href=\"{{link}}\">Confirm your address</a></p>
<p>If you did not add this address to an account, ignore this mail.</p>
</body></html>
";

#[derive(Debug, Clone)]
struct Pair {
    subject: String,
    text: String,
    html: String,
}

#[derive(Debug, Clone)]
pub struct Templates {
    reset: Pair,
    verify: Pair,
}

/// A rendered message.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn split_subject(txt: &str, name: &str) -> anyhow::Result<(String, String)> {
    let (first, rest) = txt.split_once('\n').unwrap_or((txt, ""));
    let subject = first
        .strip_prefix("Subject:")
        .with_context(|| format!("mail template {name}.txt must start with a `Subject:` line"))?
        .trim()
        .to_owned();
    Ok((subject, rest.trim_start_matches(['\r', '\n']).to_owned()))
}

fn load(dir: Option<&Path>, name: &str, ext: &str, builtin: &str) -> anyhow::Result<String> {
    if let Some(dir) = dir {
        let path = dir.join(format!("{name}.{ext}"));
        if path.is_file() {
            return std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read mail template {}", path.display()));
        }
    }
    Ok(builtin.to_owned())
}

fn pair(dir: Option<&Path>, name: &str, txt: &str, html: &str) -> anyhow::Result<Pair> {
    let (subject, text) = split_subject(&load(dir, name, "txt", txt)?, name)?;
    Ok(Pair {
        subject,
        text,
        html: load(dir, name, "html", html)?,
    })
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Templates {
    /// The built-in templates, with any of `dir`'s files in their place.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        Ok(Self {
            reset: pair(dir, "reset", RESET_TXT, RESET_HTML)?,
            verify: pair(dir, "verify", VERIFY_TXT, VERIFY_HTML)?,
        })
    }

    pub fn render(&self, kind: MailKind, username: &str, link: &str, minutes: u64) -> Rendered {
        let p = match kind {
            MailKind::Reset => &self.reset,
            MailKind::Verify => &self.verify,
        };
        let minutes = minutes.to_string();
        let fill = |t: &str, esc: bool| {
            let v = |s: &str| if esc { html_escape(s) } else { s.to_owned() };
            t.replace("{{username}}", &v(username))
                .replace("{{link}}", &v(link))
                .replace("{{minutes}}", &minutes)
        };
        Rendered {
            // A subject is one line whatever a name holds.
            subject: fill(&p.subject, false).replace(['\r', '\n'], " "),
            text: fill(&p.text, false),
            html: fill(&p.html, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_templates_fill_both_bodies_and_escape_html() {
        let t = Templates::load(None).unwrap();
        let r = t.render(
            MailKind::Reset,
            "<b>eve</b>",
            "https://a.example/r#token=x&y",
            30,
        );
        assert_eq!(r.subject, "Reset your password");
        assert!(r.text.contains("https://a.example/r#token=x&y"));
        assert!(r.text.contains("30 minutes"));
        assert!(r.html.contains("https://a.example/r#token=x&amp;y"));
        assert!(r.html.contains("&lt;b&gt;eve&lt;/b&gt;"));
    }

    #[test]
    fn a_folder_overrides_some_templates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("reset.txt"),
            "Subject: Passwort für {{username}}\n\nLink: {{link}}\n",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let r = t.render(MailKind::Reset, "zoë", "L", 30);
        assert_eq!(r.subject, "Passwort für zoë");
        assert_eq!(r.text, "Link: L\n");
        assert!(r.html.contains("Reset your password"));
        std::fs::write(dir.path().join("verify.txt"), "no subject\n").unwrap();
        assert!(Templates::load(Some(dir.path())).is_err());
    }
}
