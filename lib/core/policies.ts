/**
 * Pure decision functions for the worker and the jobs service: misfire catch-up, overlapping runs,
 * retries and the job status after a run. No I/O, no clock, no module-level state.
 */
import type { ConcurrencyPolicy, JobStatus, MisfirePolicy, RunStatus, RunTrigger } from "./types";

export const DEFAULT_MAX_CATCH_UP = 1000;
export const DEFAULT_RETRY_BASE_MS = 1000;
export const DEFAULT_RETRY_MAX_MS = 60_000;

export interface MisfireDecision {
	/** Fire times to run now (late), ascending. */
	run: number[];
	/** Fire times to record as missed, ascending. */
	missed: number[];
}

/**
 * What to do with the fire times that passed while no worker owned the job.
 * - `run_all`: run every one of them, late, oldest first; at most `maxCatchUp` (the newest ones),
 *   the older ones beyond the cap are marked missed.
 * - `run_once`: run only the latest one, mark the others missed.
 * - `skip`: run none, mark all missed.
 * `missed` is expected ascending; it is copied, sorted and de-duplicated, never modified.
 */
export function misfireDecision(policy: MisfirePolicy, missed: readonly number[], maxCatchUp: number = DEFAULT_MAX_CATCH_UP): MisfireDecision {
	const times = Array.from(new Set(missed)).sort((a, b) => a - b);
	if (times.length === 0) return { run: [], missed: [] };
	switch (policy) {
		case "skip":
			return { run: [], missed: times };
		case "run_once":
			return { run: times.slice(-1), missed: times.slice(0, -1) };
		case "run_all": {
			const cap = Math.max(0, Math.floor(maxCatchUp));
			const cut = Math.max(0, times.length - cap);
			return { run: times.slice(cut), missed: times.slice(0, cut) };
		}
		default:
			throw new TypeError(`unknown misfire policy ${JSON.stringify(policy)}`);
	}
}

/**
 * A fire time arrived while `runningCount` runs of the same job are still going:
 * `allow` → "run" (in parallel); `forbid` → "skip" the new one when something runs;
 * `replace` → "replace" (stop the running ones, then run) when something runs. With nothing
 * running every policy gives "run".
 */
export function overlapDecision(policy: ConcurrencyPolicy, runningCount: number): "run" | "skip" | "replace" {
	switch (policy) {
		case "allow":
			return "run";
		case "forbid":
			return runningCount > 0 ? "skip" : "run";
		case "replace":
			return runningCount > 0 ? "replace" : "run";
		default:
			throw new TypeError(`unknown concurrency policy ${JSON.stringify(policy)}`);
	}
}

export interface RetryDelayOptions {
	/** Delay before the first retry, ms (default 1000). */
	baseMs?: number;
	/** Upper bound, ms (default 60000). */
	maxMs?: number;
	/**
	 * Optional jitter source returning [0, 1). With it the delay is drawn uniformly from
	 * [delay/2, delay) ("equal jitter"); without it the delay is exact.
	 */
	random?: () => number;
}

/**
 * Exponential backoff before retry number `attempt` (1 = the first retry, i.e. after the first
 * attempt failed): baseMs * 2^(attempt-1), capped at maxMs. Deterministic unless `random` is given.
 */
export function retryDelayMs(attempt: number, opts: RetryDelayOptions = {}): number {
	const base = opts.baseMs ?? DEFAULT_RETRY_BASE_MS;
	const max = opts.maxMs ?? DEFAULT_RETRY_MAX_MS;
	if (!Number.isFinite(base) || base < 0 || !Number.isFinite(max) || max < 0) {
		throw new RangeError("retryDelayMs: baseMs and maxMs must be finite and >= 0");
	}
	const n = Number.isFinite(attempt) ? Math.max(1, Math.floor(attempt)) : 1;
	// 2^1023 is the largest finite power; beyond that the cap applies anyway.
	const delay = Math.min(max, base * Math.pow(2, Math.min(n - 1, 1023)));
	if (!opts.random) return delay;
	const r = Math.min(Math.max(opts.random(), 0), 1);
	return Math.floor(delay / 2 + (delay / 2) * r);
}

/**
 * Whether a finished attempt should be retried. `attempt` counts from 1 (the attempt that just
 * ended); `retries` is the number of retries allowed, so retries=2 allows 3 attempts in total.
 * Only failed and timed_out runs are retried.
 */
export function shouldRetry(runStatus: RunStatus, attempt: number, retries: number): boolean {
	return (runStatus === "failed" || runStatus === "timed_out") && attempt <= retries;
}

