/**
 * An audit table (lib/core/audit.ts records) in a service's own database: `job_audit` (the jobs
 * service), `user_audit` (the users service). Inserts take the transaction of the change they record.
 */
import { Op, type Model, type ModelStatic, type Sequelize, type Transaction } from "sequelize";
import type { AuditFilter, AuditRecord } from "../../core/audit";
import { attributes } from "./models";
import type { Column } from "../../core/job-schema";
import { syncModel } from "./db";

const COLUMNS: Record<keyof Omit<AuditRecord, "change"> | "change", Column> = {
	id: { kind: "string", length: 36, primaryKey: true },
	at: { kind: "bigint" },
	userId: { kind: "string", length: 36, nullable: true },
	userName: { kind: "string", length: 64, nullable: true },
	tokenName: { kind: "string", length: 64, nullable: true },
	address: { kind: "string", length: 64, nullable: true },
	action: { kind: "string", length: 32 },
	target: { kind: "string", length: 64, nullable: true },
	change: { kind: "text", size: "medium", nullable: true },
	outcome: { kind: "string", length: 200 },
};

type Row = Omit<AuditRecord, "change"> & { change: string | null };

/** A change and its record, in one transaction: both or neither. */
export async function writeAudited(db: Sequelize, audit: AuditTable, rec: AuditRecord, write: (t: Transaction) => Promise<void>): Promise<void> {
	await db.transaction(async (t) => {
		await write(t);
		await audit.insert(rec, t);
	});
}

export class AuditTable {
	private constructor(private readonly model: ModelStatic<Model>) {}

	static async open(db: Sequelize, tableName: string): Promise<AuditTable> {
		const model = db.define(tableName, attributes(COLUMNS, db.getDialect()), {
			tableName,
			timestamps: false,
			indexes: [{ fields: ["at"] }, { fields: ["target"] }, { fields: ["userId"] }],
		});
		await syncModel(model);
		return new AuditTable(model);
	}

	async insert(rec: AuditRecord, transaction?: Transaction): Promise<void> {
		const row: Row = { ...rec, change: rec.change === null ? null : JSON.stringify(rec.change), outcome: rec.outcome.slice(0, 200) };
		await this.model.create(row as never, transaction ? { transaction } : {});
	}

	/** A page, newest first. */
	async list(f: AuditFilter): Promise<AuditRecord[]> {
		const where: Record<string | symbol, unknown> = {};
		if (f.user) where.userId = f.user;
		if (f.target) where.target = f.target;
		if (f.action) where.action = f.action;
		if (f.from !== undefined || f.to !== undefined)
			where.at = { ...(f.from !== undefined ? { [Op.gte]: f.from } : {}), ...(f.to !== undefined ? { [Op.lt]: f.to } : {}) };
		const rows = (await this.model.findAll({
			where,
			order: [
				["at", "DESC"],
				["id", "DESC"],
			],
			limit: f.limit,
			offset: f.offset,
			raw: true,
		})) as unknown as Row[];
		return rows.map((r) => ({ ...r, at: Number(r.at), change: r.change ? (JSON.parse(r.change) as Record<string, unknown>) : null }));
	}

	/** Remove records older than `before` (retention); answers how many. */
	async prune(before: number): Promise<number> {
		return this.model.destroy({ where: { at: { [Op.lt]: before } } });
	}

	private lastPrune = -Infinity;

	/**
	 * The retention (`days`; 0 keeps every record), at most once an hour: the prune to run now, or
	 * null. The caller runs it in the background (a request does not wait for it).
	 */
	pruneDue(now: number, days: number): (() => Promise<number>) | null {
		if (days <= 0 || now - this.lastPrune < 3_600_000) return null;
		this.lastPrune = now;
		return () => this.prune(now - days * 86_400_000);
	}
}
