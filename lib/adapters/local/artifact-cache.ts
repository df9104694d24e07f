/**
 * Per-node cache of executables, keyed by SHA-256, in a folder (`<dataDir>/cache`).
 *
 * - A cached file is named by its digest and is only ever created by renaming a fully downloaded
 *   temp file (`.<digest>.<pid>.<random>.tmp`, same folder) whose SHA-256 (and size, when given)
 *   matched. A mismatch deletes the temp file and throws ArtifactIntegrityError: a file that does
 *   not match is never left under the final name.
 * - The folder is 0700 (set explicitly, regardless of umask, also on a folder an older version made
 *   0755): no job can list it or open a file in it by its path, so a job never reads another job's
 *   executable. Files are 0755: the executor opens a job's own file and hands it to the process as
 *   an open file (fd 3, run as /dev/fd/3), and the kernel then checks only the file's own mode.
 * - Files found in the folder at start-up are re-hashed on first use (a crash or a disk fault can
 *   leave a renamed file with bad content, since downloads are not fsynced), stale temp files are
 *   deleted. One process per cache folder.
 * - Concurrent requests for one digest share one download.
 * - Eviction runs after each insert (and on evict()): files unused for more than maxAgeMs, then the
 *   least recently used until the total is under maxBytes. A file held by acquire() (a process about
 *   to start or running from it) or being downloaded is never evicted. path() holds the file only
 *   while it is being resolved: use acquire()/release() around spawn.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, promises as fsp } from "node:fs";
import * as path from "node:path";
import { Transform, type Readable, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type Clock } from "../../core/clock";
import { systemClock } from "../system/clock";
import { assertDigest, DIGEST_RE } from "../../core/upload";
import { ArtifactIntegrityError, ObjectStoreUnavailable } from "../../core/errors";
import { CACHED_EXECUTABLE_MODE, PRIVATE_DIR_MODE } from "../../core/data-layout";
import { type ObjectStore } from "../object-store";

export const DEFAULT_CACHE_MAX_BYTES = 512 * 1024 * 1024;
export const DEFAULT_CACHE_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

const FILE_MODE = CACHED_EXECUTABLE_MODE;
const DIR_MODE = PRIVATE_DIR_MODE;
const TEMP_RE = /^\.[0-9a-f]{64}\..*\.tmp$/;

export interface ArtifactCacheOptions {
	dir: string;
	store: ObjectStore;
	/** Total size budget (default 512 MiB). */
	maxBytes?: number;
	/** Files unused for longer than this are evicted (default 7 days). */
	maxAgeMs?: number;
	clock?: Clock;
}

export interface ArtifactLease {
	digest: string;
	path: string;
	size: number;
	/** Allow eviction again. Idempotent. */
	release(): void;
}

export interface ArtifactCacheStats {
	files: number;
	bytes: number;
	hits: number;
	downloads: number;
	evictions: number;
}

interface Entry {
	size: number;
	lastUsed: number;
	/** False for files found on disk at start-up, until re-hashed. */
	verified: boolean;
}

export class ArtifactCache {
	readonly dir: string;
	readonly maxBytes: number;
	readonly maxAgeMs: number;
	private readonly store: ObjectStore;
	private readonly clock: Clock;
	private readonly entries = new Map<string, Entry>();
	private readonly holds = new Map<string, number>();
	private readonly inflight = new Map<string, Promise<void>>();
	private readonly removing = new Map<string, Promise<void>>();
	private initPromise: Promise<void> | null = null;
	private counters = { hits: 0, downloads: 0, evictions: 0 };

	constructor(options: ArtifactCacheOptions) {
		this.dir = path.resolve(options.dir);
		this.store = options.store;
		this.maxBytes = options.maxBytes ?? DEFAULT_CACHE_MAX_BYTES;
		this.maxAgeMs = options.maxAgeMs ?? DEFAULT_CACHE_MAX_AGE_MS;
		this.clock = options.clock ?? systemClock();
	}

	/** Final path of a digest (whether or not it is cached). */
	fileFor(digest: string): string {
		assertDigest(digest);
		return path.join(this.dir, digest);
	}

