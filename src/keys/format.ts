/**
 * API key formats: a fixed prefix and a random body over one alphabet.
 * Formats are compiled once; checking a presented key is one regex test and
 * happens before any store access, so a malformed key never costs a round trip.
 */
import { hash, randomBytes } from "node:crypto";

export const ALPHABETS = {
  hex: "0123456789abcdef",
  alphanumeric: "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
  base32: "abcdefghijklmnopqrstuvwxyz234567",
} as const;

export type AlphabetName = keyof typeof ALPHABETS;

export interface KeyFormatConfig {
  name: string;
  prefix: string;
  alphabet: AlphabetName;
  length: number;
}

export interface KeyFormat extends KeyFormatConfig {
  /** True when `key` is exactly this format (prefix + `length` characters of the alphabet). */
  matches(key: string): boolean;
  /** A new key from the CSPRNG, uniformly distributed over the alphabet. */
  generate(): string;
  /** Entropy of the body in bits. */
  readonly bits: number;
}

/** Characters of a key shown in clear (listing, logs of admin actions). */
export const DISPLAY_PREFIX_LENGTH = 10;

export function compileKeyFormat(config: KeyFormatConfig): KeyFormat {
  const alphabet = ALPHABETS[config.alphabet];
  const escapedPrefix = config.prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const charClass = `[${alphabet.replace(/-/g, "\\-")}]`;
  const pattern = new RegExp(`^${escapedPrefix}${charClass}{${config.length}}$`);
  return {
    ...config,
    bits: Math.floor(config.length * Math.log2(alphabet.length)),
    matches: (key) => pattern.test(key),
    generate: () => config.prefix + randomString(alphabet, config.length),
  };
}

/** Uniform random string: rejection sampling avoids the modulo bias of `byte % n`. */
function randomString(alphabet: string, length: number): string {
  const n = alphabet.length;
  const limit = 256 - (256 % n);
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte >= limit) continue;
      out += alphabet[byte % n];
      if (out.length === length) break;
    }
  }
  return out;
}

/**
 * The store's identifier for a key: SHA-256 of the full key, lower-case hex.
 * One-shot `hash` (not a Hash object): it runs on every authenticated request.
 */
export function hashKey(key: string): string {
  return hash("sha256", key, "hex");
}

export function displayPrefix(key: string): string {
  return key.slice(0, DISPLAY_PREFIX_LENGTH);
}
