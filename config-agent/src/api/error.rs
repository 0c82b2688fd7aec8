//! App Mesh's errors in the restJson shape botocore parses: the code in `x-amzn-ErrorType`, the
//! text in a JSON body `{"message": ...}`, and the status App Mesh gives each code.
use http::StatusCode;

/// One App Mesh error (or one of the authentication errors every AWS service shares).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: &'static str,
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn new(code: &'static str, status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(m: impl Into<String>) -> ApiError {
        Self::new("BadRequestException", StatusCode::BAD_REQUEST, m)
    }

    pub fn not_found(m: impl Into<String>) -> ApiError {
        Self::new("NotFoundException", StatusCode::NOT_FOUND, m)
    }

    pub fn conflict(m: impl Into<String>) -> ApiError {
        Self::new("ConflictException", StatusCode::CONFLICT, m)
    }

    pub fn in_use(m: impl Into<String>) -> ApiError {
        Self::new("ResourceInUseException", StatusCode::CONFLICT, m)
    }

    pub fn limit(m: impl Into<String>) -> ApiError {
        Self::new("LimitExceededException", StatusCode::BAD_REQUEST, m)
    }

    pub fn too_many_tags(m: impl Into<String>) -> ApiError {
        Self::new("TooManyTagsException", StatusCode::BAD_REQUEST, m)
    }

    pub fn forbidden(m: impl Into<String>) -> ApiError {
        Self::new("ForbiddenException", StatusCode::FORBIDDEN, m)
    }

    pub fn internal(m: impl Into<String>) -> ApiError {
        Self::new(
            "InternalServerErrorException",
            StatusCode::INTERNAL_SERVER_ERROR,
            m,
        )
    }

    /// The signature does not match the one computed with the configured secret.
    pub fn invalid_signature(m: impl Into<String>) -> ApiError {
        Self::new("InvalidSignatureException", StatusCode::FORBIDDEN, m)
    }

    /// The access key id is not the configured one.
    pub fn unrecognized_client(m: impl Into<String>) -> ApiError {
        Self::new("UnrecognizedClientException", StatusCode::FORBIDDEN, m)
    }

    pub fn missing_auth(m: impl Into<String>) -> ApiError {
        Self::new(
            "MissingAuthenticationTokenException",
            StatusCode::FORBIDDEN,
            m,
        )
    }

    pub fn unknown_operation(m: impl Into<String>) -> ApiError {
        Self::new("UnknownOperationException", StatusCode::NOT_FOUND, m)
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::json!({ "message": self.message }).to_string()
    }
}
