/**
 * The validation rules of the job fields a user sets, one function per rule. Pure. The job schema
 * (job-schema.ts) names each field's rule; validation.ts runs them in the schema's order and
 * documents what they accept. A rule gets the raw JSON value and answers it normalized, or throws
 * FieldError (ForbiddenFieldError: valid but not allowed for the caller).
 */
import { FieldError, ForbiddenFieldError } from "./errors";
import { parseSchedule, validateTimezone } from "./schedule";
import type { ConcurrencyPolicy, JobType, MisfirePolicy } from "./types";

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

/** What a rule knows besides the value: the field, the caller, and the job type in effect. */
export interface RuleContext {
	field: string;
	opts: ValidationOptions;
	/** The job's type as the request leaves it (the new one, else the current one), for executable checks. */
	type: JobType | undefined;
}

export type Rule<V> = (value: unknown, ctx: RuleContext) => V;

export const JOB_TYPES: readonly JobType[] = ["command", "script", "binary"];
export const CONCURRENCY_POLICIES: readonly ConcurrencyPolicy[] = ["allow", "forbid", "replace"];
export const MISFIRE_POLICIES: readonly MisfirePolicy[] = ["run_once", "run_all", "skip"];

/** A command is stored in a TEXT column: MySQL's holds 65535 bytes (a byte more was a 500 there). */
export const MAX_COMMAND_BYTES = 65_535;
/** The schedule column's length (job-schema.ts): parseSchedule reads longer expressions, a job cannot store them. */
export const MAX_SCHEDULE_LENGTH = 200;
/** `env` is stored as JSON in a TEXT column: at most 65535 bytes of it (100 values of 4096 characters are more). */
export const MAX_ENV_BYTES = 65_535;
export const MAX_NAME_LENGTH = 200;
export const MAX_TIMEOUT_SEC = 86_400;
export const MAX_RETRIES = 10;
export const MAX_ENV_ENTRIES = 100;
export const MAX_ENV_VALUE_LENGTH = 4096;
export const RUN_AS_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;
export const ENV_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENV_KEY_MAX_LENGTH = 256;
const RESERVED_ENV_PREFIX = "CRONJOB_";

export function jsonType(v: unknown): string {
	if (v === null) return "null";
	if (Array.isArray(v)) return "an array";
	return `a ${typeof v}`;
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

/** One of `allowed` (strings). */
export function oneOf<T extends string>(allowed: readonly T[]): Rule<T> {
	return (v, { field }) => {
		if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) {
			const got = typeof v === "string" ? JSON.stringify(v) : jsonType(v);
			throw new FieldError(field, `${field} must be one of ${allowed.join(", ")}; got ${got}`);
		}
		return v as T;
	};
}

export const boolean: Rule<boolean> = (v, { field }) => {
	if (typeof v !== "boolean") throw new FieldError(field, `${field} must be true or false, got ${jsonType(v)}`);
	return v;
};

function checkInteger(field: string, v: unknown, min: number, max: number): number {
	if (typeof v !== "number" || !Number.isInteger(v)) {
		throw new FieldError(field, `${field} must be an integer, got ${typeof v === "number" ? String(v) : jsonType(v)}`);
	}
	if (v < min || v > max) throw new FieldError(field, `${field} must be between ${min} and ${max}, got ${v}`);
	return v;
}

/** An integer from `min` to `max` (JSON numbers only). */
export function integer(min: number, max: number): Rule<number> {
	return (v, { field }) => checkInteger(field, v, min, max);
}

/** Non-empty; for a command job at most MAX_COMMAND_BYTES of UTF-8 and no NUL (script/binary content is checked by lib/core/upload). */
export const executable: Rule<string> = (v, { type }) => {
	if (typeof v !== "string") throw new FieldError("executable", `executable must be a string, got ${jsonType(v)}`);
	if (v.trim() === "") throw new FieldError("executable", "executable is empty");
	if (type === "command") {
		if (v.length > MAX_COMMAND_BYTES || utf8Length(v) > MAX_COMMAND_BYTES) {
			throw new FieldError("executable", `a command may be at most ${MAX_COMMAND_BYTES} bytes`);
		}
		if (v.includes("\0")) throw new FieldError("executable", "a command must not contain NUL characters");
	}
	return v;
};

/** See parseSchedule; stored trimmed, at most MAX_SCHEDULE_LENGTH characters. */
export const schedule: Rule<string> = (v) => {
	if (typeof v !== "string") throw new FieldError("schedule", `schedule must be a string, got ${jsonType(v)}`);
	const { source } = parseSchedule(v);
	if (source.length > MAX_SCHEDULE_LENGTH) throw new FieldError("schedule", `a job's schedule may be at most ${MAX_SCHEDULE_LENGTH} characters`);
	return source;
};

/** An IANA name, its case normalized (see validateTimezone). */
export const timezone: Rule<string> = (v) => {
	if (typeof v !== "string") throw new FieldError("timezone", `timezone must be a string, got ${jsonType(v)}`);
	return validateTimezone(v);
};

