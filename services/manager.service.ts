/**
 * manager: runs on one or more nodes; exactly one leads (elected through the coordination backend).
 * The leader assigns every schedulable job to one live worker, balanced by count and moving as few
 * jobs as possible, and moves a dead worker's jobs to the living ones. A new leader reconciles the
 * whole assignment before acting.
 */
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { planAssignment, splitForFailover, workersAfter } from "../lib/core/assignment";
import type { Clock } from "../lib/core/clock";
import type { Config } from "../lib/config";
import { METRICS, registerMetric } from "../lib/adapters/moleculer/metrics";
import type { AssignmentMove, Candidacy, Coordination, WorkerRegistration } from "../lib/core/coordination";
import { ZookeeperMixin } from "../mixins/zookeeper.mixin";
import { ErrorsMixin } from "../lib/adapters/moleculer/errors";

/** Job ids per broker call (10,000 ids of 36 characters: about 400 KB of JSON). */
const PAGE = 10_000;
/** The cached schedulable job ids are read again when older than this, even without a change event. */
const JOB_IDS_MAX_AGE_MS = 300_000;
/** How long after a failover's assignment the dead workers' records are removed. */
const TIDY_DELAY_MS = 2000;

export interface ManagerDeps {
	config: Config;
	clock: Clock;
	coordination: () => Coordination;
}

interface ManagerThis extends Service {
	coordination: Coordination;
	candidacy: Candidacy | null;
	leader: boolean;
	unwatchWorkers: (() => void) | null;
	reconciling: Promise<void> | null;
	dirty: boolean;
	/**
	 * The schedulable job ids as last read, and whether a job changed since: a reconcile for a
	 * worker that came or went (a failover) plans from them without reading every job again.
	 */
	jobIds: string[] | null;
	jobIdsAt: number;
	/** The writes of the jobs' `worker` column, in order, behind the reconciles (display only). */
	recording: Promise<void>;
	/** Dead workers' assignment records to remove (splitForFailover), by a reconcile TIDY_DELAY_MS later. */
	tidy: AssignmentMove[];
	tidyTimer: NodeJS.Timeout | null;
	jobsChanged: boolean;
	lastWorkers: Set<string>;
	/** Incremented on every election and revocation: a reconcile started in an earlier term does not apply its plan. */
	term: number;
	/** Sorted ids of the workers excluded for clock skew at the last reconcile (logged on change). */
	lastSkewed: string;
	stats: { leaderChanges: number; reassignments: number; reconciles: number; lastReconcileMs: number | null };
	onElected(): Promise<void>;
	onRevoked(): void;
	requestReconcile(): void;
	reconcileOnce(): Promise<void>;
	skewed(workers: WorkerRegistration[]): string[];
}

