//! Ruma's typed requests and responses on axum.
//!
//! [`Ruma<T>`] extracts any `T: IncomingRequest` of `ruma::api` (the
//! Client-Server API's request types): the path parameters axum matched
//! (axum keeps the routing, with the `v3` and legacy `r0` prefixes; Ruma only
//! parses), the query string and the body, read under the same size limit as
//! [`crate::extract::Json`]. Every parse failure is a 400 Matrix error, never
//! a 500. [`RumaResponse<T>`] sends any `T: OutgoingResponse`. Where the
//! spec gives a body key a default that Ruma's type requires,
//! [`RumaFilled<T>`] fills it in first.
//!
//! Authentication stays the [`crate::Auth`] extractor, which reads only the
//! request's head: put it before `Ruma<T>`, which consumes the body.

use crate::error::MatrixError;
use crate::Homeserver;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::response::{IntoResponse, Response};
use conifer_rooms::ruma::api::error::{DeserializationError, FromHttpRequestError};
use conifer_rooms::ruma::api::{
    IncomingRequest, IncomingRequestExt, OutgoingResponse, OutgoingResponseExt,
};
use std::sync::Arc;

/// A request parsed by Ruma from the path, query string and body.
pub struct Ruma<T>(pub T);

#[axum::async_trait]
impl<T: IncomingRequest + Send> FromRequest<Arc<Homeserver>> for Ruma<T> {
    type Rejection = MatrixError;

    async fn from_request(req: Request, hs: &Arc<Homeserver>) -> Result<Self, Self::Rejection> {
        parse(req, hs, None).await.map(Ruma)
    }
}

/// Defaults the spec gives to keys of a request body that Ruma's type
/// requires.
pub trait BodyDefaults {
    /// Adds the defaults of the keys missing from a JSON object body.
    fn fill(body: &mut serde_json::Map<String, serde_json::Value>);
}

/// A request parsed by Ruma after the spec's defaults filled its body
/// ([`BodyDefaults`]); a body that is not a JSON object is left to Ruma.
pub struct RumaFilled<T>(pub T);

#[axum::async_trait]
impl<T: IncomingRequest + BodyDefaults + Send> FromRequest<Arc<Homeserver>> for RumaFilled<T> {
    type Rejection = MatrixError;

    async fn from_request(req: Request, hs: &Arc<Homeserver>) -> Result<Self, Self::Rejection> {
        parse(req, hs, Some(T::fill)).await.map(RumaFilled)
    }
}

type Fill = fn(&mut serde_json::Map<String, serde_json::Value>);

async fn parse<T: IncomingRequest>(
    req: Request,
    hs: &Arc<Homeserver>,
    fill: Option<Fill>,
) -> Result<T, MatrixError> {
    let (mut parts, body) = req.into_parts();
    let path_args: Vec<String> = match RawPathParams::from_request_parts(&mut parts, hs).await {
        Ok(params) => params.iter().map(|(_, v)| v.to_owned()).collect(),
        Err(axum::extract::rejection::RawPathParamsRejection::MissingPathParams(_)) => Vec::new(),
        Err(e) => return Err(MatrixError::invalid_param(e.body_text())),
    };
    let limit = hs.config.client.max_request_bytes;
    let mut bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| MatrixError::too_large(format!("request body exceeds {limit} bytes")))?
        .to_vec();
    // A body of white space is no body, as `extract::Json` has it.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        bytes.clear();
    }
    if let Some(fill) = fill {
        let parsed = if bytes.is_empty() {
            Ok(serde_json::Value::Object(Default::default()))
        } else {
            serde_json::from_slice::<serde_json::Value>(&bytes)
        };
        if let Ok(serde_json::Value::Object(mut body)) = parsed {
            fill(&mut body);
            bytes = serde_json::to_vec(&body).unwrap_or_default();
        }
    }
    let args: Vec<&str> = path_args.iter().map(String::as_str).collect();
    let req = axum::http::Request::from_parts(parts, bytes.as_slice());
    T::try_from_http_request(req, &args).map_err(request_error)
}

/// Ruma's parse errors as Matrix errors.
fn request_error(e: FromHttpRequestError) -> MatrixError {
    match e {
        FromHttpRequestError::MethodMismatch { .. } => MatrixError::method_not_allowed(),
        FromHttpRequestError::Deserialization(e) => deserialization_error(e),
        other => MatrixError::bad_json(other.to_string()),
    }
}

fn deserialization_error(e: DeserializationError) -> MatrixError {
    match e {
        // Ruma parses only JSON bodies as JSON: a syntax error or a cut-off
        // body is not JSON; JSON of the wrong shape is bad JSON.
        DeserializationError::Json(e) if e.is_syntax() || e.is_eof() => {
            MatrixError::not_json(format!("body is not JSON: {e}"))
        }
        DeserializationError::Json(e) => MatrixError::bad_json(e.to_string()),
        // Path parameters and the query string (Ruma deserializes both with
        // serde's value deserializers, so the two share one error type).
        DeserializationError::Query(e) => {
            let text = e.to_string();
            if text.contains("missing field") {
                MatrixError::missing_param(text)
            } else {
                MatrixError::invalid_param(text)
            }
        }
        DeserializationError::Ident(e) => MatrixError::invalid_param(e.to_string()),
        DeserializationError::Utf8(e) => MatrixError::invalid_param(e.to_string()),
        DeserializationError::Header(e) => MatrixError::invalid_param(e.to_string()),
        other => MatrixError::bad_json(other.to_string()),
    }
}

/// A typed response, sent as Ruma serializes it.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<Vec<u8>>() {
            Ok(res) => res.map(axum::body::Body::from).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "a response could not be serialized");
                MatrixError::unknown_internal("the response could not be serialized")
                    .into_response()
            }
        }
    }
}

impl<T> From<T> for RumaResponse<T> {
    fn from(t: T) -> Self {
        RumaResponse(t)
    }
}

/// What a typed handler returns.
pub type RumaResult<T> = crate::ApiResult<RumaResponse<T>>;
