/**
 * The users service's tables: `users` (its main model, moleculer-db's) and `tokens` (named bearer
 * tokens, several per user, stored as the SHA-256 of the secret under a unique index), and their
 * queries, one statement or one transaction each; the caller wraps each call (DbMixin guard).
 *
 * Upgrade of an older installation, in place: `users.role` and `users.viewAll` are nullable columns
 * added by syncModel (a NULL role reads as the `admin` flag: lib/core/roles.ts storedRole), and each
 * user's single token (`users.tokenHash`) moves to `tokens` as "default" once (moveLegacyTokens); the
 * column then holds `moved:<id>`, which no token hashes to, so that it is a credential no more (and a
 * revoked default token does not come back at the next start).
 */
import { randomUUID } from "node:crypto";
import { DataTypes, Op, QueryTypes, type Model, type ModelStatic, type Sequelize, type Transaction } from "sequelize";
import { isRole, type Role } from "../../core/roles";
import { DEFAULT_TOKEN_NAME, TOKEN_TOUCH_INTERVAL_MS, type TokenRecord } from "../../core/tokens";
import { isUniqueViolation } from "./db";
import type { ModelDefinition } from "./models";

/** A `users` row. */
export interface UserRow {
	id: string;
	name: string;
	/** role === "admin"; what a row from before roles has instead of `role`. */
	admin: boolean;
	/** Before named tokens: the SHA-256 of the user's one token; since: `moved:<id>`. */
	tokenHash: string;
	createdAt: number;
	/** NULL in rows from before roles. */
	role: string | null;
	viewAll: boolean | null;
}

/** A `tokens` row: a TokenRecord and the hash of its secret. */
export interface TokenRow extends TokenRecord {
	tokenHash: string;
}

/** What the lookup of a bearer token answers: the token and its user, from one indexed read. */
export interface TokenLookup {
	token: { id: string; name: string | null; tokenHash: string; role: string | null; expiresAt: number | null; lastUsedAt: number | null };
	user: { id: string; name: string; admin: unknown; role: string | null; viewAll: unknown };
}

export const MOVED_PREFIX = "moved:";

export function userModel(): ModelDefinition {
	return {
		name: "user",
		define: {
			id: { type: DataTypes.STRING(36), primaryKey: true },
			name: { type: DataTypes.STRING(64), allowNull: false, unique: "users_name_unique" },
			admin: { type: DataTypes.BOOLEAN, allowNull: false },
			tokenHash: { type: DataTypes.STRING(64), allowNull: false, unique: "users_token_unique" },
			createdAt: { type: DataTypes.BIGINT, allowNull: false },
			role: { type: DataTypes.STRING(16), allowNull: true },
			viewAll: { type: DataTypes.BOOLEAN, allowNull: true },
		},
		options: { tableName: "users", timestamps: false },
	};
}

export function defineTokenModel(seq: Sequelize): ModelStatic<Model> {
	return seq.define(
		"token",
		{
			id: { type: DataTypes.STRING(36), primaryKey: true },
			userId: { type: DataTypes.STRING(36), allowNull: false },
			name: { type: DataTypes.STRING(64), allowNull: false },
			tokenHash: { type: DataTypes.STRING(64), allowNull: false },
			role: { type: DataTypes.STRING(16), allowNull: true },
			expiresAt: { type: DataTypes.BIGINT, allowNull: true },
			createdAt: { type: DataTypes.BIGINT, allowNull: false },
			lastUsedAt: { type: DataTypes.BIGINT, allowNull: true },
		},
		{
			tableName: "tokens",
			timestamps: false,
			indexes: [
				{ name: "tokens_hash_unique", unique: true, fields: ["tokenHash"] },
				// Also the index of a user's tokens (its prefix).
				{ name: "tokens_user_name_unique", unique: true, fields: ["userId", "name"] },
			],
		},
	);
}

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

function tokenRecord(r: Record<string, unknown>): TokenRow {
	return {
		id: r.id as string,
		userId: r.userId as string,
		name: r.name as string,
		tokenHash: r.tokenHash as string,
		role: isRole(r.role) ? r.role : null,
		expiresAt: num(r.expiresAt),
		createdAt: Number(r.createdAt),
		lastUsedAt: num(r.lastUsedAt),
	};
}

function userRecord(r: Record<string, unknown>): UserRow {
	return {
		id: r.id as string,
		name: r.name as string,
		admin: r.admin === true || r.admin === 1,
		tokenHash: r.tokenHash as string,
		createdAt: Number(r.createdAt),
		role: (r.role as string | null) ?? null,
		viewAll: r.viewAll === null || r.viewAll === undefined ? null : r.viewAll === true || r.viewAll === 1,
	};
}

export class UserTables {
	constructor(
		private readonly seq: Sequelize,
		private readonly users: ModelStatic<Model>,
		private readonly tokens: ModelStatic<Model>,
	) {}

	/** The token with this hash and its user: one read by the unique index (and the user's primary key). */
	async lookup(tokenHash: string): Promise<TokenLookup | null> {
		const rows = await this.seq.query<Record<string, unknown>>(
			"SELECT t.id AS tokenId, t.name AS tokenName, t.tokenHash AS tokenHash, t.role AS tokenRole, t.expiresAt AS expiresAt, t.lastUsedAt AS lastUsedAt," +
				" u.id AS userId, u.name AS userName, u.admin AS admin, u.role AS userRole, u.viewAll AS viewAll" +
				" FROM tokens t JOIN users u ON u.id = t.userId WHERE t.tokenHash = ?",
			{ replacements: [tokenHash], type: QueryTypes.SELECT },
		);
		const r = rows[0];
		if (!r) return null;
		return {
			token: {
				id: r.tokenId as string,
				name: (r.tokenName as string | null) ?? null,
				tokenHash: r.tokenHash as string,
				role: (r.tokenRole as string | null) ?? null,
				expiresAt: num(r.expiresAt),
				lastUsedAt: num(r.lastUsedAt),
			},
			user: { id: r.userId as string, name: r.userName as string, admin: r.admin, role: (r.userRole as string | null) ?? null, viewAll: r.viewAll },
		};
	}

