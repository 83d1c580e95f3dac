//! How a tenant's chain combines its plugins' answers, hook by hook.
//!
//! These are pure folds over the verdicts, with no wasm in them: the chain
//! ([`crate::chain::PluginChain`]) runs each plugin that implements the hook,
//! in order, feeds its answer to the hook's fold and stops when the fold
//! says so. The rules are therefore tested here, on plain verdicts.
//!
//! | hook           | a plugin's answer              | the chain's answer                       |
//! | -------------- | ------------------------------ | ---------------------------------------- |
//! | `authenticate` | defer goes on                  | the first allow or deny; else defer      |
//! | `on-join`      | allow goes on                  | the first deny; else allow               |
//! | `on-msg`       | pass goes on, rewrite goes on  | drop, reply, redirect stop; else the last |
//! |                | with the new message           | rewrite (a redirect without a message of |
//! |                |                                | its own carries it), else pass           |
//! | `storage-mode` | its mode is the next `proposed`| the last plugin's mode                   |
//! | `route-push`   | deliver sets the next rooms    | the first reject; else the last rooms    |
//!
//! A fault of a `fail_open` plugin counts as its pass-equivalent (defer,
//! allow, pass, the proposed mode, the current rooms): [`pass_equivalent`].

use hookwire_core::policy::{AuthVerdict, JoinVerdict, KnownJson, MsgVerdict, PushRoute};
use serde_json::Value;

/// What the chain does after one plugin's answer.
#[derive(Debug, PartialEq)]
pub enum Step<T> {
    /// Ask the next plugin.
    Next,
    /// The chain's answer; later plugins are not called.
    Done(T),
}

/// `authenticate`: the first plugin that does not defer decides.
pub fn authenticate(v: AuthVerdict) -> Step<AuthVerdict> {
    match v {
        AuthVerdict::Defer => Step::Next,
        v => Step::Done(v),
    }
}

/// `on-join`: the first deny wins.
pub fn on_join(v: JoinVerdict) -> Step<JoinVerdict> {
    match v {
        JoinVerdict::Allow => Step::Next,
        deny => Step::Done(deny),
    }
}

/// `on-msg`: the message each plugin sees, and what the chain answers.
#[derive(Debug, Default)]
pub struct MsgFold {
    /// The last rewrite, with the JSON text its plugin returned.
    current: Option<(Value, Option<String>)>,
}

impl MsgFold {
    /// The message text the next plugin gets: the last rewrite's, else
    /// `original` (the sender's).
    pub fn input<'a>(&'a self, original: &'a str) -> &'a str {
        match &self.current {
            Some((_, Some(text))) => text,
            _ => original,
        }
    }

    /// One plugin's verdict (a rewrite carries the JSON text the plugin
    /// returned, when it did).
    pub fn step(&mut self, verdict: MsgVerdict) -> Step<MsgVerdict> {
        match verdict {
            MsgVerdict::Pass => Step::Next,
            MsgVerdict::Rewrite { msg, json } => {
                self.current = Some((msg, json.0));
                Step::Next
            }
            MsgVerdict::Redirect {
                rooms,
                users,
                msg: None,
            } => Step::Done(MsgVerdict::Redirect {
                rooms,
                users,
                msg: self.current.take().map(|(m, _)| m),
            }),
            stop => Step::Done(stop),
        }
    }

    /// Every plugin passed or rewrote.
    pub fn finish(self) -> MsgVerdict {
        match self.current {
            Some((msg, json)) => MsgVerdict::Rewrite {
                msg,
                json: KnownJson(json),
            },
            None => MsgVerdict::Pass,
        }
    }
}

/// `route-push`: the rooms each plugin sees, and what the chain answers.
#[derive(Debug)]
pub struct PushFold<'r> {
    requested: &'r [String],
    /// `None`: the request's rooms, until a plugin chooses others.
    chosen: Option<Vec<String>>,
}

impl<'r> PushFold<'r> {
    pub fn new(requested: &'r [String]) -> Self {
        PushFold {
            requested,
            chosen: None,
        }
    }

    /// The rooms the next plugin gets.
    pub fn current(&self) -> &[String] {
        self.chosen.as_deref().unwrap_or(self.requested)
    }

