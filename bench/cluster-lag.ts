/**
 * Fire lag on a real cluster of processes (API+jobs node, one manager, three workers) on MariaDB,
 * ZooKeeper and NATS: N per-second jobs (`* * * * * *`, command `true`; 200 = 200 fires per second
 * spread over the three workers) for S seconds.
 *
 *   npx tsc -p . && eval "$(scripts/services.sh env)" && node dist/bench/cluster-lag.js [--jobs 200] [--seconds 20] [--api-log-level debug]
 *
 * The jobs are bulk-inserted into the private database (the columns of the jobs service's model) and
 * announced with `jobs.changed`; once every worker's crontab holds its share and they fire, whole
 * seconds are measured. Lag = startedAt - scheduledAt of the runs whose process started (read from
 * the runs table after the window, once the window's runs have finished or at most 30 s later):
 * p50/p90/p99/max, executions per second, runs per worker, the CPU time each process used during the
 * window (/proc/<pid>/stat) beside the machine's raw spawn rate; every fire time of the window
 * accounted for (common.ts accountFireTimes: by status, absent, doubled); and the lock conflicts:
 * "Deadlock found", "Lock wait timeout", ER_LOCK_DEADLOCK and ER_LOCK_WAIT_TIMEOUT in each process's
 * whole log, beside the server's Innodb_deadlocks counter before and after. The jobs service (on
 * api-1, the only process that talks to the database) tries a conflicting transaction again and
 * logs each retry at debug level only, so api-1 runs at --api-log-level (default debug; the other
 * processes at info). Target: p99 under 100 ms. Prints one JSON object on stdout.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { accountFireTimes, arg, BENCH_RUN_COLUMNS, benchRun, everySecond, processStarted, type RawRun, spawnRate, startedRuns, lagBySecond } from "./common";
import { BenchCluster, runBench, sleep, waitFor } from "./cluster";

const WORKERS = ["worker-1", "worker-2", "worker-3"];
/** What a lock conflict leaves in a log: MariaDB's messages and mysql2's codes. */
const LOCK_TEXTS = ["Deadlock found", "Lock wait timeout", "ER_LOCK_DEADLOCK", "ER_LOCK_WAIT_TIMEOUT"] as const;
let cluster: BenchCluster | null = null;

function cpuSeconds(pid: number): number {
	try {
		const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
		// utime, stime, cutime, cstime (fields 14-17; index 11-14 after the command name)
		return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
	} catch {
		return NaN;
	}
}

