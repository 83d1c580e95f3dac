//! `sync`: a page of a room's stored messages (inserts from an offset,
//! then the room's update values, continued by cursor), plain or gzip, and
//! the `remote_sync` announcement of a sync from the start.

use std::io::Write;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{Value, json};

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
struct SyncReply {
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
enum SyncData {
    Plain(Vec<Box<RawValue>>),
    /// base64 of the gzip of the JSON array (`encoding: 'gzip'`).
    Gzip(String),
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
    let requested = id_string(obj.get("roomId"));
    let Some(room) = sess.current_room(requested.as_deref()) else {
        return reply(socket, ack, "sync", &refuse(Refusal::SyncWithoutRoom));
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
            Err(e) => {
                let r = Refusal::SyncUnavailable(e.to_string());
                return reply(socket, ack, "sync", &refuse(r));
            }
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
    let mut page = match read(req.clone()).await {
        Ok(p) => p,
        Err(e) => {
            let r = Refusal::SyncUnavailable(e.to_string());
            return reply(socket, ack, "sync", &refuse(r));
        }
    };
    if remembered_epoch.is_some_and(|e| e != page.epoch) {
        // The room was cleared since: its update values start over.
        req.updates_after = None;
        page = match read(req.clone()).await {
            Ok(p) => p,
            Err(e) => {
                let r = Refusal::SyncUnavailable(e.to_string());
                return reply(socket, ack, "sync", &refuse(r));
            }
        };
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
        match tokio::task::spawn_blocking(move || SyncData::Gzip(gzip_array(&stored))).await {
            Ok(d) => d,
            Err(e) => {
                let r = Refusal::SyncFailed(e.to_string());
                return reply(socket, ack, "sync", &refuse(r));
            }
        }
    } else {
        SyncData::Plain(
            stored
                .into_iter()
                .filter_map(|m| RawValue::from_string(m).ok())
                .collect(),
        )
    };
    let out = SyncReply {
        status: 0,
        next,
        offset: next_offset,
        epoch,
        reset: (reset == 1).then_some(1),
        encoding: gzip.then_some("gzip"),
        cursor,
        data,
    };
    reply(socket, ack, "sync", &out);
    if offset == 0 && !room.dummy {
        let _ = socket
            .to(sync_room(&room.name))
            .emit("remote_sync", &json!({ "uid": &*uid }))
            .await;
    }
}
