/**
 * The manager's engine: runs on one or more nodes; exactly one leads (elected through the
 * coordination backend). The leader assigns every schedulable job to one live worker, balanced by
 * count and moving as few jobs as possible, and moves a dead worker's jobs to the living ones. A new
 * leader reconciles the whole assignment before acting.
 *
 * A reconcile has the shape of the Kubernetes CronJob controller's sync: read (the schedulable job
 * ids, the live workers, the current assignment), plan with the pure core (lib/core/assignment.ts),
 * apply the plan once, and come back later (a watch, an event or a timer) rather than loop on its own.
 *
 * Everything from outside comes in through ManagerEngineDeps (./ports.ts): the clock (every time
 * read and every timer), the coordination session, the jobs service, the logger and the metrics.
 */
import { planAssignment, splitForFailover, workersAfter } from "../../core/assignment";
import type { Clock, TimerHandle } from "../../core/clock";
import type { AssignmentMove, Candidacy, ConnectionState, Coordination, WorkerRegistration } from "../../core/coordination";
import { clockSkewed } from "../../core/policies";
import type { JobsClient, Logger, ManagerEngineDeps, ManagerMetrics, ManagerTuning, WorkerOfJob } from "./ports";

/** Job ids per jobs.schedulable call (10,000 ids of 36 characters: about 400 KB of JSON). */
export const PAGE = 10_000;
/** The cached schedulable job ids are read again when older than this, even without a change event. */
export const JOB_IDS_MAX_AGE_MS = 300_000;
/** How long after a failover's assignment the dead workers' records are removed. */
export const TIDY_DELAY_MS = 2000;
/** The wait before a failed reconcile or display write is tried again. */
export const RETRY_MS = 1000;

export interface ManagerStats {
	leaderChanges: number;
	reassignments: number;
	reconciles: number;
	lastReconcileMs: number | null;
}

/** A live worker as the manager.workers action answers it. */
export interface WorkerView extends WorkerRegistration {
	jobs: number;
	clockOk: boolean;
}

export type HealthReport = Record<string, { ok: boolean; [k: string]: unknown }>;

/** What a reconcile reads. */
interface Snapshot {
	jobIds: string[];
	workers: WorkerRegistration[];
	current: Map<string, string[]>;
}

/** What a reconcile writes, computed from a Snapshot by the pure core. */
interface Plan {
	/** Live workers excluded for clock skew. */
	excluded: string[];
	moves: AssignmentMove[];
	/** The writes the survivors need now, and the dead workers' records to remove later (splitForFailover). */
	first: AssignmentMove[];
	cleanup: AssignmentMove[];
	/** Each moved job's worker after the plan, for the jobs' display column. */
	display: WorkerOfJob[];
}

const NO_METRICS: ManagerMetrics = { leaderChanged() {}, reassigned() {}, leading() {} };

export class ManagerEngine {
	readonly stats: ManagerStats = { leaderChanges: 0, reassignments: 0, reconciles: 0, lastReconcileMs: null };

	private readonly selfId: string;
	private readonly clock: Clock;
	private readonly coordination: Coordination;
	private readonly jobs: JobsClient;
	private readonly logger: Logger;
	private readonly metrics: ManagerMetrics;
	private readonly clockSkewBoundMs: number;
	private readonly tuning: ManagerTuning;

	private candidacy: Candidacy | null = null;
	private leader = false;
	/** Incremented on every election and revocation: a reconcile started in an earlier term does not apply its plan. */
	private term = 0;
	private unwatchWorkers: (() => void) | null = null;
	private reconciling: Promise<void> | null = null;
	private dirty = false;
	/**
	 * The schedulable job ids as last read, and whether a job changed since: a reconcile for a
	 * worker that came or went (a failover) plans from them without reading every job again.
	 */
	private jobIds: string[] | null = null;
	private jobIdsAt = 0;
	private jobsDirty = true;
	/** The writes of the jobs' `worker` column, in order, behind the reconciles (display only). */
	private recording: Promise<void> = Promise.resolve();
	/** Dead workers' assignment records to remove (splitForFailover), by a reconcile TIDY_DELAY_MS later. */
	private tidy: AssignmentMove[] = [];
	private tidyTimer: TimerHandle | null = null;
	private lastWorkers = new Set<string>();
	/** Sorted ids of the workers excluded for clock skew at the last reconcile (logged on change). */
	private lastSkewed = "";

