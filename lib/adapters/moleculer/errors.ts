/**
 * The service edge of lib/core/errors.ts: our plain errors become Moleculer errors, by class. A
 * retryable one (a backend is down) becomes MoleculerRetryableError, which the broker's retry policy
 * keys on; a 4xx becomes MoleculerClientError (the field in `data`); anything else of ours a
 * MoleculerError with its code. Errors that are not ours pass unchanged.
 */
import { Errors, type ServiceSchema } from "moleculer";
import { CronjobError } from "../../core/errors";

const { MoleculerError, MoleculerClientError, MoleculerRetryableError } = Errors;

export function toMoleculerError(err: unknown): unknown {
	if (!(err instanceof CronjobError)) return err;
	const data = { ...err.data };
	if (err.retryable) return new MoleculerRetryableError(err.message, err.code, err.type, data);
	if (err.code >= 400 && err.code < 500) return new MoleculerClientError(err.message, err.code, err.type, data);
	return new MoleculerError(err.message, err.code, err.type, data);
}

/**
 * A mixin for every service: whatever an action throws leaves the service as a Moleculer error
 * (toMoleculerError), the one place where the mapping happens.
 */
export function ErrorsMixin(): Partial<ServiceSchema> {
	return {
		hooks: {
			error: {
				"*"(_ctx: unknown, err: unknown) {
					throw toMoleculerError(err);
				},
			},
		},
	};
}
