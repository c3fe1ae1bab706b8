//! In-memory mail store (placeholder).