	constructor(deps: ManagerEngineDeps) {
		this.selfId = deps.selfId;
		this.clock = deps.clock;
		this.coordination = deps.coordination;
		this.jobs = deps.jobs;
		this.logger = deps.logger;
		this.metrics = deps.metrics ?? NO_METRICS;
		this.clockSkewBoundMs = deps.clockSkewBoundMs;
		this.tuning = { pageSize: PAGE, jobIdsMaxAgeMs: JOB_IDS_MAX_AGE_MS, tidyDelayMs: TIDY_DELAY_MS, retryMs: RETRY_MS, ...deps.tuning };
	}

	get isLeader(): boolean {
		return this.leader;
	}

	// ---- lifecycle ----

	/** Enter the election (the coordination session must be connected). */
	async start(): Promise<void> {
		this.candidacy = await this.coordination.campaign(this.selfId, {
			elected: () => this.onElected(),
			revoked: () => this.onRevoked(),
		});
	}

	async stop(): Promise<void> {
		this.onRevoked();
		await this.candidacy?.resign().catch(() => undefined);
		if (this.reconciling) await this.reconciling.catch(() => undefined);
		// this.recording (the display column) is not awaited: a write cut short here leaves a job's
		// `worker` column stale until it moves again. Pending tidying was dropped by onRevoked; the
		// next leader's plan tidies dead workers' records itself.
	}

	// ---- what the service's actions and events ask ----

	/** A job was created, changed or removed (the jobs.changed event). */
	jobsChanged(): void {
		this.jobsDirty = true;
		if (this.leader) this.requestReconcile();
	}

	/** Force a full reconcile (operators). Only the leader acts: false when this manager does not lead. */
	async reconcile(): Promise<boolean> {
		if (!this.leader) return false;
		await this.reconcileOnce();
		return true;
	}

	/** The ids of the workers whose clock is off the database's by more than the bound. */
	skewed(workers: WorkerRegistration[]): string[] {
		return workers.filter((w) => clockSkewed(w.clockOffsetMs, w.clockErrorMs, this.clockSkewBoundMs)).map((w) => w.id);
	}

	/** The live workers with their job counts and clock verdicts, by id. */
	async workers(): Promise<WorkerView[]> {
		const [workers, assignments] = await Promise.all([this.coordination.listWorkers(), this.coordination.allAssignments()]);
		const skewed = new Set(this.skewed(workers));
		return workers.map((w) => ({ ...w, jobs: assignments.get(w.id)?.length ?? 0, clockOk: !skewed.has(w.id) })).sort((a, b) => (a.id < b.id ? -1 : 1));
	}

	async leaderInfo(): Promise<{ leader: string | null; self: string; isLeader: boolean }> {
		return { leader: await this.coordination.leader(), self: this.selfId, isLeader: this.leader };
	}

	status(): { node: string; leader: boolean; coordination: ConnectionState; stats: ManagerStats } {
		return { node: this.selfId, leader: this.leader, coordination: this.coordination.state(), stats: this.stats };
	}

	async health(): Promise<HealthReport> {
		const state = this.coordination.state();
		const out: HealthReport = { coordination: { ok: state === "connected", state } };
		if (state === "connected") {
			const workers = await this.coordination.listWorkers();
			const skewed = this.skewed(workers);
			// Advisory: the API reports it but keeps answering 200 (a bad worker clock must not take the API out).
			out.workerClocks = { ok: skewed.length === 0, skewed, boundMs: this.clockSkewBoundMs };
		}
		return out;
	}

	// ---- the election ----

