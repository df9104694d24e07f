/**
 * worker: runs on every node. Registers itself with the coordination backend, keeps a crontab of the
 * jobs assigned to it, claims each fire, executes it and records the run through the jobs service.
 * On start and after every new coordination session it reconciles its crontab with its assignment
 * and drops whatever is not its own.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { ArtifactCache } from "../lib/adapters/local/artifact-cache";
import { Batcher } from "../lib/engine/batcher";
import { Limiter } from "../lib/engine/limiter";
import { RunnerPool } from "../lib/adapters/process/runner-pool";
import { FIRE_LAG_BUCKETS, METRICS, registerMetric } from "../lib/adapters/moleculer/metrics";
import type { Clock, TimerHandle } from "../lib/core/clock";
import type { Config } from "../lib/config";
import type { Coordination, WorkerRegistration } from "../lib/core/coordination";
import { Crontab, formatCrontab } from "../lib/core/crontab";
import { notFound } from "../lib/core/errors";
import { DEFAULT_PATH, effectiveRunUser, resolveUser, runProcess, type ExecResult, type ExecSpec, type ResolvedUser } from "../lib/adapters/process/executor";
import { type ObjectStore } from "../lib/adapters/object-store";
import { heldFireAfterReload, misfireDecision, overlapDecision, prefireDecision, prefireLeadMs, retryDelayMs, shouldRetry } from "../lib/core/policies";
import { fireTimesBetween, loadTimeZone, nextFireTimes, parseSchedule, type ParsedSchedule, type TimeZone } from "../lib/core/schedule";
import type { Run, RunResult, RunStatus, RunTrigger } from "../lib/core/types";
import type { WorkerJob } from "../lib/core/views";
import { ZookeeperMixin } from "../mixins/zookeeper.mixin";
import { ErrorsMixin } from "../lib/adapters/moleculer/errors";

export interface WorkerDeps {
	config: Config;
	clock: Clock;
	coordination: () => Coordination;
	objectStore: ObjectStore;
}

interface RunningRun {
	runId: string;
	scheduledAt: number;
	controller: AbortController;
	done: Promise<void>;
	/** Prefired: the instant its process is released (null: started at once). */
	releaseAt: number | null;
	/** The job version (updatedAt) the process was prepared from. */
	updatedAt: number;
}

/** Why a held (prefired, not yet released) process is cancelled by a job reload. */
class HeldJobChanged extends Error {}

interface StartRequest {
	jobId: string;
	scheduledAt: number;
	attempt: number;
	trigger: RunTrigger;
	node: string;
}

type FinishRequest = RunResult & { willRetry: boolean };

interface WorkerThis extends Service {
	coordination: Coordination;
	/** Parsed schedule and time zone per distinct (schedule, time zone) (parsing is the costly part of next-fire math). */
	schedules: Map<string, { key: string; schedule: ParsedSchedule; tz: TimeZone }>;
	scheduleOf(job: WorkerJob): { schedule: ParsedSchedule; tz: TimeZone };
	crontab: Crontab;
	jobs: Map<string, WorkerJob>;
	assigned: Set<string>;
	running: Map<string, Set<RunningRun>>;
	/** Per job, the latest fire time the crontab handed over (possibly ahead of its instant). */
	handed: Map<string, number>;
	timer: TimerHandle | null;
	timerAt: number | null;
	stopping: boolean;
	/** Results not yet written (the database was down): retried until written. */
	outbox: FinishRequest[];
	starts: Batcher<StartRequest, Run | null>;
	/** Bounds the processes running at once (CRONJOB_MAX_CONCURRENT_RUNS). */
	slots: Limiter;
	/** Where the time between a fire's instant and its process start goes (worker.status). */
	stages: FireStages;
	/** Helper processes that spawn the jobs (null: spawn from this process). */
	runners: RunnerPool | null;
	finishes: Batcher<FinishRequest, boolean>;
	outboxTimer: TimerHandle | null;
	/**
	 * Fires whose start could not be recorded (the database was down), per job. They never ran; once
	 * the database answers again they are handled like missed fires (the job's misfire policy).
	 */
	unstarted: Map<string, { at: number; attempt: number }[]>;
	unstartedTimer: TimerHandle | null;
	users: Map<string, ResolvedUser>;
	artifacts: ArtifactCache;
	registration: WorkerRegistration;
	heartbeat: NodeJS.Timeout | null;
	unwatch: Array<() => void>;
	reconciling: Promise<void> | null;
	reconcileAgain: boolean;
	stats: { fired: number; succeeded: number; failed: number; skipped: number; missed: number };

	measureClockOffset(): Promise<number | null>;
	register(): Promise<void>;
	reconcile(jobIds?: string[]): Promise<void>;
	loadJobs(ids: string[], catchUp: boolean): Promise<void>;
	scheduleJob(job: WorkerJob, after: number): void;
	firesAt(job: WorkerJob, at: number): boolean;
	reviewHeld(id: string, fresh: WorkerJob | null, unassigned?: boolean): void;
	reviewHeldUnassigned(ids: string[]): Promise<void>;
	catchUp(job: WorkerJob, now: number): Promise<void>;
	recoverInflight(ids: string[]): Promise<void>;
	arm(): void;
	resume(): void;
	onTimer(): void;
	fire(job: WorkerJob, scheduledAt: number, trigger: RunTrigger, attempt: number): Promise<Run | null>;
	execute(job: WorkerJob, run: Run, attempt: number, controller: AbortController, releaseAt: number | null, slot?: (() => void) | null): Promise<ExecResult>;
	buildSpec(job: WorkerJob, run: Run, attempt: number, controller: AbortController, releaseAt: number | null): Promise<{ spec: ExecSpec; release(): void }>;
	finish(job: WorkerJob, run: Run, result: ExecResult, willRetry: boolean, status?: RunStatus): Promise<void>;
	flushOutbox(): Promise<void>;
	retryUnstarted(): Promise<void>;
	saveOutbox(): void;
	record(job: WorkerJob, scheduledAt: number, trigger: RunTrigger, status: RunStatus, error?: string): Promise<void>;
	countRun(status: RunStatus): void;
}

