//! Hostile test plugin: `on_msg` never returns. The host's epoch deadline
//! must interrupt it and fail the hook, leaving the node serving.

use hookwire_guest::{Context, MsgEvent, MsgVerdict, Plugin};

/// The plugin.
pub struct SpinLoop;

#[hookwire_guest::plugin]
impl Plugin for SpinLoop {
    fn on_msg(_ctx: &Context, _ev: MsgEvent) -> MsgVerdict {
        let mut n: u64 = 0;
        loop {
            // black_box: the optimizer must not see through the loop (an
            // empty side-effect-free loop could be compiled to anything).
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}
