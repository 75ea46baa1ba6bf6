//! Where a server's tokens come from, as [`Authenticator`]s: [`TokenFile`] (lines
//! `TENANT:TOKEN` in a file, re-read on demand, e.g. on SIGHUP), [`StoredTokens`] (device
//! tokens in the server's database, [`TokenStore`]), and [`AnyOf`], which asks several in turn.
//!
//! Nothing here reads the request; the auth middleware calls [`Authenticator::tenant`]. Tokens
//! are never logged or printed (the `Debug` forms show tenants only).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use sync_core::server::TokenStore;
use sync_core::TenantId;

use super::auth::{Authenticator, StaticTokens};

/// The fewest characters a configured token may have.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Checks that a token given to the server (`--token`, a token file) is hard to guess: at
/// least [`MIN_TOKEN_CHARS`] characters, of at least 6 different ones. The error says what
/// to do.
pub fn check_token_strength(token: &str) -> Result<(), String> {
    let chars = token.chars().count();
    let distinct = token
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if chars < MIN_TOKEN_CHARS || distinct < 6 {
        return Err(format!(
            "the token is too easy to guess ({chars} characters, {distinct} different; at \
             least {MIN_TOKEN_CHARS} and 6 are needed): make one with `openssl rand -hex 16`, \
             or use `sync-server tokens add`"
        ));
    }
    Ok(())
}

/// A token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("cannot read the token file {path}: {source}. Check the path and its permissions")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `TENANT:TOKEN`.
    #[error(
        "{path}, line {line}: expected TENANT:TOKEN (one per line; blank lines and lines \
         starting with # are skipped)"
    )]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
    },
    /// A line's token is too easy to guess.
    #[error("{path}, line {line}: {why}")]
    Weak {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong and what to do ([`check_token_strength`]).
        why: String,
    },
}

/// Tokens from a file of `TENANT:TOKEN` lines (blank lines and `#` comments skipped), kept out
/// of the command line where every local user could read them. [`TokenFile::reload`] reads
/// the file again; a file that fails to load keeps the tokens of the last good load.
pub struct TokenFile {
    path: PathBuf,
    tokens: RwLock<StaticTokens>,
}

impl TokenFile {
    /// Loads `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<TokenFile, TokenFileError> {
        let path = path.as_ref().to_path_buf();
        let tokens = RwLock::new(parse(&path)?);
        Ok(TokenFile { path, tokens })
    }

    /// Reads the file again and replaces the tokens; returns how many there are now. On error
    /// the tokens loaded before stay in force.
    pub fn reload(&self) -> Result<usize, TokenFileError> {
        let fresh = parse(&self.path)?;
        let n = fresh.len();
        match self.tokens.write() {
            Ok(mut tokens) => *tokens = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(n)
    }

    /// How many tokens are loaded.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// True when the file held no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn current(&self) -> StaticTokens {
        match self.tokens.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile")
            .field("path", &self.path)
            .field("tokens", &self.current())
            .finish()
    }
}

fn parse(path: &Path) -> Result<StaticTokens, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((tenant, token)) if !tenant.trim().is_empty() && !token.trim().is_empty() => {
                check_token_strength(token.trim()).map_err(|why| TokenFileError::Weak {
                    path: path.to_path_buf(),
                    line: i + 1,
                    why,
                })?;
                pairs.push((tenant.trim().to_owned(), token.trim().to_owned()));
            }
            _ => {
                return Err(TokenFileError::Line {
                    path: path.to_path_buf(),
                    line: i + 1,
                })
            }
        }
    }
    Ok(StaticTokens::new(pairs))
}

#[async_trait]
impl Authenticator for TokenFile {
    async fn tenant(&self, token: &str) -> Option<TenantId> {
        self.current().tenant(token).await
    }
}

/// Device tokens kept (as hashes) in the server's database. A store that cannot be read counts
/// as "unknown token" for that request, and is logged.
pub struct StoredTokens {
    store: Arc<dyn TokenStore>,
}

impl StoredTokens {
    /// Tokens of `store`.
    pub fn new(store: Arc<dyn TokenStore>) -> StoredTokens {
        StoredTokens { store }
    }
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredTokens")
    }
}

