/**
 * Object stores (local folder and S3 against a real s3rver) and the per-node ArtifactCache.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import type { Readable } from "node:stream";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { ArtifactCache } from "../../lib/adapters/local/artifact-cache";
import type { Clock } from "../../lib/core/clock";
import { ArtifactIntegrityError, FieldError, ObjectNotFound, ObjectStoreUnavailable } from "../../lib/core/errors";
import { isTransientStoreError, type ObjectStore } from "../../lib/adapters/object-store";
import { createObjectStore } from "../../app/object-store";
import { loadConfig } from "../../lib/config";
import { LocalObjectStore } from "../../lib/adapters/local/object-store";
import { S3ObjectStore } from "../../lib/adapters/s3/object-store";
import { sha256Hex } from "../../lib/core/upload";
import { freePort, startS3, type TestS3 } from "../support/s3";

let s3: TestS3;
let tmp: string;
const opened: S3ObjectStore[] = [];

beforeAll(async () => {
	s3 = await startS3();
	tmp = fs.mkdtempSync(path.join(os.tmpdir(), "objectstore-test-"));
});

afterAll(async () => {
	for (const s of opened) s.close();
	await s3?.stop();
	if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function s3Store(overrides: Partial<ConstructorParameters<typeof S3ObjectStore>[0]> = {}): S3ObjectStore {
	const store = new S3ObjectStore({
		endpoint: s3.endpoint,
		bucket: s3.bucket,
		region: s3.region,
		accessKeyId: s3.accessKeyId,
		secretAccessKey: s3.secretAccessKey,
		...overrides,
	});
	opened.push(store);
	return store;
}

let seq = 0;
function uniqueContent(size = 100, tag = ""): Buffer {
	const head = Buffer.from(`#!/bin/sh\n# ${process.pid} ${Date.now()} ${++seq} ${tag}\n`);
	return Buffer.concat([head, Buffer.alloc(Math.max(0, size - head.length), 0x23)]);
}

async function readAll(stream: Readable): Promise<Buffer> {
	const chunks: Buffer[] = [];
	for await (const c of stream) chunks.push(c as Buffer);
	return Buffer.concat(chunks);
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
	try {
		await p;
	} catch (err) {
		return err;
	}
	throw new Error("expected a rejection");
}

class FakeClock implements Clock {
	constructor(public t = Date.UTC(2030, 0, 1)) {}
	now() {
		return this.t;
	}
	setTimeout(): never {
		throw new Error("not used");
	}
	clearTimeout(): void {}
	advance(ms: number) {
		this.t += ms;
	}
}

/** Counts get() calls; optionally delays them so concurrent callers overlap. */
function counting(store: ObjectStore, delayMs = 0): ObjectStore & { gets: number } {
	const wrapper = Object.create(store) as ObjectStore & { gets: number };
	wrapper.gets = 0;
	wrapper.get = async (digest: string) => {
		wrapper.gets++;
		if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
		return store.get(digest);
	};
	return wrapper;
}

const ZERO = "0".repeat(64);
const BAD_DIGESTS = ["", "abc", "A".repeat(64), "g".repeat(64), "../../../etc/passwd", `${ZERO}/..`, `${ZERO}0`];

const kinds: Array<["local" | "s3", () => ObjectStore]> = [
	["local", () => new LocalObjectStore({ dataDir: path.join(tmp, "data-local") })],
	["s3", () => s3Store()],
];

