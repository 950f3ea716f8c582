//! One usage parser per wire format: OpenAI chat and embeddings (also
//! Azure and OpenAI-compatible endpoints), OpenAI Responses, Anthropic
//! Messages, Gemini generateContent. A new provider is a module here plus a
//! `Parser` arm in `meter.rs` and its paths in `route.rs`.

pub mod anthropic;
pub mod gemini;
pub mod openai;
pub mod responses;
