//! Identities at OpenID providers (docs/identity-providers-guide.md): which account a
//! provider's user signs in to, linking, and never removing the last way to sign in.
//! Every function runs inside one store transaction; no HTTP and no OpenID Connect here
//! (the ID token was validated before, by `service::federation`).

use ring::rand::SystemRandom;

use crate::clock::Millis;
use crate::domain::accounts::{self, SignupOutcome};
use crate::domain::email::Email;
use crate::domain::mfa;
use crate::domain::model::{ClientContext, NewEvent, User, UserEmail};
pub use crate::domain::model::{FederationState, Identity};
use crate::domain::repository::Tx;
use crate::domain::sessions::{self, LoginOutcome, NewSession};
use crate::domain::{EventKind, IdentityId, TokenTagger, UserId, Username};

/// What the provider's validated ID token says about its user.
#[derive(Debug, Clone)]
pub struct ProviderUser {
    pub provider: String,
    pub subject: String,
    pub email: Option<Email>,
    pub email_verified: bool,
    /// A hint for a new account's name.
    pub preferred_username: Option<String>,
}

/// How the account was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The identity was linked already.
    Linked,
    /// Linked now: the provider's verified email is this account's verified email.
    ByVerifiedEmail,
    /// A new account was made for it.
    SignedUp,
}

pub enum FederatedOutcome {
    Session(LoginOutcome, Found),
    /// An explicit link (`link_user`) was made, or was there already.
    Linked,
    /// The identity is linked to another account than the one asking to link it.
    LinkedElsewhere,
    /// No account has it and registration is closed.
    RegistrationClosed,
    /// The account of a linked identity has a second factor, which a provider alone does
    /// not replace: the sign-in page asks for it before any session starts.
    SecondFactorRequired(Box<User>),
    /// The verified email is that of an account with a second factor: not linked by
    /// email (auto-linking must not be a way around the factor); its owner links the
    /// provider explicitly, signed in.
    SecondFactorBlocksEmailLink,
}

#[derive(Clone)]
pub struct FederatedLogin {
    pub who: ProviderUser,
    pub link_by_verified_email: bool,
    pub may_create_account: bool,
    pub link_user: Option<UserId>,
    /// The session to start (its `user_id` is replaced by the account found).
    pub session: NewSession,
}

/// A sign-in (or explicit link) through a provider: finds the account, links or
/// creates as docs/identity-providers-guide.md "Linking" says, then starts the session.
pub async fn federated_login(
    tx: &mut dyn Tx,
    now: Millis,
    rng: &SystemRandom,
    tagger: &dyn TokenTagger,
    req: &FederatedLogin,
) -> anyhow::Result<FederatedOutcome> {
    let who = &req.who;
    let email = who.email.as_ref().map(|e| e.as_str().to_owned());
    let existing = tx.identity_by_subject(&who.provider, &who.subject).await?;
    if let Some(link_user) = &req.link_user {
        return match existing {
            Some(i) if &i.user_id == link_user => Ok(FederatedOutcome::Linked),
            Some(_) => Ok(FederatedOutcome::LinkedElsewhere),
            None => {
                link(tx, now, link_user, who, "user", &req.session.ctx).await?;
                Ok(FederatedOutcome::Linked)
            }
        };
    }
    let (user_id, found) = match existing {
        Some(i) => {
            if mfa::has_active_factor(tx, &i.user_id).await? {
                if let Some(user) = tx.user_by_id(&i.user_id).await? {
                    return Ok(FederatedOutcome::SecondFactorRequired(Box::new(user)));
                }
            }
            tx.record_identity_login(&i.id, now, email.as_deref(), who.email_verified)
                .await?;
            (i.user_id, Found::Linked)
        }
        None => {
            let owner = match (&who.email, req.link_by_verified_email && who.email_verified) {
                (Some(e), true) => tx.user_by_verified_email(&e.key()).await?,
                _ => None,
            };
            match owner {
                Some(u) if mfa::has_active_factor(tx, &u.id).await? => {
                    return Ok(FederatedOutcome::SecondFactorBlocksEmailLink)
                }
                Some(u) => {
                    link(tx, now, &u.id, who, "verified_email", &req.session.ctx).await?;
                    (u.id, Found::ByVerifiedEmail)
                }
                None if !req.may_create_account => return Ok(FederatedOutcome::RegistrationClosed),
                None => {
                    let user = create_account(tx, now, who).await?;
                    link(tx, now, &user, who, "signup", &req.session.ctx).await?;
                    (user, Found::SignedUp)
                }
            }
        }
    };
    let session = NewSession {
        user_id,
        ..req.session.clone()
    };
    let outcome = sessions::create_session(tx, now, rng, tagger, &session).await?;
    Ok(FederatedOutcome::Session(outcome, found))
}

