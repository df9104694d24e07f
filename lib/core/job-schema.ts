/**
 * The job's fields, each declared once. Pure. Everything that lists a job's fields derives from
 * JOB_SCHEMA:
 * - the TypeScript types: JobSettings and Job (types.ts), JobRow and WorkerJob (views.ts);
 * - the input validation (validation.ts): the fields a user may set (`input`), their rule, their
 *   default on create (none: required), in declaration order (the documented check order);
 * - the jobs table's columns (`column`, abstract: lib/adapters/sql/models.ts maps it to SQL types);
 * - the API view (`api`) and the worker's view (`worker`), in declaration order (views.ts);
 * - the row a create writes and the changes a patch writes (views.ts).
 *
 * Adding a field: one entry here (plus its rule in job-rules.ts when it needs a new one). A field
 * with a `derived` encoding has no column: views.ts computes it from the row (tsc asks for it).
 *
 * How a value is kept and answered (`encoding`):
 * - plain: the column holds the value as is;
 * - flag: a boolean (SQLite answers 0/1: views read it with !!);
 * - number: a BIGINT that a driver may answer as a string: views read it with Number();
 * - json: the column holds JSON text; views parse it (`fallback` when empty or unreadable);
 * - secret: a JSON object of sealed values (the jobs service seals them before the row is built);
 *   the API view answers each value as SECRET_MASK, the worker's view the sealed values;
 * - time: epoch milliseconds; the API view answers an ISO 8601 string, the worker's view the number;
 * - derived: no column, computed at read time.
 */
import * as rule from "./job-rules";
import type { ValidationOptions, Rule } from "./job-rules";
import type { ConcurrencyPolicy, JobStatus, JobType, MisfirePolicy, RunSummary } from "./types";

/** A column, abstractly (the sql adapter maps each kind to its dialect's type). */
export type Column = (
	| { kind: "string"; length: number }
	/** size "medium": MySQL's MEDIUMTEXT (16 MiB) where TEXT (64 KiB) is too small. */
	| { kind: "text"; size?: "medium" }
	| { kind: "integer" }
	| { kind: "bigint" }
	| { kind: "boolean" }
) & {
	/** NULL allowed (default: NOT NULL). */
	nullable?: boolean;
	primaryKey?: boolean;
	/** An index of its own. */
	index?: boolean;
};

export type Encoding = "plain" | "flag" | "number" | "json" | "secret" | "time" | "derived";

/** What the API answers for each secret value (and what a patch sends to keep one as it is). */
export const SECRET_MASK = "********";

/** How users set a field (POST /jobs, PATCH /jobs/{id}). */
export interface Input<V> {
	/** Validates and normalizes a present value (job-rules.ts). */
	rule: Rule<V>;
	/** The value when a create leaves the field out; without one the field is required on create. */
	default?: (opts: ValidationOptions) => V;
	/** null is refused up front ("<field> must not be null") instead of by the rule. */
	notNull?: boolean;
}

interface Spec<V> {
	/** The column; none for a derived field. */
	column?: Column;
	/** Users may set it, under this rule. */
	input?: Input<V>;
	/** Its value in a new row, for a stored field users do not set (none: the service gives it). */
	initial?: V;
	/** Shown in the API's job (Job). */
	api?: boolean;
	/** Shown in the worker's job (WorkerJob). */
	worker?: boolean;
}

/** A declared field: `value` only carries the field's TypeScript type (it is undefined at run time). */
export type Field<V, E extends Encoding, S extends Spec<V> = Spec<V>> = S & { encoding: E; fallback?: () => V; value?: V };

const field =
	<V>() =>
	<E extends Encoding, const S extends Spec<V>>(encoding: E, spec: S, fallback?: () => V): Field<V, E, S> =>
		fallback ? { encoding, fallback, ...spec } : { encoding, ...spec };

