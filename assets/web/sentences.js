// The render's sentence rule, for New film's Listen: it speaks the script's first sentence
// as the film will say it, in the voice's language. A mirror of `pipelines/render/plan.rs`
// `sentences` with `text/stops.rs` `stop_continues` (a speech job takes no "first sentence"
// option); the titles, abbreviations and months are the daemon's own, written into
// `stops.js` from `text/language.rs`. `tests/it/web_i18n.rs` checks both give the same
// sentences for the same scripts in English, German, Spanish and French.
import { ENGLISH, LANGUAGES } from "./stops.js";

const NOT_WORDLIKE_START = /^[^\p{Alphabetic}\p{N}]+/u;
const NOT_WORDLIKE_END = /[^\p{Alphabetic}\p{N}]+$/u;

/** The rules of the language `tag` names ("de", "de-DE", "pt_BR"), as `Language::of` finds it. */
export function rulesOf(tag) {
  const family = (tag || "").split(/[-_]/)[0].toLowerCase();
  return Object.hasOwn(LANGUAGES, family) ? LANGUAGES[family] : ENGLISH;
}

/**
 * True when the full stop after `before` (the sentence so far: its last word counts, and the
 * one before it for a spaced abbreviation, "z. B.") does not end the sentence, because `next`
 * (the word after it) goes on with it in the language of `rules` (stops.rs).
 */
export function stopContinues(before, next, rules) {
  const words = before.split(/\s+/u).filter(Boolean).reverse();
  const word = (words[0] || "").replace(NOT_WORDLIKE_START, "");
  const after = next.replace(NOT_WORDLIKE_START, "");
  const first = [...after][0];
  if (!first || !word) return false;
  const lower = word.toLowerCase();
  const joined = `${lower}.${after.split(".")[0].toLowerCase()}`;
  const earlier = words[1] && words[1].endsWith(".") ? `${words[1].slice(0, -1).toLowerCase()}.${lower}` : null;
  const initial = [...word].length === 1 && /^\p{Uppercase}$/u.test(word);
  const ordinal = /^[0-9]+$/.test(word) && rules.months.includes(after.replace(NOT_WORDLIKE_END, "").toLowerCase());
  return initial || rules.titles.includes(lower) || rules.titles.includes(joined)
    || (earlier !== null && rules.titles.includes(earlier))
    // A sentence starts with a capital: a lower-case word or a number goes on with it.
    || /\p{Lowercase}/u.test(first) || /\p{N}/u.test(first) || ordinal;
}

/** A space a sentence may end before: not a no-break space (U+00A0, U+202F, U+2007). */
const breaks = (c) => /\s/u.test(c) && !["\u00a0", "\u202f", "\u2007"].includes(c);

/** The sentences of `text` (one scene's spoken words) in the language `tag`, as the render cuts them. */
export function sentences(text, tag) {
  const rules = rulesOf(tag);
  const chars = [...text];
  const out = [];
  let start = 0;
  for (let i = 0; i < chars.length; i++) {
    if (!".!?".includes(chars[i])) continue;
    const atEnd = i + 1 === chars.length;
    if (!atEnd && !breaks(chars[i + 1])) continue;
    if (chars[i] === "." && !atEnd) {
      let at = i + 1;
      while (at < chars.length && /\s/u.test(chars[at])) at++;
      let to = at;
      while (to < chars.length && !/\s/u.test(chars[to])) to++;
      if (stopContinues(chars.slice(start, i).join(""), chars.slice(at, to).join(""), rules)) continue;
    }
    const s = chars.slice(start, i + 1).join("").trim();
    if (s) out.push(s);
    start = i + 1;
  }
  const rest = chars.slice(start).join("").trim();
  if (rest) out.push(rest);
  return out;
}

/** The first sentence of `text` in the language `tag`, or all of it when it has none. */
export function firstSentence(text, tag) {
  return sentences(text, tag)[0] || text.trim();
}
