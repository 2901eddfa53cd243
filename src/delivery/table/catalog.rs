//! The Iceberg catalog of a channel's table: Amazon S3 Tables' API (or an S3-compatible
//! server's). A table's current metadata is the file its `metadataLocation` names; a commit
//! writes the next metadata file into the table's warehouse and moves the location with the
//! version token it read, so a concurrent writer's commit makes this one retry, never lose.

use std::collections::HashMap;

use aws_sdk_s3tables::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3tables::types::OpenTableFormat;
use iceberg::io::FileIO;
use iceberg::spec::{TableMetadata, TableMetadataBuilder};
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, MetadataLocation, Namespace, NamespaceIdent, Result, Runtime,
    TableCommit, TableCreation, TableIdent,
};

/// The tables of one table bucket.
#[derive(Debug)]
pub struct TableBucketCatalog {
    client: aws_sdk_s3tables::Client,
    table_bucket_arn: String,
    file_io: FileIO,
}

/// A table's pointer as S3 Tables holds it.
struct Pointer {
    version_token: String,
    metadata_location: Option<String>,
    warehouse_location: String,
}

fn sdk_error<E, R>(operation: &str, error: aws_sdk_s3tables::error::SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = error
        .as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("");
    let kind = match code {
        "NotFoundException" => ErrorKind::TableNotFound,
        "ConflictException" => ErrorKind::CatalogCommitConflicts,
        _ => ErrorKind::Unexpected,
    };
    let retryable = kind == ErrorKind::CatalogCommitConflicts;
    Error::new(
        kind,
        format!("S3 Tables {operation}: {}", DisplayErrorContext(&error)),
    )
    .with_retryable(retryable)
}

fn unsupported(what: &str) -> Error {
    Error::new(
        ErrorKind::FeatureUnsupported,
        format!("{what}: a channel's catalog only creates, loads and commits its table"),
    )
}

impl TableBucketCatalog {
    /// The catalog of `table_bucket_arn` through `client`; table files through `file_io`.
    pub fn new(
        client: aws_sdk_s3tables::Client,
        table_bucket_arn: String,
        file_io: FileIO,
    ) -> Self {
        Self {
            client,
            table_bucket_arn,
            file_io,
        }
    }

    async fn pointer(&self, table: &TableIdent) -> Result<Pointer> {
        let answer = self
            .client
            .get_table_metadata_location()
            .table_bucket_arn(&self.table_bucket_arn)
            .namespace(table.namespace().to_url_string())
            .name(table.name())
            .send()
            .await
            .map_err(|e| sdk_error("GetTableMetadataLocation", e))?;
        Ok(Pointer {
            version_token: answer.version_token().to_owned(),
            metadata_location: answer.metadata_location().map(str::to_owned),
            warehouse_location: answer.warehouse_location().to_owned(),
        })
    }

    /// The table as it is now, with the pointer it was read through.
    async fn current(&self, ident: &TableIdent) -> Result<(Pointer, Table)> {
        let pointer = self.pointer(ident).await?;
        let location = pointer.metadata_location.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::TableNotFound,
                format!("table {ident} has no metadata yet"),
            )
        })?;
        let metadata = TableMetadata::read_from(&self.file_io, &location).await?;
        let table = self.table(ident.clone(), location, metadata)?;
        Ok((pointer, table))
    }

    fn table(&self, ident: TableIdent, location: String, metadata: TableMetadata) -> Result<Table> {
        Table::builder()
            .identifier(ident)
            .metadata_location(location)
            .metadata(metadata)
            .file_io(self.file_io.clone())
            .runtime(Runtime::try_current()?)
            .build()
    }

    /// Moves `table`'s pointer from version `token` to `location`. When the answer is lost or
    /// unreadable (a timeout after the server applied it, a server whose answer does not
    /// parse), the pointer is read again: if it names `location`, the move happened.
    async fn move_pointer(&self, table: &TableIdent, token: &str, location: &str) -> Result<()> {
        let moved = self
            .client
            .update_table_metadata_location()
            .table_bucket_arn(&self.table_bucket_arn)
            .namespace(table.namespace().to_url_string())
            .name(table.name())
            .version_token(token)
            .metadata_location(location)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateTableMetadataLocation", e));
        match moved {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == ErrorKind::CatalogCommitConflicts => Err(error),
            Err(error) => match self.pointer(table).await {
                Ok(now) if now.metadata_location.as_deref() == Some(location) => Ok(()),
                _ => Err(error),
            },
        }
    }
}

