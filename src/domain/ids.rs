//! Identifiers of users, sessions and passkeys. We issue them as random UUIDs (v4) in their
//! lower-case hyphenated form, and that is the only form `parse` accepts: an id from
//! outside (a JWT claim, a URL path, a CLI argument) in any other form names nothing we
//! issued, so its caller answers as it does for an unknown id.

use std::fmt;

use serde::Serialize;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh id, as the service issues them.
            pub fn new_random() -> Self {
                Self::from(Uuid::new_v4())
            }

            /// An id from outside; `None` unless it is in the form we issue.
            pub fn parse(s: &str) -> Option<Self> {
                let uuid = Uuid::parse_str(s).ok()?;
                let canonical = uuid.hyphenated().to_string();
                (canonical == s).then_some(Self(canonical))
            }

            /// An id read back from the store's own rows, which only ever held ids we
            /// issued: taken as it is, so that reading never fails on the form.
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid.hyphenated().to_string())
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;

            fn try_from(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s).ok_or(InvalidId)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

uuid_id!(
    /// A user's id (the `sub` claim of their access tokens).
    UserId
);
uuid_id!(
    /// A session's id (the `sid` claim; a refresh token carries its UUID).
    SessionId
);
uuid_id!(
    /// A registered passkey's id (ours, in `/me/passkeys/{id}`; not the WebAuthn
    /// credential id, which the authenticator chose).
    PasskeyId
);
uuid_id!(
    /// A linked identity's id (`/me/identities/{id}`).
    IdentityId
);

/// Not an id in the form we issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidId;

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an id")
    }
}

impl std::error::Error for InvalidId {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_accepts_the_ids_we_issue() {
        let user = UserId::new_random();
        assert_eq!(UserId::parse(user.as_str()), Some(user.clone()));
        let session = SessionId::new_random();
        assert_eq!(SessionId::try_from(session.as_str()), Ok(session.clone()));
        assert_eq!(session.to_string(), session.as_str());
    }

    #[test]
    fn parse_refuses_garbage_and_other_spellings_of_a_uuid() {
        let id = Uuid::new_v4();
        for other in [
            String::new(),
            "alice".into(),
            "not-a-uuid-at-all-not-a-uuid-at-all".into(),
            id.hyphenated().to_string().to_uppercase(),
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
            format!(" {id}"),
        ] {
            assert_eq!(UserId::parse(&other), None, "{other:?}");
            assert!(SessionId::try_from(other.as_str()).is_err(), "{other:?}");
        }
    }

    #[test]
    fn ids_serialize_as_their_plain_string() {
        let id = SessionId::new_random();
        assert_eq!(serde_json::to_value(&id).unwrap(), id.as_str());
    }

    proptest! {
        #[test]
        fn every_uuid_round_trips_through_its_string(bytes in any::<[u8; 16]>()) {
            let id = UserId::from(Uuid::from_bytes(bytes));
            prop_assert_eq!(UserId::parse(id.as_str()), Some(id));
        }

        #[test]
        fn whatever_parse_accepts_displays_as_given(s in "\\PC{0,40}") {
            if let Some(id) = SessionId::parse(&s) {
                prop_assert_eq!(id.to_string(), s);
            }
        }
    }
}
