//! The byte layout of a metric's epoch state (what a mid-epoch backup keeps
//! of it): little-endian numbers one after another, read back in the same
//! order, bit for bit.

/// Writes a state.
#[derive(Default)]
pub(crate) struct StateWriter {
    bytes: Vec<u8>,
}

impl StateWriter {
    pub(crate) fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn f64(&mut self, value: f64) {
        self.u64(value.to_bits());
    }

    pub(crate) fn f32s(&mut self, values: &[f32]) {
        self.u64(values.len() as u64);
        for value in values {
            self.bytes.extend_from_slice(&value.to_bits().to_le_bytes());
        }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads a state, refusing one that is short or too long.
pub(crate) struct StateReader<'a> {
    bytes: &'a [u8],
}

impl<'a> StateReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err("the saved state is cut short".into());
        };
        self.bytes = rest;
        Ok(*head)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }

    pub(crate) fn f32s(&mut self) -> Result<Vec<f32>, String> {
        let len = self.u64()? as usize;
        if self.bytes.len() / 4 < len {
            return Err("the saved state is cut short".into());
        }
        (0..len)
            .map(|_| Ok(f32::from_bits(u32::from_le_bytes(self.take()?))))
            .collect()
    }

    /// Checks that nothing is left over.
    pub(crate) fn end(self) -> Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the saved state has {} bytes more than this metric keeps",
                self.bytes.len()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_bit_for_bit_and_a_damaged_one_is_refused() {
        let mut out = StateWriter::default();
        out.f64(-0.1);
        out.u64(7);
        out.f32s(&[1.5, f32::NAN, -0.0]);
        let bytes = out.finish();
        let mut input = StateReader::new(&bytes);
        assert_eq!(input.f64().unwrap().to_bits(), (-0.1f64).to_bits());
        assert_eq!(input.u64().unwrap(), 7);
        let values = input.f32s().unwrap();
        assert_eq!(values[0], 1.5);
        assert!(values[1].is_nan());
        assert_eq!(values[2].to_bits(), (-0.0f32).to_bits());
        input.end().unwrap();

        let short = StateReader::new(&bytes[..bytes.len() - 1]);
        assert!(
            {
                let mut r = short;
                r.f64().and(r.u64()).and(r.f32s().map(|_| 0))
            }
            .is_err()
        );
        let mut long = bytes.clone();
        long.push(0);
        let mut input = StateReader::new(&long);
        input.f64().unwrap();
        input.u64().unwrap();
        input.f32s().unwrap();
        assert!(input.end().is_err());
    }
}
