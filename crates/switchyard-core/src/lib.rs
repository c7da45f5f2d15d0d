//! Shared vocabulary: body type, error alias, request facts, metric names.
