/**
 * The worker engine: the parts of a worker wired together, with everything outside injected (the
 * clock for every time read and timer, the coordination session, the jobs service as a typed client,
 * the process runner, the outbox file, a logger, metrics). services/worker.service.ts only connects
 * it to the broker; the engine's tests drive it on a fake clock.
 *
 *   assignment-sync ──> fire-loop (crontab, one timer) ──> dispatcher (one fire: fire.ts stages)
 *          │                     │                            │
 *          └───── recovery (every kind of missed fire) <──────┴──> recorder (run ledger, outbox)
 */
import type { Clock, TimerHandle } from "../../core/clock";
import type { ConnectionState, Coordination, StateChange, WorkerRegistration } from "../../core/coordination";
import { formatCrontab } from "../../core/crontab";
import { notFound } from "../../core/errors";
import type { Run, RunTrigger } from "../../core/types";
import type { WorkerJob } from "../../core/views";
import { DEFAULT_BACKLOG_BOUNDS, maxInFlightFor, type BacklogBounds } from "../../core/policies";
import { Limiter } from "../limiter";
import { Backlog } from "./backlog";
import { AssignmentSync } from "./assignment-sync";
import { Dispatcher } from "./dispatcher";
import type { FireObserver } from "./fire";
import { FireLoop } from "./fire-loop";
import { NO_METRICS, type JobsClient, type Logger, type OutboxStore, type ProcessRunner, type WorkerMetrics } from "./ports";
import { RunRecorder, type WorkerStats } from "./recorder";
import { Recovery } from "./recovery";
import { PrefireLead } from "./prefire-lead";
import { Registration } from "./registration";
import { FireStages, type StageSummary } from "./stages";
import { WorkerState } from "./state";

export interface WorkerEngineOptions {
	nodeId: string;
	/** Lead of a prefired fire (0 = none); it grows when fires start late (prefire-lead.ts), up to PREFIRE_MAX_FACTOR times. */
	prefireMs: number;
	/** Processes run at once; further runs wait for a slot. */
	maxConcurrentRuns: number;
	/** Fires taken on at once, from their claim to their recorded result (backlog.ts); default maxInFlightFor(maxConcurrentRuns). */
	maxInFlight?: number;
	/** What waits when the worker is at capacity (default DEFAULT_BACKLOG_BOUNDS). */
	backlog?: BacklogBounds;
	clockSkewBoundMs: number;
	heartbeatMs: number;
	/** How long stop() lets running processes finish before it writes what is pending. */
	stopGraceMs: number;
	/** What the registration says of this worker besides its id and clock offset. */
	registration: Omit<WorkerRegistration, "id" | "clockOffsetMs" | "clockErrorMs" | "startedAt">;
}

export interface WorkerEngineDeps {
	clock: Clock;
	coordination: Coordination;
	jobs: JobsClient;
	runner: ProcessRunner;
	outbox: OutboxStore;
	logger: Logger;
	metrics?: WorkerMetrics;
	/** Sees every fire's change of stage (tests, debugging). */
	observe?: FireObserver;
}

/** The prefire lead grows up to this many times the configured one. */
export const PREFIRE_MAX_FACTOR = 4;

export interface WorkerStatus {
	node: string;
	jobs: number;
	assigned: number;
	running: number;
	processes: number;
	queued: number;
	/** Fires taken on (claiming, recording, running), and fires waiting for room (backlog.ts). */
	inFlight: number;
	backlog: number;
	pendingResults: number;
	fireStagesMs: StageSummary | null;
	pendingFires: number;
	/** The prefire lead in use, ms (the configured one, or more when fires started late). */
	prefireLeadMs: number;
	coordination: ConnectionState;
	registration: WorkerRegistration;
	stats: WorkerStats;
}