async function main() {
	const n = Number(arg("jobs", "200"));
	const seconds = Number(arg("seconds", "20"));
	const spawnPerSecond = { sequential: await spawnRate(2, 1), concurrent8: await spawnRate(2, 8) };
	const apiLogLevel = arg("api-log-level", "debug");
	const c = (cluster = new BenchCluster({ ZOOKEEPER_SESSION_TIMEOUT_MS: "2000" }));
	await c.setup();
	const innodbDeadlocks = async () =>
		Number((await c.sql<{ Value: string }[]>("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'").catch(() => [{ Value: "NaN" }]))[0]?.Value ?? NaN);
	const deadlocks0 = await innodbDeadlocks();
	await c.startCluster({ managers: ["manager-1"], workers: WORKERS, apiEnv: { LOG_LEVEL: apiLogLevel } });
	const ids = await c.insertJobs(n, { schedule: "* * * * * *", executable: "true" });
	c.announceJobsChanged();
	await waitFor(
		async () => {
			const s = await Promise.all(WORKERS.map((w) => c.workerStatus(w)));
			return s.reduce((a, w) => a + w.jobs, 0) === n && s.every((w) => w.jobs > 0 && w.stats.fired > 0);
		},
		60_000,
		`${n} jobs on the crontabs and firing`,
		200,
	);
	// Warm up two seconds, then measure whole seconds.
	const from = Math.ceil(Date.now() / 1000) * 1000 + 2000;
	const to = from + seconds * 1000;
	await sleep(from - Date.now() - 10);
	const names = ["api-1", "manager-1", ...WORKERS];
	const cpu0 = new Map(names.map((x) => [x, cpuSeconds(c.procs.get(x)!.pid)]));
	const zkPid = Number(fs.readFileSync(`${process.env.CRONJOB_SERVICES_DIR || "/tmp/cronjob-services"}/zookeeper.pid`, "utf8").trim() || NaN);
	const zk0 = cpuSeconds(zkPid);
	const t0 = Date.now();
	await sleep(to - Date.now());
	const wall = (Date.now() - t0) / 1000;
	const cpu = Object.fromEntries(names.map((x) => [x, Math.round(((cpuSeconds(c.procs.get(x)!.pid) - cpu0.get(x)!) / wall) * 100) + "%"]));
	if (Number.isFinite(zk0)) cpu.zookeeper = Math.round(((cpuSeconds(zkPid) - zk0) / wall) * 100) + "%";
	// Where each worker's fire lag goes (its last 1000 scheduled fires), before the jobs stop.
	const statuses = await Promise.all(WORKERS.map(async (w) => [w, await c.workerStatus(w).catch(() => null)] as const));
	const stages = Object.fromEntries(statuses.map(([w, st]) => [w, st?.fireStagesMs ?? null]));
	const workersAtWindowEnd = Object.fromEntries(
		statuses.map(([w, st]) => [
			w,
			st && { processes: st.processes, queued: st.queued, inFlight: st.inFlight, backlog: st.backlog, prefireLeadMs: st.prefireLeadMs, stats: st.stats },
		]),
	);
	// Let the window's runs finish and be recorded: at most 30 s, then what is there (a run still
	// `running` is reported as such).
	const w0 = Date.now();
	let leftRunning = -1;
	while (Date.now() - w0 < 30_000) {
		const [row] = await c
			.sql<{ n: number }[]>("SELECT COUNT(*) AS n FROM runs WHERE scheduledAt >= ? AND scheduledAt < ? AND status = 'running'", [from, to])
			.catch(() => [{ n: -1 }]);
		leftRunning = Number(row.n);
		if (leftRunning === 0) break;
		await sleep(200);
	}
	const finishWaitMs = Date.now() - w0;
	const runs = (await c.sql<RawRun[]>(`SELECT ${BENCH_RUN_COLUMNS} FROM runs WHERE scheduledAt >= ? AND scheduledAt < ?`, [from, to])).map(benchRun);
	const perWorker: Record<string, number> = {};
	for (const r of runs) if (processStarted(r) && r.node) perWorker[r.node] = (perWorker[r.node] ?? 0) + 1;
	const started = startedRuns(runs, seconds);
	const deadlocks1 = await innodbDeadlocks();
	const inLogs = c.countInLogs(LOCK_TEXTS);
	const lockTotals = Object.fromEntries(LOCK_TEXTS.map((t) => [t, Object.values(inLogs).reduce((a, x) => a + (x[t] ?? 0), 0)]));
	return {
		bench: "cluster-lag",
		machine: { cpus: os.cpus().length, node: process.version, loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100) },
		config: { jobs: n, seconds, firesPerSecond: n, workers: WORKERS.length, schedule: "* * * * * *", command: "true", apiLogLevel },
		spawnPerSecond,
		...started,
		fireTimes: accountFireTimes(ids, everySecond(from, to), runs),
		lagBySecond: lagBySecond(runs, from, to),
		runningLeftAfterMs: { ms: finishWaitMs, running: leftRunning },
		lockConflicts: {
			inLogs: lockTotals,
			inLogsByProcess: inLogs,
			// Server-wide: the shared server's other clients count too.
			innodbDeadlocksDelta: deadlocks1 - deadlocks0,
			note: `retries of a conflicting transaction are logged at debug level (api-1 ran at ${apiLogLevel})`,
		},
		fireStagesMsPerWorker: stages,
		workersAtWindowEnd,
		startedPerWorker: perWorker,
		cpuDuringWindow: cpu,
		targetP99Ms: 100,
		targetMet: (started.lagMs.p99 ?? Infinity) < 100,
	};
}

runBench(() => cluster, main);
