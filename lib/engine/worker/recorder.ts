/**
 * The run recorder: every run start, run end and fire that did not run goes to the run ledger
 * through here. Starts and ends made in the same turn are batched into one call (one transaction).
 * A result that cannot be written (the database is down) waits in the outbox, persisted through the
 * OutboxStore so that a restart does not lose it, and is written later, in order: nothing is lost.
 */
import type { Clock, TimerHandle } from "../../core/clock";
import type { Run, RunStatus, RunTrigger } from "../../core/types";
import type { WorkerJob } from "../../core/views";
import { Batcher, batchLength, type BatchBounds } from "../batcher";
import type { FinishRequest, JobsClient, Logger, NotRunRequest, OutboxStore, ProcessResult, StartRequest, WorkerMetrics } from "./ports";

/**
 * How long the outbox waits before it tries the database again. Short: once the database (or the
 * transporter to the jobs service) is back, the fires kept meanwhile wait for the outbox to be
 * written before they run (recovery.ts retryUnstarted), so this adds to every recovery; a try
 * while the backend is still down costs one refused call.
 */
export const OUTBOX_RETRY_MS = 250;
/**
 * Skipped and missed fires per write. Large: an overload far past capacity records thousands a
 * second, and with one write in flight (the Batcher's group commit) the batch size is the rate. A
 * record is a few hundred bytes: 2000 stay well under NATS's 1 MB message.
 */
const NOT_RUN_BATCH = 2000;
/** Results per write when the outbox drains. */
const OUTBOX_BATCH = 500;
/**
 * Results' size per write, as JSON: a call to the jobs service is one NATS message in a cluster, and
 * NATS refuses a message past its max_payload (1 MiB by default). Unbounded, 500 results of 64 KiB
 * output each made a 32 MiB batch that failed every time, in the outbox too: the runs stayed
 * `running` for good.
 */
export const FINISH_BATCH_BYTES = 512 * 1024;

/** A result's size in a message: its output and error as JSON strings, and the rest. */
export function resultBytes(r: FinishRequest): number {
	return 256 + jsonBytes(r.output) + (r.error === null ? 0 : jsonBytes(r.error));
}

function jsonBytes(s: string): number {
	// Escapes (control characters take 6 bytes) and UTF-8 (up to 3 bytes a character) both count.
	return Buffer.byteLength(JSON.stringify(s), "utf8");
}

const FINISH_BOUNDS = { maxBatch: OUTBOX_BATCH, weigh: resultBytes, maxWeight: FINISH_BATCH_BYTES };

export interface WorkerStats {
	fired: number;
	succeeded: number;
	failed: number;
	skipped: number;
	missed: number;
}

export interface RecorderDeps {
	clock: Clock;
	jobs: JobsClient;
	outbox: OutboxStore;
	logger: Logger;
	metrics: WorkerMetrics;
	nodeId: string;
}

export class RunRecorder {
	readonly stats: WorkerStats = { fired: 0, succeeded: 0, failed: 0, skipped: 0, missed: 0 };
	private readonly starts: Batcher<StartRequest, Run | null>;
	private readonly finishes: Batcher<FinishRequest, boolean>;
	private readonly notRuns: Batcher<NotRunRequest, unknown>;
	/** Results not yet written (the database was down), oldest first. */
	private outbox: FinishRequest[] = [];
	/** Skipped and missed fires not yet written (the database was down), written with the outbox. */
	private notRunLater: NotRunRequest[] = [];
	/** notRun records on their way (stop() waits for them: they are the only trace of those fires). */
	private readonly notRunsInFlight = new Set<Promise<void>>();
	private outboxTimer: TimerHandle | null = null;
	/** The outbox write in flight (or the last one, settled). */
	private flushing: Promise<void> = Promise.resolve();
	private stopped = false;

	constructor(private readonly deps: RecorderDeps) {
		const schedule = (fn: () => void) => void deps.clock.setTimeout(fn, 0);
		this.starts = new Batcher((runs) => deps.jobs.startRuns(runs), { schedule });
		this.finishes = new Batcher((results) => deps.jobs.finishRuns(results), { schedule, ...FINISH_BOUNDS });
		// One write for every fire recorded skipped or missed in the same turn (an overload records
		// hundreds a second).
		this.notRuns = new Batcher(
			async (fires) => {
				await deps.jobs.recordRuns(fires);
				return fires.map(() => null);
			},
			{ schedule, maxBatch: NOT_RUN_BATCH },
		);
	}

	/** Results kept from before a restart; answers how many. */
	loadOutbox(): number {
		this.outbox = this.deps.outbox.load();
		return this.outbox.length;
	}

	get pendingResults(): number {
		return this.outbox.length + this.notRunLater.length;
	}

	/** Whether a run's result waits in the outbox (it ran here; it is not a cut-off run). */
	inOutbox(runId: string): boolean {
		return this.outbox.some((o) => o.runId === runId);
	}

