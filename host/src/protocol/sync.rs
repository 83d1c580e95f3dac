//! `sync`: a page of a room's stored messages (inserts from an offset,
//! then the room's update values, continued by cursor), plain or gzip, and
//! the `remote_sync` announcement of a sync from the start.

use std::io::Write;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::Services;
use super::answer::{refused, reply};
use super::refusal::Refusal;
use super::session::{Session, SyncCursor};
use super::sync_room;
use super::wire::{self, id_string};
use crate::cluster::adapter::{Ack, Socket};
use crate::store::PageRequest;

/// Sync pages compressed at once, process-wide: gzip is CPU work, so more
/// than the cores would only hold more pages at a time.
static GZIP_AT_ONCE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// The `sync` reply.
#[derive(serde::Serialize)]
pub struct SyncReply {
    status: u8,
    next: u8,
    offset: u64,
    epoch: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reset: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    /// Set while update values remain: send it back (or page on with the
    /// same `offset`) to continue after them.
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    data: SyncData,
}

/// base64 of the gzip of the JSON array of `stored` (each already JSON).
fn gzip_array(stored: &[String]) -> String {
    let mut text = Vec::with_capacity(2 + stored.iter().map(|m| m.len() + 1).sum::<usize>());
    text.push(b'[');
    for (i, m) in stored.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        text.extend_from_slice(m.as_bytes());
    }
    text.push(b']');
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = enc.write_all(&text);
    base64::engine::general_purpose::STANDARD.encode(enc.finish().unwrap_or_default())
}

#[derive(serde::Serialize)]
#[serde(untagged)]
pub enum SyncData {
    Plain(Vec<Box<RawValue>>),
    /// base64 of the gzip of the JSON array (`encoding: 'gzip'`).
    Gzip(String),
}

/// One `sync` answered: the reply, and whether the room hears
/// `remote_sync` (a sync from the start, by a member who is not a dummy).
pub struct SyncPage {
    pub reply: SyncReply,
    pub room: Box<str>,
    pub announce: bool,
}

