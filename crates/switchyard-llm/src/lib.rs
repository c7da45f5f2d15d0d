//! Pure LLM protocol code: dialects, inspection, SSE framing, usage extraction, error bodies.