	/** Record a run's start. Resolves null when the fire already has a run; rejects while the database is down. */
	start(jobId: string, scheduledAt: number, attempt: number, trigger: RunTrigger): Promise<Run | null> {
		return this.starts.add({ jobId, scheduledAt, attempt, trigger, node: this.deps.nodeId });
	}

	/** Record a run's end; while the database is down, keep it and retry until it is written. Never rejects. */
	async finish(job: WorkerJob, run: Run, result: ProcessResult, willRetry: boolean, status: RunStatus = result.status): Promise<void> {
		this.count(status);
		const req: FinishRequest = {
			runId: run.id,
			jobId: job.id,
			scheduledAt: Date.parse(run.scheduledAt),
			recurring: job.recurring,
			status,
			exitCode: result.exitCode,
			signal: result.signal,
			output: result.output,
			startedAt: status === "skipped" ? null : result.startedAt,
			finishedAt: result.finishedAt,
			error: result.error,
			willRetry,
		};
		try {
			await this.finishes.add(req);
		} catch (err) {
			this.deps.logger.warn(`Cannot record run ${run.id} now (${(err as Error).message}); keeping it to retry`);
			this.outbox.push(req);
			this.deps.outbox.save(this.outbox);
			this.armOutbox();
		}
	}

	/**
	 * Write what waits in the outbox, oldest first; on failure try again later. Never rejects. One
	 * write at a time: a call while one is in flight runs after it (the retry timer's and a stopping
	 * engine's last try can meet). Two at once would send the same batch and each drop a batch from
	 * the front: after a failure of the one, the other's drop would take results never written.
	 */
	flushOutbox(): Promise<void> {
		const next = this.flushing.then(() => this.drainOutbox());
		this.flushing = next.catch(() => undefined);
		return next;
	}

	private async drainOutbox(): Promise<void> {
		this.outboxTimer = null;
		const recorded = await this.drain(this.notRunLater, { maxBatch: OUTBOX_BATCH }, (batch) => this.deps.jobs.recordRuns(batch));
		if (!recorded) return;
		await this.drain(
			this.outbox,
			FINISH_BOUNDS,
			(batch) => this.deps.jobs.finishRuns(batch),
			(n) => {
				this.deps.outbox.save(this.outbox);
				this.deps.logger.info(`Recorded ${n} run result(s) kept while the jobs service or its database was unreachable`);
			},
		);
	}

	/** Write a queue of kept records, oldest first, a batch at a time; false (and a retry armed) when a write fails. */
	private async drain<T>(queue: T[], bounds: BatchBounds<T>, write: (batch: T[]) => Promise<unknown>, written?: (n: number) => void): Promise<boolean> {
		while (queue.length > 0) {
			const batch = queue.slice(0, batchLength(queue, bounds));
			try {
				await write(batch);
			} catch {
				this.armOutbox();
				return false;
			}
			queue.splice(0, batch.length);
			written?.(batch.length);
		}
		return true;
	}

	/**
	 * Record a fire that did not run (skipped, missed). Never rejects: while the database is down the
	 * record waits and is written with the outbox (kept in memory: after a restart the catch-up of
	 * the job's fires finds such a fire again).
	 */
	async notRun(job: WorkerJob, scheduledAt: number, trigger: RunTrigger, status: "skipped" | "missed", error: string): Promise<void> {
		if (status === "skipped") this.stats.skipped++;
		else this.stats.missed++;
		this.count(status);
		const req: NotRunRequest = { jobId: job.id, scheduledAt, trigger, status, node: this.deps.nodeId, error };
		const written = this.notRuns.add(req).then(
			() => undefined,
			(err: unknown) => {
				// One line for a series of failures, not one per fire (an overload records thousands).
				if (this.notRunLater.length === 0)
					this.deps.logger.warn(`Cannot record skipped or missed fires now (${(err as Error).message}); keeping them to retry`);
				this.notRunLater.push(req);
				this.armOutbox();
			},
		);
		this.notRunsInFlight.add(written);
		void written.finally(() => this.notRunsInFlight.delete(written));
		return written;
	}

	/** The skipped and missed records on their way have been written (or kept to retry). */
	async settled(): Promise<void> {
		await Promise.all([...this.notRunsInFlight]);
	}

	/** A run cut off elsewhere was marked failed (cronjob_runs_total). */
	countAbandoned(): void {
		this.count("failed");
	}

	/** No more timers: the engine is stopping (a last flushOutbox may still be called). */
	stop(): void {
		this.stopped = true;
		if (this.outboxTimer) this.deps.clock.clearTimeout(this.outboxTimer);
		this.outboxTimer = null;
	}

	private armOutbox(): void {
		if (this.stopped || this.outboxTimer) return;
		this.outboxTimer = this.deps.clock.setTimeout(() => void this.flushOutbox(), OUTBOX_RETRY_MS);
	}

	private count(status: RunStatus): void {
		if (status !== "running") this.deps.metrics.runRecorded(status);
	}
}
