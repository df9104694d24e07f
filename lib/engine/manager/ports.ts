/**
 * What the manager engine needs from outside, as interfaces: the service shell
 * (services/manager.service.ts) implements them on the Moleculer broker, the unit tests with fakes.
 * Nothing here imports Moleculer.
 */
import type { Clock } from "../../core/clock";
import type { Coordination } from "../../core/coordination";

/** A job's worker for the jobs' display column (`worker`): null when it runs nowhere. */
export interface WorkerOfJob {
	jobId: string;
	to: string | null;
}

/** What the manager asks the jobs service (jobs.schedulable, jobs.setWorkers). */
export interface JobsClient {
	/** Ids of the schedulable jobs, ascending, after `after` (exclusive), at most `limit`. */
	schedulable(page: { after?: string; limit: number }): Promise<string[]>;
	/** Record each job's worker (display only). */
	setWorkers(moves: WorkerOfJob[]): Promise<unknown>;
}

export interface Logger {
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
	error(...args: unknown[]): void;
}

/** Where the manager's metrics go (Prometheus through the broker in the service). */
export interface ManagerMetrics {
	/** This manager became leader. */
	leaderChanged(): void;
	/** `count` jobs moved from one worker to another. */
	reassigned(count: number): void;
	/** The leader gauge: true while this manager leads. */
	leading(isLeader: boolean): void;
}

/** The engine's timings and sizes; the defaults are the production values. */
export interface ManagerTuning {
	/** Job ids per jobs.schedulable call. */
	pageSize: number;
	/** The cached schedulable job ids are read again when older than this, even without a change event. */
	jobIdsMaxAgeMs: number;
	/** How long after a failover's assignment the dead workers' records are removed. */
	tidyDelayMs: number;
	/** The wait before a failed reconcile or display write is tried again. */
	retryMs: number;
}

export interface ManagerEngineDeps {
	/** This manager's candidate id in the election (the Moleculer node id). */
	selfId: string;
	clock: Clock;
	coordination: Coordination;
	jobs: JobsClient;
	logger: Logger;
	metrics?: ManagerMetrics;
	/** A worker whose clock is off the database's by more than this gets no jobs. */
	clockSkewBoundMs: number;
	tuning?: Partial<ManagerTuning>;
}
