//! The closed sets of words latchkey records: why a session was revoked, and what kind
//! of security event happened. One place, so a reason or kind cannot be misspelt in one
//! of the files that use it, and the lists in docs/contract.md "Security events" can be
//! checked against this file.

macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The word as stored, logged and shown in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The word as stored; `None` for anything else.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// Why a session ended early (the `reason` of `session_revoked` events and the
    /// `latchkey_session_revocations_total` label).
    RevocationReason {
        /// `POST /logout` with scope `local`, `/browser/logout`.
        Logout = "logout",
        /// `POST /logout` with scope `others`.
        LogoutOthers = "logout_others",
        /// `POST /logout` with scope `global`.
        LogoutGlobal = "logout_global",
        /// `DELETE /me/sessions/{id}`.
        UserRevoked = "user_revoked",
        /// `POST /oauth/revoke` (RFC 7009).
        Revoked = "revoked",
        /// An operator: `DELETE /admin/users/{id}/sessions` or `latchkey sessions revoke`.
        Admin = "admin",
        /// A rotated refresh token was presented again (RFC 9700 §4.14.2).
        Reuse = "reuse",
        /// Over `session.max_per_user` with `limit_policy = "evict_oldest"`.
        Evicted = "evicted",
        /// The password changed: every other session ends.
        PasswordChange = "password_change",
        /// The account was disabled.
        UserDisabled = "user_disabled",
        /// The password was set with a reset token: every session ends.
        PasswordReset = "password_reset",
        /// The user confirmed or removed their second factor: every other session ends
        /// (ASVS v5 7.4.3).
        MfaChange = "mfa_change",
        /// The operator removed the user's factor (`latchkey users reset-mfa`): every
        /// session ends.
        MfaReset = "mfa_reset",
    }
}

words! {
    /// The kinds of security event (docs/contract.md "Security events").
    EventKind {
        UserCreated = "user_created",
        LoginSucceeded = "login_succeeded",
        LoginFailed = "login_failed",
        LoginThrottled = "login_throttled",
        NewDeviceLogin = "new_device_login",
        TokenRefreshed = "token_refreshed",
        SessionContextChanged = "session_context_changed",
        RefreshTokenReuseDetected = "refresh_token_reuse_detected",
        SessionRevoked = "session_revoked",
        Logout = "logout",
        PasswordChanged = "password_changed",
        UserDisabled = "user_disabled",
        UserDeleted = "user_deleted",
        EmailChanged = "email_changed",
        EmailVerified = "email_verified",
        PasswordResetRequested = "password_reset_requested",
        PasswordReset = "password_reset",
        /// A wrong, reused or expired second-factor code (or an unknown recovery code):
        /// at `/login/mfa`, when confirming an enrolment, or when removing the factor.
        MfaFailed = "mfa_failed",
        /// A recovery code finished a login (it is spent).
        RecoveryCodeUsed = "recovery_code_used",
        /// A TOTP factor was confirmed with its first code.
        MfaEnabled = "mfa_enabled",
        /// The factor was removed: by its user, or by the operator (`latchkey users
        /// reset-mfa`, detail `"by": "administrator"`).
        MfaDisabled = "mfa_disabled",
        /// The user replaced their recovery codes with new ones.
        RecoveryCodesRegenerated = "recovery_codes_regenerated",
        /// A passkey was registered (`/me/passkeys/register/finish`).
        PasskeyAdded = "passkey_added",
        /// A passkey was removed by its user (`DELETE /me/passkeys/{id}`) or, all of
        /// them, by the operator (`latchkey users reset-mfa`).
        PasskeyRemoved = "passkey_removed",
        /// An assertion's signature counter did not go up (WebAuthn Level 3 §7.2 step
        /// 22): the credential may have been cloned; the login is refused.
        PasskeyCloneSuspected = "passkey_clone_suspected",
        /// A webhook endpoint answered 410 Gone and is no longer sent to (detail
        /// `"endpoint"`); a manual retry of one of its deliveries enables it again.
        WebhookDisabled = "webhook_disabled",
        /// An identity at an OpenID provider joined the account (detail `by`: `signup`,
        /// `verified_email` or `user`).
        IdentityLinked = "identity_linked",
        /// The user removed one of their linked identities.
        IdentityUnlinked = "identity_unlinked",
    }
}

words! {
    /// Where a webhook delivery stands (`GET /admin/webhooks/{id}/deliveries?status=`).
    DeliveryStatus {
        /// Waiting for its next attempt (or being sent).
        Pending = "pending",
        /// A 2xx answer came back.
        Delivered = "delivered",
        /// Given up: `webhooks.max_age` passed, or the endpoint answered 410.
        Failed = "failed",
    }
}

words! {
    /// RFC 8176 authentication method reference values: how the user proved who they
    /// are at the login that started a session (the access token's `amr`).
    AuthMethod {
        /// A password (RFC 8176 §2 `pwd`).
        Pwd = "pwd",
        /// A one-time password: a TOTP code (RFC 6238) or a single-use recovery code
        /// (RFC 8176 §2 `otp`).
        Otp = "otp",
        /// Proof of possession of a hardware-secured key: a passkey (RFC 8176 §2 `hwk`).
        Hwk = "hwk",
        /// User presence and verification by the authenticator, a PIN or biometric
        /// (RFC 8176 §2 `user`).
        User = "user",
        /// More than one factor (RFC 8176 §2 `mfa`): a user-verified passkey is something
        /// held and something known or are.
        Mfa = "mfa",
        /// Federated: an OpenID provider authenticated the user. RFC 8176 registers no
        /// value for this, and §1 lets a deployment use its own; the provider's own
        /// `amr` describes only its side (docs/identity-providers-guide.md).
        Fed = "fed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_parses_back_to_itself_and_words_are_distinct() {
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::parse(r.as_str()), Some(*r));
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
        }
        for m in AuthMethod::ALL {
            assert_eq!(AuthMethod::parse(m.as_str()), Some(*m));
        }
        let mut words: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), EventKind::ALL.len());
        assert_eq!(RevocationReason::parse("nonsense"), None);
    }
}
