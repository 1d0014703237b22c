//! The one place where internal errors become gRPC statuses.

use lienthong_core::alert::InvalidInput;
use lienthong_store::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Errors of the API handlers.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad request fields.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Nothing stored under that key.
    #[error("{0}")]
    NotFound(String),
    /// The request is fine but the node's state does not allow it yet.
    #[error("{0}")]
    Precondition(String),
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    /// A single invalid field.
    pub fn field(field: &str, problem: impl Into<String>) -> Self {
        Self::Invalid(InvalidInput::one(field, problem))
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid(inv) => {
                let mut details = ErrorDetails::new();
                for f in &inv.0 {
                    details.add_bad_request_violation(f.field.clone(), f.problem.clone());
                }
                Status::with_error_details(Code::InvalidArgument, inv.to_string(), details)
            }
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::Precondition(m) => Status::failed_precondition(m),
            ApiError::Store(s) => {
                let code = match &s {
                    StoreError::Failed(_) | StoreError::Closed => Code::Unavailable,
                    StoreError::OutOfRange(_) => Code::OutOfRange,
                    StoreError::TooLarge { .. } => Code::InvalidArgument,
                    StoreError::Integrity(_) | StoreError::Corrupt { .. } => Code::DataLoss,
                    _ => Code::Internal,
                };
                if code == Code::Internal {
                    tracing::error!(error = %s, "internal error");
                }
                Status::new(code, s.to_string())
            }
        }
    }
}
