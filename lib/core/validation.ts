/**
 * Validation and normalization of REST job payloads. Pure: throws FieldError(field, message)
 * naming the first offending field, or ForbiddenFieldError (a FieldError; the API answers 403)
 * when a value is valid but not allowed for the caller.
 *
 * Check order: the body itself, unknown fields, then type, executable, schedule, timezone, name,
 * runAs, timeout, recurring, concurrency, retries, misfire, env, suspended.
 *
 * Rules:
 * - `type` (required on create): "command" | "script" | "binary".
 * - `executable` (required on create): non-empty string. For `command` at most 64 KiB of UTF-8 and
 *   no NUL character (it is handed to a shell). For script/binary it is base64 content or a URL,
 *   checked elsewhere (lib/upload); here only a non-empty string.
 * - `schedule` (required on create): see lib/schedule (parseSchedule); stored trimmed.
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
 *   4096 characters, no NUL. Default {}.
 * - JSON types are strict: no numeric strings, no string booleans; null is refused for every field
 *   except name, runAs and timeout (where it means "none"/default).
 * - Patch: every field optional, at least one required; `type` may only change together with
 *   `executable`. Pass `currentType` so a new executable for a command job gets the command limits.
 */
import { FieldError, ForbiddenFieldError } from "./errors";
import { parseSchedule, validateTimezone } from "./schedule";
import type { ConcurrencyPolicy, JobSettings, JobType, MisfirePolicy } from "./types";

/** A validated POST /jobs body, defaults filled in. */
export type JobCreateInput = JobSettings;

/** Only the fields present in the request; null for name/runAs/timeout means "clear". */
export type JobPatchInput = Partial<JobCreateInput>;

export interface ValidationOptions {
	/** The caller is an admin (may run jobs as root). */
	admin: boolean;
	/** Deployment bound for `timeout` (seconds); also the default when none is given. */
	maxTimeoutSec?: number;
	/**
	 * The accounts a non-admin may name in `runAs` (undefined: any but root). Other system accounts
	 * (a database's, a web server's) are as off-limits to ordinary users as root is.
	 */
	userRunAs?: readonly string[];
}

export interface PatchValidationOptions extends ValidationOptions {
	/** Type of the job being patched, so a new executable is checked against it. */
	currentType?: JobType;
}

export const JOB_TYPES: readonly JobType[] = ["command", "script", "binary"];
export const CONCURRENCY_POLICIES: readonly ConcurrencyPolicy[] = ["allow", "forbid", "replace"];
export const MISFIRE_POLICIES: readonly MisfirePolicy[] = ["run_once", "run_all", "skip"];

export const MAX_COMMAND_BYTES = 64 * 1024;
export const MAX_NAME_LENGTH = 200;
export const MAX_TIMEOUT_SEC = 86_400;
export const MAX_RETRIES = 10;
export const MAX_ENV_ENTRIES = 100;
export const MAX_ENV_VALUE_LENGTH = 4096;
export const RUN_AS_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;
export const ENV_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENV_KEY_MAX_LENGTH = 256;
const RESERVED_ENV_PREFIX = "CRONJOB_";

const FIELD_ORDER = [
	"type",
	"executable",
	"schedule",
	"timezone",
	"name",
	"runAs",
	"timeout",
	"recurring",
	"concurrency",
	"retries",
	"misfire",
	"env",
	"suspended",
] as const;
type Field = (typeof FIELD_ORDER)[number];
const KNOWN = new Set<string>(FIELD_ORDER);

function jsonType(v: unknown): string {
	if (v === null) return "null";
	if (Array.isArray(v)) return "an array";
	return `a ${typeof v}`;
}

function has(body: Record<string, unknown>, key: string): boolean {
	return Object.prototype.hasOwnProperty.call(body, key) && body[key] !== undefined;
}

function asBody(body: unknown): Record<string, unknown> {
	if (typeof body !== "object" || body === null || Array.isArray(body)) {
		throw new FieldError("body", `the request body must be a JSON object, got ${jsonType(body)}`);
	}
	const proto = Object.getPrototypeOf(body);
	if (proto !== Object.prototype && proto !== null) throw new FieldError("body", "the request body must be a plain JSON object");
	const rec = body as Record<string, unknown>;
	for (const key of Object.keys(rec)) {
		if (!KNOWN.has(key)) {
			throw new FieldError(key, `unknown field ${JSON.stringify(key)}; allowed: ${FIELD_ORDER.join(", ")}`);
		}
	}
	return rec;
}

