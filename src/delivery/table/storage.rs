//! The Iceberg library's file layer over S3-compatible storage: table metadata, manifests
//! and Parquet data files are objects addressed as `s3://<bucket>/<key>` (S3 Tables' warehouse
//! locations are such buckets), read and written through the delivery worker's S3 client.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileIO, FileIOBuilder, FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage,
    StorageConfig, StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use crate::delivery::s3::{Bucket, S3Error};

/// The bucket and key of an `s3://` (or `s3a://`) location.
pub fn split_location(location: &str) -> Option<(&str, &str)> {
    let rest = location
        .strip_prefix("s3://")
        .or_else(|| location.strip_prefix("s3a://"))?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

fn io_error(error: S3Error) -> Error {
    Error::new(ErrorKind::Unexpected, error.to_string())
}

/// Objects in any bucket the client reaches.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObjectStorage {
    /// The client (of some bucket: the others are reached with the same client). Storage
    /// instances are never serialized here; a deserialized one has no client and refuses.
    #[serde(skip)]
    client: Option<Bucket>,
}

impl ObjectStorage {
    /// A FileIO over the buckets `client` reaches.
    pub fn file_io(client: &Bucket) -> FileIO {
        let storage = Arc::new(Self {
            client: Some(client.clone()),
        });
        FileIOBuilder::new(Arc::new(ObjectStorageFactory {
            storage: Some(storage),
        }))
        .build()
    }

    fn object(&self, location: &str) -> Result<(Bucket, String)> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, "object storage without a client"))?;
        let (bucket, key) = split_location(location).ok_or_else(|| {
            Error::new(
                ErrorKind::DataInvalid,
                format!("{location} is not an s3://bucket/key location"),
            )
        })?;
        Ok((client.other(bucket, None), key.to_owned()))
    }
}

#[async_trait::async_trait]
#[typetag::serde]
impl Storage for ObjectStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        let (bucket, key) = self.object(path)?;
        Ok(bucket.size(&key).await.map_err(io_error)?.is_some())
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let (bucket, key) = self.object(path)?;
        match bucket.size(&key).await.map_err(io_error)? {
            Some(size) => Ok(FileMetadata { size }),
            None => Err(Error::new(
                ErrorKind::Unexpected,
                format!("{path} does not exist"),
            )),
        }
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let (bucket, key) = self.object(path)?;
        bucket.get(&key, None).await.map_err(io_error)
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        let (bucket, key) = self.object(path)?;
        Ok(Box::new(ObjectReader { bucket, key }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let (bucket, key) = self.object(path)?;
        bucket.put(&key, bs).await.map_err(io_error)
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let (bucket, key) = self.object(path)?;
        Ok(Box::new(ObjectWriter {
            bucket,
            key,
            buffer: BytesMut::new(),
            closed: false,
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (bucket, key) = self.object(path)?;
        bucket.delete(&key).await.map_err(io_error)
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        Err(Error::new(
            ErrorKind::FeatureUnsupported,
            format!("deleting the prefix {path}: Brook's channels never remove table files"),
        ))
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_owned()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_owned()))
    }
}

/// Hands the FileIO its storage.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ObjectStorageFactory {
    #[serde(skip)]
    storage: Option<Arc<ObjectStorage>>,
}

#[typetag::serde]
impl StorageFactory for ObjectStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        match &self.storage {
            Some(storage) => Ok(storage.clone()),
            None => Err(Error::new(
                ErrorKind::Unexpected,
                "object storage factory without a client",
            )),
        }
    }
}

/// Ranged reads of one object.
struct ObjectReader {
    bucket: Bucket,
    key: String,
}

#[async_trait::async_trait]
impl FileRead for ObjectReader {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.bucket
            .get(&self.key, Some(range))
            .await
            .map_err(io_error)
    }
}

/// An object written once, when closed: Iceberg's files are small enough to be held (a
/// channel's data file holds one freshness interval of one shard, at most 64 MiB of input),
/// and a half-written file is never visible.
struct ObjectWriter {
    bucket: Bucket,
    key: String,
    buffer: BytesMut,
    closed: bool,
}

#[async_trait::async_trait]
impl FileWrite for ObjectWriter {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        self.buffer.extend_from_slice(&bs);
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!("{} is already closed", self.key),
            ));
        }
        self.closed = true;
        let body = std::mem::take(&mut self.buffer).freeze();
        self.bucket.put(&self.key, body).await.map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_locations_split_into_bucket_and_key() {
        assert_eq!(
            split_location("s3://warehouse--table-s3/metadata/00001.metadata.json"),
            Some(("warehouse--table-s3", "metadata/00001.metadata.json"))
        );
        assert_eq!(split_location("s3a://b/k"), Some(("b", "k")));
        assert_eq!(split_location("s3://bucket"), None);
        assert_eq!(split_location("s3:///key"), None);
        assert_eq!(split_location("file:///tmp/x"), None);
    }
}