	onElected(): void {
		this.leader = true;
		this.term++;
		this.jobsDirty = true; // a new leader reads everything
		this.jobIds = null;
		this.stats.leaderChanges++;
		this.metrics.leaderChanged();
		this.metrics.leading(true);
		this.logger.info(`${this.selfId} leads the managers`);
		this.unwatchWorkers?.();
		this.lastWorkers = new Set();
		let lastSkewed: string | null = null;
		this.unwatchWorkers = this.coordination.watchWorkers((workers) => {
			const ids = new Set(workers.map((w) => w.id));
			const same = ids.size === this.lastWorkers.size && [...ids].every((id) => this.lastWorkers.has(id));
			this.lastWorkers = ids;
			// A worker whose clock went off or came back in bounds changes the assignment too.
			const skewed = this.skewed(workers).sort().join(",");
			const skewChanged = skewed !== lastSkewed;
			lastSkewed = skewed;
			if (!same || skewChanged) this.requestReconcile();
		});
		this.requestReconcile();
	}

	onRevoked(): void {
		if (this.leader) this.logger.warn(`${this.selfId} lost the leadership`);
		this.leader = false;
		this.term++;
		// The next leader's plan tidies dead workers' records itself.
		this.tidy = [];
		if (this.tidyTimer) this.clock.clearTimeout(this.tidyTimer);
		this.tidyTimer = null;
		this.metrics.leading(false);
		this.unwatchWorkers?.();
		this.unwatchWorkers = null;
	}

	// ---- the reconcile ----

	/** Coalesce reconcile requests: one runs at a time, one more runs after it if asked. */
	private requestReconcile(): void {
		if (this.reconciling) {
			this.dirty = true;
			return;
		}
		this.reconciling = (async () => {
			do {
				this.dirty = false;
				try {
					await this.reconcileOnce();
				} catch (err) {
					this.logger.error(`Reconcile failed; retrying in ${this.tuning.retryMs / 1000} s:`, (err as Error).message);
					await this.sleep(this.tuning.retryMs);
					this.dirty = true;
				}
			} while (this.dirty && this.leader);
		})().finally(() => {
			this.reconciling = null;
		});
	}

	private async reconcileOnce(): Promise<void> {
		if (!this.leader) return;
		const term = this.term;
		const t0 = this.clock.now();
		if (!(await this.tidyDue(term))) return;
		const snapshot = await this.read();
		const tRead = this.clock.now();
		const plan = this.plan(snapshot);
		this.noteSkew(snapshot.workers, plan.excluded);
		// Lost the leadership meanwhile, or lost and regained it (a session expiry): the plan was made
		// from a view of an earlier term; the new term's reconcile makes its own.
		if (!this.leader || term !== this.term) return;
		const tPlan = this.clock.now();
		const readyMs = plan.moves.length > 0 ? await this.apply(plan, term) : 0;
		this.stats.reconciles++;
		this.stats.lastReconcileMs = this.clock.now() - t0;
		if (plan.moves.length > 0)
			this.logger.info(
				`Assignment: ${plan.moves.length} move(s) over ${snapshot.workers.length} worker(s) in ${this.stats.lastReconcileMs} ms (read ${tRead - t0} ms, plan ${tPlan - tRead} ms, ready for the workers in ${readyMs} ms)`,
			);
	}

	/** The tidying due, at the start of a reconcile. False when the term changed meanwhile (the reconcile stops). */
	private async tidyDue(term: number): Promise<boolean> {
		// Due tidying first, within the reconcile (never beside a plan): records of workers that
		// came back meanwhile are left to the plan, which resolves a job recorded twice.
		if (this.tidy.length === 0 || this.tidyTimer) return true;
		const live = new Set((await this.coordination.listWorkers()).map((w) => w.id));
		const due = this.tidy.filter((m) => m.from !== null && !live.has(m.from));
		this.tidy = [];
		if (!this.leader || term !== this.term) return false;
		await this.coordination.applyMoves(due);
		return true;
	}

	private async read(): Promise<Snapshot> {
		const [jobIds, workers, current] = await Promise.all([this.readJobIds(), this.coordination.listWorkers(), this.coordination.allAssignments()]);
		return { jobIds, workers, current };
	}