/// A page of the session's room for the `sync` request `obj`, without a
/// socket: reads the store, remembers where update values stopped.
pub async fn page(
    state: &Services,
    sess: &Session,
    obj: &Map<String, Value>,
) -> Result<SyncPage, Refusal> {
    let requested = id_string(obj.get("roomId"));
    let Some(room) = sess.current_room(requested.as_deref()) else {
        return Err(Refusal::SyncWithoutRoom);
    };
    let mut offset = obj.get("offset").and_then(Value::as_u64).unwrap_or(0);
    let gzip = obj.get("encoding").and_then(Value::as_str) == Some("gzip");
    let cfg = sess.tenant.config();
    let tenant = &sess.tenant_name;

    let mut reset = 0;
    if let Some(client_epoch) = obj.get("epoch").and_then(Value::as_u64) {
        match state.store.room_epoch(tenant, &room.name).await {
            Ok(e) if e != client_epoch => {
                offset = 0;
                reset = 1;
            }
            Ok(_) => {}
            Err(e) => return Err(Refusal::SyncUnavailable(e.to_string())),
        }
    }
    // Where the update values continue: the client's `cursor`, else where
    // this socket's previous page from the same offset stopped.
    let remembered = sess.state.lock().sync_cursor.take();
    let (updates_after, remembered_epoch) = match obj.get("cursor").and_then(Value::as_str) {
        Some(c) if reset == 0 => (Some(c.to_string()), None),
        _ => match remembered {
            Some(c) if reset == 0 && *c.room == *room.name && c.offset == offset => {
                (Some(c.after), Some(c.epoch))
            }
            _ => (None, None),
        },
    };
    let mut req = PageRequest::count(offset, cfg.sync_page_size.max(1))
        .bytes(cfg.sync_page_bytes)
        .updates_after(updates_after);
    let read = |req: PageRequest| {
        state
            .metrics
            .timed("room_read", state.store.room_read(tenant, &room.name, req))
    };
    let unavailable = |e: crate::error::StoreError| Refusal::SyncUnavailable(e.to_string());
    let mut page = read(req.clone()).await.map_err(unavailable)?;
    if remembered_epoch.is_some_and(|e| e != page.epoch) {
        // The room was cleared since: its update values start over.
        req.updates_after = None;
        page = read(req.clone()).await.map_err(unavailable)?;
    }
    let cursor = page.next_cursor(req.updates_after.as_deref());
    if let Some(after) = &cursor {
        sess.state.lock().sync_cursor = Some(Box::new(SyncCursor {
            room: room.name.clone(),
            offset: page.next_offset,
            epoch: page.epoch,
            after: after.clone(),
        }));
    }
    let (next_offset, epoch) = (page.next_offset, page.epoch);
    let next = u8::from(page.has_next());
    // Stored messages go out as the JSON text they were stored as: no
    // parse and re-serialisation per page.
    let stored: Vec<String> = page
        .inserts
        .into_iter()
        .map(|(_, e)| e.msg)
        .chain(page.updates.into_iter().map(|e| e.msg))
        .collect();
    let data = if gzip {
        // Up to a page of bytes to compress: off the async workers, and a few
        // at a time, so many readers asking at once do not hold a page each
        // on blocking threads of their own.
        let _permit = GZIP_AT_ONCE.acquire().await;
        tokio::task::spawn_blocking(move || SyncData::Gzip(gzip_array(&stored)))
            .await
            .map_err(|e| Refusal::SyncFailed(e.to_string()))?
    } else {
        SyncData::Plain(
            stored
                .into_iter()
                .filter_map(|m| RawValue::from_string(m).ok())
                .collect(),
        )
    };
    let reply = SyncReply {
        status: 0,
        next,
        offset: next_offset,
        epoch,
        reset: (reset == 1).then_some(1),
        encoding: gzip.then_some("gzip"),
        cursor,
        data,
    };
    Ok(SyncPage {
        announce: offset == 0 && !room.dummy,
        room: room.name,
        reply,
    })
}

