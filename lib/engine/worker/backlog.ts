/**
 * Admission: how much work the worker takes on at once, and what waits when it is at capacity.
 *
 * A fire taken on at its instant is admitted (gets a ticket) before its claim and keeps the ticket
 * until its process has ended and its result is recorded. At most `capacity` fires hold one: the
 * process slots plus a few fires ahead of them (claiming, recording, waiting for a slot a moment),
 * enough to keep the slots busy and no more. (A prefired fire takes a process slot ahead of its
 * instant instead, and only while the worker is calm: the slots bound those.) Without that bound an overload claims and records every fire as
 * `running`, queues them all behind the slots and the worker spends itself on fires it cannot run
 * (congestion collapse: throughput falls as the offered load grows). With it, the work in flight
 * stays what the machine can do, the event loop keeps time for the API, and throughput plateaus.
 *
 * A fire that finds no room waits in the backlog, in order (a job whose newer fire takes the place
 * of its older one keeps that place: every job gets its turn), as the job's misfire policy allows
 * (lib/core/policies.ts backlogDecision): what the policy or the bounds refuse, what passes its
 * startingDeadline while it waits, and a `skip` job's fire later than the misfire threshold are
 * recorded `missed` with the reason, as is a waiting fire whose job stops being runnable here
 * meanwhile. Nothing waits without a bound, nothing is dropped silently.
 *
 * Manual runs and retries are admitted at once (they are few, follow a fire that was admitted,
 * and a caller waits for the manual one); they count against the capacity all the same.
 */
import type { Clock, TimerHandle } from "../../core/clock";
import { backlogDecision, tooLateToStart, type BacklogBounds } from "../../core/policies";
import type { WorkerJob } from "../../core/views";

/**
 * How long after a fire last had to wait the worker counts as loaded: no prefire meanwhile (a
 * prefired fire holds its room for the whole lead; under load that room is worth more to a fire
 * due now, and prefire, which spreads a burst, adds nothing when the worker is at capacity anyway).
 */
export const CALM_AFTER_MS = 10_000;

/** Given back once the fire no longer needs its room (its result recorded, or it did not run). */
export type Ticket = () => void;

/** Why a waiting fire was not admitted. */
export type NotAdmitted = { missed: string } | { dropped: true };

export interface BacklogDeps {
	clock: Clock;
	/** Fires holding a ticket at once, at most (manual runs and retries aside). */
	capacity: number;
	bounds: BacklogBounds;
	/** The job as it is now if it may still fire at `at` (null: no longer ours, or no longer due then). */
	current(jobId: string, at: number): WorkerJob | null;
	/** A fire that will not run: recorded missed with the reason. */
	missed(job: WorkerJob, at: number, reason: string): void;
}

/** Room for the fire (the job as it is when admitted), or why it will not run. */
export type Admission = { ticket: Ticket; job: WorkerJob } | NotAdmitted;

interface Waiting {
	job: WorkerJob;
	at: number;
	resolve: (outcome: Admission) => void;
	/** Left the queue (admitted, missed, dropped). */
	gone: boolean;
}

/**
 * A fire whose time came while it waited and whose job then stopped being runnable here: it did
 * not run, and it is recorded (one row per fire time; the unique key keeps the job's new worker,
 * if it moved, from running it as well).
 */
const GONE = "the job was suspended, deleted, rescheduled or moved to another worker while this fire waited for room";

export class Backlog {
	private held = 0;
	private queue: Waiting[] = [];
	private head = 0;
	private size = 0;
	private readonly byJob = new Map<string, Waiting[]>();
	private sweepTimer: TimerHandle | null = null;
	private stopped = false;
	/** Fires this backlog recorded missed (worker.status). */
	missed = 0;
	/** When a fire last found no room. */
	private lastFullAt = Number.NEGATIVE_INFINITY;

	constructor(private readonly deps: BacklogDeps) {
		if (!(deps.capacity >= 1)) throw new Error("capacity must be at least 1");
	}

	/** Fires holding a ticket. */
	get inFlight(): number {
		return this.held;
	}

	/** Fires waiting for room. */
	get waiting(): number {
		return this.size;
	}

	/** Room now, with nobody waiting ahead. */
	hasRoom(): boolean {
		return this.held < this.deps.capacity && this.size === 0;
	}

	/** Room now, and no fire had to wait for CALM_AFTER_MS: a fire may take its room ahead of its instant (prefire). */
	calm(): boolean {
		return this.hasRoom() && this.deps.clock.now() - this.lastFullAt >= CALM_AFTER_MS;
	}

	/** A ticket now, room or not (manual runs, retries). */
	enterNow(): Ticket {
		return this.issue();
	}

