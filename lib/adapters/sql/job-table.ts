/**
 * The queries of the `jobs` table (its model: lib/adapters/sql/models.ts), one statement each; the
 * caller wraps each call (connection errors, SQLite's one-at-a-time lock) and does the paging.
 */
import { Op, type Model, type ModelStatic, type Transaction } from "sequelize";
import type { JobRow } from "../../core/views";

export interface JobFilter {
	/** Only this owner's jobs (a non-admin caller). */
	owner?: string;
	status?: string;
	limit: number;
	offset: number;
}

export class JobTable {
	constructor(private readonly model: ModelStatic<Model>) {}

	/** A page of jobs, newest first. */
	async list(filter: JobFilter): Promise<JobRow[]> {
		const where: Record<string, unknown> = {};
		if (filter.owner !== undefined) where.owner = filter.owner;
		if (filter.status) where.status = filter.status;
		const order: [string, string][] = [
			["createdAt", "DESC"],
			["id", "ASC"],
		];
		return (await this.model.findAll({ where, order, limit: filter.limit, offset: filter.offset, raw: true })) as unknown as JobRow[];
	}

	/** One job, its catch-up baseline and deletion time as numbers; null when unknown. */
	async find(id: string): Promise<JobRow | null> {
		const row = (await this.model.findByPk(id, { raw: true })) as unknown as JobRow | null;
		if (!row) return null;
		return {
			...row,
			lastScheduledAt: row.lastScheduledAt === null ? null : Number(row.lastScheduledAt),
			deletedAt: row.deletedAt === null ? null : Number(row.deletedAt),
		};
	}

	/** These jobs (one IN list: at most a thousand ids), raw. */
	async byIds(ids: readonly string[]): Promise<JobRow[]> {
		return (await this.model.findAll({ where: { id: [...ids] }, raw: true })) as unknown as JobRow[];
	}

	async insert(row: JobRow, transaction?: Transaction): Promise<void> {
		await this.model.create(row as never, transaction ? { transaction } : {});
	}

	async update(ids: string | readonly string[], changes: Partial<JobRow>, transaction?: Transaction): Promise<void> {
		await this.model.update(changes, { where: { id: typeof ids === "string" ? ids : [...ids] }, ...(transaction ? { transaction } : {}) });
	}

	/**
	 * Ids of the jobs to assign (not deleted, not suspended, not finished). With `limit`, one page in
	 * id order after `after` (keyset paging).
	 */
	async schedulableIds(page: { after?: string; limit?: number }): Promise<string[]> {
		const where: Record<string | symbol, unknown> = { deletedAt: null, suspended: false, status: { [Op.ne]: "finished" } };
		if (page.after !== undefined) where.id = { [Op.gt]: page.after };
		const paging = page.limit !== undefined ? { order: [["id", "ASC"]] as [string, string][], limit: page.limit } : {};
		const rows = (await this.model.findAll({ attributes: ["id"], where, raw: true, ...paging })) as unknown as { id: string }[];
		return rows.map((r) => r.id);
	}
}
