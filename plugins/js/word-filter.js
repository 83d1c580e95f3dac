// word-filter in JavaScript: the same verdicts as plugins/word-filter (Rust).
//
// Config: {"words": ["darn", "heck"], "mode": "mask"} ("mask", the default, or
// "drop"). Words match case-insensitively anywhere inside every string value
// of the message, at any depth, not in keys nor in the id fields `msgId` /
// "1". mask: each matched char becomes `*` (rewrite only when something
// matched, else pass); drop: drop with a reason.
import { pass, drop, rewrite, configState, log } from '@hookwire/guest';

const REASON = 'message contains a blocked word';

// Lower case char by char, one char for one (a char whose lower case is
// several chars stays as it is), so folded text lines up with the original:
// every such fold keeps the UTF-16 length, so offsets are the same in both.
function fold(c) {
  const l = c.toLowerCase();
  return l === c || [...l].length === 1 ? l : c;
}
// The engine's toLowerCase gives the same text, fast, unless the text has İ
// (two chars in lower case) or Σ (σ or ς depending on its neighbours).
const foldAll = (s) => (/[\u0130\u03a3]/.test(s) ? Array.from(s, fold).join('') : s.toLowerCase());

function compile(cfg) {
  cfg ??= {};
  if (typeof cfg !== 'object' || Array.isArray(cfg)) throw new Error('config is not an object');
  for (const k of Object.keys(cfg)) {
    if (k !== 'words' && k !== 'mode') throw new Error(`unknown field \`${k}\`, expected \`words\` or \`mode\``);
  }
  const words = 'words' in cfg ? cfg.words : [];
  if (!Array.isArray(words) || !words.every((w) => typeof w === 'string')) {
    throw new Error('`words` must be a list of strings');
  }
  const mode = 'mode' in cfg ? cfg.mode : 'mask';
  if (mode !== 'mask' && mode !== 'drop') throw new Error('`mode` must be "mask" or "drop"');
  return { mode, words: words.map(foldAll).filter((w) => w !== '') };
}

// `text` with every (overlapping) match masked, or null when nothing matched.
function mask(words, text) {
  const folded = foldAll(text);
  // Each word's matches, in order; merged into covered stretches below.
  const next = words.map((w) => folded.indexOf(w));
  if (next.every((i) => i === -1)) return null;
  // One `*` per char: a surrogate pair is one char.
  const astral = /[\ud800-\udfff]/.test(text);
  const stars = (a, b) =>
    '*'.repeat(astral ? Array.from(text.slice(a, b)).length : b - a);
  const out = [];
  let done = 0;
  let from = -1;
  let until = -1;
  for (;;) {
    let k = -1; // the word whose next match starts first
    for (let j = 0; j < words.length; j++) {
      if (next[j] !== -1 && (k === -1 || next[j] < next[k])) k = j;
    }
    if (k === -1) break;
    const s = next[k];
    const e = s + words[k].length;
    next[k] = folded.indexOf(words[k], s + 1);
    if (s > until) {
      if (from >= 0) out.push(text.slice(done, from), stars(from, until));
      done = from < 0 ? 0 : until;
      from = s;
    }
    if (e > until) until = e;
  }
  out.push(text.slice(done, from), stars(from, until), text.slice(until));
  return out.join('');
}

// The id fields of the message object itself stay as they are.
const skip = (top, k) => top && (k === 'msgId' || k === '1');

// Masks every string inside `v` in place; returns the masked value, or null
// when nothing matched.
function maskValue(v, words, top = false) {
  if (typeof v === 'string') return mask(words, v);
  if (v === null || typeof v !== 'object') return null;
  let changed = false;
  for (const k of Object.keys(v)) {
    if (skip(top, k)) continue;
    const m = maskValue(v[k], words);
    if (m !== null) {
      // defineProperty: a plain `v[k] = m` would not set a key "__proto__"
      Object.defineProperty(v, k, { value: m, writable: true, enumerable: true, configurable: true });
      changed = true;
    }
  }
  return changed ? v : null;
}

function contains(v, words, top = false) {
  if (typeof v === 'string') {
    const f = foldAll(v);
    return words.some((w) => f.includes(w));
  }
  if (v === null || typeof v !== 'object') return false;
  return Object.keys(v).some((k) => !skip(top, k) && contains(v[k], words));
}

function compiled(cfg) {
  try {
    return compile(cfg);
  } catch (e) {
    return { error: e.message };
  }
}

export function onMsg(ctx, ev) {
  const c = configState(compiled); // once per instance
  if (c.error) {
    log.error(`word-filter: invalid plugin config: ${c.error}`);
    return drop('word-filter is misconfigured');
  }
  if (c.words.length === 0) return pass();
  const top = ev.msg !== null && typeof ev.msg === 'object' && !Array.isArray(ev.msg);
  if (c.mode === 'drop') return contains(ev.msg, c.words, top) ? drop(REASON) : pass();
  const masked = maskValue(ev.msg, c.words, top);
  return masked === null ? pass() : rewrite(masked);
}
