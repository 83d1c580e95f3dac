//! Hostile test plugin: `on_msg` answers with a Rewrite whose JSON text is
//! over 8 MiB (`{"data": "xxx…"}` with a 9 MiB string). The host must refuse
//! the output (far over any message or output limit) instead of relaying or
//! storing it.
//!
//! The rewrite is an object on purpose: the server refuses a non-object
//! rewrite before looking at its size, and this plugin exists to exercise
//! the size limit.

use hookwire_guest::serde_json::json;
use hookwire_guest::{Context, MsgEvent, MsgVerdict, Plugin};

/// The length of the string in the rewritten message: 9 MiB.
pub const SIZE: usize = 9 << 20;

/// The plugin.
pub struct HugeOutput;

#[hookwire_guest::plugin]
impl Plugin for HugeOutput {
    fn on_msg(_ctx: &Context, _ev: MsgEvent) -> MsgVerdict {
        MsgVerdict::Rewrite(json!({ "data": "x".repeat(SIZE) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_an_object_over_8_mib() {
        let MsgVerdict::Rewrite(v) = HugeOutput::on_msg(&Context::default(), MsgEvent::default())
        else {
            panic!("not a rewrite");
        };
        assert!(v.is_object());
        assert!(v.to_string().len() > 8 << 20);
    }
}
