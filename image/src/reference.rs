//! Image references, normalised exactly the way Docker and the kubelet do it.
//!
//! `busybox` becomes `docker.io/library/busybox:latest`, `index.docker.io/x/y`
//! becomes `docker.io/x/y:latest`, `localhost:5000/app` keeps its host, and a
//! reference carrying both a tag and a digest keeps both (the digest is what
//! gets fetched; the tag is what the image is recorded under). The grammar is
//! the one of the distribution project's `reference` package.

use std::fmt;
use std::str::FromStr;

/// The registry Docker Hub images live under after normalisation.
pub const DOCKER_HUB_DOMAIN: &str = "docker.io";
/// The legacy Docker Hub name that normalises to [`DOCKER_HUB_DOMAIN`].
const LEGACY_DOCKER_HUB_DOMAIN: &str = "index.docker.io";
/// The namespace of Docker Hub's official images.
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag added when neither a tag nor a digest is given.
pub const DEFAULT_TAG: &str = "latest";
/// Longest accepted `domain/path` (distribution's `NameTotalLengthMax`).
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Why a string is not a valid image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Empty input.
    #[error("invalid reference {input:?}: empty")]
    Empty {
        /// The rejected input.
        input: String,
    },
    /// The repository part contains upper-case letters.
    #[error("invalid reference {input:?}: repository name must be lowercase")]
    Uppercase {
        /// The rejected input.
        input: String,
    },
    /// A bare 64-hex string is an image id, not a name.
    #[error("invalid reference {input:?}: cannot specify 64-byte hexadecimal strings")]
    HexIdentifier {
        /// The rejected input.
        input: String,
    },
    /// The name is longer than 255 characters.
    #[error("invalid reference {input:?}: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong {
        /// The rejected input.
        input: String,
    },
    /// Some part does not match the reference grammar.
    #[error("invalid reference {input:?}: invalid {part}")]
    Format {
        /// The rejected input.
        input: String,
        /// Which part is wrong: domain, path component, tag or digest.
        part: &'static str,
    },
}

/// A fully normalised image reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalises like Docker's `ParseDockerRef` (what the kubelet
    /// and containerd's CRI use): default domain, `library/` for official
    /// images, `:latest` when neither tag nor digest is given.
    pub fn parse_normalized(input: &str) -> Result<Self, ReferenceError> {
        let fmt_err = |part| ReferenceError::Format {
            input: input.to_string(),
            part,
        };
        if input.is_empty() {
            return Err(ReferenceError::Empty {
                input: input.to_string(),
            });
        }
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::HexIdentifier {
                input: input.to_string(),
            });
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                if !is_valid_digest(digest) {
                    return Err(fmt_err("digest"));
                }
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };
        // The tag is after the last ':' that follows the last '/', so a port
        // in the domain is not mistaken for a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !is_valid_tag(tag) {
                    return Err(fmt_err("tag"));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(fmt_err("name"));
        }
        let (domain, path) = split_domain(name);
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                input: input.to_string(),
            });
        }
        if !is_valid_domain(&domain) {
            return Err(fmt_err("domain"));
        }
        if path.is_empty() || !path.split('/').all(is_valid_path_component) {
            return Err(fmt_err("path component"));
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong {
                input: input.to_string(),
            });
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// Registry host (with port when given), e.g. `docker.io`, `127.0.0.1:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if any (always set when there is no digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn fetch_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// `name:tag`, the CRI "repo tag", when the reference has a tag.
    pub fn repo_tag(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{}", self.name(), t))
    }

    /// `name@digest`, the CRI "repo digest" of this name for a manifest digest.
    pub fn repo_digest(&self, manifest_digest: &str) -> String {
        format!("{}@{}", self.name(), manifest_digest)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse_normalized(s)
    }
}