#[async_trait]
impl Authenticator for StoredTokens {
    async fn tenant(&self, token: &str) -> Option<TenantId> {
        match self.store.token_tenant(token).await {
            Ok(found) => found.map(|info| info.tenant),
            Err(e) => {
                tracing::error!(error = %e, "cannot check a token in the token store");
                None
            }
        }
    }
}

/// Several token sources: the first that knows a token decides its tenant.
#[derive(Default)]
pub struct AnyOf {
    sources: Vec<Arc<dyn Authenticator>>,
}

impl AnyOf {
    /// No source yet (knows no token).
    pub fn new() -> AnyOf {
        AnyOf::default()
    }

    /// Adds a source, asked after the ones added before.
    #[must_use]
    pub fn with(mut self, source: Arc<dyn Authenticator>) -> AnyOf {
        self.sources.push(source);
        self
    }

    /// True when there is no source.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

impl std::fmt::Debug for AnyOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnyOf({} sources)", self.sources.len())
    }
}

#[async_trait]
impl Authenticator for AnyOf {
    async fn tenant(&self, token: &str) -> Option<TenantId> {
        for source in &self.sources {
            if let Some(tenant) = source.tenant(token).await {
                return Some(tenant);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sync_core::memory::MemoryServerStore;
    use sync_core::ServerConfig;

    #[test]
    fn weak_tokens_are_refused_with_advice() {
        for weak in [
            "s3cret",
            "alice-token",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababab",
        ] {
            let why = super::check_token_strength(weak).unwrap_err();
            assert!(why.contains("openssl rand -hex 16"), "{why}");
        }
        for strong in ["0123456789abcdef", "bob-file-token-1", "k7Qm2xV9pL4wZ8rT"] {
            assert!(super::check_token_strength(strong).is_ok(), "{strong}");
        }
    }

    #[tokio::test]
    async fn a_token_file_loads_reloads_and_keeps_the_last_good_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "# devices\nalice:token-of-alice-1\n\n bob : token-of-bob-222 \n",
        )
        .unwrap();
        let file = TokenFile::load(&path).unwrap();
        assert_eq!(file.len(), 2);
        assert_eq!(
            file.tenant("token-of-bob-222").await,
            Some(TenantId::new("bob"))
        );
        std::fs::write(&path, "alice:token-of-alice-new\n").unwrap();
        assert_eq!(file.reload().unwrap(), 1);
        assert_eq!(file.tenant("token-of-alice-1").await, None);
        assert_eq!(
            file.tenant("token-of-alice-new").await,
            Some(TenantId::new("alice"))
        );
        std::fs::write(&path, "alice:token-of-alice-new\nnot a line\n").unwrap();
        let err = file.reload().unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert_eq!(
            file.tenant("token-of-alice-new").await,
            Some(TenantId::new("alice"))
        );
        assert!(!format!("{file:?}").contains("token-of-alice-new"));
        std::fs::write(&path, "alice:token-of-alice-new\nbob:s3cret\n").unwrap();
        let weak = file.reload().unwrap_err();
        assert!(
            matches!(weak, TokenFileError::Weak { line: 2, .. }),
            "{weak}"
        );
        assert!(weak.to_string().contains("too easy to guess"), "{weak}");
        let missing = TokenFile::load(dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("cannot read the token file"));
    }

    #[tokio::test]
    async fn stored_tokens_and_any_of() {
        let store = Arc::new(MemoryServerStore::new(ServerConfig::default()));
        let made = store
            .add_token(&TenantId::new("carol"), "phone")
            .await
            .unwrap();
        let auth = AnyOf::new()
            .with(Arc::new(StaticTokens::new([("alice", "tok-a")])))
            .with(Arc::new(StoredTokens::new(store.clone())));
        assert_eq!(auth.tenant("tok-a").await, Some(TenantId::new("alice")));
        assert_eq!(auth.tenant(&made.token).await, Some(TenantId::new("carol")));
        store.revoke_token(&made.info.id, None).await.unwrap();
        assert_eq!(auth.tenant(&made.token).await, None);
        assert_eq!(AnyOf::new().tenant("tok-a").await, None);
    }
}