	/**
	 * A local file (mode 0755, in the private folder) whose SHA-256 is `digest`, downloading it when not cached. Rejects with
	 * ArtifactIntegrityError, ObjectNotFound, or ObjectStoreUnavailable (transient).
	 */
	async path(digest: string, expectedSize?: number): Promise<string> {
		const lease = await this.acquire(digest, expectedSize);
		lease.release();
		return lease.path;
	}

	/** Like path(), but the file cannot be evicted until release(). */
	async acquire(digest: string, expectedSize?: number): Promise<ArtifactLease> {
		assertDigest(digest);
		this.hold(digest);
		try {
			await this.init();
			const size = await this.ensure(digest, expectedSize);
			let released = false;
			return {
				digest,
				path: this.fileFor(digest),
				size,
				release: () => {
					if (released) return;
					released = true;
					this.unhold(digest);
				},
			};
		} catch (err) {
			this.unhold(digest);
			throw err;
		}
	}

	/** Whether a digest is cached (as far as this process knows). */
	has(digest: string): boolean {
		return this.entries.has(digest);
	}

	stats(): ArtifactCacheStats {
		let bytes = 0;
		for (const e of this.entries.values()) bytes += e.size;
		return { files: this.entries.size, bytes, ...this.counters };
	}

	/** Evict old and least recently used files not in use; returns the evicted digests. */
	async evict(): Promise<string[]> {
		await this.init();
		const { digests, done } = this.evictNow();
		await done;
		return digests;
	}

	// ---------------------------------------------------------------------------------------------

	private hold(digest: string): void {
		this.holds.set(digest, (this.holds.get(digest) ?? 0) + 1);
	}

	private unhold(digest: string): void {
		const n = (this.holds.get(digest) ?? 0) - 1;
		if (n > 0) this.holds.set(digest, n);
		else this.holds.delete(digest);
	}

	private init(): Promise<void> {
		if (!this.initPromise) {
			this.initPromise = this.load().catch((err) => {
				this.initPromise = null;
				throw err;
			});
		}
		return this.initPromise;
	}

	private async load(): Promise<void> {
		await fsp.mkdir(this.dir, { recursive: true, mode: DIR_MODE });
		await fsp.chmod(this.dir, DIR_MODE);
		for (const name of await fsp.readdir(this.dir)) {
			const file = path.join(this.dir, name);
			if (TEMP_RE.test(name)) {
				await fsp.rm(file, { force: true });
			} else if (DIGEST_RE.test(name)) {
				const st = await fsp.stat(file).catch(() => null);
				if (st?.isFile() && !this.entries.has(name)) {
					this.entries.set(name, { size: st.size, lastUsed: st.mtimeMs, verified: false });
				}
			}
		}
		await this.evictNow().done;
	}

	/** Make sure the file is present and verified; returns its size. */
	private async ensure(digest: string, expectedSize?: number): Promise<number> {
		for (;;) {
			const pending = this.inflight.get(digest);
			if (pending) {
				await pending;
				continue;
			}
			const entry = this.entries.get(digest);
			if (entry && (await this.checkCached(digest, entry))) {
				if (expectedSize !== undefined && entry.size !== expectedSize) {
					const url = this.store.urlFor(digest);
					throw new ArtifactIntegrityError(`content of ${url} is ${entry.size} bytes, expected ${expectedSize}`, digest, url, digest, entry.size, expectedSize);
				}
				this.counters.hits++;
				await this.touch(digest, entry);
				return entry.size;
			}
			if (this.inflight.has(digest)) continue; // someone started meanwhile
			const download = this.download(digest, expectedSize);
			this.inflight.set(digest, download);
			try {
				await download;
			} finally {
				this.inflight.delete(digest);
			}
			return this.entries.get(digest)!.size;
		}
	}

	/** Whether a known entry is still usable; drops it otherwise. */
	private async checkCached(digest: string, entry: Entry): Promise<boolean> {
		const file = this.fileFor(digest);
		const st = await fsp.stat(file).catch(() => null);
		if (!st || !st.isFile() || st.size !== entry.size) {
			if (this.entries.get(digest) === entry) this.entries.delete(digest);
			if (st) await this.removeFile(digest);
			return false;
		}
		if (!entry.verified) {
			const actual = await hashFile(file);
			if (actual !== digest) {
				if (this.entries.get(digest) === entry) this.entries.delete(digest);
				await this.removeFile(digest);
				return false;
			}
			if ((st.mode & 0o777) !== FILE_MODE) await fsp.chmod(file, FILE_MODE);
			entry.verified = true;
		}
		return true;
	}

