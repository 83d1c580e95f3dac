//! `word-filter`: masks or drops messages containing listed words.
//!
//! Config: `{"words": ["darn", "heck"], "mode": "mask"}` (`mode` is `mask`,
//! the default, or `drop`). Words match case-insensitively anywhere inside
//! every string value of the message, at any depth (not in keys, and not in
//! the message id fields `msgId` / `"1"`, which the server needs intact).
//! `mask` replaces each match with as many `*` as it has characters and
//! rewrites the message only when something changed; `drop` refuses the
//! message with a reason.

use aho_corasick::AhoCorasick;
use hookwire_guest::serde_json::Value;
use std::rc::Rc;

use hookwire_guest::{Context, MsgEvent, MsgVerdict, Plugin, RawMsgEvent, log};
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

/// Case folding per character, keeping one char for one char (a char whose
/// lower case is several chars stays as it is), so the folded text lines up
/// char by char with the original.
fn fold(c: char) -> char {
    let mut l = c.to_lowercase();
    match (l.next(), l.next()) {
        (Some(one), None) => one,
        _ => c,
    }
}

/// The listed words, compiled into one Aho-Corasick automaton over their
/// folded forms: a message is scanned once whatever the number of words
/// (messages can be 500 KB and the hook has a few milliseconds).
pub struct Matcher {
    /// `None` when the list has no non-empty word.
    ac: Option<AhoCorasick>,
}

impl Matcher {
    /// Compiles `words`; empty words would match everywhere and are ignored.
    pub fn new(words: &[String]) -> Result<Self, String> {
        let folded: Vec<String> = words
            .iter()
            .map(|w| w.chars().map(fold).collect::<String>())
            .filter(|w| !w.is_empty())
            .collect();
        if folded.is_empty() {
            return Ok(Matcher { ac: None });
        }
        // Standard match kind: the only one that reports overlapping matches,
        // so "aa" masks all of "aaa".
        let ac = AhoCorasick::new(&folded).map_err(|e| e.to_string())?;
        Ok(Matcher { ac: Some(ac) })
    }

    /// Whether the list is empty (every message passes).
    pub fn is_empty(&self) -> bool {
        self.ac.is_none()
    }

    /// `text` with every match masked, or `None` when nothing matched.
    pub fn mask(&self, text: &str) -> Option<String> {
        let ac = self.ac.as_ref()?;
        let folded: String = text.chars().map(fold).collect();
        let mut hits: Vec<(usize, usize)> = ac
            .find_overlapping_iter(&folded)
            .map(|m| (m.start(), m.end()))
            .collect();
        if hits.is_empty() {
            return None;
        }
        hits.sort_unstable();
        // `folded` has one char per char of `text` (see `fold`), so walk both
        // in step and mask the chars whose folded offset a match covers.
        let mut out = String::with_capacity(text.len());
        let (mut next, mut masked_until) = (0, 0);
        for ((at, _), c) in folded.char_indices().zip(text.chars()) {
            while next < hits.len() && hits[next].0 <= at {
                masked_until = masked_until.max(hits[next].1);
                next += 1;
            }
            out.push(if at < masked_until { '*' } else { c });
        }
        Some(out)
    }

    /// Whether `text` contains a listed word.
    pub fn matches(&self, text: &str) -> bool {
        let Some(ac) = &self.ac else { return false };
        ac.is_match(&text.chars().map(fold).collect::<String>())
    }
}

/// Masks every string value inside `v` in place; true when anything changed.
pub fn mask_value(v: &mut Value, m: &Matcher) -> bool {
    match v {
        Value::String(s) => match m.mask(s) {
            Some(masked) => {
                *s = masked;
                true
            }
            None => false,
        },
        // `|` not `||`: every element must be visited.
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |acc, i| mask_value(i, m) | acc),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |acc, i| mask_value(i, m) | acc),
        _ => false,
    }
}

/// Whether any string value inside `v` contains a listed word.
pub fn contains(v: &Value, m: &Matcher) -> bool {
    match v {
        Value::String(s) => m.matches(s),
        Value::Array(items) => items.iter().any(|i| contains(i, m)),
        Value::Object(map) => map.values().any(|i| contains(i, m)),
        _ => false,
    }
}

/// Message id fields: masking them would break `update` storage.
fn is_id_field(key: &str) -> bool {
    key == "msgId" || key == "1"
}

/// The verdict for `msg` under `cfg`.
pub fn filter(cfg: &Config, msg: &Value) -> MsgVerdict {
    match Matcher::new(&cfg.words) {
        Ok(words) => filter_with(cfg.mode, &words, msg.clone()),
        Err(e) => {
            log::error(format!("word-filter: cannot compile the word list: {e}"));
            MsgVerdict::Drop("word-filter is misconfigured".into())
        }
    }
}

