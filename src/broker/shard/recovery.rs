//! Recovery: cut every shard back to its checkpoint, replay the journal generations after
//! it until the first entry that does not check out, then checkpoint so the next start has
//! nothing to replay. Work is bounded by the journal, not by the data stored.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::batch::{BatchHeader, HEADER_LEN, SealedBody, verify_body};
use super::checkpoint::{
    CHECKPOINT_FILE, Checkpoint, ShardCheckpoint, decode_index, index_path, journal_path,
    segment_path, shard_dir,
};
use super::fs::FileSystem;
use super::journal_room::JournalRoom;
use super::log::{SegmentView, ShardKey, ShardLog, ShardView};
use super::shard_writer::ShardWriter;
use super::writer::Writer;
use super::{Clock, StoreError, StoreOptions, retention_of};

/// Replayed bytes after which staged segment writes are flushed.
const REPLAY_FLUSH_BYTES: usize = 4 * 1024 * 1024;

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Journal batches replayed into segments.
    pub replayed_batches: u64,
    /// Journal batches skipped because their shard already held them or their stream is gone.
    pub skipped_batches: u64,
    /// Bytes of journal dropped at a torn or corrupt tail.
    pub dropped_bytes: u64,
    /// Why replay stopped early, if it did.
    pub stopped_because: Option<String>,
}

pub(super) fn recover(
    dir: &Path,
    fs: Arc<dyn FileSystem>,
    options: StoreOptions,
    clock: Clock,
    shards: &[ShardKey],
    retention_ms: HashMap<u32, u64>,
) -> Result<(Writer, RecoveryReport), StoreError> {
    let journal_dir = dir.join("journal");
    std::fs::create_dir_all(&journal_dir).map_err(StoreError::io(&journal_dir))?;
    std::fs::create_dir_all(dir.join("streams")).map_err(StoreError::io(dir))?;
    let checkpoint = read_checkpoint(dir)?;
    let durable: HashMap<ShardKey, &ShardCheckpoint> =
        checkpoint.shards.iter().map(|s| (s.key, s)).collect();
    let now = clock.now_ms();
    // Before anything is changed: every segment the checkpoint lists is there, unless
    // retention has expired all of its records.
    let problems = missing_listed_segments(dir, &checkpoint, &retention_ms, now);
    if !problems.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "refusing to start, nothing was changed: the checkpoint lists data that is not on the volume: {}",
            problems.join("; ")
        )));
    }
    remove_unknown_streams(dir, shards)?;

    let mut writers = HashMap::with_capacity(shards.len());
    for &key in shards {
        let view = restore_shard(fs.as_ref(), dir, key, durable.get(&key).copied())?;
        let log = Arc::new(ShardLog::new(key, view));
        let writer = ShardWriter::resume(fs.as_ref(), log, shard_dir(dir, key), now)?;
        writers.insert(key, writer);
    }

    let generations = journal_generations(&journal_dir, checkpoint.journal_generation)?;
    let last_generation = generations
        .last()
        .copied()
        .unwrap_or(checkpoint.journal_generation);
    let journal_file = journal_path(dir, last_generation);
    let mut writer = Writer {
        journal: fs
            .open_append(&journal_file)
            .map_err(StoreError::io(&journal_file))?,
        fs: fs.clone(),
        dir: dir.to_path_buf(),
        options,
        clock,
        journal_generation: last_generation,
        journal_len: 0,
        journal_room: JournalRoom::new(0),
        journal_rounds: 0,
        shards: writers,
        retention_ms,
        last_checkpoint: Instant::now(),
        failure: None,
        shared_failure: Default::default(),
        stats: Default::default(),
        group_commit: None,
        shut_down: false,
        next_journal: None,
        unwritten_back: 0,
        retired_journals: Vec::new(),
    };
    let mut report = RecoveryReport::default();
    for generation in generations {
        replay_generation(&mut writer, &journal_path(dir, generation), &mut report)?;
        if report.stopped_because.is_some() {
            break;
        }
    }
    // The replayed records are durable in their segments only once this checkpoint has
    // synced them: until it is written, every generation replayed must stay.
    writer.checkpoint()?;
    // Every generation before the checkpoint's goes, the one it just retired among them.
    writer.retired_journals.clear();
    for generation in journal_generations(&journal_dir, 0)? {
        if generation < writer.journal_generation {
            let path = journal_path(dir, generation);
            fs.remove_file(&path).map_err(StoreError::io(&path))?;
        }
    }
    if report.dropped_bytes > 0 || report.stopped_because.is_some() {
        tracing::warn!(
            dropped_bytes = report.dropped_bytes,
            reason = report.stopped_because.as_deref().unwrap_or(""),
            "recovery dropped a torn or corrupt journal tail; nothing after it was acknowledged"
        );
    }
    tracing::info!(
        replayed = report.replayed_batches,
        skipped = report.skipped_batches,
        shards = writer.shards.len(),
        "storage recovered"
    );
    Ok((writer, report))
}

