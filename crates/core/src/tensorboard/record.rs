//! TFRecord framing: how event files store each record (length, masked
//! CRC32C of the length, data, masked CRC32C of the data), and reading it
//! back with every check TensorBoard makes. Crate-private: the event
//! file writer frames its events; readers are TensorBoard's own (the tests
//! read the files back with it).

/// CRC32C of `data`, masked as TFRecord files store it:
/// `((crc >> 15) | (crc << 17)) + 0xa282ead8`.
pub(crate) fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// Frames `data` as one TFRecord: length (`u64` little-endian), masked CRC32C
/// of those 8 bytes, the data, masked CRC32C of the data.
pub(crate) fn encode_record(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Why [`decode_records`] rejected a file.
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    /// The file ends inside a record.
    #[error("record #{index} at offset {offset}: truncated")]
    Truncated {
        /// Record number (0-based).
        index: usize,
        /// Byte offset of the record.
        offset: usize,
    },
    /// A stored checksum does not match.
    #[error("record #{index} at offset {offset}: bad {what} CRC")]
    BadCrc {
        /// Record number (0-based).
        index: usize,
        /// Byte offset of the record.
        offset: usize,
        /// `length` or `data`.
        what: &'static str,
    },
}

/// Splits TFRecord bytes into record payloads, checking both checksums of
/// every record (the inverse of [`encode_record`]); the tests' reader.
#[cfg(test)]
pub(crate) fn decode_records(bytes: &[u8]) -> std::result::Result<Vec<&[u8]>, RecordError> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let index = records.len();
        let truncated = RecordError::Truncated { index, offset: pos };
        let header = bytes.get(pos..pos + 12).ok_or(truncated.clone())?;
        let (len, len_crc) = header.split_at(8);
        if masked_crc32c(len) != u32::from_le_bytes(len_crc.try_into().expect("4 bytes")) {
            return Err(RecordError::BadCrc {
                index,
                offset: pos,
                what: "length",
            });
        }
        let len = usize::try_from(u64::from_le_bytes(len.try_into().expect("8 bytes")))
            .map_err(|_| truncated.clone())?;
        let start = pos + 12;
        let end = start.checked_add(len).ok_or(truncated.clone())?;
        let data = bytes.get(start..end).ok_or(truncated.clone())?;
        let crc = bytes.get(end..end + 4).ok_or(truncated)?;
        if masked_crc32c(data) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(RecordError::BadCrc {
                index,
                offset: pos,
                what: "data",
            });
        }
        records.push(data);
        pos = end + 4;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::tensorboard::FILE_VERSION;
    use crate::tensorboard::proto::{Event, event};

    /// The first record of an event file written by TensorFlow 2.21
    /// (`tb_examples/tf_summary_logdir`): the `file_version` event.
    const TF_FIRST_RECORD: [u8; 78] = [
        0x3e, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd9, 0xd2, 0x40, 0xe7, 0x09, 0x00, 0x00,
        0x80, 0x85, 0x72, 0xc1, 0xda, 0x41, 0x1a, 0x0d, 0x62, 0x72, 0x61, 0x69, 0x6e, 0x2e, 0x45,
        0x76, 0x65, 0x6e, 0x74, 0x3a, 0x32, 0x52, 0x24, 0x0a, 0x22, 0x74, 0x65, 0x6e, 0x73, 0x6f,
        0x72, 0x66, 0x6c, 0x6f, 0x77, 0x2e, 0x63, 0x6f, 0x72, 0x65, 0x2e, 0x75, 0x74, 0x69, 0x6c,
        0x2e, 0x65, 0x76, 0x65, 0x6e, 0x74, 0x73, 0x5f, 0x77, 0x72, 0x69, 0x74, 0x65, 0x72, 0x08,
        0x64, 0xd5, 0xba,
    ];

    #[test]
    fn masked_crc_known_values() {
        // Values computed with tensorboard's masked_crc32c.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
        assert_eq!(masked_crc32c(&24u64.to_le_bytes()), 0x224b_7fa3);
    }

    #[test]
    fn decodes_a_tensorflow_record() {
        let records = decode_records(&TF_FIRST_RECORD).unwrap();
        assert_eq!(records.len(), 1);
        let event = Event::decode(records[0]).unwrap();
        assert_eq!(
            event.what,
            Some(event::What::FileVersion(FILE_VERSION.to_string()))
        );
        assert_eq!(
            event.source_metadata.unwrap().writer,
            "tensorflow.core.util.events_writer"
        );
        // Re-encoding gives TensorFlow's bytes back.
        assert_eq!(encode_record(&event_bytes(records[0])), TF_FIRST_RECORD);
    }

    fn event_bytes(payload: &[u8]) -> Vec<u8> {
        Event::decode(payload).unwrap().encode_to_vec()
    }

    #[test]
    fn record_framing_round_trip_and_corruption() {
        let payloads: [&[u8]; 3] = [b"", b"x", &[7u8; 1000]];
        let mut bytes = Vec::new();
        for p in payloads {
            bytes.extend(encode_record(p));
        }
        assert_eq!(decode_records(&bytes).unwrap(), payloads.to_vec());

        let mut bad = bytes.clone();
        bad[16 + 17 + 12 + 5] ^= 0x40; // inside the third payload
        assert!(matches!(
            decode_records(&bad),
            Err(RecordError::BadCrc {
                index: 2,
                what: "data",
                ..
            })
        ));
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(matches!(
            decode_records(&bad),
            Err(RecordError::BadCrc {
                index: 0,
                what: "length",
                ..
            })
        ));
        assert!(matches!(
            decode_records(&bytes[..bytes.len() - 1]),
            Err(RecordError::Truncated { index: 2, .. })
        ));
    }
}
