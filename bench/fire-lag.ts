/**
 * Fire lag and throughput on the single-node embedded default (SQLite, in-process coordination, one
 * process: this one, with the API on a free port).
 *
 *   npx tsc -p . && node dist/bench/fire-lag.js [--seconds 10] [--jobs 1,100,1000] [--prefire-ms 1000] [--api-rate 20]
 *
 * For each job count (--jobs 1000, 2000, 5000 ... or a comma list, measured one after the other)
 * it measures the raw rate of child_process.spawn("/bin/sh", ["-c", "true"]) (sequential and 8 in
 * flight), creates that many per-second jobs (command `true`; every second from the window's start:
 * they all fire for the first time at its first second, see release()), lets them fire for the
 * given whole seconds and reports, as one JSON object on stdout (progress on stderr):
 * - executions per second: runs of the window whose process started (an exit code or a signal), and
 *   the fire lag (startedAt - scheduledAt) of those: p50/p90/p99/max, and the p99 of the ones that
 *   started under 1 s;
 * - every fire time of the window accounted for (common.ts accountFireTimes): by the status of its
 *   run row, absent (no row), doubled (two first-attempt rows);
 * - the memory of the node (this process): peak RSS over the setup and over the window and its
 *   drain (VmHWM, reset between them through /proc/self/clear_refs), and the runner helpers' peaks;
 * - `POST /jobs` and `GET /jobs/{id}` latency while the jobs fire: a probe in a process of its own
 *   (api-probe.ts) sends each at --api-rate per second through the window.
 *
 * Bounded everywhere, so that an overloaded engine still gives a report: the wait for the crontab,
 * the worker's drain after the window (runs it had not started stay `running`), the probe, the stop.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { ServiceBroker } from "moleculer";
import { QueryTypes, type Model, type ModelStatic, type Sequelize } from "sequelize";
import { apiProbe } from "./api-probe";
import {
	accountFireTimes,
	arg,
	BENCH_RUN_COLUMNS,
	benchRun,
	childPids,
	everySecond,
	memoryMb,
	type RawRun,
	resetPeakRss,
	spawnRate,
	startedRuns,
	within,
} from "./common";
import { loadConfig } from "../lib/config";
import { createNode } from "../app/node";
import type { WorkerStatus } from "../lib/engine/worker/engine";
import { freePort } from "../test/support/proc";

const TOKEN = "bench";
/** Jobs created at once during the setup. */
const CREATE_CONCURRENCY = 8;
const CREATE_TRIES = 3;
/** The worker's own stop grace is 10 s (services/worker.service.ts); past this the bench reads what is there. */
const DRAIN_BOUND_MS = 30_000;
/** From the release of the jobs to their first fire, at least (then up to the next minute). */
const START_MARGIN_MS = 15_000;

