/**
 * Data at rest is not readable by jobs. A real node (embedded default: SQLite, local object store)
 * on a data folder an older version left behind (0755 folders, 0644 SQLite files), started again:
 * a job of a third user, running as nobody, tries to list and read everything in the data folder
 * (the folder itself, the jobs and users databases with their -wal and -shm, the admin token, an
 * outbox, the executable cache and a cached script, the object store and an object in it, the run
 * folders' root and another run's folder, held open by a long job of another user running as
 * daemon) and is refused every time; the two other users' secrets (in their jobs' env, in a stored
 * script, in a run folder) appear nowhere in what it saw. Needs root: only then do jobs run as
 * other users (nobody by default).
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { OutboxFile } from "../../lib/adapters/local/outbox-file";
import type { FinishRequest } from "../../lib/engine/worker/ports";
import { sha256Hex } from "../../lib/core/upload";
import { startNode, tempDir, type TestNode } from "../support/node";
import { waitFor } from "../support/wait";

const IS_ROOT = process.getuid?.() === 0;
const SCHEDULE = "0 0 1 1 *"; // far away: runs here are manual
const MARK_A = `MARK-A-${randomBytes(8).toString("hex")}`;
const MARK_B = `MARK-B-${randomBytes(8).toString("hex")}`;
const DAEMON_UID = 1; // daemon, in Debian's base passwd

type Api = (method: string, p: string, token: string, body?: unknown) => Promise<{ status: number; body: any }>;

function modeOf(p: string): number {
	return fs.statSync(p).mode & 0o777;
}

/** Every folder and file under dir (dir included), deepest first. */
function walk(dir: string): string[] {
	const out: string[] = [];
	for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
		const p = path.join(dir, e.name);
		if (e.isDirectory()) out.push(...walk(p));
		else out.push(p);
	}
	out.push(dir);
	return out;
}

/** What an older version left: the data folder and every folder in it 0755, the files 0644. */
function oldModes(dataDir: string): void {
	for (const p of walk(dataDir)) {
		const st = fs.lstatSync(p);
		if (st.isDirectory()) fs.chmodSync(p, 0o755);
		else if (st.isFile() && !p.startsWith(path.join(dataDir, "cache") + path.sep)) fs.chmodSync(p, 0o644);
	}
}

/**
 * The reader job: for each path, "READ <path>" and what it found (a listing, or the secret-looking
 * words in a file) when the attempt worked, "DENIED <path>: <error>" when it did not.
 */