export class WorkerEngine {
	readonly state = new WorkerState();
	readonly recorder: RunRecorder;
	readonly recovery: Recovery;
	readonly dispatcher: Dispatcher;
	readonly loop: FireLoop;
	readonly sync: AssignmentSync;
	readonly registration: Registration;
	private readonly slots: Limiter;
	readonly backlog: Backlog;
	private readonly stages = new FireStages(1000);
	private readonly lead: PrefireLead;
	private readonly unwatch: (() => void)[] = [];

	constructor(
		private readonly opts: WorkerEngineOptions,
		private readonly deps: WorkerEngineDeps,
	) {
		const { clock, coordination, jobs, logger } = deps;
		const metrics = deps.metrics ?? NO_METRICS;
		const state = this.state;
		const fire = (job: WorkerJob, at: number, trigger: RunTrigger, attempt: number) => void this.dispatcher.fire(job, at, trigger, attempt);
		this.slots = new Limiter(opts.maxConcurrentRuns);
		this.backlog = new Backlog({
			clock,
			capacity: opts.maxInFlight ?? maxInFlightFor(opts.maxConcurrentRuns),
			bounds: opts.backlog ?? DEFAULT_BACKLOG_BOUNDS,
			current: (id, at) => (state.stopping ? null : state.mayFireAt(id, at)),
			missed: (job, at, reason) => void this.recorder.notRun(job, at, "schedule", "missed", reason),
		});
		const lead = (this.lead = new PrefireLead(opts.prefireMs, opts.prefireMs * PREFIRE_MAX_FACTOR));
		this.recorder = new RunRecorder({ clock, jobs, outbox: deps.outbox, logger, metrics, nodeId: opts.nodeId });
		this.recovery = new Recovery({ state, clock, jobs, coordination, recorder: this.recorder, logger, fire });
		this.loop = new FireLoop({ state, clock, coordination, recovery: this.recovery, metrics, lead: () => lead.current(), fire });
		this.dispatcher = new Dispatcher({
			state,
			clock,
			coordination,
			recorder: this.recorder,
			recovery: () => this.recovery,
			runner: deps.runner,
			slots: this.slots,
			backlog: this.backlog,
			stages: this.stages,
			metrics,
			logger,
			nodeId: opts.nodeId,
			lead,
			giveBack: (job, at, retryMs) => this.loop.giveBack(job, at, retryMs),
			observe: deps.observe,
		});
		this.sync = new AssignmentSync({
			state,
			clock,
			coordination,
			jobs,
			loop: this.loop,
			dispatcher: this.dispatcher,
			recovery: this.recovery,
			logger,
			nodeId: opts.nodeId,
		});
		this.registration = new Registration(
			{ clock, coordination, jobs, logger, clockSkewBoundMs: opts.clockSkewBoundMs, heartbeatMs: opts.heartbeatMs },
			{ ...opts.registration, id: opts.nodeId, startedAt: new Date(clock.now()).toISOString(), clockOffsetMs: null, clockErrorMs: null },
		);
	}

	/** The coordination session must be connected and the jobs service reachable. */
	async start(): Promise<void> {
		const { coordination, logger } = this.deps;
		const kept = this.recorder.loadOutbox();
		if (kept > 0) logger.warn(`${kept} run result(s) from before the restart wait to be recorded`);
		// Results kept from before a restart go first, so their runs are not taken for cut-off ones.
		await this.recorder.flushOutbox();
		await this.registration.register();
		this.unwatch.push(
			coordination.watchAssignments(this.opts.nodeId, (ids) => void this.sync.reconcile(ids).catch((err) => logger.error("Reconcile failed:", err))),
		);
		this.unwatch.push(coordination.onStateChange((change) => this.onConnection(change)));
		await this.sync.reconcile();
		this.registration.startHeartbeat();
	}

