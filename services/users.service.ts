/**
 * users: API users and their bearer tokens. Owns the `users` table. Tokens are 32 random bytes,
 * shown once at creation and stored as their SHA-256 (they are high-entropy secrets, so a fast hash
 * is enough); a token is never logged.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DataTypes } from "sequelize";
import type { Clock } from "../lib/core/clock";
import type { Config } from "../lib/config";
import { isUniqueViolation } from "../lib/adapters/sql/db";
import { writePrivateFile } from "../lib/adapters/local/data-dir";
import { ADMIN_TOKEN_FILE, DATA_DIR_MODE } from "../lib/core/data-layout";
import { conflict, forbidden, notFound, unauthorized } from "../lib/core/errors";
import type { AuthUser, User } from "../lib/core/types";
import { iso } from "../lib/core/views";
import { ErrorsMixin } from "../lib/adapters/moleculer/errors";
import { DbMixin, type DbMixinHost } from "../mixins/db.mixin";

export interface UsersDeps {
	config: Config;
	clock: Clock;
}

interface UserRow {
	id: string;
	name: string;
	admin: boolean;
	tokenHash: string;
	createdAt: number;
}

type Ctx<P = Record<string, unknown>> = Context<P, { user?: AuthUser; $statusCode?: number; $location?: string }>;

interface UsersThis extends DbMixinHost {
	requireAdmin(ctx: Ctx<unknown>): AuthUser;
	ensureAdmin(): Promise<void>;
}

export const BUILTIN_ADMIN = "admin";

export function hashToken(token: string): string {
	return createHash("sha256").update(token, "utf8").digest("hex");
}

export function newToken(): string {
	return randomBytes(32).toString("base64url");
}

const view = (r: UserRow): User => ({ id: r.id, name: r.name, admin: !!r.admin, createdAt: iso(Number(r.createdAt)) as string });

export default function createUsersService(deps: UsersDeps): ServiceSchema<ServiceSettingSchema, UsersThis> {
	const { config, clock } = deps;
	return {
		name: "users",
		mixins: [
			DbMixin<UsersThis>({
				config,
				clock,
				owner: "users",
				model: () => ({
					name: "user",
					define: {
						id: { type: DataTypes.STRING(36), primaryKey: true },
						name: { type: DataTypes.STRING(64), allowNull: false, unique: "users_name_unique" },
						admin: { type: DataTypes.BOOLEAN, allowNull: false },
						tokenHash: { type: DataTypes.STRING(64), allowNull: false, unique: "users_token_unique" },
						createdAt: { type: DataTypes.BIGINT, allowNull: false },
					},
					options: { tableName: "users", timestamps: false },
				}),
				// Few writes (users are managed by hand): no lock needed.
				serializeSqlite: false,
				async afterConnected(this: UsersThis) {
					await this.ensureAdmin();
				},
			}),
			ErrorsMixin(),
		],
		actions: {
			/** Resolve a bearer token to its user, or null. */
			authenticate: {
				visibility: "public",
				params: { token: { type: "string", min: 1, max: 512 } },
				async handler(this: UsersThis, ctx: Ctx<{ token: string }>): Promise<AuthUser | null> {
					const row = (await this.guard(() =>
						this.adapter.model.findOne({ where: { tokenHash: hashToken(ctx.params.token) }, raw: true }),
					)) as unknown as UserRow | null;
					return row ? { id: row.id, name: row.name, admin: !!row.admin } : null;
				},
			},

			createUser: {
				params: {
					name: { type: "string", min: 1, max: 64, pattern: /^[A-Za-z0-9_.@-]+$/ },
					admin: { type: "boolean", optional: true, default: false },
					$$strict: true,
				},
				async handler(this: UsersThis, ctx: Ctx<{ name: string; admin: boolean }>) {
					this.requireAdmin(ctx);
					const token = newToken();
					const row: UserRow = { id: randomUUID(), name: ctx.params.name, admin: !!ctx.params.admin, tokenHash: hashToken(token), createdAt: clock.now() };
					try {
						await this.guard(() => this.adapter.model.create(row as never));
					} catch (err) {
						if (isUniqueViolation(err)) throw conflict(`A user named ${row.name} exists`, "name");
						throw err;
					}
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/users/${row.id}`;
					return { ...view(row), token };
				},
			},

			listUsers: {
				params: {},
				async handler(this: UsersThis, ctx: Ctx) {
					this.requireAdmin(ctx);
					const rows = (await this.guard(() => this.adapter.model.findAll({ order: [["createdAt", "ASC"]], raw: true }))) as unknown as UserRow[];
					return rows.map(view);
				},
			},

			removeUser: {
				params: { id: { type: "string", min: 1, max: 64 } },
				async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
					const me = this.requireAdmin(ctx);
					if (ctx.params.id === me.id) throw conflict("You cannot delete yourself", "id");
					const row = (await this.guard(() => this.adapter.model.findByPk(ctx.params.id, { raw: true }))) as unknown as UserRow | null;
					if (!row) throw notFound("User", ctx.params.id);
					if (row.name === BUILTIN_ADMIN) throw conflict("The built-in admin cannot be deleted", "id");
					await this.guard(() => this.adapter.model.destroy({ where: { id: row.id } }));
					return view(row);
				},
			},
		},

		methods: {
			requireAdmin(ctx: Ctx<unknown>): AuthUser {
				const user = ctx.meta.user;
				if (!user) throw unauthorized();
				if (!user.admin) throw forbidden("Only admins may manage users");
				return user;
			},

			/**
			 * The built-in admin: CRONJOB_ADMIN_TOKEN sets its token (re-hashed at every start, so a
			 * rotated variable takes effect); without it, the first start generates a token, prints it
			 * once and writes it to <data>/admin-token (0600).
			 */
			async ensureAdmin(this: UsersThis) {
				const model = this.adapter.model;
				const existing = (await model.findOne({ where: { name: BUILTIN_ADMIN }, raw: true })) as unknown as UserRow | null;
				if (config.adminToken) {
					const tokenHash = hashToken(config.adminToken);
					if (existing) {
						if (existing.tokenHash !== tokenHash) await model.update({ tokenHash, admin: true }, { where: { id: existing.id } });
					} else {
						await model.create({ id: randomUUID(), name: BUILTIN_ADMIN, admin: true, tokenHash, createdAt: clock.now() } as never).catch((err: unknown) => {
							if (!isUniqueViolation(err)) throw err; // another node created it at the same time
						});
					}
					return;
				}
				if (existing || (await model.count({ where: { admin: true } })) > 0) return;
				const token = newToken();
				try {
					await model.create({ id: randomUUID(), name: BUILTIN_ADMIN, admin: true, tokenHash: hashToken(token), createdAt: clock.now() } as never);
				} catch (err) {
					if (isUniqueViolation(err)) return;
					throw err;
				}
				fs.mkdirSync(config.dataDir, { recursive: true, mode: DATA_DIR_MODE });
				const file = path.join(config.dataDir, ADMIN_TOKEN_FILE);
				writePrivateFile(file, token + "\n");
				// Printed once, on stdout, never through the logger.
				process.stdout.write(`\nGenerated the admin token (also written to ${file}, mode 0600):\n  ${token}\n\n`);
			},
		},
	};
}
