/**
 * Small pieces every benchmark uses: command-line flags, percentiles, the raw spawn rate, a
 * process's memory, bounded waits, and the accounting of a window's fire times against the runs
 * table.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";

export function arg(name: string, def: string): string {
	const i = process.argv.indexOf(`--${name}`);
	return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}

/** The p-th percentile of an ascending array, or null when it is empty. */
export function pct(sorted: number[], p: number): number | null {
	if (sorted.length === 0) return null;
	return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** child_process.spawn("/bin/sh", ["-c", "true"]) per second, `concurrency` at a time, for `seconds`. */
export async function spawnRate(seconds: number, concurrency: number): Promise<number> {
	let done = 0;
	const until = Date.now() + seconds * 1000;
	const one = () =>
		new Promise<void>((resolve) => {
			const c = spawn("/bin/sh", ["-c", "true"], { stdio: "ignore" });
			c.on("exit", () => resolve());
			c.on("error", () => resolve());
		});
	await Promise.all(
		Array.from({ length: concurrency }, async () => {
			while (Date.now() < until) {
				await one();
				done++;
			}
		}),
	);
	return Math.round(done / seconds);
}

/** VmRSS and VmHWM (peak) of a process in MB, from /proc/<pid>/status. */
export function memoryMb(pid: number | "self"): { rssMb: number; peakRssMb: number } | null {
	try {
		const s = fs.readFileSync(`/proc/${pid}/status`, "utf8");
		const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(s)?.[1] ?? NaN);
		return { rssMb: Math.round(kb("VmRSS") / 102.4) / 10, peakRssMb: Math.round(kb("VmHWM") / 102.4) / 10 };
	} catch {
		return null;
	}
}

/** Start a new peak (VmHWM := VmRSS) for a process: `5` to /proc/<pid>/clear_refs (Linux 4.0+). False when refused. */
export function resetPeakRss(pid: number | "self"): boolean {
	try {
		fs.writeFileSync(`/proc/${pid}/clear_refs`, "5");
		return true;
	} catch {
		return false;
	}
}

/** Pids of the direct children of `parent` whose command line contains `needle` (a scan of /proc). */
export function childPids(parent: number, needle: string): number[] {
	const out: number[] = [];
	for (const d of fs.readdirSync("/proc")) {
		if (!/^\d+$/.test(d)) continue;
		try {
			const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
			const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
			if (ppid === parent && fs.readFileSync(`/proc/${d}/cmdline`, "utf8").includes(needle)) out.push(Number(d));
		} catch {
			/* gone meanwhile */
		}
	}
	return out;
}

/** `p`, or null when it has not settled after `ms` (it is left running). */
export async function within<T>(p: Promise<T>, ms: number): Promise<{ done: true; value: T } | { done: false }> {
	let timer: NodeJS.Timeout | undefined;
	const late = new Promise<{ done: false }>((resolve) => (timer = setTimeout(() => resolve({ done: false }), ms)));
	try {
		return await Promise.race([p.then((value) => ({ done: true as const, value })), late]);
	} finally {
		clearTimeout(timer);
	}
}

// ---- fire-time accounting ----

/** The statuses a run row can have (README, Runs). */
export const RUN_STATUSES = ["succeeded", "failed", "timed_out", "skipped", "missed", "running"] as const;

/** The columns of a `runs` row the accounting reads, as numbers whatever the driver answered (MySQL BIGINT may come as a string). */
export interface BenchRun {
	jobId: string;
	scheduledAt: number;
	attempt: number;
	status: string;
	startedAt: number | null;
	exitCode: number | null;
	signal: string | null;
	node: string | null;
}

/** The SELECT list that benchRun() reads (`signal` quoted: a MySQL keyword). */
export const BENCH_RUN_COLUMNS = "jobId, scheduledAt, attempt, status, startedAt, exitCode, `signal`, node";

/** A `runs` row as a driver answers it: BIGINT as a number (SQLite) or a string (mysql2). */
export type RawRun = { [K in keyof BenchRun]: string | number | null };

export function benchRun(r: RawRun): BenchRun {
	const num = (v: string | number | null) => (v === null ? null : Number(v));
	const text = (v: string | number | null) => (v === null ? null : String(v));
	return {
		jobId: String(r.jobId),
		scheduledAt: Number(r.scheduledAt),
		attempt: Number(r.attempt),
		status: String(r.status),
		startedAt: num(r.startedAt),
		exitCode: num(r.exitCode),
		signal: text(r.signal),
		node: text(r.node),
	};
}

/**
 * Whether the run's process started, i.e. the job's code ran: a final run with an exit code or a
 * signal (the engine's own test, lib/engine/worker/dispatcher.ts). A run that failed before its
 * process started (no slot before the worker stopped, a spawn error) has neither, and its startedAt
 * is only the time of the attempt; a `running` row has not ended (a held prefired process, or one
 * still queued) and is not counted.
 */
