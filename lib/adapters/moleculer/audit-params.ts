/**
 * The audit log's query, as the services' actions take it (`jobs.audit`, `users.audit`, and the
 * gateway's `api.audit`, which merges the two): filters, a time range as ISO 8601 text, paging.
 */
import type { Context } from "moleculer";
import { invalidField } from "../../core/errors";
import type { AuditFilter } from "../../core/audit";
import { requireRole } from "../../core/roles";
import type { AuthUser } from "../../core/types";
import { iso } from "../../core/views";
import type { AuditTable } from "../sql/audit-table";

/** Records a REST page may ask for, and how deep it may page (the gateway asks each service for offset + limit). */
export const AUDIT_PAGE_MAX = 1000;
export const AUDIT_OFFSET_MAX = 100_000;

export interface AuditQuery {
	user?: string;
	job?: string;
	action?: string;
	from?: string;
	to?: string;
	limit?: number;
	offset?: number;
}

/** fastest-validator params; `limitMax` is AUDIT_PAGE_MAX for the REST route, more for the services' own actions. */
export function auditParams(limitMax: number) {
	return {
		user: { type: "string", min: 1, max: 64, optional: true },
		job: { type: "string", min: 1, max: 64, optional: true },
		action: { type: "string", min: 1, max: 32, optional: true },
		from: { type: "string", min: 1, max: 40, optional: true },
		to: { type: "string", min: 1, max: 40, optional: true },
		limit: { type: "number", integer: true, min: 1, max: limitMax, optional: true, convert: true },
		offset: { type: "number", integer: true, min: 0, max: AUDIT_OFFSET_MAX, optional: true, convert: true },
	};
}

/** The query as a table filter; a time that does not parse is a 422 naming it. */
export function auditFilter(q: AuditQuery): AuditFilter {
	const time = (field: "from" | "to"): number | undefined => {
		const v = q[field];
		if (v === undefined) return undefined;
		const ms = Date.parse(v);
		if (!Number.isFinite(ms)) throw invalidField(field, `${field} must be an ISO 8601 time, e.g. 2026-12-01T00:00:00Z`);
		return ms;
	};
	return { user: q.user, target: q.job, action: q.action, from: time("from"), to: time("to"), limit: q.limit ?? 100, offset: q.offset ?? 0 };
}

/** A service's own audit records as an action (`jobs.audit`, `users.audit`): newest first; admins only when a user calls. */
export function auditAction() {
	return {
		visibility: "public" as const,
		params: auditParams(AUDIT_PAGE_MAX + AUDIT_OFFSET_MAX),
		async handler(this: { audit: AuditTable; guard<T>(fn: () => Promise<T>): Promise<T> }, ctx: Context<AuditQuery, { user?: AuthUser }>) {
			if (ctx.meta.user) requireRole(ctx.meta.user, "admin", "Reading the audit log");
			const filter = auditFilter(ctx.params);
			return (await this.guard(() => this.audit.list(filter))).map((r) => ({ ...r, at: iso(r.at) }));
		},
	};
}