	/**
	 * A fire due now: a ticket at once when there is room, else it waits as the job's misfire policy
	 * allows. Answers the ticket (with the job as it is when admitted), or why it will not run; a
	 * fire refused or found too late is recorded missed here.
	 */
	enter(job: WorkerJob, at: number): Promise<Admission> | Admission {
		const { clock, bounds } = this.deps;
		if (this.stopped) return { dropped: true };
		const late = tooLateToStart(job, at, clock.now(), { thresholdMs: bounds.thresholdMs, waited: false });
		if (late) return this.miss(job, at, late);
		if (this.hasRoom()) return { ticket: this.issue(), job };
		this.lastFullAt = clock.now();
		const mine = this.byJob.get(job.id) ?? [];
		const d = backlogDecision(job.misfire, mine.length, this.size, bounds);
		if (d.action === "refuse") return this.miss(job, at, d.reason);
		return new Promise<Admission>((resolve) => {
			if (d.action === "replace") {
				// The newer fire takes the older one's place in the queue (and so its turn).
				const w = mine[0];
				const older = { job: w.job, at: w.at, resolve: w.resolve };
				Object.assign(w, { job, at, resolve });
				older.resolve(this.miss(older.job, older.at, d.reason));
				return;
			}
			const w: Waiting = { job, at, resolve, gone: false };
			this.queue.push(w);
			this.size++;
			mine.push(w);
			this.byJob.set(job.id, mine);
			this.armSweep();
		});
	}

	/** No more admissions: every waiting fire is recorded missed (it never started). */
	stop(): void {
		this.stopped = true;
		if (this.sweepTimer) this.deps.clock.clearTimeout(this.sweepTimer);
		this.sweepTimer = null;
		for (let w = this.shift(); w; w = this.shift()) w.resolve(this.miss(w.job, w.at, "the worker stopped before it could start"));
	}

	private issue(): Ticket {
		this.held++;
		let given = false;
		return () => {
			if (given) return;
			given = true;
			this.held--;
			this.drain();
		};
	}

	/** Room again: admit from the front, oldest first. */
	private drain(): void {
		const { clock, bounds } = this.deps;
		while (!this.stopped && this.held < this.deps.capacity) {
			const w = this.shift();
			if (!w) return;
			const job = this.deps.current(w.job.id, w.at);
			if (!job) {
				w.resolve(this.miss(w.job, w.at, GONE));
				continue;
			}
			const late = tooLateToStart(job, w.at, clock.now(), { thresholdMs: bounds.thresholdMs, waited: true });
			if (late) {
				w.resolve(this.miss(job, w.at, late));
				continue;
			}
			w.resolve({ ticket: this.issue(), job });
		}
	}

	private shift(): Waiting | null {
		while (this.head < this.queue.length) {
			const w = this.queue[this.head++];
			if (w.gone) continue;
			this.unlist(w);
			this.compact();
			return w;
		}
		return null;
	}

	private unlist(w: Waiting): void {
		w.gone = true;
		this.size--;
		const mine = this.byJob.get(w.job.id);
		if (!mine) return;
		const i = mine.indexOf(w);
		if (i >= 0) mine.splice(i, 1);
		if (mine.length === 0) this.byJob.delete(w.job.id);
	}

	private compact(): void {
		if (this.head > 1024 && this.head * 2 > this.queue.length) {
			this.queue = this.queue.slice(this.head).filter((w) => !w.gone);
			this.head = 0;
		}
	}

	/**
	 * While fires wait: those past their deadline (or a skip job's threshold) are recorded missed
	 * now, not when their turn comes, and those no longer ours leave.
	 */
	private armSweep(): void {
		if (this.sweepTimer || this.stopped) return;
		const every = Math.max(100, Math.floor(this.deps.bounds.thresholdMs / 2));
		this.sweepTimer = this.deps.clock.setTimeout(() => {
			this.sweepTimer = null;
			this.sweep();
			if (this.size > 0) this.armSweep();
		}, every);
	}

	private sweep(): void {
		const now = this.deps.clock.now();
		for (let i = this.head; i < this.queue.length; i++) {
			const w = this.queue[i];
			if (w.gone) continue;
			const job = this.deps.current(w.job.id, w.at);
			const late = job && tooLateToStart(job, w.at, now, { thresholdMs: this.deps.bounds.thresholdMs, waited: true });
			if (job && !late) continue;
			this.unlist(w);
			w.resolve(this.miss(job ?? w.job, w.at, late || GONE));
		}
		this.queue = this.queue.slice(this.head).filter((w) => !w.gone);
		this.head = 0;
	}

	private miss(job: WorkerJob, at: number, reason: string): NotAdmitted {
		this.missed++;
		this.deps.missed(job, at, reason);
		return { missed: reason };
	}
}
