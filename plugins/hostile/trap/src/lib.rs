//! Hostile test plugin: `on_msg` panics, which aborts the instance with a
//! wasm trap (`unreachable`). The host must fail the hook and keep serving.

use hookwire_guest::{Context, MsgEvent, MsgVerdict, Plugin};

/// The plugin.
pub struct Trap;

#[hookwire_guest::plugin]
impl Plugin for Trap {
    fn on_msg(_ctx: &Context, ev: MsgEvent) -> MsgVerdict {
        // Depends on the input so the compiler cannot prove where it traps.
        if std::hint::black_box(ev.room.len()) < usize::MAX {
            panic!("trap plugin: deliberate panic in on_msg");
        }
        MsgVerdict::Pass
    }
}
