//! latchkey's own sign-in page behind `/oauth/authorize` (docs/identity-providers-guide.md
//! "Native apps"): server-rendered HTML with no style and no inline script, so that the
//! Content-Security-Policy can forbid both; every value is escaped. With passkeys on,
//! one first-party script (`signin_page.js`, served from latchkey) runs the passkey
//! buttons; everything else works without it.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

use crate::html::escape;
use crate::service::authorize::AuthorizeParams;

/// Which step the page asks for.
pub enum Step<'a> {
    /// Username and password (the name kept after a wrong password).
    Password { username: &'a str },
    /// The second factor, with the pending login's token and what can finish it
    /// (`mfa_methods`: `totp`, `recovery_code`, `passkey`, space-separated).
    Code {
        mfa_token: &'a str,
        methods: &'a str,
    },
}

impl Step<'_> {
    fn offers(&self, method: &str) -> bool {
        match self {
            Step::Password { .. } => method == "passkey",
            Step::Code { methods, .. } => methods.split(' ').any(|m| m == method),
        }
    }
}

/// Where the page's script is served (`script-src 'self'`).
pub const SCRIPT_PATH: &str = "/oauth/authorize/signin.js";
/// The script: the passkey ceremony in the browser (WebAuthn Level 3 §5.1.4), its answer
/// posted with the form.
pub const SCRIPT: &str = include_str!("signin_page.js");

pub struct Page<'a> {
    pub client: &'a str,
    /// The second step of a browser's sign-in through a provider: where it ends.
    pub return_to: Option<&'a str>,
    pub params: &'a AuthorizeParams,
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub step: Step<'a>,
    /// One button per identity provider: (id, display name).
    pub providers: Vec<(&'a str, &'a str)>,
    /// Passkeys are configured: the page offers them (with its script).
    pub passkeys: bool,
}

fn hidden(out: &mut String, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        out.push_str(&format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
            escape(v)
        ));
    }
}

/// The authorization request, carried through the form unchanged (it is vetted again on
/// every post).
fn request_fields(out: &mut String, p: &AuthorizeParams) {
    hidden(out, "response_type", p.response_type.as_deref());
    hidden(out, "client_id", p.client_id.as_deref());
    hidden(out, "redirect_uri", p.redirect_uri.as_deref());
    hidden(out, "code_challenge", p.code_challenge.as_deref());
    hidden(
        out,
        "code_challenge_method",
        p.code_challenge_method.as_deref(),
    );
    hidden(out, "state", p.state.as_deref());
    hidden(out, "scope", p.scope.as_deref());
}

fn document(title: &str, body: &str, script: bool) -> String {
    let script = if script {
        format!("<script src=\"{SCRIPT_PATH}\" defer></script>\n")
    } else {
        String::new()
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n{script}</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    )
}

/// The page. The error comes first and is announced (`role="alert"`); the fields follow
/// in the order they are filled, each with its label.
pub fn render(page: &Page<'_>) -> String {
    let mut b = format!(
        "<h1>Sign in</h1>\n<p>to continue to <strong>{}</strong></p>\n",
        escape(page.client)
    );
    if let Some(e) = page.error {
        b.push_str(&format!(
            "<p role=\"alert\" id=\"error\">{}</p>\n",
            escape(e)
        ));
    }
    let described = if page.error.is_some() {
        " aria-describedby=\"error\""
    } else {
        ""
    };
    b.push_str("<form method=\"post\" action=\"/oauth/authorize\">\n");
    hidden(&mut b, "csrf_token", Some(page.csrf));
    request_fields(&mut b, page.params);
    hidden(&mut b, "return_to", page.return_to);
    match page.step {
        Step::Password { username } => {
            b.push_str(&format!(
                "<p><label for=\"username\">Username or email</label><br>\n\
                 <input id=\"username\" name=\"username\" autocomplete=\"username\" required \
                 autofocus value=\"{}\"{described}></p>\n\
                 <p><label for=\"password\">Password</label><br>\n\
                 <input id=\"password\" name=\"password\" type=\"password\" \
                 autocomplete=\"current-password\" required{described}></p>\n\
                 <p><button type=\"submit\">Sign in</button></p>\n",
                escape(username)
            ));
        }
        Step::Code { mfa_token, methods } => {
            hidden(&mut b, "mfa_token", Some(mfa_token));
            hidden(&mut b, "mfa_methods", Some(methods));
            if page.step.offers("totp") {
                b.push_str(&format!(
                    "<p><label for=\"code\">Code from your authenticator app</label><br>\n\
                     <input id=\"code\" name=\"code\" inputmode=\"numeric\" \
                     autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" maxlength=\"6\" \
                     required autofocus{described}></p>\n\
                     <p><button type=\"submit\">Continue</button></p>\n"
                ));
            }
        }
    }
    b.push_str("</form>\n");
    if page.passkeys && page.step.offers("passkey") {
        passkey_form(&mut b, page);
    }
    if matches!(page.step, Step::Password { .. }) && !page.providers.is_empty() {
        // A provider is a new authorization request naming it (`idp`): a GET, no CSRF.
        b.push_str(
            "<h2>Or continue with</h2>\n<form method=\"get\" action=\"/oauth/authorize\">\n",
        );
        request_fields(&mut b, page.params);
        for (id, name) in &page.providers {
            b.push_str(&format!(
                "<p><button type=\"submit\" name=\"idp\" value=\"{}\">{}</button></p>\n",
                escape(id),
                escape(name)
            ));
        }
        b.push_str("</form>\n");
    }
    document("Sign in", &b, page.passkeys)
}

