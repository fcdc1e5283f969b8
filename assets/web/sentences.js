// The render's sentence rule, for New film's Listen: it speaks the script's first sentence
// as the film will say it. A mirror of `pipelines/render/plan.rs` `sentences` with
// `media/titles.rs` `stop_continues` (a speech job takes no "first sentence" option);
// `tests/it/web_i18n.rs` checks both give the same sentence for the same scripts.

/** Titles before a name or word: a full stop after one never ends a sentence (titles.rs). */
const BEFORE_A_WORD = ["dr", "mr", "mrs", "ms", "mx", "st", "prof", "mt", "rev", "fr", "gen", "capt", "lt", "sgt", "vs", "e.g", "i.e"];
/** Abbreviations whose full stop ends a sentence only before a capital (titles.rs). */
const ABBREVIATIONS = ["jr", "sr", "etc", "approx", "cf", "no", "vol", "ca"];

const NOT_WORDLIKE = /^[^\p{Alphabetic}\p{N}]+/u;

/** True when the full stop after `word` does not end the sentence `next` goes on with. */
export function stopContinues(word, next) {
  const w = word.replace(NOT_WORDLIKE, "");
  const first = [...next.replace(NOT_WORDLIKE, "")][0];
  if (!first) return false;
  const lower = w.toLowerCase();
  const initial = [...w].length === 1 && /^\p{Uppercase}$/u.test(w);
  return initial || BEFORE_A_WORD.includes(lower) || (ABBREVIATIONS.includes(lower) && !/\p{Uppercase}/u.test(first));
}

/** A space a sentence may end before: not a no-break space (U+00A0, U+202F, U+2007). */
const breaks = (c) => /\s/u.test(c) && !["\u00a0", "\u202f", "\u2007"].includes(c);

/** The sentences of `text` (one scene's spoken words), as the render cuts them. */
export function sentences(text) {
  const chars = [...text];
  const out = [];
  let start = 0;
  for (let i = 0; i < chars.length; i++) {
    if (!".!?".includes(chars[i])) continue;
    const atEnd = i + 1 === chars.length;
    if (!atEnd && !breaks(chars[i + 1])) continue;
    if (chars[i] === "." && !atEnd) {
      let from = i;
      while (from > 0 && !/\s/u.test(chars[from - 1])) from--;
      const word = chars.slice(from, i).join("");
      let at = i + 1;
      while (at < chars.length && /\s/u.test(chars[at])) at++;
      let to = at;
      while (to < chars.length && !/\s/u.test(chars[to])) to++;
      if (stopContinues(word, chars.slice(at, to).join(""))) continue;
    }
    const s = chars.slice(start, i + 1).join("").trim();
    if (s) out.push(s);
    start = i + 1;
  }
  const rest = chars.slice(start).join("").trim();
  if (rest) out.push(rest);
  return out;
}

/** The first sentence of `text`, or all of it when it has none. */
export function firstSentence(text) {
  return sentences(text)[0] || text.trim();
}
