/**
 * Validation and normalization of REST job payloads. Pure: throws FieldError(field, message)
 * naming the first offending field, or ForbiddenFieldError (a FieldError; the API answers 403)
 * when a value is valid but not allowed for the caller.
 *
 * The fields, their order, defaults and rules are declared once, in job-schema.ts (the rules
 * themselves in job-rules.ts); this module runs them.
 *
 * Check order: the body itself, unknown fields, then type, executable, schedule, timezone, name,
 * runAs, timeout, recurring, concurrency, retries, misfire, startingDeadline, env, secretEnv, suspended.
 *
 * Rules:
 * - `type` (required on create): "command" | "script" | "binary".
 * - `executable` (required on create): non-empty string. For `command` at most 65535 bytes of UTF-8 and
 *   no NUL character (it is handed to a shell). For script/binary it is base64 content or a URL,
 *   checked elsewhere (lib/upload); here only a non-empty string.
 * - `schedule` (required on create): see lib/schedule (parseSchedule); stored trimmed, at most 200
 *   characters (the column).
 * - `timezone`: IANA name, default "UTC" (see validateTimezone; case is normalized).
 * - `name`: string of at most 200 characters without control characters, or null; "" means null.
 * - `runAs`: POSIX user name /^[a-z_][a-z0-9_-]{0,31}$/ or null (the worker's default user).
 *   "root" (and "0", stored as "root") only for admins: for others ForbiddenFieldError("runAs").
 * - `timeout`: integer seconds 1..86400, or null. Default null = no timeout, UNLESS the deployment
 *   passes `maxTimeoutSec`: then the timeout may not exceed it and null/omitted means maxTimeoutSec,
 *   so an operator can bound every job.
 * - `recurring` (default true), `suspended` (default false): booleans.
 * - `concurrency`: allow|forbid|replace (default allow). `misfire`: run_once|run_all|skip
 *   (default run_once). `retries`: integer 0..10 (default 0).
 * - `env`: object of string → string, at most 100 entries; keys /^[A-Za-z_][A-Za-z0-9_]*$/ and not
 *   starting with CRONJOB_ (any case: reserved for the variables the worker sets), not "__proto__";
 *   values at most
 *   4096 characters, no NUL; at most 65535 bytes as JSON in all (its TEXT column). Default {}.
 * - `secretEnv`: as env, the values secret (sealed at rest by the jobs service: sealSecretEnv);
 *   no key in both env and secretEnv (checkEnvDisjoint). Default {}.
 * - JSON types are strict: no numeric strings, no string booleans; null is refused for every field
 *   except name, runAs and timeout (where it means "none"/default).
 * - Patch: every field optional, at least one required; `type` may only change together with
 *   `executable`. Pass `currentType` so a new executable for a command job gets the command limits.
 *
 * The request edge (the gateway and the actions' params) shares these bounds:
 * - a path id (`/jobs/{id}`, `/users/{id}`): 1 to 64 characters of ID_PATTERN (ids are UUIDs; no
 *   control character, NUL or space ever reaches a query);
 * - paging: `limit` 1 to MAX_PAGE_LIMIT, `offset` 0 to MAX_PAGE_OFFSET (an integer every database
 *   takes: SQLite refuses an offset past 64 bits, 1e20, with a datatype mismatch);
 * - a bearer token: at most MAX_TOKEN_LENGTH characters (longer ones are never valid: a 401).
 */
import { FieldError } from "./errors";
import { jsonType, type ValidationOptions } from "./job-rules";
import { JOB_SCHEMA, SECRET_MASK, SETTABLE_FIELDS, type Input, type SettableField } from "./job-schema";
import type { JobSettings, JobType } from "./types";

export type { ValidationOptions } from "./job-rules";
export {
	JOB_TYPES,
	CONCURRENCY_POLICIES,
	MISFIRE_POLICIES,
	MAX_COMMAND_BYTES,
	MAX_SCHEDULE_LENGTH,
	MAX_ENV_BYTES,
	MAX_NAME_LENGTH,
	MAX_TIMEOUT_SEC,
	MAX_RETRIES,
	MAX_ENV_ENTRIES,
	MAX_ENV_VALUE_LENGTH,
	RUN_AS_PATTERN,
	ENV_KEY_PATTERN,
} from "./job-rules";

/** A path id: what an id we issue (a UUID) or a user name may hold, 1 to 64 characters. */
export const ID_PATTERN = /^[A-Za-z0-9_.:@~-]{1,64}$/;
export const MAX_PAGE_LIMIT = 1000;
export const MAX_PAGE_OFFSET = 2_147_483_647;
export const MAX_TOKEN_LENGTH = 512;

