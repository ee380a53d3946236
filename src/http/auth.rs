//! Authentication: the only place a request's tenant comes from.
//!
//! [`AuthUser`] turns a bearer token into a user of a tenant; [`MasterAuth`] admits the platform
//! operator to the super-admin routes. Tokens are read from the `Authorization` header only
//! (`Bearer <token>` in any case, or the bare token), hashed, and looked up through a bounded
//! cache with a short TTL so that authenticated requests do not each cost a database round trip.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

pub use super::credentials::{AuthUser, MasterToken, TokenCache};
use super::error::ApiError;
use super::state::AppState;
use crate::domain::ApiToken;
use crate::store;

/// The credential in the `Authorization` header, before it is checked.
fn credential(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("missing bearer token"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("invalid bearer token"))?
        .trim();
    match value.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = rest.trim();
            if token.is_empty() {
                Err(ApiError::Unauthorized("missing bearer token"))
            } else {
                Ok(token)
            }
        }
        Some(_) => Err(ApiError::Unauthorized(
            "unsupported authorization scheme; use Bearer",
        )),
        None if value.is_empty() || value.eq_ignore_ascii_case("bearer") => {
            Err(ApiError::Unauthorized("missing bearer token"))
        }
        None => Ok(value),
    }
}

/// Looks a token up through the cache, then the database. `None`: unknown or inactive.
async fn lookup(state: &AppState, token: &ApiToken) -> Result<Option<AuthUser>, ApiError> {
    let hash = token.hash();
    if let Some(user) = state.auth_cache.get(&hash) {
        return Ok(Some(user));
    }
    let Some(row) = store::users::find_active_by_token(&state.db, &hash).await? else {
        return Ok(None);
    };
    let user = AuthUser {
        user_id: row.id,
        tenant_id: row.tenant_id,
        role: row.role,
    };
    state.auth_cache.insert(hash, user);
    Ok(Some(user))
}

impl AuthUser {
    /// The user a request's bearer token names, if it names one. `Ok(None)`: no header, or a
    /// credential that is not a user token (the extractor then answers 401); an error only
    /// when the store could not be asked.
    pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Option<Self>, ApiError> {
        let Ok(raw) = credential(parts) else {
            return Ok(None);
        };
        let Some(token) = ApiToken::parse(raw) else {
            return Ok(None);
        };
        lookup(state, &token).await
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Found (and its tenant's budget taken) by the budget layer.
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(*user);
        }
        let raw = credential(parts)?;
        let token = ApiToken::parse(raw).ok_or(ApiError::Unauthorized("invalid bearer token"))?;
        lookup(state, &token)
            .await?
            .ok_or(ApiError::Unauthorized("invalid bearer token"))
    }
}

/// The platform operator, holding the master token.
#[derive(Debug, Clone, Copy)]
pub struct MasterAuth;

impl FromRequestParts<AppState> for MasterAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(master) = &state.master_token else {
            return Err(ApiError::Forbidden(
                "master token not configured".to_owned(),
            ));
        };
        let presented = credential(parts)?;
        if master.matches(presented) {
            return Ok(MasterAuth);
        }
        // A valid user token is a real identity without the right to be here: 403, not 401.
        if let Some(token) = ApiToken::parse(presented)
            && lookup(state, &token).await?.is_some()
        {
            return Err(ApiError::Forbidden(
                "this route needs the master token".to_owned(),
            ));
        }
        Err(ApiError::Unauthorized("invalid bearer token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::domain::{Role, TenantId, UserId};
    use axum::http::Request;

    fn parts(authorization: Option<&str>) -> Parts {
        let mut builder = Request::builder().uri("/users");
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder.body(()).expect("request").into_parts().0
    }

    #[test]
    fn credential_accepts_bearer_in_any_case_and_bare_tokens() {
        for header in [
            "Bearer abc",
            "bearer abc",
            "BEARER   abc ",
            "abc",
            "  abc  ",
        ] {
            assert_eq!(
                credential(&parts(Some(header))).ok(),
                Some("abc"),
                "{header}"
            );
        }
    }

    #[test]
    fn credential_refuses_other_schemes_and_missing_tokens() {
        for header in [
            None,
            Some(""),
            Some("Bearer "),
            Some("Basic YWxhZGRpbjpvcGVu"),
        ] {
            assert!(
                matches!(credential(&parts(header)), Err(ApiError::Unauthorized(_))),
                "{header:?}"
            );
        }
    }

    fn user() -> AuthUser {
        AuthUser {
            user_id: UserId::new_random(),
            tenant_id: TenantId::new_random(),
            role: Role::User,
        }
    }

    #[test]
    fn cache_expires_and_forgets() {
        let cache = TokenCache::new(Duration::from_secs(60), 100);
        let (a, b) = (ApiToken::generate().hash(), ApiToken::generate().hash());
        let (ua, ub) = (user(), user());
        cache.insert(a, ua);
        cache.insert(b, ub);
        assert_eq!(cache.get(&a), Some(ua));
        cache.forget_user(ua.user_id);
        assert_eq!(cache.get(&a), None);
        assert_eq!(cache.get(&b), Some(ub));
        cache.forget_tenant(ub.tenant_id);
        assert!(cache.is_empty());

        let expired = TokenCache::new(Duration::from_nanos(1), 100);
        expired.insert(a, ua);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(expired.get(&a), None);
    }

    #[test]
    fn cache_stays_bounded() {
        let cache = TokenCache::new(Duration::from_secs(60), 50);
        for _ in 0..500 {
            cache.insert(ApiToken::generate().hash(), user());
        }
        assert!(cache.len() <= 50, "len {}", cache.len());
        let last = ApiToken::generate().hash();
        let u = user();
        cache.insert(last, u);
        assert_eq!(cache.get(&last), Some(u));
    }

    #[test]
    fn master_token_comparison() {
        let master = MasterToken::new("a-long-enough-master-token");
        assert!(master.matches("a-long-enough-master-token"));
        assert!(!master.matches("a-long-enough-master-tokeN"));
        assert!(!master.matches(""));
    }

    proptest::proptest! {
        #[test]
        fn any_header_value_is_answered_without_panicking(value in "[ -~]{0,80}") {
            if let Ok(token) = credential(&parts(Some(&value))) {
                proptest::prop_assert!(!token.is_empty());
                proptest::prop_assert!(value.contains(token));
            }
        }
    }
}
