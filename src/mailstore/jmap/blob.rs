//! Blobs: upload (within `maxSizeUpload` and `maxConcurrentUpload`) and bounded download
//! through the session's `downloadUrl` template.

use serde::Deserialize;

use super::client::JmapClient;
use super::error::JmapError;

/// The content type of a message blob.
pub const MESSAGE_TYPE: &str = "message/rfc822";

/// What the server says about an uploaded blob.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedBlob {
    pub blob_id: String,
    pub size: u64,
    #[serde(rename = "type", default)]
    pub type_: String,
}

impl JmapClient {
    /// Uploads bytes once; the blob can then be imported into any mailbox. Refused before the
    /// wire when larger than the server's `maxSizeUpload`.
    #[tracing::instrument(skip(self, bytes), fields(endpoint = %self.endpoint(), size = bytes.len()))]
    pub async fn upload(
        &self,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<UploadedBlob, JmapError> {
        let what = format!("uploading {} bytes", bytes.len());
        let size = bytes.len() as u64;
        let limit = self.session().limits.max_size_upload;
        if size > limit {
            return Err(JmapError::TooLarge {
                endpoint: self.endpoint().to_string(),
                what: "a message".into(),
                size,
                limit,
                whose: "the server's maxSizeUpload",
                hint: "The server cannot store it; it is reported, not retried.",
            });
        }
        let url = self
            .session()
            .upload_url()
            .map_err(|d| self.protocol(&what, d))?;
        let _permit = self
            .uploads
            .acquire()
            .await
            .map_err(|_| self.protocol(&what, "the upload limiter was closed".into()))?;
        let resp = self
            .http_request(reqwest::Method::POST, url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .map_err(|e| self.transport(e, &what))?;
        let resp = self.check(resp, &what).await?;
        let body = self.read_body(resp, 1024 * 1024, &what).await?;
        let blob: UploadedBlob = serde_json::from_slice(&body)
            .map_err(|e| self.protocol(&what, format!("the upload answer does not parse: {e}")))?;
        if blob.size != size {
            return Err(self.protocol(
                &what,
                format!("the server stored {} bytes of {size}", blob.size),
            ));
        }
        Ok(blob)
    }

    /// Downloads a blob into memory, refusing one larger than `max_bytes` (checked against the
    /// announced length first, then while reading).
    #[tracing::instrument(skip(self), fields(endpoint = %self.endpoint()))]
    pub async fn download(&self, blob_id: &str, max_bytes: u64) -> Result<Vec<u8>, JmapError> {
        let what = format!("downloading blob {blob_id}");
        let url = self
            .session()
            .download_url(blob_id, "message.eml", MESSAGE_TYPE)
            .map_err(|d| self.protocol(&what, d))?;
        let _permit = self
            .requests
            .acquire()
            .await
            .map_err(|_| self.protocol(&what, "the request limiter was closed".into()))?;
        let resp = self
            .http_request(reqwest::Method::GET, url)
            .send()
            .await
            .map_err(|e| self.transport(e, &what))?;
        let resp = self.check(resp, &what).await?;
        self.read_body(resp, max_bytes, &what).await
    }
}
