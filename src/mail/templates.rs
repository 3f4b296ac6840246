//! The mails' text: a plain-text and an HTML body per kind, built in and overridable by
//! files in `mail.templates_dir` (`reset.txt`, `reset.html`, `verify.txt`,
//! `verify.html`, `in-use.txt`, `in-use.html`). A `.txt` template starts with a
//! `Subject:` line and a blank line. Placeholders: `{{link}}`, `{{minutes}}` (how long
//! the link works), and in the reset mail only `{{username}}`; the HTML body gets them
//! HTML-escaped.
//!
//! Mails never carry text an attacker chose (docs/contract.md "Email and account
//! recovery"): anyone can sign up under any name and give any address, so a mail to an
//! address not yet verified (verification, address in use) has no username at all —
//! `{{username}}` is left empty there even in a custom template. The reset mail goes
//! only to the account's verified address, and even there the name appears only as a
//! quoted identifier that no mail client turns into a link ([`quoted_identifier`]).

use std::path::Path;

use anyhow::Context;

use super::MailKind;

const RESET_TXT: &str = "Subject: Reset your password

Hello,

Someone asked to reset the password of your account {{username}}. To choose a new
password, open this link within {{minutes}} minutes:

{{link}}

The link works once. If you did not ask for this, ignore this mail: your password has
not changed.
";

const RESET_HTML: &str = "<!doctype html>
<html><body>
<p>Hello,</p>
<p>Someone asked to reset the password of your account {{username}}. To choose a new
password, open this link within {{minutes}} minutes:</p>
<p><a href=\"{{link}}\">Reset your password</a></p>
<p>The link works once. If you did not ask for this, ignore this mail: your password
has not changed.</p>
</body></html>
";

const VERIFY_TXT: &str = "Subject: Confirm your email address

Hello,

To confirm that this is your address, open this link within {{minutes}} minutes:

{{link}}

If you did not add this address to an account, ignore this mail.
";

const VERIFY_HTML: &str = "<!doctype html>
<html><body>
<p>Hello,</p>
<p>To confirm that this is your address, open this link within {{minutes}} minutes:</p>
<p><a href=\"{{link}}\">Confirm your address</a></p>
<p>If you did not add this address to an account, ignore this mail.</p>
</body></html>
";

const IN_USE_TXT: &str = "Subject: Your email address was given for another account

Hello,

Someone asked to use this address for a new account, or to add it to an account. It
already belongs to your account, so it was not added anywhere else and nothing has
changed.

If that was you: you already have an account. Sign in, or ask for a password reset if
you have forgotten your password. If it was not you, ignore this mail.
";

const IN_USE_HTML: &str = "<!doctype html>
<html><body>
<p>Hello,</p>
<p>Someone asked to use this address for a new account, or to add it to an account. It
already belongs to your account, so it was not added anywhere else and nothing has
changed.</p>
<p>If that was you: you already have an account. Sign in, or ask for a password reset
if you have forgotten your password. If it was not you, ignore this mail.</p>
</body></html>
";

/// The longest name a mail shows; the rest is cut (a name can be 256 bytes of prose).
const IDENTIFIER_MAX_CHARS: usize = 40;

