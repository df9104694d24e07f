/** Row <-> API shapes. Pure. Times are stored as epoch milliseconds and answered as ISO strings. */
import { nextFireTime } from "./schedule";
import type { Job, JobSettings, JobStatus, Run, RunStatus, RunSummary, RunTrigger } from "./types";

export const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(Number(ms)).toISOString());

/** The jobs table's row: the settings (env as JSON text), times as epoch ms. */
export interface JobRow extends Omit<JobSettings, "env"> {
	id: string;
	status: JobStatus;
	digest: string | null;
	size: number | null;
	env: string;
	owner: string;
	worker: string | null;
	/** Catch-up baseline set when the schedule changes (fires before it were never missed). */
	lastScheduledAt: number | null;
	lastRun: string | null;
	deletedAt: number | null;
	createdAt: number;
	updatedAt: number;
}

export interface RunRow {
	id: string;
	jobId: string;
	scheduledAt: number;
	attempt: number;
	trigger: RunTrigger;
	status: RunStatus;
	startedAt: number | null;
	finishedAt: number | null;
	exitCode: number | null;
	signal: string | null;
	output: string;
	node: string | null;
	error: string | null;
}

function parseJson<T>(raw: string | null, fallback: T): T {
	if (!raw) return fallback;
	try {
		return JSON.parse(raw) as T;
	} catch {
		return fallback;
	}
}

/** The next fire time is derived, not stored: from the schedule, at read time. */
export function nextRunAt(
	row: Pick<JobRow, "status" | "suspended" | "deletedAt" | "recurring" | "lastRun" | "schedule" | "timezone" | "lastScheduledAt">,
	now: number,
): number | null {
	if (row.status === "finished" || row.suspended || row.deletedAt !== null) return null;
	if (!row.recurring && row.lastRun) return null;
	try {
		return nextFireTime(row.schedule, row.timezone, Math.max(now, Number(row.lastScheduledAt ?? 0)));
	} catch {
		return null;
	}
}

export function jobView(row: JobRow, now: number): Job {
	return {
		id: row.id,
		name: row.name,
		status: row.status,
		executable: row.executable,
		schedule: row.schedule,
		type: row.type,
		timezone: row.timezone,
		runAs: row.runAs,
		timeout: row.timeout,
		recurring: !!row.recurring,
		concurrency: row.concurrency,
		retries: row.retries,
		misfire: row.misfire,
		env: parseJson<Record<string, string>>(row.env, {}),
		suspended: !!row.suspended,
		digest: row.digest,
		size: row.size === null ? null : Number(row.size),
		owner: row.owner,
		worker: row.worker,
		nextRunAt: iso(nextRunAt(row, now)),
		lastRun: parseJson<RunSummary | null>(row.lastRun, null),
		createdAt: iso(row.createdAt) as string,
		updatedAt: iso(row.updatedAt) as string,
	};
}

export function runView(row: RunRow): Run {
	return {
		id: row.id,
		jobId: row.jobId,
		scheduledAt: iso(row.scheduledAt) as string,
		startedAt: iso(row.startedAt),
		finishedAt: iso(row.finishedAt),
		status: row.status,
		exitCode: row.exitCode,
		signal: row.signal,
		output: row.output ?? "",
		node: row.node,
		attempt: row.attempt,
		trigger: row.trigger,
		error: row.error,
	};
}

export function runSummary(row: RunRow): RunSummary {
	return { id: row.id, status: row.status, scheduledAt: iso(row.scheduledAt) as string, finishedAt: iso(row.finishedAt), exitCode: row.exitCode };
}

/** The job as the worker needs it (times as numbers). */
export interface WorkerJob extends Omit<JobSettings, "name"> {
	id: string;
	digest: string | null;
	size: number | null;
	status: JobStatus;
	deleted: boolean;
	lastScheduledAt: number | null;
	createdAt: number;
	updatedAt: number;
}

export function workerJobView(row: JobRow): WorkerJob {
	return {
		id: row.id,
		type: row.type,
		executable: row.executable,
		digest: row.digest,
		size: row.size === null ? null : Number(row.size),
		schedule: row.schedule,
		timezone: row.timezone,
		runAs: row.runAs,
		timeout: row.timeout,
		recurring: !!row.recurring,
		concurrency: row.concurrency,
		retries: row.retries,
		misfire: row.misfire,
		env: parseJson<Record<string, string>>(row.env, {}),
		suspended: !!row.suspended,
		status: row.status,
		deleted: row.deletedAt !== null,
		lastScheduledAt: row.lastScheduledAt === null ? null : Number(row.lastScheduledAt),
		createdAt: Number(row.createdAt),
		updatedAt: Number(row.updatedAt),
	};
}
