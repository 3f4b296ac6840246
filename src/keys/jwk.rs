//! Public JWKs (RFC 7517/7518 §6, RFC 8037 §2). Only public members exist in this type,
//! so a private or symmetric member (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`) cannot leak.

use anyhow::bail;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;

use crate::domain::Algorithm;

#[derive(Debug, Clone, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<&'static str>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<&'static str>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Jwk {
    fn bare(kty: &'static str) -> Self {
        Self {
            kty,
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            kid: None,
            alg: None,
            use_: None,
        }
    }

    /// From an uncompressed SEC1 point `04 ‖ x ‖ y`; `x` and `y` stay exactly 32 bytes,
    /// leading zeros kept (RFC 7518 §6.2.1.2).
    pub fn p256(point: &[u8]) -> anyhow::Result<Self> {
        if point.len() != 65 || point[0] != 4 {
            bail!("unexpected P-256 public key encoding");
        }
        Ok(Self {
            crv: Some("P-256"),
            x: Some(b64(&point[1..33])),
            y: Some(b64(&point[33..65])),
            ..Self::bare("EC")
        })
    }

    /// RFC 8037 §2: `kty: OKP`, `crv: Ed25519`, 32-byte `x`.
    pub fn ed25519(public: &[u8]) -> anyhow::Result<Self> {
        if public.len() != 32 {
            bail!("unexpected Ed25519 public key length");
        }
        Ok(Self {
            crv: Some("Ed25519"),
            x: Some(b64(public)),
            ..Self::bare("OKP")
        })
    }

    /// RFC 7518 §6.3.1: big-endian unsigned `n` and `e` without leading zeros.
    pub fn rsa(n: &[u8], e: &[u8]) -> Self {
        let strip = |b: &[u8]| -> Vec<u8> {
            let i = b
                .iter()
                .position(|&x| x != 0)
                .unwrap_or(b.len().saturating_sub(1));
            b[i..].to_vec()
        };
        Self {
            n: Some(b64(&strip(n))),
            e: Some(b64(&strip(e))),
            ..Self::bare("RSA")
        }
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
    pub fn thumbprint(&self) -> String {
        let canonical = match self.kty {
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                self.crv.unwrap_or_default(),
                self.x.as_deref().unwrap_or_default(),
                self.y.as_deref().unwrap_or_default()
            ),
            "OKP" => format!(
                r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
                self.crv.unwrap_or_default(),
                self.x.as_deref().unwrap_or_default()
            ),
            _ => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                self.e.as_deref().unwrap_or_default(),
                self.n.as_deref().unwrap_or_default()
            ),
        };
        b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    pub fn with_kid(mut self, kid: &str, alg: Algorithm) -> Self {
        self.kid = Some(kid.to_owned());
        self.alg = Some(alg.as_str());
        self.use_ = Some("sig");
        self
    }

    pub fn decoding_key(&self) -> anyhow::Result<jsonwebtoken::DecodingKey> {
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        Ok(match self.kty {
            "EC" => jsonwebtoken::DecodingKey::from_ec_components(&s(&self.x), &s(&self.y))?,
            "OKP" => jsonwebtoken::DecodingKey::from_ed_components(&s(&self.x))?,
            _ => jsonwebtoken::DecodingKey::from_rsa_components(&s(&self.n), &s(&self.e))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7518_6_2_1_p256_coordinates_keep_leading_zeros() {
        let mut point = [0u8; 65];
        point[0] = 4;
        point[40] = 7;
        let jwk = Jwk::p256(&point).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(jwk.x.unwrap()).unwrap().len(), 32);
        assert_eq!(URL_SAFE_NO_PAD.decode(jwk.y.unwrap()).unwrap().len(), 32);
    }

    #[test]
    fn rfc7638_3_1_thumbprint_example() {
        // The RSA example key of RFC 7638 §3.1 and its published thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk = Jwk {
            n: Some(n.into()),
            e: Some("AQAB".into()),
            ..Jwk::bare("RSA")
        };
        assert_eq!(
            jwk.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rfc8037_2_ed25519_is_okp_with_32_byte_x() {
        let jwk = Jwk::ed25519(&[1u8; 32]).unwrap();
        let v = serde_json::to_value(&jwk).unwrap();
        assert_eq!(v["kty"], "OKP");
        assert_eq!(v["crv"], "Ed25519");
        assert!(v.get("d").is_none());
    }
}
