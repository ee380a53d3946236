//! Our own `Json`, `Query` and path extractors: every rejection is the WUTS error envelope with
//! the offending field named (`jids[3]`, `options.announcement`, `id`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;

/// A JSON request body. Missing, empty or malformed bodies are `VALIDATION_ERROR`; bodies over
/// the limit are `PAYLOAD_TOO_LARGE`. The `Content-Type` is not checked: the published API's
/// clients do not all send one.
#[derive(Debug)]
pub struct Json<T>(pub T);

/// A JSON body that may be absent: an empty body is `None` (routes that fall back to the query
/// string, such as block and unblock, use it).
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

/// The body, under the body limit.
pub(super) async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::field("body", "the request body could not be read")
        }
    })
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if is_blank(&bytes) {
            return Err(ApiError::field("body", "a JSON object is required"));
        }
        parse_json(&bytes).map(Json)
    }
}

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if is_blank(&bytes) {
            return Ok(OptionalJson(None));
        }
        parse_json(&bytes).map(|value| OptionalJson(Some(value)))
    }
}

/// Parses a JSON object, naming the field of the first problem.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also accept an array for a struct, field by position; bodies are objects.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let malformed = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err();
        let message = if malformed {
            "malformed JSON"
        } else {
            "expected a JSON object"
        };
        return Err(ApiError::field("body", message));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let syntax = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).err();
        match (inner.classify(), syntax) {
            // A document that is not JSON at all is reported as such, even when the
            // deserializer met a wrong field before the syntax error.
            (serde_json::error::Category::Data, None) => data_error("", &path, &inner.to_string()),
            (_, syntax) => ApiError::field(
                "body",
                format!(
                    "malformed JSON: {}",
                    strip_position(&syntax.unwrap_or(inner).to_string())
                ),
            ),
        }
    })?;
    de.end().map_err(|err| {
        ApiError::field(
            "body",
            format!("malformed JSON: {}", strip_position(&err.to_string())),
        )
    })?;
    Ok(value)
}

/// Turns a serde data error at `path` into a field error. `prefix` is prepended to field names
/// (empty for bodies).
fn data_error(prefix: &str, path: &str, message: &str) -> ApiError {
    let message = strip_position(message);
    let at_root = path == "." || path.is_empty();
    let join = |field: &str| -> String {
        match (at_root, prefix.is_empty()) {
            (true, true) => field.to_owned(),
            (true, false) => format!("{prefix}{field}"),
            (false, _) => format!("{prefix}{path}.{field}"),
        }
    };
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return ApiError::field(join(missing), "is required");
    }
    if at_root {
        let field = if prefix.is_empty() { "body" } else { "query" };
        let message = if message.starts_with("invalid type") {
            "expected a JSON object".to_owned()
        } else {
            message
        };
        return ApiError::field(field, message);
    }
    ApiError::field(format!("{prefix}{path}"), message)
}

/// serde_json appends " at line 1 column 17"; clients do not need it in a field message.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_owned(),
        None => message.to_owned(),
    }
}

/// Query-string parameters, parsed with the offending parameter named.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

/// Parses a query string into `T`.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        data_error("", &path, &err.into_inner().to_string())
    })
}

/// The raw value of the path parameter `name`; `unreadable` is the message when the path
/// cannot be read at all.
async fn path_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &'static str,
    unreadable: &'static str,
) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::field(name, unreadable))?;
    params
        .iter()
        .find(|(param, _)| *param == name)
        .map(|(_, value)| value.to_owned())
        .ok_or_else(|| ApiError::field(name, "is required"))
}

/// A UUID path parameter named `id` (`/users/{id}`, `/devices/{id}`), converted to a typed id.
/// A value that is not a UUID is `VALIDATION_ERROR` naming `id`.
#[derive(Debug)]
pub struct IdPath<T>(pub T);

impl<T, S> FromRequestParts<S> for IdPath<T>
where
    T: From<Uuid>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_param(parts, state, "id", "is required").await?;
        let raw = raw.as_str();
        Uuid::try_parse(raw)
            .map(|id| IdPath(T::from(id)))
            .map_err(|_| {
                ApiError::fields(vec![
                    super::error::FieldError::new("id", "not a valid id (UUID)").with_value(raw),
                ])
            })
    }
}

/// Parses every item of a list field, naming each invalid one (`participants[3]`) with its
/// value.
pub fn parse_items<T, E: std::fmt::Display>(
    field: &str,
    items: &[String],
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Vec<T>, ApiError> {
    let mut parsed = Vec::with_capacity(items.len());
    let mut invalid = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match parse(item) {
            Ok(value) => parsed.push(value),
            Err(e) => invalid.push(
                super::error::FieldError::new(format!("{field}[{index}]"), e.to_string())
                    .with_value(item.clone()),
            ),
        }
    }
    if invalid.is_empty() {
        Ok(parsed)
    } else {
        Err(ApiError::fields(invalid))
    }
}

