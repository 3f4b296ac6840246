//! `HumanDuration`: how every duration in the configuration is written.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as whole seconds (`900`) or with a unit (`"15m"`, `"30d"`, `"500ms"`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Self(Duration::from_secs(s))),
            Raw::Text(t) => {
                let t = t.trim();
                if let Ok(s) = t.parse::<u64>() {
                    return Ok(Self(Duration::from_secs(s)));
                }
                humantime::parse_duration(t).map(Self).map_err(|e| {
                    serde::de::Error::custom(format!(
                        "bad duration {t:?} ({e}); use seconds or a unit, e.g. \"15m\", \"30d\""
                    ))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::{Format, Toml};
    use figment::Figment;

    #[test]
    fn durations_accept_seconds_and_units() {
        #[derive(Deserialize)]
        struct T {
            d: HumanDuration,
        }
        let t: T = toml_from("d = 900");
        assert_eq!(t.d.0, Duration::from_secs(900));
        let t: T = toml_from("d = \"15m\"");
        assert_eq!(t.d.0, Duration::from_secs(900));
        let t: T = toml_from("d = \"30d\"");
        assert_eq!(t.d.0, Duration::from_secs(30 * 86400));
        let t: T = toml_from("d = \"250ms\"");
        assert_eq!(t.d.0, Duration::from_millis(250));
    }

    fn toml_from<T: for<'de> Deserialize<'de>>(s: &str) -> T {
        Figment::from(Toml::string(s)).extract().expect("parses")
    }
}
