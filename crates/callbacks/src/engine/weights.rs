//! Weights files: a model record encoded as Burn's burnpack (`.bpk`), with
//! a checksum trailer.

use burnfit_core::checkpoint_file::with_trailer;
use burnfit_core::writer::Encode;

/// An [`Encode`] that turns a model record into Burn's burnpack bytes (the
/// `.bpk` weights file), reading the tensor values on the writer thread.
/// The bytes end with a CRC-32C trailer
/// ([`TRAILER_MAGIC`](burnfit_core::checkpoint_file::TRAILER_MAGIC)) that
/// Burn's reader ignores: the file loads with `ModuleRecord::load`, and
/// [`verify_trailer`](burnfit_core::checkpoint_file::verify_trailer) tells a
/// damaged file from a whole one.
pub fn encode_module_record(record: burn::store::ModuleRecord) -> Encode {
    Box::new(move || {
        record
            .into_bytes()
            .map(|bytes| with_trailer(bytes.to_vec()))
            .map_err(|e| e.to_string())
    })
}