/** Jobs per jobs.byIds call: the answer must stay under the transporter's packet limit (NATS: 1 MB). */
const JOBS_PER_CALL = 500;
/** jobs.byIds calls a worker keeps in flight while loading its jobs. */
const LOAD_CALLS_IN_FLIGHT = 4;

/**
 * The last N scheduled fires, split into stages: timer (instant -> the fire begins), claim
 * (coordination lock), record (run row written), spawn (-> the process started). Diagnostics only.
 */
class FireStages {
	private rows: number[][] = [];
	constructor(private readonly keep: number) {}
	add(scheduledAt: number, t: { entered: number; claimed: number; recorded: number }, startedAt: number): void {
		this.rows.push([t.entered - scheduledAt, t.claimed - t.entered, t.recorded - t.claimed, startedAt - t.recorded, startedAt - scheduledAt]);
		if (this.rows.length > this.keep) this.rows.splice(0, this.rows.length - this.keep);
	}
	summary(): Record<string, { p50: number; p99: number; max: number }> | null {
		if (this.rows.length === 0) return null;
		const out: Record<string, { p50: number; p99: number; max: number }> = {};
		["timer", "claim", "record", "spawn", "total"].forEach((name, k) => {
			const v = this.rows.map((r) => r[k]).sort((a, b) => a - b);
			out[name] = { p50: v[Math.floor(v.length / 2)], p99: v[Math.min(v.length - 1, Math.floor(v.length * 0.99))], max: v[v.length - 1] };
		});
		return out;
	}
}

/** A job the worker may fire: assigned, live, not suspended, not finished. */
function schedulable(job: WorkerJob): boolean {
	return !job.deleted && !job.suspended && job.status !== "finished";
}

