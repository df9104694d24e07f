/**
 * Decoding of uploaded executables (pure: no I/O).
 *
 * The `executable` of a script or binary job arrives as base64. Buffer.from(x, "base64") accepts
 * anything (it skips unknown characters, accepts base64url, stops at the first "="), so the text is
 * validated first:
 *
 * - alphabet: standard base64 only (A-Z a-z 0-9 + /); base64url ("-", "_") is refused;
 * - whitespace: ASCII space, tab, CR and LF are ignored wherever they appear, so the output of
 *   `base64 file` (wrapped at 76 columns) is accepted as is; any other character is refused;
 * - padding: optional; when present it is one or two "=" at the very end, and the padded text is a
 *   multiple of 4 characters long; unpadded text must not leave a single dangling character
 *   (length % 4 === 1);
 * - canonical: the unused bits of the last character must be zero (RFC 4648 §3.5), so one text
 *   names exactly one content;
 * - empty (nothing but whitespace) is refused;
 * - the decoded size is computed from the text length BEFORE decoding and refused with
 *   TooLargeError when over the limit.
 */
import { createHash } from "node:crypto";
import { FieldError, TooLargeError } from "./errors";

const FIELD = "executable";

const WHITESPACE_RE = /[ \t\r\n]+/g;
const BASE64_RE = /^[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The decoded size of whitespace-free base64 text of `n` characters ending in `pad` "=" signs. */
function decodedSize(n: number, pad: number): number {
	return Math.floor((n * 3) / 4) - pad;
}

/**
 * Decode base64 text strictly (rules above). Throws FieldError("executable") on invalid or empty
 * input and TooLargeError (a FieldError) when the decoded content would exceed `maxBytes`.
 */
export function decodeExecutable(base64: string, maxBytes: number): Buffer {
	if (typeof base64 !== "string") throw new FieldError(FIELD, `${FIELD} must be a base64 string`);
	if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new RangeError(`maxBytes must be a positive integer, got ${maxBytes}`);
	const text = base64.replace(WHITESPACE_RE, "");
	if (text.length === 0) throw new FieldError(FIELD, `${FIELD} is empty`);

	// Size first, from the length alone (an upper bound when the text is invalid anyway).
	const pad = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
	const size = decodedSize(text.length, pad);
	if (size > maxBytes) throw new TooLargeError(maxBytes, size);

	if (!BASE64_RE.test(text)) {
		const bad = /[^A-Za-z0-9+/=]/.exec(text);
		if (bad) {
			const ch = bad[0];
			const shown = /^[\x21-\x7e]$/.test(ch) ? `"${ch}"` : `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
			throw new FieldError(FIELD, `${FIELD} is not valid base64: invalid character ${shown}`);
		}
		throw new FieldError(FIELD, `${FIELD} is not valid base64: "=" padding is only allowed at the end, as "=" or "=="`);
	}
	if (pad > 0 ? text.length % 4 !== 0 : text.length % 4 === 1) {
		throw new FieldError(FIELD, `${FIELD} is not valid base64: wrong length (${text.length} characters)`);
	}

	const buf = Buffer.from(text, "base64");
	// Canonical form check: catches non-zero trailing bits (e.g. "QR==" vs "QQ==").
	const canonical = buf.toString("base64");
	const padded = pad > 0 ? text : text + "=".repeat((4 - (text.length % 4)) % 4);
	if (canonical !== padded || buf.length !== size) {
		throw new FieldError(FIELD, `${FIELD} is not valid base64: non-zero bits after the last byte`);
	}
	if (buf.length === 0) throw new FieldError(FIELD, `${FIELD} is empty`);
	return buf;
}

/** SHA-256 of the content, lowercase hex. */
export function sha256Hex(content: Buffer | Uint8Array | string): string {
	return createHash("sha256").update(content).digest("hex");
}

/** A SHA-256 digest as we accept it everywhere: 64 lowercase hex characters. */
export const DIGEST_RE = /^[0-9a-f]{64}$/;

export function isDigest(value: unknown): value is string {
	return typeof value === "string" && DIGEST_RE.test(value);
}

/** Throws FieldError("digest") unless `value` is 64 lowercase hex characters. */
export function assertDigest(value: unknown, field = "digest"): asserts value is string {
	if (!isDigest(value)) throw new FieldError(field, `${field} must be a SHA-256 digest (64 lowercase hex characters)`);
}