/// Whether a segment whose newest record arrived at `last_arrival_ms` holds nothing that
/// `retention_ms` still keeps at `now_ms`: only then may it be missing.
pub fn expired_by_retention(last_arrival_ms: u64, retention_ms: u64, now_ms: u64) -> bool {
    last_arrival_ms.saturating_add(retention_ms) < now_ms
}

/// The segments the checkpoint lists that are missing or shorter than it says, although they
/// hold records within retention, each as a message.
fn missing_listed_segments(
    dir: &Path,
    checkpoint: &Checkpoint,
    retention_ms: &HashMap<u32, u64>,
    now_ms: u64,
) -> Vec<String> {
    let mut problems = Vec::new();
    for shard in &checkpoint.shards {
        let retention = retention_of(retention_ms, shard.key.stream_key);
        for segment in &shard.segments {
            if expired_by_retention(segment.last_arrival_ms, retention, now_ms) {
                continue;
            }
            let path = segment_path(&shard_dir(dir, shard.key), segment.base_offset);
            match std::fs::metadata(&path) {
                Ok(meta) if meta.len() >= segment.len => {}
                Ok(meta) => problems.push(format!(
                    "{} holds {} bytes, {} were synced",
                    path.display(),
                    meta.len(),
                    segment.len
                )),
                Err(_) => problems.push(format!(
                    "{} (records {}..{}) is missing",
                    path.display(),
                    segment.base_offset,
                    segment.end_offset
                )),
            }
        }
    }
    problems
}

fn read_checkpoint(dir: &Path) -> Result<Checkpoint, StoreError> {
    let path = dir.join(CHECKPOINT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Checkpoint::default()),
        Err(e) => Err(StoreError::io(&path)(e)),
    }
}

fn remove_unknown_streams(dir: &Path, shards: &[ShardKey]) -> Result<(), StoreError> {
    let known: HashSet<String> = shards.iter().map(|k| k.stream_key.to_string()).collect();
    let streams = dir.join("streams");
    for entry in std::fs::read_dir(&streams).map_err(StoreError::io(&streams))? {
        let entry = entry.map_err(StoreError::io(&streams))?;
        if !known.contains(&*entry.file_name().to_string_lossy()) {
            std::fs::remove_dir_all(entry.path()).map_err(StoreError::io(&entry.path()))?;
        }
    }
    Ok(())
}

/// Cuts a shard's files back to what the checkpoint says is durable and loads their indexes.
fn restore_shard(
    fs: &dyn FileSystem,
    dir: &Path,
    key: ShardKey,
    durable: Option<&ShardCheckpoint>,
) -> Result<ShardView, StoreError> {
    let shard_dir = shard_dir(dir, key);
    let mut view = ShardView::default();
    let mut kept: HashSet<PathBuf> = HashSet::new();
    if let Some(durable) = durable {
        view.next_offset = durable.next_offset;
        view.last_arrival_ms = durable.last_arrival_ms;
        for segment in &durable.segments {
            let path = segment_path(&shard_dir, segment.base_offset);
            if !path.exists() {
                // Retention deleted it after the checkpoint was written (a missing segment
                // within retention stopped recovery before anything was changed).
                continue;
            }
            let mut file = fs.open_append(&path).map_err(StoreError::io(&path))?;
            if file.len().map_err(StoreError::io(&path))? != segment.len {
                file.truncate(segment.len).map_err(StoreError::io(&path))?;
            }
            let index = match std::fs::read(index_path(&path)) {
                Ok(bytes) => decode_index(&bytes, segment.len),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(StoreError::io(&path)(e)),
            };
            view.segments.push(SegmentView {
                base_offset: segment.base_offset,
                end_offset: segment.end_offset,
                len: segment.len,
                last_arrival_ms: segment.last_arrival_ms,
                file: fs.open_read(&path).map_err(StoreError::io(&path))?,
                index,
                path: path.clone(),
            });
            kept.insert(path.clone());
            kept.insert(index_path(&path));
        }
        // Every segment but the last is sealed: a coarser index of it is enough in memory.
        let sealed = view.segments.len().saturating_sub(1);
        for segment in &mut view.segments[..sealed] {
            segment.index = super::log::thin_index(&segment.index);
        }
    }
    if let Ok(entries) = std::fs::read_dir(&shard_dir) {
        for entry in entries.flatten() {
            if !kept.contains(&entry.path()) {
                // Written after the checkpoint: the journal holds whatever of it was durable.
                fs.remove_file(&entry.path())
                    .map_err(StoreError::io(&entry.path()))?;
            }
        }
    }
    Ok(view)
}

