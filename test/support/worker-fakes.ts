/**
 * Fakes for the worker engine's tests (lib/engine/worker/ports.ts): a jobs service with an in-memory
 * run ledger that can be taken down, a process runner on the fake clock, an outbox in memory. Each
 * records what it was asked.
 */
import type { TimerHandle } from "../../lib/core/clock";
import { UnavailableError } from "../../lib/core/errors";
import { validateJobCreate } from "../../lib/core/validation";
import type { Run } from "../../lib/core/types";
import type { RunRow, WorkerJob } from "../../lib/core/views";
import type {
	FinishRequest,
	InflightRun,
	JobsClient,
	NotRunRequest,
	OutboxStore,
	PreparedProcess,
	ProcessResult,
	ProcessRunner,
	StartRequest,
} from "../../lib/engine/worker/ports";
import type { FakeClock } from "./fake-clock";

/** A row of the fake run ledger: the run table's columns the engine's cases look at. */
export type LedgerRow = Pick<RunRow, "id" | "jobId" | "scheduledAt" | "attempt" | "trigger" | "status" | "node" | "error" | "output" | "exitCode">;

/** A job as the worker sees it: the API's defaults for a per-second command, then `over`. */
export function workerJob(id: string, over: Partial<WorkerJob> = {}, createdAt = 0): WorkerJob {
	const { name: _name, ...settings } = validateJobCreate({ type: "command", executable: `run ${id}`, schedule: "* * * * * *" }, { admin: true });
	return { id, ...settings, digest: null, size: null, status: "scheduled", deleted: false, lastScheduledAt: null, createdAt, updatedAt: createdAt, ...over };
}

type Method = keyof JobsClient;

/** The jobs service and its run ledger (unique key: job, scheduledAt, attempt). */
export class FakeJobs implements JobsClient {
	readonly jobs = new Map<string, WorkerJob>();
	readonly runs: LedgerRow[] = [];
	readonly calls: { method: Method; args: unknown }[] = [];
	/** Every call rejects while true (the database is down). */
	down = false;
	/** These calls reject. */
	readonly failing = new Set<Method>();
	private seq = 0;

	constructor(private readonly clock: FakeClock) {}

	put(job: WorkerJob): WorkerJob {
		this.jobs.set(job.id, job);
		return job;
	}

	/** Change a stored job (a PATCH): a new version. */
	edit(id: string, change: Partial<WorkerJob>): void {
		const job = this.jobs.get(id)!;
		this.jobs.set(id, { ...job, ...change, updatedAt: this.clock.now() });
	}

	rowsOf(jobId: string): LedgerRow[] {
		return this.runs.filter((r) => r.jobId === jobId).sort((a, b) => a.scheduledAt - b.scheduledAt || a.attempt - b.attempt);
	}

	private enter(method: Method, args: unknown): void {
		this.calls.push({ method, args });
		if (this.down || this.failing.has(method)) throw new UnavailableError("database", "connect ECONNREFUSED");
	}

	private view(r: LedgerRow): Run {
		return {
			id: r.id,
			jobId: r.jobId,
			scheduledAt: new Date(r.scheduledAt).toISOString(),
			startedAt: null,
			finishedAt: null,
			status: r.status,
			exitCode: r.exitCode,
			signal: null,
			output: r.output,
			node: r.node,
			attempt: r.attempt,
			trigger: r.trigger,
			error: r.error,
		};
	}

	private find(jobId: string, scheduledAt: number, attempt: number): LedgerRow | undefined {
		return this.runs.find((r) => r.jobId === jobId && r.scheduledAt === scheduledAt && r.attempt === attempt);
	}

	async byIds(ids: string[]): Promise<WorkerJob[]> {
		this.enter("byIds", ids);
		const out: WorkerJob[] = [];
		for (const id of ids) {
			const job = this.jobs.get(id);
			if (!job) continue;
			// As the jobs service does: the catch-up baseline is the newest handled (non-manual) fire.
			const handled = this.runs.filter((r) => r.jobId === id && r.trigger !== "manual").map((r) => r.scheduledAt);
			const latest = Math.max(job.lastScheduledAt ?? 0, ...handled);
			out.push({ ...job, env: { ...job.env }, lastScheduledAt: latest > 0 ? latest : job.lastScheduledAt });
		}
		return out;
	}

	async startRuns(reqs: StartRequest[]): Promise<(Run | null)[]> {
		this.enter("startRuns", reqs);
		return reqs.map((r) => {
			if (this.find(r.jobId, r.scheduledAt, r.attempt)) return null;
			const row: LedgerRow = { id: `run-${++this.seq}`, ...r, status: "running", error: null, output: "", exitCode: null };
			this.runs.push(row);
			return this.view(row);
		});
	}

	async finishRuns(results: FinishRequest[]): Promise<boolean[]> {
		this.enter("finishRuns", results);
		return results.map((res) => {
			const row = this.runs.find((r) => r.id === res.runId);
			if (!row || row.status !== "running") return false;
			Object.assign(row, { status: res.status, error: res.error, output: res.output, exitCode: res.exitCode });
			return true;
		});
	}

	async recordRuns(fires: NotRunRequest[]): Promise<unknown> {
		this.enter("recordRuns", fires);
		for (const f of fires) {
			if (this.find(f.jobId, f.scheduledAt, 1)) continue;
			this.runs.push({
				id: `run-${++this.seq}`,
				jobId: f.jobId,
				scheduledAt: f.scheduledAt,
				attempt: 1,
				trigger: f.trigger,
				status: f.status,
				node: f.node,
				error: f.error ?? null,
				output: "",
				exitCode: null,
			});
		}
		return fires.length;
	}