/** Check a path id named `field`; throws FieldError(field, ...). */
export function validatePathId(field: string, v: unknown): string {
	if (typeof v !== "string" || !ID_PATTERN.test(v)) {
		throw new FieldError(field, `${field} must be 1 to 64 letters, digits or _ . : @ ~ -`);
	}
	return v;
}

/** A validated POST /jobs body, defaults filled in. */
export type JobCreateInput = JobSettings;

/** Only the fields present in the request; null for name/runAs/timeout means "clear". */
export type JobPatchInput = Partial<JobCreateInput>;

export interface PatchValidationOptions extends ValidationOptions {
	/** Type of the job being patched, so a new executable is checked against it. */
	currentType?: JobType;
}

/** The fields a user sets, in check order (the schema's declaration order). */
const FIELD_ORDER = SETTABLE_FIELDS;
const KNOWN = new Set<string>(FIELD_ORDER);

function input(f: SettableField): Input<unknown> {
	return JOB_SCHEMA[f].input;
}

/** Required on create: the fields without a default. */
const REQUIRED = FIELD_ORDER.filter((f) => input(f).default === undefined);

function has(body: Record<string, unknown>, key: string): boolean {
	return Object.prototype.hasOwnProperty.call(body, key) && body[key] !== undefined;
}

function asBody(body: unknown): Record<string, unknown> {
	if (typeof body !== "object" || body === null || Array.isArray(body)) {
		throw new FieldError("body", `the request body must be a JSON object, got ${jsonType(body)}`);
	}
	const proto: unknown = Object.getPrototypeOf(body);
	if (proto !== Object.prototype && proto !== null) throw new FieldError("body", "the request body must be a plain JSON object");
	const rec = body as Record<string, unknown>;
	for (const key of Object.keys(rec)) {
		if (!KNOWN.has(key)) {
			throw new FieldError(key, `unknown field ${JSON.stringify(key)}; allowed: ${FIELD_ORDER.join(", ")}`);
		}
	}
	return rec;
}

/** Validate one present field; `type` is the job type in effect for executable checks. */
function field(f: SettableField, v: unknown, opts: ValidationOptions, type: JobType | undefined): unknown {
	const spec = input(f);
	if (spec.notNull && v === null) throw new FieldError(f, `${f} must not be null`);
	return spec.rule(v, { field: f, opts, type });
}

/** Validate a POST /jobs body; returns the normalized input with every default filled in. */
export function validateJobCreate(body: unknown, opts: ValidationOptions): JobCreateInput {
	const rec = asBody(body);
	for (const required of REQUIRED) {
		if (!has(rec, required)) throw new FieldError(required, `${required} is required`);
	}
	const out: Record<string, unknown> = {};
	for (const f of FIELD_ORDER) out[f] = input(f).default?.(opts);
	for (const f of FIELD_ORDER) {
		if (has(rec, f)) out[f] = field(f, rec[f], opts, out.type as JobType | undefined);
	}
	return out as JobCreateInput;
}

/** Validate a PATCH /jobs/:id body; returns only the fields present, normalized. */
export function validateJobPatch(body: unknown, opts: PatchValidationOptions): JobPatchInput {
	const rec = asBody(body);
	const present = FIELD_ORDER.filter((f) => has(rec, f));
	if (present.length === 0) {
		throw new FieldError("body", `nothing to update: give at least one of ${FIELD_ORDER.join(", ")}`);
	}
	if (has(rec, "type") && !has(rec, "executable")) {
		throw new FieldError("type", "type can only be changed together with executable");
	}
	const out: Record<string, unknown> = {};
	for (const f of present) out[f] = field(f, rec[f], opts, (out.type as JobType | undefined) ?? opts.currentType);
	return out;
}

/**
 * A job's secretEnv as stored: each given value sealed (`seal`), a value equal to SECRET_MASK kept
 * as `stored` has it (a client sends back what it read), entries not given dropped (replaced as a
 * whole, as env). The mask for a key with nothing stored (every key on create) is refused.
 */
export function sealSecretEnv(given: Record<string, string>, stored: Record<string, string>, seal: (plain: string) => string): Record<string, string> {
	const out: Record<string, string> = {};
	for (const [key, value] of Object.entries(given)) {
		if (value === SECRET_MASK) {
			if (stored[key] === undefined) throw new FieldError("secretEnv", `secretEnv value of ${JSON.stringify(key)} is the mask ${SECRET_MASK}: give its value`);
			out[key] = stored[key];
		} else out[key] = seal(value);
	}
	return out;
}

/** env and secretEnv name different variables: FieldError("secretEnv") for a key in both. */
export function checkEnvDisjoint(env: Record<string, string>, secretEnv: Record<string, string>): void {
	for (const key of Object.keys(secretEnv)) {
		if (Object.prototype.hasOwnProperty.call(env, key))
			throw new FieldError("secretEnv", `secretEnv key ${JSON.stringify(key)} is also in env: a variable is one or the other`);
	}
}
