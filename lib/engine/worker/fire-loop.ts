/**
 * The fire loop: the crontab (a heap of each job's next fire), ONE timer for its earliest entry,
 * and the next-fire math (lib/core/schedule.ts). When the timer goes off, every entry due is handed
 * to the dispatcher and the job's next fire goes back in the heap.
 *
 * A fire needs a claim, which needs the coordination session: while it is lost the loop stays idle
 * and the fires falling due stay in the heap; resume() hands them over when the connection is back
 * (several missed fires of one job go through its misfire policy: recovery.ts).
 */
import type { Clock, TimerHandle } from "../../core/clock";
import type { Coordination } from "../../core/coordination";
import { Crontab, type CrontabEntry } from "../../core/crontab";
import { DEFAULT_MAX_CATCH_UP, prefireLeadMs } from "../../core/policies";
import { fireTimesBetween, nextFireTimes } from "../../core/schedule";
import type { RunTrigger } from "../../core/types";
import type { WorkerJob } from "../../core/views";
import type { WorkerMetrics } from "./ports";
import type { Recovery } from "./recovery";
import { schedulable, type WorkerState } from "./state";

/** A fire given back after a failed claim is tried again after this, if the session is still up. */
export const GIVE_BACK_RETRY_MS = 100;
/** The longest single timer (a far fire is re-armed on the way). */
const MAX_TIMER_MS = 24 * 3600 * 1000;

export interface FireLoopDeps {
	state: WorkerState;
	clock: Clock;
	coordination: Coordination;
	recovery: Recovery;
	metrics: WorkerMetrics;
	/** The prefire lead in use (prefire-lead.ts). */
	lead(): number;
	fire(job: WorkerJob, at: number, trigger: RunTrigger, attempt: number): void;
}

/** A fire given back after a failed claim, tried again at `retryAt`. */
interface GivenBack {
	jobId: string;
	at: number;
	retryAt: number;
}

export class FireLoop {
	readonly crontab = new Crontab();
	private timer: TimerHandle | null = null;
	private timerAt: number | null = null;
	/**
	 * Fires given back, apart from the crontab: the crontab keeps each job's next regular fire, which
	 * must not wait for a given-back one (a fire blocked by a stale claim for seconds held the job's
	 * later fires back with it).
	 */
	private givenBack: GivenBack[] = [];
	private retryTimer: TimerHandle | null = null;

	constructor(private readonly deps: FireLoopDeps) {}

	/** Put the job's first fire after `after` in the crontab (or take it out when it has none). */
	schedule(job: WorkerJob, after: number): void {
		if (!job.recurring && job.lastScheduledAt !== null) {
			this.crontab.delete(job.id); // a one-shot job fires once
			return;
		}
		const { schedule, tz } = this.deps.state.scheduleOf(job);
		const [next] = nextFireTimes(schedule, tz, after, 1);
		if (next === undefined) this.crontab.delete(job.id);
		// Handed over a lead ahead, but not before `after` (the fire before it, when there is one): a
		// job has at most one fire parked at a time, so a lead longer than a job's period takes no
		// second process slot per job (cluster-lag: a lead of 1.01 s on per-second jobs parked two
		// fires per job, past the prefire bound of half the slots, and the rest started late).
		else this.crontab.set(job.id, next, prefireLeadMs(job, this.deps.lead()), after);
	}

	/**
	 * A (re)loaded job: into the crontab when it may fire, out of it otherwise. With `catchUp` (newly
	 * assigned), the fires missed meanwhile go through recovery first, up to `now - 1`; the crontab
	 * takes it from `now`. A reload keeps an entry that is due but whose timer has not gone off yet,
	 * and a fire already handed over ahead of its instant is not scheduled twice.
	 */
	async load(job: WorkerJob, catchUp: boolean, now: number): Promise<void> {
		if (!schedulable(job)) {
			this.crontab.delete(job.id);
			return;
		}
		const prev = this.crontab.nextAt(job.id);
		if (catchUp) await this.deps.recovery.catchUp(job, now);
		const from = catchUp ? now - 1 : Math.min(now, prev !== null ? prev - 1 : now);
		this.schedule(job, Math.max(from, job.lastScheduledAt ?? 0));
		const handed = this.deps.state.handed.get(job.id);
		if (handed !== undefined && this.crontab.nextAt(job.id) === handed) this.schedule(job, handed);
	}

	drop(jobId: string): void {
		this.crontab.delete(jobId);
	}

