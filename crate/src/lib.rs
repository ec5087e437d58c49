pub mod error;
pub mod sources;
pub use error::{Error, Result};
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
