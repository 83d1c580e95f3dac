//! `word-filter`: masks or drops messages containing listed words.
//!
//! Config: `{"words": ["darn", "heck"], "mode": "mask"}` (`mode` is `mask`,
//! the default, or `drop`). Words match case-insensitively anywhere inside
//! every string value of the message, at any depth (not in keys, and not in
//! the message id fields `msgId` / `"1"`, which the server needs intact).
//! `mask` replaces each match with as many `*` as it has characters and
//! rewrites the message only when something changed; `drop` refuses the
//! message with a reason.

use std::collections::HashMap;

use hookwire_guest::serde_json::Value;
use hookwire_guest::{Context, MsgEvent, MsgVerdict, Plugin, log};
use serde::Deserialize;

/// What to do with a message that contains a listed word.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Replace each match with `*`s.
    #[default]
    Mask,
    /// Refuse the whole message.
    Drop,
}

/// The plugin config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The words to filter.
    pub words: Vec<String>,
    /// Mask or drop.
    pub mode: Mode,
}

/// The reason a dropped message's sender sees.
pub const DROP_REASON: &str = "message contains a blocked word";

/// Case folding per character, keeping one char for one char so that match
/// positions in the folded text are positions in the original.
fn fold(c: char) -> char {
    let mut l = c.to_lowercase();
    match (l.next(), l.next()) {
        (Some(one), None) => one,
        _ => c,
    }
}

/// The listed words, folded; empty words would match everywhere and are
/// ignored.
pub fn prepare(words: &[String]) -> Vec<Vec<char>> {
    words
        .iter()
        .map(|w| w.chars().map(fold).collect::<Vec<_>>())
        .filter(|w| !w.is_empty())
        .collect()
}

/// `text` with every match of `words` masked, or `None` when nothing
/// matched.
pub fn mask_str(text: &str, words: &[Vec<char>]) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let folded: Vec<char> = chars.iter().copied().map(fold).collect();
    let mut hit = vec![false; chars.len()];
    let mut any = false;
    // One pass over the text; at each position only the words starting with
    // that character are compared (messages can be 500 KB and the hook has
    // a few ms).
    let mut by_first: HashMap<char, Vec<&[char]>> = HashMap::new();
    for w in words {
        by_first.entry(w[0]).or_default().push(w);
    }
    for start in 0..folded.len() {
        for w in by_first.get(&folded[start]).into_iter().flatten() {
            if folded[start..].starts_with(w) {
                hit[start..start + w.len()]
                    .iter_mut()
                    .for_each(|h| *h = true);
                any = true;
            }
        }
    }
    any.then(|| {
        chars
            .iter()
            .zip(&hit)
            .map(|(&c, &h)| if h { '*' } else { c })
            .collect()
    })
}

/// Masks every string value inside `v` in place; true when anything changed.
pub fn mask_value(v: &mut Value, words: &[Vec<char>]) -> bool {
    match v {
        Value::String(s) => match mask_str(s, words) {
            Some(masked) => {
                *s = masked;
                true
            }
            None => false,
        },
        // `|` not `||`: every element must be visited.
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |acc, i| mask_value(i, words) | acc),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |acc, i| mask_value(i, words) | acc),
        _ => false,
    }
}

/// Whether any string value inside `v` contains a listed word.
pub fn contains(v: &Value, words: &[Vec<char>]) -> bool {
    match v {
        Value::String(s) => mask_str(s, words).is_some(),
        Value::Array(items) => items.iter().any(|i| contains(i, words)),
        Value::Object(map) => map.values().any(|i| contains(i, words)),
        _ => false,
    }
}

/// Message id fields: masking them would break `update` storage.
fn is_id_field(key: &str) -> bool {
    key == "msgId" || key == "1"
}

/// The verdict for `msg` under `cfg`.
pub fn filter(cfg: &Config, msg: &Value) -> MsgVerdict {
    let words = prepare(&cfg.words);
    if words.is_empty() {
        return MsgVerdict::Pass;
    }
    let mut msg = msg.clone();
    let found = match &mut msg {
        Value::Object(map) => {
            let fields = map.iter_mut().filter(|(k, _)| !is_id_field(k));
            match cfg.mode {
                Mode::Drop => fields.fold(false, |acc, (_, v)| acc || contains(v, &words)),
                Mode::Mask => fields.fold(false, |acc, (_, v)| mask_value(v, &words) | acc),
            }
        }
        other => match cfg.mode {
            Mode::Drop => contains(other, &words),
            Mode::Mask => mask_value(other, &words),
        },
    };
    match (found, cfg.mode) {
        (false, _) => MsgVerdict::Pass,
        (true, Mode::Drop) => MsgVerdict::Drop(DROP_REASON.into()),
        (true, Mode::Mask) => MsgVerdict::Rewrite(msg),
    }
}

/// The plugin.
pub struct WordFilter;