	/**
	 * The claim of a fire failed because the connection dropped (or a stale claim of ours blocks it):
	 * the fire is tried again after `retryMs` while the session is up, or by resume() on reconnect.
	 * The job's later fires go on from the crontab meanwhile.
	 */
	giveBack(job: WorkerJob, at: number, retryMs = GIVE_BACK_RETRY_MS): void {
		if (!this.deps.state.mayFire(job.id)) return;
		// Not again at once: the session may not have noticed the drop yet (see the dispatcher).
		const retryAt = this.deps.clock.now() + retryMs;
		const known = this.givenBack.find((g) => g.jobId === job.id && g.at === at);
		if (known) known.retryAt = retryAt;
		else this.givenBack.push({ jobId: job.id, at, retryAt });
		this.armRetries();
	}

	/** The given-back fires due by now, handed to the dispatcher (the session is up). */
	private retryGivenBack(): void {
		this.retryTimer = null;
		const now = this.deps.clock.now();
		const due = this.givenBack.filter((g) => g.retryAt <= now);
		this.givenBack = this.givenBack.filter((g) => g.retryAt > now);
		for (const g of due) {
			const job = this.deps.state.mayFireAt(g.jobId, g.at);
			if (job) this.deps.fire(job, g.at, "schedule", 1);
		}
		this.armRetries();
	}

	private armRetries(): void {
		const { clock, state } = this.deps;
		if (this.retryTimer) clock.clearTimeout(this.retryTimer);
		this.retryTimer = null;
		// While the session is lost no claim can be taken: resume() hands them over on reconnect.
		if (state.stopping || this.givenBack.length === 0 || this.deps.coordination.state() !== "connected") return;
		const next = Math.min(...this.givenBack.map((g) => g.retryAt));
		this.retryTimer = clock.setTimeout(() => this.retryGivenBack(), Math.max(0, next - clock.now()));
	}

	/** One timer for the earliest entry of the crontab (none while the coordination session is lost). */
	arm(): void {
		const { clock, state } = this.deps;
		this.deps.metrics.crontabSize(this.crontab.size);
		if (state.stopping) return;
		if (this.deps.coordination.state() !== "connected") {
			// A fire needs a claim, which needs the session: fires falling due now would be lost.
			// They stay in the crontab; resume() handles them when the connection is back.
			this.clearTimer();
			this.armRetries();
			return;
		}
		const next = this.crontab.peek();
		if (next && this.timerAt === next.at && this.timer) return;
		this.clearTimer();
		if (!next) return;
		// `due`: the fire time, or earlier for a job that is prefired (prefireLeadMs).
		this.timerAt = next.at;
		this.timer = clock.setTimeout(() => this.onTimer(), Math.min(next.due - clock.now(), MAX_TIMER_MS));
	}

	/** No more timers (the worker stops; tests that want only what is in flight). */
	disarm(): void {
		this.clearTimer();
		if (this.retryTimer) this.deps.clock.clearTimeout(this.retryTimer);
		this.retryTimer = null;
	}

	private clearTimer(): void {
		if (this.timer) this.deps.clock.clearTimeout(this.timer);
		this.timer = null;
		this.timerAt = null;
	}

	/** The timer went off: hand over every entry due. */
	private onTimer(): void {
		this.timer = null;
		this.timerAt = null;
		if (this.deps.state.stopping) return;
		for (const entry of this.crontab.popDue(this.deps.clock.now())) this.handOver(entry, false);
		this.arm();
	}

	/**
	 * The connection is back (same or new session): the fires that fell due meanwhile run late, by
	 * the misfire policy when a job missed more than one (recovery.ts "coordination-down").
	 */
	resume(): void {
		if (this.deps.state.stopping) return;
		for (const entry of this.crontab.popDue(this.deps.clock.now())) this.handOver(entry, true);
		// The fires given back during the outage: each tried once more now.
		for (const g of this.givenBack) g.retryAt = Math.min(g.retryAt, this.deps.clock.now());
		this.arm();
		this.retryGivenBack();
	}

	private handOver(entry: CrontabEntry, afterOutage: boolean): void {
		const { state } = this.deps;
		const job = state.jobs.get(entry.jobId);
		if (!job || !schedulable(job)) return;
		let due = [entry.at];
		if (afterOutage && job.recurring) {
			const { schedule, tz } = state.scheduleOf(job);
			const between = fireTimesBetween(schedule, tz, entry.at - 1, this.deps.clock.now(), DEFAULT_MAX_CATCH_UP);
			// Empty for an entry handed over ahead of its instant (prefire lead): that one fire.
			if (between.length > 0) due = between;
		}
		const last = due[due.length - 1];
		state.handed.set(job.id, last);
		// A one-shot job's fire is its only one: marked before scheduling, so that no second fire is
		// scheduled while the first runs (the job's status changes only when the run has finished).
		if (!job.recurring) job.lastScheduledAt = last;
		this.schedule(job, last);
		if (afterOutage) this.deps.recovery.afterOutage(job, due);
		else this.deps.fire(job, entry.at, "schedule", 1);
	}
}
