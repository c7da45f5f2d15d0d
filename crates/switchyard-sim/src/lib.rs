//! The simulated agent upstream: OpenAI and Anthropic dialects with a runtime-controllable profile.
