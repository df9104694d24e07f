/**
 * One fire of a job, (job, scheduledAt, attempt), and the stages it goes through: the state machine
 * of the worker, written down in one place. The dispatcher (dispatcher.ts) drives it; every change
 * of stage goes through `Fire.to`, which refuses a transition the table below does not allow.
 *
 *   due ──> [waiting] ──> [queued] ──> claiming ──> recording ──> held | running ──> finishing ──> ended
 *   ([ ] = only some fires; every stage before finishing may also end the fire at once)
 *
 * - due: the crontab (or a recovery, a retry, a manual run) handed the fire over.
 * - waiting: handed over ahead of its instant but not prefired: it waits for the instant.
 * - queued: the worker is at capacity; the fire waits in the backlog (backlog.ts) for room, as its
 *   job's misfire policy allows, or ends missed.
 * - claiming: taking the coordination lock on (job, scheduledAt); one worker wins.
 * - recording: the claim is ours; writing the run's start (its unique key makes a fire run once).
 * - held: prefired: the process is spawned and held until the instant; a change of the job rebuilds
 *   it (held again) or cancels it.
 * - running: the process runs.
 * - finishing: the result is being recorded (or kept in the outbox while the database is down).
 * - ended: with the outcome below.
 */
import type { RunStatus, RunTrigger } from "../../core/types";
import type { WorkerJob } from "../../core/views";

export type FireOutcome =
	/** No longer ours, or no longer due at that instant, when its turn came. */
	| "dropped"
	/** The worker was at capacity and the misfire policy (or the startingDeadline) refused it: recorded missed. */
	| "missed"
	/** The previous run is still going (concurrency forbid): recorded skipped. */
	| "skipped"
	/** Another worker holds the claim. */
	| "claim-lost"
	/** The claim failed because the coordination connection dropped: given back to the crontab. */
	| "given-back"
	/** The claim failed otherwise (nothing to give back: a retry, a manual run). */
	| "claim-failed"
	/** The start could not be recorded (database down): kept, then handled by the misfire policy. */
	| "unstarted"
	/** The fire already has a run (its unique key): it ran earlier. */
	| "duplicate"
	/** It ran; its result is recorded (or waits in the outbox). */
	| "finished"
	/** Held and cancelled by a change of the job before its instant: recorded skipped, never ran. */
	| "cancelled"
	/** The worker stopped before the process started: its row stays running for the recovery of cut-off runs. */
	| "abandoned";

export type FireStage =
	| { stage: "due" }
	| { stage: "waiting"; until: number }
	| { stage: "queued" }
	| { stage: "claiming" }
	| { stage: "recording" }
	| { stage: "held"; runId: string; releaseAt: number }
	| { stage: "running"; runId: string }
	| { stage: "finishing"; runId: string; status: RunStatus }
	| { stage: "ended"; outcome: FireOutcome };

export type StageName = FireStage["stage"];

export const TRANSITIONS: Readonly<Record<StageName, readonly StageName[]>> = {
	due: ["waiting", "queued", "claiming", "ended"],
	waiting: ["queued", "claiming", "ended"],
	queued: ["claiming", "ended"],
	claiming: ["recording", "ended"],
	recording: ["held", "running", "ended"],
	held: ["held", "finishing", "ended"],
	running: ["finishing", "ended"],
	finishing: ["ended"],
	ended: [],
};

/** Why a held (prefired, not yet released) process was cancelled by a reload of its job. */
export class HeldJobChanged extends Error {
	constructor() {
		super("the job changed before this fire");
	}
}

export type FireObserver = (fire: Fire, from: FireStage) => void;

export class Fire {
	state: FireStage = { stage: "due" };
	/** The job version the fire works from (replaced when a held fire is rebuilt). */
	job: WorkerJob;
	/** Cancels the process (a replace, a reload of a held fire, the worker stopping). */
	controller = new AbortController();
	/** Set once the run's start is recorded. */
	runId: string | null = null;
	/** Resolves when the fire has ended. */
	done: Promise<void> = Promise.resolve();

	constructor(
		job: WorkerJob,
		readonly scheduledAt: number,
		readonly trigger: RunTrigger,
		readonly attempt: number,
		private readonly observe: FireObserver | null = null,
	) {
		this.job = job;
	}

	get jobId(): string {
		return this.job.id;
	}

	/** Move to the next stage; a transition the table does not allow is a bug, and throws. */
	to(next: FireStage): void {
		const from = this.state;
		if (!TRANSITIONS[from.stage].includes(next.stage)) throw new Error(`fire ${this.jobId}@${this.scheduledAt}: no transition ${from.stage} -> ${next.stage}`);
		this.state = next;
		this.observe?.(this, from);
	}

	end(outcome: FireOutcome): null {
		this.to({ stage: "ended", outcome });
		return null;
	}

	/** Prefired and its instant not reached: its process waits, the job's code has not run. */
	heldAt(now: number): boolean {
		return this.state.stage === "held" && this.state.releaseAt > now;
	}
}