/**
 * The job status after a run reached `runStatus`.
 * - succeeded: a recurring job goes (back) to `scheduled`; a one-shot job (recurring=false) is
 *   `finished`.
 * - failed / timed_out with a retry pending (`willRetry`): unchanged, the outcome is not final yet.
 * - failed / timed_out, final attempt: `error`, recurring or not. A recurring job keeps being
 *   scheduled in `error` status and returns to `scheduled` on its next success; a one-shot job
 *   will not run again either way (error = it ended badly, finished = it ended well).
 * - skipped / missed / running: unchanged.
 * Deleting a job (→ `finished`) is the caller's business, as is ignoring late results for it.
 */
export function jobStatusAfterRun(job: { recurring: boolean; status: JobStatus }, runStatus: RunStatus, willRetry: boolean): JobStatus {
	switch (runStatus) {
		case "succeeded":
			return job.recurring ? "scheduled" : "finished";
		case "failed":
		case "timed_out":
			return willRetry ? job.status : "error";
		case "skipped":
		case "missed":
		case "running":
			return job.status;
		default:
			throw new TypeError(`unknown run status ${JSON.stringify(runStatus)}`);
	}
}

/**
 * How far ahead of its fire times the crontab hands a job's fires over (0 = at the instant). Only
 * recurring `allow` jobs are prefired: `forbid` and `replace` decide on the runs still going AT the
 * instant, which cannot be known ahead, and a one-shot job's single fire is not worth the risk of
 * a change racing it.
 */
export function prefireLeadMs(job: { recurring: boolean; concurrency: ConcurrencyPolicy }, leadMs: number): number {
	return leadMs > 0 && job.recurring && job.concurrency === "allow" ? leadMs : 0;
}

/**
 * How the worker takes a fire at instant `at` when it gets it:
 * - "prefire": claim it, record it and spawn its process now, held until `at` (lib/executor.ts);
 *   for first attempts of scheduled fires of jobs that prefireLeadMs allows, when a process slot
 *   is free now.
 * - "wait": handed over early but not (or no longer) eligible: wait until `at`, then fire as usual.
 * - "now": the instant has come (or passed): fire as usual.
 */
export function prefireDecision(
	job: { recurring: boolean; concurrency: ConcurrencyPolicy },
	fire: { trigger: RunTrigger; attempt: number; at: number },
	now: number,
	leadMs: number,
	slotFree = true,
): "prefire" | "wait" | "now" {
	if (fire.at <= now) return "now";
	// A held process keeps its slot until it has run: without a free slot now (an overloaded
	// worker), holding would only take slots from runs already due.
	if (prefireLeadMs(job, leadMs) > 0 && fire.trigger === "schedule" && fire.attempt === 1 && slotFree) return "prefire";
	return "wait";
}

/**
 * A prefired fire is held (its process not released yet) when its job is reloaded:
 * - "keep": the job is unchanged (same `updatedAt`): the held process goes on.
 * - "rebuild": the job changed but still fires at that instant: prepare the process again from the
 *   new definition (same claim, same run record).
 * - "cancel": the job is gone, deleted, suspended or finished, or no longer fires then: the held
 *   process is killed and the run recorded as skipped; the job's code never ran.
 */
export function heldFireAfterReload(
	held: { updatedAt: number },
	fresh: { updatedAt: number; schedulable: boolean; firesAt: boolean } | null,
): "keep" | "rebuild" | "cancel" {
	if (!fresh || !fresh.schedulable || !fresh.firesAt) return "cancel";
	return fresh.updatedAt === held.updatedAt ? "keep" : "rebuild";
}

/** One exchange with the database server's clock: our clock before and after, its clock between. */
export interface ClockSample {
	sentAt: number;
	serverTime: number;
	receivedAt: number;
}

export interface ClockOffset {
	/** Our clock minus the server's, ms. */
	offsetMs: number;
	/** How far the true offset can be from offsetMs: half the round trip of the sample it came from. */
	errorMs: number;
}

/**
 * The clock offset from several samples, as NTP takes it: the sample with the smallest round trip
 * (the least delayed by load), its offset with half the round trip compensated (the server read its
 * clock somewhere within the round trip; the middle is the best guess), and half that round trip as
 * the error bound. Null without samples.
 */
export function clockOffsetFrom(samples: readonly ClockSample[]): ClockOffset | null {
	let best: ClockSample | null = null;
	for (const s of samples) if (!best || s.receivedAt - s.sentAt < best.receivedAt - best.sentAt) best = s;
	if (!best) return null;
	const rtt = Math.max(0, best.receivedAt - best.sentAt);
	return { offsetMs: Math.round((best.sentAt + best.receivedAt) / 2 - best.serverTime), errorMs: Math.ceil(rtt / 2) };
}

