/**
 * Every error the services raise comes from here: MoleculerClientError for 4xx (with the field in
 * `data`), MoleculerRetryableError for transient faults (503).
 */
import { Errors } from "moleculer";

const { MoleculerClientError, MoleculerRetryableError } = Errors;

export interface FieldErrorData {
	field: string;
	[key: string]: unknown;
}

/** 422: a request field is invalid. `field` names it. */
export function invalidField(field: string, message: string, extra: Record<string, unknown> = {}) {
	return new MoleculerClientError(message, 422, "VALIDATION_ERROR", { field, ...extra });
}

export function notFound(what: string, id: string) {
	return new MoleculerClientError(`${what} not found`, 404, "NOT_FOUND", { field: "id", id });
}

export function forbidden(message: string, field?: string) {
	return new MoleculerClientError(message, 403, "FORBIDDEN", field ? { field } : {});
}

export function unauthorized(message = "Missing or invalid bearer token") {
	return new MoleculerClientError(message, 401, "UNAUTHORIZED", { field: "authorization" });
}

export function tooLarge(field: string, limit: number) {
	return new MoleculerClientError(`${field} is larger than the limit of ${limit} bytes`, 413, "PAYLOAD_TOO_LARGE", { field, limit });
}

export function conflict(message: string, field: string) {
	return new MoleculerClientError(message, 409, "CONFLICT", { field });
}

/** 503: a backend (database, object store, coordination) is unreachable; retry later. */
export function unavailable(backend: string, cause?: unknown) {
	const reason = cause instanceof Error ? cause.message : cause ? String(cause) : "unavailable";
	return new MoleculerRetryableError(`${backend} is unavailable: ${reason}`, 503, "SERVICE_UNAVAILABLE", { backend });
}

/** A plain validation failure from the pure modules, turned into invalidField at the service edge. */
export class FieldError extends Error {
	constructor(
		public readonly field: string,
		message: string,
	) {
		super(message);
		this.name = "FieldError";
	}
}

/**
 * Turn an error from a pure module into the client error the API answers: a FieldError becomes 422
 * naming its field (403 for a forbidden value, 413 for an oversized one); anything else is returned
 * unchanged.
 */
export function toClientError(err: unknown): unknown {
	if (!(err instanceof FieldError)) return err;
	const kind = (err as { constructor: { name: string } }).constructor.name;
	if (kind === "ForbiddenFieldError") return forbidden(err.message, err.field);
	if (kind === "TooLargeError") return tooLarge(err.field, Number((err as unknown as { limit?: number }).limit ?? 0));
	return invalidField(err.field, err.message);
}
