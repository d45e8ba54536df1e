const SEQUENCE = 0x30;
const INTEGER = 0x02;

/**
 * Converts an ECDSA signature from DER (ECDSA-Sig-Value, SEQUENCE of INTEGER r and s, as KMS and
 * OpenSSL answer it) to JOSE's form (RFC 7518 §3.4): r‖s, each left-padded to `size` bytes (32 for
 * P-256). Throws a TypeError for anything that is not such a signature.
 */
export function derToJoseSignature(der: Uint8Array, size: number): Buffer {
  const reader = { bytes: der, offset: 0 };
  const sequenceLength = readHeader(reader, SEQUENCE);
  if (reader.offset + sequenceLength !== der.length) throw malformed('its SEQUENCE length does not match its size');
  const r = readInteger(reader, size);
  const s = readInteger(reader, size);
  if (reader.offset !== der.length) throw malformed('bytes follow s');
  return Buffer.concat([r, s]);
}

interface Reader {
  bytes: Uint8Array;
  offset: number;
}

/** Reads a tag and a definite length (short form, or long form in one byte: enough for any ECDSA signature). */
function readHeader(reader: Reader, tag: number): number {
  const { bytes } = reader;
  if (bytes[reader.offset] !== tag) throw malformed(`expected tag 0x${tag.toString(16)} at byte ${reader.offset}`);
  let length = bytes[reader.offset + 1];
  reader.offset += 2;
  if (length === 0x81) length = bytes[reader.offset++];
  else if (length === undefined || length > 0x7f) throw malformed(`unsupported length at byte ${reader.offset - 1}`);
  if (length === undefined || reader.offset + length > bytes.length) throw malformed('a length runs past its end');
  return length;
}

/** A positive INTEGER as `size` bytes: DER's sign byte (a leading 0x00) dropped, short values left-padded. */
function readInteger(reader: Reader, size: number): Buffer {
  const length = readHeader(reader, INTEGER);
  let value = reader.bytes.subarray(reader.offset, reader.offset + length);
  reader.offset += length;
  if (length === 0 || (value[0] & 0x80) !== 0) throw malformed('r or s is not a positive integer');
  while (value.length > 1 && value[0] === 0) value = value.subarray(1);
  if (value.length > size) throw malformed(`r or s is longer than ${size} bytes`);
  const padded = Buffer.alloc(size);
  padded.set(value, size - value.length);
  return padded;
}

function malformed(why: string): TypeError {
  return new TypeError(`not a DER-encoded ECDSA signature: ${why}`);
}