/**
 * Whether a worker's clock is out of bounds: only when even the most favourable reading of the
 * measurement (the offset minus its error bound) exceeds the bound, so that a slow round trip on a
 * loaded machine never excludes a healthy worker. An unknown offset is taken for fine.
 */
export function clockSkewed(offsetMs: number | null, errorMs: number | null, boundMs: number): boolean {
	return offsetMs !== null && Math.abs(offsetMs) - (errorMs ?? 0) > boundMs;
}

/**
 * Overload: a fire due while the worker has no room for it (its process slots and the fires ahead
 * of them taken) waits in the worker's backlog, and the job's misfire policy decides how much of it
 * waits (Quartz's misfire instructions, applied to a fire that is late because of load):
 * - `run_once`: at most one fire of the job waits, the newest; a newer fire takes the older one's
 *   place (and its turn), the older one is recorded missed.
 * - `skip`: as run_once, and a fire that waited longer than the misfire threshold is recorded missed
 *   (a skip job runs on time or not at all).
 * - `run_all`: every fire waits, in order, up to the bounds; a fire the bounds refuse is recorded missed.
 * Whatever the policy, a fire past the job's `startingDeadline` is recorded missed, and the total
 * backlog is bounded (memory stays bounded however far the load is beyond capacity).
 */
export interface BacklogBounds {
	/** Fires of one `run_all` job waiting at once. */
	perJob: number;
	/** Fires of all jobs waiting at once. */
	total: number;
	/** How late a `skip` job's fire may start, ms (Quartz's misfireThreshold). */
	thresholdMs: number;
}

/**
 * The fires a worker takes on at once by default: its process slots, and a quarter more (at least
 * 8) on their way to a slot (claiming, recording), enough to keep the slots busy.
 */
export function maxInFlightFor(maxConcurrentRuns: number): number {
	return maxConcurrentRuns + Math.max(8, Math.ceil(maxConcurrentRuns / 4));
}

export const DEFAULT_BACKLOG_BOUNDS: BacklogBounds = { perJob: DEFAULT_MAX_CATCH_UP, total: 10_000, thresholdMs: 1000 };

export type BacklogDecision =
	/** Waits at the back of the backlog. */
	| { action: "queue" }
	/** Takes the place of the job's waiting fire, which is recorded missed with `reason`. */
	| { action: "replace"; reason: string }
	/** Not kept: recorded missed with `reason`. */
	| { action: "refuse"; reason: string };

/** A fire of a job with `waiting` fires already in the backlog of `total` fires. */
export function backlogDecision(policy: MisfirePolicy, waiting: number, total: number, bounds: BacklogBounds): BacklogDecision {
	switch (policy) {
		case "run_once":
		case "skip":
			if (waiting > 0) return { action: "replace", reason: `superseded by a newer fire while the worker was at capacity (misfire ${policy})` };
			break;
		case "run_all":
			if (waiting >= bounds.perJob)
				return {
					action: "refuse",
					reason: `the worker was at capacity and ${waiting} fires of the job already waited (misfire run_all, bound ${bounds.perJob})`,
				};
			break;
		default:
			throw new TypeError(`unknown misfire policy ${JSON.stringify(policy)}`);
	}
	if (total >= bounds.total)
		return { action: "refuse", reason: `the worker was at capacity with ${total} fires waiting (bound ${bounds.total}, misfire ${policy})` };
	return { action: "queue" };
}

/**
 * Whether a fire of `at` not started by `now` is too late to start: past the job's
 * `startingDeadline` (seconds; Kubernetes' startingDeadlineSeconds), or, for a `skip` job waiting
 * in the backlog, past the misfire threshold. The reason it is recorded missed with, or null.
 */
export function tooLateToStart(
	job: { misfire: MisfirePolicy; startingDeadline: number | null },
	at: number,
	now: number,
	opts: { thresholdMs: number; waited: boolean },
): string | null {
	const late = now - at;
	if (job.startingDeadline !== null && late > job.startingDeadline * 1000) {
		return `not started within its startingDeadline of ${job.startingDeadline} s (${late} ms late)`;
	}
	if (opts.waited && job.misfire === "skip" && late > opts.thresholdMs) {
		return `the worker was at capacity: not started within ${opts.thresholdMs} ms of its time (misfire skip)`;
	}
	return null;
}
