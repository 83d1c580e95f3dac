"""word-filter in Python: the same verdicts as plugins/word-filter (Rust).

Config: {"words": ["darn", "heck"], "mode": "mask"} ("mask", the default, or
"drop"). Words match case-insensitively anywhere inside every string value
of the message, at any depth, not in keys nor in the id fields ``msgId`` /
"1". mask: each matched char becomes ``*`` (rewrite only when something
matched, else pass); drop: drop with a reason.
"""

from hookwire_guest import config_state, drop, log, pass_, rewrite

REASON = "message contains a blocked word"


def fold(c):
    """Lower case, one char for one (a char whose lower case is several stays)."""
    low = c.lower()
    return low if len(low) == 1 else c


def fold_all(s):
    # str.lower gives the same text, fast, unless the text has İ (two chars in
    # lower case) or Σ (σ or ς depending on its neighbours).
    if "\u0130" in s or "\u03a3" in s:
        return "".join(map(fold, s))
    return s.lower()


def compile_config(cfg):
    cfg = {} if cfg is None else cfg
    if not isinstance(cfg, dict):
        raise ValueError("config is not an object")
    unknown = set(cfg) - {"words", "mode"}
    if unknown:
        raise ValueError(f"unknown field `{unknown.pop()}`, expected `words` or `mode`")
    words = cfg.get("words", [])
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ValueError("`words` must be a list of strings")
    mode = cfg.get("mode", "mask")
    if mode not in ("mask", "drop"):
        raise ValueError('`mode` must be "mask" or "drop"')
    return mode, [w for w in map(fold_all, words) if w]


def mask(words, text):
    """``text`` with every (overlapping) match masked, or None when nothing matched."""
    folded = fold_all(text)  # one char per char of text
    hits = []
    for w in words:
        i = folded.find(w)
        while i != -1:
            hits.append((i, i + len(w)))
            i = folded.find(w, i + 1)
    if not hits:
        return None
    hits.sort()
    out, done = [], 0
    start, until = hits[0]
    for s, e in hits:
        if s > until:
            out += [text[done:start], "*" * (until - start)]
            done, start = until, s
        until = max(until, e)
    out += [text[done:start], "*" * (until - start), text[until:]]
    return "".join(out)


def is_id(top, k):
    return top and k in ("msgId", "1")


def mask_value(v, words, top=False):
    """Masks every string inside ``v`` in place; the masked value, or None."""
    if isinstance(v, str):
        return mask(words, v)
    if isinstance(v, (dict, list)):
        keys = v.keys() if isinstance(v, dict) else range(len(v))
        changed = False
        for k in keys:
            if not is_id(top, k):
                m = mask_value(v[k], words)
                if m is not None:
                    v[k] = m
                    changed = True
        return v if changed else None
    return None


def contains(v, words, top=False):
    if isinstance(v, str):
        f = fold_all(v)
        return any(w in f for w in words)
    if isinstance(v, dict):
        return any(not is_id(top, k) and contains(x, words) for k, x in v.items())
    if isinstance(v, list):
        return any(contains(x, words) for x in v)
    return False


def compiled(cfg):
    try:
        return compile_config(cfg)
    except ValueError as e:
        return str(e)


def on_msg(ctx, ev):
    c = config_state(compiled)
    if isinstance(c, str):
        log.error(f"word-filter: invalid plugin config: {c}")
        return drop("word-filter is misconfigured")
    mode, words = c
    if not words:
        return pass_()
    top = isinstance(ev.msg, dict)
    if mode == "drop":
        return drop(REASON) if contains(ev.msg, words, top) else pass_()
    masked = mask_value(ev.msg, words, top)
    return pass_() if masked is None else rewrite(masked)
