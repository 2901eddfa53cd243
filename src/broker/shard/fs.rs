//! The file layer under the storage writer: the few calls it makes that decide durability,
//! behind a trait so tests can record their order or make them fail.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// A file the writer appends to and syncs.
pub trait LogFile: Send + Sync {
    /// Appends all of `buf` at the end of the file.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// A second handle on the same file (the journal syncer syncs through it while the
    /// writer appends through the first).
    fn try_clone(&self) -> io::Result<Box<dyn LogFile>>;
    /// Makes room up to `len` bytes after what was appended (which stays where it is:
    /// appends continue at the end of the data, not of the room), reading as zeros. The room
    /// is written, not only reserved: a sync of appends that fit in it then writes only their
    /// data, with no file size, block allocation or extent conversion for the file system's
    /// own journal to commit first.
    fn preallocate(&mut self, len: u64) -> io::Result<()>;
    /// Like [`LogFile::preallocate`], but only reserves the room's blocks (`fallocate`):
    /// nothing is written now, and each sync that first writes into a block converts it.
    fn reserve(&mut self, len: u64) -> io::Result<()>;
    /// Starts writing bytes `from..to` to the disk and returns without waiting for it; the
    /// page cache may then drop the ones it already wrote. Nothing becomes durable by this,
    /// only by a sync: it spreads the disk's work, so that a later sync finds little left
    /// to write.
    fn start_writeback(&self, from: u64, to: u64) -> io::Result<()>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// The file system operations storage needs.
pub trait FileSystem: Send + Sync {
    /// Opens `path` for appending, creating it if missing.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    /// Opens `path` for positional reads.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>>;
    /// Makes the entries of directory `path` durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Writes `bytes` to `path` atomically and durably: temporary file, sync, rename, sync
    /// the directory.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
}

/// Creates `path` and every missing folder above it, and syncs each folder's entry into its
/// parent — also for folders that exist, since a process killed between making one and
/// syncing it leaves it behind unsynced — so files made in it can survive a power cut.
pub fn create_dir_durably(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)?;
    for dir in path.ancestors() {
        let Some(parent) = dir.parent() else { break };
        if parent.as_os_str().is_empty() {
            // A relative path: its top folder is an entry of the working directory.
            return RealFs.sync_dir(Path::new("."));
        }
        RealFs.sync_dir(parent)?;
    }
    Ok(())
}

/// A file read at explicit positions.
pub trait ReadFile: Send + Sync {
    /// Reads into `buf` from `pos`, returning how many bytes were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;

    /// Fills `buf` from `pos`, failing with `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, pos)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    pos += n as u64;
                }
            }
        }
        Ok(())
    }
}

/// How much of a room [`LogFile::preallocate`] zeroes per write. Each write holds the file's
/// inode lock while it copies, and the journal's appends wait for that lock: small pieces
/// keep their wait short (the writer thread zeroes ahead while appends go on).
const ZERO_FILL_PIECE: u64 = 64 << 10;

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

/// A file written at the end of its data, which may lie before the end of the file when
/// room was preallocated.
struct RealLogFile {
    file: File,
    /// Where the data ends: the next append's position.
    end: u64,
}

impl LogFile for RealLogFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, self.end)?;
        self.end += buf.len() as u64;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.end = len;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.end)
    }

    fn try_clone(&self) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(RealLogFile {
            file: self.file.try_clone()?,
            end: self.end,
        }))
    }

    fn reserve(&mut self, len: u64) -> io::Result<()> {
        if len <= self.file.metadata()?.len() {
            return Ok(());
        }
        nix::fcntl::posix_fallocate(&self.file, 0, len as i64).map_err(io::Error::from)
    }

    fn start_writeback(&self, from: u64, to: u64) -> io::Result<()> {
        // On Linux this advice starts the write-back of the range's dirty pages (without
        // waiting, like `sync_file_range(SYNC_FILE_RANGE_WRITE)`) and drops its clean ones.
        // (A length of 0 would mean "to the end of the file".)
        let (Ok(offset), Ok(len @ 1..)) =
            (i64::try_from(from), i64::try_from(to.saturating_sub(from)))
        else {
            return Ok(());
        };
        nix::fcntl::posix_fadvise(
            &self.file,
            offset,
            len,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .map_err(io::Error::from)
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        // Zeros are written rather than reserved with fallocate: a block fallocate leaves
        // "unwritten" must be converted on its first write, and that conversion makes the sync
        // write metadata too (a journal commit, or the inode on ext4 without a journal; on a
        // 2-vCPU VM: a 1 KiB append and fdatasync p90 363–615 µs in reserved room, 264–277 µs
        // in written room; the store's sync stage under 8 producers 23–30 % shorter).
        let mut at = self.file.metadata()?.len();
        if len <= at {
            return Ok(());
        }
        let zeros = vec![0u8; ZERO_FILL_PIECE.min(len - at) as usize];
        while at < len {
            let piece = (len - at).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..piece], at)?;
            at += piece as u64;
        }
        Ok(())
    }
}

struct RealReadFile(File);

impl ReadFile for RealReadFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        FileExt::read_at(&self.0, buf, pos)
    }
}

impl FileSystem for RealFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        let end = file.metadata()?.len();
        Ok(Box::new(RealLogFile { file, end }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        Ok(Arc::new(RealReadFile(File::open(path)?)))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = path.with_extension("tmp");
        {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        self.sync_dir(path.parent().unwrap_or(Path::new(".")))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