export default function createManagerService(deps: ManagerDeps): ServiceSchema<ServiceSettingSchema, ManagerThis> {
	const { config, clock } = deps;
	return {
		name: "manager",
		mixins: [ZookeeperMixin(deps.coordination), ErrorsMixin()],

		actions: {
			/** The live workers with their job counts and clock offsets (GET /workers). */
			workers: {
				params: {},
				async handler(this: ManagerThis) {
					const [workers, assignments] = await Promise.all([this.coordination.listWorkers(), this.coordination.allAssignments()]);
					const skewed = new Set(this.skewed(workers));
					return workers.map((w) => ({ ...w, jobs: assignments.get(w.id)?.length ?? 0, clockOk: !skewed.has(w.id) })).sort((a, b) => (a.id < b.id ? -1 : 1));
				},
			},

			leader: {
				params: {},
				async handler(this: ManagerThis) {
					return { leader: await this.coordination.leader(), self: this.broker.nodeID, isLeader: this.leader };
				},
			},

			/** Force a full reconcile (operators). Only the leader acts. */
			reconcile: {
				params: {},
				async handler(this: ManagerThis) {
					if (!this.leader) return { leader: false };
					await this.reconcileOnce();
					return { leader: true, stats: this.stats };
				},
			},

			status: {
				params: {},
				handler(this: ManagerThis) {
					return { node: this.broker.nodeID, leader: this.leader, coordination: this.coordination.state(), stats: this.stats };
				},
			},

			health: {
				visibility: "public",
				params: {},
				async handler(this: ManagerThis) {
					const state = this.coordination.state();
					const out: Record<string, { ok: boolean; [k: string]: unknown }> = { coordination: { ok: state === "connected", state } };
					if (state === "connected") {
						const workers = await this.coordination.listWorkers();
						const skewed = this.skewed(workers);
						// Advisory: the API reports it but keeps answering 200 (a bad worker clock must not take the API out).
						out.workerClocks = { ok: skewed.length === 0, skewed, boundMs: config.clockSkewBoundMs };
					}
					return out;
				},
			},
		},

		events: {
			"jobs.changed": {
				params: { id: "string", op: "string" },
				handler(this: ManagerThis, _ctx: Context<{ id: string; op: string }>) {
					this.jobsChanged = true;
					if (this.leader) this.requestReconcile();
				},
			},
		},

		methods: {
			skewed(workers: WorkerRegistration[]): string[] {
				return workers.filter((w) => w.clockOffsetMs !== null && Math.abs(w.clockOffsetMs) > config.clockSkewBoundMs).map((w) => w.id);
			},

			async onElected(this: ManagerThis) {
				this.leader = true;
				this.term++;
				this.jobsChanged = true; // a new leader reads everything
				this.jobIds = null;
				this.stats.leaderChanges++;
				if (this.broker.isMetricsEnabled()) {
					this.broker.metrics.increment(METRICS.leaderChanges);
					this.broker.metrics.set(METRICS.managerLeader, 1);
				}
				this.logger.info(`${this.broker.nodeID} leads the managers`);
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
			},

			onRevoked(this: ManagerThis) {
				if (this.leader) this.logger.warn(`${this.broker.nodeID} lost the leadership`);
				this.leader = false;
				this.term++;
				// The next leader's plan tidies dead workers' records itself.
				this.tidy = [];
				if (this.tidyTimer) clearTimeout(this.tidyTimer);
				this.tidyTimer = null;
				if (this.broker.isMetricsEnabled()) this.broker.metrics.set(METRICS.managerLeader, 0);
				this.unwatchWorkers?.();
				this.unwatchWorkers = null;
			},

			/** Coalesce reconcile requests: one runs at a time, one more runs after it if asked. */
			requestReconcile(this: ManagerThis) {
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
							this.logger.error("Reconcile failed; retrying in 1 s:", (err as Error).message);
							await new Promise((r) => setTimeout(r, 1000));
							this.dirty = true;
						}
					} while (this.dirty && this.leader);
				})().finally(() => {
					this.reconciling = null;
				});
			},

			async reconcileOnce(this: ManagerThis) {
				if (!this.leader) return;
				const term = this.term;
				const t0 = clock.now();
				// Due tidying first, within the reconcile (never beside a plan): records of workers that
				// came back meanwhile are left to the plan, which resolves a job recorded twice.
				if (this.tidy.length > 0 && !this.tidyTimer) {
					const live = new Set((await this.coordination.listWorkers()).map((w) => w.id));
					const due = this.tidy.filter((m) => m.from !== null && !live.has(m.from));
					this.tidy = [];
					if (!this.leader || term !== this.term) return;
					await this.coordination.applyMoves(due);
				}
				// In pages: one answer (or request) must stay under the transporter's packet limit (NATS: 1 MB).
				const schedulable = async () => {
					const ids: string[] = [];
					for (;;) {
						const page = (await this.broker.call("jobs.schedulable", { after: ids[ids.length - 1], limit: PAGE })) as string[];
						for (const id of page) ids.push(id);
						if (page.length < PAGE) return ids;
					}
				};
				const readJobs = async () => {
					// Read again after a change, and at least every JOB_IDS_MAX_AGE_MS (a lost event).
					if (!this.jobsChanged && this.jobIds && clock.now() - this.jobIdsAt < JOB_IDS_MAX_AGE_MS) return this.jobIds;
					this.jobsChanged = false; // a change during the read marks it again
					try {
						const at = clock.now();
						this.jobIds = await schedulable();
						this.jobIdsAt = at;
						return this.jobIds;
					} catch (err) {
						this.jobsChanged = true;
						throw err;
					}
				};
				const [jobIds, workers, current] = await Promise.all([readJobs(), this.coordination.listWorkers(), this.coordination.allAssignments()]);
				const tRead = clock.now();
				const excluded = this.skewed(workers);
				const skewKey = [...excluded].sort().join(",");
				if (skewKey !== this.lastSkewed) {
					this.lastSkewed = skewKey;
					if (excluded.length > 0) {
						const offsets = workers.filter((w) => excluded.includes(w.id)).map((w) => `${w.id} (${w.clockOffsetMs} ms)`);
						this.logger.error(`Worker clock(s) off the database's by more than ${config.clockSkewBoundMs} ms get no jobs: ${offsets.join(", ")}`);
					} else this.logger.info("Every worker clock is within the bound again");
				}
				const moves = planAssignment(
					current,
					jobIds,
					workers.map((w) => w.id),
					{ excluded },
				);
				// Lost the leadership meanwhile, or lost and regained it (a session expiry): the plan was made
				// from a view of an earlier term; the new term's reconcile makes its own.
				if (!this.leader || term !== this.term) return;
				const tPlan = clock.now();
				let readyMs = 0;
				if (moves.length > 0) {
					// ZooKeeper holds the assignment the workers act on: what the survivors must run goes
					// first; the removal of dead workers' records (splitForFailover) is left to a reconcile
					// TIDY_DELAY_MS later, so that the survivors read their new assignment from an idle
					// ZooKeeper. The jobs' `worker` column (display only) is written in order behind the
					// reconciles, so that a failover right after a large reassignment does not wait for it.
					const { first, cleanup } = splitForFailover(
						moves,
						workers.map((w) => w.id),
					);
					await this.coordination.applyMoves(first);
					readyMs = clock.now() - tPlan;
					if (cleanup.length > 0) {
						this.tidy.push(...cleanup);
						if (!this.tidyTimer) {
							this.tidyTimer = setTimeout(() => {
								this.tidyTimer = null;
								if (this.leader) this.requestReconcile();
							}, TIDY_DELAY_MS);
							this.tidyTimer.unref();
						}
					}
					const display = workersAfter(current, moves);
					this.recording = this.recording.then(async () => {
						for (let i = 0; i < display.length;) {
							try {
								await this.broker.call("jobs.setWorkers", { moves: display.slice(i, i + PAGE) });
								i += PAGE;
							} catch (err) {
								if (!this.leader || term !== this.term) return; // the next leader writes its own
								this.logger.warn("Cannot record the jobs' workers now; retrying in 1 s:", (err as Error).message);
								await new Promise((r) => setTimeout(r, 1000));
							}
						}
					});
					const moved = moves.filter((m) => m.from !== null && m.to !== null).length;
					this.stats.reassignments += moved;
					if (moved > 0 && this.broker.isMetricsEnabled()) this.broker.metrics.increment(METRICS.reassignments, undefined, moved);
				}
				this.stats.reconciles++;
				this.stats.lastReconcileMs = clock.now() - t0;
				if (moves.length > 0)
					this.logger.info(
						`Assignment: ${moves.length} move(s) over ${workers.length} worker(s) in ${this.stats.lastReconcileMs} ms (read ${tRead - t0} ms, plan ${tPlan - tRead} ms, ready for the workers in ${readyMs} ms)`,
					);
			},
		},

		created(this: ManagerThis) {
			this.candidacy = null;
			this.leader = false;
			this.unwatchWorkers = null;
			this.reconciling = null;
			this.dirty = false;
			this.jobIds = null;
			this.jobIdsAt = 0;
			this.recording = Promise.resolve();
			this.tidy = [];
			this.tidyTimer = null;
			this.jobsChanged = true;
			this.lastWorkers = new Set();
			this.lastSkewed = "";
			this.term = 0;
			this.stats = { leaderChanges: 0, reassignments: 0, reconciles: 0, lastReconcileMs: null };
			registerMetric(this.broker, { type: "counter", name: METRICS.leaderChanges, description: "Times this manager became leader" });
			registerMetric(this.broker, { type: "counter", name: METRICS.reassignments, description: "Jobs moved from one worker to another" });
			registerMetric(this.broker, { type: "gauge", name: METRICS.managerLeader, description: "1 while this manager leads" });
			if (this.broker.isMetricsEnabled()) {
				this.broker.metrics.set(METRICS.managerLeader, 0);
				this.broker.metrics.increment(METRICS.leaderChanges, undefined, 0);
				this.broker.metrics.increment(METRICS.reassignments, undefined, 0);
			}
		},

		async started(this: ManagerThis) {
			await this.broker.waitForServices(["jobs"], 60_000);
			this.candidacy = await this.coordination.campaign(this.broker.nodeID, {
				elected: () => this.onElected(),
				revoked: () => this.onRevoked(),
			});
		},

		async stopped(this: ManagerThis) {
			this.onRevoked();
			await this.candidacy?.resign().catch(() => undefined);
			if (this.reconciling) await this.reconciling.catch(() => undefined);
			// this.recording (the display column) is not awaited: a write cut short here leaves a job's
			// `worker` column stale until it moves again. Pending tidying was dropped by onRevoked; the
			// next leader's plan tidies dead workers' records itself.
		},
	};
}
