//! Delivery into an Apache Iceberg table (a Kinesis channel's S3 Tables destination): each
//! batch becomes Parquet data files, one per hour partition, appended in one Iceberg commit
//! through the table bucket's catalog. The commit carries the batch's identity in its
//! snapshot summary, so a batch delivered again after a crash finds its commit and is not
//! appended twice. The table is created on the first delivery, with the columns of the
//! channel's record schema.

pub mod catalog;
pub mod columns;
pub mod registry;
pub mod storage;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use iceberg::arrow::{RecordBatchPartitionSplitter, schema_to_arrow_schema};
use iceberg::io::FileIO;
use iceberg::spec::DataFileFormat;
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use self::catalog::TableBucketCatalog;
use self::columns::{ColumnsError, Decoded};
use self::registry::RegistryError;
use crate::delivery::s3::{AccessKey, Bucket};

/// The snapshot summary property holding the identity of the batch a commit appended.
pub const BATCH_PROPERTY: &str = "brook.batch";
/// Shortest time between two reads of the record schema prompted by records with
/// properties the table lacks (producers may send properties no schema version has).
const SCHEMA_REREAD: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a batch could not be appended.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The record schema could not be read.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The record schema or partition spec does not describe a table.
    #[error("table {table}: {source}")]
    Columns {
        /// The table.
        table: String,
        /// Why.
        source: ColumnsError,
    },
    /// The catalog, the storage or the Iceberg library failed.
    #[error("table {table}: {source}")]
    Iceberg {
        /// The table.
        table: String,
        /// Why (boxed: the library's error is large).
        source: Box<iceberg::Error>,
    },
    /// The table cannot be created: its table bucket or namespace does not exist.
    #[error(
        "table {table} cannot be created: its table bucket or namespace does not exist ({source})"
    )]
    NoNamespace {
        /// The table.
        table: String,
        /// The catalog's answer.
        source: Box<iceberg::Error>,
    },
}

impl TableError {
    /// Whether retrying cannot help until the channel or its schema changes: a schema that
    /// does not describe a table, or one the registry refuses to give.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Columns { .. } => true,
            Self::Registry(error) => error.is_permanent(),
            Self::NoNamespace { .. } => true,
            Self::Iceberg { .. } => false,
        }
    }
}

/// Parquet compression of a table's data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetCompression {
    /// None.
    None,
    /// Zstandard.
    Zstd,
    /// Snappy.
    Snappy,
}

impl ParquetCompression {
    /// The compression of S3Tables' `CompressionType` (`NONE`, `ZSTD`, `SNAPPY`).
    pub fn from_type(name: &str) -> Option<Self> {
        match name {
            "NONE" => Some(Self::None),
            "ZSTD" => Some(Self::Zstd),
            "SNAPPY" => Some(Self::Snappy),
            _ => None,
        }
    }

    /// The value of Iceberg's `write.parquet.compression-codec` table property.
    fn table_property(self) -> &'static str {
        match self {
            Self::None => "uncompressed",
            Self::Zstd => "zstd",
            Self::Snappy => "snappy",
        }
    }

    fn parquet(self) -> Compression {
        match self {
            Self::None => Compression::UNCOMPRESSED,
            Self::Zstd => Compression::ZSTD(ZstdLevel::default()),
            Self::Snappy => Compression::SNAPPY,
        }
    }
}

/// A channel's table, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTarget {
    /// `arn:aws:s3tables:<region>:<account>:bucket/<name>`.
    pub table_bucket_arn: String,
    /// The namespace (which must exist).
    pub namespace: String,
    /// The table (created when missing).
    pub table: String,
    /// Data file compression.
    pub compression: ParquetCompression,
    /// Columns partitioned by hour (`TIME_HOUR`).
    pub hour_sources: Vec<String>,
    /// The record schema in the Glue Schema Registry.
    pub schema_arn: String,
}

/// How the worker reaches the catalog and the schema registry.
#[derive(Debug, Clone)]
pub struct TableEndpoints {
    /// The S3 Tables API (AWS's when absent).
    pub tables: Option<String>,
    /// The Glue Schema Registry (AWS's when absent).
    pub glue: Option<String>,
    /// The signing region.
    pub region: String,
    /// The key pair (the environment's when absent).
    pub key: Option<AccessKey>,
    /// Abort right after a commit, before the delivery's progress is saved (tests).
    pub crash_after_commit: bool,
}

/// What one delivery did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// Rows appended (0 when the batch had been appended before).
    pub rows: usize,
    /// The indexes of records that do not fit the table, with why.
    pub rejected: Vec<(usize, String)>,
}

