//! What one caller may ask of the gateway: body size, time to send it, request rate.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The largest request body accepted; larger bodies get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long a client may take to send a request body; slower gets 408 and the connection
    /// closed (a body trickled a byte at a time would otherwise hold a worker for ever).
    #[serde(default = "default_body_read_secs")]
    pub body_read_secs: u64,
    /// Requests each registered system may make per second, sustained (per gateway). More get
    /// `429` with `Retry-After`; nothing of them is recorded.
    #[serde(default = "default_requests_per_sec")]
    pub requests_per_sec: u32,
    /// Requests a system may make at once above the sustained rate.
    #[serde(default = "default_request_burst")]
    pub request_burst: u32,
    /// Connections one client identity may hold open at once (per gateway); requests on more are
    /// refused (`429 too_many_connections`) and those connections closed.
    #[serde(default = "default_connections_per_identity")]
    pub connections_per_identity: usize,
    /// Transfers held for a director under one agreement at once; more are refused
    /// (`held_quota_exceeded`, recorded) until directors clear the queue.
    #[serde(default = "default_held_per_agreement")]
    pub held_per_agreement: u64,
    /// Of those, how many one user may have asked for: one user cannot fill the queue for
    /// everyone else.
    #[serde(default = "default_held_per_user")]
    pub held_per_user: u64,
}

fn default_held_per_user() -> u64 {
    20
}

fn default_connections_per_identity() -> usize {
    256
}

fn default_held_per_agreement() -> u64 {
    200
}

fn default_requests_per_sec() -> u32 {
    50
}

fn default_request_burst() -> u32 {
    100
}

fn default_max_body_bytes() -> usize {
    256 * 1024
}

fn default_body_read_secs() -> u64 {
    10
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            body_read_secs: default_body_read_secs(),
            requests_per_sec: default_requests_per_sec(),
            request_burst: default_request_burst(),
            connections_per_identity: default_connections_per_identity(),
            held_per_agreement: default_held_per_agreement(),
            held_per_user: default_held_per_user(),
        }
    }
}
