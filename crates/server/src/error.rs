//! The API's one error type and its one `IntoResponse`.
//!
//! Invariant: every error the API returns goes through [`ApiError`], whose
//! [`ApiError::kind`] alone decides the HTTP status; the body is always
//! `{"error":{"code","message","field"}}` — except the seed's missing trace,
//! which keeps the seed's exact `{"error":"trace_not_found"}`. Bad input is
//! never a 5xx.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sextant_alert::AlertError;
use sextant_model::ValidationError;
use sextant_query::QueryError;
use sextant_storage::{ErrorKind as StoreKind, StorageError};

/// What class of failure an error is; decides the HTTP status.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// 400: unreadable request (malformed JSON, bad query parameter).
    BadRequest,
    /// 401: no or unknown API key.
    Unauthenticated,
    /// 403: the key lacks the scope.
    Forbidden,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 409: a rule of that name exists.
    Conflict,
    /// 413: body or batch too large.
    PayloadTooLarge,
    /// 415: content type not accepted.
    UnsupportedMediaType,
    /// 422: well-formed but invalid (missing field, out-of-range value).
    Unprocessable,
    /// 503: shutting down, or the store is unavailable.
    Unavailable,
    /// 500: a bug or a storage failure; never caused by input.
    Internal,
}

impl ApiErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ApiErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ApiErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ApiErrorKind::NotFound => StatusCode::NOT_FOUND,
            ApiErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiErrorKind::Conflict => StatusCode::CONFLICT,
            ApiErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ApiErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An API error. `code` is a stable machine-readable string.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A request that cannot be read: malformed JSON, bad query parameter.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// A readable request whose content is invalid.
    #[error("invalid {field}: {message}")]
    Invalid {
        code: &'static str,
        field: String,
        message: String,
    },
    #[error("an API key is required (Authorization: Bearer … or X-API-Key)")]
    MissingKey,
    #[error("the API key is not valid")]
    UnknownKey,
    #[error("this API key lacks the {0} scope")]
    Forbidden(&'static str),
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The seed's exact missing-trace answer.
    #[error("trace_not_found")]
    TraceNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize, field: Option<String> },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn kind(&self) -> ApiErrorKind {
        match self {
            ApiError::BadRequest { .. } => ApiErrorKind::BadRequest,
            ApiError::Invalid { .. } => ApiErrorKind::Unprocessable,
            ApiError::MissingKey | ApiError::UnknownKey => ApiErrorKind::Unauthenticated,
            ApiError::Forbidden(_) => ApiErrorKind::Forbidden,
            ApiError::NotFound { .. } | ApiError::TraceNotFound => ApiErrorKind::NotFound,
            ApiError::MethodNotAllowed => ApiErrorKind::MethodNotAllowed,
            ApiError::Conflict(_) => ApiErrorKind::Conflict,
            ApiError::TooLarge { .. } => ApiErrorKind::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => ApiErrorKind::UnsupportedMediaType,
            ApiError::Unavailable(_) => ApiErrorKind::Unavailable,
            ApiError::Internal(_) => ApiErrorKind::Internal,
        }
    }

    /// The stable `code` of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::Invalid { code, .. } => code,
            ApiError::MissingKey => "missing_api_key",
            ApiError::UnknownKey => "invalid_api_key",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound { code, .. } => code,
            ApiError::TraceNotFound => "trace_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { field, .. } => field.as_deref(),
            ApiError::Invalid { field, .. } => Some(field),
            ApiError::TooLarge { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// 400 for an unreadable body.
    pub fn malformed(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code: "malformed_body",
            message: message.into(),
            field: None,
        }
    }

    /// 400 for a bad query parameter.
    pub fn param(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code: "invalid_parameter",
            message: message.into(),
            field: Some(field.to_string()),
        }
    }

    /// 422 for an invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            code: "invalid_field",
            field: field.into(),
            message: message.into(),
        }
    }

    /// 422 for a missing required field.
    pub fn missing(field: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            code: "missing_field",
            field: field.into(),
            message: "is required".into(),
        }
    }

    /// The JSON body this error is answered with.
    pub fn body(&self) -> serde_json::Value {
        if let ApiError::TraceNotFound = self {
            return serde_json::json!({"error": "trace_not_found"});
        }
        let message = match self {
            ApiError::Invalid { field, message, .. } => format!("{field} {message}"),
            other => other.to_string(),
        };
        serde_json::json!({"error": {
            "code": self.code(),
            "message": message,
            "field": self.field(),
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.kind().status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut resp = (status, axum::Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> ApiError {
        ApiError::invalid(e.field, e.message)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        if let StorageError::Invalid(v) = e {
            return v.into();
        }
        match e.kind() {
            StoreKind::InvalidInput => ApiError::invalid("body", e.to_string()),
            StoreKind::NotFound => ApiError::NotFound {
                code: "not_found",
                message: e.to_string(),
            },
            StoreKind::Unavailable => ApiError::Unavailable(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        match e {
            QueryError::InvalidInput { field, message } => ApiError::param(&field, message),
            QueryError::Storage(s) => s.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<AlertError> for ApiError {
    fn from(e: AlertError) -> ApiError {
        match e {
            AlertError::InvalidInput { field, message } => ApiError::invalid(field, message),
            AlertError::NotFound { what, name } => ApiError::NotFound {
                code: "not_found",
                message: format!("no {what} named {name}"),
            },
            AlertError::Conflict(name) => {
                ApiError::Conflict(format!("a rule named {name} already exists"))
            }
            AlertError::Storage(s) => s.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::Internal(format!("a blocking task failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_kinds_map_to_4xx_and_bodies_have_code_message_field() {
        let cases: Vec<(ApiError, u16)> = vec![
            (ApiError::malformed("x"), 400),
            (ApiError::param("window_minutes", "bad"), 400),
            (ApiError::invalid("latency_ms", "must not be negative"), 422),
            (ApiError::missing("model"), 422),
            (ApiError::MissingKey, 401),
            (ApiError::UnknownKey, 401),
            (ApiError::Forbidden("admin"), 403),
            (
                ApiError::TooLarge {
                    limit: 1,
                    field: None,
                },
                413,
            ),
            (ApiError::UnsupportedMediaType("text/plain".into()), 415),
            (ApiError::MethodNotAllowed, 405),
        ];
        for (e, status) in cases {
            assert_eq!(e.kind().status().as_u16(), status, "{e:?}");
            let body = e.body();
            let err = &body["error"];
            assert!(err["code"].is_string(), "{body}");
            assert!(err["message"].is_string(), "{body}");
            assert!(err.get("field").is_some(), "{body}");
        }
        assert_eq!(
            ApiError::invalid("latency_ms", "x").body()["error"]["field"],
            "latency_ms"
        );
    }

    #[test]
    fn missing_trace_keeps_the_seeds_exact_body() {
        let e = ApiError::TraceNotFound;
        assert_eq!(e.kind().status(), StatusCode::NOT_FOUND);
        assert_eq!(e.body(), serde_json::json!({"error": "trace_not_found"}));
    }

    #[test]
    fn validation_and_storage_invalid_input_become_422() {
        let v = ValidationError::new("timestamp", "is more than 300 s in the future");
        let e: ApiError = StorageError::Invalid(v).into();
        assert_eq!(e.kind(), ApiErrorKind::Unprocessable);
        assert_eq!(e.field(), Some("timestamp"));
        let e: ApiError = StorageError::ShuttingDown.into();
        assert_eq!(e.kind(), ApiErrorKind::Unavailable);
    }
}
