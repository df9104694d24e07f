/**
 * What the worker engine needs from the outside world, as small interfaces. The service shell
 * (services/worker.service.ts) passes the real ones (the broker, the process adapter, a file); the
 * engine's tests pass fakes that record their calls.
 */
import type { InflightRun, Run, RunRecord, RunResult, RunStart, RunStatus } from "../../core/types";
import type { WorkerJob } from "../../core/views";

export interface Logger {
	debug(...args: unknown[]): void;
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
	error(...args: unknown[]): void;
}

/** The start of a run, as the run ledger records it. */
export type StartRequest = RunStart;

/** The end of a run, as the run ledger records it. */
export type FinishRequest = RunResult & { willRetry: boolean };

/** A fire that did not run (skipped by the concurrency policy, missed by the misfire policy). */
export type NotRunRequest = RunRecord;

export type { InflightRun };

/**
 * The jobs service, typed (each method is one action of services/jobs.service.ts). Every method
 * rejects while the database is unreachable.
 */
export interface JobsClient {
	/** The jobs with these ids (missing ids are absent from the answer). */
	byIds(ids: string[]): Promise<WorkerJob[]>;
	/** Record run starts; per item the run, or null when that (job, scheduledAt, attempt) already has one. */
	startRuns(runs: StartRequest[]): Promise<(Run | null)[]>;
	/** Record run ends; per item whether it was written now (idempotent). */
	finishRuns(results: FinishRequest[]): Promise<boolean[]>;
	/** Fires that did not run (skipped, missed), in one write; a fire that has a run keeps it. */
	recordRuns(fires: NotRunRequest[]): Promise<unknown>;
	/** Runs of these jobs the ledger still has as running. */
	inflight(jobIds: string[]): Promise<InflightRun[]>;
	/** Mark a run cut off (failed); false when it was no longer running. */
	abandonRun(runId: string, error: string): Promise<boolean>;
	/** The database server's clock, epoch ms. */
	dbTime(): Promise<number>;
}

/** How a run's process ended (the process adapter, lib/adapters/process/executor.ts, answers it). */
export interface ProcessResult {
	status: "succeeded" | "failed" | "timed_out";
	exitCode: number | null;
	/** The signal that ended the main process, e.g. "SIGTERM". */
	signal: string | null;
	output: string;
	/** When the job's code started (a held process: its release); when it never started, the time of the attempt. */
	startedAt: number;
	finishedAt: number;
	/** Why the run failed other than by its exit code: start failure, timeout, cancellation. */
	error: string | null;
	/** Prefired runs only: whether the job's code was released (false: it never ran). */
	released?: boolean;
	/**
	 * Prefired runs only: when the held process was spawned and waiting for its release. Later than
	 * the instant, the hand-over (claim, record, spawn) overran the lead; earlier, a late start was
	 * the release's own delay, which no lead cures.
	 */
	readyAt?: number;
}

/** The result of a run whose process never started (at `at`, for `error`). */
export function failedBeforeStart(at: number, error: string, released?: false): ProcessResult {
	return { status: "failed", exitCode: null, signal: null, output: "", startedAt: at, finishedAt: at, error, ...(released === false ? { released } : {}) };
}

/** A run's process, prepared (user resolved, executable fetched) but not started. */
export interface PreparedProcess {
	/** Spawn it (held until `releaseAt` when given) and wait for its end. Never rejects. */
	start(): Promise<ProcessResult>;
	/** Give back what preparing took (the executable's cache lease). Idempotent. */
	dispose(): void;
}

export interface ProcessRunner {
	/**
	 * Prepare a run's process: rejects (with the reason the run fails) when it cannot be (no stored
	 * executable, unknown user, object store down). `releaseAt` (the engine's clock) holds the
	 * process until that instant (prefire); `signal` cancels it.
	 */
	prepare(job: WorkerJob, run: Run, attempt: number, opts: { signal: AbortSignal; releaseAt: number | null }): Promise<PreparedProcess>;
	/** Stop the helper processes (after the last run). */
	close(): Promise<void>;
}

/** Where results wait while the database is down, so that a restart does not lose them. */
export interface OutboxStore {
	load(): FinishRequest[];
	save(pending: readonly FinishRequest[]): void;
}

/** The engine's metrics (Prometheus through the broker in production; a no-op or a recorder in tests). */
export interface WorkerMetrics {
	runRecorded(status: RunStatus): void;
	/** Process start minus the scheduled instant, seconds (first attempts of started processes). */
	fireLag(seconds: number): void;
	crontabSize(n: number): void;
}

export const NO_METRICS: WorkerMetrics = { runRecorded() {}, fireLag() {}, crontabSize() {} };
