/**
 * Kill the single-node default with SIGKILL and start it again on the same data folder: every job is
 * still there and keeps firing, the run that was in flight is marked and handled by the misfire
 * rule (run again with attempt 2), and fires missed while it was down follow the misfire policy.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { tempDir } from "../support/node";
import { freePort, httpJson, startProcess, waitHealthy, type NodeProcess } from "../support/proc";
import { waitFor } from "../support/wait";

const TOKEN = "restart-test-admin-token";
let proc: NodeProcess | null = null;

afterEach(async () => {
	await proc?.kill("SIGKILL");
	proc = null;
});

it("loses no job and no run across a SIGKILL and restart", async () => {
	const dataDir = tempDir();
	// The job (nobody, when we are root) writes its ticks in a folder of its own: the node keeps the
	// data folder closed to jobs (0711, made so again at the restart).
	const shared = tempDir("cronjob-restart-ticks-");
	fs.chmodSync(shared, 0o777);
	const port = await freePort();
	const env = { CRONJOB_DATA_DIR: dataDir, PORT: String(port), CRONJOB_ADMIN_TOKEN: TOKEN, NODE_ID: "restart-a" };
	const base = `http://127.0.0.1:${port}`;
	const file = path.join(shared, "fires.log");

	proc = startProcess(env);
	await waitHealthy(base);
	const ticker = await httpJson(`${base}/jobs`, {
		method: "POST",
		token: TOKEN,
		body: { type: "command", schedule: "* * * * * *", executable: `echo "$CRONJOB_SCHEDULED_AT" >> ${file}`, misfire: "run_all" },
	});
	expect(ticker.status).toBe(201);
	const sleeper = await httpJson(`${base}/jobs`, {
		method: "POST",
		token: TOKEN,
		body: { type: "command", schedule: "0 0 1 1 *", executable: 'echo "attempt $CRONJOB_ATTEMPT"; sleep 2' },
	});
	const started = await httpJson(`${base}/jobs/${sleeper.body.id}/run`, { method: "POST", token: TOKEN });
	expect(started.status).toBe(202);
	await waitFor(() => fs.existsSync(file) && fs.readFileSync(file, "utf8").trim().split("\n").length >= 2, 10_000, "ticks before the kill");

	await proc.kill("SIGKILL");
	const killedAt = Date.now();
	// Let a few fire times pass while nothing runs.
	await waitFor(() => Date.now() - killedAt > 2500, 5000, "downtime");

	proc = startProcess({ ...env, NODE_ID: "restart-b" });
	await waitHealthy(base);

	// The interrupted run is marked failed and run again with attempt 2.
	const runs = await waitFor(
		async () => {
			const r = (await httpJson(`${base}/jobs/${sleeper.body.id}/runs`, { token: TOKEN })).body as any[];
			return r.length === 2 && r[0].status === "succeeded" ? r : null;
		},
		20_000,
		"re-run of the interrupted run",
	);
	expect(runs[1]).toMatchObject({ attempt: 1, status: "failed", node: "restart-a" });
	expect(runs[1].error).toMatch(/interrupted/);
	expect(runs[0]).toMatchObject({ attempt: 2, status: "succeeded", node: "restart-b", output: "attempt 2\n" });
	expect(runs[0].scheduledAt).toBe(runs[1].scheduledAt);

	// The ticker is still there and every second from before the kill to now ran exactly once
	// (misfire run_all catches up the downtime).
	const until = Date.now() + 2000;
	await waitFor(
		() =>
			fs
				.readFileSync(file, "utf8")
				.trim()
				.split("\n")
				.some((l) => Date.parse(l) >= until),
		15_000,
		"ticks after the restart",
	);
	const ticks = fs
		.readFileSync(file, "utf8")
		.trim()
		.split("\n")
		.map((l) => Date.parse(l));
	const sorted = [...new Set(ticks)].sort((a, b) => a - b);
	// None twice, except at most one run the kill cut off after it wrote (re-run with attempt 2).
	expect(ticks.length - sorted.length).toBeLessThanOrEqual(1);
	for (let i = 1; i < sorted.length; i++) expect(sorted[i] - sorted[i - 1]).toBe(1000); // none missing
	const jobs = (await httpJson(`${base}/jobs`, { token: TOKEN })).body as any[];
	expect(jobs.map((j) => j.id).sort()).toEqual([ticker.body.id, sleeper.body.id].sort());
}, 90_000);

it("on SIGTERM lets the running run finish and records it before the database closes", async () => {
	const dataDir = tempDir();
	const port = await freePort();
	const env = { CRONJOB_DATA_DIR: dataDir, PORT: String(port), CRONJOB_ADMIN_TOKEN: TOKEN, NODE_ID: "sigterm-a" };
	const base = `http://127.0.0.1:${port}`;
	proc = startProcess(env);
	await waitHealthy(base);
	const job = await httpJson(`${base}/jobs`, {
		method: "POST",
		token: TOKEN,
		body: { type: "command", schedule: "0 0 1 1 *", executable: "sleep 1; echo done" },
	});
	expect(job.status).toBe(201);
	const started = await httpJson(`${base}/jobs/${job.body.id}/run`, { method: "POST", token: TOKEN });
	expect(started.status).toBe(202);

	expect(await proc.kill("SIGTERM")).toBe(0);
	// Stopped in order: the result was written while the database was still open.
	expect(proc.log()).not.toMatch(/Cannot record run/);
	expect(proc.log()).not.toMatch(/connection manager was closed/);

	proc = startProcess({ ...env, NODE_ID: "sigterm-b" });
	await waitHealthy(base);
	const runs = (await httpJson(`${base}/jobs/${job.body.id}/runs`, { token: TOKEN })).body as any[];
	expect(runs).toHaveLength(1);
	expect(runs[0]).toMatchObject({ status: "succeeded", node: "sigterm-a", output: "done\n", attempt: 1 });
});