#[hookwire_guest::plugin]
impl Plugin for WordFilter {
    fn on_msg(_ctx: &Context, ev: MsgEvent) -> MsgVerdict {
        match hookwire_guest::config::<Config>() {
            Ok(cfg) => filter(&cfg, &ev.msg),
            Err(e) => {
                log::error(format!("word-filter: {e}"));
                // Fail closed: an unfiltered message cannot be taken back.
                MsgVerdict::Drop("word-filter is misconfigured".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use hookwire_guest::serde_json::json;
    use hookwire_guest::{Hooks, describe, testing};

    use super::*;

    fn cfg(words: &[&str], mode: Mode) -> Config {
        Config {
            words: words.iter().map(|w| w.to_string()).collect(),
            mode,
        }
    }

    #[test]
    fn masks_case_insensitively_with_same_length() {
        let w = prepare(&["darn".into(), "HeCk".into()]);
        assert_eq!(
            mask_str("Darn it, what the heck", &w).as_deref(),
            Some("**** it, what the ****")
        );
        assert_eq!(mask_str("DARNED", &w).as_deref(), Some("****ED"));
        assert_eq!(mask_str("clean", &w), None);
        assert_eq!(mask_str("", &w), None);
    }

    #[test]
    fn overlapping_and_unicode() {
        let w = prepare(&["aa".into(), "Straße".into()]);
        assert_eq!(mask_str("aaa", &w).as_deref(), Some("***"));
        assert_eq!(
            mask_str("STRASSE straße STRAßE", &w).as_deref(),
            Some("STRASSE ****** ******")
        );
        let w = prepare(&["ñandú".into()]);
        assert_eq!(mask_str("Ñandú!", &w).as_deref(), Some("*****!"));
    }

    #[test]
    fn masks_recursively_and_keeps_ids() {
        let msg = json!({
            "data": {"text": "darn", "list": ["ok", "DARN!", {"deep": "xdarnx"}], "n": 5},
            "msgId": "darn-1",
            "storage": 0
        });
        let out = filter(&cfg(&["darn"], Mode::Mask), &msg);
        assert_eq!(
            out,
            MsgVerdict::Rewrite(json!({
                "data": {"text": "****", "list": ["ok", "****!", {"deep": "x****x"}], "n": 5},
                "msgId": "darn-1",
                "storage": 0
            }))
        );
        // Short form: "1" is the id and stays.
        let short = json!({"1": "darn", "s": 0, "t": "darn"});
        assert_eq!(
            filter(&cfg(&["darn"], Mode::Mask), &short),
            MsgVerdict::Rewrite(json!({"1": "darn", "s": 0, "t": "****"}))
        );
    }

    #[test]
    fn clean_message_passes() {
        let msg = json!({"data": "hello", "storage": 0});
        assert_eq!(filter(&cfg(&["darn"], Mode::Mask), &msg), MsgVerdict::Pass);
        assert_eq!(filter(&cfg(&["darn"], Mode::Drop), &msg), MsgVerdict::Pass);
        assert_eq!(
            filter(&cfg(&[], Mode::Drop), &json!({"data": "darn"})),
            MsgVerdict::Pass
        );
        assert_eq!(
            filter(&cfg(&[""], Mode::Mask), &json!({"data": "darn"})),
            MsgVerdict::Pass
        );
    }

    #[test]
    fn drop_mode() {
        let msg = json!({"data": {"x": ["heck"]}});
        assert_eq!(
            filter(&cfg(&["HECK"], Mode::Drop), &msg),
            MsgVerdict::Drop(DROP_REASON.into())
        );
        assert_eq!(
            filter(
                &cfg(&["heck"], Mode::Drop),
                &json!({"msgId": "heck", "data": 1})
            ),
            MsgVerdict::Pass
        );
    }

    #[test]
    fn hook_uses_config() {
        let ev = || MsgEvent {
            room: "r".into(),
            msg: json!({"data": "what the heck"}),
        };
        assert_eq!(
            WordFilter::on_msg(&Context::default(), ev()),
            MsgVerdict::Pass
        );
        testing::set_config(json!({"words": ["heck"], "mode": "mask"}));
        assert_eq!(
            WordFilter::on_msg(&Context::default(), ev()),
            MsgVerdict::Rewrite(json!({"data": "what the ****"}))
        );
        testing::set_config(json!({"words": ["heck"], "mode": "drop"}));
        assert_eq!(
            WordFilter::on_msg(&Context::default(), ev()),
            MsgVerdict::Drop(DROP_REASON.into())
        );
        testing::set_config(json!({"words": ["heck"], "mode": "shout"}));
        assert_eq!(
            WordFilter::on_msg(&Context::default(), ev()),
            MsgVerdict::Drop("word-filter is misconfigured".into())
        );
        assert_eq!(describe::<WordFilter>().hooks, Hooks::ON_MSG);
    }
}
