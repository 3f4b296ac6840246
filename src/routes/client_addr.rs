//! The client's address behind trusted proxies (docs/contract.md "Conventions", "The
//! client's address"): `X-Forwarded-For` or RFC 7239 `Forwarded`, walked from the right.
//!
//! Each proxy appends the address it received the request from, so the list reads
//! `client-controlled…, what proxy 1 saw, what proxy 2 saw` and only the entries
//! appended by trusted proxies can be believed. Walking from the right (the peer first):
//! an entry that is a trusted proxy is skipped; the first entry that is not is the
//! client. If that entry does not parse as an address at all (`unknown`, an obfuscated
//! RFC 7239 §6.3 identifier, garbage), the chain of trust ends there without an address:
//! the answer is the peer, never some entry further left, which the client could have
//! written itself. Accepted forms: `192.0.2.7`, `192.0.2.7:5555`, `2001:db8::7`,
//! `[2001:db8::7]`, `[2001:db8::7]:443` (RFC 7239 §6: quoted in `Forwarded`).

use std::net::{IpAddr, SocketAddr};

use crate::config::ForwardedHeader;

/// One list entry as an address, with or without a port.
pub fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    // `[v6]` without a port.
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|v6| v6.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// The `X-Forwarded-For` entries of all its header lines, in order.
fn x_forwarded_for<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect()
}

/// The `for=` node of each `Forwarded` element, in order (RFC 7239 §4). An element
/// without a `for=` parameter, or one that does not parse, gives an empty entry, which
/// ends the walk like any other entry that is not an address.
fn forwarded<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    for value in values {
        for element in split_unquoted(value, ',') {
            let mut node = String::new();
            for pair in split_unquoted(&element, ';') {
                let Some((name, val)) = pair.split_once('=') else {
                    continue;
                };
                if name.trim().eq_ignore_ascii_case("for") {
                    let val = val.trim();
                    node = match val.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                        Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
                        None => val.to_owned(),
                    };
                }
            }
            out.push(node);
        }
    }
    out
}

/// Splits on `sep` outside double-quoted strings (RFC 7230 §3.2.6 quoted-string).
fn split_unquoted(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(std::mem::take(&mut cur));
            continue;
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
}