/// A group or community JID path parameter named `jid` (`/groups/{jid}`), `@` plain or
/// percent-encoded. Anything but `<digits>@g.us` is `VALIDATION_ERROR` naming `jid`.
#[derive(Debug)]
pub struct GroupPath(pub crate::domain::GroupJid);

impl<S> FromRequestParts<S> for GroupPath
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_param(parts, state, "jid", "must be a group JID (<digits>@g.us)").await?;
        let raw = raw.as_str();
        crate::domain::GroupJid::parse(raw)
            .map(GroupPath)
            .map_err(|e| {
                ApiError::fields(vec![
                    super::error::FieldError::new("jid", e.to_string()).with_value(raw),
                ])
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[expect(dead_code, reason = "fields exist to be deserialized")]
    struct Body {
        email: String,
        count: u32,
        jids: Vec<String>,
        options: Option<Options>,
    }

    #[derive(Debug, Deserialize)]
    #[expect(dead_code, reason = "fields exist to be deserialized")]
    struct Options {
        announcement: bool,
    }

    fn field_of(err: ApiError) -> String {
        match err {
            ApiError::Validation { fields, .. } => {
                fields.first().map(|f| f.field.clone()).unwrap_or_default()
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let missing = parse_json::<Body>(br#"{"count":1,"jids":[]}"#).unwrap_err();
        assert_eq!(field_of(missing), "email");
        let wrong_type = parse_json::<Body>(br#"{"email":"a","count":"x","jids":[]}"#).unwrap_err();
        assert_eq!(field_of(wrong_type), "count");
        let in_list = parse_json::<Body>(br#"{"email":"a","count":1,"jids":["a",3]}"#).unwrap_err();
        assert_eq!(field_of(in_list), "jids[1]");
        let nested = parse_json::<Body>(
            br#"{"email":"a","count":1,"jids":[],"options":{"announcement":"yes"}}"#,
        )
        .unwrap_err();
        assert_eq!(field_of(nested), "options.announcement");
        let nested_missing =
            parse_json::<Body>(br#"{"email":"a","count":1,"jids":[],"options":{}}"#).unwrap_err();
        assert_eq!(field_of(nested_missing), "options.announcement");
    }

    #[test]
    fn malformed_and_non_object_bodies_name_the_body() {
        assert_eq!(
            field_of(parse_json::<Body>(b"{\"email\":").unwrap_err()),
            "body"
        );
        assert_eq!(field_of(parse_json::<Body>(b"[1,2]").unwrap_err()), "body");
        assert_eq!(
            field_of(parse_json::<Body>(b"{} trailing").unwrap_err()),
            "body"
        );
    }

    #[derive(Debug, Deserialize)]
    #[expect(dead_code, reason = "fields exist to be deserialized")]
    struct Params {
        refresh: Option<bool>,
        limit: Option<u32>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        assert_eq!(
            field_of(parse_query::<Params>("refresh=maybe").unwrap_err()),
            "refresh"
        );
        assert_eq!(
            field_of(parse_query::<Params>("limit=-1").unwrap_err()),
            "limit"
        );
        assert!(parse_query::<Params>("refresh=true&limit=3&other=x").is_ok());
    }

    proptest::proptest! {
        /// Arbitrary bytes as a body or a query string: an answer, never a panic, and a refused
        /// body always names where the problem is.
        #[test]
        fn arbitrary_bodies_and_queries_never_panic(bytes in proptest::collection::vec(0u8.., 0..200), query in "\\PC{0,80}") {
            if let Err(err) = parse_json::<Body>(&bytes) {
                proptest::prop_assert!(!field_of(err).is_empty());
            }
            let _ = parse_query::<std::collections::HashMap<String, String>>(&query);
        }
    }
}

/// An event id path parameter named `id` (`/events/{id}`): `evt_` and 32 hex digits, else
/// `VALIDATION_ERROR` naming `id`.
#[derive(Debug)]
pub struct EventPath(pub crate::domain::EventId);

impl<S> FromRequestParts<S> for EventPath
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_param(parts, state, "id", "is required").await?;
        let raw = raw.as_str();
        crate::domain::EventId::parse(raw)
            .map(EventPath)
            .ok_or_else(|| {
                ApiError::fields(vec![
                    super::error::FieldError::new("id", "not an event id (evt_ and 32 hex digits)")
                        .with_value(raw),
                ])
            })
    }
}