/// Splits `name` into domain and path the way distribution's `splitDockerDomain`
/// does: the first component is a domain only if it contains '.' or ':', is
/// `localhost`, or has upper-case letters (which a path may not have).
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == LEGACY_DOCKER_HUB_DOMAIN {
        DOCKER_HUB_DOMAIN.to_string()
    } else {
        domain
    };
    let path = if domain == DOCKER_HUB_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{path}")
    } else {
        path
    };
    (domain, path)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `host[:port]` where host is DNS labels or a bracketed IPv6 address.
fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, after)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match after {
                    "" => return true,
                    p => match p.strip_prefix(':') {
                        Some(port) => ("", Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.is_empty() {
        return domain.starts_with('[');
    }
    host.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
    })
}

/// `[\w][\w.-]{0,127}`
fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// `sha256:<64 lower hex>` or `sha512:<128 lower hex>` (the algorithms registries serve).
pub fn is_valid_digest(digest: &str) -> bool {
    let Some((alg, hex)) = digest.split_once(':') else {
        return false;
    };
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalisation_table_matches_docker_and_kubelet() {
        let cases: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("index.docker.io/foo/bar:v1", "docker.io/foo/bar:v1"),
            ("foo/bar", "docker.io/foo/bar:latest"),
            ("foo/bar/baz", "docker.io/foo/bar/baz:latest"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:v2", "localhost:5000/app:v2"),
            ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
            ("[::1]:5000/app", "[::1]:5000/app:latest"),
            ("quay.io/coreos/etcd:v3.5.0", "quay.io/coreos/etcd:v3.5.0"),
            ("Foo/bar", "Foo/bar:latest"),
            (
                "my-registry.example.com:443/ns/img_x",
                "my-registry.example.com:443/ns/img_x:latest",
            ),
            ("a/b__c/d-e--f.g", "docker.io/a/b__c/d-e--f.g:latest"),
        ];
        for (input, want) in cases {
            let r = Reference::parse_normalized(input).unwrap();
            assert_eq!(&r.to_string(), want, "input {input}");
        }
    }

    #[test]
    fn digests_pin_the_fetch_and_keep_the_tag() {
        let r = Reference::parse_normalized(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.fetch_reference(), D);
        assert_eq!(r.repo_tag(), None);

        let r = Reference::parse_normalized(&format!("127.0.0.1:5000/app:v1@{D}")).unwrap();
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.fetch_reference(), D);
        assert_eq!(r.repo_tag().unwrap(), "127.0.0.1:5000/app:v1");
        assert_eq!(r.repo_digest(D), format!("127.0.0.1:5000/app@{D}"));
        assert_eq!(r.domain(), "127.0.0.1:5000");
        assert_eq!(r.path(), "app");
    }

    #[test]
    fn invalid_references_are_refused() {
        let bad = [
            "",
            "Busybox",
            "docker.io/Library/busybox",
            "busybox:",
            "busybox:-bad",
            "busybox@sha256:1234",
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "a//b",
            "a/b/",
            "-a/b",
            "a_-b",
            "host:port/app",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "busybox:tag:again",
        ];
        for input in bad {
            assert!(
                Reference::parse_normalized(input).is_err(),
                "{input:?} should be refused"
            );
        }
        let long = format!("docker.io/{}", "a".repeat(250));
        assert!(matches!(
            Reference::parse_normalized(&long),
            Err(ReferenceError::NameTooLong { .. })
        ));
        assert!(matches!(
            Reference::parse_normalized("Docker.io/Busybox"),
            Err(ReferenceError::Uppercase { .. })
        ));
    }

    #[test]
    fn tag_charset_and_length() {
        assert!(is_valid_tag("v1.2_3-rc"));
        assert!(is_valid_tag(&"a".repeat(128)));
        assert!(!is_valid_tag(&"a".repeat(129)));
        assert!(!is_valid_tag(".x"));
        assert!(is_valid_digest(D));
        assert!(!is_valid_digest(&D.to_uppercase()));
    }
}
