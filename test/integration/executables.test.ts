/**
 * Scripts and binaries end to end: upload (base64) through the REST API into the object store (a
 * real s3rver, and the embedded local folder), fetch + SHA-256 check + run on a worker (in this
 * process and in another OS process), URL reuse, refusals (422/413), a tampered object, the store
 * going down and coming back, and downloading the stored file.
 */
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { S3ObjectStore } from "../../lib/adapters/s3/object-store";
import { sha256Hex } from "../../lib/core/upload";
import { ADMIN_TOKEN, startNode, tempDir, type TestNode } from "../support/node";
import { freePort, startProcess, waitHealthy, type NodeProcess } from "../support/proc";
import { startS3, type TestS3 } from "../support/s3";
import { waitFor } from "../support/wait";

const SCHEDULE = "0 0 1 1 *"; // far away: runs here are manual
const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;
const ID_BINARY = fs.readFileSync("/usr/bin/id");

let s3: TestS3;
const dirs: string[] = [];

beforeAll(async () => {
	s3 = await startS3();
});

afterAll(async () => {
	await s3?.stop();
	for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function dir(prefix: string, mode = 0o755): string {
	const d = tempDir(prefix);
	fs.chmodSync(d, mode);
	dirs.push(d);
	return d;
}

function s3Env(s: TestS3): Record<string, string> {
	return { S3_ENDPOINT: s.endpoint, S3_BUCKET: s.bucket, AWS_REGION: s.region, AWS_ACCESS_KEY_ID: s.accessKeyId, AWS_SECRET_ACCESS_KEY: s.secretAccessKey };
}

/** A private in-process s3rver even when S3_ENDPOINT names an external one (it must be stoppable). */
async function startPrivateS3(): Promise<TestS3> {
	const saved = process.env.S3_ENDPOINT;
	delete process.env.S3_ENDPOINT;
	try {
		return await startS3();
	} finally {
		if (saved !== undefined) process.env.S3_ENDPOINT = saved;
	}
}

let seq = 0;
/** Unique script content (objects are content-addressed and the bucket may be shared). */
function script(body: string, shebang: string | null = "#!/bin/sh"): Buffer {
	const tag = `# ${process.pid}-${Date.now()}-${++seq}-${Math.random().toString(36).slice(2)}`;
	return Buffer.from(`${shebang ? shebang + "\n" : ""}${tag}\n${body}\n`);
}

const b64 = (buf: Buffer) => buf.toString("base64");

type Api = (method: string, p: string, opts?: { body?: unknown; token?: string | null }) => Promise<{ status: number; body: any }>;

function apiFor(baseUrl: string): Api {
	return async (method, p, opts = {}) => {
		const headers: Record<string, string> = {};
		const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
		if (token) headers.authorization = `Bearer ${token}`;
		if (opts.body !== undefined) headers["content-type"] = "application/json";
		const res = await fetch(baseUrl + p, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
		const text = await res.text();
		let body: unknown = text;
		try {
			body = text ? JSON.parse(text) : null;
		} catch {
			/* not JSON */
		}
		return { status: res.status, body };
	};
}

async function createJob(api: Api, over: Record<string, unknown>, token?: string) {
	const res = await api("POST", "/jobs", { body: { schedule: SCHEDULE, ...over }, token });
	if (res.status !== 201) throw new Error(`POST /jobs answered ${res.status}: ${JSON.stringify(res.body)}`);
	return res.body;
}

/** POST /jobs/{id}/run and wait until that run has finished. */
async function runToEnd(api: Api, jobId: string, token?: string, timeoutMs = 20_000) {
	const started = await api("POST", `/jobs/${jobId}/run`, { token });
	expect(started.status).toBe(202);
	expect(started.body).toMatchObject({ id: expect.any(String), jobId, status: "running" });
	return waitFor(
		async () => {
			const runs = await api("GET", `/jobs/${jobId}/runs`, { token });
			const run = (runs.body as any[]).find((r) => r.id === started.body.id);
			return run && run.status !== "running" ? run : null;
		},
		timeoutMs,
		`run ${started.body.id} of job ${jobId} to finish`,
		50,
	);
}

function expectedUrl(kind: "s3" | "local", node: TestNode, digest: string): string {
	if (kind === "s3") return `s3://${s3.bucket}/sha256/${digest}`;
	return `${pathToFileURL(path.join(node.dataDir, "objects")).href}/sha256/${digest.slice(0, 2)}/${digest}`;
}

/** SIGTERM, then SIGKILL if the process has not exited within 10 s. */
async function stopProcess(p: NodeProcess): Promise<void> {
	p.child.kill("SIGTERM");
	let timer: NodeJS.Timeout | undefined;
	const timedOut = await Promise.race([p.exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(r, 10_000, true)))]);
	clearTimeout(timer);
	if (timedOut) await p.kill("SIGKILL");
}

function modeOf(file: string): number {
	return fs.statSync(file).mode & 0o777;
}

// ---------------------------------------------------------------------------------------------

describe.each([["s3" as const], ["local" as const]])("on the %s object store", (kind) => {
	let node: TestNode;
	let api: Api;
	let alice: { id: string; token: string };
	let bob: { id: string; token: string };
	let markers: string;

	beforeAll(async () => {
		node = await startNode(kind === "s3" ? s3Env(s3) : {});
		dirs.push(node.dataDir);
		api = apiFor(node.url);
		expect(node.config.s3 === null).toBe(kind === "local");
		const a = await api("POST", "/users", { body: { name: `alice-${kind}` } });
		expect(a.status).toBe(201);
		alice = { id: a.body.id, token: a.body.token };
		const b = await api("POST", "/users", { body: { name: `bob-${kind}` } });
		bob = { id: b.body.id, token: b.body.token };
		// World-writable so a job running as nobody can leave marker files here.
		markers = dir("exec-markers-", 0o777);
	});

	afterAll(async () => {
		await node?.stop();
	});

	test("a script with a shebang (bash-only syntax): 201 with the object URL, digest and size; runs; cached 0755", async () => {
		const content = script(
			'arr=(one two three)\nif [[ ${#arr[@]} -eq 3 ]]; then echo "bash arrays: ${#arr[@]} job=$CRONJOB_JOB_ID"; fi\nid -un',
			"#!/usr/bin/env bash",
		);
		const digest = sha256Hex(content);
		const job = await createJob(api, { type: "script", executable: b64(content) }, alice.token);
		expect(job).toMatchObject({ type: "script", digest, size: content.length, owner: alice.id, executable: expectedUrl(kind, node, digest) });
		const run = await runToEnd(api, job.id, alice.token);
		expect(run).toMatchObject({ status: "succeeded", exitCode: 0, attempt: 1 });
		expect(run.output).toContain(`bash arrays: 3 job=${job.id}`);
		if (IS_ROOT) expect(run.output).toContain("nobody");
		const cached = path.join(node.dataDir, "cache", digest);
		expect(fs.readFileSync(cached).equals(content)).toBe(true);
		expect(modeOf(cached)).toBe(0o755);
	});

	test("a script without a shebang runs through /bin/sh", async () => {
		const content = script('echo "no shebang: $(tr "\\0" " " < /proc/$$/cmdline)"', null);
		const digest = sha256Hex(content);
		const job = await createJob(api, { type: "script", executable: b64(content) }, alice.token);
		expect(job).toMatchObject({ digest, size: content.length, executable: expectedUrl(kind, node, digest) });
		const run = await runToEnd(api, job.id, alice.token);
		expect(run.status).toBe("succeeded");
		// The cache is private: the job reads its script from the open file it was given.
		expect(run.output).toContain("no shebang: /bin/sh /dev/fd/3");
	});

	test("a binary (a copy of /usr/bin/id) runs; as nobody when we are root", async () => {
		const digest = sha256Hex(ID_BINARY);
		const job = await createJob(api, { type: "binary", executable: b64(ID_BINARY) }, alice.token);
		expect(job).toMatchObject({ type: "binary", digest, size: ID_BINARY.length, executable: expectedUrl(kind, node, digest) });
		const run = await runToEnd(api, job.id, alice.token);
		expect(run).toMatchObject({ status: "succeeded", exitCode: 0 });
		expect(run.output).toContain("uid=");
		if (IS_ROOT) expect(run.output).toMatch(/uid=\d+\(nobody\)/);
		expect(modeOf(path.join(node.dataDir, "cache", digest))).toBe(0o755);
	});

	test("executable = the URL of an existing object reuses it (POST 201, PATCH 200); missing or foreign URLs are 422", async () => {
		const content = script('echo "reused object"');
		const digest = sha256Hex(content);
		const first = await createJob(api, { type: "script", executable: b64(content) }, alice.token);
		const url = first.executable as string;

		const again = await api("POST", "/jobs", { body: { type: "script", schedule: SCHEDULE, executable: url }, token: alice.token });
		expect(again.status).toBe(201);
		expect(again.body).toMatchObject({ type: "script", executable: url, digest });
		expect((await runToEnd(api, again.body.id, alice.token)).output).toContain("reused object");

		// PATCH a command job into a script job pointing at the same object.
		const cmd = await createJob(api, { type: "command", executable: "echo command" }, alice.token);
		expect(cmd.digest).toBeNull();
		const patched = await api("PATCH", `/jobs/${cmd.id}`, { body: { type: "script", executable: url }, token: alice.token });
		expect(patched.status).toBe(200);
		expect(patched.body).toMatchObject({ type: "script", executable: url, digest });
		expect((await runToEnd(api, cmd.id, alice.token)).output).toContain("reused object");

		const missing = kind === "s3" ? `s3://${s3.bucket}/sha256/${"0".repeat(64)}` : expectedUrl("local", node, "0".repeat(64));
		const foreign = [
			missing,
			`s3://other/sha256/${digest}`,
			kind === "s3" ? expectedUrl("local", node, digest) : `s3://${s3.bucket}/sha256/${digest}`,
			`${url}x`,
			"file:///etc/passwd",
			"http://x",
			`https://example.com/sha256/${digest}`,
		];
		for (const bad of foreign) {
			const res = await api("POST", "/jobs", { body: { type: "script", schedule: SCHEDULE, executable: bad }, token: alice.token });
			expect([bad, res.status]).toEqual([bad, 422]);
			expect(res.body.data.field).toBe("executable");
			const pat = await api("PATCH", `/jobs/${first.id}`, { body: { executable: bad }, token: alice.token });
			expect([bad, pat.status]).toEqual([bad, 422]);
			expect(pat.body.data.field).toBe("executable");
		}
		// The refused PATCHes changed nothing.
		expect((await api("GET", `/jobs/${first.id}`, { token: alice.token })).body).toMatchObject({ executable: url, digest });
	});

	test("invalid base64 and empty content are 422 naming executable", async () => {
		for (const [type, bad] of [
			["script", "not base64!"],
			["script", "QR=="], // non-canonical
			["binary", "ab-_"], // base64url
			["script", "QUJD\u00e9"],
			["script", ""],
			["binary", "   \n "],
		] as const) {
			const res = await api("POST", "/jobs", { body: { type, schedule: SCHEDULE, executable: bad }, token: alice.token });
			expect([bad, res.status]).toEqual([bad, 422]);
			expect(res.body).toMatchObject({ code: 422, data: { field: "executable" } });
		}
	});

	test("a tampered object is refused by the SHA-256 check and never executed", async () => {
		const good = path.join(markers, `good-${kind}`);
		const evil = path.join(markers, `evil-${kind}`);
		const content = script(`echo original > ${good}\necho "original ran"`);
		const digest = sha256Hex(content);
		const job = await createJob(api, { type: "script", executable: b64(content) }, alice.token);
		const first = await runToEnd(api, job.id, alice.token);
		expect(first.status).toBe("succeeded");
		expect(fs.existsSync(good)).toBe(true); // the job user can write markers here

		// Same length, different bytes: only the hash can tell.
		let tampered = Buffer.from(`#!/bin/sh\necho tampered > ${evil}\necho "tampered ran"\n#`);
		expect(tampered.length).toBeLessThan(content.length);
		tampered = Buffer.concat([tampered, Buffer.alloc(content.length - tampered.length - 1, 0x78), Buffer.from("\n")]);
		expect(tampered.length).toBe(content.length);
		if (kind === "s3") {
			const store = new S3ObjectStore({
				endpoint: s3.endpoint,
				bucket: s3.bucket,
				region: s3.region,
				accessKeyId: s3.accessKeyId,
				secretAccessKey: s3.secretAccessKey,
			});
			try {
				await store.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `sha256/${digest}`, Body: tampered, ContentLength: tampered.length }));
			} finally {
				store.close();
			}
		} else {
			fs.writeFileSync(path.join(node.dataDir, "objects", "sha256", digest.slice(0, 2), digest), tampered);
		}
		// Clear this worker's cache so the next run fetches from the store.
		const cacheDir = path.join(node.dataDir, "cache");
		for (const f of fs.readdirSync(cacheDir)) fs.rmSync(path.join(cacheDir, f), { force: true });

		const run = await runToEnd(api, job.id, alice.token);
		expect(run.status).toBe("failed");
		expect(run.error).toMatch(/SHA-256/);
		expect(run.error).toContain(digest);
		expect(run.output).not.toContain("tampered ran");
		expect(fs.existsSync(evil)).toBe(false);
		expect(fs.existsSync(path.join(cacheDir, digest))).toBe(false);
		expect(fs.readdirSync(cacheDir).filter((f) => f.includes(digest))).toEqual([]); // no temp file left
		const after = await api("GET", `/jobs/${job.id}`, { token: alice.token });
		expect(after.body.status).toBe("error");
	});

	test("GET /jobs/{id}/executable: owner and admin get identical bytes, others 404, command jobs 422", async () => {
		const job = await createJob(api, { type: "binary", executable: b64(ID_BINARY) }, alice.token);
		const download = async (token: string) => {
			const res = await fetch(`${node.url}/jobs/${job.id}/executable`, { headers: { authorization: `Bearer ${token}` } });
			return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
		};
		for (const token of [alice.token, ADMIN_TOKEN]) {
			const res = await download(token);
			expect(res.status).toBe(200);
			expect(res.bytes.equals(ID_BINARY)).toBe(true);
			expect(res.headers.get("x-content-sha256")).toBe(job.digest);
		}
		const other = await download(bob.token);
		expect(other.status).toBe(404);
		expect(JSON.parse(other.bytes.toString()).code).toBe(404);
		const cmd = await createJob(api, { type: "command", executable: "true" }, alice.token);
		const res = await api("GET", `/jobs/${cmd.id}/executable`, { token: alice.token });
		expect(res.status).toBe(422);
		expect(res.body.data.field).toEqual(expect.any(String));
	});
});

