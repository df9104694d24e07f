/**
 * The worker's registration in the coordination service (an ephemeral node: it vanishes with the
 * session) and its clock offset against the database server's clock, measured at registration and
 * on every heartbeat. A worker whose offset exceeds the bound gets no jobs (the manager excludes it).
 */
import type { Clock, TimerHandle } from "../../core/clock";
import type { Coordination, WorkerRegistration } from "../../core/coordination";
import type { JobsClient, Logger } from "./ports";

export interface RegistrationDeps {
	clock: Clock;
	coordination: Coordination;
	jobs: JobsClient;
	logger: Logger;
	clockSkewBoundMs: number;
	heartbeatMs: number;
}

export class Registration {
	private heartbeat: TimerHandle | null = null;
	private stopped = false;

	constructor(
		private readonly deps: RegistrationDeps,
		public info: WorkerRegistration,
	) {}

	/** This worker's clock minus the database's (ms), or null when it cannot be measured now. */
	async measureClockOffset(): Promise<number | null> {
		const { clock } = this.deps;
		try {
			const t0 = clock.now();
			const db = await this.deps.jobs.dbTime();
			const t1 = clock.now();
			return Math.round((t0 + t1) / 2 - db);
		} catch (err) {
			this.deps.logger.warn("Cannot measure the clock offset against the database:", (err as Error).message);
			return null;
		}
	}

	async register(): Promise<void> {
		const offset = await this.measureClockOffset();
		this.info = { ...this.info, clockOffsetMs: offset };
		if (this.skewed(offset)) {
			this.deps.logger.error(`This worker's clock is ${offset} ms off the database's (bound ${this.deps.clockSkewBoundMs} ms): it gets no jobs until fixed`);
		}
		await this.deps.coordination.registerWorker(this.info);
	}

	/** Measure again every heartbeatMs; publish a changed offset. */
	startHeartbeat(): void {
		const beat = async () => {
			const offset = await this.measureClockOffset();
			// Unmeasurable now (database unreachable): keep the last known offset rather than publishing
			// null, which the manager would take for "fine".
			if (offset === null || offset === this.info.clockOffsetMs) return;
			this.info = { ...this.info, clockOffsetMs: offset };
			if (this.skewed(offset)) this.deps.logger.error(`Clock offset ${offset} ms exceeds the bound of ${this.deps.clockSkewBoundMs} ms`);
			await this.deps.coordination.updateWorker(this.info).catch(() => undefined);
		};
		const next = () => {
			if (this.stopped) return;
			this.heartbeat = this.deps.clock.setTimeout(() => void beat().finally(next), this.deps.heartbeatMs);
		};
		next();
	}

	stop(): void {
		this.stopped = true;
		if (this.heartbeat) this.deps.clock.clearTimeout(this.heartbeat);
		this.heartbeat = null;
	}

	/** Whether a measured offset is out of bounds (null: unknown, taken for fine). */
	skewed(offset = this.info.clockOffsetMs): boolean {
		return offset !== null && Math.abs(offset) > this.deps.clockSkewBoundMs;
	}
}