	private async touch(digest: string, entry: Entry): Promise<void> {
		entry.lastUsed = this.clock.now();
		const t = new Date(entry.lastUsed);
		await fsp.utimes(this.fileFor(digest), t, t).catch(() => undefined);
	}

	private async download(digest: string, expectedSize?: number): Promise<void> {
		const url = this.store.urlFor(digest);
		const final = this.fileFor(digest);
		const tmp = path.join(this.dir, `.${digest}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
		let source: Readable;
		try {
			source = await this.store.get(digest);
		} catch (err) {
			throw wrapStoreError(url, err);
		}
		this.counters.downloads++;
		const hash = createHash("sha256");
		let size = 0;
		let tooLong = false;
		const meter = new Transform({
			transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
				size += chunk.length;
				if (expectedSize !== undefined && size > expectedSize) {
					tooLong = true;
					cb(new Error("larger than expected"));
					return;
				}
				hash.update(chunk);
				cb(null, chunk);
			},
		});
		let renamed = false;
		const out = createWriteStream(tmp, { flags: "wx", mode: 0o600 });
		try {
			try {
				await pipeline(source, meter, out);
			} catch (err) {
				if (!tooLong) throw wrapStoreError(url, err);
			}
			const actual = tooLong ? null : hash.digest("hex");
			if (tooLong || actual !== digest || (expectedSize !== undefined && size !== expectedSize)) {
				const got = tooLong
					? `more than the expected ${expectedSize} bytes`
					: actual !== digest
						? actual
						: `${actual} but ${size} bytes instead of the expected ${expectedSize}`;
				throw new ArtifactIntegrityError(`content of ${url} does not match its SHA-256 ${digest}: got ${got}`, digest, url, actual, size, expectedSize);
			}
			await fsp.chmod(tmp, FILE_MODE);
			const removing = this.removing.get(digest);
			if (removing) await removing;
			await fsp.rename(tmp, final);
			renamed = true;
		} finally {
			if (!renamed) {
				// A pipeline cut short may reject before the file is even opened: wait until the stream
				// is closed, or the file would appear after its removal.
				if (!out.closed) await new Promise<void>((r) => out.once("close", () => r()));
				await fsp.rm(tmp, { force: true }).catch(() => undefined);
			}
		}
		const entry: Entry = { size, lastUsed: this.clock.now(), verified: true };
		this.entries.set(digest, entry);
		await this.touch(digest, entry);
		await this.evictNow().done;
	}

	/**
	 * Selection and index update are synchronous (no acquire can slip in between choosing and
	 * dropping an entry); `done` resolves when the files are deleted.
	 */
	private evictNow(): { digests: string[]; done: Promise<unknown> } {
		const now = this.clock.now();
		const evictable = [...this.entries.entries()].filter(([d]) => !this.holds.has(d) && !this.inflight.has(d)).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
		let total = 0;
		for (const e of this.entries.values()) total += e.size;
		const out: string[] = [];
		const removals: Promise<void>[] = [];
		for (const [digest, entry] of evictable) {
			const old = now - entry.lastUsed > this.maxAgeMs;
			if (!old && total <= this.maxBytes) continue;
			this.entries.delete(digest);
			total -= entry.size;
			out.push(digest);
			this.counters.evictions++;
			removals.push(this.removeFile(digest));
		}
		return { digests: out, done: Promise.all(removals) };
	}

	private removeFile(digest: string): Promise<void> {
		const prev = this.removing.get(digest) ?? Promise.resolve();
		const p = prev
			.then(() => fsp.rm(this.fileFor(digest), { force: true }))
			.catch(() => undefined)
			.finally(() => {
				if (this.removing.get(digest) === p) this.removing.delete(digest);
			});
		this.removing.set(digest, p);
		return p;
	}
}

function wrapStoreError(url: string, err: unknown): unknown {
	if (err instanceof ObjectStoreUnavailable) {
		return new ObjectStoreUnavailable(`cannot fetch ${url}: ${err.message}`, { cause: err });
	}
	return err;
}

async function hashFile(file: string): Promise<string> {
	const hash = createHash("sha256");
	for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
	return hash.digest("hex");
}
