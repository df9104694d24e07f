/**
 * 100,000 jobs on a real cluster of processes (API+jobs node, one manager, three workers) on MariaDB,
 * ZooKeeper and NATS.
 *
 *   npx tsc -p . && eval "$(scripts/services.sh env)" && node dist/bench/scale.js [--jobs 100000]
 *
 * The jobs are bulk-inserted into the private database's `jobs` table (the columns of the jobs
 * service's model) with a schedule that does not fire during the bench (`0 0 1 1 *`), then the bench
 * broadcasts `jobs.changed` (what the jobs service does after a create) and measures:
 * - initial assignment: from the broadcast until every worker's crontab holds all its assigned jobs
 *   and they sum to all the jobs (`worker.status` on each worker through a broker client on the
 *   cluster's namespace); target < 10 s;
 * - reassignment: SIGKILL one worker, time until the survivors' crontabs hold all the jobs; target < 5 s
 *   (this includes the 2 s ZooKeeper session timeout that detects the death);
 * - worker memory: VmRSS / VmHWM from /proc/<pid>/status; target < 300 MB.
 * The manager's own reconcile durations are read from its log. Prints JSON.
 */
import * as os from "node:os";
import { arg } from "./common";
import { BenchCluster, memoryMb, runBench, sleep, waitFor, type WorkerStatus } from "./cluster";

const WORKERS = ["worker-1", "worker-2", "worker-3"];
const VICTIM = "worker-2";
let cluster: BenchCluster | null = null;

function assignmentsLogged(log: string): { moves: number; ms: number; detail?: string }[] {
	return [...log.matchAll(/Assignment: (\d+) move\(s\) over \d+ worker\(s\) in (\d+) ms(?: \(([^)]*)\))?/g)].map((m) => ({
		moves: Number(m[1]),
		ms: Number(m[2]),
		...(m[3] ? { detail: m[3] } : {}),
	}));
}

async function statuses(c: BenchCluster, names: string[]): Promise<WorkerStatus[]> {
	return Promise.all(names.map((n) => c.workerStatus(n, 30_000)));
}

/** Poll until the workers' crontabs hold `total` jobs; answers the times (ms after t0) of the milestones. */
async function settle(c: BenchCluster, names: string[], total: number, t0: number, timeoutMs: number) {
	let assignedAllMs: number | null = null;
	let last: WorkerStatus[] = [];
	await waitFor(
		async () => {
			c.checkAlive(["api-1", "manager-1", ...names]);
			last = await statuses(c, names);
			const assigned = last.reduce((s, w) => s + w.assigned, 0);
			const loaded = last.reduce((s, w) => s + w.jobs, 0);
			if (assignedAllMs === null && assigned === total) assignedAllMs = Date.now() - t0;
			return assigned === total && loaded === total && last.every((w) => w.jobs === w.assigned);
		},
		timeoutMs,
		`${total} jobs on the crontabs of ${names.join(", ")}`,
		100,
	);
	return { doneMs: Date.now() - t0, assignedAllMs, perWorker: Object.fromEntries(last.map((w) => [w.node, w.jobs])) };
}

function memory(c: BenchCluster, names: string[]) {
	return Object.fromEntries(names.map((n) => [n, memoryMb(c.procs.get(n)!.pid)]));
}

async function main() {
	const total = Number(arg("jobs", "100000"));
	const c = (cluster = new BenchCluster({ ZOOKEEPER_SESSION_TIMEOUT_MS: "2000" }));
	await c.setup();
	await c.startCluster({ managers: ["manager-1"], workers: WORKERS });
	const idleMemory = memory(c, WORKERS);

	const ti = Date.now();
	await c.insertJobs(total, { schedule: "0 0 1 1 *", executable: "true" });
	const insertMs = Date.now() - ti;

	// ---- initial assignment
	const t0 = Date.now();
	c.announceJobsChanged();
	const initial = await settle(c, WORKERS, total, t0, 180_000);
	await sleep(500);
	const initialReconciles = assignmentsLogged(c.procs.get("manager-1")!.log());
	const loadedMemory = memory(c, WORKERS);

	// ---- SIGKILL one worker: its third moves to the survivors
	const survivors = WORKERS.filter((w) => w !== VICTIM);
	const before = (await c.workerStatus(VICTIM)).jobs;
	const killedAt = await c.kill(VICTIM);
	const reassign = await settle(c, survivors, total, killedAt, 180_000);
	await sleep(500);
	const allReconciles = assignmentsLogged(c.procs.get("manager-1")!.log());
	// When the manager logged the reassignment, counted from the kill (its log lines carry the time).
	const day = new Date(killedAt).toISOString().slice(0, 10);
	const loggedAt = [
		...c.procs
			.get("manager-1")!
			.log()
			.matchAll(/\[(\d\d:\d\d:\d\d\.\d+Z)\][^\n]*Assignment: (\d+) move/g),
	]
		.map((m) => ({ moves: Number(m[2]), sinceKillMs: Date.parse(`${day}T${m[1]}`) - killedAt }))
		.filter((x) => x.sinceKillMs >= 0);
	const afterMemory = memory(c, survivors);

	const peak = Math.max(...Object.values({ ...loadedMemory, ...afterMemory }).map((m) => m?.peakRssMb ?? 0));
	return {
		bench: "scale",
		machine: { cpus: os.cpus().length, node: process.version },
		config: { jobs: total, workers: WORKERS.length, managers: 1, schedule: "0 0 1 1 *", sessionTimeoutMs: 2000 },
		insert: { ms: insertMs, rowsPerSecond: Math.round(total / (insertMs / 1000)) },
		initialAssignment: {
			ms: initial.doneMs,
			allAssignedSeenByWorkersMs: initial.assignedAllMs,
			managerReconciles: initialReconciles,
			perWorker: initial.perWorker,
			targetMs: 10_000,
			targetMet: initial.doneMs < 10_000,
		},
		reassignment: {
			victim: VICTIM,
			victimJobs: before,
			ms: reassign.doneMs,
			allAssignedSeenByWorkersMs: reassign.assignedAllMs,
			managerReconciles: allReconciles.slice(initialReconciles.length),
			managerDoneSinceKill: loggedAt,
			perWorker: reassign.perWorker,
			targetMs: 5000,
			targetMet: reassign.doneMs < 5000,
		},
		workerMemoryMb: { idle: idleMemory, loaded: loadedMemory, afterReassignment: afterMemory, peakRssMb: peak, targetMb: 300, targetMet: peak < 300 },
	};
}

runBench(() => cluster, main);