describe.each(kinds)("%s object store contract", (kind, make) => {
	let store: ObjectStore;
	beforeAll(() => {
		store = make();
	});

	test("kind and ping", async () => {
		expect(store.kind).toBe(kind);
		await expect(store.ping()).resolves.toBeUndefined();
	});

	test("put → exists → get round-trip; StoredObject fields; URL names the digest", async () => {
		const content = uniqueContent(300);
		const digest = sha256Hex(content);
		expect(await store.exists(digest)).toBe(false);
		const stored = await store.put(digest, content);
		expect(stored).toEqual({ url: store.urlFor(digest), key: expect.stringContaining(digest), digest, size: content.length });
		if (kind === "s3") {
			expect(stored.key).toBe(`sha256/${digest}`);
			expect(stored.url).toBe(`s3://${s3.bucket}/sha256/${digest}`);
		} else {
			expect(stored.key).toBe(`sha256/${digest.slice(0, 2)}/${digest}`);
			expect(stored.url).toMatch(/^file:\/\/\//);
			expect(fs.readFileSync(new URL(stored.url)).equals(content)).toBe(true);
		}
		expect(await store.exists(digest)).toBe(true);
		expect((await readAll(await store.get(digest))).equals(content)).toBe(true);
		expect(store.digestFromUrl(stored.url)).toBe(digest);
	});

	test("binary content round-trips byte-exact (/usr/bin/id)", async () => {
		const content = fs.readFileSync("/usr/bin/id");
		const digest = sha256Hex(content);
		await store.put(digest, content);
		const back = await readAll(await store.get(digest));
		expect(back.length).toBe(content.length);
		expect(sha256Hex(back)).toBe(digest);
	});

	test("put is idempotent (second put does not rewrite)", async () => {
		const content = uniqueContent(50);
		const digest = sha256Hex(content);
		const first = await store.put(digest, content);
		let puts = 0;
		if (store instanceof S3ObjectStore) {
			const send = store.client.send.bind(store.client);
			const spy = jest.spyOn(store.client, "send").mockImplementation(((cmd: { constructor: { name: string } }) => {
				if (cmd.constructor.name === "PutObjectCommand") puts++;
				return send(cmd as never);
			}) as never);
			try {
				expect(await store.put(digest, content)).toEqual(first);
			} finally {
				spy.mockRestore();
			}
		} else {
			const file = (store as LocalObjectStore).pathFor(digest);
			const before = fs.statSync(file);
			expect(await store.put(digest, content)).toEqual(first);
			const after = fs.statSync(file);
			expect(after.ino).toBe(before.ino);
			expect(after.mtimeMs).toBe(before.mtimeMs);
		}
		expect(puts).toBe(0);
		expect((await readAll(await store.get(digest))).equals(content)).toBe(true);
	});

	test("put refuses content that does not match the digest", async () => {
		const err = await rejection(store.put(sha256Hex(Buffer.from("a")), Buffer.from("b")));
		expect(err).toBeInstanceOf(FieldError);
		expect((err as FieldError).field).toBe("digest");
	});

	test("get of a missing object → ObjectNotFound (not transient)", async () => {
		const digest = sha256Hex(uniqueContent(10, "missing"));
		const err = await rejection(store.get(digest));
		expect(err).toBeInstanceOf(ObjectNotFound);
		expect(isTransientStoreError(err)).toBe(false);
		expect(await store.exists(digest)).toBe(false);
	});

	test.each(BAD_DIGESTS)("invalid digest %j is refused by every method", async (bad) => {
		await expect(store.put(bad, Buffer.from("x"))).rejects.toBeInstanceOf(FieldError);
		await expect(store.get(bad)).rejects.toBeInstanceOf(FieldError);
		await expect(store.exists(bad)).rejects.toBeInstanceOf(FieldError);
		expect(() => store.urlFor(bad)).toThrow(FieldError);
	});

	test("digestFromUrl accepts only our own URL form", () => {
		const d = sha256Hex(Buffer.from("x"));
		const url = store.urlFor(d);
		expect(store.digestFromUrl(url)).toBe(d);
		const foreign = [
			`s3://otherbucket/sha256/${d}`,
			`s3://${s3.bucket}/sha256/${d.toUpperCase()}`,
			`s3://${s3.bucket}/other/${d}`,
			"file:///etc/passwd",
			`file:///tmp/objects/sha256/${d.slice(0, 2)}/${d}`,
			`http://127.0.0.1/sha256/${d}`,
			`https://example.com/${d}`,
			`${url}/`,
			`${url}x`,
			`${url}?v=1`,
			`${url}#x`,
			`${url}/../${d}`,
			url.replace(d, `../../../../etc/passwd`),
			url.replace(d, `..%2F..%2F${d}`),
			url.replace(/[0-9a-f]{64}$/, `${d.slice(0, 63)}`),
			` ${url}`,
			url.toUpperCase(),
			"",
			d,
		];
		if (kind === "local") {
			// A digest under the wrong fan-out folder.
			foreign.push(url.replace(`/${d.slice(0, 2)}/`, `/ff/`));
			foreign.push(url.replace(`/sha256/${d.slice(0, 2)}/`, `/sha256/${d.slice(0, 2)}/../${d.slice(0, 2)}/`));
		}
		for (const u of foreign) expect([u, store.digestFromUrl(u)]).toEqual([u, null]);
		expect(store.digestFromUrl(42 as unknown as string)).toBeNull();
	});
});

describe("URL forms across instances", () => {
	test("a store refuses another bucket's / folder's URLs and the other kind's", () => {
		const d = sha256Hex(Buffer.from("y"));
		const a = new LocalObjectStore({ dataDir: path.join(tmp, "a") });
		const b = new LocalObjectStore({ dataDir: path.join(tmp, "b") });
		const c = s3Store();
		const other = s3Store({ bucket: "otherbucket" });
		expect(a.urlFor(d)).toBe(`file://${path.join(tmp, "a", "objects")}/sha256/${d.slice(0, 2)}/${d}`);
		expect(a.digestFromUrl(b.urlFor(d))).toBeNull();
		expect(a.digestFromUrl(c.urlFor(d))).toBeNull();
		expect(c.digestFromUrl(a.urlFor(d))).toBeNull();
		expect(c.digestFromUrl(other.urlFor(d))).toBeNull();
		expect(other.digestFromUrl(other.urlFor(d))).toBe(d);
	});

	test("a data folder with special characters gives a percent-encoded, still recognised URL", () => {
		const d = sha256Hex(Buffer.from("z"));
		const s = new LocalObjectStore({ dataDir: path.join(tmp, "with space#and%") });
		const url = s.urlFor(d);
		expect(url).toContain("with%20space%23and%25");
		expect(s.digestFromUrl(url)).toBe(d);
	});
});

describe("createObjectStore from the configuration", () => {
	test("S3 only when S3_ENDPOINT is set", () => {
		const local = loadConfig({ CRONJOB_DATA_DIR: "/x" });
		expect(local).toMatchObject({ dataDir: "/x", s3: null });
		expect(createObjectStore(local).kind).toBe("local");
		const cfg = loadConfig({ S3_ENDPOINT: s3.endpoint, AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER" });
		expect(cfg.s3).toEqual({ endpoint: s3.endpoint, bucket: "cronjob", region: "us-east-1", accessKeyId: "S3RVER", secretAccessKey: "S3RVER" });
		const store = createObjectStore(cfg);
		expect(store.kind).toBe("s3");
		store.close?.();
	});
});

describe("S3 store unreachable", () => {
	test("closed port → ObjectStoreUnavailable (transient) quickly", async () => {
		const port = await freePort();
		const store = s3Store({ endpoint: `http://127.0.0.1:${port}` });
		for (const op of [() => store.ping(), () => store.exists(ZERO), () => store.get(ZERO), () => store.put(sha256Hex(Buffer.from("q")), Buffer.from("q"))]) {
			const t0 = Date.now();
			const err = await rejection(op());
			expect(Date.now() - t0).toBeLessThan(5000);
			expect(err).toBeInstanceOf(ObjectStoreUnavailable);
			expect(isTransientStoreError(err)).toBe(true);
			expect((err as Error).message).toMatch(/unavailable.*ECONNREFUSED/);
		}
	});

	test("a server that accepts but never answers → ObjectStoreUnavailable after the request timeout", async () => {
		const sockets: net.Socket[] = [];
		const hang = net.createServer((s) => sockets.push(s));
		await new Promise<void>((r) => hang.listen(0, "127.0.0.1", r));
		const port = (hang.address() as net.AddressInfo).port;
		try {
			const store = s3Store({ endpoint: `http://127.0.0.1:${port}`, requestTimeoutMs: 300, maxAttempts: 2 });
			const t0 = Date.now();
			const err = await rejection(store.exists(ZERO));
			const elapsed = Date.now() - t0;
			expect(err).toBeInstanceOf(ObjectStoreUnavailable);
			expect(elapsed).toBeGreaterThanOrEqual(300);
			expect(elapsed).toBeLessThan(3000);
			// ping() has its own overall deadline (all attempts).
			const pinger = s3Store({ endpoint: `http://127.0.0.1:${port}`, pingTimeoutMs: 300 });
			const t1 = Date.now();
			const perr = await rejection(pinger.ping());
			expect(perr).toBeInstanceOf(ObjectStoreUnavailable);
			expect((perr as Error).message).toMatch(/no answer within 300 ms/);
			expect(Date.now() - t1).toBeLessThan(2000);
		} finally {
			for (const s of sockets) s.destroy();
			await new Promise((r) => hang.close(r));
		}
	});

	test("wrong credentials → a non-transient ObjectStoreError", async () => {
		if (!s3.local) return; // an external server's auth behaviour is its own
		const store = s3Store({ accessKeyId: "WRONG", secretAccessKey: "WRONG" });
		const err = await rejection(store.exists(ZERO));
		expect(isTransientStoreError(err)).toBe(false);
		expect(err).not.toBeInstanceOf(ObjectNotFound);
		expect((err as Error).message).toMatch(/HTTP 403/);
	});
});

describe.each(kinds)("ArtifactCache on the %s store", (kind, make) => {
	let store: ObjectStore;
	let n = 0;
	const cacheDir = () => path.join(tmp, `cache-${kind}-${++n}`);
	beforeAll(() => {
		store = make();
	});

	/** Replace the stored bytes under an existing digest, behind the store's back. */
	async function tamper(digest: string, bytes: Buffer) {
		if (store instanceof S3ObjectStore) {
			await store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: store.keyFor(digest), Body: bytes, ContentLength: bytes.length }));
		} else {
			fs.writeFileSync((store as LocalObjectStore).pathFor(digest), bytes);
		}
	}

	test("fetches, verifies, mode 0755, and the cached /usr/bin/id runs", async () => {
		const content = fs.readFileSync("/usr/bin/id");
		const digest = sha256Hex(content);
		await store.put(digest, content);
		const dir = cacheDir();
		const cache = new ArtifactCache({ dir, store });
		const file = await cache.path(digest, content.length);
		expect(file).toBe(path.join(dir, digest));
		const st = fs.statSync(file);
		expect(st.mode & 0o777).toBe(0o755);
		expect(st.uid).toBe(process.getuid!());
		expect(fs.statSync(dir).mode & 0o777).toBe(0o700); // private: jobs get their file open (fd 3)
		expect(sha256Hex(fs.readFileSync(file))).toBe(digest);
		expect(execFileSync(file, ["-u"]).toString()).toBe(execFileSync("/usr/bin/id", ["-u"]).toString());
		expect(execFileSync(file).toString()).toBe(execFileSync("/usr/bin/id").toString());
		// Second call: cached, no new download.
		expect(await cache.path(digest)).toBe(file);
		expect(cache.stats()).toMatchObject({ files: 1, bytes: content.length, downloads: 1, hits: 1 });
		expect(fs.readdirSync(dir)).toEqual([digest]);
	});

	test("a tampered object → ArtifactIntegrityError, nothing left in the cache folder", async () => {
		const content = uniqueContent(200, "genuine");
		const digest = sha256Hex(content);
		await store.put(digest, content);
		const evil = uniqueContent(200, "evil");
		await tamper(digest, evil);
		const dir = cacheDir();
		const cache = new ArtifactCache({ dir, store });
		const err = await rejection(cache.path(digest));
		expect(err).toBeInstanceOf(ArtifactIntegrityError);
		expect((err as Error).message).toBe(`content of ${store.urlFor(digest)} does not match its SHA-256 ${digest}: got ${sha256Hex(evil)}`);
		expect((err as ArtifactIntegrityError).actualDigest).toBe(sha256Hex(evil));
		expect(fs.existsSync(cache.fileFor(digest))).toBe(false);
		expect(fs.readdirSync(dir)).toEqual([]);
		expect(cache.has(digest)).toBe(false);

		// With an expected size: a longer object is cut off early, still no file left.
		await tamper(digest, Buffer.concat([content, Buffer.from("trailer")]));
		const err2 = await rejection(cache.path(digest, content.length));
		expect(err2).toBeInstanceOf(ArtifactIntegrityError);
		expect((err2 as Error).message).toMatch(/more than the expected 200 bytes/);
		expect(fs.readdirSync(dir)).toEqual([]);

		// Repaired in the store → works.
		await tamper(digest, content);
		const file = await cache.path(digest, content.length);
		expect(fs.readFileSync(file).equals(content)).toBe(true);
	});

	test("missing object → ObjectNotFound, nothing left", async () => {
		const dir = cacheDir();
		const cache = new ArtifactCache({ dir, store });
		const err = await rejection(cache.path(sha256Hex(uniqueContent(5, "nowhere"))));
		expect(err).toBeInstanceOf(ObjectNotFound);
		expect(fs.readdirSync(dir)).toEqual([]);
	});

	test("concurrent path() calls for one digest share one download", async () => {
		const content = uniqueContent(64 * 1024);
		const digest = sha256Hex(content);
		await store.put(digest, content);
		const counted = counting(store, 50);
		const cache = new ArtifactCache({ dir: cacheDir(), store: counted });
		const paths = await Promise.all(Array.from({ length: 8 }, () => cache.path(digest)));
		expect(new Set(paths).size).toBe(1);
		expect(counted.gets).toBe(1);
		expect(cache.stats().downloads).toBe(1);
		expect(fs.readFileSync(paths[0]).equals(content)).toBe(true);
	});

	test("eviction: least recently used beyond maxBytes, never a held file", async () => {
		const clock = new FakeClock();
		const items = Array.from({ length: 4 }, (_, i) => uniqueContent(1000, `lru${i}`));
		const [a, b, c, d] = items.map((x) => sha256Hex(x));
		for (const x of items) await store.put(sha256Hex(x), x);
		const cache = new ArtifactCache({ dir: cacheDir(), store, maxBytes: 2500, clock });
		const present = () => [a, b, c, d].filter((x) => fs.existsSync(cache.fileFor(x)));

		await cache.path(a);
		clock.advance(10);
		await cache.path(b);
		clock.advance(10);
		await cache.path(a); // a is now more recent than b
		clock.advance(10);
		await cache.path(c); // 3000 > 2500 → evict b (LRU)
		expect(present().sort()).toEqual([a, c].sort());
		expect(cache.stats()).toMatchObject({ files: 2, bytes: 2000, evictions: 1 });

		// a is the LRU now, but held (e.g. a process running from it): d's insert evicts c instead.
		const lease = await cache.acquire(a);
		clock.advance(10);
		await cache.path(c);
		clock.advance(10);
		await cache.path(d);
		expect(present().sort()).toEqual([a, d].sort());
		expect(fs.statSync(lease.path).mode & 0o777).toBe(0o755);
		lease.release();
		lease.release(); // idempotent
		expect(await cache.evict()).toEqual([]); // 2000 <= 2500: nothing to do
	});

	test("eviction: files unused for longer than maxAgeMs, except held ones", async () => {
		const clock = new FakeClock();
		const items = Array.from({ length: 3 }, (_, i) => uniqueContent(100, `age${i}`));
		const [a, b, c] = items.map((x) => sha256Hex(x));
		for (const x of items) await store.put(sha256Hex(x), x);
		const cache = new ArtifactCache({ dir: cacheDir(), store, maxAgeMs: 60_000, clock });

		await cache.path(a);
		const lease = await cache.acquire(b);
		clock.advance(61_000);
		await cache.path(c); // a is too old → evicted; b too, but it is held
		expect(fs.existsSync(cache.fileFor(a))).toBe(false);
		expect(fs.existsSync(cache.fileFor(b))).toBe(true);
		expect(fs.existsSync(cache.fileFor(c))).toBe(true);
		lease.release();
		expect(await cache.evict()).toEqual([b]);
		expect(fs.existsSync(cache.fileFor(b))).toBe(false);
		// Use refreshes the age: c used now, then 59 s later it is still there.
		clock.advance(30_000);
		await cache.path(c);
		clock.advance(59_000);
		expect(await cache.evict()).toEqual([]);
		// An evicted file is fetched again on demand.
		expect(fs.readFileSync(await cache.path(a)).equals(items[0])).toBe(true);
	});

	test("a new cache on the same folder reuses files, re-hashes them once, and replaces a corrupted one", async () => {
		const good = uniqueContent(500, "reuse");
		const digest = sha256Hex(good);
		await store.put(digest, good);
		const dir = cacheDir();
		const first = new ArtifactCache({ dir, store });
		const file = await first.path(digest);
		fs.writeFileSync(path.join(dir, `.${digest}.1.abc.tmp`), "stale temp");

		const counted = counting(store);
		const second = new ArtifactCache({ dir, store: counted });
		expect(await second.path(digest)).toBe(file);
		expect(counted.gets).toBe(0);
		expect(fs.existsSync(path.join(dir, `.${digest}.1.abc.tmp`))).toBe(false);

		// Corrupted on disk (same size) between runs → detected on first use, downloaded again.
		const bad = Buffer.from(good);
		bad[bad.length - 1] ^= 0xff;
		fs.writeFileSync(file, bad);
		const third = new ArtifactCache({ dir, store: counted });
		expect(await third.path(digest)).toBe(file);
		expect(counted.gets).toBe(1);
		expect(fs.readFileSync(file).equals(good)).toBe(true);
		expect(fs.statSync(file).mode & 0o777).toBe(0o755);
	});

	test("invalid digests are refused", async () => {
		const cache = new ArtifactCache({ dir: cacheDir(), store });
		for (const bad of BAD_DIGESTS) {
			await expect(cache.path(bad)).rejects.toBeInstanceOf(FieldError);
		}
	});
});