// ---------------------------------------------------------------------------------------------

describe("upload on one node, fetch + verify + run in another OS process", () => {
	let b: NodeProcess | null = null;
	afterEach(async () => {
		if (b) await stopProcess(b);
		b = null;
	});

	test("node B (other process, other data folder, same S3) runs the script node A uploaded", async () => {
		const dirA = dir("exec-a-");
		const dirB = dir("exec-b-");
		const a = await startNode({ ...s3Env(s3), CRONJOB_DATA_DIR: dirA });
		let jobId: string;
		const content = script('echo "hello from $(hostname -s 2>/dev/null || echo host) node=$CRONJOB_RUN_ID"; echo cross-process-ok');
		const digest = sha256Hex(content);
		try {
			const job = await createJob(apiFor(a.url), { type: "script", executable: b64(content), retries: 0 });
			expect(job).toMatchObject({ executable: `s3://${s3.bucket}/sha256/${digest}`, digest, size: content.length });
			jobId = job.id;
		} finally {
			await a.stop();
		}
		expect(fs.existsSync(path.join(dirA, "cache", digest))).toBe(false); // never fetched on A
		// B gets A's database (SQLite files), nothing else: no objects, no cache.
		const dbFiles = fs.readdirSync(dirA).filter((f) => f.endsWith(".sqlite"));
		expect(dbFiles).toEqual(expect.arrayContaining(["jobs.sqlite", "users.sqlite"]));
		for (const f of dbFiles) fs.copyFileSync(path.join(dirA, f), path.join(dirB, f));

		const port = await freePort();
		const nodeB = `exec-b-${process.pid}-${Date.now()}`;
		b = startProcess({ ...s3Env(s3), PORT: String(port), CRONJOB_DATA_DIR: dirB, CRONJOB_ADMIN_TOKEN: ADMIN_TOKEN, NODE_ID: nodeB, LOG_LEVEL: "warn" });
		const url = `http://127.0.0.1:${port}`;
		await waitHealthy(url, 30_000).catch((err) => {
			throw new Error(`${(err as Error).message}\n--- node B log ---\n${b?.log()}`);
		});
		const api = apiFor(url);
		const run = await runToEnd(api, jobId!);
		expect(run).toMatchObject({ status: "succeeded", node: nodeB, exitCode: 0 });
		expect(run.output).toContain("cross-process-ok");
		const cached = path.join(dirB, "cache", digest);
		expect(fs.readFileSync(cached).equals(content)).toBe(true);
		expect(modeOf(cached)).toBe(0o755);
		expect(fs.existsSync(path.join(dirB, "objects"))).toBe(false); // it came from S3
	});
});

