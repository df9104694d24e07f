/**
 * Row <-> API shapes. Pure. Times are stored as epoch milliseconds and answered as ISO strings. The
 * job's shapes and conversions follow its schema (job-schema.ts), field by field, by encoding.
 */
import {
	API_FIELDS,
	COLUMN_FIELDS,
	SETTABLE_FIELDS,
	WORKER_FIELDS,
	fieldSpec,
	SECRET_MASK,
	type ApiField,
	type ColumnField,
	type DerivedField,
	type FieldName,
	type FieldValue,
	type InitialField,
	type JobRowOf,
	type SettableField,
	type WorkerField,
	type WorkerJobOf,
} from "./job-schema";
import { nextFireTime, parseStoredSchedule } from "./schedule";
import type { Job, JobSettings, Run, RunStatus, RunTrigger } from "./types";

export const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(Number(ms)).toISOString());

/** The jobs table's row (job-schema.ts): the settings (env as JSON text), times as epoch ms. */
export type JobRow = JobRowOf;

/** The job as the worker needs it (job-schema.ts; times as numbers). */
export type WorkerJob = WorkerJobOf;

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
		return nextFireTime(parseStoredSchedule(row.schedule), row.timezone, Math.max(now, Number(row.lastScheduledAt ?? 0)));
	} catch {
		return null;
	}
}

/** The derived fields of each view, computed from the row. */
const DERIVED_API: { [K in Extract<DerivedField, ApiField>]: (row: JobRow, now: number) => FieldValue<K> } = {
	nextRunAt: (row, now) => iso(nextRunAt(row, now)),
};
const DERIVED_WORKER: { [K in Extract<DerivedField, WorkerField>]: (row: JobRow) => FieldValue<K> } = {
	deleted: (row) => row.deletedAt !== null,
};

/** How a view reads a stored field from the row (by the field's encoding). */
function reader(name: FieldName, view: "api" | "worker"): (row: JobRow) => unknown {
	const spec = fieldSpec(name);
	const get = (row: JobRow) => (row as Record<string, unknown>)[name];
	switch (spec.encoding) {
		case "flag":
			return (row) => !!get(row);
		case "number":
			return (row) => (get(row) === null ? null : Number(get(row)));
		case "json": {
			const fallback = spec.fallback;
			return (row) => parseJson(get(row) as string | null, fallback?.() ?? null);
		}
		case "secret":
			// The sealed values for the worker (it opens them); each masked for the API.
			if (view === "worker") return (row) => parseJson<Record<string, string>>(get(row) as string | null, {});
			return (row) => masked(parseJson<Record<string, string>>(get(row) as string | null, {}));
		case "time":
			if (view === "api") return (row) => iso(get(row) as number | null);
			return (row) => (get(row) === null ? null : Number(get(row)));
		default:
			return get;
	}
}

/**
 * Each view's fields with how to compute them, worked out once from the schema (a worker loads tens
 * of thousands of jobs at a time: the schema is not walked per row).
 */
const API_READERS: [string, (row: JobRow, now: number) => unknown][] = API_FIELDS.map((k) => [
	k,
	k in DERIVED_API ? DERIVED_API[k as keyof typeof DERIVED_API] : reader(k, "api"),
]);
const WORKER_READERS: [string, (row: JobRow) => unknown][] = WORKER_FIELDS.map((k) => [
	k,
	k in DERIVED_WORKER ? DERIVED_WORKER[k as keyof typeof DERIVED_WORKER] : reader(k, "worker"),
]);

/** Each value of a secret map as SECRET_MASK. */
export function masked(values: Record<string, string>): Record<string, string> {
	return Object.fromEntries(Object.keys(values).map((k) => [k, SECRET_MASK]));
}

/** A settable field's value as its column holds it (a secret map's values already sealed by the service). */
function write(name: SettableField, value: unknown): unknown {
	const encoding = fieldSpec(name).encoding;
	return encoding === "json" || encoding === "secret" ? JSON.stringify(value) : value;
}

export function jobView(row: JobRow, now: number): Job {
	const out: Record<string, unknown> = {};
	for (const [k, value] of API_READERS) out[k] = value(row, now);
	return out as Job;
}

export function workerJobView(row: JobRow): WorkerJob {
	const out: Record<string, unknown> = {};
	for (const [k, value] of WORKER_READERS) out[k] = value(row);
	return out as WorkerJob;
}

/** What a create gives besides the settings: the stored fields without an initial value (and overrides, e.g. the stored executable's URL). */
export type NewJobFields = Pick<JobRow, Exclude<ColumnField, SettableField | InitialField>> & Partial<JobRow>;

/** A new job's row: the validated settings, the schema's initial values, and `given`. */
export function newJobRow(settings: JobSettings, given: NewJobFields): JobRow {
	const out: Record<string, unknown> = {};
	for (const k of COLUMN_FIELDS) {
		const spec = fieldSpec(k);
		if ((given as Record<string, unknown>)[k] !== undefined) out[k] = (given as Record<string, unknown>)[k];
		else if (spec.input) out[k] = write(k as SettableField, settings[k as SettableField]);
		else out[k] = spec.initial;
	}
	return out as JobRow;
}

/** The row changes for a validated patch: the fields it holds, as their columns hold them. */
export function jobRowChanges(patch: Partial<JobSettings>): Partial<JobRow> {
	const out: Record<string, unknown> = {};
	for (const k of SETTABLE_FIELDS) if (patch[k] !== undefined) out[k] = write(k, patch[k]);
	return out;
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