/// The client's address: `peer` unless `peer` is trusted, then the walk described in
/// the module comment over the header's entries (`values`: the header's lines in order).
pub fn client_ip<'a>(
    peer: Option<IpAddr>,
    is_trusted: impl Fn(&IpAddr) -> bool,
    header: ForwardedHeader,
    values: impl Iterator<Item = &'a str>,
) -> Option<IpAddr> {
    let peer_ip = peer?;
    if !is_trusted(&peer_ip) {
        return peer;
    }
    let entries = match header {
        ForwardedHeader::XForwardedFor => x_forwarded_for(values),
        ForwardedHeader::Forwarded => forwarded(values),
    };
    let mut last_trusted = peer_ip;
    for entry in entries.iter().rev() {
        match parse_node(entry) {
            Some(ip) if is_trusted(&ip) => last_trusted = ip,
            Some(ip) => return Some(ip),
            // Not an address: the trusted chain ends without telling who the client is.
            None => return peer,
        }
    }
    // Every hop was a trusted proxy: the request started at the left-most of them.
    Some(last_trusted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PROXY: &str = "10.0.0.1";

    fn trusted(ip: &IpAddr) -> bool {
        "10.0.0.0/8".parse::<ipnet::IpNet>().unwrap().contains(ip)
    }

    fn walk(header: ForwardedHeader, lines: &[&str]) -> String {
        client_ip(
            Some(PROXY.parse().unwrap()),
            trusted,
            header,
            lines.iter().copied(),
        )
        .unwrap()
        .to_string()
    }

    fn xff(lines: &[&str]) -> String {
        walk(ForwardedHeader::XForwardedFor, lines)
    }

    #[test]
    fn x_forwarded_for_takes_the_right_most_untrusted_entry_in_every_form() {
        assert_eq!(xff(&["6.6.6.6, 203.0.113.7"]), "203.0.113.7");
        assert_eq!(xff(&["6.6.6.6, 203.0.113.7:5555"]), "203.0.113.7");
        assert_eq!(xff(&["6.6.6.6, [2001:db8::7]:443"]), "2001:db8::7");
        assert_eq!(xff(&["6.6.6.6, [2001:db8::7]"]), "2001:db8::7");
        assert_eq!(xff(&["6.6.6.6, 2001:db8::7"]), "2001:db8::7");
        assert_eq!(xff(&["6.6.6.6, 203.0.113.7, 10.0.0.2"]), "203.0.113.7");
        assert_eq!(xff(&["6.6.6.6", "203.0.113.7, 10.0.0.2"]), "203.0.113.7");
    }

    #[test]
    fn an_entry_that_is_not_an_address_ends_the_walk_at_the_peer() {
        for bad in [
            "unknown",
            "_hidden",
            "",
            "203.0.113.7:",
            "not an ip",
            "[::1",
        ] {
            let header = format!("6.6.6.6, {bad}");
            assert_eq!(xff(&[&header]), PROXY, "{bad:?}");
            let header = format!("6.6.6.6, {bad}, 10.0.0.2");
            assert_eq!(xff(&[&header]), PROXY, "{bad:?} behind a trusted hop");
        }
    }

    #[test]
    fn untrusted_peers_and_all_trusted_chains() {
        let peer: IpAddr = "198.51.100.1".parse().unwrap();
        let got = client_ip(
            Some(peer),
            trusted,
            ForwardedHeader::XForwardedFor,
            ["6.6.6.6"].into_iter(),
        );
        assert_eq!(got, Some(peer), "an untrusted peer's header is ignored");
        assert_eq!(xff(&[]), PROXY);
        assert_eq!(xff(&["10.0.0.9, 10.0.0.2"]), "10.0.0.9");
    }

    #[test]
    fn rfc7239_forwarded_is_walked_the_same_way() {
        let fwd = |lines: &[&str]| walk(ForwardedHeader::Forwarded, lines);
        assert_eq!(
            fwd(&["for=6.6.6.6, for=203.0.113.7;proto=https;by=10.0.0.1"]),
            "203.0.113.7"
        );
        assert_eq!(
            fwd(&[r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711""#]),
            "2001:db8:cafe::17"
        );
        assert_eq!(fwd(&[r#"for="203.0.113.7:5555""#]), "203.0.113.7");
        assert_eq!(fwd(&["For=203.0.113.7"]), "203.0.113.7");
        assert_eq!(fwd(&["for=6.6.6.6, for=unknown"]), PROXY);
        assert_eq!(fwd(&["for=6.6.6.6, for=_gazonk"]), PROXY);
        assert_eq!(fwd(&["for=6.6.6.6, proto=https"]), PROXY, "no for=");
        assert_eq!(
            fwd(&[r#"for=6.6.6.6;x="a,b", for=203.0.113.8"#]),
            "203.0.113.8",
            "commas inside quotes do not split elements"
        );
        assert_eq!(
            fwd(&["for=6.6.6.6", "for=203.0.113.9, for=10.0.0.3"]),
            "203.0.113.9"
        );
    }

    proptest! {
        /// Whatever the client writes to the left, the entry a trusted proxy appended
        /// decides: the client's address if it is one, the peer if it is not.
        #[test]
        fn the_client_controlled_prefix_never_decides(
            prefix in proptest::collection::vec(".{0,40}", 0..6),
            real in any::<[u8; 4]>(),
            appended_garbage in "[a-z_]{0,12}",
        ) {
            let real = std::net::Ipv4Addr::from(real);
            prop_assume!(!trusted(&IpAddr::V4(real)));
            let mut entries = prefix.join(",");
            entries.push_str(&format!(", {real}:443"));
            prop_assert_eq!(xff(&[&entries]), real.to_string());
            let mut entries = prefix.join(",");
            entries.push_str(&format!(", {appended_garbage}"));
            prop_assert_eq!(xff(&[&entries]), PROXY);
        }

        #[test]
        fn never_panics_on_any_header(lines in proptest::collection::vec(".{0,80}", 0..4)) {
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let _ = walk(ForwardedHeader::XForwardedFor, &refs);
            let _ = walk(ForwardedHeader::Forwarded, &refs);
        }
    }
}
