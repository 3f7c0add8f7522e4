//! The S3 tier: objects under `s3://bucket/prefix/` on any S3-compatible
//! endpoint, path-style. Credentials come from `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), the region from
//! `AWS_REGION` / `AWS_DEFAULT_REGION` (default `us-east-1`), the endpoint
//! from `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (default AWS). Transient
//! errors (throttling, 5xx, timeouts, dropped connections) are retried with
//! exponential backoff and jitter by the SDK's standard retry strategy.
//!
//! A single PUT is atomic in S3: readers see the old object or the new one.
//! The tier's API is blocking; it drives the async SDK on its own runtime.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use super::{check_key, Tier, TierError};

/// Where and how to reach a bucket.
#[derive(Clone, Debug)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix without leading or trailing '/', may be empty.
    pub prefix: String,
    /// `None`: AWS's own endpoint for the region.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    /// Attempts per request, first one included.
    pub max_attempts: u32,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl S3Config {
    /// Parses `s3://bucket/prefix` and reads the rest from the AWS_*
    /// environment variables.
    pub fn from_url(url: &str) -> Result<Self, TierError> {
        let bad = |reason: &str| TierError::Remote {
            tier: "s3".into(),
            key: url.into(),
            message: reason.into(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an s3://bucket/prefix URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        let access_key = env("AWS_ACCESS_KEY_ID").ok_or_else(|| {
            bad("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        })?;
        let secret_key = env("AWS_SECRET_ACCESS_KEY")
            .ok_or_else(|| bad("no credentials: set AWS_SECRET_ACCESS_KEY"))?;
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")),
            region: env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            access_key,
            secret_key,
            session_token: env("AWS_SESSION_TOKEN"),
            max_attempts: 5,
        })
    }
}

/// A bucket prefix as a tier.
pub struct S3Tier {
    cfg: S3Config,
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl S3Tier {
    pub fn new(cfg: S3Config) -> Result<Self, TierError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("snaprun-s3")
            .enable_all()
            .build()
            .map_err(|source| TierError::Io {
                tier: format!("s3 s3://{}/{}", cfg.bucket, cfg.prefix),
                key: String::new(),
                source,
            })?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                &cfg.access_key,
                &cfg.secret_key,
                cfg.session_token.clone(),
                None,
                "snaprun-env",
            ))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(cfg.max_attempts)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            )
            .http_client(http);
        if let Some(ep) = &cfg.endpoint {
            b = b.endpoint_url(ep);
        }
        let client = Client::from_conf(b.build());
        Ok(Self { cfg, client, rt })
    }

    /// `s3://bucket/prefix` with the AWS_* environment.
    pub fn from_url(url: &str) -> Result<Self, TierError> {
        Self::new(S3Config::from_url(url)?)
    }

    fn full_key(&self, key: &str) -> String {
        if self.cfg.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.cfg.prefix)
        }
    }

    fn remote<E>(&self, key: &str, e: SdkError<E>) -> TierError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        TierError::Remote {
            tier: self.name(),
            key: key.to_string(),
            message: DisplayErrorContext(&e).to_string(),
        }
    }

    fn fetch(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<Vec<u8>>, TierError> {
        check_key(self, key)?;
        let mut req = self
            .client
            .get_object()
            .bucket(&self.cfg.bucket)
            .key(self.full_key(key));
        if let Some((off, len)) = range {
            if len == 0 {
                return Ok(Some(Vec::new()));
            }
            req = req.range(format!("bytes={off}-{}", off + len - 1));
        }
        self.rt.block_on(async {
            let out = match req.send().await {
                Ok(o) => o,
                Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => return Ok(None),
                Err(e) => return Err(self.remote(key, e)),
            };
            let bytes = out.body.collect().await.map_err(|e| TierError::Remote {
                tier: self.name(),
                key: key.to_string(),
                message: format!("reading the body: {e}"),
            })?;
            Ok(Some(bytes.into_bytes().to_vec()))
        })
    }
}

impl Tier for S3Tier {
    fn name(&self) -> String {
        format!("s3 s3://{}/{}", self.cfg.bucket, self.cfg.prefix)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TierError> {
        self.fetch(key, None)
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, TierError> {
        let got = self.fetch(key, Some((offset, len)))?;
        if let Some(data) = &got {
            if data.len() as u64 != len {
                return Err(TierError::Range {
                    tier: self.name(),
                    key: key.to_string(),
                    offset,
                    len,
                    size: offset + data.len() as u64,
                });
            }
        }
        Ok(got)
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<(), TierError> {
        check_key(self, key)?;
        let req = self
            .client
            .put_object()
            .bucket(&self.cfg.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data.to_vec()));
        self.rt
            .block_on(req.send())
            .map(|_| ())
            .map_err(|e| self.remote(key, e))
    }

    fn has(&self, key: &str) -> Result<bool, TierError> {
        check_key(self, key)?;
        let req = self
            .client
            .head_object()
            .bucket(&self.cfg.bucket)
            .key(self.full_key(key));
        match self.rt.block_on(req.send()) {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(false),
            Err(e) => Err(self.remote(key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, TierError> {
        let full = self.full_key(prefix);
        let strip = if self.cfg.prefix.is_empty() {
            0
        } else {
            self.cfg.prefix.len() + 1
        };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = self
                .client
                .list_objects_v2()
                .bucket(&self.cfg.bucket)
                .prefix(&full)
                .set_continuation_token(token.clone());
            let page = self
                .rt
                .block_on(req.send())
                .map_err(|e| self.remote(prefix, e))?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    if k.len() > strip {
                        out.push(k[strip..].to_string());
                    }
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), TierError> {
        check_key(self, key)?;
        let req = self
            .client
            .delete_object()
            .bucket(&self.cfg.bucket)
            .key(self.full_key(key));
        self.rt
            .block_on(req.send())
            .map(|_| ())
            .map_err(|e| self.remote(key, e))
    }
}
