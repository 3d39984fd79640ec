// ANSI colour codes in sender text (log lines, errors, messages, names), parsed
// by anser (vendor/anser.js) into styled chunks that become <span>s holding text
// nodes: the text is never parsed as HTML.  Escape sequences other than colours
// (window titles, clipboard writes, cursor moves) and control characters are
// dropped before parsing, so they never show up as stray characters either.

const Anser = window.module.exports;
delete window.module;

const PALETTE_BASE = [
  [0, 0, 0], [205, 49, 49], [13, 188, 121], [229, 229, 16],
  [36, 114, 200], [188, 63, 188], [17, 168, 205], [229, 229, 229],
  [102, 102, 102], [241, 76, 76], [35, 209, 139], [245, 245, 67],
  [59, 142, 234], [214, 112, 214], [41, 184, 219], [255, 255, 255],
];

/** The xterm 256-colour palette entry `index` as "r, g, b". */
function paletteColour(index) {
  if (index < 16) return PALETTE_BASE[index].join(", ");
  if (index < 232) {
    const n = index - 16;
    const level = (v) => (v === 0 ? 0 : 55 + v * 40);
    return [level(Math.floor(n / 36)), level(Math.floor(n / 6) % 6), level(n % 6)].join(", ");
  }
  const grey = 8 + (index - 232) * 10;
  return [grey, grey, grey].join(", ");
}

function applyColour(span, cls, truecolor, property) {
  if (!cls) return;
  const palette = /^ansi-palette-(\d{1,3})$/.exec(cls);
  if (cls === "ansi-truecolor" && truecolor) span.style[property] = `rgb(${truecolor})`;
  else if (palette) span.style[property] = `rgb(${paletteColour(Number(palette[1]) % 256)})`;
  else if (/^ansi-[a-z-]+$/.test(cls)) span.classList.add(`${cls}-${property === "color" ? "fg" : "bg"}`);
}

// One escape sequence or control character: CSI (7- or 8-bit), OSC/DCS/SOS/PM/APC strings up
// to BEL or ST (or the end), any other escape, C0 controls but tab, newline and carriage
// return, DEL and C1 controls.  Only colour sequences (SGR, "ESC [ ... m") are kept.
const CONTROL =
  /(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|\x1b[\x20-\x2f]*[\x30-\x7e]?|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/g;
const SGR = /^\x1b\[[0-9;]*m$/;

/** The text with every escape sequence but colours, and every control character, removed. */
export function cleanControls(text) {
  return String(text).replace(CONTROL, (sequence) => (SGR.test(sequence) ? sequence : ""));
}

/** A fragment of text nodes in <span>s styled by the line's escape codes. */
export function renderAnsi(text) {
  const fragment = document.createDocumentFragment();
  const clean = cleanControls(text);
  let chunks;
  try {
    chunks = Anser.ansiToJson(clean, { use_classes: true, remove_empty: true });
  } catch {
    chunks = [{ content: clean }];
  }
  for (const chunk of chunks) {
    const styled = chunk.fg || chunk.bg || (chunk.decorations && chunk.decorations.length);
    if (!styled) {
      fragment.append(document.createTextNode(chunk.content));
      continue;
    }
    const span = document.createElement("span");
    span.textContent = chunk.content;
    applyColour(span, chunk.fg, chunk.fg_truecolor, "color");
    applyColour(span, chunk.bg, chunk.bg_truecolor, "backgroundColor");
    for (const decoration of chunk.decorations || []) {
      if (/^[a-z]+$/.test(decoration)) span.classList.add(`ansi-${decoration}`);
    }
    fragment.append(span);
  }
  return fragment;
}

/** The text without escape codes or control characters (search, download, titles). */
export function stripAnsi(text) {
  const clean = cleanControls(text);
  try {
    return Anser.ansiToText(clean);
  } catch {
    return clean.replace(CONTROL, "");
  }
}

/** Text a sender supplied, as nodes: its colours rendered, never parsed as markup. */
export function senderText(value) {
  if (value === null || value === undefined) return document.createTextNode("");
  return renderAnsi(String(value));
}

/** Text a sender supplied, for attributes, titles and option labels: no escape codes. */
export function plainText(value) {
  return value === null || value === undefined ? "" : stripAnsi(String(value));
}
