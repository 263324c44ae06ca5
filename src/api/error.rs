//! One error shape for every response that is not a success:
//!
//! ```json
//! {"code": "schema_violation", "message": "…", "violations": [{"pointer": "/payload/nhs_number",
//!  "rule": "format", "message": "…"}], "transfer_id": "…", "ledger_seq": 12}
//! ```
//!
//! `code` is stable; `message` is for people; `violations` (when present) name JSON pointers into
//! the request body and the rule broken, never the value; `transfer_id` and `ledger_seq` are
//! present when the attempt was recorded. Internal causes go to the log, never to the body.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use uuid::Uuid;

use crate::policy::decision::{Reason, Refusal};
use crate::policy::schemas::Violation;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// How many violations there were, when more than the first [`MAX_VIOLATIONS`] are listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violations_total: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_seq: Option<i64>,
}

/// The most violations one answer lists.
pub const MAX_VIOLATIONS: usize = 100;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    /// Boxed: errors travel in every handler's `Result`, which stays small.
    body: Box<ErrorBody>,
    /// For 405: the methods the resource has.
    allow: Option<&'static str>,
    /// For 429 and 503: seconds before trying again.
    retry_after: Option<u64>,
    /// Close the connection after this answer.
    close: bool,
}

/// The challenge sent with every 401.
const BEARER_CHALLENGE: &str = "Bearer realm=\"isa-gateway\", error=\"invalid_token\"";

/// The one mapping of ledger failures at the edge: every one is a 503, never a 500.
impl From<crate::ledger::LedgerError> for ApiError {
    fn from(e: crate::ledger::LedgerError) -> Self {
        Self::ledger_unavailable(&e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.body.code)
    }
}

impl ApiError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body: code, message, violations (pointers and rules, never values).
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }

    pub fn new(status: StatusCode, code: &str, message: &str) -> Self {
        Self {
            status,
            body: Box::new(ErrorBody {
                code: code.to_owned(),
                message: message.to_owned(),
                violations: Vec::new(),
                violations_total: None,
                transfer_id: None,
                ledger_seq: None,
            }),
            allow: None,
            retry_after: None,
            close: false,
        }
    }

    /// No access, and no detail as to why.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Access denied.")
    }

    /// The bearer token is missing or not acceptable; the code says which check failed.
    pub fn unauthorized(why: crate::platform::auth::TokenError) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            why.code(),
            "A valid bearer token from a trusted issuer is required.",
        )
    }

    pub fn role_required(role: crate::platform::auth::UserRole) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "role_required",
            &format!("This needs the {} role.", role.as_str()),
        )
    }

    pub fn with_ledger(mut self, transfer_id: Uuid, ledger_seq: i64) -> Self {
        self.body.transfer_id = Some(transfer_id);
        self.body.ledger_seq = Some(ledger_seq);
        self
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Nothing here.")
    }

    /// 405, with the methods the resource has (`allow`, e.g. `"GET, POST"`) for the `Allow` header.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "This method is not allowed here.",
        );
        e.allow = Some(allow);
        e
    }

    pub fn bad_request(code: &str, message: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The ledger could not record: nothing is sent (fail closed). The cause is logged.
    /// The ledger cannot be read or written: 503 with `Retry-After`, whatever the cause (a lost
    /// connection, a locked database, a stopped writer, rows that no longer verify). Nothing was
    /// recorded or sent, so a client may retry; the cause goes to the log only.
    pub fn ledger_unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "ledger unavailable; request refused, nothing sent");
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_unavailable",
            "The gateway cannot read or record its ledger right now, so nothing was sent. Try again later.",
        );
        // Nothing was recorded or sent: the client may retry (with its Idempotency-Key).
        e.retry_after = Some(1);
        e
    }

    /// 429 on a connection opened past the system's connection cap; the connection is closed.
    pub fn too_many_connections() -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "This system holds too many connections; this one is closed. Reuse the ones you have.",
        );
        e.retry_after = Some(1);
        e.close = true;
        e
    }

    /// 429: the system is over its request rate; `wait` until it may ask again.
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests from this system; nothing was recorded. Try again after Retry-After seconds.",
        );
        e.retry_after = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        e
    }

    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "The gateway could not complete the request.",
        )
    }

    pub fn refused(refusal: Refusal, transfer_id: Uuid, ledger_seq: i64) -> Self {
        let mut e = Self::new(
            status_for(refusal.reason),
            refusal.reason.code(),
            refusal.reason.explain(),
        );
        e = e.with_violations(refusal.violations);
        e.body.transfer_id = Some(transfer_id);
        e.body.ledger_seq = Some(ledger_seq);
        e
    }

    /// The first [`MAX_VIOLATIONS`] violations, and their total when there were more: a large
    /// body breaking every rule gets a short answer, not megabytes of it.
    pub fn with_violations(mut self, mut violations: Vec<Violation>) -> Self {
        if violations.len() > MAX_VIOLATIONS {
            self.body.violations_total = Some(violations.len());
            violations.truncate(MAX_VIOLATIONS);
        }
        self.body.violations = violations;
        self
    }
}

/// The HTTP status for each refusal reason.
pub fn status_for(reason: Reason) -> StatusCode {
    match reason {
        Reason::UnknownAgreement => StatusCode::NOT_FOUND,
        Reason::NotAParty | Reason::RoleNotPermitted | Reason::UrgentRoleNotPermitted | Reason::NationalDataOptOut => {
            StatusCode::FORBIDDEN
        }
        Reason::NotInForce(_) => StatusCode::CONFLICT,
        Reason::SubjectIndexUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        Reason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Reason::MalformedJson => StatusCode::BAD_REQUEST,
        Reason::InvalidEnvelope
        | Reason::MessageTypeNotCovered
        | Reason::SchemaViolation
        | Reason::ConsentRequired
        | Reason::ConsentRefused
        | Reason::ConsentIncomplete
        | Reason::ConsentNotAllContributors
        | Reason::SubjectInformedRequired
        | Reason::FieldNotAllowed
        | Reason::PseudonymisationFailed
        | Reason::OutboundSchemaViolation
        | Reason::UrgentPathNotAllowed
        | Reason::UrgentFlagContradictsPayload
        | Reason::OptOutStatusRequired
        | Reason::SmallNumbersNotSuppressed
        | Reason::AgeGroupNotConfirmed
        | Reason::IdempotencyKeyReused
        | Reason::DisclosureDetailsRequired
        | Reason::NotAOneOffTemplate
        | Reason::DestinationNotOffered
        | Reason::RequesterNotListed => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((actix_web::http::header::WWW_AUTHENTICATE, BEARER_CHALLENGE));
        }
        if let Some(secs) = self.retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, secs.max(1).to_string()));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT || self.close {
            // A client too slow to send its body does not keep the connection.
            response.force_close();
        }
        if let Some(allow) = self.allow {
            response.insert_header((actix_web::http::header::ALLOW, allow));
        }
        response.json(&self.body)
    }
}
