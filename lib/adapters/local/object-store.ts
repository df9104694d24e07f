/**
 * The embedded object store: a folder `<dataDir>/objects` holding `sha256/<aa>/<digest>` files,
 * where `<aa>` is the first two hex characters of the digest. Keys derive from the digest only.
 *
 * URL form: `file://<absolute objects folder>/sha256/<aa>/<digest>` (built with pathToFileURL, so
 * special characters in the folder are percent-encoded). digestFromUrl accepts exactly that form
 * for this store's folder and nothing else.
 *
 * Writes go to a temp file (`.<digest>.<pid>.<random>.tmp`) in the destination folder, are fsynced,
 * then renamed onto the final name: a reader never sees a half-written object under its key.
 *
 * Private to the node (lib/core/data-layout.ts): the folder 0700 (set at first use, also on one an
 * older version made 0755), subfolders 0700, files 0600. Jobs never read the store: the worker
 * copies what a run needs into its cache.
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants, promises as fsp } from "node:fs";
import * as path from "node:path";
import type { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import { FieldError } from "../../core/errors";
import { assertDigest } from "../../core/upload";
import { ObjectNotFound, ObjectStoreUnavailable } from "../../core/errors";
import { type ObjectStore, type StoredObject } from "../object-store";
import { sha256Hex } from "../../core/upload";
import { OBJECTS_DIR, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from "../../core/data-layout";

export interface LocalObjectStoreOptions {
	/** The node's data folder; objects live in `<dataDir>/objects`. */
	dataDir: string;
}

export class LocalObjectStore implements ObjectStore {
	readonly kind = "local" as const;
	/** Absolute path of the objects folder. */
	readonly root: string;
	private readonly urlPrefix: string;
	/** The root made private once (mkdir + chmod), then taken as it is. */
	private rootReady: Promise<void> | null = null;

	constructor(options: LocalObjectStoreOptions) {
		this.root = path.resolve(options.dataDir, OBJECTS_DIR);
		this.urlPrefix = pathToFileURL(this.root).href.replace(/\/?$/, "/") + "sha256/";
	}

	/** The key (relative path) of a digest. */
	keyFor(digest: string): string {
		assertDigest(digest);
		return `sha256/${digest.slice(0, 2)}/${digest}`;
	}

	/** The absolute file path of a digest. */
	pathFor(digest: string): string {
		return path.join(this.root, ...this.keyFor(digest).split("/"));
	}

	urlFor(digest: string): string {
		assertDigest(digest);
		return `${this.urlPrefix}${digest.slice(0, 2)}/${digest}`;
	}

	digestFromUrl(url: string): string | null {
		if (typeof url !== "string" || !url.startsWith(this.urlPrefix)) return null;
		const rest = url.slice(this.urlPrefix.length);
		const m = /^([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(rest);
		if (!m || !m[2].startsWith(m[1])) return null;
		return m[2];
	}

	async put(digest: string, content: Buffer): Promise<StoredObject> {
		assertDigest(digest);
		const actual = sha256Hex(content);
		if (actual !== digest) throw new FieldError("digest", `content does not match its SHA-256 ${digest}: got ${actual}`);
		const stored: StoredObject = { url: this.urlFor(digest), key: this.keyFor(digest), digest, size: content.length };
		const file = this.pathFor(digest);
		try {
			const st = await fsp.stat(file);
			if (st.isFile() && st.size === content.length) return stored;
		} catch (err) {
			if (!isErrno(err, "ENOENT")) throw this.unavailable("stat", err);
		}
		const dir = path.dirname(file);
		const tmp = path.join(dir, `.${digest}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
		try {
			await this.ensureRoot();
			await fsp.mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
			const fh = await fsp.open(tmp, "wx", PRIVATE_FILE_MODE);
			try {
				await fh.writeFile(content);
				await fh.sync();
			} finally {
				await fh.close();
			}
			await fsp.rename(tmp, file);
		} catch (err) {
			await fsp.rm(tmp, { force: true }).catch(() => undefined);
			throw this.unavailable("write", err);
		}
		return stored;
	}

	async get(digest: string): Promise<Readable> {
		assertDigest(digest);
		let fh: fsp.FileHandle;
		try {
			fh = await fsp.open(this.pathFor(digest), "r");
		} catch (err) {
			if (isErrno(err, "ENOENT")) throw new ObjectNotFound(digest, this.urlFor(digest));
			throw this.unavailable("read", err);
		}
		return fh.createReadStream({ autoClose: true });
	}

	async exists(digest: string): Promise<boolean> {
		assertDigest(digest);
		try {
			return (await fsp.stat(this.pathFor(digest))).isFile();
		} catch (err) {
			if (isErrno(err, "ENOENT")) return false;
			throw this.unavailable("stat", err);
		}
	}

	async ping(): Promise<void> {
		try {
			await this.ensureRoot();
			await fsp.mkdir(this.root, { recursive: true, mode: PRIVATE_DIR_MODE });
			await fsp.access(this.root, fsConstants.R_OK | fsConstants.W_OK | fsConstants.X_OK);
		} catch (err) {
			throw this.unavailable("access", err);
		}
	}

	private ensureRoot(): Promise<void> {
		this.rootReady ??= (async () => {
			await fsp.mkdir(this.root, { recursive: true, mode: PRIVATE_DIR_MODE });
			await fsp.chmod(this.root, PRIVATE_DIR_MODE);
		})().catch((err: unknown) => {
			this.rootReady = null;
			throw err;
		});
		return this.rootReady;
	}

	private unavailable(op: string, err: unknown): ObjectStoreUnavailable {
		const reason = err instanceof Error ? err.message : String(err);
		return new ObjectStoreUnavailable(`local object store (${this.root}) ${op} failed: ${reason}`, { cause: err });
	}
}

function isErrno(err: unknown, code: string): boolean {
	return !!err && typeof err === "object" && (err as NodeJS.ErrnoException).code === code;
}