export const name: Rule<string | null> = (v) => {
	if (v === null || v === "") return null;
	if (typeof v !== "string") throw new FieldError("name", `name must be a string or null, got ${jsonType(v)}`);
	if (v.length > MAX_NAME_LENGTH) throw new FieldError("name", `name may be at most ${MAX_NAME_LENGTH} characters`);
	// eslint-disable-next-line no-control-regex
	if (/[\u0000-\u001f\u007f]/.test(v)) throw new FieldError("name", "name must not contain control characters");
	return v;
};

export const runAs: Rule<string | null> = (v, { opts }) => {
	if (v === null) return null;
	if (typeof v !== "string") throw new FieldError("runAs", `runAs must be a user name or null, got ${jsonType(v)}`);
	const privileged = v === "root" || v === "0";
	if (!privileged && !RUN_AS_PATTERN.test(v)) {
		throw new FieldError("runAs", `runAs must be a POSIX user name matching ${RUN_AS_PATTERN.source}`);
	}
	if (privileged) {
		if (!opts.admin) throw new ForbiddenFieldError("runAs", "only admins may run jobs as root");
		return "root";
	}
	const allowed = opts.userRunAs;
	if (!opts.admin && allowed && !allowed.includes(v)) {
		throw new ForbiddenFieldError("runAs", `only admins may run jobs as ${v}; others may use: ${allowed.join(", ") || "(none)"}`);
	}
	return v;
};

/** The deployment's bound on `timeout` (maxTimeoutSec, at most MAX_TIMEOUT_SEC), or null: also the default timeout. */
export function timeoutBound(opts: ValidationOptions): number | null {
	const m = opts.maxTimeoutSec;
	if (m === undefined) return null;
	if (!Number.isInteger(m) || m < 1) throw new RangeError("maxTimeoutSec must be a positive integer");
	return Math.min(m, MAX_TIMEOUT_SEC);
}

export const timeout: Rule<number | null> = (v, { opts }) => {
	const bound = timeoutBound(opts);
	if (v === null) return bound;
	return checkInteger("timeout", v, 1, bound ?? MAX_TIMEOUT_SEC);
};

/** The longest startingDeadline, s (31 days: a fire later than that is not "late" but forgotten). */
export const MAX_STARTING_DEADLINE_SEC = 31 * 24 * 3600;

/** Seconds after its instant within which a fire must start, or null (no deadline). */
export const startingDeadline: Rule<number | null> = (v, { field }) => (v === null ? null : checkInteger(field, v, 1, MAX_STARTING_DEADLINE_SEC));

/** An environment map's rule, for the field `name` (env, secretEnv). */
const envMap =
	(name: "env" | "secretEnv"): Rule<Record<string, string>> =>
	(v) => {
		if (typeof v !== "object" || v === null || Array.isArray(v)) {
			throw new FieldError(name, `${name} must be an object of string values, got ${jsonType(v)}`);
		}
		const keys = Object.keys(v);
		if (keys.length > MAX_ENV_ENTRIES) throw new FieldError(name, `${name} may have at most ${MAX_ENV_ENTRIES} entries, got ${keys.length}`);
		const out: Record<string, string> = {};
		for (const key of keys) {
			const shown = JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}...` : key);
			if (key.length > ENV_KEY_MAX_LENGTH || !ENV_KEY_PATTERN.test(key)) {
				throw new FieldError(name, `${name} key ${shown} must match ${ENV_KEY_PATTERN.source} (at most ${ENV_KEY_MAX_LENGTH} characters)`);
			}
			if (key === "__proto__") throw new FieldError(name, `${name} key ${shown} is not allowed`);
			if (key.toUpperCase().startsWith(RESERVED_ENV_PREFIX)) {
				throw new FieldError(name, `${name} key ${shown} is reserved: names starting with ${RESERVED_ENV_PREFIX} are set by the worker`);
			}
			const value = (v as Record<string, unknown>)[key];
			if (typeof value !== "string") throw new FieldError(name, `${name} value of ${shown} must be a string, got ${jsonType(value)}`);
			if (value.length > MAX_ENV_VALUE_LENGTH) {
				throw new FieldError(name, `${name} value of ${shown} may be at most ${MAX_ENV_VALUE_LENGTH} characters`);
			}
			if (value.includes("\0")) throw new FieldError(name, `${name} value of ${shown} must not contain NUL characters`);
			out[key] = value;
		}
		const bytes = utf8Length(JSON.stringify(out));
		if (bytes > MAX_ENV_BYTES) throw new FieldError(name, `${name} may be at most ${MAX_ENV_BYTES} bytes as JSON, got ${bytes}`);
		return out;
	};

export const env = envMap("env");
/** secretEnv: as env; a value equal to SECRET_MASK keeps the stored one (a patch; refused on create by the service). */
export const secretEnv = envMap("secretEnv");
