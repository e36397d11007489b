//! A refused call: the native error code, a message, and the HTTP status
//! that says the same.

use crate::hub::{ErrorCode, HubError, NameError};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadFrame, message)
    }

    pub fn invalid_room(err: NameError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRoom, err.0)
    }
}

impl From<HubError> for ApiError {
    fn from(err: HubError) -> Self {
        let status = match err {
            HubError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HubError::Forbidden | HubError::ReadOnly => StatusCode::FORBIDDEN,
            HubError::TooManyRooms(_)
            | HubError::MessageTooLong(_)
            | HubError::InvalidIdempotencyKey(_) => StatusCode::BAD_REQUEST,
        };
        Self::new(status, err.code(), err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.code.as_str(), "message": self.message});
        (self.status, Json(body)).into_response()
    }
}