pub async fn sync(
    state: &Services,
    sess: &Arc<Session>,
    socket: &Socket,
    data: Value,
    ack: Option<Ack>,
) {
    let refuse = |r| refused(state, sess, r);
    let Some(uid) = sess.uid() else {
        return reply(socket, ack, "sync", &refuse(Refusal::NotAuthenticated));
    };
    let Some(obj) = wire::first_object(&data) else {
        return reply(socket, ack, "sync", &refuse(Refusal::SyncNotObject));
    };
    let page = match page(state, sess, obj).await {
        Ok(p) => p,
        Err(r) => return reply(socket, ack, "sync", &refuse(r)),
    };
    reply(socket, ack, "sync", &page.reply);
    if page.announce {
        let _ = socket
            .to(sync_room(&page.room))
            .emit("remote_sync", &json!({ "uid": &*uid }))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::{builtin_session, services};
    use crate::store::{RoomEntry, RoomWrite};
    use crate::tenant::TenantConfig;
    use std::io::Read;

    fn entry(text: &str) -> RoomEntry {
        RoomEntry {
            uid: "u1".into(),
            ts: 1,
            msg: text.into(),
        }
    }

    async fn insert(state: &Services, n: usize) {
        for i in 0..n {
            let w = RoomWrite::Insert(entry(&format!("{{\"i\":{i}}}")));
            state.store.room_write("t1", "r1", w, 1000).await.unwrap();
        }
    }

    fn texts(reply: &SyncReply) -> Vec<String> {
        match &reply.data {
            SyncData::Plain(v) => v.iter().map(|r| r.get().to_string()).collect(),
            SyncData::Gzip(b64) => {
                let gz = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                let mut text = String::new();
                flate2::read::GzDecoder::new(&gz[..])
                    .read_to_string(&mut text)
                    .unwrap();
                let arr: Vec<Value> = serde_json::from_str(&text).unwrap();
                arr.iter().map(Value::to_string).collect()
            }
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn small_pages() -> TenantConfig {
        TenantConfig {
            sync_page_size: 2,
            ..TenantConfig::default()
        }
    }

    #[tokio::test]
    async fn pages_follow_the_offset_and_say_whether_more_follow() {
        let tmp = services();
        let state = &tmp.services;
        insert(state, 3).await;
        let sess = builtin_session(small_pages());
        let first = page(state, &sess, &obj(json!({}))).await.unwrap();
        assert_eq!(texts(&first.reply), ["{\"i\":0}", "{\"i\":1}"]);
        assert_eq!((first.reply.next, first.reply.offset), (1, 2));
        assert!(first.announce, "a sync from the start is announced");
        let second = page(state, &sess, &obj(json!({"offset": 2})))
            .await
            .unwrap();
        assert_eq!(texts(&second.reply), ["{\"i\":2}"]);
        assert_eq!(second.reply.next, 0);
        assert!(!second.announce);
    }

    #[tokio::test]
    async fn a_stale_epoch_starts_over_with_reset() {
        let tmp = services();
        let state = &tmp.services;
        insert(state, 1).await;
        state.store.room_clear("t1", "r1").await.unwrap();
        insert(state, 1).await;
        let epoch = state.store.room_epoch("t1", "r1").await.unwrap();
        let sess = builtin_session(small_pages());
        let stale = json!({"offset": 5, "epoch": epoch + 7});
        let p = page(state, &sess, &obj(stale)).await.unwrap();
        assert_eq!(p.reply.reset, Some(1));
        assert_eq!(p.reply.epoch, epoch);
        assert_eq!(texts(&p.reply), ["{\"i\":0}"], "from offset 0 again");
        let current = json!({"offset": 1, "epoch": epoch});
        let p = page(state, &sess, &obj(current)).await.unwrap();
        assert_eq!(p.reply.reset, None);
        assert!(texts(&p.reply).is_empty());
    }

    #[tokio::test]
    async fn update_values_continue_where_the_last_page_stopped() {
        let tmp = services();
        let state = &tmp.services;
        for id in ["a", "b", "c"] {
            let w = RoomWrite::Update {
                msg_id: id.into(),
                entry: entry(&format!("{{\"1\":\"{id}\"}}")),
            };
            state.store.room_write("t1", "r1", w, 1000).await.unwrap();
        }
        let sess = builtin_session(small_pages());
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let p = page(state, &sess, &obj(json!({}))).await.unwrap();
            seen.extend(texts(&p.reply));
            pages += 1;
            if p.reply.next == 0 {
                assert!(p.reply.cursor.is_none());
                break;
            }
            assert!(p.reply.cursor.is_some(), "more update values: a cursor");
            assert!(pages < 5, "paging does not end");
        }
        seen.sort();
        assert_eq!(seen, ["{\"1\":\"a\"}", "{\"1\":\"b\"}", "{\"1\":\"c\"}"]);
        assert_eq!(pages, 2, "the socket's cursor carried the second page");
    }

    #[tokio::test]
    async fn gzip_pages_hold_the_same_messages() {
        let tmp = services();
        let state = &tmp.services;
        insert(state, 2).await;
        let sess = builtin_session(TenantConfig::default());
        let p = page(state, &sess, &obj(json!({"encoding": "gzip"})))
            .await
            .unwrap();
        assert_eq!(p.reply.encoding, Some("gzip"));
        assert_eq!(texts(&p.reply), ["{\"i\":0}", "{\"i\":1}"]);
    }

    #[tokio::test]
    async fn a_sync_needs_a_joined_room_and_a_dummy_is_not_announced() {
        let tmp = services();
        let state = &tmp.services;
        let sess = builtin_session(TenantConfig::default());
        let r = page(state, &sess, &obj(json!({"roomId": "other"}))).await;
        assert!(matches!(r, Err(Refusal::SyncWithoutRoom)));
        sess.state.lock().rooms[0].dummy = true;
        let p = page(state, &sess, &obj(json!({}))).await.unwrap();
        assert!(!p.announce);
    }
}