// ---------------------------------------------------------------------------------------------

/** POST a body of `total` bytes streamed from one reused chunk, with a Content-Length. */
function streamPost(url: string, token: string, total: number): Promise<{ status: number; body: any; sent: number }> {
	return new Promise((resolve, reject) => {
		const u = new URL(url);
		const prefix = Buffer.from(`{"type":"script","schedule":"${SCHEDULE}","executable":"`);
		const suffix = Buffer.from(`"}`);
		const chunk = Buffer.alloc(64 * 1024, 0x41); // "A": valid base64
		const req = http.request({
			host: u.hostname,
			port: u.port,
			path: u.pathname,
			method: "POST",
			headers: { "content-type": "application/json", "content-length": String(total), authorization: `Bearer ${token}` },
		});
		let sent = 0;
		let answered = false;
		const write = (buf: Buffer) => {
			sent += buf.length;
			return req.write(buf);
		};
		const pump = () => {
			if (answered || req.destroyed) return;
			if (sent === 0) write(prefix);
			while (sent < total - suffix.length) {
				const n = Math.min(chunk.length, total - suffix.length - sent);
				if (!write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
					req.once("drain", pump);
					return;
				}
				if (answered) return;
			}
			write(suffix);
			req.end();
		};
		req.on("response", (res) => {
			answered = true;
			let text = "";
			res.setEncoding("utf8");
			res.on("data", (d) => (text += d));
			res.on("end", () => {
				let body: unknown = text;
				try {
					body = JSON.parse(text);
				} catch {
					/* keep text */
				}
				resolve({ status: res.statusCode ?? 0, body, sent });
				req.destroy();
			});
		});
		req.on("error", (err) => {
			if (!answered) reject(err);
		});
		pump();
	});
}

