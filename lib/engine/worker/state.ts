/**
 * What the worker knows: its assigned job ids, the jobs as last loaded, the fires in flight per job,
 * and the latest fire time handed to the dispatcher per job. Shared by the parts of the engine; the
 * one question they all ask ("is this job still ours, and may it fire?") is answered here only.
 */
import { nextFireTimes, loadTimeZone, parseStoredSchedule, type ParsedSchedule, type TimeZone } from "../../core/schedule";
import type { WorkerJob } from "../../core/views";
import type { Fire } from "./fire";

/** A job that may fire: not deleted, not suspended, not finished. */
export function schedulable(job: WorkerJob): boolean {
	return !job.deleted && !job.suspended && job.status !== "finished";
}

export class WorkerState {
	readonly jobs = new Map<string, WorkerJob>();
	readonly assigned = new Set<string>();
	/** Fires past their claim, per job (prefired and held, or running). */
	readonly active = new Map<string, Set<Fire>>();
	/** Per job, the latest fire time the crontab handed over (possibly ahead of its instant). */
	readonly handed = new Map<string, number>();
	stopping = false;
	/** Parsed schedule and zone per distinct (schedule, time zone): parsing is the costly part of next-fire math. */
	private readonly schedules = new Map<string, { schedule: ParsedSchedule; tz: TimeZone }>();

	/** The job as loaded, when it is assigned here and may fire; null otherwise. */
	mayFire(jobId: string): WorkerJob | null {
		const job = this.jobs.get(jobId);
		return job && this.assigned.has(jobId) && schedulable(job) ? job : null;
	}

	/** As mayFire, and its current schedule still has a fire at exactly `at`. */
	mayFireAt(jobId: string, at: number): WorkerJob | null {
		const job = this.mayFire(jobId);
		return job && this.firesAt(job, at) ? job : null;
	}

	scheduleOf(job: WorkerJob): { schedule: ParsedSchedule; tz: TimeZone } {
		const key = `${job.schedule}\u0000${job.timezone}`;
		let cached = this.schedules.get(key);
		if (!cached) {
			cached = { schedule: parseStoredSchedule(job.schedule), tz: loadTimeZone(job.timezone) };
			this.schedules.set(key, cached);
		}
		return cached;
	}

	/** Whether the job's schedule has a fire at exactly `at`. */
	firesAt(job: WorkerJob, at: number): boolean {
		const { schedule, tz } = this.scheduleOf(job);
		return nextFireTimes(schedule, tz, at - 1, 1)[0] === at;
	}

	activeOf(jobId: string): ReadonlySet<Fire> {
		return this.active.get(jobId) ?? EMPTY;
	}

	addActive(fire: Fire): void {
		let set = this.active.get(fire.jobId);
		if (!set) this.active.set(fire.jobId, (set = new Set()));
		set.add(fire);
	}

	removeActive(fire: Fire): void {
		const set = this.active.get(fire.jobId);
		set?.delete(fire);
		if (set && set.size === 0) this.active.delete(fire.jobId);
	}

	activeCount(): number {
		let n = 0;
		for (const s of this.active.values()) n += s.size;
		return n;
	}

	/** Forget a job that is no longer ours (its fires in flight keep their claims and run). */
	forget(jobId: string): void {
		this.assigned.delete(jobId);
		this.jobs.delete(jobId);
		this.handed.delete(jobId);
	}
}

const EMPTY: ReadonlySet<Fire> = new Set();