/// Appends batches to one table.
pub struct TableOutput {
    target: TableTarget,
    ident: TableIdent,
    catalog: TableBucketCatalog,
    file_io: FileIO,
    endpoints: TableEndpoints,
    /// Commits of this worker one at a time (shards deliver concurrently; racing commits
    /// would only retry each other); holds when the record schema was last read.
    commits: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for TableOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableOutput")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl TableOutput {
    /// The output into `target`, through the S3 Tables client `tables` and the buckets `s3`
    /// reaches.
    pub fn new(
        target: TableTarget,
        tables: aws_sdk_s3tables::Client,
        s3: &Bucket,
        endpoints: TableEndpoints,
    ) -> Self {
        let file_io = storage::ObjectStorage::file_io(s3);
        let ident = TableIdent::new(
            NamespaceIdent::new(target.namespace.clone()),
            target.table.clone(),
        );
        Self {
            catalog: TableBucketCatalog::new(
                tables,
                target.table_bucket_arn.clone(),
                file_io.clone(),
            ),
            target,
            ident,
            file_io,
            endpoints,
            commits: tokio::sync::Mutex::new(None),
        }
    }

    fn iceberg(&self, source: iceberg::Error) -> TableError {
        TableError::Iceberg {
            table: self.ident.to_string(),
            source: Box::new(source),
        }
    }