function oneOf<T extends string>(field: string, v: unknown, allowed: readonly T[]): T {
	if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) {
		const got = typeof v === "string" ? JSON.stringify(v) : jsonType(v);
		throw new FieldError(field, `${field} must be one of ${allowed.join(", ")}; got ${got}`);
	}
	return v as T;
}

function bool(field: string, v: unknown): boolean {
	if (typeof v !== "boolean") throw new FieldError(field, `${field} must be true or false, got ${jsonType(v)}`);
	return v;
}

function integer(field: string, v: unknown, min: number, max: number): number {
	if (typeof v !== "number" || !Number.isInteger(v)) {
		throw new FieldError(field, `${field} must be an integer, got ${typeof v === "number" ? String(v) : jsonType(v)}`);
	}
	if (v < min || v > max) throw new FieldError(field, `${field} must be between ${min} and ${max}, got ${v}`);
	return v;
}

function utf8Length(s: string): number {
	let n = 0;
	for (let i = 0; i < s.length; i++) {
		const c = s.charCodeAt(i);
		if (c < 0x80) n += 1;
		else if (c < 0x800) n += 2;
		else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
			n += 4;
			i++;
		} else n += 3;
	}
	return n;
}

function executable(v: unknown, type: JobType | undefined): string {
	if (typeof v !== "string") throw new FieldError("executable", `executable must be a string, got ${jsonType(v)}`);
	if (v.trim() === "") throw new FieldError("executable", "executable is empty");
	if (type === "command") {
		if (v.length > MAX_COMMAND_BYTES || utf8Length(v) > MAX_COMMAND_BYTES) {
			throw new FieldError("executable", `a command may be at most ${MAX_COMMAND_BYTES} bytes`);
		}
		if (v.includes("\0")) throw new FieldError("executable", "a command must not contain NUL characters");
	}
	return v;
}

function schedule(v: unknown): string {
	if (typeof v !== "string") throw new FieldError("schedule", `schedule must be a string, got ${jsonType(v)}`);
	return parseSchedule(v).source;
}

function timezone(v: unknown): string {
	if (typeof v !== "string") throw new FieldError("timezone", `timezone must be a string, got ${jsonType(v)}`);
	return validateTimezone(v);
}

function name(v: unknown): string | null {
	if (v === null || v === "") return null;
	if (typeof v !== "string") throw new FieldError("name", `name must be a string or null, got ${jsonType(v)}`);
	if (v.length > MAX_NAME_LENGTH) throw new FieldError("name", `name may be at most ${MAX_NAME_LENGTH} characters`);
	// eslint-disable-next-line no-control-regex
	if (/[\u0000-\u001f\u007f]/.test(v)) throw new FieldError("name", "name must not contain control characters");
	return v;
}

function runAs(v: unknown, admin: boolean, allowed?: readonly string[]): string | null {
	if (v === null) return null;
	if (typeof v !== "string") throw new FieldError("runAs", `runAs must be a user name or null, got ${jsonType(v)}`);
	const privileged = v === "root" || v === "0";
	if (!privileged && !RUN_AS_PATTERN.test(v)) {
		throw new FieldError("runAs", `runAs must be a POSIX user name matching ${RUN_AS_PATTERN.source}`);
	}
	if (privileged) {
		if (!admin) throw new ForbiddenFieldError("runAs", "only admins may run jobs as root");
		return "root";
	}
	if (!admin && allowed && !allowed.includes(v)) {
		throw new ForbiddenFieldError("runAs", `only admins may run jobs as ${v}; others may use: ${allowed.join(", ") || "(none)"}`);
	}
	return v;
}

function timeoutBound(opts: ValidationOptions): number | null {
	const m = opts.maxTimeoutSec;
	if (m === undefined) return null;
	if (!Number.isInteger(m) || m < 1) throw new RangeError("maxTimeoutSec must be a positive integer");
	return Math.min(m, MAX_TIMEOUT_SEC);
}

