//! A small registry HTTP client (distribution API v2) for one endpoint.
//!
//! Built on reqwest rather than `oci_client::Client` because hosts.toml needs
//! what oci-client cannot express: an API root other than `/v2`
//! (`override_path`, mirror paths), per-endpoint extra headers, client
//! certificates and CAs. The auth flows are the standard ones: anonymous,
//! HTTP Basic, bearer tokens from the `WWW-Authenticate` realm (with Basic
//! credentials or an OAuth2 refresh/identity token), and a registry token
//! sent as is.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE,
};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex;
use tracing::debug;

use crate::hosts::Endpoint;

/// Largest manifest, index or config accepted (they are held in memory).
pub const MAX_DOCUMENT_BYTES: usize = 8 << 20;

/// Errors talking to a registry endpoint.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// CRI auth fields that cannot be used.
    #[error("invalid registry credentials: {reason}")]
    Credentials {
        /// What is wrong.
        reason: String,
    },
    /// A CA or client certificate could not be loaded.
    #[error("loading TLS material {path}")]
    Tls {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A configured header is not a valid HTTP header.
    #[error("invalid header {name:?} for endpoint {endpoint}")]
    Header {
        /// Header name.
        name: String,
        /// The endpoint URL.
        endpoint: String,
    },
    /// The HTTP client could not be built.
    #[error("building HTTP client for {endpoint}")]
    Client {
        /// The endpoint URL.
        endpoint: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// Connection or transfer failure.
    #[error("request to {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered 404.
    #[error("{url}: not found")]
    NotFound {
        /// The URL.
        url: String,
    },
    /// The registry refused our credentials (401/403 after authenticating).
    #[error("{url}: unauthorized (HTTP {status})")]
    Unauthorized {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// Any other unexpected HTTP status.
    #[error("{url}: unexpected HTTP status {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The token endpoint answered without a usable token.
    #[error("token endpoint {realm} returned no token")]
    Token {
        /// The realm URL.
        realm: String,
    },
    /// A document larger than [`MAX_DOCUMENT_BYTES`].
    #[error("{url}: document larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge {
        /// The URL.
        url: String,
    },
    /// Content whose digest is not the one asked for.
    #[error("{url}: content digest {actual} does not match {expected}")]
    DigestMismatch {
        /// The URL.
        url: String,
        /// The digest requested.
        expected: String,
        /// The digest of what was received.
        actual: String,
    },
}

impl RegistryError {
    /// True when the endpoint answered that the content does not exist (as
    /// opposed to being unreachable): used to report "not found" to the CRI.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }
}

/// Credentials for a pull, mapped from the CRI `AuthConfig`.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials.
    #[default]
    Anonymous,
    /// Username and password (also from the base64 `auth` field).
    Basic {
        /// User.
        username: String,
        /// Password.
        password: String,
    },
    /// An OAuth2 refresh token (`identity_token`), exchanged at the realm.
    IdentityToken {
        /// Token.
        token: String,
    },
    /// A bearer token sent to the registry as is (`registry_token`).
    RegistryToken {
        /// Token.
        token: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never log secrets.
        let kind = match self {
            Credentials::Anonymous => "Anonymous",
            Credentials::Basic { .. } => "Basic",
            Credentials::IdentityToken { .. } => "IdentityToken",
            Credentials::RegistryToken { .. } => "RegistryToken",
        };
        f.write_str(kind)
    }
}