export const JOB_SCHEMA = {
	id: field<string>()("plain", { column: { kind: "string", length: 36, primaryKey: true }, api: true, worker: true }),
	status: field<JobStatus>()("plain", { column: { kind: "string", length: 16, index: true }, initial: "scheduled", api: true, worker: true }),
	type: field<JobType>()("plain", {
		column: { kind: "string", length: 16 },
		input: { rule: rule.oneOf(rule.JOB_TYPES), notNull: true },
		api: true,
		worker: true,
	}),
	/** A command, or the URL of the stored script/binary (the service stores uploaded content first). */
	executable: field<string>()("plain", { column: { kind: "text" }, input: { rule: rule.executable, notNull: true }, api: true, worker: true }),
	schedule: field<string>()("plain", { column: { kind: "string", length: 200 }, input: { rule: rule.schedule, notNull: true }, api: true, worker: true }),
	timezone: field<string>()("plain", {
		column: { kind: "string", length: 64 },
		input: { rule: rule.timezone, notNull: true, default: () => "UTC" },
		api: true,
		worker: true,
	}),
	name: field<string | null>()("plain", {
		column: { kind: "string", length: 200, nullable: true },
		input: { rule: rule.name, default: () => null },
		api: true,
	}),
	runAs: field<string | null>()("plain", {
		column: { kind: "string", length: 32, nullable: true },
		input: { rule: rule.runAs, default: () => null },
		api: true,
		worker: true,
	}),
	timeout: field<number | null>()("plain", {
		column: { kind: "integer", nullable: true },
		input: { rule: rule.timeout, default: rule.timeoutBound },
		api: true,
		worker: true,
	}),
	recurring: field<boolean>()("flag", { column: { kind: "boolean" }, input: { rule: rule.boolean, default: () => true }, api: true, worker: true }),
	concurrency: field<ConcurrencyPolicy>()("plain", {
		column: { kind: "string", length: 8 },
		input: { rule: rule.oneOf(rule.CONCURRENCY_POLICIES), default: () => "allow" },
		api: true,
		worker: true,
	}),
	retries: field<number>()("plain", {
		column: { kind: "integer" },
		input: { rule: rule.integer(0, rule.MAX_RETRIES), default: () => 0 },
		api: true,
		worker: true,
	}),
	misfire: field<MisfirePolicy>()("plain", {
		column: { kind: "string", length: 8 },
		input: { rule: rule.oneOf(rule.MISFIRE_POLICIES), default: () => "run_once" },
		api: true,
		worker: true,
	}),
	/** Seconds after its instant within which a fire must start (Kubernetes' startingDeadlineSeconds); a fire later than that is recorded missed. */
	startingDeadline: field<number | null>()("plain", {
		column: { kind: "integer", nullable: true },
		input: { rule: rule.startingDeadline, default: () => null },
		api: true,
		worker: true,
	}),
	env: field<Record<string, string>>()(
		"json",
		{ column: { kind: "text" }, input: { rule: rule.env, default: () => ({}) }, api: true, worker: true },
		() => ({}),
	),
	/**
	 * Environment entries whose values are secret: sealed at rest (AES-256-GCM, lib/adapters/secrets),
	 * answered masked, opened only on the worker that runs the job. Keys as env's, none in both.
	 */
	secretEnv: field<Record<string, string>>()(
		"secret",
		// Sealed, the values take about 4/3 of their size and 70 bytes more each: MEDIUMTEXT on MySQL.
		{ column: { kind: "text", size: "medium", nullable: true }, input: { rule: rule.secretEnv, default: () => ({}) }, api: true, worker: true },
		() => ({}),
	),
	suspended: field<boolean>()("flag", { column: { kind: "boolean" }, input: { rule: rule.boolean, default: () => false }, api: true, worker: true }),
	/** SHA-256 (hex) and size of the stored object, for script and binary jobs. */
	digest: field<string | null>()("plain", { column: { kind: "string", length: 64, nullable: true }, api: true, worker: true }),
	size: field<number | null>()("number", { column: { kind: "bigint", nullable: true }, api: true, worker: true }),
	owner: field<string>()("plain", { column: { kind: "string", length: 36, index: true }, api: true }),
	/** The worker the manager assigned the job to. */
	worker: field<string | null>()("plain", { column: { kind: "string", length: 200, nullable: true, index: true }, initial: null, api: true }),
	/** Derived from the schedule at read time. */
	nextRunAt: field<string | null>()("derived", { api: true }),
	/** Catch-up baseline set when the schedule changes (fires before it were never missed). */
	lastScheduledAt: field<number | null>()("time", { column: { kind: "bigint", nullable: true }, initial: null, worker: true }),
	lastRun: field<RunSummary | null>()("json", { column: { kind: "text", nullable: true }, initial: null, api: true }, () => null),
	/** The worker's view of deletedAt. */
	deleted: field<boolean>()("derived", { worker: true }),
	deletedAt: field<number | null>()("time", { column: { kind: "bigint", nullable: true }, initial: null }),
	createdAt: field<number>()("time", { column: { kind: "bigint" }, api: true, worker: true }),
	updatedAt: field<number>()("time", { column: { kind: "bigint" }, api: true, worker: true }),
};

