//! manager (being written).
