use hookwire_guest::serde_json::Value;
use hookwire_guest::{Context, MsgEvent, MsgVerdict, Plugin};

pub struct NoShouting;

#[hookwire_guest::plugin]
impl Plugin for NoShouting {
    fn on_msg(_ctx: &Context, mut ev: MsgEvent) -> MsgVerdict {
        match ev.msg.get("data") {
            Some(Value::String(s)) if s.len() > 3 && *s == s.to_uppercase() => {
                ev.msg["data"] = Value::String(s.to_lowercase());
                MsgVerdict::Rewrite(ev.msg)
            }
            _ => MsgVerdict::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookwire_guest::serde_json::json;

    #[test]
    fn calms_shouting_down() {
        let ev = |data| MsgEvent {
            room: "r1".into(),
            msg: json!({ "data": data, "storage": 0 }),
        };
        let v = NoShouting::on_msg(&Context::default(), ev("HELLO EVERYONE"));
        assert_eq!(
            v,
            MsgVerdict::Rewrite(json!({"data": "hello everyone", "storage": 0}))
        );
        assert_eq!(
            NoShouting::on_msg(&Context::default(), ev("Hello")),
            MsgVerdict::Pass
        );
        assert_eq!(
            NoShouting::on_msg(&Context::default(), ev("OK")),
            MsgVerdict::Pass
        );
    }
}
