/**
 * Named API tokens, pure: expiry, the last-used write interval, the fields of POST /tokens and the
 * view of a token (never its secret or hash). The users service stores them (its `tokens` table) and
 * lib/core/roles.ts decides who may create, list and revoke them.
 */
import { FieldError } from "./errors";
import type { Role } from "./roles";

/** last-used is written at most this often per token (not on every request). */
export const TOKEN_TOUCH_INTERVAL_MS = 60_000;

/** The name a user's token gets when it comes from before named tokens (and the built-in admin's). */
export const DEFAULT_TOKEN_NAME = "default";

export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9_.@:-][A-Za-z0-9_.@: -]{0,63}$/;

export function isExpired(expiresAt: number | null, now: number): boolean {
	return expiresAt !== null && now >= expiresAt;
}

/** Whether this request writes the token's last-used time (never used, or not for a minute). */
export function shouldTouch(lastUsedAt: number | null, now: number): boolean {
	return lastUsedAt === null || now - lastUsedAt >= TOKEN_TOUCH_INTERVAL_MS;
}

/** A token's name: 1-64 characters of letters, digits, space and `_.@:-`, not starting with a space. */
export function tokenName(v: unknown): string {
	if (typeof v !== "string" || !TOKEN_NAME_PATTERN.test(v) || v !== v.trimEnd()) {
		throw new FieldError("name", `name must be 1 to 64 characters of letters, digits, space and _.@:- (no leading or trailing space)`);
	}
	return v;
}

/**
 * `expiresAt` of POST /tokens: absent or null (never expires), or an ISO 8601 instant with a time zone
 * (`2027-01-01T00:00:00Z`), in the future. Answers epoch ms or null.
 */
export function expiryOf(v: unknown, now: number): number | null {
	if (v === undefined || v === null) return null;
	if (typeof v !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/.test(v)) {
		throw new FieldError("expiresAt", "expiresAt must be an ISO 8601 instant with a time zone, e.g. 2027-01-01T00:00:00Z");
	}
	const ms = Date.parse(v);
	if (!Number.isFinite(ms)) throw new FieldError("expiresAt", "expiresAt is not a valid instant");
	if (ms <= now) throw new FieldError("expiresAt", "expiresAt must be in the future");
	return ms;
}

/** A stored token (times in epoch ms). */
export interface TokenRecord {
	id: string;
	userId: string;
	name: string;
	/** NULL: the user's role. */
	role: Role | null;
	expiresAt: number | null;
	createdAt: number;
	lastUsedAt: number | null;
}

export interface TokenView {
	id: string;
	user: string;
	name: string;
	role: Role | null;
	expiresAt: string | null;
	expired: boolean;
	createdAt: string;
	lastUsedAt: string | null;
	/** The token this request came with. */
	current: boolean;
}

const isoOf = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function tokenView(t: TokenRecord, now: number, currentId: string | null | undefined): TokenView {
	return {
		id: t.id,
		user: t.userId,
		name: t.name,
		role: t.role,
		expiresAt: isoOf(t.expiresAt),
		expired: isExpired(t.expiresAt, now),
		createdAt: isoOf(t.createdAt) as string,
		lastUsedAt: isoOf(t.lastUsedAt),
		current: t.id === currentId,
	};
}
