//! The edge answers errors in the shared shape.

pub use ct_platform::http_error::ApiError;
