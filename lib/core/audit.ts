/**
 * The audit log's records, pure: who did what to which object, from where, when, with what outcome,
 * and the change itself with its secrets masked. The services write a record in the same
 * transaction as the change it records (or the change does not happen); refused requests are
 * recorded too, with their outcome, outside any transaction (nothing changed).
 */
import { SECRET_MASK } from "./job-schema";

export type AuditAction =
	| "job.create"
	| "job.update"
	| "job.suspend"
	| "job.resume"
	| "job.delete"
	| "job.run"
	| "user.create"
	| "user.update"
	| "user.delete"
	| "token.create"
	| "token.revoke"
	| "auth.failed"
	| "auth.rate_limited";

export interface AuditActor {
	userId: string | null;
	userName: string | null;
	tokenName: string | null;
	address: string | null;
}

export interface AuditRecord extends AuditActor {
	id: string;
	at: number;
	action: AuditAction;
	/** The job, user or token acted on (null when there is none yet, e.g. a refused create). */
	target: string | null;
	/** What changed, secrets masked (JSON-able). */
	change: Record<string, unknown> | null;
	/** "ok", or why it was refused ("422 VALIDATION_ERROR secretEnv", "403 FORBIDDEN"). */
	outcome: string;
}

/** Who made a request: the caller the gateway authenticated (with its token's name) and the client's address. */
export function actorOf(user: { id: string; name: string; tokenName?: string | null } | null | undefined, address: string | null | undefined): AuditActor {
	return { userId: user?.id ?? null, userName: user?.name ?? null, tokenName: user?.tokenName ?? null, address: address ?? null };
}

/** A new record of `action` on `target` by `actor`, now. */
export function auditRecord(
	id: string,
	at: number,
	actor: AuditActor,
	action: AuditAction,
	target: string | null,
	change: Record<string, unknown> | null,
	outcome = "ok",
): AuditRecord {
	return { id, at, ...actor, action, target, change, outcome };
}

/** A job change as the audit keeps it: secretEnv values masked, an uploaded executable by its size only. */
export function jobChange(change: Record<string, unknown>): Record<string, unknown> {
	const out: Record<string, unknown> = { ...change };
	if (out.secretEnv && typeof out.secretEnv === "object") {
		out.secretEnv = Object.fromEntries(Object.keys(out.secretEnv).map((k) => [k, SECRET_MASK]));
	}
	if (typeof out.executable === "string" && out.type !== "command" && out.executable.length > 256) {
		out.executable = `(upload, ${out.executable.length} characters of base64)`;
	}
	return out;
}

/** The action a job patch is: a patch of `suspended` alone is a suspend or a resume. */
export function jobPatchAction(patch: Record<string, unknown>): AuditAction {
	const keys = Object.keys(patch);
	if (keys.length === 1 && keys[0] === "suspended") return patch.suspended ? "job.suspend" : "job.resume";
	return "job.update";
}

/** An error's outcome text: its code, type and field, never its message (which may quote the input). */
export function refusedOutcome(err: unknown): string {
	const e = (err ?? {}) as { code?: unknown; type?: unknown; data?: { field?: unknown } | null };
	const parts = [typeof e.code === "number" ? String(e.code) : "error", typeof e.type === "string" ? e.type : "ERROR"];
	if (e.data && typeof e.data.field === "string") parts.push(e.data.field);
	return parts.join(" ");
}

/** Filters of GET /audit. */
export interface AuditFilter {
	user?: string;
	target?: string;
	action?: string;
	from?: number;
	to?: number;
	limit: number;
	offset: number;
}