function log(msg: string): void {
	process.stderr.write(`[fire-lag ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);
}

type JobsService = { adapter: { db: Sequelize; model: ModelStatic<Model> } };

/**
 * The N jobs, created suspended (nothing fires while they are made, so no create waits behind
 * fires) through the jobs service's own action, CREATE_CONCURRENCY at a time, a failed create tried
 * again up to CREATE_TRIES times. The ids are read back from the table (the data folder is private):
 * a create tried again after a timeout that had in fact succeeded would show as one job more.
 */
async function createJobs(broker: ServiceBroker, jobs: number): Promise<{ ids: string[]; createRetries: number }> {
	const meta = { user: { id: "bench", name: "bench", admin: true } };
	let next = 0;
	let createRetries = 0;
	await Promise.all(
		Array.from({ length: CREATE_CONCURRENCY }, async () => {
			while (next < jobs) {
				const i = next++;
				for (let attempt = 1; ; attempt++) {
					try {
						await broker.call(
							"jobs.createJob",
							{ type: "command", name: `bench-${i}`, schedule: "* * * * * *", executable: "true", suspended: true },
							{ meta, timeout: 60_000 },
						);
						break;
					} catch (err) {
						if (attempt >= CREATE_TRIES) throw new Error(`creating job ${i}: ${(err as Error).message}`, { cause: err });
						createRetries++;
					}
				}
			}
		}),
	);
	const ids = ((await jobsOf(broker).adapter.model.findAll({ attributes: ["id"], raw: true })) as unknown as { id: string }[]).map((r) => r.id);
	return { ids, createRetries };
}

/**
 * Every second of the whole minutes that hold [from, from + seconds) (from on a minute, UTC): a
 * per-second job that fires for the first time at `from`.
 */
function windowSchedule(from: number, seconds: number): string {
	const minutes = new Set<number>();
	for (let t = from; t < from + seconds * 1000; t += 60_000) minutes.add(new Date(t).getUTCMinutes());
	return `* ${minutes.size >= 60 ? "*" : [...minutes].join(",")} * * * *`;
}

/**
 * Release the jobs, all at once: one update of the table and one jobs.changed, after which the
 * manager assigns them in one go and the worker loads them. Their schedule becomes every second from
 * `from` on (windowSchedule), a minute boundary far enough ahead for the whole crontab to be loaded
 * before anything fires: with `* * * * * *` the first jobs loaded fired while the others were still
 * being loaded, and at 2000 jobs the crontab was still incomplete 120 s later, under a backlog that
 * had nothing to do with the window. The release sets lastScheduledAt to now, as
 * `PATCH {suspended: false}` does (no catch-up of the time since their creation).
 */
async function release(broker: ServiceBroker, ids: string[], from: number, seconds: number): Promise<void> {
	const schedule = windowSchedule(from, seconds);
	for (let i = 0; i < ids.length; i += 1000)
		await jobsOf(broker).adapter.model.update({ suspended: false, schedule, lastScheduledAt: Date.now() }, { where: { id: ids.slice(i, i + 1000) } });
	// Not awaited: the wait that follows is for the worker's crontab, not for the event's handlers.
	void broker.broadcast("jobs.changed", { id: "bench", op: "updated" });
}

function jobsOf(broker: ServiceBroker): JobsService {
	return broker.getLocalService("jobs") as unknown as JobsService;
}

function runnersMemory(): { count: number; peakRssMbEach: number[] } {
	const pids = childPids(process.pid, "runner.js");
	return { count: pids.length, peakRssMbEach: pids.map((p) => memoryMb(p)?.peakRssMb ?? NaN) };
}

async function measure(jobs: number, seconds: number, apiRate: number) {
	log(`${jobs} jobs: raw spawn rate`);
	const spawnPerSecond = { sequential: await spawnRate(3, 1), concurrent8: await spawnRate(3, 8) };
	const peakResettable = resetPeakRss("self");
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "cronjob-bench-"));
	fs.chmodSync(dataDir, 0o755);
	const port = await freePort();
	const config = loadConfig({
		CRONJOB_DATA_DIR: dataDir,
		CRONJOB_ADMIN_TOKEN: TOKEN,
		PORT: String(port),
		LOG_LEVEL: "error",
		NODE_ID: "bench",
		SERVICES: "api,jobs,manager,worker",
		CRONJOB_PREFIRE_MS: arg("prefire-ms", "1000"),
		// The probe's requests measure latency, not the gateway's limits (one token, one address).
		CRONJOB_RATE_LIMIT: "0",
		CRONJOB_RATE_LIMIT_ADDRESS: "0",
	});
	const broker = createNode(config);
	await broker.start();
	try {
		log(`${jobs} jobs: creating`);
		const c0 = Date.now();
		const { ids, createRetries } = await createJobs(broker, jobs);
		const setupMs = Date.now() - c0;
		// The first fire: a minute boundary at least START_MARGIN_MS ahead.
		const from = Math.ceil((Date.now() + START_MARGIN_MS) / 60_000) * 60_000;
		const to = from + seconds * 1000;
		await release(broker, ids, from, seconds);
		log(`${jobs} jobs: created in ${setupMs} ms, released; first fire ${new Date(from).toISOString()}; waiting for the crontab`);
		const workerStatus = (timeout: number) => broker.call<WorkerStatus, Record<string, never>>("worker.status", {}, { timeout });
		const t0 = Date.now();
		let onCrontab = 0;
		// Until every job is on the crontab, at most until just before the first prefire.
		while (Date.now() < from - 2 * config.prefireMs - 500) {
			onCrontab = (await workerStatus(10_000).catch(() => ({ jobs: onCrontab }))).jobs;
			if (onCrontab >= ids.length) break;
			await new Promise((r) => setTimeout(r, 50));
		}
		const crontabMs = Date.now() - t0;
		log(`${onCrontab} of ${ids.length} on the crontab after ${crontabMs} ms; window ${new Date(from).toISOString()} + ${seconds} s`);
		const probe = apiProbe({
			base: `http://127.0.0.1:${port}`,
			token: TOKEN,
			getId: ids[0],
			// Throwaway jobs that do not fire in the window (midnight of 29 February, UTC).
			postBody: { type: "command", schedule: "0 0 29 2 *", executable: "true" },
			startAt: from,
			seconds,
			rate: apiRate,
			timeoutMs: 10_000,
		});
		await new Promise((r) => setTimeout(r, from - Date.now()));
		const setupMemory = memoryMb("self");
		resetPeakRss("self");
		await new Promise((r) => setTimeout(r, to - Date.now()));
		const windowEndMemory = memoryMb("self");
		const runners = runnersMemory();
		const worker = await within(
			workerStatus(5_000).catch(() => null),
			6_000,
		);
		// Stop firing: stop the worker (it lets its running processes finish, up to 10 s, and writes
		// their results); runs it had not started by then stay "running" and count as not executed.
		log("window over; stopping the worker");
		const d0 = Date.now();
		const drained = await within(
			broker.destroyService(broker.getLocalService("worker")).then(
				() => null,
				(err: Error) => err.message,
			),
			DRAIN_BOUND_MS,
		);
		const drainMs = Date.now() - d0;
		const drainMemory = memoryMb("self");
		log(`worker ${drained.done ? "stopped" : "not stopped"} after ${drainMs} ms; waiting for the API probe`);
		const api = await probe;
		const jobsService = broker.getLocalService("jobs") as unknown as JobsService;
		const rows = (
			await jobsService.adapter.db.query<RawRun>(`SELECT ${BENCH_RUN_COLUMNS} FROM runs WHERE scheduledAt >= ? AND scheduledAt < ?`, {
				replacements: [from, to],
				type: QueryTypes.SELECT,
			})
		).map(benchRun);
		const w = worker.done ? worker.value : null;
		return {
			jobs: ids.length,
			seconds,
			window: { from: new Date(from).toISOString(), schedule: windowSchedule(from, seconds) },
			spawnPerSecond,
			setup: { createMs: setupMs, createRetries, onCrontabBeforeFirstFire: onCrontab, crontabWaitMs: crontabMs },
			...startedRuns(rows, seconds),
			fireTimes: accountFireTimes(ids, everySecond(from, to), rows),
			workerAtWindowEnd: w && {
				running: w.running,
				processes: w.processes,
				queued: w.queued,
				pendingResults: w.pendingResults,
				prefireLeadMs: w.prefireLeadMs,
			},
			drain: { ms: drainMs, finished: drained.done, error: drained.done ? drained.value : null },
			memory: {
				peakResetWorks: peakResettable,
				nodeRssMbAtWindowStart: setupMemory?.rssMb ?? null,
				nodePeakRssMbSetup: setupMemory?.peakRssMb ?? null,
				nodePeakRssMbWindowAndDrain: drainMemory?.peakRssMb ?? null,
				nodeRssMbAtWindowEnd: windowEndMemory?.rssMb ?? null,
				runners,
			},
			api,
		};
	} finally {
		const stopped = await within(
			broker.stop().then(
				() => true,
				() => false,
			),
			30_000,
		);
		if (!stopped.done) log("the broker did not stop within 30 s; going on");
		fs.rmSync(dataDir, { recursive: true, force: true });
	}
}

async function main() {
	const seconds = Number(arg("seconds", "10"));
	const counts = arg("jobs", "1,100,1000").split(",").map(Number);
	const apiRate = Number(arg("api-rate", "20"));
	const runs: unknown[] = [];
	for (const n of counts) runs.push(await measure(n, seconds, apiRate));
	const result = {
		bench: "fire-lag",
		machine: {
			cpus: os.cpus().length,
			node: process.version,
			runAsRoot: process.getuid?.() === 0,
			loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
		},
		config: {
			schedule: "every second from the window's start (`* <minutes> * * * *`)",
			command: "true",
			prefireMs: Number(arg("prefire-ms", "1000")),
			apiRatePerSecondEach: apiRate,
		},
		runs,
	};
	process.stdout.write(JSON.stringify(result, null, 2) + "\n");
	// Whatever a half-stopped broker left behind (timers, processes) must not keep the bench alive.
	process.exit(0);
}

main().catch((err) => {
	process.stderr.write(String(err?.stack ?? err) + "\n");
	process.exit(1);
});
