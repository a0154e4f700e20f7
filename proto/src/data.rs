//! DATA decoding (placeholder until the decoder lands).
