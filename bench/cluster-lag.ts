/**
 * Fire lag on a real cluster of processes (API+jobs node, one manager, three workers) on MariaDB,
 * ZooKeeper and NATS: N per-second jobs (`* * * * * *`, command `true`; 200 = 200 fires per second
 * spread over the three workers) for S seconds.
 *
 *   npx tsc -p . && eval "$(scripts/services.sh env)" && node dist/bench/cluster-lag.js [--jobs 200] [--seconds 20]
 *
 * The jobs are bulk-inserted into the private database (the columns of the jobs service's model) and
 * announced with `jobs.changed`; once every worker's crontab holds its share and they fire, whole
 * seconds are measured. Lag = startedAt - scheduledAt of the runs (read from the runs table after the
 * window): p50/p99/max, executions per second, runs per worker, missing fires, and the CPU time each
 * process used during the window (/proc/<pid>/stat) beside the machine's raw spawn rate. Target: p99
 * under 100 ms. Prints JSON.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { arg, pct, spawnRate } from "./common";
import { BenchCluster, runBench, sleep, waitFor } from "./cluster";

const WORKERS = ["worker-1", "worker-2", "worker-3"];
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
	const c = (cluster = new BenchCluster({ ZOOKEEPER_SESSION_TIMEOUT_MS: "2000" }));
	await c.setup();
	await c.startCluster({ managers: ["manager-1"], workers: WORKERS });
	await c.insertJobs(n, { schedule: "* * * * * *", executable: "true" });
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
	const stages = Object.fromEntries(
		await Promise.all(WORKERS.map(async (w) => [w, ((await c.workerStatus(w)) as unknown as { fireStagesMs: unknown }).fireStagesMs] as const)),
	);
	// Let the window's runs finish and be recorded.
	await waitFor(
		async () => {
			const [row] = await c.sql<{ n: number }[]>("SELECT COUNT(*) AS n FROM runs WHERE scheduledAt >= ? AND scheduledAt < ? AND status = 'running'", [
				from,
				to,
			]);
			return Number(row.n) === 0;
		},
		30_000,
		"the window's runs finished",
		200,
	);
	const runs = await c.sql<{ jobId: string; scheduledAt: string; startedAt: string | null; status: string; node: string; attempt: number }[]>(
		"SELECT jobId, scheduledAt, startedAt, status, node, attempt FROM runs WHERE scheduledAt >= ? AND scheduledAt < ?",
		[from, to],
	);
	const lags: number[] = [];
	const perWorker: Record<string, number> = {};
	const statuses: Record<string, number> = {};
	const fires = new Set<string>();
	for (const r of runs) {
		statuses[r.status] = (statuses[r.status] ?? 0) + 1;
		fires.add(`${r.jobId} ${r.scheduledAt}`);
		if (r.status === "succeeded" && r.startedAt !== null) {
			lags.push(Number(r.startedAt) - Number(r.scheduledAt));
			perWorker[r.node] = (perWorker[r.node] ?? 0) + 1;
		}
	}
	lags.sort((a, b) => a - b);
	// Lag by offset within the second: does it grow with the position in the burst?
	const succeeded = lags.length;
	return {
		bench: "cluster-lag",
		machine: { cpus: os.cpus().length, node: process.version, loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100) },
		config: { jobs: n, seconds, firesPerSecond: n, workers: WORKERS.length, schedule: "* * * * * *", command: "true" },
		spawnPerSecond,
		expectedFires: n * seconds,
		runsByStatus: statuses,
		fireStagesMsPerWorker: stages,
		missingFires: n * seconds - fires.size,
		executionsPerSecond: Math.round((succeeded / seconds) * 10) / 10,
		lagMs: { p50: pct(lags, 50), p90: pct(lags, 90), p99: pct(lags, 99), max: lags.length ? lags[lags.length - 1] : null },
		succeededPerWorker: perWorker,
		cpuDuringWindow: cpu,
		targetP99Ms: 100,
		targetMet: (pct(lags, 99) ?? Infinity) < 100,
	};
}

runBench(() => cluster, main);
