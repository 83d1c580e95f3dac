//! Hostile test plugin: `on_msg` answers with a Rewrite whose JSON is a
//! string of more than 8 MiB. The host must refuse the output (it is far
//! over the message size limit) instead of relaying or storing it.

use hookwire_guest::serde_json::Value;
use hookwire_guest::{Context, MsgEvent, MsgVerdict, Plugin};

/// The size of the string in the rewritten message: 9 MiB.
pub const SIZE: usize = 9 << 20;

/// The plugin.
pub struct HugeOutput;

#[hookwire_guest::plugin]
impl Plugin for HugeOutput {
    fn on_msg(_ctx: &Context, _ev: MsgEvent) -> MsgVerdict {
        MsgVerdict::Rewrite(Value::String("x".repeat(SIZE)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_over_8_mib() {
        let MsgVerdict::Rewrite(v) = HugeOutput::on_msg(&Context::default(), MsgEvent::default())
        else {
            panic!("not a rewrite");
        };
        assert!(v.to_string().len() > 8 << 20);
    }
}
