//! Explicit settings for an S3-compatible server, for when the `AWS_*` environment must not
//! decide where photos go: tests and tools that name their server themselves. Production
//! leaves them unset and `STORAGE_URL=s3://…` reads the usual `AWS_*` variables.

use std::fmt;

use object_store::aws::AmazonS3Builder;

use crate::secret::Secret;

/// Where and as whom to reach an S3-compatible server.
#[derive(Clone)]
pub struct S3Connection {
    /// `http://HOST:PORT` of the server; path-style requests are sent to it.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

impl S3Connection {
    /// A client builder with these settings; plain HTTP is allowed only for an `http://`
    /// endpoint, and no credential is ever looked for elsewhere (no instance metadata).
    pub fn builder(&self) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(self.secret_access_key.expose())
            .with_allow_http(self.endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false)
    }
}

// Written by hand: the configuration is logged at start, and the access key id is half of a
// credential.
impl fmt::Debug for S3Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Connection")
            .field("endpoint", &crate::secret::redact_url(&self.endpoint))
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_debug_form_shows_where_but_not_as_whom() {
        let connection = S3Connection {
            endpoint: "http://127.0.0.1:9000".into(),
            region: "eu-central-1".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "very-secret-value".into(),
        };
        let shown = format!("{connection:?}");
        assert!(
            shown.contains("127.0.0.1:9000") && shown.contains("eu-central-1"),
            "{shown}"
        );
        assert!(
            !shown.contains("AKIDEXAMPLE") && !shown.contains("very-secret"),
            "{shown}"
        );
    }
}