	async inflight(jobIds: string[]): Promise<InflightRun[]> {
		this.enter("inflight", jobIds);
		return this.runs
			.filter((r) => r.status === "running" && jobIds.includes(r.jobId))
			.map((r) => ({ id: r.id, jobId: r.jobId, scheduledAt: r.scheduledAt, attempt: r.attempt, trigger: r.trigger, node: r.node }));
	}

	async abandonRun(runId: string, error: string): Promise<boolean> {
		this.enter("abandonRun", { runId, error });
		const row = this.runs.find((r) => r.id === runId && r.status === "running");
		if (!row) return false;
		Object.assign(row, { status: "failed", error });
		return true;
	}

	/** How dbTime answers: by default at once, with the fake clock's time. */
	dbTimeAnswer: (() => Promise<number>) | null = null;

	async dbTime(): Promise<number> {
		this.enter("dbTime", null);
		return this.dbTimeAnswer ? this.dbTimeAnswer() : this.clock.now();
	}
}

export interface ProcessRecord {
	jobId: string;
	scheduledAt: number;
	attempt: number;
	executable: string;
	/** When the job's code began (the release of a held process). */
	startedAt: number;
	/** When it was spawned (ahead of startedAt when prefired). */
	spawnedAt: number;
}

/**
 * Processes on the fake clock. A job's env sets what its process does: DURATION_MS (default 100),
 * EXIT (default 0), SPAWN_MS (how long spawning takes, default 0) and RELEASE_LATE_MS (how late a held
 * process's release comes after its instant, as on a busy machine; default 0). A prefired process is
 * held until its release instant; cancelled before it, its code never runs (released: false).
 */
export class FakeRunner implements ProcessRunner {
	readonly started: ProcessRecord[] = [];
	/** Processes that exist now (held or running). */
	live = 0;
	/** The most at once. */
	peak = 0;
	/** prepare() rejects with this (an executable that cannot be fetched). */
	prepareError: Error | null = null;
	closed = false;

	constructor(private readonly clock: FakeClock) {}

	async prepare(job: WorkerJob, run: Run, attempt: number, opts: { signal: AbortSignal; releaseAt: number | null }): Promise<PreparedProcess> {
		if (this.prepareError) throw this.prepareError;
		const clock = this.clock;
		const duration = Number(job.env.DURATION_MS ?? 100);
		const exit = Number(job.env.EXIT ?? 0);
		const spawnMs = Number(job.env.SPAWN_MS ?? 0);
		const releaseLateMs = Number(job.env.RELEASE_LATE_MS ?? 0);
		const scheduledAt = Date.parse(run.scheduledAt);
		return {
			start: () =>
				new Promise<ProcessResult>((resolve) => {
					const spawnedAt = clock.now();
					this.live++;
					this.peak = Math.max(this.peak, this.live);
					let done = false;
					const end = (r: Omit<ProcessResult, "output" | "finishedAt">) => {
						if (done) return;
						done = true;
						this.live--;
						resolve({ ...r, output: r.exitCode === 0 ? `${job.executable}\n` : "", finishedAt: clock.now() });
					};
					let running = false;
					let timer: TimerHandle | null = null;
					const begin = () => {
						running = true;
						const startedAt = clock.now();
						this.started.push({ jobId: job.id, scheduledAt, attempt, executable: job.executable, startedAt, spawnedAt });
						timer = clock.setTimeout(
							() =>
								end({
									status: exit === 0 ? "succeeded" : "failed",
									exitCode: exit,
									signal: null,
									startedAt,
									error: null,
									...(opts.releaseAt !== null ? { released: true, readyAt } : {}),
								}),
							duration,
						);
					};
					// Spawned and ready after SPAWN_MS; a held process starts at its release, or when ready if later.
					const readyAt = clock.now() + spawnMs;
					const beginAt = opts.releaseAt !== null ? Math.max(opts.releaseAt + releaseLateMs, readyAt) : readyAt;
					timer = clock.setTimeout(begin, beginAt - clock.now());
					const onAbort = () => {
						if (timer) clock.clearTimeout(timer);
						if (running)
							end({
								status: "failed",
								exitCode: null,
								signal: "SIGTERM",
								startedAt: clock.now(),
								error: "cancelled",
								...(opts.releaseAt !== null ? { released: true } : {}),
							});
						else end({ status: "failed", exitCode: null, signal: null, startedAt: clock.now(), error: "cancelled before its release", released: false });
					};
					if (opts.signal.aborted) onAbort();
					else opts.signal.addEventListener("abort", onAbort, { once: true });
				}),
			dispose: () => undefined,
		};
	}

	async close(): Promise<void> {
		this.closed = true;
	}
}

export class MemoryOutbox implements OutboxStore {
	saved: FinishRequest[] = [];
	load(): FinishRequest[] {
		return [...this.saved];
	}
	save(pending: readonly FinishRequest[]): void {
		this.saved = [...pending];
	}
}

export interface LogLine {
	level: "debug" | "info" | "warn" | "error";
	text: string;
}

export function recordingLogger(lines: LogLine[]) {
	const at =
		(level: LogLine["level"]) =>
		(...args: unknown[]) =>
			void lines.push({ level, text: args.map(String).join(" ") });
	return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}
