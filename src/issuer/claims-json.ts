const QUOTE = 0x22;
const BACKSLASH = 0x5c;
/** Bytes kept free after each write, for the brackets and separators written between two checks. */
const SPARE = 8;

/**
 * Writes the JSON of a token's claims into `target` as UTF-8, byte for byte what `JSON.stringify(claims)`
 * gives, for the claims most tokens carry: members whose names and string values are printable ASCII
 * without `"` or `\`, whose values are such strings, finite numbers, booleans, null or arrays of those.
 * Returns the length written, or -1 for any other claims (a nested object, a character JSON escapes or
 * UTF-8 takes several bytes for, a member JSON leaves out, a `toJSON`, too little room): those are for
 * JSON.stringify.
 *
 * Why: with the signature made in process, JSON.stringify and the UTF-8 write of its string cost about 5%
 * of crypto.sign's time for ES256 in `npm run bench` (the signature pushes their code and data out of the
 * CPU's caches each time), and this loop about 1%.
 */
export function writeSimpleClaimsJson(claims: object, target: Uint8Array): number {
  if (typeof (claims as { toJSON?: unknown }).toJSON === 'function' || target.length < SPARE) return -1;
  // Object.keys lists the members JSON.stringify writes, in its order: own, enumerable, string-named.
  const names = Object.keys(claims);
  let at = 0;
  target[at++] = 0x7b; // `{`
  for (let i = 0; i < names.length; i += 1) {
    if (i > 0) target[at++] = 0x2c; // `,`
    at = writeAscii(names[i], true, target, at);
    if (at < 0) return -1;
    target[at++] = 0x3a; // `:`
    const value = (claims as Record<string, unknown>)[names[i]];
    at = Array.isArray(value) ? writeArray(value, target, at) : writePrimitive(value, target, at);
    if (at < 0) return -1;
  }
  target[at++] = 0x7d; // `}`
  return at;
}

function writeArray(values: unknown[], target: Uint8Array, at: number): number {
  if (typeof (values as { toJSON?: unknown }).toJSON === 'function' || at + SPARE > target.length) return -1;
  target[at++] = 0x5b; // `[`
  for (let i = 0; i < values.length; i += 1) {
    if (i > 0) target[at++] = 0x2c; // `,`
    at = writePrimitive(values[i], target, at);
    if (at < 0) return -1;
  }
  target[at++] = 0x5d; // `]`
  return at;
}

function writePrimitive(value: unknown, target: Uint8Array, at: number): number {
  switch (typeof value) {
    case 'string':
      return writeAscii(value, true, target, at);
    case 'number':
      // JSON writes a finite number as String does; NaN and the infinities as null (left to JSON.stringify).
      return Number.isFinite(value) ? writeAscii(String(value), false, target, at) : -1;
    case 'boolean':
      return writeAscii(value ? 'true' : 'false', false, target, at);
    default:
      return value === null ? writeAscii('null', false, target, at) : -1;
  }
}

/** `text`, in quotes if `quote`, when it is printable ASCII that JSON does not escape; -1 otherwise or without room. */
function writeAscii(text: string, quote: boolean, target: Uint8Array, at: number): number {
  if (at + text.length + 2 + SPARE > target.length) return -1;
  if (quote) target[at++] = QUOTE;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code > 0x7e || code === QUOTE || code === BACKSLASH) return -1;
    target[at++] = code;
  }
  if (quote) target[at++] = QUOTE;
  return at;
}
