//! The refresh grant: rotation with a grace interval and reuse detection (the rules are
//! in `domain::rotation`; docs/contract.md "Refresh rotation").

use super::issue::{audiences_for, issue, Issued, Issuing};
use super::Error;
use crate::domain::model::ClientContext;
use crate::domain::rotation::{self, RefreshOutcome, RefreshRequest, Rejection};
use crate::domain::{RefreshToken, Scope};

pub struct RefreshInput<'a> {
    /// The refresh token as presented (form field or cookie).
    pub raw_token: &'a str,
    /// The client that presents it; `None`: whoever it was issued to.
    pub client_id: Option<&'a str>,
    /// A narrower scope, if asked for (RFC 6749 §6).
    pub scope: Option<Scope>,
    pub ctx: ClientContext,
}

pub async fn refresh(deps: &Issuing<'_>, input: RefreshInput<'_>) -> Result<Issued, Error> {
    refresh_for(deps, input, &[]).await
}

/// [`refresh`], the access token narrowed to the `resource`s asked for (RFC 8707 §2.2;
/// none: every audience of the session's client).
#[tracing::instrument(skip_all)]
pub async fn refresh_for(
    deps: &Issuing<'_>,
    input: RefreshInput<'_>,
    resource: &[String],
) -> Result<Issued, Error> {
    let Ok(token) = RefreshToken::parse(input.raw_token) else {
        return Err(Error::InvalidGrant(Rejection::Unknown.description().into()));
    };
    if let Some(id) = input.client_id {
        if deps.settings.client(id).is_none() {
            return Err(Error::UnknownClient);
        }
    }
    if !resource.is_empty() {
        // A bad `resource` must fail before the token rotates, or the client would lose
        // the new token with the error. A session's client never changes, so reading it
        // ahead of the write is safe.
        let session =
            super::revoke::session_of_refresh_token(deps.gate.store, deps.sealer, input.raw_token)
                .await?;
        if let Some(client) = session.and_then(|s| deps.settings.client(&s.client_id)) {
            audiences_for(deps.settings, client, resource)?;
        }
    }
    let request = RefreshRequest {
        token,
        client_id: input.client_id.map(str::to_owned),
        scope: input.scope,
        reuse_interval_ms: deps.settings.refresh.reuse_interval.as_millis_i64(),
        record_event: deps.settings.events.record_refreshes,
        ctx: input.ctx,
    };
    let (clock, rng, sealer, settings) = (
        deps.gate.clock.clone(),
        deps.rng.clone(),
        deps.sealer.clone(),
        deps.settings.clone(),
    );
    // Every write of a refresh is conditional on what it read (docs/architecture.md "The
    // PostgreSQL backend"), so concurrent refreshes may share a transaction.
    let (outcome, now) = deps
        .gate
        .store
        .write_conditional(async move |tx| {
            let idle_ms = |s: &crate::domain::model::Session| {
                settings
                    .lifetimes(settings.client(&s.client_id), s.remember_me)
                    .idle_ms
            };
            // The rules read the time when the job has its session, not when the request
            // arrived (`rotation::refresh`); the access token is issued at that time too.
            let mut read_at = None;
            let read_clock = || *read_at.insert(clock.now_millis());
            let outcome =
                rotation::refresh(tx, read_clock, &rng, sealer.as_ref(), &request, idle_ms).await?;
            Ok((outcome, read_at))
        })
        .await?;
    let now = now.unwrap_or_else(|| deps.gate.now());
    deps.gate.metrics.refresh(outcome.label());
    let granted = match outcome {
        RefreshOutcome::Rotated(g) | RefreshOutcome::Replayed(g) => g,
        RefreshOutcome::Rejected(Rejection::ScopeTooWide) => {
            return Err(Error::InvalidScope(
                Rejection::ScopeTooWide.description().into(),
            ))
        }
        RefreshOutcome::Rejected(r) => return Err(Error::InvalidGrant(r.description().into())),
        RefreshOutcome::ReuseDetected => {
            return Err(Error::InvalidGrant(
                Rejection::SessionEnded.description().into(),
            ));
        }
    };
    let client = deps
        .settings
        .client(&granted.session.client_id)
        .cloned()
        .ok_or_else(|| Error::InvalidGrant("the client no longer exists".into()))?;
    let audiences = audiences_for(deps.settings, &client, resource)?;
    issue(
        deps.tokens,
        deps.settings,
        &client,
        granted.session,
        &granted.user,
        &granted.scope,
        audiences,
        granted.token,
        now,
    )
}
