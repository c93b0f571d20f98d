//! The JSON of FAL's storage uploads and of the Platform API's deletion of request payloads.

use serde::{Deserialize, Serialize};

/// Body of a storage upload initiation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitiateUploadRequest {
    pub content_type: String,
    pub file_name: String,
}

/// Answer to a storage upload initiation: PUT the bytes to `upload_url`, then use `file_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitiateUploadResponse {
    pub upload_url: String,
    pub file_url: String,
}

/// One output file FAL tried to delete along with a request's payloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdnDeleteResult {
    /// The file's CDN URL.
    pub link: String,
    /// Why it could not be deleted; `None` when it was.
    #[serde(default)]
    pub exception: Option<String>,
}

/// Answer to *Delete request payloads* (`DELETE {platform}/models/requests/{id}/payloads`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeletePayloadsResponse {
    /// The platform API writes it in lower case; the older `delete_io` endpoint in capitals.
    #[serde(default, alias = "CDN_DELETE_RESULTS")]
    pub cdn_delete_results: Vec<CdnDeleteResult>,
}

impl DeletePayloadsResponse {
    /// The files FAL reports it could not delete.
    pub fn failures(&self) -> impl Iterator<Item = &CdnDeleteResult> {
        self.cdn_delete_results
            .iter()
            .filter(|r| r.exception.is_some())
    }
}
