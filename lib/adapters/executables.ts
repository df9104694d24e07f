/**
 * Executables of script and binary jobs in the object store. A job's `executable` arrives as base64
 * content (decoded strictly, lib/core/upload.ts, stored under its SHA-256) or as the URL of an object
 * already in this store; a command is kept as it is. An unreachable store is a 503 (retryable).
 */
import type { Readable } from "node:stream";
import { invalidField, unavailable } from "../core/errors";
import { decodeExecutable, sha256Hex } from "../core/upload";
import type { ObjectStore } from "./object-store";

/** What a job row keeps of its executable. */
export interface StoredExecutable {
	/** The command, or the stored object's URL. */
	executable: string;
	digest: string | null;
	/** Known for uploaded content; null for a command and for a URL given by the client. */
	size: number | null;
}

const URL_RE = /^[a-z][a-z0-9+.-]*:\/\//i;

export class Executables {
	constructor(
		private readonly store: ObjectStore,
		/** Bound on decoded uploads (CRONJOB_MAX_UPLOAD_BYTES). */
		private readonly maxUploadBytes: number,
	) {}

	/** Store a job's executable (validated already as a non-empty string of its type). */
	async save(type: string, executable: string): Promise<StoredExecutable> {
		if (type === "command") return { executable, digest: null, size: null };
		const store = this.store;
		if (URL_RE.test(executable) || executable.startsWith("file:")) {
			const digest = store.digestFromUrl(executable);
			if (!digest) throw invalidField("executable", "Only URLs of objects in this object store are accepted");
			let exists: boolean;
			try {
				exists = await store.exists(digest);
			} catch (err) {
				throw unavailable("object store", err);
			}
			if (!exists) throw invalidField("executable", "No such object in the object store");
			return { executable: store.urlFor(digest), digest, size: null };
		}
		const content = decodeExecutable(executable, this.maxUploadBytes);
		const digest = sha256Hex(content);
		try {
			const obj = await store.put(digest, content);
			return { executable: obj.url, digest, size: obj.size };
		} catch (err) {
			throw unavailable("object store", err);
		}
	}

	/** The stored object's bytes. */
	async open(digest: string): Promise<Readable> {
		try {
			return await this.store.get(digest);
		} catch (err) {
			throw unavailable("object store", err);
		}
	}
}