	private async readJobIds(): Promise<string[]> {
		// Read again after a change, and at least every JOB_IDS_MAX_AGE_MS (a lost event).
		if (!this.jobsDirty && this.jobIds && this.clock.now() - this.jobIdsAt < this.tuning.jobIdsMaxAgeMs) return this.jobIds;
		this.jobsDirty = false; // a change during the read marks it again
		try {
			const at = this.clock.now();
			this.jobIds = await this.schedulable();
			this.jobIdsAt = at;
			return this.jobIds;
		} catch (err) {
			this.jobsDirty = true;
			throw err;
		}
	}

	/** In pages: one answer (or request) must stay under the transporter's packet limit (NATS: 1 MB). */
	private async schedulable(): Promise<string[]> {
		const limit = this.tuning.pageSize;
		const ids: string[] = [];
		for (;;) {
			const page = await this.jobs.schedulable({ after: ids[ids.length - 1], limit });
			for (const id of page) ids.push(id);
			if (page.length < limit) return ids;
		}
	}

	/** Pure: the moves from the snapshot (lib/core/assignment.ts), ordered for a failover. */
	private plan({ jobIds, workers, current }: Snapshot): Plan {
		const live = workers.map((w) => w.id);
		const excluded = this.skewed(workers);
		const moves = planAssignment(current, jobIds, live, { excluded });
		if (moves.length === 0) return { excluded, moves, first: [], cleanup: [], display: [] };
		const { first, cleanup } = splitForFailover(moves, live);
		return { excluded, moves, first, cleanup, display: workersAfter(current, moves) };
	}

	/** Log the clock-skewed workers when the set changes. */
	private noteSkew(workers: WorkerRegistration[], excluded: string[]): void {
		const skewKey = [...excluded].sort().join(",");
		if (skewKey === this.lastSkewed) return;
		this.lastSkewed = skewKey;
		if (excluded.length > 0) {
			const offsets = workers.filter((w) => excluded.includes(w.id)).map((w) => `${w.id} (${w.clockOffsetMs} ms) ±${w.clockErrorMs ?? "?"} ms`);
			this.logger.error(`Worker clock(s) off the database's by more than ${this.clockSkewBoundMs} ms get no jobs: ${offsets.join(", ")}`);
		} else this.logger.info("Every worker clock is within the bound again");
	}

	/** Apply a plan of the current term; answers the ms until the survivors' assignment was written. */
	private async apply(plan: Plan, term: number): Promise<number> {
		const tPlan = this.clock.now();
		// ZooKeeper holds the assignment the workers act on: what the survivors must run goes
		// first; the removal of dead workers' records (splitForFailover) is left to a reconcile
		// TIDY_DELAY_MS later, so that the survivors read their new assignment from an idle
		// ZooKeeper. The jobs' `worker` column (display only) is written in order behind the
		// reconciles, so that a failover right after a large reassignment does not wait for it.
		await this.coordination.applyMoves(plan.first);
		const readyMs = this.clock.now() - tPlan;
		if (plan.cleanup.length > 0) {
			this.tidy.push(...plan.cleanup);
			if (!this.tidyTimer) {
				this.tidyTimer = this.clock.setTimeout(() => {
					this.tidyTimer = null;
					if (this.leader) this.requestReconcile();
				}, this.tuning.tidyDelayMs);
			}
		}
		const display = plan.display;
		this.recording = this.recording.then(() => this.record(display, term));
		const moved = plan.moves.filter((m) => m.from !== null && m.to !== null).length;
		this.stats.reassignments += moved;
		if (moved > 0) this.metrics.reassigned(moved);
		return readyMs;
	}

	/** Write the jobs' `worker` column (display only), retrying while this term lasts. */
	private async record(display: WorkerOfJob[], term: number): Promise<void> {
		const page = this.tuning.pageSize;
		for (let i = 0; i < display.length;) {
			try {
				await this.jobs.setWorkers(display.slice(i, i + page));
				i += page;
			} catch (err) {
				if (!this.leader || term !== this.term) return; // the next leader writes its own
				this.logger.warn(`Cannot record the jobs' workers now; retrying in ${this.tuning.retryMs / 1000} s:`, (err as Error).message);
				await this.sleep(this.tuning.retryMs);
			}
		}
	}

	private sleep(ms: number): Promise<void> {
		return new Promise((resolve) => {
			this.clock.setTimeout(resolve, ms);
		});
	}
}
