//! The journal's room: bytes of the current journal generation's file made ahead of its data,
//! so that an append's sync writes no file size or block allocation.
//!
//! The room grows a step at a time. The writer thread grows it ahead, outside the writer's
//! lock, once less than half a step is left; only an append that outruns it grows the room
//! itself. Who grows it holds [`JournalRoom`]'s growth lock for the whole growth, and the room
//! appends see is raised only once its bytes are made, so no append lands in bytes being
//! zeroed.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::fs::LogFile;

/// Rounds up to this size on average grow the journal's room with written zeros; larger
/// ones only reserve it. Zeros save each small sync the conversion of reserved blocks (a
/// metadata write, 100–300 µs here), but write the room twice; with large rounds the disk's
/// bandwidth is the limit and one conversion covers much data.
const ZEROED_GROWTH_MAX_ROUND_BYTES: u64 = 64 * 1024;

/// Whether the journal's room should grow by written zeros, given the bytes and rounds
/// written to this generation, the one being written included.
pub(super) fn grow_with_zeros(journal_len: u64, rounds: u64) -> bool {
    journal_len < ZEROED_GROWTH_MAX_ROUND_BYTES.saturating_mul(rounds.max(1))
}

/// Whether the room should grow ahead now: less than half a `step` is left past `written`.
pub(super) fn growth_due(room: u64, written: u64, step: u64) -> bool {
    room.saturating_sub(written) < step / 2
}

/// The room made in one journal generation's file, in bytes, shared by the appends and the
/// writer thread: read without a lock; grown only under its growth lock, and raised only once
/// the bytes are made, so appends stay out of bytes being zeroed.
#[derive(Clone)]
pub(super) struct JournalRoom(Arc<RoomState>);

struct RoomState {
    made: AtomicU64,
    /// The writer thread was asked to grow it ahead and has not finished.
    asked: AtomicBool,
    growing: Mutex<()>,
}

impl JournalRoom {
    /// A generation's file with `room` bytes made.
    pub(super) fn new(room: u64) -> Self {
        Self(Arc::new(RoomState {
            made: AtomicU64::new(room),
            asked: AtomicBool::new(false),
            growing: Mutex::new(()),
        }))
    }

    /// The bytes made.
    pub(super) fn made(&self) -> u64 {
        self.0.made.load(Ordering::Acquire)
    }

    /// Whether the writer thread should now be asked to grow the room ahead, `written` bytes
    /// being written: once, until it has grown it (or [`JournalRoom::unask`]).
    pub(super) fn ask_growth(&self, written: u64, step: u64) -> bool {
        growth_due(self.made(), written, step) && !self.0.asked.swap(true, Ordering::AcqRel)
    }

    /// The request to grow ahead could not be made: a later append asks again.
    pub(super) fn unask(&self) {
        self.0.asked.store(false, Ordering::Release);
    }

    /// Grows the room so it holds `needed` bytes (waiting for a growth under way first).
    pub(super) fn grow_to(
        &self,
        file: &mut dyn LogFile,
        needed: u64,
        step: u64,
        zeros: bool,
    ) -> io::Result<u64> {
        self.grow_locked(file, |_| needed, step, zeros, false)
    }

    /// Under the growth lock: grows the room to hold `needed(made)` bytes, syncs new zeros
    /// when `sync`, and only then raises the room appends see; returns the room.
    fn grow_locked(
        &self,
        file: &mut dyn LogFile,
        needed: impl FnOnce(u64) -> u64,
        step: u64,
        zeros: bool,
        sync: bool,
    ) -> io::Result<u64> {
        let _growing = self
            .0
            .growing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let made = self.made();
        let room = grow(file, made, needed(made), step, zeros)?;
        if room > made && zeros && sync {
            file.sync_data()?;
        }
        self.0.made.store(room, Ordering::Release);
        Ok(room)
    }
}

/// Grows `file`'s room so it holds `needed` bytes, by whole `step`s from `made`, with written
/// zeros or reserved blocks; returns the new room.
fn grow(file: &mut dyn LogFile, made: u64, needed: u64, step: u64, zeros: bool) -> io::Result<u64> {
    if needed <= made {
        return Ok(made);
    }
    let room = needed.next_multiple_of(step.max(1));
    if zeros {
        file.preallocate(room)?;
    } else {
        file.reserve(room)?;
    }
    Ok(room)
}

/// A growth of the current generation's room for the writer thread to make ahead.
pub(super) struct AheadGrowth {
    /// A handle on the generation's file.
    pub(super) file: Box<dyn LogFile>,
    pub(super) room: JournalRoom,
    /// Bytes of journal written when it was asked for.
    pub(super) written: u64,
    pub(super) step: u64,
    pub(super) zeros: bool,
    /// Sync the zeros (`Fsync` durability: no append's sync then has to write them).
    pub(super) sync: bool,
}

impl AheadGrowth {
    /// Grows the room by a step unless it was grown meanwhile.
    pub(super) fn run(mut self) -> io::Result<()> {
        let grown = self.grow();
        self.room.unask();
        grown
    }

    fn grow(&mut self) -> io::Result<()> {
        let (written, step) = (self.written, self.step);
        self.room
            .grow_locked(
                self.file.as_mut(),
                // Unless it was grown meanwhile.
                |made| {
                    if growth_due(made, written, step) {
                        made + step
                    } else {
                        made
                    }
                },
                step,
                self.zeros,
                self.sync,
            )
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::{grow_with_zeros, growth_due};

    #[test]
    fn small_rounds_grow_the_room_with_zeros_and_large_ones_only_reserve_it() {
        // One PutRecord of 1 KiB per round, 8 MiB of them.
        assert!(grow_with_zeros(8 << 20, 8 << 10));
        // 100 B records, 500 per round: 50 KiB rounds.
        assert!(grow_with_zeros(500 * 100 * 200, 200));
        // 10 KiB records, 500 per round: 5 MiB rounds.
        assert!(!grow_with_zeros(5 << 20, 1));
        assert!(!grow_with_zeros(50 << 20, 10));
        // The boundary: an average of exactly 64 KiB reserves.
        assert!(grow_with_zeros(64 * 1024 * 4 - 1, 4));
        assert!(!grow_with_zeros(64 * 1024 * 4, 4));
    }

    #[test]
    fn the_room_grows_ahead_once_less_than_half_a_step_is_left() {
        let step = 8 << 20;
        assert!(!growth_due(8 << 20, 0, step));
        assert!(!growth_due(8 << 20, 4 << 20, step));
        assert!(growth_due(8 << 20, (4 << 20) + 1, step));
        // Outrun: more written than made.
        assert!(growth_due(8 << 20, 9 << 20, step));
        // A step of 0 or 1 byte never asks ahead.
        assert!(!growth_due(10, 10, 1));
    }
}