async fn link(
    tx: &mut dyn Tx,
    now: Millis,
    user_id: &UserId,
    who: &ProviderUser,
    how: &str,
    ctx: &ClientContext,
) -> anyhow::Result<()> {
    let identity = Identity {
        id: IdentityId::new_random(),
        user_id: user_id.clone(),
        provider: who.provider.clone(),
        subject: who.subject.clone(),
        email: who.email.as_ref().map(|e| e.as_str().to_owned()),
        email_verified: who.email_verified,
        created_at: now,
        last_login_at: now,
    };
    tx.insert_identity(&identity).await?;
    let event = NewEvent::new(EventKind::IdentityLinked)
        .user(user_id)
        .from(ctx)
        .detail(serde_json::json!({
            "identity_id": identity.id,
            "provider": who.provider,
            "by": how,
        }));
    tx.insert_event(now, &event).await?;
    Ok(())
}

/// A new account without a password for the provider's user, named after its
/// `preferred_username` or email (a suffix added if taken); its verified email becomes
/// the account's if no account has that address verified.
async fn create_account(
    tx: &mut dyn Tx,
    now: Millis,
    who: &ProviderUser,
) -> anyhow::Result<UserId> {
    let base = name_hint(who);
    let mut user = None;
    for attempt in 0..8 {
        let candidate = if attempt == 0 {
            base.clone()
        } else {
            let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
            format!("{base}-{suffix}")
        };
        let Ok(name) = Username::parse(&candidate) else {
            continue;
        };
        // An empty hash: no password opens this account (docs/identity-providers-guide.md).
        if let SignupOutcome::Created(u) =
            accounts::create_user(tx, now, &name, String::new(), Vec::new()).await?
        {
            user = Some(u);
            break;
        }
    }
    let user = user.ok_or_else(|| anyhow::anyhow!("no free username for a new account"))?;
    if let (Some(email), true) = (&who.email, who.email_verified) {
        if tx.user_by_verified_email(&email.key()).await?.is_none() {
            let address = UserEmail {
                user_id: user.id.clone(),
                email: email.as_str().to_owned(),
                verified_at: None,
            };
            tx.set_email(&address, &email.key()).await?;
            tx.mark_email_verified(&user.id, &email.key(), now).await?;
        }
    }
    Ok(user.id)
}

/// The name a new account starts from: letters, digits, `.`, `_` and `-` of the
/// provider's `preferred_username` or the email's local part, else `user`.
fn name_hint(who: &ProviderUser) -> String {
    let raw = who
        .preferred_username
        .as_deref()
        .or_else(|| {
            who.email
                .as_ref()
                .and_then(|e| e.as_str().split('@').next())
        })
        .unwrap_or("user");
    let clean: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(32)
        .collect();
    if clean.is_empty() {
        "user".into()
    } else {
        clean
    }
}

pub enum UnlinkOutcome {
    Unlinked,
    NotFound,
    /// It is the account's last way to sign in (no password, no other identity, no
    /// passkey).
    LastWayIn,
}

/// Removes one of the user's identities unless nothing else would open the account.
pub async fn unlink(
    tx: &mut dyn Tx,
    now: Millis,
    user_id: &UserId,
    id: &IdentityId,
    ctx: &ClientContext,
) -> anyhow::Result<UnlinkOutcome> {
    let Some(user) = tx.user_by_id(user_id).await? else {
        return Ok(UnlinkOutcome::NotFound);
    };
    let identities = tx.identities_of_user(user_id).await?;
    let Some(identity) = identities.iter().find(|i| &i.id == id) else {
        return Ok(UnlinkOutcome::NotFound);
    };
    if ways_in(tx, &user).await? <= 1 {
        return Ok(UnlinkOutcome::LastWayIn);
    }
    tx.delete_identity(user_id, id).await?;
    let event = NewEvent::new(EventKind::IdentityUnlinked)
        .user(user_id)
        .from(ctx)
        .detail(serde_json::json!({
            "identity_id": identity.id,
            "provider": identity.provider,
        }));
    tx.insert_event(now, &event).await?;
    Ok(UnlinkOutcome::Unlinked)
}

/// How many ways the account has to sign in: its password, each linked identity, each
/// passkey. Removing one of them is refused when it is the last.
pub async fn ways_in(tx: &mut dyn Tx, user: &User) -> anyhow::Result<usize> {
    Ok(usize::from(has_password(&user.password_hash))
        + tx.identities_of_user(&user.id).await?.len()
        + tx.passkeys_of(&user.id).await?.len())
}

/// Accounts made through a provider store no password hash.
pub fn has_password(password_hash: &str) -> bool {
    !password_hash.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(preferred: Option<&str>, email: Option<&str>) -> ProviderUser {
        ProviderUser {
            provider: "corp".into(),
            subject: "s".into(),
            email: email.map(|e| Email::parse(e).unwrap()),
            email_verified: true,
            preferred_username: preferred.map(String::from),
        }
    }

    #[test]
    fn new_account_names_come_from_the_providers_hints_cleaned() {
        assert_eq!(name_hint(&who(Some("ann"), Some("x@example.com"))), "ann");
        assert_eq!(name_hint(&who(None, Some("bob.b@example.com"))), "bob.b");
        assert_eq!(name_hint(&who(Some("<é>"), None)), "user");
        assert_eq!(name_hint(&who(None, None)), "user");
    }
}
