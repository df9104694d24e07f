/**
 * Every failure a client or an operator sees comes from here: plain classes that import nothing, each
 * with an HTTP `code`, a stable `type` and its `data` (`data.field` names the offending field of a
 * request). `retryable` marks a transient fault (a backend is down: retry later).
 *
 * The service edge (lib/adapters/moleculer/errors.ts) turns them into Moleculer errors by class:
 * a retryable one into MoleculerRetryableError (which the broker's retry policy keys on), a 4xx into
 * MoleculerClientError, anything else into MoleculerError. Nothing maps by class name.
 */

export type ErrorType =
	| "VALIDATION_ERROR"
	| "BAD_REQUEST"
	| "UNSUPPORTED_MEDIA_TYPE"
	| "FORBIDDEN"
	| "NOT_FOUND"
	| "UNAUTHORIZED"
	| "PAYLOAD_TOO_LARGE"
	| "CONFLICT"
	| "RATE_LIMITED"
	| "SERVICE_UNAVAILABLE"
	| "OBJECT_STORE_ERROR"
	| "INTEGRITY_ERROR"
	| "RUN_SETUP_FAILED"
	| "CONFIG_ERROR";

export interface ErrorData {
	field?: string | null;
	[key: string]: unknown;
}

/** The base of our errors. */
export abstract class CronjobError extends Error {
	abstract readonly code: number;
	abstract readonly type: ErrorType;
	/** A transient fault: the same request may succeed later. */
	readonly retryable: boolean = false;
	constructor(
		message: string,
		readonly data: ErrorData = {},
		options?: { cause?: unknown },
	) {
		super(message, options);
		this.name = new.target.name;
	}
}

/** 422: a request field is invalid. */
export class FieldError extends CronjobError {
	readonly code: number = 422;
	readonly type: ErrorType = "VALIDATION_ERROR";
	constructor(
		readonly field: string,
		message: string,
		extra: Record<string, unknown> = {},
	) {
		super(message, { field, ...extra });
	}
}

/** 403: a field value that is valid but not permitted for this caller. */
export class ForbiddenFieldError extends FieldError {
	override readonly code = 403;
	override readonly type = "FORBIDDEN";
}

/** 400: the request itself could not be read (a body that does not decode, a path that is not UTF-8). */
export class BadRequestError extends FieldError {
	override readonly code = 400;
	override readonly type = "BAD_REQUEST";
}

/** 415: a content encoding or charset we do not read; `field` names the header. */
export class UnsupportedMediaTypeError extends FieldError {
	override readonly code = 415;
	override readonly type = "UNSUPPORTED_MEDIA_TYPE";
}

/** 413: larger than allowed; `limit` and `size` in bytes. */
export class TooLargeError extends FieldError {
	override readonly code = 413;
	override readonly type = "PAYLOAD_TOO_LARGE";
	constructor(
		readonly limit: number,
		readonly size: number | null,
		field = "executable",
	) {
		super(field, `${field} is larger than the limit of ${limit} bytes${size === null ? "" : ` (${size} bytes)`}`, {
			limit,
			...(size === null ? {} : { size }),
		});
	}
}

/** 403: an action the caller may not take. */
export class ForbiddenError extends CronjobError {
	readonly code = 403;
	readonly type = "FORBIDDEN";
	constructor(message: string, field?: string) {
		super(message, field ? { field } : {});
	}
}

/**
 * 403: the caller's role (the narrower of its user's and its token's: lib/core/roles.ts) is narrower
 * than the one needed; `data.requiredRole` names the role needed, `data.role` the caller's.
 */
export class RoleRequiredError extends CronjobError {
	readonly code = 403;
	readonly type = "FORBIDDEN";
	constructor(
		readonly requiredRole: string,
		readonly role: string,
		what: string,
		field?: string,
	) {
		super(`${what} needs the ${requiredRole} role (this request has ${role})`, { field: field ?? null, requiredRole, role });
	}
}

/** 404: no such thing, or one the caller may not see (the same answer, on purpose). */
export class NotFoundError extends CronjobError {
	readonly code = 404;
	readonly type = "NOT_FOUND";
	constructor(what: string, id: string) {
		super(`${what} not found`, { field: "id", id });
	}
}

/** 404: no route answers this path (and method). */
export class RouteNotFoundError extends CronjobError {
	readonly code = 404;
	readonly type = "NOT_FOUND";
	constructor(message = "Not found") {
		super(message, { field: "path" });
	}
}

/** 401: no valid credentials. */
export class UnauthorizedError extends CronjobError {
	readonly code = 401;
	readonly type = "UNAUTHORIZED";
	constructor(message = "Missing or invalid bearer token") {
		super(message, { field: "authorization" });
	}
}

