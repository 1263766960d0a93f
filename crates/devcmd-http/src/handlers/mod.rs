//! The request handlers, one file per group of endpoints.

pub(crate) mod commands;
pub(crate) mod devices;
pub(crate) mod health;
pub(crate) mod sec;
pub(crate) mod tasks;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

/// A JSON response with the given status.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