export default function createWorkerService(deps: WorkerDeps): ServiceSchema<ServiceSettingSchema, WorkerThis> {
	const { config, clock } = deps;
	const processIsRoot = typeof process.getuid === "function" && process.getuid() === 0;
	const currentUser = os.userInfo().username;
	const workRoot = path.join(config.dataDir, "work");
	const outboxFile = path.join(config.dataDir, `outbox-${config.nodeId.replace(/[^A-Za-z0-9_.-]/g, "_")}.json`);

	return {
		name: "worker",
		mixins: [ZookeeperMixin(deps.coordination), ErrorsMixin()],

		actions: {
			/** Run a job now (POST /jobs/{id}/run). Answers the run as started. */
			runNow: {
				visibility: "public",
				params: { jobId: "string" },
				async handler(this: WorkerThis, ctx: Context<{ jobId: string }>) {
					const [job] = (await ctx.call("jobs.byIds", { ids: [ctx.params.jobId] })) as WorkerJob[];
					if (!job || job.deleted) throw notFound("Job", ctx.params.jobId);
					return this.fire(job, clock.now(), "manual", 1);
				},
			},

			/** This worker's crontab in crontab(5) syntax. */
			crontab: {
				params: {},
				handler(this: WorkerThis) {
					return formatCrontab(
						this.crontab.entries().map((e) => {
							const j = this.jobs.get(e.jobId);
							return {
								id: e.jobId,
								schedule: j?.schedule ?? "?",
								timezone: j?.timezone ?? "UTC",
								nextAt: e.at,
								command: j ? (j.type === "command" ? j.executable : `${j.type} ${j.executable}`) : "?",
							};
						}),
					);
				},
			},

			status: {
				params: {},
				handler(this: WorkerThis) {
					let running = 0;
					for (const s of this.running.values()) running += s.size;
					return {
						node: this.broker.nodeID,
						jobs: this.crontab.size,
						assigned: this.assigned.size,
						running,
						processes: this.slots.running,
						queued: this.slots.queued,
						pendingResults: this.outbox.length,
						fireStagesMs: this.stages.summary(),
						pendingFires: [...this.unstarted.values()].reduce((n, f) => n + f.length, 0),
						coordination: this.coordination.state(),
						registration: this.registration,
						stats: this.stats,
					};
				},
			},

			health: {
				visibility: "public",
				params: {},
				handler(this: WorkerThis) {
					const state = this.coordination.state();
					const offset = this.registration?.clockOffsetMs ?? null;
					const clockOk = offset === null || Math.abs(offset) <= config.clockSkewBoundMs;
					return {
						coordination: { ok: state === "connected", state },
						workerClock: { ok: clockOk, offsetMs: offset, boundMs: config.clockSkewBoundMs },
					};
				},
			},
		},

		events: {
			/** A job changed (created, patched, deleted, finished): refresh it if it is ours. */
			"jobs.changed": {
				params: { id: "string", op: "string" },
				async handler(this: WorkerThis, ctx: Context<{ id: string; op: string }>) {
					if (!this.assigned.has(ctx.params.id)) return this.reviewHeldUnassigned([ctx.params.id]);
					await this.loadJobs([ctx.params.id], false);
				},
			},
		},

		methods: {
			async measureClockOffset(this: WorkerThis): Promise<number | null> {
				try {
					const t0 = clock.now();
					const db = (await this.broker.call("jobs.dbTime", {}, { timeout: 3000, retries: 0 })) as number;
					const t1 = clock.now();
					return Math.round((t0 + t1) / 2 - db);
				} catch (err) {
					this.logger.warn("Cannot measure the clock offset against the database:", (err as Error).message);
					return null;
				}
			},

			async register(this: WorkerThis) {
				const offset = await this.measureClockOffset();
				this.registration = { ...this.registration, clockOffsetMs: offset };
				if (offset !== null && Math.abs(offset) > config.clockSkewBoundMs) {
					this.logger.error(`This worker's clock is ${offset} ms off the database's (bound ${config.clockSkewBoundMs} ms): it gets no jobs until fixed`);
				}
				await this.coordination.registerWorker(this.registration);
			},

			/**
			 * Make the crontab match the assignment: load newly assigned jobs (catching up missed fires),
			 * drop jobs that are no longer ours. Serialized: a call during a reconcile runs once after it.
			 */
			async reconcile(this: WorkerThis, jobIds?: string[]) {
				if (this.reconciling) {
					this.reconcileAgain = true;
					return this.reconciling;
				}
				const run = async () => {
					do {
						this.reconcileAgain = false;
						const ids = jobIds ?? (await this.coordination.getAssignments(this.broker.nodeID));
						jobIds = undefined;
						const wanted = new Set(ids);
						const removed: string[] = [];
						for (const id of [...this.assigned]) {
							if (!wanted.has(id)) {
								// A fire already held for it keeps its claim and runs (the new owner cannot claim it).
								this.assigned.delete(id);
								this.crontab.delete(id);
								this.jobs.delete(id);
								this.handed.delete(id);
								removed.push(id);
							}
						}
						if (removed.length > 0)
							await this.reviewHeldUnassigned(removed).catch((err) =>
								this.logger.warn("Cannot review the held fires of unassigned jobs:", (err as Error).message),
							);
						const added = ids.filter((id) => !this.assigned.has(id));
						for (const id of added) this.assigned.add(id);
						if (added.length > 0) {
							// Independent: runs cut off elsewhere (re-run with attempt + 1) and the crontab.
							await Promise.all([this.recoverInflight(added), this.loadJobs(added, true)]);
						}
						this.arm();
					} while (this.reconcileAgain && !this.stopping);
				};
				this.reconciling = run().finally(() => {
					this.reconciling = null;
				});
				return this.reconciling;
			},

			/** Fetch jobs from the database and (re)schedule them. */
			async loadJobs(this: WorkerThis, ids: string[], catchUp: boolean) {
				// In chunks: one answer must stay under the transporter's packet limit (NATS: 1 MB); a few
				// chunks in flight at once (a dead worker's share arrives as tens of thousands of jobs).
				const chunks: string[][] = [];
				for (let i = 0; i < ids.length; i += JOBS_PER_CALL) chunks.push(ids.slice(i, i + JOBS_PER_CALL));
				const answers: WorkerJob[][] = new Array(chunks.length);
				let next = 0;
				await Promise.all(
					Array.from({ length: Math.min(LOAD_CALLS_IN_FLIGHT, chunks.length) }, async () => {
						while (next < chunks.length) {
							const k = next++;
							answers[k] = (await this.broker.call("jobs.byIds", { ids: chunks[k] })) as WorkerJob[];
						}
					}),
				);
				const jobs = answers.flat();
				const found = new Set(jobs.map((j) => j.id));
				for (const id of ids) {
					if (found.has(id)) continue;
					this.crontab.delete(id);
					this.jobs.delete(id);
					this.reviewHeld(id, null);
				}
				const now = clock.now();
				let n = 0;
				for (const job of jobs) {
					// Yield now and then: loading tens of thousands of jobs must not starve the event loop
					// (the coordination session's heartbeats, the broker's, the timers).
					if (++n % 500 === 0) await new Promise((r) => setImmediate(r));
					if (!this.assigned.has(job.id)) continue;
					this.jobs.set(job.id, job);
					this.reviewHeld(job.id, job);
					if (!schedulable(job)) {
						this.crontab.delete(job.id);
						continue;
					}
					// Catch-up covers fires up to now - 1; the crontab takes it from there (a fire due at
					// exactly `now` is the crontab's). A reload keeps an entry that is due but whose timer
					// has not gone off yet.
					const prev = this.crontab.nextAt(job.id);
					if (catchUp) await this.catchUp(job, now);
					const from = catchUp ? now - 1 : Math.min(now, prev !== null ? prev - 1 : now);
					this.scheduleJob(job, Math.max(from, job.lastScheduledAt ?? 0));
					// A fire already handed over ahead of its instant is not scheduled twice.
					const handed = this.handed.get(job.id);
					if (handed !== undefined && this.crontab.nextAt(job.id) === handed) this.scheduleJob(job, handed);
				}
				this.arm();
			},

			/** Whether the job's (current) schedule has a fire at exactly `at`. */
			firesAt(this: WorkerThis, job: WorkerJob, at: number) {
				const { schedule, tz } = this.scheduleOf(job);
				return nextFireTimes(schedule, tz, at - 1, 1)[0] === at;
			},

			/**
			 * The job was reloaded: its prefired processes still held are kept, prepared again from the
			 * new definition, or cancelled (heldFireAfterReload); fire() does the rebuild or records the skip.
			 */
			reviewHeld(this: WorkerThis, id: string, fresh: WorkerJob | null, unassigned = false) {
				const runs = this.running.get(id);
				if (!runs) return;
				const now = clock.now();
				for (const r of runs) {
					if (r.releaseAt === null || r.releaseAt <= now) continue;
					const view = fresh && { updatedAt: fresh.updatedAt, schedulable: schedulable(fresh), firesAt: this.firesAt(fresh, r.scheduledAt) };
					const decision = heldFireAfterReload(r, view);
					// Moved to another worker but otherwise unchanged or merely edited: the held fire keeps
					// its claim and runs here (the new owner cannot claim it).
					if (decision === "cancel" || (decision === "rebuild" && !unassigned)) r.controller.abort(new HeldJobChanged("the job changed before this fire"));
				}
			},

			/** Jobs no longer ours with fires still held here: cancel those of deleted or suspended jobs. */
			async reviewHeldUnassigned(this: WorkerThis, ids: string[]) {
				const held = ids.filter((id) => [...(this.running.get(id) ?? [])].some((r) => r.releaseAt !== null && r.releaseAt > clock.now()));
				if (held.length === 0) return;
				const jobs = new Map(((await this.broker.call("jobs.byIds", { ids: held })) as WorkerJob[]).map((j) => [j.id, j]));
				for (const id of held) if (!this.assigned.has(id)) this.reviewHeld(id, jobs.get(id) ?? null, true);
			},

			/** Parsed schedules are shared by every job with the same schedule and time zone. */
			scheduleOf(this: WorkerThis, job: WorkerJob) {
				const key = `${job.schedule}\u0000${job.timezone}`;
				let cached = this.schedules.get(key);
				if (!cached) {
					cached = { key, schedule: parseSchedule(job.schedule), tz: loadTimeZone(job.timezone) };
					this.schedules.set(key, cached);
				}
				return cached;
			},

			scheduleJob(this: WorkerThis, job: WorkerJob, after: number) {
				if (!job.recurring && job.lastScheduledAt !== null) {
					this.crontab.delete(job.id); // a one-shot job fires once
					return;
				}
				const { schedule, tz } = this.scheduleOf(job);
				const [next] = nextFireTimes(schedule, tz, after, 1);
				if (next === undefined) this.crontab.delete(job.id);
				else this.crontab.set(job.id, next, prefireLeadMs(job, config.prefireMs));
			},

			/** Fires missed while no worker owned the job, handled by its misfire policy. */
			async catchUp(this: WorkerThis, job: WorkerJob, now: number) {
				const since = job.lastScheduledAt ?? job.createdAt;
				const { schedule, tz } = this.scheduleOf(job);
				// The newest 1000 missed fires at most (misfireDecision runs at most 1000 late).
				let missed = fireTimesBetween(schedule, tz, since, now - 1, 1000);
				if (!job.recurring) missed = missed.slice(0, 1);
				if (missed.length === 0) return;
				const decision = misfireDecision(job.misfire, missed);
				this.logger.info(`Job ${job.id}: ${missed.length} missed fire(s); running ${decision.run.length} (misfire ${job.misfire})`);
				for (const at of decision.missed) await this.record(job, at, "catchup", "missed", `missed while no worker owned the job (misfire ${job.misfire})`);
				for (const at of decision.run) void this.fire(job, at, "catchup", 1);
				const last = missed[missed.length - 1];
				job.lastScheduledAt = Math.max(job.lastScheduledAt ?? 0, last);
			},

			/**
			 * Runs of these jobs still marked running whose claim is gone were cut off by a dead worker:
			 * mark them failed and, unless the misfire policy is skip, run them again with attempt + 1.
			 */
			async recoverInflight(this: WorkerThis, ids: string[]) {
				const runs: { id: string; jobId: string; scheduledAt: number; attempt: number; trigger: RunTrigger; node: string | null }[] = [];
				for (let i = 0; i < ids.length; i += 10_000)
					runs.push(...((await this.broker.call("jobs.inflight", { jobIds: ids.slice(i, i + 10_000) })) as typeof runs));
				if (runs.length === 0) return;
				const jobs = new Map(((await this.broker.call("jobs.byIds", { ids: [...new Set(runs.map((r) => r.jobId))] })) as WorkerJob[]).map((j) => [j.id, j]));
				for (const r of runs) {
					if ([...(this.running.get(r.jobId) ?? [])].some((x) => x.runId === r.id)) continue; // our own live run
					if (this.outbox.some((o) => o.runId === r.id)) continue; // ran here; its result waits to be written
					const owner = await this.coordination.claimOwner(r.jobId, r.scheduledAt);
					if (owner !== null) continue; // still running on a live worker
					const abandoned = (await this.broker.call("jobs.abandonRun", {
						runId: r.id,
						error: `interrupted: worker ${r.node ?? "?"} died during the run`,
					})) as boolean;
					const job = jobs.get(r.jobId);
					if (abandoned) this.countRun("failed");
					if (!abandoned || !job || !schedulable(job)) continue;
					if (job.misfire === "skip") continue;
					this.logger.warn(`Run ${r.id} of job ${r.jobId} was cut off on ${r.node}; running it again (attempt ${r.attempt + 1})`);
					void this.fire(job, r.scheduledAt, "retry", r.attempt + 1);
				}
			},

			/** One timer for the earliest entry of the crontab. */
			arm(this: WorkerThis) {
				if (this.broker.isMetricsEnabled()) this.broker.metrics.set(METRICS.workerJobs, this.crontab.size);
				if (this.stopping) return;
				if (this.coordination.state() !== "connected") {
					// A fire needs a claim, which needs the session: fires falling due now would be lost.
					// They stay in the crontab; resume() handles them when the connection is back.
					if (this.timer) clock.clearTimeout(this.timer);
					this.timer = null;
					this.timerAt = null;
					return;
				}
				const next = this.crontab.peek();
				if (next && this.timerAt === next.at && this.timer) return;
				if (this.timer) clock.clearTimeout(this.timer);
				this.timer = null;
				this.timerAt = null;
				if (!next) return;
				// `due`: the fire time, or earlier for a job that is prefired (prefireLeadMs).
				const delay = Math.min(next.due - clock.now(), 24 * 3600 * 1000);
				this.timerAt = next.at;
				this.timer = clock.setTimeout(() => this.onTimer(), delay);
			},

			/**
			 * The connection is back (same or new session): fires that fell due meanwhile run late; when a
			 * job missed more than one, its misfire policy decides (as for fires missed while no worker
			 * owned it), so a long outage does not replay every fire.
			 */
			resume(this: WorkerThis) {
				if (this.stopping) return;
				const now = clock.now();
				for (const entry of this.crontab.popDue(now)) {
					const job = this.jobs.get(entry.jobId);
					if (!job || !schedulable(job)) continue;
					const { schedule, tz } = this.scheduleOf(job);
					let due = fireTimesBetween(schedule, tz, entry.at - 1, now, 1000);
					if (!job.recurring || due.length === 0) due = [entry.at];
					const last = due[due.length - 1];
					this.handed.set(job.id, last);
					this.scheduleJob(job, last);
					if (!job.recurring) job.lastScheduledAt = last;
					if (due.length === 1) {
						void this.fire(job, due[0], "schedule", 1);
						continue;
					}
					const decision = misfireDecision(job.misfire, due);
					this.logger.warn(
						`Job ${job.id}: ${due.length} fire(s) fell due while the coordination service was unreachable; running ${decision.run.length} (misfire ${job.misfire})`,
					);
					for (const at of decision.missed)
						void this.record(job, at, "catchup", "missed", `missed while the coordination service was unreachable (misfire ${job.misfire})`);
					for (const at of decision.run) void this.fire(job, at, "catchup", 1);
				}
				this.arm();
			},

			onTimer(this: WorkerThis) {
				this.timer = null;
				this.timerAt = null;
				if (this.stopping) return;
				const now = clock.now();
				for (const entry of this.crontab.popDue(now)) {
					const job = this.jobs.get(entry.jobId);
					if (!job || !schedulable(job)) continue;
					this.handed.set(job.id, entry.at);
					this.scheduleJob(job, entry.at);
					if (!job.recurring) job.lastScheduledAt = entry.at;
					void this.fire(job, entry.at, "schedule", 1);
				}
				this.arm();
			},

			/**
			 * One fire: apply the overlap policy, claim (job, scheduledAt), record the run with its unique
			 * key, execute, record the result, retry with backoff when the job allows it.
			 */
			async fire(this: WorkerThis, job: WorkerJob, scheduledAt: number, trigger: RunTrigger, attempt: number): Promise<Run | null> {
				// Handed over ahead of the instant: prefire (claim, record and spawn now, release at the
				// instant) or wait for the instant (prefireDecision).
				const slotFree = this.slots.running < this.slots.limit && this.slots.queued === 0;
				const mode = prefireDecision(job, { trigger, attempt, at: scheduledAt }, clock.now(), config.prefireMs, slotFree);
				// A prefired fire holds its process slot from now on (released by execute, or below).
				let slot = mode === "prefire" ? this.slots.tryAcquire() : null;
				const dropSlot = () => {
					slot?.();
					slot = null;
				};
				if (mode === "wait") {
					await new Promise<void>((r) => clock.setTimeout(r, scheduledAt - clock.now()));
					const current = this.jobs.get(job.id);
					if (this.stopping || !current || !schedulable(current) || !this.assigned.has(job.id) || !this.firesAt(current, scheduledAt)) return null;
					job = current;
				}
				const releaseAt = mode === "prefire" ? scheduledAt : null;
				const t = { entered: Date.now(), claimed: 0, recorded: 0 };
				if (trigger !== "retry") {
					const running = this.running.get(job.id) ?? new Set<RunningRun>();
					const decision = overlapDecision(job.concurrency, running.size);
					if (decision === "skip") {
						await this.record(job, scheduledAt, trigger, "skipped", "the previous run is still running (concurrency forbid)");
						return null;
					}
					if (decision === "replace") for (const r of running) r.controller.abort();
				}
				let claim;
				try {
					claim = await this.coordination.claim(job.id, scheduledAt, this.broker.nodeID);
					t.claimed = Date.now();
				} catch (err) {
					dropSlot();
					this.logger.error(`Cannot claim job ${job.id} at ${new Date(scheduledAt).toISOString()}:`, (err as Error).message);
					// The connection dropped between the timer and the claim: give the fire back to the
					// crontab, where resume() finds it on reconnect (misfire policy), instead of losing it.
					if ((trigger === "schedule" || trigger === "catchup") && !this.stopping && this.coordination.state() !== "connected") {
						const current = this.jobs.get(job.id);
						const next = this.crontab.nextAt(job.id);
						if (current && schedulable(current) && this.assigned.has(job.id) && (next === null || next > scheduledAt)) {
							this.crontab.set(job.id, scheduledAt, prefireLeadMs(current, config.prefireMs));
							if (this.handed.get(job.id) === scheduledAt) this.handed.delete(job.id);
						}
					}
					return null;
				}
				if (!claim) {
					dropSlot();
					return null; // another worker holds this fire
				}
				let run: Run | null = null;
				try {
					run = await this.starts.add({ jobId: job.id, scheduledAt, attempt, trigger, node: this.broker.nodeID });
					t.recorded = Date.now();
				} catch (err) {
					dropSlot();
					await claim.release().catch(() => undefined);
					if (trigger === "manual") throw err; // the caller gets the 503
					// The database is down: the fire did not run. Keep it; retryUnstarted() handles it by
					// the misfire policy once the database answers (it must not be dropped silently).
					this.logger.error(`Cannot record the start of job ${job.id} at ${new Date(scheduledAt).toISOString()} (kept to catch up):`, (err as Error).message);
					const kept = this.unstarted.get(job.id) ?? [];
					kept.push({ at: scheduledAt, attempt });
					this.unstarted.set(job.id, kept.slice(-1000));
					if (!this.unstartedTimer && !this.stopping) this.unstartedTimer = clock.setTimeout(() => void this.retryUnstarted(), 1000);
					return null;
				}
				if (!run) {
					dropSlot();
					await claim.release();
					return null; // already ran (unique key)
				}
				this.stats.fired++;
				const started = run;
				const entry: RunningRun = {
					runId: run.id,
					scheduledAt,
					controller: new AbortController(),
					done: Promise.resolve(),
					releaseAt,
					updatedAt: job.updatedAt,
				};
				entry.done = (async () => {
					try {
						const held = slot;
						slot = null;
						let result = await this.execute(job, started, attempt, entry.controller, releaseAt, held);
						// Held and cancelled by a reload of the job: prepare it again from the new definition
						// (same claim, same run), or record it skipped; its code never ran.
						while (result.released === false && entry.controller.signal.reason instanceof HeldJobChanged) {
							const current = this.jobs.get(job.id);
							if (!this.stopping && current && schedulable(current) && this.assigned.has(job.id) && this.firesAt(current, scheduledAt)) {
								job = current;
								entry.controller = new AbortController();
								entry.updatedAt = job.updatedAt;
								result = await this.execute(job, started, attempt, entry.controller, releaseAt);
								continue;
							}
							this.stats.skipped++;
							await this.finish(
								job,
								started,
								{ ...result, error: "cancelled before its instant: the job was deleted, suspended or rescheduled" },
								false,
								"skipped",
							);
							return;
						}
						const controller = entry.controller;
						// The worker stopped before it started: nothing ran. The row stays `running`; with its
						// claim gone, the job's next worker (or this one restarted) finds it and runs it again.
						if (this.stopping && result.released === false && !(controller.signal.reason instanceof HeldJobChanged)) return;
						if (trigger === "schedule" && result.exitCode !== null) this.stages.add(scheduledAt, t, result.startedAt);
						const willRetry = !controller.signal.aborted && shouldRetry(result.status, attempt, job.retries);
						await this.finish(job, started, result, willRetry);
						if (result.status === "succeeded") this.stats.succeeded++;
						else this.stats.failed++;
						if (willRetry && !this.stopping) {
							const delay = retryDelayMs(attempt);
							clock.setTimeout(() => {
								const current = this.jobs.get(job.id);
								if (current && schedulable(current) && this.assigned.has(job.id)) void this.fire(current, scheduledAt, "retry", attempt + 1);
							}, delay);
						}
					} finally {
						await claim.release().catch(() => undefined);
					}
				})();
				// The set is looked up now, not before the awaits above: fires of one job overlap (prefire).
				const id = job.id;
				let running = this.running.get(id);
				if (!running) this.running.set(id, (running = new Set()));
				running.add(entry);
				void entry.done.finally(() => {
					const set = this.running.get(id);
					set?.delete(entry);
					if (set && set.size === 0) this.running.delete(id);
				});
				return run;
			},

			async execute(
				this: WorkerThis,
				job: WorkerJob,
				run: Run,
				attempt: number,
				controller: AbortController,
				releaseAt: number | null,
				slot: (() => void) | null = null,
			): Promise<ExecResult> {
				let prepared;
				try {
					prepared = await this.buildSpec(job, run, attempt, controller, releaseAt);
				} catch (err) {
					slot?.();
					const t = clock.now();
					return { status: "failed", exitCode: null, signal: null, output: "", startedAt: t, finishedAt: t, error: (err as Error).message };
				}
				const free = slot ?? (await this.slots.acquire());
				try {
					if (this.stopping && !controller.signal.aborted) {
						// Queued behind a backlog when the worker stops: it never started (see fire()).
						const t = clock.now();
						return {
							status: "failed",
							exitCode: null,
							signal: null,
							output: "",
							startedAt: t,
							finishedAt: t,
							error: "the worker stopped before the run started",
							released: false,
						};
					}
					const result = await (this.runners ? this.runners.run(prepared.spec) : runProcess(prepared.spec, undefined, clock));
					// cronjob_fire_lag_seconds: start minus scheduled instant (first attempts of processes that
					// started; a retry's lag is its backoff).
					if (attempt === 1 && this.broker.isMetricsEnabled() && result.released !== false && (result.exitCode !== null || result.signal !== null)) {
						this.broker.metrics.observe(METRICS.fireLag, Math.max(0, result.startedAt - Date.parse(run.scheduledAt)) / 1000);
					}
					return result;
				} finally {
					free();
					prepared.release();
				}
			},

			async buildSpec(this: WorkerThis, job: WorkerJob, run: Run, attempt: number, controller: AbortController, releaseAt: number | null) {
				const userName = effectiveRunUser({ runAs: job.runAs, processIsRoot, defaultUser: config.defaultRunUser, currentUser });
				let user: ResolvedUser | null = null;
				if (userName !== null) {
					user = this.users.get(userName) ?? (await resolveUser(userName));
					this.users.set(userName, user);
				}
				const env: Record<string, string> = {
					PATH: DEFAULT_PATH,
					...job.env,
					CRONJOB_JOB_ID: job.id,
					CRONJOB_RUN_ID: run.id,
					CRONJOB_SCHEDULED_AT: run.scheduledAt,
					CRONJOB_ATTEMPT: String(attempt),
				};
				// The runners time the release on the system clock; in-process runs on ours.
				const release = releaseAt === null ? null : this.runners ? releaseAt + (Date.now() - clock.now()) : releaseAt;
				const base = {
					env,
					user,
					timeoutMs: job.timeout ? job.timeout * 1000 : null,
					maxOutputBytes: config.maxOutputBytes,
					workRoot,
					signal: controller.signal,
					releaseAt: release,
				};
				if (job.type === "command") return { spec: { ...base, file: "/bin/sh", args: ["-c", job.executable] }, release: () => undefined };
				if (!job.digest) throw new Error(`job ${job.id} has no stored executable`);
				const lease = await this.artifacts.acquire(job.digest, job.size ?? undefined);
				try {
					let file = lease.path;
					let args: string[] = [];
					if (job.type === "script") {
						const head = Buffer.alloc(2);
						const fd = await fs.promises.open(lease.path, "r");
						try {
							await fd.read(head, 0, 2, 0);
						} finally {
							await fd.close();
						}
						// A script without a shebang runs through /bin/sh.
						if (head.toString("latin1") !== "#!") {
							file = "/bin/sh";
							args = [lease.path];
						}
					}
					return { spec: { ...base, file, args }, release: () => lease.release() };
				} catch (err) {
					lease.release();
					throw err;
				}
			},

			/** Record a result; while the database is down, keep it and retry until it is written. */
			async finish(this: WorkerThis, job: WorkerJob, run: Run, result: ExecResult, willRetry: boolean, status: RunStatus = result.status) {
				this.countRun(status);
				const runId = run.id;
				const req: FinishRequest = {
					runId,
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
					this.logger.warn(`Cannot record run ${runId} now (${(err as Error).message}); keeping it to retry`);
					this.outbox.push(req);
					this.saveOutbox();
					if (!this.outboxTimer) this.outboxTimer = clock.setTimeout(() => void this.flushOutbox(), 1000);
				}
			},

			async flushOutbox(this: WorkerThis) {
				this.outboxTimer = null;
				if (this.outbox.length === 0) return;
				const batch = this.outbox.slice(0, 500);
				try {
					await this.broker.call("jobs.finishRuns", { results: batch }, { retries: 0 });
					this.outbox.splice(0, batch.length);
					this.saveOutbox();
					this.logger.info(`Recorded ${batch.length} run result(s) kept while the database was unreachable`);
				} catch (err) {
					if (!this.stopping) this.outboxTimer = clock.setTimeout(() => void this.flushOutbox(), 1000);
					return;
				}
				if (this.outbox.length > 0) await this.flushOutbox();
			},

			/**
			 * Fires kept because their start could not be recorded: once the database answers (and the
			 * kept results are written, so their runs are not taken for cut-off ones), runs of these jobs
			 * left marked running by a start whose answer was lost are recovered, then the kept first
			 * attempts follow the misfire policy (run_once: the newest runs late, the others are marked
			 * missed) and kept retries run again.
			 */
			async retryUnstarted(this: WorkerThis) {
				this.unstartedTimer = null;
				if (this.stopping || this.unstarted.size === 0) return;
				try {
					if (this.outbox.length > 0) throw new Error("results still wait in the outbox");
					await this.recoverInflight([...this.unstarted.keys()]);
				} catch {
					if (!this.stopping) this.unstartedTimer = clock.setTimeout(() => void this.retryUnstarted(), 1000);
					return;
				}
				const pending = this.unstarted;
				this.unstarted = new Map();
				for (const [jobId, fires] of pending) {
					const job = this.jobs.get(jobId);
					if (!job || !schedulable(job) || !this.assigned.has(jobId)) continue;
					for (const f of fires) if (f.attempt > 1) void this.fire(job, f.at, "retry", f.attempt);
					const decision = misfireDecision(
						job.misfire,
						fires.filter((f) => f.attempt === 1).map((f) => f.at),
					);
					if (decision.run.length + decision.missed.length === 0) continue;
					this.logger.warn(
						`Job ${job.id}: ${decision.run.length + decision.missed.length} fire(s) could not start while the database was unreachable; running ${decision.run.length} (misfire ${job.misfire})`,
					);
					for (const at of decision.missed)
						void this.record(job, at, "catchup", "missed", `could not start while the database was unreachable (misfire ${job.misfire})`);
					for (const at of decision.run) void this.fire(job, at, "catchup", 1);
				}
			},

			/**
			 * The outbox lives in memory and, while not empty, in <data>/outbox-<node>.json (written
			 * atomically), so results survive a worker restart while the database is down.
			 */
			saveOutbox(this: WorkerThis) {
				try {
					if (this.outbox.length === 0) fs.rmSync(outboxFile, { force: true });
					else {
						fs.writeFileSync(outboxFile + ".tmp", JSON.stringify(this.outbox), { mode: 0o600 });
						fs.renameSync(outboxFile + ".tmp", outboxFile);
					}
				} catch (err) {
					this.logger.error("Cannot save the outbox:", (err as Error).message);
				}
			},

			/** cronjob_runs_total{status}: every outcome this worker records. */
			countRun(this: WorkerThis, status: RunStatus) {
				if (status !== "running" && this.broker.isMetricsEnabled()) this.broker.metrics.increment(METRICS.runs, { status });
			},

			async record(this: WorkerThis, job: WorkerJob, scheduledAt: number, trigger: RunTrigger, status: RunStatus, error?: string) {
				if (status === "skipped") this.stats.skipped++;
				if (status === "missed") this.stats.missed++;
				this.countRun(status);
				try {
					await this.broker.call("jobs.recordRun", { jobId: job.id, scheduledAt, trigger, status, node: this.broker.nodeID, error });
				} catch (err) {
					this.logger.warn(`Cannot record a ${status} fire of job ${job.id}:`, (err as Error).message);
				}
			},
		},

		created(this: WorkerThis) {
			this.crontab = new Crontab();
			this.jobs = new Map();
			this.schedules = new Map();
			this.assigned = new Set();
			this.running = new Map();
			this.handed = new Map();
			this.timer = null;
			this.timerAt = null;
			this.stopping = false;
			this.outbox = [];
			this.outboxTimer = null;
			this.unstarted = new Map();
			this.unstartedTimer = null;
			this.slots = new Limiter(config.maxConcurrentRuns);
			this.stages = new FireStages(1000);
			this.runners = null;
			this.starts = new Batcher((runs) => this.broker.call("jobs.startRuns", { runs }) as Promise<(Run | null)[]>, {
				schedule: (fn) => void clock.setTimeout(fn, 0),
			});
			this.finishes = new Batcher((results) => this.broker.call("jobs.finishRuns", { results }) as Promise<boolean[]>, {
				schedule: (fn) => void clock.setTimeout(fn, 0),
			});
			this.users = new Map();
			this.unwatch = [];
			this.reconciling = null;
			this.reconcileAgain = false;
			this.heartbeat = null;
			this.stats = { fired: 0, succeeded: 0, failed: 0, skipped: 0, missed: 0 };
			registerMetric(this.broker, { type: "counter", name: METRICS.runs, description: "Runs recorded by this worker, by status", labelNames: ["status"] });
			registerMetric(this.broker, {
				type: "histogram",
				name: METRICS.fireLag,
				description: "Process start minus scheduled instant (s)",
				unit: "seconds",
				buckets: FIRE_LAG_BUCKETS,
			});
			registerMetric(this.broker, { type: "gauge", name: METRICS.workerJobs, description: "Jobs on this worker's crontab" });
			if (this.broker.isMetricsEnabled()) this.broker.metrics.set(METRICS.workerJobs, 0);
			this.artifacts = new ArtifactCache({ dir: path.join(config.dataDir, "cache"), store: deps.objectStore, clock });
			this.registration = {
				id: this.broker.nodeID,
				host: os.hostname(),
				pid: process.pid,
				startedAt: new Date(clock.now()).toISOString(),
				capacity: config.workerCapacity,
				clockOffsetMs: null,
			};
		},

		async started(this: WorkerThis) {
			fs.mkdirSync(workRoot, { recursive: true, mode: 0o755 });
			if (config.runners > 0) this.runners = new RunnerPool(config.runners, undefined, (msg) => this.logger.warn(msg));
			try {
				this.outbox = JSON.parse(fs.readFileSync(outboxFile, "utf8")) as FinishRequest[];
				this.logger.warn(`${this.outbox.length} run result(s) from before the restart wait to be recorded`);
			} catch {
				/* no outbox */
			}
			await this.broker.waitForServices(["jobs"], 60_000);
			// Results kept from before a restart go first, so their runs are not taken for cut-off ones.
			await this.flushOutbox();
			await this.register();
			this.unwatch.push(
				this.coordination.watchAssignments(this.broker.nodeID, (ids) => void this.reconcile(ids).catch((err) => this.logger.error("Reconcile failed:", err))),
			);
			this.unwatch.push(
				this.coordination.onStateChange((change) => {
					if (change.state !== "connected") {
						// Suspended or expired: no claims can be taken (and after an expiry ours are gone),
						// so stop firing; arm() stays idle until the connection is back.
						this.arm();
						return;
					}
					// Back: run what fell due meanwhile, then (new session) re-register with a fresh clock
					// offset and reconcile with the assignment, which may have changed while we were gone.
					this.resume();
					if (change.newSession) {
						void this.register()
							.catch((err) => this.logger.warn("Re-registration after a new session failed (the coordination re-created the old one):", (err as Error).message))
							.then(() => this.reconcile())
							.catch((err) => this.logger.error("Reconcile after a new session failed:", err));
					}
				}),
			);
			await this.reconcile();
			this.heartbeat = setInterval(() => {
				void (async () => {
					const offset = await this.measureClockOffset();
					// Unmeasurable now (database unreachable): keep the last known offset rather than
					// publishing null, which the manager would take for "fine".
					if (offset === null || offset === this.registration.clockOffsetMs) return;
					this.registration = { ...this.registration, clockOffsetMs: offset };
					if (offset !== null && Math.abs(offset) > config.clockSkewBoundMs)
						this.logger.error(`Clock offset ${offset} ms exceeds the bound of ${config.clockSkewBoundMs} ms`);
					await this.coordination.updateWorker(this.registration).catch(() => undefined);
				})();
			}, config.heartbeatMs);
		},

		async stopped(this: WorkerThis) {
			this.stopping = true;
			if (this.heartbeat) clearInterval(this.heartbeat);
			if (this.timer) clock.clearTimeout(this.timer);
			if (this.outboxTimer) clock.clearTimeout(this.outboxTimer);
			if (this.unstartedTimer) clock.clearTimeout(this.unstartedTimer);
			for (const u of this.unwatch) u();
			// Let running processes finish (they hold claims), then write what is pending.
			const all: Promise<void>[] = [];
			for (const set of this.running.values()) for (const r of set) all.push(r.done.catch(() => undefined));
			let grace: NodeJS.Timeout | undefined;
			await Promise.race([Promise.all(all), new Promise((r) => (grace = setTimeout(r, 10_000)))]);
			clearTimeout(grace);
			await this.flushOutbox().catch(() => undefined);
			await this.runners?.close();
		},
	};
}