export function processStarted(r: BenchRun): boolean {
	return (r.status === "succeeded" || r.status === "failed" || r.status === "timed_out") && (r.exitCode !== null || r.signal !== null);
}

/** Every whole second in [from, to): the fire times of a `* * * * * *` job. */
export function everySecond(from: number, to: number): number[] {
	const out: number[] = [];
	for (let t = Math.ceil(from / 1000) * 1000; t < to; t += 1000) out.push(t);
	return out;
}

export interface FireAccounting {
	/** Jobs × fire times of the window. */
	fireTimes: number;
	/** Each fire time once, by the status of its row of the highest attempt. */
	byStatus: Record<(typeof RUN_STATUSES)[number] | "other", number>;
	/** Fire times with no row at all. */
	absent: number;
	/** Fire times with two or more first-attempt rows (the unique key should make it 0). */
	doubled: number;
	/** Fire times with a row of attempt 2 or more (a retry, or a rerun after an interrupted run). */
	retried: number;
	/** Rows given that match no fire time of the window (another job, an instant off the schedule). */
	rowsOffSchedule: number;
	/** sum(byStatus) + absent = fireTimes. */
	accountedFor: boolean;
}

/**
 * Every fire time of the window (each job × each of `times`) against the rows read for the window:
 * its status, or absent; doubled and retried fire times.
 */
export function accountFireTimes(jobIds: readonly string[], times: readonly number[], rows: readonly BenchRun[]): FireAccounting {
	const jobs = new Set(jobIds);
	const instants = new Set(times);
	const byFire = new Map<string, { first: number; latest: BenchRun }>();
	let rowsOffSchedule = 0;
	for (const r of rows) {
		if (!jobs.has(r.jobId) || !instants.has(r.scheduledAt)) {
			rowsOffSchedule++;
			continue;
		}
		const key = `${r.jobId} ${r.scheduledAt}`;
		const f = byFire.get(key);
		if (!f) byFire.set(key, { first: r.attempt === 1 ? 1 : 0, latest: r });
		else {
			if (r.attempt === 1) f.first++;
			if (r.attempt > f.latest.attempt) f.latest = r;
		}
	}
	const byStatus = Object.fromEntries([...RUN_STATUSES, "other"].map((s) => [s, 0])) as FireAccounting["byStatus"];
	let absent = 0;
	let doubled = 0;
	let retried = 0;
	for (const id of jobs)
		for (const t of times) {
			const f = byFire.get(`${id} ${t}`);
			if (!f) {
				absent++;
				continue;
			}
			const s = f.latest.status as keyof FireAccounting["byStatus"];
			byStatus[s in byStatus ? s : "other"]++;
			if (f.first >= 2) doubled++;
			if (f.latest.attempt > 1) retried++;
		}
	const fireTimes = jobs.size * times.length;
	const sum = Object.values(byStatus).reduce((a, b) => a + b, 0);
	return { fireTimes, byStatus, absent, doubled, retried, rowsOffSchedule, accountedFor: sum + absent === fireTimes };
}

/**
 * The runs of the window whose process started (processStarted): executions per second over the
 * window (every attempt), and the fire lag (startedAt - scheduledAt) of the first attempts: p50,
 * p90, p99, max, and the p99 of those that started under 1 s.
 */
/** Lag p50/p99 of the started first attempts per second of the window (where in time the lag is). */
export function lagBySecond(rows: readonly BenchRun[], from: number, to: number): { second: number; runs: number; p50: number | null; p99: number | null }[] {
	const out = [];
	for (let t = from; t < to; t += 1000) {
		const lags = rows
			.filter((r) => processStarted(r) && r.attempt === 1 && r.startedAt !== null && r.scheduledAt >= t && r.scheduledAt < t + 1000)
			.map((r) => (r.startedAt as number) - r.scheduledAt)
			.sort((a, b) => a - b);
		out.push({ second: (t - from) / 1000, runs: lags.length, p50: pct(lags, 50), p99: pct(lags, 99) });
	}
	return out;
}

export function startedRuns(rows: readonly BenchRun[], seconds: number) {
	const started = rows.filter(processStarted);
	const lags = started
		.filter((r) => r.attempt === 1 && r.startedAt !== null)
		.map((r) => (r.startedAt as number) - r.scheduledAt)
		.sort((a, b) => a - b);
	const under1s = lags.filter((l) => l < 1000);
	return {
		executions: started.length,
		executionsPerSecond: Math.round((started.length / seconds) * 10) / 10,
		lagMs: { p50: pct(lags, 50), p90: pct(lags, 90), p99: pct(lags, 99), max: lags.length ? lags[lags.length - 1] : null },
		startedUnder1s: { runs: under1s.length, lagP99Ms: pct(under1s, 99) },
	};
}