#[async_trait::async_trait]
impl Catalog for TableBucketCatalog {
    async fn list_namespaces(&self, _: Option<&NamespaceIdent>) -> Result<Vec<NamespaceIdent>> {
        Err(unsupported("listing namespaces"))
    }

    async fn create_namespace(
        &self,
        _: &NamespaceIdent,
        _: HashMap<String, String>,
    ) -> Result<Namespace> {
        Err(unsupported("creating a namespace"))
    }

    async fn get_namespace(&self, _: &NamespaceIdent) -> Result<Namespace> {
        Err(unsupported("reading a namespace"))
    }

    async fn namespace_exists(&self, _: &NamespaceIdent) -> Result<bool> {
        Err(unsupported("checking a namespace"))
    }

    async fn update_namespace(&self, _: &NamespaceIdent, _: HashMap<String, String>) -> Result<()> {
        Err(unsupported("updating a namespace"))
    }

    async fn drop_namespace(&self, _: &NamespaceIdent) -> Result<()> {
        Err(unsupported("dropping a namespace"))
    }

    async fn list_tables(&self, _: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        Err(unsupported("listing tables"))
    }

    /// Creates the table in the bucket, then writes its first metadata file into the
    /// warehouse S3 Tables gave it and points the table at it.
    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        mut creation: TableCreation,
    ) -> Result<Table> {
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        let created = self
            .client
            .create_table()
            .table_bucket_arn(&self.table_bucket_arn)
            .namespace(namespace.to_url_string())
            .name(ident.name())
            .format(OpenTableFormat::Iceberg)
            .send()
            .await
            .map_err(|e| sdk_error("CreateTable", e));
        match created {
            Ok(_) => {}
            // There already: made by a creation a crash cut short (no metadata yet: this
            // one writes it), or by another writer (whose table is loaded).
            Err(error) if error.kind() == ErrorKind::CatalogCommitConflicts => {
                if self.pointer(&ident).await?.metadata_location.is_some() {
                    return self.load_table(&ident).await;
                }
            }
            Err(error) => return Err(error),
        }
        let pointer = self.pointer(&ident).await?;
        creation.location = Some(pointer.warehouse_location.clone());
        let metadata = TableMetadataBuilder::from_table_creation(creation)?
            .build()?
            .metadata;
        let location = MetadataLocation::new_with_metadata(&pointer.warehouse_location, &metadata);
        metadata.write_to(&self.file_io, &location).await?;
        let location = location.to_string();
        self.move_pointer(&ident, &pointer.version_token, &location)
            .await?;
        self.table(ident, location, metadata)
    }

    async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        Ok(self.current(ident).await?.1)
    }

    async fn drop_table(&self, _: &TableIdent) -> Result<()> {
        Err(unsupported("dropping a table"))
    }

    async fn purge_table(&self, _: &TableIdent) -> Result<()> {
        Err(unsupported("purging a table"))
    }

    async fn table_exists(&self, ident: &TableIdent) -> Result<bool> {
        match self.pointer(ident).await {
            Ok(pointer) => Ok(pointer.metadata_location.is_some()),
            Err(error) if error.kind() == ErrorKind::TableNotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn rename_table(&self, _: &TableIdent, _: &TableIdent) -> Result<()> {
        Err(unsupported("renaming a table"))
    }

    async fn register_table(&self, _: &TableIdent, _: String) -> Result<Table> {
        Err(unsupported("registering a table"))
    }

    /// Applies `commit` to the table as it is now, writes the next metadata file and moves
    /// the table's pointer with the version token read: a commit that lost a race is
    /// refused by S3 Tables as a conflict, which the transaction retries.
    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        let ident = commit.identifier().clone();
        let (pointer, current) = self.current(&ident).await?;
        let next = commit.apply(current)?;
        let next_location = next.metadata_location_result()?.to_owned();
        next.metadata()
            .write_to(&self.file_io, &next_location.parse::<MetadataLocation>()?)
            .await?;
        self.move_pointer(&ident, &pointer.version_token, &next_location)
            .await?;
        Ok(next)
    }
}