/// The passkey button: a form the script fills with the ceremony and the authenticator's
/// answer, then posts (CSRF token and request fields as the password form). Hidden until
/// the script finds WebAuthn in the browser, so a page without script shows none.
fn passkey_form(b: &mut String, page: &Page<'_>) {
    let (kind, label) = match page.step {
        Step::Password { .. } => ("login", "Sign in with a passkey"),
        Step::Code { .. } => ("mfa", "Use a passkey"),
    };
    b.push_str(&format!(
        "<form method=\"post\" action=\"/oauth/authorize\" id=\"passkey-form\" \
         data-passkey=\"{kind}\" hidden>\n"
    ));
    hidden(b, "csrf_token", Some(page.csrf));
    request_fields(b, page.params);
    hidden(b, "return_to", page.return_to);
    if let Step::Code { mfa_token, methods } = page.step {
        hidden(b, "mfa_token", Some(mfa_token));
        hidden(b, "mfa_methods", Some(methods));
    }
    b.push_str(&format!(
        "<input type=\"hidden\" name=\"passkey_ceremony\" value=\"\">\n\
         <input type=\"hidden\" name=\"passkey_credential\" value=\"\">\n\
         <p><button type=\"submit\">{label}</button></p>\n\
         <p id=\"passkey-status\" role=\"status\"></p>\n</form>\n"
    ));
}

/// A page that only says what went wrong (a request whose redirect URI cannot be
/// trusted, a form that lost its CSRF token).
pub fn message(title: &str, text: &str) -> String {
    document(
        title,
        &format!(
            "<h1>{}</h1>\n<p role=\"alert\">{}</p>\n",
            escape(title),
            escape(text)
        ),
        false,
    )
}

/// Marks a response as a page for a person: `response_hygiene` leaves its HTML error
/// body alone.
pub struct HtmlPage;

/// The HTML answer with the page's security headers: no style, frame or plugin at all,
/// and no script but latchkey's own when `script` (the passkey buttons) (CSP, OWASP
/// Clickjacking Defense: `frame-ancestors 'none'` and `X-Frame-Options: DENY`); the form
/// may post here and, after the redirect that follows a sign-in, reach `form_target` (the
/// app's redirect URI: CSP `form-action` covers redirects).
pub fn respond(
    status: StatusCode,
    html: String,
    form_target: Option<&str>,
    script: bool,
) -> HttpResponse {
    let target = form_target.map(csp_source).unwrap_or_default();
    // The page's own script, and its calls to the passkey start routes: same origin only
    // (no inline script, no eval, nothing third-party).
    let script = if script {
        "; script-src 'self'; connect-src 'self'"
    } else {
        ""
    };
    let csp = format!(
        "default-src 'none'{script}; form-action 'self'{target}; frame-ancestors 'none'; \
         base-uri 'none'"
    );
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    let mut res = res.body(html);
    res.extensions_mut().insert(HtmlPage);
    res
}

/// The redirect URI as a CSP source: a loopback origin with any port (RFC 8252 §7.3),
/// an https origin, or a private-use scheme.
fn csp_source(redirect_uri: &str) -> String {
    let Ok(url) = url::Url::parse(redirect_uri) else {
        return String::new();
    };
    match (url.scheme(), url.host_str()) {
        ("http", Some(host)) => format!(" http://{host}:*"),
        ("https", Some(_)) => format!(" {}", url.origin().ascii_serialization()),
        (scheme, _) => format!(" {scheme}:"),
    }
}