fn journal_generations(journal_dir: &Path, from: u64) -> Result<Vec<u64>, StoreError> {
    let mut generations: Vec<u64> = std::fs::read_dir(journal_dir)
        .map_err(StoreError::io(journal_dir))?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log")?.parse().ok()
        })
        .filter(|generation| *generation >= from)
        .collect();
    generations.sort_unstable();
    Ok(generations)
}

fn replay_generation(
    writer: &mut Writer,
    path: &Path,
    report: &mut RecoveryReport,
) -> Result<(), StoreError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(path)(e)),
    };
    // A journal's room past its last write reads as zeros: replay ends where the data does.
    let file_len = written_len(&file).map_err(StoreError::io(path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut position = 0u64;
    let mut staged = 0usize;
    let mut touched: HashSet<ShardKey> = HashSet::new();
    let now = writer.clock.now_ms();
    while position < file_len {
        let entry = match read_entry(&mut reader) {
            Ok(entry) => entry,
            Err(reason) => {
                report.dropped_bytes += file_len - position;
                report.stopped_because =
                    Some(format!("{} at byte {position}: {reason}", path.display()));
                break;
            }
        };
        let (header, body) = entry;
        let key = ShardKey {
            stream_key: header.stream_key,
            shard_index: header.shard_index,
        };
        let retention = retention_of(&writer.retention_ms, key.stream_key);
        let Some(shard) = writer.shards.get_mut(&key) else {
            report.skipped_batches += 1;
            position += header.total_len();
            continue;
        };
        if header.base_offset < shard.next_offset {
            report.skipped_batches += 1;
            position += header.total_len();
            continue;
        }
        if header.base_offset > shard.next_offset {
            report.dropped_bytes += file_len - position;
            report.stopped_because = Some(format!(
                "{} at byte {position}: shard {key:?} expected offset {} but found {}",
                path.display(),
                shard.next_offset,
                header.base_offset
            ));
            break;
        }
        let sealed = SealedBody {
            records: header.record_count,
            crc: header.body_crc,
            bytes: body,
        };
        shard.stage(
            writer.fs.as_ref(),
            &writer.options,
            retention,
            &sealed,
            now,
            header.arrival_ms,
        )?;
        staged += sealed.bytes.len() + HEADER_LEN;
        touched.insert(key);
        report.replayed_batches += 1;
        position += header.total_len();
        if staged >= REPLAY_FLUSH_BYTES {
            flush_touched(writer, &mut touched)?;
            staged = 0;
        }
    }
    flush_touched(writer, &mut touched)
}

/// The length of `file` without its trailing zero bytes (the preallocated room no write
/// reached; a torn write's zeros before data written after it are kept, and reported).
fn written_len(file: &std::fs::File) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 1 << 20;
    let mut end = file.metadata()?.len();
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        match chunk.iter().rposition(|&b| b != 0) {
            Some(last) => return Ok(start + last as u64 + 1),
            None => end = start,
        }
    }
    Ok(0)
}

fn flush_touched(writer: &mut Writer, touched: &mut HashSet<ShardKey>) -> Result<(), StoreError> {
    for key in touched.drain() {
        if let Some(shard) = writer.shards.get_mut(&key) {
            shard.flush_round()?;
            shard.publish(writer.fs.as_ref())?;
        }
    }
    Ok(())
}

fn read_entry(reader: &mut impl Read) -> Result<(BatchHeader, Vec<u8>), String> {
    let mut header_bytes = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut header_bytes)
        .map_err(|e| format!("header: {e}"))?;
    let header = BatchHeader::decode(&header_bytes).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; header.body_len as usize];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("body: {e}"))?;
    verify_body(&header, &body).map_err(|e| e.to_string())?;
    Ok((header, body))
}