	/** Write a token's last-used time unless another request (on any node) did within the interval. */
	async touch(tokenId: string, now: number): Promise<void> {
		await this.tokens.update(
			{ lastUsedAt: now },
			{ where: { id: tokenId, [Op.or]: [{ lastUsedAt: null }, { lastUsedAt: { [Op.lte]: now - TOKEN_TOUCH_INTERVAL_MS } }] } },
		);
	}

	/**
	 * Each user whose one token of before named tokens is still in `users.tokenHash`: that token becomes
	 * its "default" token (created when the user was), and the column `moved:<id>`. Safe when several
	 * processes start at once (the unique hash index refuses the second copy). Answers how many moved.
	 */
	async moveLegacyTokens(): Promise<number> {
		const legacy = (await this.users.findAll({ where: { tokenHash: { [Op.notLike]: `${MOVED_PREFIX}%` } }, raw: true })).map((r) =>
			userRecord(r as unknown as Record<string, unknown>),
		);
		for (const u of legacy) {
			try {
				await this.tokens.create({
					id: randomUUID(),
					userId: u.id,
					name: DEFAULT_TOKEN_NAME,
					tokenHash: u.tokenHash,
					role: null,
					expiresAt: null,
					createdAt: u.createdAt,
					lastUsedAt: null,
				});
			} catch (err) {
				if (!isUniqueViolation(err)) throw err; // another process moved it
			}
			await this.users.update({ tokenHash: MOVED_PREFIX + u.id }, { where: { id: u.id, tokenHash: u.tokenHash } });
		}
		return legacy.length;
	}

	/** A new user and its first token, together. */
	async createUser(user: Omit<UserRow, "tokenHash">, token: TokenRow, within?: Transaction): Promise<void> {
		await this.inTransaction(within, async (transaction) => {
			await this.users.create({ ...user, tokenHash: MOVED_PREFIX + user.id }, { transaction });
			await this.tokens.create({ ...token }, { transaction });
		});
	}

	/** `fn` in the caller's transaction, or in one of its own. */
	private async inTransaction(within: Transaction | undefined, fn: (t: Transaction) => Promise<void>): Promise<void> {
		if (within) await fn(within);
		else await this.seq.transaction(fn);
	}

	/** A user and all its tokens, together. */
	async removeUser(id: string, within?: Transaction): Promise<void> {
		await this.inTransaction(within, async (transaction) => {
			await this.tokens.destroy({ where: { userId: id }, transaction });
			await this.users.destroy({ where: { id }, transaction });
		});
	}

	async user(id: string): Promise<UserRow | null> {
		const r = await this.users.findByPk(id, { raw: true });
		return r ? userRecord(r as unknown as Record<string, unknown>) : null;
	}

	async userNamed(name: string): Promise<UserRow | null> {
		const r = await this.users.findOne({ where: { name }, raw: true });
		return r ? userRecord(r as unknown as Record<string, unknown>) : null;
	}

	async listUsers(): Promise<UserRow[]> {
		const rows = await this.users.findAll({ order: [["createdAt", "ASC"]], raw: true });
		return rows.map((r) => userRecord(r as unknown as Record<string, unknown>));
	}

	/** Users with the admin role (or, from before roles, the admin flag). */
	async countAdmins(): Promise<number> {
		return this.users.count({ where: { [Op.or]: [{ role: "admin" }, { role: null, admin: true }] } });
	}

	async setRole(id: string, role: Role, viewAll: boolean, transaction?: Transaction): Promise<void> {
		await this.users.update({ role, admin: role === "admin", viewAll }, { where: { id }, ...(transaction ? { transaction } : {}) });
	}

	async insertToken(token: TokenRow, transaction?: Transaction): Promise<void> {
		await this.tokens.create({ ...token }, transaction ? { transaction } : {});
	}

	/** A user's tokens, oldest first. */
	async tokensOf(userId: string): Promise<TokenRow[]> {
		const rows = await this.tokens.findAll({
			where: { userId },
			order: [
				["createdAt", "ASC"],
				["id", "ASC"],
			],
			raw: true,
		});
		return rows.map((r) => tokenRecord(r as unknown as Record<string, unknown>));
	}

	async token(id: string): Promise<TokenRow | null> {
		const r = await this.tokens.findByPk(id, { raw: true });
		return r ? tokenRecord(r as unknown as Record<string, unknown>) : null;
	}

	async tokenNamed(userId: string, name: string): Promise<TokenRow | null> {
		const r = await this.tokens.findOne({ where: { userId, name }, raw: true });
		return r ? tokenRecord(r as unknown as Record<string, unknown>) : null;
	}

	async setTokenHash(id: string, tokenHash: string): Promise<void> {
		await this.tokens.update({ tokenHash }, { where: { id } });
	}

	/** Answers whether it was there. */
	async removeToken(id: string, transaction?: Transaction): Promise<boolean> {
		return (await this.tokens.destroy({ where: { id }, ...(transaction ? { transaction } : {}) })) > 0;
	}
}
