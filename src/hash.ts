/**
 * FNV-1a (32 bit): the running hashes peers compare to show they applied the same log (the
 * applied digest, src/state-machines/replicated.ts) and hold the same session table (src/sessions.ts).
 * Not cryptographic; a test and monitoring aid.
 */
export const FNV_OFFSET = 0x811c9dc5;

function fnvByte(h: number, byte: number): number {
  return Math.imul(h ^ byte, 0x01000193) >>> 0;
}

/** The low 32 bits of `n`, least significant byte first. */
export function fnvNumber(h: number, n: number): number {
  for (let k = 0; k < 4; k++) h = fnvByte(h, (n >>> (8 * k)) & 0xff);
  return h;
}

export function fnvBytes(h: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) h = fnvByte(h, bytes[i]!);
  return h;
}

/** Each UTF-16 code unit of `s` as one step (units above 0xff are not split into bytes). */
export function fnvString(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) h = fnvByte(h, s.charCodeAt(i));
  return h;
}