fn filter_with(mode: Mode, words: &Matcher, mut msg: Value) -> MsgVerdict {
    if words.is_empty() {
        return MsgVerdict::Pass;
    }
    let found = match &mut msg {
        Value::Object(map) => {
            let fields = map.iter_mut().filter(|(k, _)| !is_id_field(k));
            match mode {
                Mode::Drop => fields.fold(false, |acc, (_, v)| acc || contains(v, words)),
                Mode::Mask => fields.fold(false, |acc, (_, v)| mask_value(v, words) | acc),
            }
        }
        other => match mode {
            Mode::Drop => contains(other, words),
            Mode::Mask => mask_value(other, words),
        },
    };
    match (found, mode) {
        (false, _) => MsgVerdict::Pass,
        (true, Mode::Drop) => MsgVerdict::Drop(DROP_REASON.into()),
        (true, Mode::Mask) => MsgVerdict::Rewrite(msg),
    }
}

/// The config, compiled: built once per instance (a config change is a new
/// plugin version, so new instances), not per message.
struct Compiled {
    mode: Mode,
    words: Matcher,
}

fn compiled() -> Rc<Result<Compiled, String>> {
    hookwire_guest::config_state(|_| {
        let cfg: Config = hookwire_guest::config().map_err(|e| e.to_string())?;
        let words =
            Matcher::new(&cfg.words).map_err(|e| format!("cannot compile the word list: {e}"))?;
        Ok(Compiled {
            mode: cfg.mode,
            words,
        })
    })
}

/// Fail closed: an unfiltered message cannot be taken back.
fn misconfigured(why: &str) -> MsgVerdict {
    log::error(format!("word-filter: {why}"));
    MsgVerdict::Drop("word-filter is misconfigured".into())
}

/// The plugin.
pub struct WordFilter;

#[hookwire_guest::plugin]
impl Plugin for WordFilter {
    fn on_msg(_ctx: &Context, ev: MsgEvent) -> MsgVerdict {
        match &*compiled() {
            Ok(c) => filter_with(c.mode, &c.words, ev.msg),
            Err(e) => misconfigured(e),
        }
    }

    /// Most messages are clean: when no word occurs anywhere in the JSON
    /// text (keys and ids included) and no escape could hide one, no string
    /// of the message contains one either, and the message passes unparsed.
    fn on_raw_msg(ctx: &Context, ev: RawMsgEvent) -> MsgVerdict {
        match &*compiled() {
            Ok(c) if !ev.msg.contains('\\') && !c.words.matches(&ev.msg) => MsgVerdict::Pass,
            Ok(_) => Self::on_msg(ctx, ev.parse()),
            Err(e) => misconfigured(e),
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
        let w = Matcher::new(&["darn".into(), "HeCk".into()]).unwrap();
        assert_eq!(
            w.mask("Darn it, what the heck").as_deref(),
            Some("**** it, what the ****")
        );
        assert_eq!(w.mask("DARNED").as_deref(), Some("****ED"));
        assert_eq!(w.mask("clean"), None);
        assert_eq!(w.mask(""), None);
    }

    #[test]
    fn overlapping_and_unicode() {
        let w = Matcher::new(&["aa".into(), "Straße".into()]).unwrap();
        assert_eq!(w.mask("aaa").as_deref(), Some("***"));
        assert_eq!(
            w.mask("STRASSE straße STRAßE").as_deref(),
            Some("STRASSE ****** ******")
        );
        // Kelvin sign (3 bytes) folds to `k` (1 byte): offsets must still line up.
        let w = Matcher::new(&["ok".into()]).unwrap();
        assert_eq!(
            w.mask("\u{212A}O \u{212A}OK é ok").as_deref(),
            Some("\u{212A}O \u{212A}** é **")
        );
        assert!(w.matches("OK"));
        assert!(!w.matches("o k"));
        assert!(Matcher::new(&["".into()]).unwrap().is_empty());
        let w = Matcher::new(&["ñandú".into()]).unwrap();
        assert_eq!(w.mask("Ñandú!").as_deref(), Some("*****!"));
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
    fn raw_hook_passes_clean_text_unparsed_and_sees_through_escapes() {
        testing::set_config(json!({"words": ["heck"]}));
        let raw = |text: &str| {
            WordFilter::on_raw_msg(
                &Context::default(),
                RawMsgEvent {
                    room: "r".into(),
                    msg: text.into(),
                },
            )
        };
        let masked = MsgVerdict::Rewrite(json!({"data": "****"}));
        assert_eq!(raw(r#"{"data":"fine"}"#), MsgVerdict::Pass);
        assert_eq!(raw(r#"{"data":"HECK"}"#), masked);
        // `\u0065` is `e`: only the parsed string shows the word.
        assert_eq!(raw(r#"{"data":"h\u0065ck"}"#), masked);
        // In a key or an id only: parsed, then passes.
        assert_eq!(raw(r#"{"heck":1,"msgId":"heck"}"#), MsgVerdict::Pass);
        testing::set_config(json!({"words": 5}));
        assert_eq!(
            raw(r#"{"data":"fine"}"#),
            MsgVerdict::Drop("word-filter is misconfigured".into())
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
