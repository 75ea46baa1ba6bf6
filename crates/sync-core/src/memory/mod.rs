//! In-memory implementations of every trait (placeholder, being written).
