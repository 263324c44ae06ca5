//! What a console page answers when it cannot do what was asked: a page saying so, in words, with
//! the code; never internal error text, never a value the person typed.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::pages::layout;
use crate::api::ApiError;

#[derive(Debug)]
pub enum ConsoleError {
    /// No session, or it ended: sign in again.
    SignIn,
    /// Signed in, but the roles do not allow this page.
    Forbidden,
    NotFound,
    /// The form's CSRF token is missing or wrong.
    Csrf,
    /// Over the acting system's request rate.
    Busy,
    /// The ledger or session store does not answer.
    Unavailable,
    /// The application refused, with its code and message (never a value).
    Api(ApiError),
    /// Sign-in failed at the identity provider; the code says where.
    SignInFailed(&'static str),
}

impl std::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status_code())
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        match e.status() {
            StatusCode::FORBIDDEN if matches!(e.body().code.as_str(), "forbidden" | "role_required") => Self::Forbidden,
            StatusCode::NOT_FOUND => Self::NotFound,
            _ => Self::Api(e),
        }
    }
}

impl From<crate::ledger::LedgerError> for ConsoleError {
    fn from(e: crate::ledger::LedgerError) -> Self {
        tracing::warn!(error = %e, "console: the database did not answer");
        Self::Unavailable
    }
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignIn => StatusCode::SEE_OTHER,
            Self::Forbidden | Self::Csrf => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Busy => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Api(e) => e.status(),
            Self::SignInFailed(_) => StatusCode::UNAUTHORIZED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, text): (&str, String) = match self {
            Self::SignIn => {
                return HttpResponse::SeeOther()
                    .insert_header((actix_web::http::header::LOCATION, "/sign-in?ended=1"))
                    .finish();
            }
            Self::Forbidden => (
                "You cannot open this page",
                "Your roles do not allow it. If you need it, ask your information governance lead.".into(),
            ),
            Self::Csrf => (
                "The form could not be accepted",
                "It did not carry this session's security token (an old tab, or a form from elsewhere). \
                 Nothing was done. Open the page again and resend."
                    .into(),
            ),
            Self::NotFound => ("Not found", "There is nothing here that you may see.".into()),
            Self::Busy => ("Too many requests", "Wait a few seconds, then try again.".into()),
            Self::Unavailable => (
                "The gateway's record is not answering",
                "Nothing was recorded or sent. Try again in a minute; if it persists, call the operator.".into(),
            ),
            Self::Api(e) => {
                let b = e.body();
                // Each violation names its field and rule (its message never echoes the value).
                let why: Vec<_> = b
                    .violations
                    .iter()
                    .map(|v| format!(" {}: {} ({}).", v.pointer.trim_start_matches('/'), v.message, v.rule))
                    .collect();
                (
                    "That could not be done",
                    format!("{} ({}){}", b.message, b.code, why.concat()),
                )
            }
            Self::SignInFailed(code) => (
                "Sign-in failed",
                format!("The identity provider's answer could not be accepted ({code}). Try again."),
            ),
        };
        HttpResponse::build(self.status_code())
            .content_type("text/html; charset=utf-8")
            .body(layout::bare(title, &text).into_string())
    }
}