type Schema = typeof JOB_SCHEMA;
export type FieldName = keyof Schema;
type Where<P> = { [K in FieldName]: Schema[K] extends P ? K : never }[FieldName];

/** Fields users may set. */
export type SettableField = Where<{ input: object }>;
/** Fields stored in the jobs table. */
export type ColumnField = Where<{ column: Column }>;
/** Stored fields with an initial value (the others a create must give). */
export type InitialField = Where<{ initial: unknown }>;
export type DerivedField = Where<{ encoding: "derived" }>;
export type ApiField = Where<{ api: true }>;
export type WorkerField = Where<{ worker: true }>;

/** A field's value (as validated, as the worker sees it). */
export type FieldValue<K extends FieldName> = Exclude<Schema[K]["value"], undefined>;
type EncodingOf<K extends FieldName> = Schema[K]["encoding"];
type RowValue<K extends FieldName> =
	EncodingOf<K> extends "secret" ? string | null : EncodingOf<K> extends "json" ? (null extends FieldValue<K> ? string | null : string) : FieldValue<K>;
type ApiValue<K extends FieldName> = EncodingOf<K> extends "time" ? (null extends FieldValue<K> ? string | null : string) : FieldValue<K>;

/** The jobs table's row: times as epoch ms, json fields as text. */
export type JobRowOf = { [K in ColumnField]: RowValue<K> };
/** What a user sets, validated (every field). */
export type JobSettingsOf = { [K in SettableField]: FieldValue<K> };
/** The job as the API answers it. */
export type JobViewOf = { [K in ApiField]: ApiValue<K> };
/** The job as the worker needs it (times as numbers). */
export type WorkerJobOf = { [K in WorkerField]: FieldValue<K> };

function fieldsWhere<K extends FieldName>(test: (f: Spec<unknown> & { encoding: Encoding }) => boolean): readonly K[] {
	return (Object.keys(JOB_SCHEMA) as FieldName[]).filter((k) => test(JOB_SCHEMA[k] as Spec<unknown> & { encoding: Encoding })) as K[];
}

/** In declaration order, each. */
export const SETTABLE_FIELDS = fieldsWhere<SettableField>((f) => f.input !== undefined);
export const COLUMN_FIELDS = fieldsWhere<ColumnField>((f) => f.column !== undefined);
export const API_FIELDS = fieldsWhere<ApiField>((f) => f.api === true);
export const WORKER_FIELDS = fieldsWhere<WorkerField>((f) => f.worker === true);

/** A field's declaration, loosely typed (for the code that walks the schema). */
export function fieldSpec(name: FieldName): Spec<unknown> & { encoding: Encoding; fallback?: () => unknown } {
	return JOB_SCHEMA[name];
}

/** The jobs table's columns, in declaration order. */
export function jobColumns(): Record<ColumnField, Column> {
	return Object.fromEntries(COLUMN_FIELDS.map((k) => [k, fieldSpec(k).column as Column])) as Record<ColumnField, Column>;
}
