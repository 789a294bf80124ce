//! The one mapping from failures to HTTP responses. Internal detail goes to the log (without
//! personal data), never to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kanta_fhir::{ErrorKind, FhirError};
use kanta_store::StoreError;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// An error answered as a FHIR `OperationOutcome`.
#[derive(Debug)]
pub struct ApiError(pub FhirError);

impl From<FhirError> for ApiError {
    fn from(e: FhirError) -> Self {
        ApiError(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if !matches!(e, StoreError::Fhir(_)) {
            // The message of a database error names tables and constraints, never row values.
            tracing::error!(error = %e, "store failure");
        }
        ApiError(e.to_fhir())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.0.to_operation_outcome().to_string();
        let mut res = (status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        if self.0.kind == ErrorKind::Unauthorized {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
