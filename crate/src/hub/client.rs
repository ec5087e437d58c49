//! HTTP to the Hub: one request with retries (5xx, 429 with `Retry-After`, refused connections) and
//! cancellation between attempts, the token sent only to the Hub's own host, and Hub status codes turned
//! into errors that say what to do.

use std::time::Duration;

use ureq::Body;
use ureq::http::Response;

use super::{Hub, HubRepo, RetryPolicy};
use crate::error::{Error, Result};
use crate::jobs::JobContext;

/// The HTTP agent: statuses are answers (not errors), redirects are followed by hand (so the token is
/// never sent to another host), reads that stall time out.
pub(super) fn agent(retry: &RetryPolicy) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_per_read(Some(retry.read_timeout))
        // Large reads: fewer system calls per megabyte (a download is mostly one long body).
        .input_buffer_size(1 << 20)
        .user_agent(format!("saekit/{}", crate::VERSION))
        .build()
        .into()
}

/// Percent-encodes a path for a URL, keeping `/` unless `slash` is set (revisions such as
/// `refs/convert/parquet` travel as one segment).
pub(super) fn escape_path(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `scheme://authority` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[after_scheme..].find('/').map(|i| after_scheme + i).unwrap_or(url.len());
    &url[..end]
}

/// Resolves a `Location` header against the URL that sent it.
pub(super) fn join_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base))
    } else {
        let dir = base.rsplit_once('/').map(|(d, _)| d).unwrap_or(base);
        format!("{dir}/{location}")
    }
}

pub(super) fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Waits `delay`, checking for cancellation.
pub(super) fn sleep(delay: Duration, ctx: &JobContext) -> Result<()> {
    let until = std::time::Instant::now() + delay;
    loop {
        ctx.check()?;
        let now = std::time::Instant::now();
        if now >= until {
            return Ok(());
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

/// The wait before retry number `attempt` (from 0): exponential, with a little jitter, capped.
pub(super) fn backoff(retry: &RetryPolicy, attempt: u32) -> Duration {
    let base = retry.base_delay.saturating_mul(1u32 << attempt.min(16));
    let jitter =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos() % 1000;
    (base + base.mul_f64(jitter as f64 / 4000.0)).min(retry.max_delay)
}

/// A transport error in words, with what to do about it.
pub(super) fn network_error(url: &str, error: &ureq::Error, attempts: u32) -> Error {
    let cause = match error {
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ureq::Error::ConnectionFailed => "connection refused or failed".to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        other => other.to_string(),
    };
    Error::Network {
        url: url.to_string(),
        message: format!(
            "{cause} (after {attempts} attempts); check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use \
             only files already in the cache"
        ),
    }
}

/// Sends a GET (or HEAD) with retries. Returns the first answer that is not worth retrying: 2xx, 3xx,
/// and 4xx other than 429.
pub(super) fn send(
    hub: &Hub,
    head: bool,
    url: &str,
    range_from: Option<u64>,
    ctx: &JobContext,
) -> Result<Response<Body>> {
    let mut attempt = 0u32;
    loop {
        ctx.check()?;
        let mut request = if head { hub.agent.head(url) } else { hub.agent.get(url) };
        if let Some(token) = &hub.token
            && origin(url) == origin(&hub.endpoint)
        {
            request = request.header("Authorization", token.header());
        }
        if let Some(from) = range_from {
            request = request.header("Range", format!("bytes={from}-"));
        }
        let wait = match request.call() {
            Ok(response) if response.status() == 429 || response.status().is_server_error() => {
                if attempt >= hub.retry.max_retries {
                    return Err(Error::Network {
                        url: url.to_string(),
                        message: format!(
                            "the server answered {} (after {} attempts); try again later",
                            response.status(),
                            attempt + 1
                        ),
                    });
                }
                let retry_after = header(&response, "retry-after").and_then(|s| s.trim().parse::<u64>().ok());
                match retry_after {
                    Some(seconds) => Duration::from_secs(seconds).min(hub.retry.max_delay),
                    None => backoff(&hub.retry, attempt),
                }
            }
            Ok(response) => return Ok(response),
            Err(e) => {
                if attempt >= hub.retry.max_retries {
                    return Err(network_error(url, &e, attempt + 1));
                }
                backoff(&hub.retry, attempt)
            }
        };
        sleep(wait, ctx)?;
        attempt += 1;
    }
}

/// The error for a 4xx answer about `repo` (`file` when a file was asked for).
pub(super) fn status_error(response: &Response<Body>, repo: &HubRepo, revision: &str, file: Option<&str>) -> Error {
    let status = response.status().as_u16();
    let code = header(response, "x-error-code").unwrap_or_default();
    let token_given = repo.hub.token.is_some();
    let kind = repo.kind.as_str();
    let not_found =
        || Error::RepoNotFound { kind, repo: repo.id.clone(), endpoint: repo.hub.endpoint.clone(), token_given };
    match (status, code) {
        (_, "RepoNotFound") => not_found(),
        (_, "GatedRepo") | (401 | 403, _) => Error::NeedsToken { kind, repo: repo.id.clone(), token_given },
        (404, "RevisionNotFound") => {
            Error::InvalidArgument(format!("{kind} `{}` has no revision `{revision}`", repo.id))
        }
        (404, _) if file.is_some() => Error::InvalidArgument(format!(
            "{kind} `{}` has no file `{}` at revision `{revision}`",
            repo.id,
            file.unwrap_or_default()
        )),
        (404, _) => not_found(),
        _ => Error::Network {
            url: repo.hub.endpoint.clone(),
            message: format!(
                "the Hub answered {status}{}",
                if code.is_empty() { String::new() } else { format!(" ({code})") }
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_like_a_browser() {
        let base = "http://127.0.0.1:9/datasets/a/b/resolve/main/data/x.parquet";
        assert_eq!(join_location(base, "/cdn/abc?x=1"), "http://127.0.0.1:9/cdn/abc?x=1");
        assert_eq!(join_location(base, "https://cdn.example/abc"), "https://cdn.example/abc");
        assert_eq!(join_location(base, "y.parquet"), "http://127.0.0.1:9/datasets/a/b/resolve/main/data/y.parquet");
    }

    #[test]
    fn paths_are_escaped_and_revisions_stay_one_segment() {
        assert_eq!(escape_path("refs/convert/parquet", true), "refs%2Fconvert%2Fparquet");
        assert_eq!(escape_path("data/a b.parquet", false), "data/a%20b.parquet");
    }

    #[test]
    fn token_goes_only_to_the_hub_host() {
        assert_eq!(origin("http://127.0.0.1:9/api/x"), "http://127.0.0.1:9");
        assert_ne!(origin("https://cdn.example/x"), origin("https://huggingface.co/x"));
    }
}
