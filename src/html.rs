//! Escaping text for the HTML latchkey renders itself: the sign-in page and the
//! HTML part of its mails. The five characters that end text or a quoted attribute
//! value are replaced by character references (OWASP XSS Prevention Cheat Sheet,
//! "Output Encoding for HTML Contexts" and "HTML Attribute Contexts"); values are
//! always put in double-quoted attributes.

pub fn escape(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn markup_and_quotes_become_character_references_and_the_rest_stays() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&amp;</a> café"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt; café"
        );
    }
}
