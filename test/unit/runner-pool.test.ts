/**
 * The runner pool: job processes spawned from helper processes (dist/bin/runner.js, built by
 * `npm test`), with results, cancellation and a runner dying mid-run.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DEFAULT_PATH, STORED_FILE_PATH } from "../../lib/adapters/process/executor";
import { RunnerPool, runnerScript } from "../../lib/adapters/process/runner-pool";

const workRoot = fs.mkdtempSync(path.join(os.tmpdir(), "runner-pool-"));
const spec = (line: string, over: Record<string, unknown> = {}) => ({
	file: "/bin/sh",
	args: ["-c", line],
	env: { PATH: DEFAULT_PATH, X: "y" },
	user: null,
	timeoutMs: null,
	workRoot,
	...over,
});

let pool: RunnerPool;
beforeAll(() => {
	if (!fs.existsSync(runnerScript())) throw new Error(`${runnerScript()} is missing: run npm run build (npm test does)`);
	pool = new RunnerPool(2);
});
afterAll(async () => {
	await pool.close();
});

it("runs processes on the runners and answers their results", async () => {
	const results = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.run(spec(`echo "$X ${i}"; echo err >&2; exit ${i % 2}`))));
	results.forEach((r, i) => {
		expect(r.output).toBe(`y ${i}\nerr\n`);
		expect(r.exitCode).toBe(i % 2);
		expect(r.status).toBe(i % 2 ? "failed" : "succeeded");
		expect(r.finishedAt).toBeGreaterThanOrEqual(r.startedAt);
	});
});

it("hands a stored executable to its process through the runner (fd 3)", async () => {
	const store = fs.mkdtempSync(path.join(os.tmpdir(), "runner-pool-store-"));
	const file = path.join(store, "job");
	fs.writeFileSync(file, '#!/bin/sh\necho "stored $0 $X"\n');
	fs.chmodSync(file, 0o755);
	try {
		const r = await pool.run({ ...spec(""), file: STORED_FILE_PATH, args: [], stored: file });
		expect(r).toMatchObject({ status: "succeeded", output: `stored ${STORED_FILE_PATH} y\n` });
	} finally {
		fs.rmSync(store, { recursive: true, force: true });
	}
});

it("cancels a run through its AbortSignal", async () => {
	const controller = new AbortController();
	const p = pool.run({ ...spec("sleep 30"), killGraceMs: 500, signal: controller.signal });
	setTimeout(() => controller.abort("replaced"), 200);
	const r = await p;
	expect(r.status).toBe("failed");
	expect(r.error).toMatch(/replaced/);
});

it("fails the runs of a runner that dies, and starts another", async () => {
	const small = new RunnerPool(1);
	try {
		const p = small.run(spec("sleep 30"));
		const runner = (small as unknown as { runners: { child: { pid: number } }[] }).runners[0];
		await new Promise((r) => setTimeout(r, 200));
		process.kill(runner.child.pid, "SIGKILL");
		const r = await p;
		expect(r.status).toBe("failed");
		expect(r.error).toMatch(/runner process exited/);
		const again = await small.run(spec("echo back"));
		expect(again.output).toBe("back\n");
	} finally {
		await small.close();
	}
});

it("prefire: a held run is released at its instant by the runner; startedAt is the release", async () => {
	const releaseAt = Date.now() + 400;
	const r = await pool.run(spec("date +%s%3N", { releaseAt }));
	expect(r).toMatchObject({ status: "succeeded", released: true });
	expect(r.startedAt).toBeGreaterThanOrEqual(releaseAt);
	expect(Number(r.output.trim())).toBeGreaterThanOrEqual(releaseAt);
	// The held process's readiness comes back on the pool's clock, ahead of the instant.
	expect(r.readyAt).toBeLessThan(releaseAt);
	expect(r.readyAt).toBeGreaterThan(releaseAt - 400);
});

it("prefire: when the runner dies before the release, the held job never runs", async () => {
	const small = new RunnerPool(1);
	const flag = path.join(os.tmpdir(), `held-${process.pid}-${Date.now()}.ran`);
	try {
		const releaseAt = Date.now() + 1000;
		const p = small.run(spec(`touch ${flag}`, { releaseAt }));
		const runner = (small as unknown as { runners: { child: { pid: number } }[] }).runners[0];
		await new Promise((r) => setTimeout(r, 300));
		process.kill(runner.child.pid, "SIGKILL");
		const r = await p;
		expect(r.error).toMatch(/runner process exited/);
		// The held wrapper sees its pipe close and exits; past the instant, nothing ran.
		await new Promise((r) => setTimeout(r, releaseAt - Date.now() + 300));
		expect(fs.existsSync(flag)).toBe(false);
	} finally {
		fs.rmSync(flag, { force: true });
		await small.close();
	}
});
