//! Conformance suites (placeholder, being written).
