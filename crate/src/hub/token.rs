//! Hugging Face access tokens: found where `huggingface_hub` looks (`HF_TOKEN`, then the token file), held
//! so that no `Debug`, `Display`, error or render of saekit can show them.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Where a token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    /// Given to [`super::Hub::with_token`].
    Argument,
    /// The `HF_TOKEN` environment variable.
    Env,
    /// A token file (`$HF_TOKEN_PATH`, `$HF_HOME/token` or `~/.cache/huggingface/token`).
    File(PathBuf),
}

impl std::fmt::Display for TokenOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenOrigin::Argument => f.write_str("given as an argument"),
            TokenOrigin::Env => f.write_str("from HF_TOKEN"),
            TokenOrigin::File(path) => write!(f, "from {}", path.display()),
        }
    }
}

/// A secret token. Its only way out is the `Authorization` header of requests to the Hub's own host.
#[derive(Clone)]
pub struct Token {
    secret: String,
    origin: TokenOrigin,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(redacted, {})", self.origin)
    }
}

impl Token {
    /// A token from text (trimmed); `None` when it is empty.
    pub fn new(secret: &str, origin: TokenOrigin) -> Option<Token> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Token { secret: secret.to_string(), origin })
    }

    pub fn origin(&self) -> &TokenOrigin {
        &self.origin
    }

    /// The `Authorization` header value.
    pub(crate) fn header(&self) -> String {
        format!("Bearer {}", self.secret)
    }

    /// The token from `HF_TOKEN`, else from the token file, else none.
    pub fn from_env() -> Result<Option<Token>> {
        if let Some(token) = std::env::var("HF_TOKEN").ok().and_then(|t| Token::new(&t, TokenOrigin::Env)) {
            return Ok(Some(token));
        }
        let path = token_path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Token::new(&text, TokenOrigin::File(path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

/// `$HF_TOKEN_PATH`, else `$HF_HOME/token`, else `~/.cache/huggingface/token`.
pub fn token_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("HF_TOKEN_PATH").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    Ok(super::cache::hf_home()?.join("token"))
}
