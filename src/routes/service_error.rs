//! How a use-case's failure answers over HTTP: each `service::Error` case becomes the
//! `ApiError` whose status, headers and body docs/contract.md "Conventions" gives it.

use crate::error::ApiError;
use crate::service::Error;

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidRequest(d) => ApiError::InvalidRequest(d),
            Error::InvalidGrant(d) => ApiError::InvalidGrant(d),
            Error::InvalidScope(d) => ApiError::InvalidScope(d),
            Error::InvalidTarget(d) => ApiError::InvalidTarget(d),
            // A client named in the body, not one that sent HTTP Basic: no challenge.
            Error::UnknownClient => ApiError::InvalidClient { basic: false },
            Error::InvalidCredentials => ApiError::InvalidCredentials,
            Error::SecondFactorRequired { mfa_token, methods } => {
                ApiError::MfaRequired { mfa_token, methods }
            }
            Error::WrongCode => ApiError::WrongCode,
            Error::StepUpRequired {
                description,
                max_age,
                needs_mfa,
            } => ApiError::StepUpRequired {
                description,
                max_age,
                needs_mfa,
            },
            Error::Unauthenticated(d) => ApiError::InvalidToken(d),
            Error::Forbidden(d) => ApiError::Forbidden(d),
            Error::NotFound(d) => ApiError::NotFound(d),
            Error::Conflict(d) => ApiError::Conflict(d),
            Error::RateLimited { retry_after_secs } => {
                ApiError::TooManyRequests { retry_after_secs }
            }
            Error::Unavailable { retry_after_secs } => ApiError::Unavailable { retry_after_secs },
            Error::DatabaseUnavailable { retry_after_secs } => {
                ApiError::DatabaseUnavailable { retry_after_secs }
            }
            Error::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::{header, StatusCode};
    use actix_web::ResponseError;

    use super::*;
    use crate::store::StoreError;

    #[test]
    fn an_unreachable_database_says_so_and_a_busy_store_says_busy() {
        let down = ApiError::from(Error::from(StoreError::Unavailable));
        let busy = ApiError::from(Error::from(StoreError::Busy));
        for e in [&down, &busy] {
            assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(e.code(), "temporarily_unavailable");
            assert!(e
                .error_response()
                .headers()
                .contains_key(header::RETRY_AFTER));
        }
        assert_eq!(down.to_string(), "the database is unavailable; retry later");
        assert_eq!(busy.to_string(), "the server is busy; retry later");
    }

    #[test]
    fn a_client_named_in_the_body_gets_no_basic_challenge() {
        let e = ApiError::from(Error::UnknownClient);
        assert_eq!(e.status_code(), StatusCode::UNAUTHORIZED);
        assert!(!e
            .error_response()
            .headers()
            .contains_key(header::WWW_AUTHENTICATE));
    }
}