	/**
	 * Suspended or expired: no claims can be taken (and after an expiry ours are gone), so stop
	 * firing. Back: run what fell due meanwhile; after a new session also re-register with a fresh
	 * clock offset and reconcile with the assignment, which may have changed while we were gone.
	 */
	private onConnection(change: StateChange): void {
		const { logger } = this.deps;
		if (change.state !== "connected") {
			this.loop.arm();
			return;
		}
		this.loop.resume();
		if (!change.newSession) return;
		void this.registration
			.register()
			.catch((err) => logger.warn("Re-registration after a new session failed (the coordination re-created the old one):", (err as Error).message))
			.then(() => this.sync.reconcile())
			.catch((err) => logger.error("Reconcile after a new session failed:", err));
	}

	/**
	 * Stop in order: stop firing, let the running processes finish (they hold claims; at most
	 * stopGraceMs), write the pending results, stop the runners. The caller closes the connections
	 * (coordination, database) after this.
	 */
	async stop(): Promise<void> {
		const { clock } = this.deps;
		this.state.stopping = true;
		this.registration.stop();
		this.loop.disarm();
		this.backlog.stop();
		this.recorder.stop();
		this.recovery.stop();
		for (const u of this.unwatch.splice(0)) u();
		const all: Promise<void>[] = [];
		for (const set of this.state.active.values()) for (const f of set) all.push(f.done.catch(() => undefined));
		let grace: TimerHandle | null = null;
		// The fires that ran (within the grace), and the records of those that did not (the backlog's,
		// recorded missed just now): the jobs service is still there (app/node.ts stops it after us).
		await Promise.race([Promise.all([...all, this.recorder.settled()]), new Promise<void>((r) => (grace = clock.setTimeout(r, this.opts.stopGraceMs)))]);
		if (grace) clock.clearTimeout(grace);
		await this.recorder.flushOutbox().catch(() => undefined);
		await this.deps.runner.close();
	}

	/** Run a job now (POST /jobs/{id}/run): answers the run as started. */
	async runNow(jobId: string): Promise<Run | null> {
		const [job] = await this.deps.jobs.byIds([jobId]);
		if (!job || job.deleted) throw notFound("Job", jobId);
		return this.dispatcher.fire(job, this.deps.clock.now(), "manual", 1);
	}

	jobChanged(id: string): Promise<void> {
		return this.sync.jobChanged(id);
	}

	/** This worker's crontab in crontab(5) syntax. */
	crontab(): string {
		return formatCrontab(
			this.loop.crontab.entries().map((e) => {
				const j = this.state.jobs.get(e.jobId);
				return {
					id: e.jobId,
					schedule: j?.schedule ?? "?",
					timezone: j?.timezone ?? "UTC",
					nextAt: e.at,
					command: j ? (j.type === "command" ? j.executable : `${j.type} ${j.executable}`) : "?",
				};
			}),
		);
	}

	status(): WorkerStatus {
		return {
			node: this.opts.nodeId,
			jobs: this.loop.crontab.size,
			assigned: this.state.assigned.size,
			running: this.state.activeCount(),
			processes: this.slots.running,
			queued: this.slots.queued,
			inFlight: this.backlog.inFlight,
			backlog: this.backlog.waiting,
			pendingResults: this.recorder.pendingResults,
			fireStagesMs: this.stages.summary(),
			pendingFires: this.recovery.pendingFires,
			prefireLeadMs: this.lead.current(),
			coordination: this.deps.coordination.state(),
			registration: this.registration.info,
			stats: this.recorder.stats,
		};
	}

	health(): {
		coordination: { ok: boolean; state: ConnectionState };
		workerClock: { ok: boolean; offsetMs: number | null; errorMs: number | null; boundMs: number };
	} {
		const state = this.deps.coordination.state();
		const { clockOffsetMs, clockErrorMs } = this.registration.info;
		return {
			coordination: { ok: state === "connected", state },
			workerClock: { ok: !this.registration.skewed(), offsetMs: clockOffsetMs, errorMs: clockErrorMs, boundMs: this.opts.clockSkewBoundMs },
		};
	}
}
