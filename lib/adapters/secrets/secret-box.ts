/**
 * Secret values at rest (a job's secretEnv): AES-256-GCM, one random 96-bit IV per value, the
 * 128-bit tag checked on open. An envelope is text, `v1.<key id>.<iv>.<ciphertext>.<tag>` (base64url),
 * where the key id is the first 8 bytes of the key's SHA-256 (hex): a key ring of the current key
 * and the previous ones opens what either sealed, and rotation re-seals what an old key sealed.
 *
 * The key: CRONJOB_SECRET_KEY, 32 bytes as 64 hex digits or base64; CRONJOB_SECRET_KEY_PREVIOUS
 * (comma-separated) for the keys being rotated out. On the embedded default without one, a key is
 * generated into `<data>/secret-key` (mode 0600) at the first start. A cluster (a transporter
 * set) must be given one: every API and worker process must share it, and a generated file would
 * differ between them.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, RunSetupError } from "../../core/errors";

const VERSION = "v1";
const KEY_BYTES = 32;
const IV_BYTES = 12;

/** 32 bytes from 64 hex digits or base64 (standard or url-safe); null when the text is neither. */
export function parseKey(text: string): Buffer | null {
	const t = text.trim();
	if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, "hex");
	if (/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) {
		const b = Buffer.from(t.replace(/-/g, "+").replace(/_/g, "/"), "base64");
		if (b.length === KEY_BYTES) return b;
	}
	return null;
}

export function keyId(key: Buffer): string {
	return createHash("sha256").update(key).digest("hex").slice(0, 16);
}

export class SecretBox {
	private readonly ring = new Map<string, Buffer>();
	readonly currentId: string;

	constructor(
		private readonly current: Buffer,
		previous: readonly Buffer[] = [],
	) {
		if (current.length !== KEY_BYTES) throw new Error(`a secret key has ${KEY_BYTES} bytes, got ${current.length}`);
		this.currentId = keyId(current);
		for (const k of [current, ...previous]) this.ring.set(keyId(k), k);
	}

	seal(plain: string): string {
		const iv = randomBytes(IV_BYTES);
		const cipher = createCipheriv("aes-256-gcm", this.current, iv);
		const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
		return [VERSION, this.currentId, iv.toString("base64url"), body.toString("base64url"), cipher.getAuthTag().toString("base64url")].join(".");
	}

	/** The plain text; throws RunSetupError (naming no value) when the envelope is not ours or was altered. */
	open(envelope: string): string {
		const parts = envelope.split(".");
		if (parts.length !== 5 || parts[0] !== VERSION) throw new RunSetupError("a secret value is not in a known envelope format");
		const key = this.ring.get(parts[1]);
		if (!key)
			throw new RunSetupError(
				`a secret value was sealed with key ${parts[1]}, which this process does not have (CRONJOB_SECRET_KEY, CRONJOB_SECRET_KEY_PREVIOUS)`,
			);
		try {
			const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(parts[2], "base64url"));
			decipher.setAuthTag(Buffer.from(parts[4], "base64url"));
			return Buffer.concat([decipher.update(Buffer.from(parts[3], "base64url")), decipher.final()]).toString("utf8");
		} catch {
			throw new RunSetupError(`a secret value sealed with key ${parts[1]} does not open (altered, or another key with that id)`);
		}
	}

	/** Sealed with a key other than the current one (rotation re-seals it). */
	stale(envelope: string): boolean {
		return envelope.split(".")[1] !== this.currentId;
	}
}

export interface SecretKeyConfig {
	secretKey: string | null;
	secretKeyPrevious: string[];
	/** A transporter is set: several processes, which must share the key. */
	transporter: string | null;
	dataDir: string;
}

/**
 * The process's SecretBox: from CRONJOB_SECRET_KEY; on the embedded default without it, from the
 * generated `<data>/secret-key` (made at the first start, mode 0600). A cluster without the key, or
 * a key that does not parse, refuses to start (ConfigError) with what to do.
 */
export function loadSecretBox(config: SecretKeyConfig): SecretBox {
	const previous = config.secretKeyPrevious.map((t, i) => {
		const k = parseKey(t);
		if (!k) throw new ConfigError("CRONJOB_SECRET_KEY_PREVIOUS", `CRONJOB_SECRET_KEY_PREVIOUS entry ${i + 1} is not a 32-byte key (64 hex digits or base64)`);
		return k;
	});
	if (config.secretKey !== null) {
		const key = parseKey(config.secretKey);
		if (!key) throw new ConfigError("CRONJOB_SECRET_KEY", "CRONJOB_SECRET_KEY must be a 32-byte key: 64 hex digits or base64 (e.g. `openssl rand -hex 32`)");
		return new SecretBox(key, previous);
	}
	if (config.transporter !== null) {
		throw new ConfigError(
			"CRONJOB_SECRET_KEY",
			"CRONJOB_SECRET_KEY is not set: a cluster (TRANSPORTER set) needs the same secret key on every API and worker process to seal and open jobs' secretEnv (make one with `openssl rand -hex 32`)",
		);
	}
	const file = path.join(config.dataDir, "secret-key");
	fs.mkdirSync(config.dataDir, { recursive: true });
	let text: string;
	try {
		text = fs.readFileSync(file, "utf8");
	} catch (e) {
		if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
		try {
			// O_EXCL: two processes starting at once keep the first one's key.
			fs.writeFileSync(file, randomBytes(KEY_BYTES).toString("hex") + "\n", { mode: 0o600, flag: "wx" });
		} catch (w) {
			if ((w as NodeJS.ErrnoException).code !== "EEXIST") throw w;
		}
		text = fs.readFileSync(file, "utf8");
	}
	fs.chmodSync(file, 0o600);
	const key = parseKey(text);
	if (!key) throw new ConfigError("CRONJOB_SECRET_KEY", `${file} does not hold a 32-byte key (64 hex digits); remove it only if no job has secretEnv yet`);
	return new SecretBox(key, previous);
}
