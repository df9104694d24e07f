/**
 * Assignment sync: make the worker's jobs match its assignment (written by the leading manager in the
 * coordination service). Newly assigned jobs are loaded (their missed fires caught up: recovery.ts
 * "unowned", and runs cut off on their previous worker recovered: "interrupted"); jobs no longer ours
 * are dropped; a reloaded job's held fires are reviewed (dispatcher.reviewHeld). Serialized: a
 * call during a reconcile runs once more after it.
 */
import type { Clock } from "../../core/clock";
import type { Coordination } from "../../core/coordination";
import type { WorkerJob } from "../../core/views";
import { Batcher } from "../batcher";
import type { Dispatcher } from "./dispatcher";
import type { FireLoop } from "./fire-loop";
import type { JobsClient, Logger } from "./ports";
import type { Recovery } from "./recovery";
import type { WorkerState } from "./state";

/** Jobs per byIds call: one answer must stay under the transporter's packet limit (NATS: 1 MB). */
export const JOBS_PER_CALL = 500;
/** byIds calls kept in flight while loading a large assignment. */
const LOAD_CALLS_IN_FLIGHT = 4;
/** Loading yields to the event loop every this many jobs (heartbeats, timers must not starve). */
const YIELD_EVERY = 500;

export interface AssignmentSyncDeps {
	state: WorkerState;
	clock: Clock;
	coordination: Coordination;
	jobs: JobsClient;
	loop: FireLoop;
	dispatcher: Dispatcher;
	recovery: Recovery;
	logger: Logger;
	nodeId: string;
}

export class AssignmentSync {
	private reconciling: Promise<void> | null = null;
	private again = false;
	/**
	 * Changed jobs, reloaded together: the changes of one turn (and those arriving while a reload is
	 * in flight) cost one read. A thousand jobs created or resumed at once would otherwise be a
	 * thousand reads queued behind the run writes, and the crontab would lag behind the API.
	 */
	private readonly changes: Batcher<string, void>;

	constructor(private readonly deps: AssignmentSyncDeps) {
		this.changes = new Batcher(
			async (ids) => {
				const unique = [...new Set(ids)];
				const ours = unique.filter((id) => this.deps.state.assigned.has(id));
				const others = unique.filter((id) => !this.deps.state.assigned.has(id));
				await Promise.all([ours.length > 0 ? this.load(ours, false) : null, others.length > 0 ? this.reviewHeldUnassigned(others) : null]);
				return ids.map(() => undefined);
			},
			// Flushed after the current task (no timer: a caller awaits its reload), and while a reload is
			// in flight the changes arriving meanwhile wait for it (the Batcher's group commit).
			{ schedule: (fn) => void Promise.resolve().then(fn), maxBatch: JOBS_PER_CALL },
		);
	}

	/** Match the assignment (`jobIds`, or as read from the coordination service). */
	reconcile(jobIds?: string[]): Promise<void> {
		if (this.reconciling) {
			this.again = true;
			return this.reconciling;
		}
		const run = async () => {
			const { state, coordination, loop } = this.deps;
			do {
				this.again = false;
				const ids = jobIds ?? (await coordination.getAssignments(this.deps.nodeId));
				jobIds = undefined;
				const wanted = new Set(ids);
				const removed = [...state.assigned].filter((id) => !wanted.has(id));
				for (const id of removed) {
					// A fire already held for it keeps its claim and runs (the new owner cannot claim it).
					state.forget(id);
					loop.drop(id);
				}
				if (removed.length > 0)
					await this.reviewHeldUnassigned(removed).catch((err) =>
						this.deps.logger.warn("Cannot review the held fires of unassigned jobs:", (err as Error).message),
					);
				const added = ids.filter((id) => !state.assigned.has(id));
				for (const id of added) state.assigned.add(id);
				// Independent: runs cut off elsewhere (re-run with attempt + 1) and the crontab.
				if (added.length > 0) await Promise.all([this.deps.recovery.recoverInflight(added), this.load(added, true)]);
				loop.arm();
			} while (this.again && !state.stopping);
		};
		this.reconciling = run().finally(() => {
			this.reconciling = null;
		});
		return this.reconciling;
	}

	/** A job changed (created, patched, deleted, finished): reload it if it is ours (coalesced, see `changes`). */
	jobChanged(id: string): Promise<void> {
		return this.changes.add(id);
	}

	/** Fetch jobs and (re)schedule them; with `catchUp`, their missed fires are caught up first. */
	async load(ids: string[], catchUp: boolean): Promise<void> {
		const { state, clock, loop, dispatcher } = this.deps;
		const jobs = await this.fetch(ids);
		const found = new Set(jobs.map((j) => j.id));
		for (const id of ids) {
			if (found.has(id)) continue;
			state.jobs.delete(id);
			loop.drop(id);
			dispatcher.reviewHeld(id, null);
		}
		const now = clock.now();
		let n = 0;
		for (const job of jobs) {
			// Loading tens of thousands of jobs must not starve the event loop (the coordination
			// session's heartbeats, the broker's, the timers).
			if (++n % YIELD_EVERY === 0) await new Promise<void>((r) => clock.setTimeout(r, 0));
			if (!state.assigned.has(job.id)) continue;
			state.jobs.set(job.id, job);
			dispatcher.reviewHeld(job.id, job);
			await loop.load(job, catchUp, now);
		}
		loop.arm();
	}

	/** In chunks, a few in flight at once. */
	private async fetch(ids: string[]): Promise<WorkerJob[]> {
		const chunks: string[][] = [];
		for (let i = 0; i < ids.length; i += JOBS_PER_CALL) chunks.push(ids.slice(i, i + JOBS_PER_CALL));
		const answers: WorkerJob[][] = new Array<WorkerJob[]>(chunks.length);
		let next = 0;
		await Promise.all(
			Array.from({ length: Math.min(LOAD_CALLS_IN_FLIGHT, chunks.length) }, async () => {
				while (next < chunks.length) {
					const k = next++;
					answers[k] = await this.deps.jobs.byIds(chunks[k]);
				}
			}),
		);
		return answers.flat();
	}

	/** Jobs no longer ours with fires still held here: cancel those of deleted or suspended jobs. */
	private async reviewHeldUnassigned(ids: string[]): Promise<void> {
		const held = this.deps.dispatcher.heldJobs(ids);
		if (held.length === 0) return;
		const jobs = new Map((await this.deps.jobs.byIds(held)).map((j) => [j.id, j]));
		for (const id of held) if (!this.deps.state.assigned.has(id)) this.deps.dispatcher.reviewHeld(id, jobs.get(id) ?? null, true);
	}
}