function timeout(v: unknown, opts: ValidationOptions): number | null {
	const bound = timeoutBound(opts);
	if (v === null) return bound;
	return integer("timeout", v, 1, bound ?? MAX_TIMEOUT_SEC);
}

function env(v: unknown): Record<string, string> {
	if (typeof v !== "object" || v === null || Array.isArray(v)) {
		throw new FieldError("env", `env must be an object of string values, got ${jsonType(v)}`);
	}
	const keys = Object.keys(v);
	if (keys.length > MAX_ENV_ENTRIES) throw new FieldError("env", `env may have at most ${MAX_ENV_ENTRIES} entries, got ${keys.length}`);
	const out: Record<string, string> = {};
	for (const key of keys) {
		const shown = JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}...` : key);
		if (key.length > ENV_KEY_MAX_LENGTH || !ENV_KEY_PATTERN.test(key)) {
			throw new FieldError("env", `env key ${shown} must match ${ENV_KEY_PATTERN.source} (at most ${ENV_KEY_MAX_LENGTH} characters)`);
		}
		if (key === "__proto__") throw new FieldError("env", `env key ${shown} is not allowed`);
		if (key.toUpperCase().startsWith(RESERVED_ENV_PREFIX)) {
			throw new FieldError("env", `env key ${shown} is reserved: names starting with ${RESERVED_ENV_PREFIX} are set by the worker`);
		}
		const value = (v as Record<string, unknown>)[key];
		if (typeof value !== "string") throw new FieldError("env", `env value of ${shown} must be a string, got ${jsonType(value)}`);
		if (value.length > MAX_ENV_VALUE_LENGTH) {
			throw new FieldError("env", `env value of ${shown} may be at most ${MAX_ENV_VALUE_LENGTH} characters`);
		}
		if (value.includes("\0")) throw new FieldError("env", `env value of ${shown} must not contain NUL characters`);
		out[key] = value;
	}
	return out;
}

function notNull(field: Field, v: unknown): void {
	if (v === null) throw new FieldError(field, `${field} must not be null`);
}

/** Validate one present field; `type` is the job type in effect for executable checks. */
function field(f: Field, v: unknown, opts: ValidationOptions, type: JobType | undefined): unknown {
	switch (f) {
		case "type":
			notNull(f, v);
			return oneOf("type", v, JOB_TYPES);
		case "executable":
			notNull(f, v);
			return executable(v, type);
		case "schedule":
			notNull(f, v);
			return schedule(v);
		case "timezone":
			notNull(f, v);
			return timezone(v);
		case "name":
			return name(v);
		case "runAs":
			return runAs(v, opts.admin, opts.userRunAs);
		case "timeout":
			return timeout(v, opts);
		case "recurring":
		case "suspended":
			return bool(f, v);
		case "concurrency":
			return oneOf("concurrency", v, CONCURRENCY_POLICIES);
		case "retries":
			return integer("retries", v, 0, MAX_RETRIES);
		case "misfire":
			return oneOf("misfire", v, MISFIRE_POLICIES);
		case "env":
			return env(v);
	}
}

/** Validate a POST /jobs body; returns the normalized input with every default filled in. */
export function validateJobCreate(body: unknown, opts: ValidationOptions): JobCreateInput {
	const rec = asBody(body);
	for (const required of ["type", "executable", "schedule"] as const) {
		if (!has(rec, required)) throw new FieldError(required, `${required} is required`);
	}
	const out: JobCreateInput = {
		type: "command",
		executable: "",
		schedule: "",
		timezone: "UTC",
		name: null,
		runAs: null,
		timeout: timeoutBound(opts),
		recurring: true,
		concurrency: "allow",
		retries: 0,
		misfire: "run_once",
		env: {},
		suspended: false,
	};
	let type: JobType | undefined;
	for (const f of FIELD_ORDER) {
		if (!has(rec, f)) continue;
		const value = field(f, rec[f], opts, type);
		if (f === "type") type = value as JobType;
		(out as unknown as Record<string, unknown>)[f] = value;
	}
	return out;
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
	const out: JobPatchInput = {};
	let type: JobType | undefined = opts.currentType;
	for (const f of present) {
		const value = field(f, rec[f], opts, type);
		if (f === "type") type = value as JobType;
		(out as Record<string, unknown>)[f] = value;
	}
	return out;
}