    /// The table, created with the record schema's columns when it does not exist.
    async fn table(&self) -> Result<Table, TableError> {
        match self.catalog.load_table(&self.ident).await {
            Ok(table) => return Ok(table),
            Err(error) if error.kind() == ErrorKind::TableNotFound => {}
            Err(error) => return Err(self.iceberg(error)),
        }
        let record_schema = self.record_schema().await?;
        let columns = |source| TableError::Columns {
            table: self.ident.to_string(),
            source,
        };
        let schema = columns::table_schema(&record_schema).map_err(columns)?;
        let spec = columns::partition_spec(&schema, &self.target.hour_sources).map_err(columns)?;
        let creation = TableCreation::builder()
            .name(self.target.table.clone())
            .schema(schema)
            .partition_spec(spec)
            .properties(HashMap::from([(
                "write.parquet.compression-codec".to_owned(),
                self.target.compression.table_property().to_owned(),
            )]))
            .build();
        self.catalog
            .create_table(self.ident.namespace(), creation)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::TableNotFound => TableError::NoNamespace {
                    table: self.ident.to_string(),
                    source: Box::new(e),
                },
                _ => self.iceberg(e),
            })
    }

    async fn record_schema(&self) -> Result<serde_json::Value, RegistryError> {
        registry::latest_json_schema(
            self.endpoints.glue.as_deref(),
            &self.endpoints.region,
            self.endpoints.key.clone(),
            &self.target.schema_arn,
            crate::broker::shard::wall_clock_ms(),
        )
        .await
    }

    /// The table with the columns the latest record schema adds (as optional columns, in one
    /// commit); the table as it is when the schema cannot be read or adds nothing.
    async fn evolve(&self, table: Table) -> Result<Table, TableError> {
        let record_schema = match self.record_schema().await {
            Ok(schema) => schema,
            Err(error) => {
                tracing::warn!(table = %self.ident, %error, "the record schema could not be read again; the table keeps its columns");
                return Ok(table);
            }
        };
        let Ok(wanted) = columns::table_schema(&record_schema) else {
            tracing::warn!(table = %self.ident, "the record schema's latest version does not describe a table; the table keeps its columns");
            return Ok(table);
        };
        let (added, changed) = columns::new_columns(table.metadata().current_schema(), &wanted);
        if !changed.is_empty() {
            tracing::warn!(table = %self.ident, ?changed, "properties whose type changed in the record schema keep their column type");
        }
        if added.is_empty() {
            return Ok(table);
        }
        tracing::info!(table = %self.ident, added = ?added.iter().map(|c| &c.name).collect::<Vec<_>>(), "adding the record schema's new properties as columns");
        let transaction = Transaction::new(&table);
        let mut update = transaction.update_schema();
        for column in added {
            let add = match column.parent {
                Some(parent) => AddColumn::builder()
                    .parent(parent)
                    .name(column.name)
                    .field_type(column.column)
                    .build(),
                None => AddColumn::optional(column.name, column.column),
            };
            update = update.add_column(add);
        }
        update
            .apply(transaction)
            .map_err(|e| self.iceberg(e))?
            .commit(&self.catalog)
            .await
            .map_err(|e| self.iceberg(e))
    }

    /// Expires the table's snapshots its `history.expire.*` properties say are past keeping
    /// (Iceberg's defaults: older than 5 days, the newest kept): without it every commit of a
    /// channel would stay in the table's metadata, which each commit rewrites. Only metadata
    /// changes; the data files stay referenced by the current snapshot. A failure is logged:
    /// the next commit tries again.
    async fn expire_snapshots(&self, table: &Table) {
        let Ok(properties) = table.metadata().table_properties() else {
            return;
        };
        let cutoff = crate::broker::shard::wall_clock_ms() as i64 - properties.max_snapshot_age_ms;
        let current = table.metadata().current_snapshot_id();
        let due = table
            .metadata()
            .snapshots()
            .filter(|s| Some(s.snapshot_id()) != current && s.timestamp_ms() < cutoff)
            .count();
        if due == 0 || table.metadata().snapshots().count() <= properties.min_snapshots_to_keep {
            return;
        }
        let transaction = Transaction::new(table);
        let expired = match transaction.expire_snapshots().apply(transaction) {
            Ok(transaction) => transaction.commit(&self.catalog).await,
            Err(error) => Err(error),
        };
        match expired {
            Ok(_) => tracing::info!(table = %self.ident, due, "expired old snapshots"),
            Err(error) => {
                tracing::warn!(table = %self.ident, %error, "expiring old snapshots failed; the next commit tries again")
            }
        }
    }

    /// Appends the JSON `records` of the batch `batch` (its identity string) to the table,
    /// unless a commit of the same batch is there already. Records with properties the table
    /// has no column for make it read the record schema again (at most every
    /// [`SCHEMA_REREAD`]) and add the columns a newer version has.
    pub async fn append(&self, batch: &str, records: &[Bytes]) -> Result<Appended, TableError> {
        let mut schema_read = self.commits.lock().await;
        let mut table = self.table().await?;
        let reread_due = schema_read.is_none_or(|at| at.elapsed() >= SCHEMA_REREAD);
        if reread_due
            && records
                .iter()
                .any(|r| columns::has_unknown_properties(table.metadata().current_schema(), r))
        {
            *schema_read = Some(std::time::Instant::now());
            table = self.evolve(table).await?;
        }
        let committed = table.metadata().snapshots().any(|snapshot| {
            snapshot.summary().additional_properties.get(BATCH_PROPERTY) == Some(&batch.to_owned())
        });
        let schema = table.metadata().current_schema().clone();
        let arrow_schema = Arc::new(schema_to_arrow_schema(&schema).map_err(|e| self.iceberg(e))?);
        let slices: Vec<&[u8]> = records.iter().map(|r| r.as_ref()).collect();
        let Decoded { rows, rejected } = columns::decode(&arrow_schema, &slices);
        if committed {
            return Ok(Appended { rows: 0, rejected });
        }
        let Some(rows) = rows else {
            return Ok(Appended { rows: 0, rejected });
        };
        let count = rows.num_rows();
        let spec = table.metadata().default_partition_spec().clone();
        let parts = if spec.is_unpartitioned() {
            vec![(None, rows)]
        } else {
            RecordBatchPartitionSplitter::try_new_with_computed_values(schema.clone(), spec)
                .and_then(|splitter| splitter.split(&rows))
                .map_err(|e| self.iceberg(e))?
                .into_iter()
                .map(|(key, part)| (Some(key), part))
                .collect()
        };
        let properties = WriterProperties::builder()
            .set_compression(self.target.compression.parquet())
            .build();
        let mut files = Vec::new();
        for (index, (key, part)) in parts.into_iter().enumerate() {
            let locations =
                DefaultLocationGenerator::new(table.metadata()).map_err(|e| self.iceberg(e))?;
            // Named after the batch: a batch written again after a crash replaces its files.
            let names = DefaultFileNameGenerator::new(
                format!("{batch}-{index}"),
                None,
                DataFileFormat::Parquet,
            );
            let rolling = RollingFileWriterBuilder::new_with_default_file_size(
                ParquetWriterBuilder::new(properties.clone(), schema.clone()),
                self.file_io.clone(),
                locations,
                names,
            );
            let mut writer = DataFileWriterBuilder::new(rolling)
                .build(key)
                .await
                .map_err(|e| self.iceberg(e))?;
            writer.write(part).await.map_err(|e| self.iceberg(e))?;
            files.extend(writer.close().await.map_err(|e| self.iceberg(e))?);
        }
        let transaction = Transaction::new(&table);
        let append = transaction
            .fast_append()
            .add_data_files(files)
            .set_snapshot_properties(HashMap::from([(
                BATCH_PROPERTY.to_owned(),
                batch.to_owned(),
            )]));
        let table = append
            .apply(transaction)
            .map_err(|e| self.iceberg(e))?
            .commit(&self.catalog)
            .await
            .map_err(|e| self.iceberg(e))?;
        if self.endpoints.crash_after_commit {
            tracing::error!(table = %self.ident, batch, "stopping after the table commit, before the progress is saved, as asked");
            std::process::exit(101);
        }
        self.expire_snapshots(&table).await;
        Ok(Appended {
            rows: count,
            rejected,
        })
    }
}