describe("ArtifactCache: store down, then back up", () => {
	test("transient error within 5 s, clear message; works again when the store is back", async () => {
		const store = s3Store();
		const content = uniqueContent(1000, "outage");
		const digest = sha256Hex(content);
		await store.put(digest, content);
		const cache = new ArtifactCache({ dir: path.join(tmp, "cache-outage"), store });

		// When S3 is external it cannot be stopped here: simulate the outage with a closed port.
		const downStore = s3.local ? store : s3Store({ endpoint: `http://127.0.0.1:${await freePort()}` });
		const downCache = s3.local ? cache : new ArtifactCache({ dir: path.join(tmp, "cache-outage"), store: downStore });
		await s3.down();
		try {
			const t0 = Date.now();
			const err = await rejection(downCache.path(digest));
			const elapsed = Date.now() - t0;
			expect(elapsed).toBeLessThan(5000);
			expect(err).toBeInstanceOf(ObjectStoreUnavailable);
			expect(isTransientStoreError(err)).toBe(true);
			expect((err as Error).message).toMatch(
				new RegExp(`^cannot fetch s3://${s3.bucket}/sha256/${digest}: S3 bucket ${s3.bucket} at .* is unavailable: GetObject failed: .*ECONNREFUSED`),
			);
			await expect(downStore.ping()).rejects.toBeInstanceOf(ObjectStoreUnavailable);
			expect(fs.existsSync(downCache.fileFor(digest))).toBe(false);
			expect(fs.readdirSync(downCache.dir)).toEqual([]);
		} finally {
			await s3.up();
		}
		await expect(store.ping()).resolves.toBeUndefined();
		const file = await cache.path(digest);
		expect(fs.readFileSync(file).equals(content)).toBe(true);
	});
});
