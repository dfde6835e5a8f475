//! The SSM output bucket: one per account and region, shared by every shop (each writes
//! under its own prefix), encrypted, with public access blocked.

use super::Aws;
use crate::error::{Error, Result};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule,
};

pub fn output_bucket_name(account: &str, region: &str) -> String {
    format!("poscloud-ssm-output-{account}-{region}")
}

/// A stack's prefix in the output bucket (ends with '/').
pub fn stack_prefix(id: &crate::spec::StackId) -> String {
    format!("{}/{}/", id.shop, id.env)
}

impl Aws {
    /// This account's shared output bucket in this region (the account asked if not yet).
    pub async fn output_bucket(&self) -> Result<String> {
        Ok(output_bucket_name(&self.account_id().await?, &self.region))
    }

    /// Region, credentials and account (asked if not yet), for a header.
    pub async fn whereabouts(&self) -> Result<&crate::journal::Whereabouts> {
        self.account_id().await?;
        Ok(&self.at)
    }

    /// The account of these credentials (asked once per run).
    pub async fn account_id(&self) -> Result<String> {
        if let Some(a) = self.at.account.get() {
            return Ok(a.clone());
        }
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| self.err("GetCallerIdentity", None, e))?;
        let account = out
            .account()
            .map(str::to_string)
            .ok_or_else(|| Error::failed("GetCallerIdentity returned no account"))?;
        Ok(self.at.account.get_or_init(|| account).clone())
    }

    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        match self.s3.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(self.err("HeadBucket", Some(bucket), e)),
        }
    }

    /// Creates the bucket (then `secure_bucket` must run: a crash in between is caught by
    /// discovery, which checks both settings).
    pub async fn create_output_bucket(&self, bucket: &str) -> Result<()> {
        let mut req = self.s3.create_bucket().bucket(bucket);
        if self.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => self.wrote("CreateBucket", bucket),
            // A crashed earlier run may have created it: the settings below still apply.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
            Err(e) => return Err(self.err("CreateBucket", Some(bucket), e)),
        }
        Ok(())
    }

    /// Blocks all public access and turns default encryption (SSE-S3) on.
    pub async fn secure_bucket(&self, bucket: &str) -> Result<()> {
        self.s3
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.err("PutPublicAccessBlock", Some(bucket), e))?;
        self.wrote("PutPublicAccessBlock", bucket);
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::Aes256)
                    .build()
                    .map_err(|e| Error::failed(e.to_string()))?,
            )
            .build();
        self.s3
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(rule)
                    .build()
                    .map_err(|e| Error::failed(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| self.err("PutBucketEncryption", Some(bucket), e))?;
        self.wrote("PutBucketEncryption", bucket);
        Ok(())
    }

    /// (default encryption on, all four public-access blocks on)
    pub async fn bucket_security(&self, bucket: &str) -> Result<(bool, bool)> {
        let encrypted = match self.s3.get_bucket_encryption().bucket(bucket).send().await {
            Ok(o) => o
                .server_side_encryption_configuration()
                .is_some_and(|c| !c.rules().is_empty()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => false,
            Err(e) => return Err(self.err("GetBucketEncryption", Some(bucket), e)),
        };
        let blocked = match self
            .s3
            .get_public_access_block()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(o) => o.public_access_block_configuration().is_some_and(|c| {
                c.block_public_acls() == Some(true)
                    && c.ignore_public_acls() == Some(true)
                    && c.block_public_policy() == Some(true)
                    && c.restrict_public_buckets() == Some(true)
            }),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => false,
            Err(e) => return Err(self.err("GetPublicAccessBlock", Some(bucket), e)),
        };
        Ok((encrypted, blocked))
    }

    /// Keys under a prefix (at most `limit`).
    pub async fn list_keys(&self, bucket: &str, prefix: &str, limit: usize) -> Result<Vec<String>> {
        let pages = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send()
            .try_collect()
            .await;
        let pages = match pages {
            Ok(p) => p,
            // Asked beside the bucket's existence (discovery): no bucket, no keys.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_bucket()) => Vec::new(),
            Err(e) => return Err(self.err("ListObjectsV2", Some(bucket), e)),
        };
        Ok(pages
            .iter()
            .flat_map(|p| p.contents())
            .filter_map(|o| o.key().map(str::to_string))
            .take(limit)
            .collect())
    }

    pub async fn get_object_text(&self, bucket: &str, key: &str) -> Result<Option<String>> {
        match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(o) => {
                let bytes = o
                    .body
                    .collect()
                    .await
                    .map_err(|e| Error::failed(format!("reading s3://{bucket}/{key}: {e}")))?;
                Ok(Some(
                    String::from_utf8_lossy(&bytes.into_bytes()).into_owned(),
                ))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(self.err("GetObject", Some(key), e)),
        }
    }

    /// Deletes every object under `prefix`; returns how many.
    pub async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<usize> {
        let keys = self.list_keys(bucket, prefix, usize::MAX).await?;
        self.delete_keys(bucket, &keys).await
    }

    /// Deletes these objects; returns how many.
    pub async fn delete_keys(&self, bucket: &str, keys: &[String]) -> Result<usize> {
        for key in keys {
            self.s3
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| self.err("DeleteObject", Some(key), e))?;
            self.wrote("DeleteObject", key);
        }
        Ok(keys.len())
    }

    /// Downloads an object into `path` (streamed: a backup can be large).
    pub async fn download(&self, bucket: &str, key: &str, path: &std::path::Path) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let what = format!("s3://{bucket}/{key}");
        let o = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err("GetObject", Some(&what), e))?;
        let io = |e: std::io::Error| Error::failed(format!("writing {}: {e}", path.display()));
        let mut f = tokio::fs::File::create(path).await.map_err(io)?;
        let mut body = o.body;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| Error::failed(format!("downloading {what}: {e}")))?
        {
            f.write_all(&chunk).await.map_err(io)?;
        }
        f.flush().await.map_err(io)
    }

    /// The lifecycle rules of the bucket (none: an empty list).
    pub async fn lifecycle_rules(
        &self,
        bucket: &str,
    ) -> Result<Vec<aws_sdk_s3::types::LifecycleRule>> {
        match self
            .s3
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(o) => Ok(o.rules().to_vec()),
            Err(e)
                if e.as_service_error().and_then(|s| s.meta().code())
                    == Some("NoSuchLifecycleConfiguration")
                    || e.as_service_error().and_then(|s| s.meta().code())
                        == Some("NoSuchBucket") =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(self.err("GetBucketLifecycleConfiguration", Some(bucket), e)),
        }
    }

    /// Replaces the bucket's lifecycle rules (S3 has no call to add one).
    pub async fn put_lifecycle_rules(
        &self,
        bucket: &str,
        rules: Vec<aws_sdk_s3::types::LifecycleRule>,
    ) -> Result<()> {
        let conf = aws_sdk_s3::types::BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(|e| Error::failed(format!("a lifecycle configuration: {e}")))?;
        self.s3
            .put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(conf)
            .send()
            .await
            .map_err(|e| self.err("PutBucketLifecycleConfiguration", Some(bucket), e))?;
        self.wrote("PutBucketLifecycleConfiguration", bucket);
        Ok(())
    }

    /// The object's size, or None when there is no such object.
    pub async fn object_size(&self, bucket: &str, key: &str) -> Result<Option<i64>> {
        match self.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(o) => Ok(Some(o.content_length().unwrap_or(0))),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(self.err("HeadObject", Some(&format!("s3://{bucket}/{key}")), e)),
        }
    }

    pub async fn put_object_text(&self, bucket: &str, key: &str, body: &str) -> Result<()> {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .map_err(|e| self.err("PutObject", Some(key), e))?;
        self.wrote("PutObject", key);
        Ok(())
    }

    /// A URL that lets the host GET (or PUT) exactly this object until it expires, with no
    /// AWS tooling on the host. It is a short-lived capability: never print or log it.
    pub async fn presigned_url(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        expires: std::time::Duration,
    ) -> Result<String> {
        let conf = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires)
            .map_err(|e| Error::failed(format!("presigning s3://{bucket}/{key}: {e}")))?;
        let req = match method {
            "PUT" => self
                .s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .presigned(conf)
                .await
                .map_err(|e| self.err("PutObject", Some(key), e))?,
            _ => self
                .s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .presigned(conf)
                .await
                .map_err(|e| self.err("GetObject", Some(key), e))?,
        };
        Ok(req.uri().to_string())
    }
}
