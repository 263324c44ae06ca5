//! The HTTPS transport: POSTs the outbound document with the gateway's own client certificate,
//! trusting only the destination's configured CA. The transfer id travels in a header on every
//! attempt so the receiver can de-duplicate.

use std::path::Path;

use super::{Parcel, TransportError};
use crate::platform::tls::TlsError;

pub const TRANSFER_ID_HEADER: &str = "x-isa-transfer-id";
pub const AGREEMENT_ID_HEADER: &str = "x-isa-agreement-id";
pub const MESSAGE_TYPE_HEADER: &str = "x-isa-message-type";

#[derive(Debug)]
pub struct HttpsTransport {
    url: String,
    client: reqwest::Client,
}

impl HttpsTransport {
    pub fn new(url: &str, ca: &Path, cert: &Path, key: &Path, timeout_secs: u64) -> Result<Self, TlsError> {
        let client = super::https_client(ca, cert, key, timeout_secs)?;
        Ok(Self {
            url: url.to_owned(),
            client,
        })
    }

    pub async fn send(&self, parcel: &Parcel) -> Result<(), TransportError> {
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TRANSFER_ID_HEADER, parcel.transfer_id.to_string())
            .header(AGREEMENT_ID_HEADER, &parcel.agreement_id)
            .header(MESSAGE_TYPE_HEADER, &parcel.message_type)
            .body(parcel.bytes.clone())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    TransportError::Timeout
                } else if e.is_connect() {
                    TransportError::Connect
                } else {
                    TransportError::Request
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(TransportError::Status(status.as_u16()))
        }
    }
}