/// A username as the reset mail may show it: in quotes, without control characters
/// (newlines included) or invisible formatting ones (bidi overrides, zero-width), with
/// runs of white space made one space, cut to [`IDENTIFIER_MAX_CHARS`], and with every
/// `.`, `@` and `:` bracketed (`evil[.]example`, `https[:]//`) so that nothing in it
/// reads as, or is made into, a link or an address by a mail client.
pub fn quoted_identifier(name: &str) -> String {
    let invisible = |c: char| {
        c.is_control()
            || matches!(c,
                '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}')
    };
    let words: Vec<&str> = name
        .split(|c: char| c.is_whitespace() || invisible(c))
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = String::from("\"");
    for (n, c) in words.join(" ").chars().enumerate() {
        if n == IDENTIFIER_MAX_CHARS {
            out.push('…');
            break;
        }
        match c {
            '.' | '@' | ':' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            '"' => out.push('\''),
            c if invisible(c) => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

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
    in_use: Pair,
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

impl Templates {
    /// The built-in templates, with any of `dir`'s files in their place.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        Ok(Self {
            reset: pair(dir, "reset", RESET_TXT, RESET_HTML)?,
            verify: pair(dir, "verify", VERIFY_TXT, VERIFY_HTML)?,
            in_use: pair(dir, "in-use", IN_USE_TXT, IN_USE_HTML)?,
        })
    }

    /// Fills the template of `kind`. `username` is shown (quoted, see
    /// `quoted_identifier`) only in a reset mail; every other kind goes to an address
    /// nobody has proven to be the account's, so it never carries the name.
    pub fn render(
        &self,
        kind: MailKind,
        username: Option<&str>,
        link: &str,
        minutes: u64,
    ) -> Rendered {
        let p = match kind {
            MailKind::Reset => &self.reset,
            MailKind::Verify => &self.verify,
            MailKind::AddressInUse => &self.in_use,
        };
        let name = match kind {
            MailKind::Reset => username.map(quoted_identifier).unwrap_or_default(),
            MailKind::Verify | MailKind::AddressInUse => String::new(),
        };
        let minutes = minutes.to_string();
        let fill = |t: &str, esc: bool| {
            let v = |s: &str| {
                if esc {
                    crate::html::escape(s)
                } else {
                    s.to_owned()
                }
            };
            t.replace("{{username}}", &v(&name))
                .replace("{{link}}", &v(link))
                .replace("{{minutes}}", &minutes)
        };
        Rendered {
            // A subject is one line whatever a template holds.
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
            Some("<b>eve</b>"),
            "https://a.example/r#token=x&y",
            30,
        );
        assert_eq!(r.subject, "Reset your password");
        assert!(r.text.contains("https://a.example/r#token=x&y"));
        assert!(r.text.contains("your account \"<b>eve</b>\"."));
        assert!(r.text.contains("30 minutes"));
        assert!(r.html.contains("https://a.example/r#token=x&amp;y"));
        assert!(r.html.contains("&quot;&lt;b&gt;eve&lt;/b&gt;&quot;"));
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
        let r = t.render(MailKind::Reset, Some("zoë"), "L", 30);
        assert_eq!(r.subject, "Passwort für \"zoë\"");
        assert_eq!(r.text, "Link: L\n");
        assert!(r.html.contains("Reset your password"));
        std::fs::write(dir.path().join("verify.txt"), "no subject\n").unwrap();
        assert!(Templates::load(Some(dir.path())).is_err());
    }

    /// docs/contract.md "Email and account recovery": no username in a mail to an
    /// address not yet proven, even where a custom template asks for one.
    #[test]
    fn mails_to_unverified_addresses_never_carry_the_username() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["verify", "in-use"] {
            std::fs::write(
                dir.path().join(format!("{name}.txt")),
                "Subject: Hi {{username}}\n\nHi {{username}}: {{link}}\n",
            )
            .unwrap();
        }
        let t = Templates::load(Some(dir.path())).unwrap();
        for kind in [MailKind::Verify, MailKind::AddressInUse] {
            let r = t.render(kind, Some("mallory"), "L", 30);
            for part in [&r.subject, &r.text, &r.html] {
                assert!(!part.contains("mallory"), "{kind:?}: {part}");
            }
        }
    }

    #[test]
    fn a_quoted_identifier_is_one_short_line_that_links_nowhere() {
        assert_eq!(quoted_identifier("alice"), "\"alice\"");
        assert_eq!(quoted_identifier("a.b@c.d"), "\"a[.]b[@]c[.]d\"");
        let q = quoted_identifier("Hi\r\nBcc:\u{202E} https://evil.example/x \"quoted\"");
        assert_eq!(q, "\"Hi Bcc[:] https[:]//evil[.]example/x 'quoted'\"");
        let long = quoted_identifier(&"x".repeat(256));
        assert_eq!(long.chars().count(), IDENTIFIER_MAX_CHARS + 3);
        assert!(long.ends_with("…\""));
    }
}
