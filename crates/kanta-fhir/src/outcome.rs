//! `OperationOutcome`: how every FHIR error reaches a client.

use serde_json::{json, Value};

/// What kind of failure this is; the HTTP layer maps it to a status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is not well-formed (malformed JSON, wrong type, bad parameter).
    BadRequest,
    /// 401: no valid credentials.
    Unauthorized,
    /// 403: authenticated but not allowed.
    Forbidden,
    /// 404: no such resource (or not visible to the caller).
    NotFound,
    /// 405: the interaction is not supported for this type.
    MethodNotAllowed,
    /// 409: conflicts with the current state (duplicate HETU, concurrent change).
    Conflict,
    /// 412: `If-Match` did not match the current version.
    PreconditionFailed,
    /// 408: the request's body did not arrive in time.
    RequestTimeout,
    /// 413: body over the limit.
    PayloadTooLarge,
    /// 415: not FHIR JSON.
    UnsupportedMediaType,
    /// 422: well-formed but breaks a rule of the profile or platform (missing element, invalid HETU).
    Unprocessable,
    /// 500 / 503: our fault; details go to the log, never to the client.
    Internal,
    Unavailable,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::PreconditionFailed => 412,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Unprocessable => 422,
            ErrorKind::Internal => 500,
            ErrorKind::Unavailable => 503,
        }
    }

    /// The `OperationOutcome.issue.code` (IssueType) that fits.
    fn issue_code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "structure",
            ErrorKind::Unauthorized => "login",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not-found",
            ErrorKind::MethodNotAllowed => "not-supported",
            ErrorKind::Conflict => "conflict",
            ErrorKind::PreconditionFailed => "conflict",
            ErrorKind::RequestTimeout => "timeout",
            ErrorKind::PayloadTooLarge => "too-costly",
            ErrorKind::UnsupportedMediaType => "not-supported",
            ErrorKind::Unprocessable => "invariant",
            ErrorKind::Internal => "exception",
            ErrorKind::Unavailable => "transient",
        }
    }
}

/// One issue: a message for people and the FHIRPath of the element at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub code: Option<&'static str>,
    pub diagnostics: String,
    pub expression: Option<String>,
}

/// A FHIR-level failure. `Display` gives the first message (safe for clients: never internal detail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FhirError {
    pub kind: ErrorKind,
    pub issues: Vec<Issue>,
}

impl std::fmt::Display for FhirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.issues.first() {
            Some(i) => f.write_str(&i.diagnostics),
            None => write!(f, "{:?}", self.kind),
        }
    }
}

impl std::error::Error for FhirError {}

impl FhirError {
    pub fn new(kind: ErrorKind, diagnostics: impl Into<String>) -> Self {
        FhirError {
            kind,
            issues: vec![Issue {
                code: None,
                diagnostics: diagnostics.into(),
                expression: None,
            }],
        }
    }

    /// An error about one element, named by its FHIRPath (e.g. `Patient.identifier[0].value`).
    pub fn at(
        kind: ErrorKind,
        expression: impl Into<String>,
        diagnostics: impl Into<String>,
    ) -> Self {
        FhirError {
            kind,
            issues: vec![Issue {
                code: None,
                diagnostics: diagnostics.into(),
                expression: Some(expression.into()),
            }],
        }
    }

    pub fn invalid(expression: impl Into<String>, diagnostics: impl Into<String>) -> Self {
        FhirError::at(ErrorKind::Unprocessable, expression, diagnostics)
    }

    pub fn bad_request(diagnostics: impl Into<String>) -> Self {
        FhirError::new(ErrorKind::BadRequest, diagnostics)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        FhirError::new(ErrorKind::NotFound, diagnostics)
    }

    pub fn internal() -> Self {
        FhirError::new(
            ErrorKind::Internal,
            "internal error; the incident has been logged",
        )
    }

    /// Prefix every issue's expression, e.g. with `Bundle.entry[3].resource`, so an error inside a
    /// Bundle names the entry.
    pub fn within(mut self, prefix: &str) -> Self {
        for issue in &mut self.issues {
            issue.expression = Some(match issue.expression.take() {
                Some(e) => match e.split_once('.') {
                    Some((_, rest)) => format!("{prefix}.{rest}"),
                    None => prefix.to_string(),
                },
                None => prefix.to_string(),
            });
            issue.diagnostics = format!("{prefix}: {}", issue.diagnostics);
        }
        self
    }

    pub fn to_operation_outcome(&self) -> Value {
        let issues: Vec<Value> = self
            .issues
            .iter()
            .map(|i| {
                let mut issue = json!({
                    "severity": if matches!(self.kind, ErrorKind::Internal) { "fatal" } else { "error" },
                    "code": i.code.unwrap_or(self.kind.issue_code()),
                    "diagnostics": i.diagnostics,
                });
                if let Some(e) = &i.expression {
                    issue["expression"] = json!([e]);
                }
                issue
            })
            .collect();
        json!({ "resourceType": "OperationOutcome", "issue": issues })
    }
}

/// An informational OperationOutcome (e.g. for a successful operation with nothing to return).
pub fn information(diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "information", "code": "informational", "diagnostics": diagnostics }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_names_the_bundle_entry() {
        let e = FhirError::invalid("Observation.code", "Observation.code is required")
            .within("Bundle.entry[2].resource");
        let oo = e.to_operation_outcome();
        assert_eq!(
            oo["issue"][0]["expression"][0],
            "Bundle.entry[2].resource.code"
        );
        assert_eq!(oo["issue"][0]["code"], "invariant");
        assert!(oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("Bundle.entry[2]"));
    }
}
