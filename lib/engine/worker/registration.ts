/**
 * The worker's registration in the coordination service (an ephemeral node: it vanishes with the
 * session) and its clock offset against the database server's clock, measured at registration and
 * on every heartbeat as NTP does (several samples, the one with the smallest round trip, half the
 * round trip compensated and reported as the error bound: lib/core/policies.ts clockOffsetFrom). A
 * worker whose offset exceeds the bound by more than its error bound gets no jobs (the manager
 * excludes it).
 */
import type { Clock, TimerHandle } from "../../core/clock";
import type { Coordination, WorkerRegistration } from "../../core/coordination";
import { clockOffsetFrom, clockSkewed, type ClockOffset, type ClockSample } from "../../core/policies";
import type { JobsClient, Logger } from "./ports";

/** Samples per measurement. */
export const CLOCK_SAMPLES = 5;

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

	/** This worker's clock minus the database's, with its error bound; null when it cannot be measured now. */
	async measureClockOffset(): Promise<ClockOffset | null> {
		const { clock } = this.deps;
		const samples: ClockSample[] = [];
		let failure: unknown = null;
		for (let i = 0; i < CLOCK_SAMPLES; i++) {
			try {
				const sentAt = clock.now();
				const serverTime = await this.deps.jobs.dbTime();
				samples.push({ sentAt, serverTime, receivedAt: clock.now() });
			} catch (err) {
				failure = err;
				break; // the database is unreachable: no use asking again now
			}
		}
		const offset = clockOffsetFrom(samples);
		if (!offset) this.deps.logger.warn("Cannot measure the clock offset against the database:", (failure as Error | null)?.message);
		return offset;
	}

	async register(): Promise<void> {
		const measured = await this.measureClockOffset();
		this.info = { ...this.info, clockOffsetMs: measured?.offsetMs ?? null, clockErrorMs: measured?.errorMs ?? null };
		if (this.skewed()) {
			this.deps.logger.error(
				`This worker's clock is ${this.info.clockOffsetMs} ms off the database's (bound ${this.deps.clockSkewBoundMs} ms): it gets no jobs until fixed (measured within ±${this.info.clockErrorMs} ms)`,
			);
		}
		await this.deps.coordination.registerWorker(this.info);
	}

	/** Measure again every heartbeatMs; publish a changed offset. */
	startHeartbeat(): void {
		const beat = async () => {
			const measured = await this.measureClockOffset();
			// Unmeasurable now (database unreachable): keep the last known offset rather than publishing
			// null, which the manager would take for "fine".
			if (!measured || (measured.offsetMs === this.info.clockOffsetMs && measured.errorMs === this.info.clockErrorMs)) return;
			this.info = { ...this.info, clockOffsetMs: measured.offsetMs, clockErrorMs: measured.errorMs };
			if (this.skewed())
				this.deps.logger.error(`Clock offset ${measured.offsetMs} ms (±${measured.errorMs} ms) exceeds the bound of ${this.deps.clockSkewBoundMs} ms`);
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

	/** Whether this worker's clock is out of bounds (clockSkewed: beyond the bound by more than its error). */
	skewed(): boolean {
		return clockSkewed(this.info.clockOffsetMs, this.info.clockErrorMs, this.deps.clockSkewBoundMs);
	}
}
