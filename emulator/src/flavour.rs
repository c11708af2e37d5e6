//! Which server the emulator answers as: OpenBao 2.7.2, checked request by request against the
//! real `bao server -dev` (`tests/differential.rs`), or Vault >= 1.17 as its docs and source
//! describe it, which no test here can check. Every answer that differs between the two is
//! decided here, so the endpoints stay one code path.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::tokens::{random_base62, random_bytes_vec, BASE62};

/// The server whose answers the emulator gives (see the crate docs for the list).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavour {
    /// OpenBao 2.7.2, verified against the real server: bare `permission denied` for a bad
    /// token, `s.`/`b.` tokens, 6-character namespace ids, 404 `namespace not found`, no
    /// `mount_type`.
    #[default]
    OpenBao,
    /// Vault >= 1.17 (unverified: no Vault binary can run here): the `go-multierror` text
    /// `2 errors occurred: … invalid token` for a bad token, `hvs.`/`hvb.` tokens, 5-character
    /// namespace ids, an unknown namespace treated as an empty one (403), `mount_type`.
    Vault,
}

/// OpenBao's batch tokens are a protobuf, base64url-encoded after a version prefix; their
/// length varies with what they carry (about 430 characters for a kubernetes login).
const BATCH_BODY_LEN: usize = 428;

impl Flavour {
    /// A new service token and its accessor, with `.<namespace id>` appended outside the root.
    pub(crate) fn service_token(self, nsid: Option<&str>) -> (String, String) {
        let prefix = match self {
            Flavour::OpenBao => "s.",
            Flavour::Vault => "hvs.",
        };
        let suffix = nsid.map(|id| format!(".{id}")).unwrap_or_default();
        (
            format!("{prefix}{}{suffix}", random_base62(24)),
            format!("{}{suffix}", random_base62(24)),
        )
    }

    /// A new batch token.
    pub(crate) fn batch_token(self) -> String {
        match self {
            Flavour::OpenBao => {
                let body = URL_SAFE_NO_PAD.encode(random_bytes_vec(BATCH_BODY_LEN * 3 / 4));
                format!("b.AAAAAQ{}", &body[..BATCH_BODY_LEN.min(body.len())])
            }
            Flavour::Vault => format!("hvb.{}", random_base62(138)),
        }
    }

    /// The id a namespace is known by in token, accessor, entity and lease ids.
    pub(crate) fn namespace_id(self, ns: &str) -> String {
        let len = match self {
            Flavour::OpenBao => 6,
            Flavour::Vault => 5,
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, ns.as_bytes());
        digest
            .as_ref()
            .iter()
            .take(len)
            .map(|b| BASE62[usize::from(b % 62)] as char)
            .collect()
    }

    /// An entity id for a login in namespace `ns`: OpenBao appends the namespace's id.
    pub(crate) fn entity_id(self, uuid: String, ns: &str) -> String {
        match self {
            Flavour::OpenBao if !ns.is_empty() => format!("{uuid}.{}", self.namespace_id(ns)),
            _ => uuid,
        }
    }

    /// Whether an unknown `X-Vault-Namespace` is OpenBao's 404 `namespace not found`; else the
    /// emulator treats it as an empty namespace (Vault).
    pub(crate) fn refuses_unknown_namespaces(self) -> bool {
        self == Flavour::OpenBao
    }

    /// Whether answers carry `mount_type` (Vault does; OpenBao 2.7 does not).
    pub(crate) fn sends_mount_type(self) -> bool {
        self == Flavour::Vault
    }

    /// The 400 for renewing a lease that is gone (unknown, revoked or expired).
    pub(crate) fn lease_gone(self) -> &'static str {
        match self {
            Flavour::OpenBao => "lease not found",
            Flavour::Vault => "lease not found or lease is not renewable",
        }
    }

    /// Whether the token endpoints answer for a live token whatever the request's namespace
    /// (OpenBao looks the token up in its own namespace); Vault denies a token of another
    /// namespace.
    pub(crate) fn token_endpoints_follow_the_token(self) -> bool {
        self == Flavour::OpenBao
    }

    /// Whether batch tokens keep whole seconds (OpenBao encodes their creation time in
    /// seconds, so one expires up to a second before its TTL has fully passed).
    pub(crate) fn batch_whole_seconds(self) -> bool {
        self == Flavour::OpenBao
    }

    /// The warning of KV v2's 404 for a path without `data/` or `metadata/`.
    pub(crate) fn kv2_invalid_path(self) -> &'static str {
        match self {
            Flavour::OpenBao => "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the OpenBao CLI, use 'bao kv get' for this operation.",
            Flavour::Vault => "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation.",
        }
    }

    /// A response-wrapped login's `request_id` (OpenBao leaves it empty).
    pub(crate) fn wrapped_request_id(self) -> String {
        match self {
            Flavour::OpenBao => String::new(),
            Flavour::Vault => crate::tokens::random_uuid(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_each_servers_shapes() {
        let (t, a) = Flavour::OpenBao.service_token(Some("X6A9sZ"));
        assert!(
            t.starts_with("s.") && t.ends_with(".X6A9sZ") && t.len() == 2 + 24 + 7,
            "{t}"
        );
        assert_eq!(a.len(), 24 + 7);
        let (t, _) = Flavour::Vault.service_token(None);
        assert!(t.starts_with("hvs.") && t.len() == 28, "{t}");
        let b = Flavour::OpenBao.batch_token();
        assert!(b.starts_with("b.AAAAAQ") && b.len() == 436, "{}", b.len());
        assert!(b[2..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!(Flavour::Vault.batch_token().starts_with("hvb."));
        assert_eq!(Flavour::OpenBao.namespace_id("team-a").len(), 6);
        assert_eq!(Flavour::Vault.namespace_id("team-a").len(), 5);
        assert_eq!(
            Flavour::OpenBao.entity_id("u".into(), "admin"),
            format!("u.{}", Flavour::OpenBao.namespace_id("admin"))
        );
        assert_eq!(Flavour::OpenBao.entity_id("u".into(), ""), "u");
        assert_eq!(Flavour::Vault.entity_id("u".into(), "admin"), "u");
    }
}