/** 409: the request conflicts with the current state. */
export class ConflictError extends CronjobError {
	readonly code = 409;
	readonly type = "CONFLICT";
	constructor(message: string, field: string) {
		super(message, { field });
	}
}

/** 503: a backend (database, object store, coordination, worker) is unreachable; retry later. */
/** Too many requests from one token or address: 429, with the seconds to wait (Retry-After). */
export class RateLimitedError extends CronjobError {
	readonly code = 429;
	readonly type = "RATE_LIMITED";
	constructor(
		readonly retryAfterSec: number,
		what: "token" | "address" | "authentication",
	) {
		super(
			what === "authentication"
				? `Too many failed authentications from this address; try again in ${retryAfterSec} s`
				: `Too many requests from this ${what}; try again in ${retryAfterSec} s`,
			{ field: "authorization", retryAfter: retryAfterSec },
		);
	}
}

export class UnavailableError extends CronjobError {
	readonly code = 503;
	readonly type = "SERVICE_UNAVAILABLE";
	override readonly retryable = true;
	constructor(
		readonly backend: string,
		cause?: unknown,
	) {
		super(`${backend} is unavailable: ${reasonOf(cause)}`, { backend }, { cause });
	}
}

/** An object store failure that retrying will not mend (502). */
export class ObjectStoreError extends CronjobError {
	readonly code: number = 502;
	readonly type: ErrorType = "OBJECT_STORE_ERROR";
	constructor(message: string, options?: { cause?: unknown }) {
		super(message, {}, options);
	}
}

/** The object store is unreachable or failing (network error, timeout, 5xx): retry later (503). */
export class ObjectStoreUnavailable extends ObjectStoreError {
	override readonly code = 503;
	override readonly type = "SERVICE_UNAVAILABLE";
	override readonly retryable = true;
	readonly backend = "object store";
	constructor(message: string, options?: { cause?: unknown }) {
		super(message, options);
		this.data.backend = this.backend;
	}
}

/** No object under that digest (S3 NoSuchKey / 404, or a missing file). */
export class ObjectNotFound extends ObjectStoreError {
	override readonly code = 404;
	override readonly type = "NOT_FOUND";
	constructor(
		readonly digest: string,
		readonly url: string,
	) {
		super(`object ${url} not found`);
		this.data.digest = digest;
	}
}

/** Downloaded content does not match its digest (or the expected size). Never retried blindly. */
export class ArtifactIntegrityError extends CronjobError {
	readonly code = 502;
	readonly type = "INTEGRITY_ERROR";
	constructor(
		message: string,
		readonly digest: string,
		readonly url: string,
		readonly actualDigest: string | null,
		readonly actualSize: number,
		readonly expectedSize?: number,
	) {
		super(message, { digest });
	}
}

/** A run could not be prepared (its executable is missing, its user unknown): the run fails with this. */
export class RunSetupError extends CronjobError {
	readonly code = 500;
	readonly type = "RUN_SETUP_FAILED";
}

/** The configuration (environment) is invalid: the node refuses to start. */
export class ConfigError extends CronjobError {
	readonly code = 500;
	readonly type = "CONFIG_ERROR";
	constructor(
		readonly setting: string,
		message: string,
	) {
		super(message, { setting });
	}
}

/** True for errors that mean "try later" (ours marked retryable, or anything marked transient). */
export function isRetryable(err: unknown): boolean {
	if (err instanceof CronjobError) return err.retryable;
	return !!err && typeof err === "object" && ((err as { retryable?: unknown }).retryable === true || (err as { transient?: unknown }).transient === true);
}

function reasonOf(cause: unknown): string {
	if (cause instanceof Error) return cause.message;
	if (!cause) return "unavailable";
	if (typeof cause === "string") return cause;
	if (typeof cause === "number" || typeof cause === "bigint" || typeof cause === "boolean" || typeof cause === "symbol") return String(cause);
	// An object thrown that is no Error: its toString, as String() would render it.
	return (cause as { toString(): string }).toString();
}

// Short constructors for the call sites.
export const invalidField = (field: string, message: string, extra: Record<string, unknown> = {}) => new FieldError(field, message, extra);
export const badRequest = (field: string, message: string) => new BadRequestError(field, message);
export const unsupportedMediaType = (field: string, message: string) => new UnsupportedMediaTypeError(field, message);
export const notFound = (what: string, id: string) => new NotFoundError(what, id);
export const routeNotFound = (message?: string) => new RouteNotFoundError(message);
export const forbidden = (message: string, field?: string) => new ForbiddenError(message, field);
export const unauthorized = (message?: string) => new UnauthorizedError(message);
export const tooLarge = (field: string, limit: number) => new TooLargeError(limit, null, field);
export const conflict = (message: string, field: string) => new ConflictError(message, field);
export const unavailable = (backend: string, cause?: unknown) => new UnavailableError(backend, cause);
