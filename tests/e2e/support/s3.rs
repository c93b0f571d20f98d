//! A real S3-compatible server for the tests: `AISHA_TEST_S3_ENDPOINT` names it (`bash .ci/run`
//! starts moto's server and sets it), and each test gets a bucket of its own.

use std::sync::Arc;

use aisha::config::Config;
use aisha::photos::{PhotoStore, S3Connection};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::HttpRequestBody;
use object_store::ObjectStore;
use uuid::Uuid;

/// The variable that names the server, `http://HOST:PORT`.
pub const ENDPOINT_VAR: &str = "AISHA_TEST_S3_ENDPOINT";
const REGION: &str = "us-east-1";

/// What a developer without the server reads instead of a silently skipped test.
const HOW_TO_START: &str = "AISHA_TEST_S3_ENDPOINT is not set, so the S3 photo-store tests have \
no server. `bash .ci/run` starts one for the whole suite. By hand:\n\
  python3 -m venv target/s3-venv && target/s3-venv/bin/pip install -r tests/s3/requirements.txt\n\
  target/s3-venv/bin/python -m moto.server -H 127.0.0.1 -p 5555 &\n\
  AISHA_TEST_S3_ENDPOINT=http://127.0.0.1:5555 cargo nextest run …";

/// How the tests reach the server (moto takes any credentials; real servers want theirs).
pub fn connection() -> S3Connection {
    let endpoint = std::env::var(ENDPOINT_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| panic!("{HOW_TO_START}"));
    S3Connection {
        endpoint: endpoint.trim().trim_end_matches('/').to_owned(),
        region: REGION.into(),
        access_key_id: "aisha-test".into(),
        secret_access_key: "aisha-test-secret".into(),
    }
}

/// A bucket made for one test on the server.
#[derive(Clone, Debug)]
pub struct S3Bucket {
    pub name: String,
    pub connection: S3Connection,
}

/// Where an application's photos go: the `STORAGE_URL` and the server it is reached on.
#[derive(Clone, Debug)]
pub struct S3Photos {
    pub storage_url: String,
    pub connection: S3Connection,
}

impl S3Photos {
    /// `config` with its photos in this bucket.
    pub fn apply_to(&self, mut config: Config) -> Config {
        config.storage.url = self.storage_url.clone().into();
        config.storage.s3 = Some(self.connection.clone());
        config
    }
}

impl S3Bucket {
    /// A new, empty bucket with a name no other test uses.
    pub async fn fresh() -> Self {
        let bucket = Self {
            name: format!("aisha-test-{}", Uuid::new_v4().simple()),
            connection: connection(),
        };
        let status = bucket.signed("PUT", &bucket.url("")).await;
        assert!(
            status.is_success(),
            "creating bucket {} answered {status}",
            bucket.name
        );
        bucket
    }

    /// A name no bucket on the server has (for tests of a missing bucket).
    pub fn missing() -> Self {
        Self {
            name: format!("aisha-missing-{}", Uuid::new_v4().simple()),
            connection: connection(),
        }
    }

    /// `s3://BUCKET/PREFIX` (just `s3://BUCKET` for an empty prefix).
    pub fn storage_url(&self, prefix: &str) -> String {
        if prefix.is_empty() {
            format!("s3://{}", self.name)
        } else {
            format!("s3://{}/{prefix}", self.name)
        }
    }

    /// The photo store an application would open for `STORAGE_URL=s3://BUCKET/PREFIX`.
    pub fn photo_store(&self, prefix: &str) -> PhotoStore {
        PhotoStore::open(&self.storage_url(prefix), Some(&self.connection))
            .expect("open the S3 photo store")
    }

    /// What an application's settings need to keep photos under `prefix` in this bucket.
    pub fn photos(&self, prefix: &str) -> S3Photos {
        S3Photos {
            storage_url: self.storage_url(prefix),
            connection: self.connection.clone(),
        }
    }

    /// The bucket itself, without the photo store in between: what is really there.
    pub fn raw(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            self.connection
                .builder()
                .with_bucket_name(&self.name)
                .build()
                .expect("S3 client"),
        )
    }

    /// Every object name in the bucket, sorted.
    pub async fn object_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .raw()
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .expect("list the bucket");
        names.sort();
        names
    }

    /// The URL of `object` (its full name in the bucket), or of the bucket for `""`.
    pub fn url(&self, object: &str) -> String {
        format!("{}/{}/{object}", self.connection.endpoint, self.name)
    }

    /// What the server answers a signed GET of `object`: the test of "this URL is gone".
    pub async fn status_of(&self, object: &str) -> reqwest::StatusCode {
        self.signed("GET", &self.url(object)).await
    }

    /// Sends a body-less request signed as our credentials (SigV4), as any S3 client would.
    async fn signed(&self, method: &str, url: &str) -> reqwest::StatusCode {
        let credential = AwsCredential {
            key_id: self.connection.access_key_id.clone(),
            secret_key: self.connection.secret_access_key.expose().to_owned(),
            token: None,
        };
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(url)
            .body(HttpRequestBody::from(Bytes::new()))
            .expect("request");
        AwsAuthorizer::new(&credential, "s3", &self.connection.region)
            .authorize(&mut request, None);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut builder = reqwest::Client::new().request(method, url);
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("the S3 server at {url} did not answer: {e}"))
            .status()
    }
}