function readerCommand(paths: { dirs: string[]; files: string[] }): string {
	const q = (p: string) => `'${p.replace(/'/g, `'\\''`)}'`;
	return [
		'echo "AS $(id -un)"',
		`for p in ${paths.dirs.map(q).join(" ")}; do if out=$(ls -A "$p" 2>&1); then echo "READ $p"; echo "$out"; else echo "DENIED $p: $out"; fi; done`,
		`for p in ${paths.files.map(q).join(" ")}; do if out=$(cat "$p" 2>&1 >/dev/null); then echo "READ $p"; grep -a -o -E 'MARK-[A-Z]+-[0-9a-f]+' "$p" | sort -u; else echo "DENIED $p: $out"; fi; done`,
	].join("\n");
}

const describeRoot = IS_ROOT ? describe : describe.skip;

describeRoot(
	IS_ROOT ? "data at rest is not readable by jobs" : "data at rest is not readable by jobs (skipped: needs root, jobs run as other users only then)",
	() => {
		let node: TestNode | null = null;
		let dataDir: string;

		afterAll(async () => {
			await node?.stop();
			if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
		});

		test("a job running as nobody can list and read nothing in the data folder", async () => {
			dataDir = tempDir("cronjob-perms-");
			// No CRONJOB_ADMIN_TOKEN: the first start writes <data>/admin-token.
			const env = { CRONJOB_DATA_DIR: dataDir, CRONJOB_ADMIN_TOKEN: "", CRONJOB_USER_RUN_AS: "nobody,daemon" };
			node = await startNode(env);
			const admin = fs.readFileSync(path.join(dataDir, "admin-token"), "utf8").trim();
			const api: Api = async (method, p, token, body) => {
				const res = await node!.request(method, p, { token, ...(body === undefined ? {} : { body }) });
				return { status: res.status, body: res.body };
			};
			const user = async (name: string) => {
				const res = await api("POST", "/users", admin, { name });
				expect(res.status).toBe(201);
				return res.body.token as string;
			};
			const createJob = async (token: string, job: Record<string, unknown>) => {
				const res = await api("POST", "/jobs", token, { schedule: SCHEDULE, ...job });
				if (res.status !== 201) throw new Error(`POST /jobs answered ${res.status}: ${JSON.stringify(res.body)}`);
				return res.body as { id: string };
			};
			const runNow = async (token: string, jobId: string) => {
				const res = await api("POST", `/jobs/${jobId}/run`, token);
				expect(res.status).toBe(202);
				return res.body.id as string;
			};
			const runEnd = (token: string, jobId: string, runId: string) =>
				waitFor(
					async () => {
						const runs = (await api("GET", `/jobs/${jobId}/runs`, token)).body as any[];
						const run = runs.find((r) => r.id === runId);
						return run && run.status !== "running" ? run : null;
					},
					30_000,
					`run ${runId} to finish`,
					50,
				);
			const alice = await user("alice");
			const bob = await user("bob");
			const mallory = await user("mallory");

			// Bob: a stored script (its content and its env hold his secret), run once: it is in the
			// object store and in the worker's cache.
			const content = Buffer.from(`#!/bin/sh\n# ${MARK_B}\necho "bob ran"\n`);
			const digest = sha256Hex(content);
			const bobJob = await createJob(bob, { type: "script", executable: content.toString("base64"), env: { SECRET_B: MARK_B } });
			expect(await runEnd(bob, bobJob.id, await runNow(bob, bobJob.id))).toMatchObject({ status: "succeeded", output: "bob ran\n" });
			await createJob(alice, { type: "command", executable: "true", env: { SECRET_A: MARK_A } });
			await node.stop();
			node = null;

			// The data folder as an older version left it, and an outbox another node left in it.
			new OutboxFile(path.join(dataDir, "outbox-old-node.json"), () => undefined).save([{ runId: "r1", output: MARK_B } as unknown as FinishRequest]);
			oldModes(dataDir);
			expect(modeOf(path.join(dataDir, "jobs.sqlite"))).toBe(0o644);

			// Started again (it fixes the modes before anything opens a file).
			node = await startNode(env);

			// Alice: a long job, as daemon, with her secret in its env and in a file of its run folder; a
			// new job of hers puts her secret in the write-ahead log.
			await createJob(alice, { type: "command", executable: "true", env: { SECRET_A: MARK_A } });
			const longJob = await createJob(alice, {
				type: "command",
				runAs: "daemon",
				timeout: 120,
				env: { SECRET_A: MARK_A },
				executable: 'echo "$SECRET_A" > secret.txt; i=0; while [ -e secret.txt ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; echo "alice done"',
			});
			const longRun = await runNow(alice, longJob.id);
			const work = path.join(dataDir, "work");
			const runDir = await waitFor(
				() =>
					fs
						.readdirSync(work)
						.map((n) => path.join(work, n))
						.find((d) => fs.statSync(d).uid === DAEMON_UID && fs.existsSync(path.join(d, "secret.txt"))),
				10_000,
				"alice's run folder",
			);

			const files = [
				...["jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm", "users.sqlite", "users.sqlite-wal", "users.sqlite-shm"].map((f) => path.join(dataDir, f)),
				path.join(dataDir, "admin-token"),
				path.join(dataDir, "secret-key"),
				path.join(dataDir, "outbox-old-node.json"),
				path.join(dataDir, "cache", digest),
				path.join(dataDir, "objects", "sha256", digest.slice(0, 2), digest),
				path.join(runDir, "secret.txt"),
			].filter((f) => !/users\.sqlite-(wal|shm)$/.test(f) || fs.existsSync(f));
			const dirs = [dataDir, path.join(dataDir, "cache"), path.join(dataDir, "objects"), path.join(dataDir, "objects", "sha256"), work, runDir];
			// Everything is there (a refusal is not a missing file), and the secrets are at rest in it.
			for (const p of [...files, ...dirs]) expect([p, fs.existsSync(p)]).toEqual([p, true]);
			const atRest = Buffer.concat(["jobs.sqlite", "jobs.sqlite-wal"].map((f) => fs.readFileSync(path.join(dataDir, f))));
			expect(atRest.includes(MARK_A)).toBe(true);
			expect(atRest.includes(MARK_B)).toBe(true);
			expect(fs.readFileSync(path.join(dataDir, "cache", digest)).includes(MARK_B)).toBe(true);

			// Mallory's job, as nobody (no runAs), tries them all.
			const reader = await createJob(mallory, { type: "command", executable: readerCommand({ dirs, files }) });
			const run = await runEnd(mallory, reader.id, await runNow(mallory, reader.id));
			const output = run.output as string;
			expect(output.split("\n")[0]).toBe("AS nobody");
			expect(output).not.toMatch(/^READ /m);
			for (const p of [...dirs, ...files]) {
				const line = output.split("\n").find((l) => l.startsWith(`DENIED ${p}: `));
				expect([p, line]).toEqual([p, expect.stringMatching(/Permission denied/)]);
			}
			expect(output).not.toContain(MARK_A);
			expect(output).not.toContain(MARK_B);

			// The modes that refused it, those of the older version fixed at the start.
			expect(modeOf(dataDir)).toBe(0o711);
			for (const f of ["jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm", "users.sqlite", "admin-token", "secret-key", "outbox-old-node.json"])
				expect([f, modeOf(path.join(dataDir, f))]).toEqual([f, 0o600]);
			expect(modeOf(path.join(dataDir, "cache"))).toBe(0o700);
			expect(modeOf(path.join(dataDir, "objects"))).toBe(0o700);
			expect(modeOf(work)).toBe(0o711);
			expect(modeOf(runDir)).toBe(0o700);

			// Alice's job ends; its run folder goes with it.
			fs.rmSync(path.join(runDir, "secret.txt"));
			expect(await runEnd(alice, longJob.id, longRun)).toMatchObject({ status: "succeeded", output: "alice done\n" });
			expect(fs.existsSync(runDir)).toBe(false);
		}, 90_000);
	},
);