function procStatusKb(pid: number, field: "VmRSS" | "VmHWM"): number {
	const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
	if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
	return Number(m[1]);
}

describe("upload limits (a node in its own process, CRONJOB_MAX_UPLOAD_BYTES=1024)", () => {
	let p: NodeProcess;
	let url: string;
	let api: Api;

	beforeAll(async () => {
		const port = await freePort();
		p = startProcess({
			PORT: String(port),
			CRONJOB_DATA_DIR: dir("exec-limits-"),
			CRONJOB_ADMIN_TOKEN: ADMIN_TOKEN,
			CRONJOB_MAX_UPLOAD_BYTES: "1024",
			NODE_ID: `exec-limits-${process.pid}`,
			LOG_LEVEL: "warn",
		});
		url = `http://127.0.0.1:${port}`;
		await waitHealthy(url, 30_000).catch((err) => {
			throw new Error(`${(err as Error).message}\n--- node log ---\n${p.log()}`);
		});
		api = apiFor(url);
	});

	afterAll(async () => {
		if (p) await stopProcess(p);
	});

	test("at the limit: accepted; one byte over: 413 naming executable; a body over the JSON limit: 413 naming body; healthy after", async () => {
		const at = Buffer.concat([script("echo at-limit"), Buffer.alloc(1024, 0x23)]).subarray(0, 1024);
		const ok = await api("POST", "/jobs", { body: { type: "script", schedule: SCHEDULE, executable: b64(at) } });
		expect(ok.status).toBe(201);
		expect(ok.body.size).toBe(1024);

		const over = await api("POST", "/jobs", { body: { type: "binary", schedule: SCHEDULE, executable: b64(Buffer.alloc(1025, 7)) } });
		expect(over.status).toBe(413);
		expect(over.body).toMatchObject({ code: 413, data: { field: "executable" } });

		const huge = await api("POST", "/jobs", { body: { type: "binary", schedule: SCHEDULE, executable: b64(Buffer.alloc(200 * 1024, 7)) } });
		expect(huge.status).toBe(413);
		expect(huge.body).toMatchObject({ code: 413, type: "PAYLOAD_TOO_LARGE", data: { field: "body" } });

		expect((await api("GET", "/health", { token: null })).status).toBe(200);
	});

	/**
	 * Peak RSS growth of the node process while it refuses one streamed body of `total` bytes: VmHWM
	 * (reset through /proc/<pid>/clear_refs) and, as a fallback, VmRSS sampled every 5 ms.
	 */
	async function refuseAndMeasure(total: number): Promise<{ growthMb: number; status: number; body: any }> {
		const pid = p.child.pid!;
		let hwmReset = true;
		try {
			fs.writeFileSync(`/proc/${pid}/clear_refs`, "5"); // reset VmHWM (peak RSS) to the current RSS
		} catch {
			hwmReset = false;
		}
		const baseline = procStatusKb(pid, "VmRSS");
		let peak = baseline;
		const sampler = setInterval(() => {
			try {
				peak = Math.max(peak, procStatusKb(pid, "VmRSS"));
			} catch {
				/* process gone: the assertions fail */
			}
		}, 5);
		let res;
		try {
			res = await streamPost(`${url}/jobs`, ADMIN_TOKEN, total);
		} finally {
			clearInterval(sampler);
		}
		if (hwmReset) peak = Math.max(peak, procStatusKb(pid, "VmHWM"));
		return { growthMb: (peak - baseline) / 1024, status: res.status, body: res.body };
	}

	test("50 MiB and 200 MiB streamed bodies are refused with 413; the server's RSS growth is bounded, not proportional", async () => {
		const MiB = 1024 * 1024;
		// The first large body costs a one-time ~35 MB (V8/allocator pools grow while the gateway drains
		// the body at full speed), the same for 50 or 200 MiB; later ones cost next to nothing.
		const first = await refuseAndMeasure(50 * MiB);
		expect(first.status).toBe(413);
		expect(first.body).toMatchObject({ code: 413, data: { field: expect.any(String) } });
		expect(first.growthMb).toBeLessThan(48);
		const again = await refuseAndMeasure(50 * MiB);
		const big = await refuseAndMeasure(200 * MiB);
		for (const r of [again, big]) {
			expect(r.status).toBe(413);
			expect(r.body).toMatchObject({ code: 413, type: "PAYLOAD_TOO_LARGE", data: { field: expect.any(String) } });
			expect(r.growthMb).toBeLessThan(30);
		}
		expect((await api("GET", "/health", { token: null })).status).toBe(200);
		// Still serving uploads.
		const ok = await api("POST", "/jobs", { body: { type: "script", schedule: SCHEDULE, executable: b64(script("echo fine")) } });
		expect(ok.status).toBe(201);
		console.log(
			`RSS growth refusing 50 MiB (first) ${first.growthMb.toFixed(1)} MB, 50 MiB ${again.growthMb.toFixed(1)} MB, 200 MiB ${big.growthMb.toFixed(1)} MB`,
		);
	});
});

