//! Hostile test plugin: `on_msg` allocates until memory runs out. The
//! host's per-instance memory cap must stop it (the allocation fails and the
//! instance traps) without the node's memory growing.

use hookwire_guest::{Context, MsgEvent, MsgVerdict, Plugin};

/// The plugin.
pub struct MemoryBomb;

#[hookwire_guest::plugin]
impl Plugin for MemoryBomb {
    fn on_msg(_ctx: &Context, _ev: MsgEvent) -> MsgVerdict {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // 1 MiB at a time, every page written so the memory is really
            // committed, and kept so nothing is freed.
            let mut chunk = vec![0u8; 1 << 20];
            for i in (0..chunk.len()).step_by(4096) {
                chunk[i] = 1;
            }
            hoard.push(std::hint::black_box(chunk));
        }
    }
}
