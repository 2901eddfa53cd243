//! The bytes of one delivered object: the batch's records one after the other (each followed
//! by a newline when asked), compressed as the destination says, in the formats Firehose
//! writes: gzip, a zip archive holding one entry, Snappy's framing format, or Hadoop's
//! block format for Snappy; and Zstandard frames for channels.

use std::io::Write;

use crate::api::delivery::Compression;

/// Why an object could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The compressor failed (it writes to memory, so only on a broken invariant).
    #[error("compressing the batch with {compression:?}: {message}")]
    Compress {
        /// The compression.
        compression: Compression,
        /// What failed.
        message: String,
    },
}

/// Largest block of uncompressed input in one Hadoop-Snappy block (Hadoop's default buffer).
const HADOOP_BLOCK: usize = 256 * 1024;

/// Joins `records`, each followed by `\n` when `append_newline`.
pub fn join_records<'a>(
    records: impl IntoIterator<Item = &'a [u8]>,
    append_newline: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        out.extend_from_slice(record);
        if append_newline {
            out.push(b'\n');
        }
    }
    out
}

/// Compresses `content` as `compression`; `entry_name` names the single entry of a zip archive.
pub fn compress(
    content: &[u8],
    compression: Compression,
    entry_name: &str,
) -> Result<Vec<u8>, EncodeError> {
    let failed = |error: &dyn std::fmt::Display| EncodeError::Compress {
        compression,
        message: error.to_string(),
    };
    match compression {
        Compression::Uncompressed => Ok(content.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(content.len() / 4),
                flate2::Compression::default(),
            );
            encoder.write_all(content).map_err(|e| failed(&e))?;
            encoder.finish().map_err(|e| failed(&e))
        }
        Compression::Zip => {
            let mut archive = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(content.len() as u64 >= u64::from(u32::MAX));
            archive
                .start_file(entry_name, options)
                .map_err(|e| failed(&e))?;
            archive.write_all(content).map_err(|e| failed(&e))?;
            Ok(archive.finish().map_err(|e| failed(&e))?.into_inner())
        }
        Compression::Snappy => {
            let mut encoder = snap::write::FrameEncoder::new(Vec::new());
            encoder.write_all(content).map_err(|e| failed(&e))?;
            encoder.into_inner().map_err(|e| failed(&e.error()))
        }
        Compression::HadoopSnappy => hadoop_snappy(content).map_err(|e| failed(&e)),
        Compression::Zstd => zstd::bulk::compress(content, ZSTD_LEVEL).map_err(|e| failed(&e)),
    }
}

/// Zstandard's default level: a fast compression that still shrinks logs several times.
const ZSTD_LEVEL: i32 = 3;

/// Hadoop's block format: per block of input, its length (4 bytes, big-endian), then the
/// compressed chunk's length and the raw Snappy chunk.
fn hadoop_snappy(content: &[u8]) -> Result<Vec<u8>, snap::Error> {
    let mut encoder = snap::raw::Encoder::new();
    let mut out = Vec::with_capacity(content.len() / 2 + 16);
    for block in content.chunks(HADOOP_BLOCK) {
        let compressed = encoder.compress_vec(block)?;
        // Both lengths fit: a block is at most HADOOP_BLOCK bytes, and Snappy's worst case
        // is a little over that.
        out.extend_from_slice(&(block.len() as u32).to_be_bytes());
        out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn sample() -> Vec<u8> {
        join_records(
            (0..2000)
                .map(|i| format!("{{\"click\":{i}}}").into_bytes())
                .collect::<Vec<_>>()
                .iter()
                .map(Vec::as_slice),
            true,
        )
    }

    #[test]
    fn delivery_records_are_joined_with_or_without_newlines() {
        let records: [&[u8]; 3] = [b"a", b"", b"bc"];
        assert_eq!(join_records(records, true), b"a\n\nbc\n");
        assert_eq!(join_records(records, false), b"abc");
    }

    #[test]
    fn delivery_gzip_and_zip_round_trip() {
        let content = sample();
        let gz = compress(&content, Compression::Gzip, "x").expect("gzip");
        assert!(gz.len() < content.len() / 2);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, content);

        let zipped = compress(&content, Compression::Zip, "batch").expect("zip");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zipped)).expect("archive");
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_index(0).expect("entry");
        assert_eq!(entry.name().expect("name"), "batch");
        let mut back = Vec::new();
        entry.read_to_end(&mut back).expect("unzip");
        assert_eq!(back, content);
    }

    #[test]
    fn delivery_snappy_framing_and_hadoop_blocks_round_trip() {
        let content = sample().repeat(20);
        let framed = compress(&content, Compression::Snappy, "x").expect("snappy");
        assert_eq!(&framed[..10], b"\xff\x06\x00\x00sNaPpY");
        let mut back = Vec::new();
        snap::read::FrameDecoder::new(framed.as_slice())
            .read_to_end(&mut back)
            .expect("unframe");
        assert_eq!(back, content);

        let blocks = compress(&content, Compression::HadoopSnappy, "x").expect("hadoop");
        let mut back = Vec::new();
        let mut rest = blocks.as_slice();
        let mut decoder = snap::raw::Decoder::new();
        while !rest.is_empty() {
            let raw = u32::from_be_bytes(rest[..4].try_into().expect("4")) as usize;
            let packed = u32::from_be_bytes(rest[4..8].try_into().expect("4")) as usize;
            let block = decoder.decompress_vec(&rest[8..8 + packed]).expect("block");
            assert_eq!(block.len(), raw);
            assert!(raw <= HADOOP_BLOCK);
            back.extend_from_slice(&block);
            rest = &rest[8 + packed..];
        }
        assert_eq!(back, content);
        assert!(content.len() > HADOOP_BLOCK, "the sample spans blocks");
    }

    #[test]
    fn delivery_uncompressed_is_the_content() {
        assert_eq!(
            compress(b"abc", Compression::Uncompressed, "x").expect("plain"),
            b"abc"
        );
    }

    #[test]
    fn channel_zstd_round_trips() {
        let content = sample();
        let compressed = compress(&content, Compression::Zstd, "x").expect("zstd");
        assert!(
            compressed.len() < content.len() / 4,
            "zstd shrinks the sample"
        );
        assert_eq!(
            zstd::decode_all(compressed.as_slice()).expect("zstd frame"),
            content
        );
    }
}