// ---------------------------------------------------------------------------------------------

describe("object store down, then back", () => {
	let priv: TestS3;
	let node: TestNode;
	let api: Api;

	beforeAll(async () => {
		priv = await startPrivateS3();
		node = await startNode(s3Env(priv));
		dirs.push(node.dataDir);
		api = apiFor(node.url);
	});

	afterAll(async () => {
		await node?.stop();
		await priv?.stop();
	});

	test("uploads are 503, /health is 503, a run of an uncached script fails with the reason and its retry succeeds after the store is back", async () => {
		const content = script('echo "ran after the outage, attempt $CRONJOB_ATTEMPT"');
		const digest = sha256Hex(content);
		const job = await createJob(api, { type: "script", executable: b64(content), retries: 2 });
		expect(job.executable).toBe(`s3://${priv.bucket}/sha256/${digest}`);
		// Retries fire only for a job the worker owns: wait until it is in this worker's crontab.
		await waitFor(async () => String(await node.broker.call("worker.crontab")).includes(job.id), 10_000, "the job in the worker's crontab");
		expect(fs.existsSync(path.join(node.dataDir, "cache", digest))).toBe(false);

		await priv.down();
		try {
			const refused = await api("POST", "/jobs", { body: { type: "script", schedule: SCHEDULE, executable: b64(script("echo never")) } });
			expect(refused.status).toBe(503);
			expect(refused.body.code).toBe(503);
			expect(refused.body.message).toMatch(/object store/i);

			const health = await api("GET", "/health", { token: null });
			expect(health.status).toBe(503);
			expect(health.body.backends.objectStore.ok).toBe(false);
			expect(health.body.backends.database.ok).toBe(true);

			const started = await api("POST", `/jobs/${job.id}/run`);
			expect(started.status).toBe(202);
			const failed = await waitFor(
				async () => ((await api("GET", `/jobs/${job.id}/runs`)).body as any[]).find((r) => r.attempt === 1 && r.status !== "running"),
				15_000,
				"attempt 1 to fail",
				20,
			);
			expect(failed.status).toBe("failed");
			expect(failed.error).toMatch(/unavailable/i);
			expect(failed.error).toContain(digest);
		} finally {
			await priv.up();
		}

		const ok = await waitFor(
			async () => ((await api("GET", `/jobs/${job.id}/runs`)).body as any[]).find((r) => r.status === "succeeded"),
			20_000,
			"a retry to succeed",
			50,
		);
		expect(ok.attempt).toBeGreaterThan(1);
		expect(ok.trigger).toBe("retry");
		expect(ok.output).toContain(`ran after the outage, attempt ${ok.attempt}`);
		const runs = (await api("GET", `/jobs/${job.id}/runs`)).body as any[];
		expect(runs.filter((r) => r.attempt < ok.attempt).every((r) => r.status === "failed")).toBe(true);
		expect((await api("GET", `/jobs/${job.id}`)).body.status).toBe("scheduled");
		expect(fs.existsSync(path.join(node.dataDir, "cache", digest))).toBe(true);
		await waitFor(async () => (await api("GET", "/health", { token: null })).status === 200, 10_000, "health back to 200");
	});
});
