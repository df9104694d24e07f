/**
 * Fire lag and throughput on the single-node default (SQLite, in-process coordination, one process).
 *
 *   npm run build && node dist/bench/fire-lag.js [--seconds 10] [--jobs 1,100,1000] [--prefire-ms 1000]
 *
 * For each job count it creates that many per-second jobs (`* * * * * *`, command `true`), lets them
 * fire for the given time, and reports fire lag (startedAt - scheduledAt: p50, p99, max) and
 * executions per second, beside the raw rate of child_process.spawn("/bin/sh", ["-c", "true"])
 * measured in the same run. Prints JSON.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { arg, pct, spawnRate } from "./common";
import { loadConfig } from "../lib/config";
import { createNode } from "../app/node";

/** The fields of a run (jobs.jobRuns) that the measure reads. */
interface RunOut {
	scheduledAt: string;
	startedAt: string | null;
	status: string;
	error: string | null;
}

async function measure(jobs: number, seconds: number) {
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "cronjob-bench-"));
	fs.chmodSync(dataDir, 0o755);
	const config = loadConfig({
		CRONJOB_DATA_DIR: dataDir,
		CRONJOB_ADMIN_TOKEN: "bench",
		PORT: "0",
		LOG_LEVEL: "error",
		NODE_ID: "bench",
		SERVICES: "jobs,manager,worker",
		CRONJOB_PREFIRE_MS: arg("prefire-ms", "1000"),
	});
	const broker = createNode(config);
	await broker.start();
	const meta = { user: { id: "bench", name: "bench", admin: true } };
	const ids: string[] = [];
	// Created suspended (nothing fires while they are made), then all released at once: one update
	// of the table and one jobs.changed, after which the manager assigns them in one go.
	for (let i = 0; i < jobs; i++) {
		const job = await broker.call<{ id: string }, Record<string, unknown>>(
			"jobs.createJob",
			{ type: "command", schedule: "* * * * * *", executable: "true", suspended: true },
			{ meta },
		);
		ids.push(job.id);
	}
	const jobsService = broker.getLocalService("jobs") as unknown as { adapter: { model: { update(values: object, opts: object): Promise<unknown> } } };
	await jobsService.adapter.model.update({ suspended: false }, { where: { id: ids } });
	// Not awaited: the wait below is for the worker's crontab, not for the event's handlers.
	void broker.broadcast("jobs.changed", { id: "bench", op: "updated" });
	// Wait until every job is on the worker's crontab, then measure whole seconds.
	const deadline = Date.now() + 30_000;
	while ((await broker.call<{ jobs: number }>("worker.status")).jobs < jobs && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
	const from = Math.ceil(Date.now() / 1000) * 1000 + 1000;
	const to = from + seconds * 1000;
	await new Promise((r) => setTimeout(r, to - Date.now()));
	// Stop firing: stop the worker (it lets its running processes finish, up to 10 s, and writes their
	// results); runs it had not started by then stay "running" and count as not executed.
	const t0 = Date.now();
	await broker.destroyService(broker.getLocalService("worker"));
	const drainMs = Date.now() - t0;
	const lags: number[] = [];
	const statuses: Record<string, number> = {};
	const errors: Record<string, number> = {};
	let succeeded = 0;
	let notSucceeded = 0;
	let expected = 0;
	for (const id of ids) {
		const runs = await broker.call<RunOut[], { id: string; limit: number }>("jobs.jobRuns", { id, limit: 1000 }, { meta });
		for (const r of runs) {
			const at = Date.parse(r.scheduledAt);
			if (at < from || at >= to) continue;
			statuses[r.status] = (statuses[r.status] ?? 0) + 1;
			if (r.error) errors[r.error.slice(0, 80)] = (errors[r.error.slice(0, 80)] ?? 0) + 1;
			if (r.status === "succeeded" && r.startedAt) {
				succeeded++;
				lags.push(Date.parse(r.startedAt) - at);
			} else notSucceeded++;
		}
		expected += seconds;
	}
	await broker.stop();
	fs.rmSync(dataDir, { recursive: true, force: true });
	lags.sort((a, b) => a - b);
	return {
		jobs,
		seconds,
		expectedFires: expected,
		succeeded,
		otherRuns: notSucceeded,
		runsByStatus: statuses,
		errors,
		drainAfterWindowMs: drainMs,
		missingFires: expected - succeeded - notSucceeded,
		executionsPerSecond: Math.round((succeeded / seconds) * 10) / 10,
		lagMs: { p50: pct(lags, 50), p99: pct(lags, 99), max: lags.length ? lags[lags.length - 1] : null },
	};
}

async function main() {
	const seconds = Number(arg("seconds", "10"));
	const counts = arg("jobs", "1,100,1000").split(",").map(Number);
	const result: Record<string, unknown> = {
		machine: { cpus: os.cpus().length, node: process.version, runAsRoot: process.getuid?.() === 0 },
		spawnPerSecond: { sequential: await spawnRate(3, 1), concurrent8: await spawnRate(3, 8) },
		runs: [] as unknown[],
	};
	for (const n of counts) (result.runs as unknown[]).push(await measure(n, seconds));
	process.stdout.write(JSON.stringify(result, null, 2) + "\n");
}

main().catch((err) => {
	process.stderr.write(String(err?.stack ?? err) + "\n");
	process.exit(1);
});
