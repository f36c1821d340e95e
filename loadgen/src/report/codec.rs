//! The histogram encoding interval logs and `--json` share: an HdrHistogram serialised as
//! V2 with deflate, in base64 (what HdrHistogram's interval logs carry, so every
//! HdrHistogram tool reads ours and we read theirs), and errors of decoding and adding
//! histograms in words.
//!
//! What it does not do: read or write logs (`interval_log`) or documents (`results`,
//! `render`). It is its own module so that the results and the log both use it without
//! importing each other.

use base64::Engine as _;
use hdrhistogram::errors::AdditionError;
use hdrhistogram::serialization::{
    DeserializeError, Deserializer, Serializer, V2DeflateSerializer,
};
use hdrhistogram::Histogram;

/// A histogram serialised as V2 with deflate, base64 (what HdrHistogram logs carry).
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serialising into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads a histogram written by [`encode_histogram`] (or any HdrHistogram implementation).
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("the histogram is not base64 ({e})"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("the histogram does not decode: {}", deserialize_error(&e)))
}

/// Why a histogram did not decode, in words (the library's `Debug` names are not for users).
fn deserialize_error(e: &DeserializeError) -> String {
    match e {
        DeserializeError::IoError(e) => format!("it is cut short ({e})"),
        DeserializeError::InvalidCookie => {
            "it is not an HdrHistogram encoding (its first bytes name no known format)".into()
        }
        DeserializeError::UnsupportedFeature => {
            "it uses an HdrHistogram feature this reader does not support".into()
        }
        DeserializeError::UnsuitableCounterType => "a count in it is too large".into(),
        DeserializeError::InvalidParameters => "its value range or precision is invalid".into(),
        DeserializeError::UsizeTypeTooSmall => "it is too large for this machine".into(),
        DeserializeError::EncodedArrayTooLong => "its counts run past its value range".into(),
    }
}

/// Why two histograms could not be added, in words.
pub fn addition_error(e: &AdditionError) -> &'static str {
    match e {
        AdditionError::OtherAddendValueExceedsRange => "a value is out of the histogram's range",
        AdditionError::ResizeFailedUsizeTypeTooSmall => {
            "the values span too wide a range for this machine"
        }
    }
}