impl Credentials {
    /// Maps the CRI `AuthConfig` fields, in the kubelet's precedence:
    /// registry token, identity token, username/password, `auth`.
    pub fn from_cri(
        username: &str,
        password: &str,
        auth: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Self, RegistryError> {
        if !registry_token.is_empty() {
            return Ok(Credentials::RegistryToken {
                token: registry_token.to_string(),
            });
        }
        if !identity_token.is_empty() {
            return Ok(Credentials::IdentityToken {
                token: identity_token.to_string(),
            });
        }
        if !username.is_empty() {
            return Ok(Credentials::Basic {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        if !auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| RegistryError::Credentials {
                    reason: format!("auth is not base64: {e}"),
                })?;
            let text = String::from_utf8(decoded).map_err(|_| RegistryError::Credentials {
                reason: "auth is not UTF-8".into(),
            })?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| RegistryError::Credentials {
                    reason: "auth is not base64(\"user:password\")".into(),
                })?;
            return Ok(Credentials::Basic {
                username: u.to_string(),
                password: p.to_string(),
            });
        }
        Ok(Credentials::Anonymous)
    }
}

/// A fetched manifest or index.
#[derive(Debug, Clone)]
pub struct FetchedDocument {
    /// The raw bytes (digested as is).
    pub bytes: Bytes,
    /// Content-Type reported by the registry.
    pub content_type: String,
    /// `sha256:` digest of `bytes`.
    pub digest: String,
}

/// A registry client bound to one endpoint and one repository.
pub struct RegistryClient {
    endpoint: Endpoint,
    repo_url: String,
    repository: String,
    http: reqwest::Client,
    /// hosts.toml `header`s, appended to every registry request (not to the
    /// token service). Not client defaults: those keep one value per name.
    headers: HeaderMap,
    credentials: Credentials,
    /// The `Authorization` value that worked last, reused for later requests.
    authorization: Mutex<Option<HeaderValue>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("repo_url", &self.repo_url)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// Builds a client for `repository` (e.g. `library/busybox`) on `endpoint`,
    /// with the endpoint's TLS settings and headers.
    pub fn new(
        endpoint: &Endpoint,
        repository: &str,
        credentials: Credentials,
    ) -> Result<Self, RegistryError> {
        let base = endpoint.base_url();
        let mut headers = HeaderMap::new();
        for (name, value) in &endpoint.headers {
            let header_err = || RegistryError::Header {
                name: name.clone(),
                endpoint: base.clone(),
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| header_err())?;
            let v = HeaderValue::from_str(value).map_err(|_| header_err())?;
            headers.append(n, v);
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(endpoint.skip_verify);
        for ca in &endpoint.ca {
            let pem = read_tls_file(ca)?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RegistryError::Tls {
                    path: ca.clone(),
                    source: Box::new(e),
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        // reqwest takes one identity; the first configured pair is used.
        if let Some(client) = endpoint.client.first() {
            let mut pem = read_tls_file(&client.cert)?;
            if let Some(key) = &client.key {
                pem.push(b'\n');
                pem.extend(read_tls_file(key)?);
            }
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| RegistryError::Tls {
                path: client.cert.clone(),
                source: Box::new(e),
            })?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|source| RegistryError::Client {
            endpoint: base.clone(),
            source,
        })?;
        let authorization = match &credentials {
            Credentials::RegistryToken { token } => bearer_header(token),
            _ => None,
        };
        Ok(RegistryClient {
            endpoint: endpoint.clone(),
            repo_url: endpoint.repository_url(repository),
            repository: repository.to_string(),
            http,
            headers,
            credentials,
            authorization: Mutex::new(authorization),
        })
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// GETs the endpoint's `/v2/` root with the credentials (what a login
    /// checks): `Ok` when the registry accepts them (or needs none),
    /// [`RegistryError::Unauthorized`] when it refuses them.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let url = self.endpoint.base_url();
        self.send(&url, None).await.map(|_| ())
    }

    /// GETs `manifests/<reference>` (tag or digest). When `reference` is a
    /// digest the body must hash to it.
    pub async fn fetch_manifest(&self, reference: &str) -> Result<FetchedDocument, RegistryError> {
        let url = format!("{}/manifests/{}", self.repo_url, reference);
        let accept = crate::manifest::ACCEPTED.join(", ");
        let resp = self.send(&url, Some(&accept)).await?;
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = read_limited(resp, &url).await?;
        let digest = sha256_digest(&bytes);
        if reference.contains(':') && reference != digest {
            return Err(RegistryError::DigestMismatch {
                url,
                expected: reference.to_string(),
                actual: digest,
            });
        }
        Ok(FetchedDocument {
            bytes,
            content_type,
            digest,
        })
    }

    /// GETs a small blob (a config) into memory, verifying its sha256 digest.
    pub async fn fetch_blob_bytes(&self, digest: &str) -> Result<Bytes, RegistryError> {
        let url = format!("{}/blobs/{}", self.repo_url, digest);
        let resp = self.send(&url, None).await?;
        let bytes = read_limited(resp, &url).await?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                url,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Opens a blob as a byte stream. The caller verifies the digest (the
    /// unpacker does, while decompressing).
    pub async fn blob_stream(
        &self,
        digest: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static, RegistryError>
    {
        let url = format!("{}/blobs/{}", self.repo_url, digest);
        let resp = self.send(&url, None).await?;
        Ok(resp
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other)))
    }

    /// Sends a GET, authenticating once on a 401 challenge, and maps error statuses.
    async fn send(
        &self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut retried = false;
        loop {
            let mut req = self.http.get(url);
            for (name, value) in &self.headers {
                req = req.header(name, value);
            }
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(auth) = self.authorization.lock().await.clone() {
                req = req.header(AUTHORIZATION, auth);
            }
            let resp = req.send().await.map_err(|source| RegistryError::Http {
                url: url.to_string(),
                source,
            })?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::UNAUTHORIZED && !retried {
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if let Some(challenge) = challenge {
                    if let Some(value) = self.authenticate(&challenge).await? {
                        *self.authorization.lock().await = Some(value);
                        retried = true;
                        continue;
                    }
                }
            }
            return Err(match status {
                StatusCode::NOT_FOUND => RegistryError::NotFound {
                    url: url.to_string(),
                },
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                    url: url.to_string(),
                    status: status.as_u16(),
                },
                _ => {
                    let body = resp.text().await.unwrap_or_default();
                    RegistryError::Status {
                        url: url.to_string(),
                        status: status.as_u16(),
                        body: body.chars().take(200).collect(),
                    }
                }
            });
        }
    }

    /// Answers a `WWW-Authenticate` challenge; `None` when we have nothing to offer.
    async fn authenticate(&self, challenge: &str) -> Result<Option<HeaderValue>, RegistryError> {
        let Some(ch) = Challenge::parse(challenge) else {
            return Ok(None);
        };
        match ch {
            Challenge::Basic => Ok(match &self.credentials {
                Credentials::Basic { username, password } => basic_header(username, password),
                _ => None,
            }),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                if let Credentials::RegistryToken { .. } = self.credentials {
                    // The given token was refused; there is nothing better to send.
                    return Ok(None);
                }
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                debug!(%realm, ?service, %scope, "fetching registry token");
                let token = self.fetch_token(&realm, service.as_deref(), &scope).await?;
                Ok(bearer_header(&token))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, RegistryError> {
        let http_err = |source| RegistryError::Http {
            url: realm.to_string(),
            source,
        };
        let resp = match &self.credentials {
            Credentials::IdentityToken { token } => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", "berth"),
                    ("scope", scope),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                self.http
                    .post(realm)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
                    .send()
                    .await
                    .map_err(http_err)?
            }
            creds => {
                let mut query = vec![("scope", scope)];
                if let Some(s) = service {
                    query.push(("service", s));
                }
                let mut req = self.http.get(realm).query(&query);
                if let Credentials::Basic { username, password } = creds {
                    req = req.basic_auth(username, Some(password));
                }
                req.send().await.map_err(http_err)?
            }
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    RegistryError::Unauthorized {
                        url: realm.to_string(),
                        status: status.as_u16(),
                    }
                } else {
                    RegistryError::Status {
                        url: realm.to_string(),
                        status: status.as_u16(),
                        body: String::new(),
                    }
                },
            );
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let bytes = read_limited(resp, realm).await?;
        let parsed: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|_| RegistryError::Token {
                realm: realm.to_string(),
            })?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Token {
                realm: realm.to_string(),
            })
    }
}

fn read_tls_file(path: &std::path::Path) -> Result<Vec<u8>, RegistryError> {
    std::fs::read(path).map_err(|e| RegistryError::Tls {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

async fn read_limited(resp: reqwest::Response, url: &str) -> Result<Bytes, RegistryError> {
    if resp
        .content_length()
        .is_some_and(|l| l > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(RegistryError::TooLarge {
            url: url.to_string(),
        });
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| RegistryError::Http {
            url: url.to_string(),
            source,
        })?;
        if out.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(RegistryError::TooLarge {
                url: url.to_string(),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn bearer_header(token: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}")).ok()
}

fn basic_header(user: &str, pass: &str) -> Option<HeaderValue> {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    HeaderValue::from_str(&format!("Basic {enc}")).ok()
}

fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses `Bearer realm="..",service="..",scope=".."` or `Basic realm=".."`.
    fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut realm = None;
        let mut service = None;
        let mut scope = None;
        let mut rest = params.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let key = key.trim().trim_start_matches(',').trim();
            let after = after.trim_start();
            let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
                let end = q.find('"')?;
                (&q[..end], &q[end + 1..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            match key.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value.to_string()),
                "service" => service = Some(value.to_string()),
                "scope" => scope = Some(value.to_string()),
                _ => {}
            }
            rest = remaining.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Challenge::Bearer {
            realm: realm?,
            service,
            scope,
        })
    }
}

#[cfg(test)]
mod tests;
