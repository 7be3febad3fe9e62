//! Matrix error responses: `{"errcode": "M_…", "error": "…"}` with the status
//! the spec gives for each code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Debug)]
pub struct MatrixError {
    pub status: StatusCode,
    pub errcode: &'static str,
    pub message: String,
    /// Extra top-level fields (e.g. `retry_after_ms`, UIA flows).
    pub extra: Option<Value>,
}

pub type ApiResult<T> = Result<T, MatrixError>;

macro_rules! constructor {
    ($name:ident, $status:ident, $code:literal) => {
        pub fn $name(message: impl Into<String>) -> Self {
            Self::new(StatusCode::$status, $code, message)
        }
    };
}

impl MatrixError {
    pub fn new(status: StatusCode, errcode: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            errcode,
            message: message.into(),
            extra: None,
        }
    }

    constructor!(forbidden, FORBIDDEN, "M_FORBIDDEN");
    constructor!(not_found, NOT_FOUND, "M_NOT_FOUND");
    constructor!(bad_json, BAD_REQUEST, "M_BAD_JSON");
    constructor!(not_json, BAD_REQUEST, "M_NOT_JSON");
    constructor!(missing_param, BAD_REQUEST, "M_MISSING_PARAM");
    constructor!(invalid_param, BAD_REQUEST, "M_INVALID_PARAM");
    constructor!(unknown_token, UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    constructor!(missing_token, UNAUTHORIZED, "M_MISSING_TOKEN");
    constructor!(too_large, PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    constructor!(user_in_use, BAD_REQUEST, "M_USER_IN_USE");
    constructor!(invalid_username, BAD_REQUEST, "M_INVALID_USERNAME");
    constructor!(room_in_use, BAD_REQUEST, "M_ROOM_IN_USE");
    constructor!(
        unsupported_room_version,
        BAD_REQUEST,
        "M_UNSUPPORTED_ROOM_VERSION"
    );
    constructor!(
        guest_access_forbidden,
        FORBIDDEN,
        "M_GUEST_ACCESS_FORBIDDEN"
    );
    constructor!(user_deactivated, FORBIDDEN, "M_USER_DEACTIVATED");
    constructor!(not_yet_uploaded, GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED");
    constructor!(unknown_internal, INTERNAL_SERVER_ERROR, "M_UNKNOWN");
    constructor!(bad_alias, BAD_REQUEST, "M_BAD_ALIAS");

    pub fn unrecognized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "M_UNRECOGNIZED",
            "method not allowed on this endpoint",
        )
    }

    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "M_LIMIT_EXCEEDED",
            "too many requests",
        );
        e.extra = Some(json!({ "retry_after_ms": retry_after_ms }));
        e
    }

    /// The same error under another status and code.
    pub fn into_code(mut self, status: StatusCode, errcode: &'static str) -> Self {
        self.status = status;
        self.errcode = errcode;
        self
    }

    pub fn with_extra(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }

    /// A user-interactive authentication challenge: HTTP 401 whose body is
    /// only `body` (flows, params, session, completed), with no `errcode` or
    /// `error`, as the spec's first UIA response shows.
    pub fn uia_challenge(body: Value) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, UIA_CHALLENGE, "").with_extra(body)
    }
}

/// The marker errcode of [`MatrixError::uia_challenge`]: never sent.
const UIA_CHALLENGE: &str = "";

impl IntoResponse for MatrixError {
    fn into_response(self) -> Response {
        if self.errcode == UIA_CHALLENGE {
            let body = self.extra.unwrap_or_else(|| json!({}));
            return (self.status, axum::Json(body)).into_response();
        }
        let mut body = json!({ "errcode": self.errcode, "error": self.message });
        if let (Some(Value::Object(extra)), Some(obj)) = (self.extra, body.as_object_mut()) {
            obj.extend(extra);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<conifer_store::StoreError> for MatrixError {
    fn from(e: conifer_store::StoreError) -> Self {
        tracing::error!(error = %e, "storage error");
        MatrixError::unknown_internal("internal storage error")
    }
}

impl From<conifer_rooms::BuildError> for MatrixError {
    fn from(e: conifer_rooms::BuildError) -> Self {
        use conifer_rooms::BuildError::*;
        match e {
            UnsupportedVersion(v) => {
                MatrixError::unsupported_room_version(format!("room version {v} is not supported"))
            }
            Invalid(m) => MatrixError::bad_json(m),
            TooLarge => MatrixError::too_large("event exceeds 65536 bytes"),
            Forbidden(m) => MatrixError::forbidden(m),
        }
    }
}
