/**
 * Missed fires. A fire time can pass without its run for four reasons, and `decideMissedFires` is
 * the one place that decides, for each, what runs late and what is recorded missed; every reason goes
 * through the job's misfire policy (lib/core/policies.ts misfireDecision):
 *
 * - unowned: nobody owned the job (a new assignment, a worker that died): the fires since the job's
 *   last handled fire. A one-shot job catches up its single fire only.
 * - coordination-down: fires fell due while the coordination session was lost (no claim can be
 *   taken): one of them is merely late and runs as scheduled; several follow the policy.
 * - database-down: the run's start could not be recorded. Retries (attempt > 1) run again as they
 *   are; first attempts follow the policy.
 * - interrupted: a run was cut off by a crash (its row still `running`, its claim gone). It is
 *   marked failed ("interrupted") and, unless the policy is `skip`, runs again with attempt + 1.
 *
 * The Recovery class gathers those fires (the ledger's running rows, the kept unstarted fires) and
 * applies the decisions through the recorder and the dispatcher.
 */
import type { Clock, TimerHandle } from "../../core/clock";
import type { Coordination } from "../../core/coordination";
import { DEFAULT_MAX_CATCH_UP, misfireDecision } from "../../core/policies";
import { fireTimesBetween } from "../../core/schedule";
import type { MisfirePolicy, RunTrigger } from "../../core/types";
import type { WorkerJob } from "../../core/views";
import type { JobsClient, Logger } from "./ports";
import type { RunRecorder } from "./recorder";
import { schedulable, type WorkerState } from "./state";

export type MissedCause = "unowned" | "coordination-down" | "database-down" | "interrupted";

export interface MissedFire {
	at: number;
	attempt: number;
}

export interface PlannedFire {
	at: number;
	trigger: RunTrigger;
	attempt: number;
}

export interface MissedDecision {
	run: PlannedFire[];
	/** Recorded `missed`, with the reason. */
	missed: { at: number; reason: string }[];
}

const WHY: Record<Exclude<MissedCause, "interrupted">, string> = {
	unowned: "missed while no worker owned the job",
	"coordination-down": "missed while the coordination service was unreachable",
	"database-down": "could not start while the jobs service or its database was unreachable",
};

/** What to do with a job's missed fires (ascending, at most DEFAULT_MAX_CATCH_UP of them). */
export function decideMissedFires(job: { misfire: MisfirePolicy; recurring: boolean }, cause: MissedCause, fires: readonly MissedFire[]): MissedDecision {
	if (fires.length === 0) return { run: [], missed: [] };
	if (cause === "interrupted") {
		// The cut-off run is recorded failed already; `skip` does not run it again.
		if (job.misfire === "skip") return { run: [], missed: [] };
		return { run: fires.map((f) => ({ at: f.at, trigger: "retry", attempt: f.attempt + 1 })), missed: [] };
	}
	// A one-shot job has a single fire to catch up.
	const firsts = (job.recurring ? fires : fires.slice(0, 1)).filter((f) => f.attempt === 1);
	const retries: PlannedFire[] =
		cause === "database-down" ? fires.filter((f) => f.attempt > 1).map((f) => ({ at: f.at, trigger: "retry", attempt: f.attempt })) : [];
	// Only late, not missed: a single fire that fell due during a coordination outage runs as scheduled.
	if (cause === "coordination-down" && firsts.length === 1) return { run: [{ at: firsts[0].at, trigger: "schedule", attempt: 1 }], missed: [] };
	const d = misfireDecision(
		job.misfire,
		firsts.map((f) => f.at),
	);
	const reason = `${WHY[cause]} (misfire ${job.misfire})`;
	return { run: [...retries, ...d.run.map((at): PlannedFire => ({ at, trigger: "catchup", attempt: 1 }))], missed: d.missed.map((at) => ({ at, reason })) };
}

/** How long kept unstarted fires wait before the database is tried again (short: it adds to every recovery). */
export const UNSTARTED_RETRY_MS = 250;
/** Running-run look-ups per call (a dead worker's share arrives as tens of thousands of jobs). */
const INFLIGHT_PER_CALL = 10_000;

export interface RecoveryDeps {
	state: WorkerState;
	clock: Clock;
	jobs: JobsClient;
	coordination: Coordination;
	recorder: RunRecorder;
	logger: Logger;
	/** Hand a fire to the dispatcher. */
	fire(job: WorkerJob, at: number, trigger: RunTrigger, attempt: number): void;
}

export class Recovery {
	/** Fires whose start could not be recorded (the database was down), per job, oldest first. */
	private unstarted = new Map<string, MissedFire[]>();
	private unstartedTimer: TimerHandle | null = null;

	constructor(private readonly deps: RecoveryDeps) {}

	get pendingFires(): number {
		let n = 0;
		for (const f of this.unstarted.values()) n += f.length;
		return n;
	}

	/** Apply a decision: record the missed fires, hand the ones to run to the dispatcher. */
	private async apply(job: WorkerJob, cause: MissedCause, fires: MissedFire[], awaitRecords = false): Promise<MissedDecision> {
		const d = decideMissedFires(job, cause, fires);
		for (const m of d.missed) {
			const recorded = this.deps.recorder.notRun(job, m.at, "catchup", "missed", m.reason);
			if (awaitRecords) await recorded;
		}
		for (const f of d.run) this.deps.fire(job, f.at, f.trigger, f.attempt);
		return d;
	}

