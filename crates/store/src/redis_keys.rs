//! Every Redis key hookwire writes, in one scheme, built here only:
//!
//! - `hw:{T}:…`: everything of tenant `T`: the store's records (`room:R:meta`,
//!   `:log`, `:upd`, `:updlog`; `q:U:D` device queues; `dev:U`, `devices`;
//!   plugins, users, kv, as [`tkey`]'s callers name them), cluster presence
//!   (`presence:room:R`, `presence:rooms`, `presence:user:U`,
//!   `presence:users`, `presence:conns`) and login attempts (`authrl:W:K`).
//!   The braces are a Redis Cluster hash tag: one tenant's keys share a slot,
//!   so a script over several of them runs in one place.
//! - `hw:meta`, `hw:tenants`: the store's node-wide records.
//! - `hw:nodes`, `hw:node:N`: the cluster's nodes (last heartbeat) and what
//!   each wrote, so a dead node's entries can be swept.
//! - `hw:claim:notification:…`: which node handles a published notification.
//!
//! Every component that comes from a client or a tenant (tenant, room, uid,
//! device, plugin name) is escaped with [`enc`], so a `:` or a brace inside
//! one cannot make two keys meet or break the hash tag.

/// Appends `s` to `out` with `%`, `:`, braces and glob characters escaped.
pub fn enc_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '%' | ':' | '{' | '}' | '*' | '?' | '[' | ']' | '\\' => {
                out.push_str(&format!("%{:02X}", c as u32));
            }
            _ => out.push(c),
        }
    }
}

pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    enc_into(&mut out, s);
    out
}

/// Inverse of [`enc`] (only `%XX` of the escaped set ever appears).
pub fn dec(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `hw:{T}:` followed by the encoded components joined by `:`.
pub fn tkey(tenant: &str, parts: &[&str]) -> String {
    let mut k = String::from("hw:{");
    enc_into(&mut k, tenant);
    k.push('}');
    for p in parts {
        k.push(':');
        k.push_str(p);
    }
    k
}

pub struct RoomKeys {
    pub meta: String,
    pub log: String,
    pub upd: String,
    pub updlog: String,
}

pub fn room_keys(tenant: &str, room: &str) -> RoomKeys {
    let r = enc(room);
    RoomKeys {
        meta: tkey(tenant, &["room", &r, "meta"]),
        log: tkey(tenant, &["room", &r, "log"]),
        upd: tkey(tenant, &["room", &r, "upd"]),
        updlog: tkey(tenant, &["room", &r, "updlog"]),
    }
}

pub fn queue_key(tenant: &str, uid: &str, device: &str) -> String {
    tkey(tenant, &["q", &enc(uid), &enc(device)])
}

pub fn dev_key(tenant: &str, uid: &str) -> String {
    tkey(tenant, &["dev", &enc(uid)])
}

pub fn devices_key(tenant: &str) -> String {
    tkey(tenant, &["devices"])
}

pub fn plugin_field(name: &str, version: u64) -> String {
    format!("{}:{version}", enc(name))
}

pub fn wasm_key(tenant: &str, name: &str, version: u64) -> String {
    tkey(tenant, &["wasm", &enc(name), &version.to_string()])
}

pub const META_KEY: &str = "hw:meta";
pub const TENANTS_KEY: &str = "hw:tenants";

/// Members of room `room` visible cluster-wide (hash field → uid).
pub fn presence_room(tenant: &str, room: &str) -> String {
    tkey(tenant, &["presence", "room", &enc(room)])
}
/// Rooms of the tenant with members (set).
pub fn presence_rooms(tenant: &str) -> String {
    tkey(tenant, &["presence", "rooms"])
}
/// Authenticated sockets of `uid` (hash field → "").
pub fn presence_user(tenant: &str, uid: &str) -> String {
    tkey(tenant, &["presence", "user", &enc(uid)])
}
/// Online uids (set).
pub fn presence_users(tenant: &str) -> String {
    tkey(tenant, &["presence", "users"])
}
/// Connections per node (hash node → count).
pub fn presence_conns(tenant: &str) -> String {
    tkey(tenant, &["presence", "conns"])
}
/// The cluster's nodes (sorted set node → last heartbeat, ms).
pub const NODES_KEY: &str = "hw:nodes";
/// What node `node` wrote (set), so it can be swept.
pub fn node_index(node: &str) -> String {
    format!("hw:node:{}", enc(node))
}
/// Login attempts of `key` in window `window` (counter).
pub fn auth_attempts(tenant: &str, window: u64, key: &str) -> String {
    tkey(tenant, &["authrl", &window.to_string(), &enc(key)])
}
/// The claim of the `n`-th publication of a notification with this digest.
pub fn notification_claim(digest: &str, n: u64) -> String {
    format!("hw:claim:notification:{digest}:{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_scheme_with_the_tenant_as_hash_tag() {
        assert_eq!(tkey("t", &["users"]), "hw:{t}:users");
        assert_eq!(presence_room("t", "a:b"), "hw:{t}:presence:room:a%3Ab");
        assert_eq!(presence_user("t", "u{1}"), "hw:{t}:presence:user:u%7B1%7D");
        assert_eq!(
            auth_attempts("t", 7, "u:1.2.3.4"),
            "hw:{t}:authrl:7:u%3A1.2.3.4"
        );
        assert_eq!(node_index("n1"), "hw:node:n1");
        assert_eq!(dec(&enc("a:{b}%*")), "a:{b}%*");
    }
}