    pub fn step(&mut self, route: PushRoute) -> Step<PushRoute> {
        match route {
            PushRoute::Deliver { rooms } => {
                self.chosen = Some(rooms);
                Step::Next
            }
            reject => Step::Done(reject),
        }
    }

    pub fn finish(self) -> PushRoute {
        PushRoute::Deliver {
            rooms: self.chosen.unwrap_or_else(|| self.requested.to_vec()),
        }
    }
}

/// The answers a faulted `fail_open` plugin is taken to have given.
pub mod pass_equivalent {
    use super::*;
    use hookwire_core::policy::StorageMode;

    pub fn authenticate() -> AuthVerdict {
        AuthVerdict::Defer
    }
    pub fn on_join() -> JoinVerdict {
        JoinVerdict::Allow
    }
    pub fn on_msg() -> MsgVerdict {
        MsgVerdict::Pass
    }
    pub fn storage_mode(proposed: StorageMode) -> StorageMode {
        proposed
    }
    pub fn route_push(current: &[String]) -> PushRoute {
        PushRoute::Deliver {
            rooms: current.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Runs `verdicts` through `step` as the chain does and returns the
    /// chain's answer and how many plugins were asked.
    fn run<T, V>(
        verdicts: Vec<V>,
        mut step: impl FnMut(V) -> Step<T>,
        finish: impl FnOnce() -> T,
    ) -> (T, usize) {
        let mut asked = 0;
        for v in verdicts {
            asked += 1;
            if let Step::Done(t) = step(v) {
                return (t, asked);
            }
        }
        (finish(), asked)
    }

    fn allow(uid: &str) -> AuthVerdict {
        AuthVerdict::Allow {
            uid: uid.into(),
            rooms: vec![],
            claims: json!({}),
        }
    }

    #[test]
    fn authenticate_takes_the_first_plugin_that_does_not_defer() {
        let deny = AuthVerdict::Deny {
            reason: "no".into(),
        };
        let chain = vec![AuthVerdict::Defer, allow("u1"), deny.clone()];
        assert_eq!(
            run(chain, authenticate, || AuthVerdict::Defer),
            (allow("u1"), 2)
        );
        let chain = vec![AuthVerdict::Defer, deny.clone(), allow("u1")];
        assert_eq!(run(chain, authenticate, || AuthVerdict::Defer), (deny, 2));
        let chain = vec![AuthVerdict::Defer, AuthVerdict::Defer];
        assert_eq!(
            run(chain, authenticate, || AuthVerdict::Defer),
            (AuthVerdict::Defer, 2)
        );
    }

    #[test]
    fn on_join_stops_at_the_first_deny() {
        let deny = |r: &str| JoinVerdict::Deny { reason: r.into() };
        let chain = vec![JoinVerdict::Allow, deny("a"), deny("b")];
        assert_eq!(run(chain, on_join, || JoinVerdict::Allow), (deny("a"), 2));
        let chain = vec![JoinVerdict::Allow, JoinVerdict::Allow];
        assert_eq!(
            run(chain, on_join, || JoinVerdict::Allow),
            (JoinVerdict::Allow, 2)
        );
    }

    /// A rewrite as a wasm plugin answers it: with its JSON text.
    fn rewrite_with_text(msg: Value) -> MsgVerdict {
        let json = KnownJson(Some(msg.to_string()));
        MsgVerdict::Rewrite { msg, json }
    }

    #[test]
    fn on_msg_rewrites_accumulate_and_the_next_plugin_sees_the_last_text() {
        let mut fold = MsgFold::default();
        assert_eq!(fold.input("{\"a\":1}"), "{\"a\":1}");
        let step = fold.step(rewrite_with_text(json!({"a": 2})));
        assert_eq!(step, Step::Next);
        assert_eq!(fold.input("{\"a\":1}"), "{\"a\":2}");
        assert_eq!(fold.step(MsgVerdict::Pass), Step::Next);
        let step = fold.step(rewrite_with_text(json!({"a": 3})));
        assert_eq!(step, Step::Next);
        match fold.finish() {
            MsgVerdict::Rewrite { msg, json } => {
                assert_eq!(msg, json!({"a": 3}));
                assert_eq!(json.0.as_deref(), Some("{\"a\":3}"), "the text is kept");
            }
            other => panic!("expected a rewrite, got {other:?}"),
        }
    }

    #[test]
    fn on_msg_all_pass_is_pass() {
        let mut fold = MsgFold::default();
        assert_eq!(fold.step(MsgVerdict::Pass), Step::Next);
        assert_eq!(fold.step(MsgVerdict::Pass), Step::Next);
        assert_eq!(fold.finish(), MsgVerdict::Pass);
    }

    #[test]
    fn on_msg_drop_and_reply_stop_the_chain_and_forget_rewrites() {
        let drop = MsgVerdict::Drop {
            reason: "spam".into(),
        };
        let mut fold = MsgFold::default();
        fold.step(MsgVerdict::rewrite(json!({"a": 2})));
        assert_eq!(fold.step(drop.clone()), Step::Done(drop));

        let reply = MsgVerdict::Reply {
            event: "pong".into(),
            data: json!(1),
        };
        let mut fold = MsgFold::default();
        fold.step(MsgVerdict::rewrite(json!({"a": 2})));
        assert_eq!(fold.step(reply.clone()), Step::Done(reply));
    }

    #[test]
    fn on_msg_redirect_carries_an_earlier_rewrite_unless_it_has_its_own() {
        let redirect = |msg| MsgVerdict::Redirect {
            rooms: vec!["r2".into()],
            users: vec![],
            msg,
        };
        let mut fold = MsgFold::default();
        fold.step(MsgVerdict::rewrite(json!({"a": 2})));
        assert_eq!(
            fold.step(redirect(None)),
            Step::Done(redirect(Some(json!({"a": 2}))))
        );

        let mut fold = MsgFold::default();
        fold.step(MsgVerdict::rewrite(json!({"a": 2})));
        assert_eq!(
            fold.step(redirect(Some(json!({"b": 1})))),
            Step::Done(redirect(Some(json!({"b": 1}))))
        );

        let mut fold = MsgFold::default();
        assert_eq!(fold.step(redirect(None)), Step::Done(redirect(None)));
    }

    #[test]
    fn route_push_passes_each_plugin_the_rooms_the_last_chose() {
        let requested = vec!["a".to_string()];
        let mut fold = PushFold::new(&requested);
        assert_eq!(fold.current(), ["a"]);
        let to = |r: &[&str]| PushRoute::Deliver {
            rooms: r.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(fold.step(to(&["b", "c"])), Step::Next);
        assert_eq!(fold.current(), ["b", "c"]);
        assert_eq!(fold.step(to(&[])), Step::Next);
        assert_eq!(
            fold.current(),
            [] as [String; 0],
            "an empty choice is a choice"
        );
        assert_eq!(fold.finish(), to(&[]));

        let fold = PushFold::new(&requested);
        assert_eq!(
            fold.finish(),
            to(&["a"]),
            "nobody chose: the request's rooms"
        );
    }

    #[test]
    fn route_push_stops_at_a_reject() {
        let requested = vec!["a".to_string()];
        let mut fold = PushFold::new(&requested);
        let reject = PushRoute::Reject {
            reason: "quiet hours".into(),
        };
        assert_eq!(fold.step(reject.clone()), Step::Done(reject));
    }

    #[test]
    fn a_faulted_fail_open_plugin_counts_as_its_pass_equivalent() {
        use hookwire_core::policy::StorageMode;
        assert_eq!(authenticate(pass_equivalent::authenticate()), Step::Next);
        assert_eq!(on_join(pass_equivalent::on_join()), Step::Next);
        let mut fold = MsgFold::default();
        assert_eq!(fold.step(pass_equivalent::on_msg()), Step::Next);
        assert_eq!(
            pass_equivalent::storage_mode(StorageMode::Update),
            StorageMode::Update
        );
        let requested = vec!["a".to_string()];
        let mut fold = PushFold::new(&requested);
        fold.step(PushRoute::Deliver {
            rooms: vec!["b".into()],
        });
        let eq = pass_equivalent::route_push(fold.current());
        assert_eq!(fold.step(eq), Step::Next);
        assert_eq!(fold.current(), ["b"], "the current rooms stand");
    }
}