	/** Fires missed while nobody owned the job (it was just assigned here), up to `now - 1`. */
	async catchUp(job: WorkerJob, now: number): Promise<void> {
		const { schedule, tz } = this.deps.state.scheduleOf(job);
		const since = job.lastScheduledAt ?? job.createdAt;
		const times = fireTimesBetween(schedule, tz, since, now - 1, DEFAULT_MAX_CATCH_UP);
		if (times.length === 0) return;
		const d = await this.apply(
			job,
			"unowned",
			times.map((at) => ({ at, attempt: 1 })),
			true,
		);
		this.deps.logger.info(`Job ${job.id}: ${job.recurring ? times.length : 1} missed fire(s); running ${d.run.length} (misfire ${job.misfire})`);
		const last = job.recurring ? times[times.length - 1] : times[0];
		job.lastScheduledAt = Math.max(job.lastScheduledAt ?? 0, last);
	}

	/** The coordination connection is back: `due`, the fires of one job that fell due meanwhile (ascending). */
	afterOutage(job: WorkerJob, due: number[]): void {
		void this.apply(
			job,
			"coordination-down",
			due.map((at) => ({ at, attempt: 1 })),
		).then((d) => {
			if (due.length > 1)
				this.deps.logger.warn(
					`Job ${job.id}: ${due.length} fire(s) fell due while the coordination service was unreachable; running ${d.run.length} (misfire ${job.misfire})`,
				);
		});
	}

	/** A fire whose start could not be recorded: kept, handled by retryUnstarted once the database answers. */
	keepUnstarted(jobId: string, at: number, attempt: number): void {
		const kept = this.unstarted.get(jobId) ?? [];
		kept.push({ at, attempt });
		this.unstarted.set(jobId, kept.slice(-DEFAULT_MAX_CATCH_UP));
		this.armUnstarted();
	}

	/**
	 * Once the database answers (and the kept results are written, so their runs are not taken for
	 * cut-off ones), runs of these jobs left running by a start whose answer was lost are recovered,
	 * then the kept fires follow decideMissedFires("database-down").
	 */
	async retryUnstarted(): Promise<void> {
		this.unstartedTimer = null;
		if (this.deps.state.stopping || this.unstarted.size === 0) return;
		try {
			// The kept results first (their runs must not be taken for cut-off ones): written now rather
			// than waited for, which cost up to a second of every recovery.
			await this.deps.recorder.flushOutbox();
			if (this.deps.recorder.pendingResults > 0) throw new Error("results still wait in the outbox");
			await this.recoverInflight([...this.unstarted.keys()]);
		} catch {
			this.armUnstarted();
			return;
		}
		const pending = this.unstarted;
		this.unstarted = new Map();
		for (const [jobId, fires] of pending) {
			const job = this.deps.state.mayFire(jobId);
			if (!job) continue;
			const d = await this.apply(job, "database-down", fires);
			const firsts = fires.filter((f) => f.attempt === 1).length;
			if (firsts > 0)
				this.deps.logger.warn(
					`Job ${job.id}: ${firsts} fire(s) could not start while the jobs service or its database was unreachable; running ${d.run.length - (fires.length - firsts)} (misfire ${job.misfire})`,
				);
		}
	}

	/**
	 * Runs of these jobs still marked running whose claim is gone were cut off by a dead worker:
	 * mark them failed and let decideMissedFires("interrupted") run them again.
	 */
	async recoverInflight(ids: string[]): Promise<void> {
		const { state, jobs, coordination, recorder, logger } = this.deps;
		const runs = [];
		for (let i = 0; i < ids.length; i += INFLIGHT_PER_CALL) runs.push(...(await jobs.inflight(ids.slice(i, i + INFLIGHT_PER_CALL))));
		if (runs.length === 0) return;
		const byId = new Map((await jobs.byIds([...new Set(runs.map((r) => r.jobId))])).map((j) => [j.id, j]));
		for (const r of runs) {
			if ([...state.activeOf(r.jobId)].some((f) => f.runId === r.id)) continue; // our own live run
			if (recorder.inOutbox(r.id)) continue; // ran here; its result waits to be written
			if ((await coordination.claimOwner(r.jobId, r.scheduledAt)) !== null) continue; // still running on a live worker
			const abandoned = await jobs.abandonRun(r.id, `interrupted: worker ${r.node ?? "?"} died during the run`);
			if (abandoned) recorder.countAbandoned();
			const job = byId.get(r.jobId);
			if (!abandoned || !job || !schedulable(job)) continue;
			const d = await this.apply(job, "interrupted", [{ at: r.scheduledAt, attempt: r.attempt }]);
			if (d.run.length > 0) logger.warn(`Run ${r.id} of job ${r.jobId} was cut off on ${r.node}; running it again (attempt ${r.attempt + 1})`);
		}
	}

	stop(): void {
		if (this.unstartedTimer) this.deps.clock.clearTimeout(this.unstartedTimer);
		this.unstartedTimer = null;
	}

	private armUnstarted(): void {
		if (this.unstartedTimer || this.deps.state.stopping) return;
		this.unstartedTimer = this.deps.clock.setTimeout(() => void this.retryUnstarted(), UNSTARTED_RETRY_MS);
	}
}
