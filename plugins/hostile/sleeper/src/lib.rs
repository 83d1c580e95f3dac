//! Hostile test plugin: `on_msg` sleeps for 3 s, waiting in the host (WASI
//! `poll` on a monotonic-clock timer) rather than running guest code. No
//! epoch tick fires while it waits, so only the host's wall deadline around
//! the whole call can end it, at the call's wall ceiling.

use hookwire_guest::{Context, MsgEvent, MsgVerdict, Plugin};

/// The plugin.
pub struct Sleeper;

#[hookwire_guest::plugin]
impl Plugin for Sleeper {
    fn on_msg(_ctx: &Context, _ev: MsgEvent) -> MsgVerdict {
        std::thread::sleep(std::time::Duration::from_secs(3));
        MsgVerdict::Pass
    }
}
