/**
 * users: API users, their roles and their named bearer tokens. Owns the `users` and `tokens` tables
 * (lib/adapters/sql/user-tables.ts). Tokens are 32 random bytes, answered once at creation and stored
 * as their SHA-256 under a unique index (they are high-entropy secrets, so a fast hash is enough); a
 * token is never logged. Who may do what is decided in lib/core/roles.ts.
 *
 * Every request's token is looked up here, one indexed read per request (no cache): a revoked token
 * (its row deleted) is refused at once by every API node. A token's last-used time is written at most
 * once a minute (lib/core/tokens.ts shouldTouch), not on every request.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Clock } from "../lib/core/clock";
import type { Config } from "../lib/config";
import { isUniqueViolation, syncModel } from "../lib/adapters/sql/db";
import { writePrivateFile } from "../lib/adapters/local/data-dir";
import { ADMIN_TOKEN_FILE, DATA_DIR_MODE } from "../lib/core/data-layout";
import { defineTokenModel, userModel, UserTables, type TokenRow, type UserRow } from "../lib/adapters/sql/user-tables";
import { conflict, invalidField, notFound, unauthorized } from "../lib/core/errors";
import {
	callerOf,
	changedRole,
	newTokenRole,
	newUserRole,
	requireRole,
	requireTokenListing,
	requireTokenRevocation,
	ROLES,
	storedRole,
	type Role,
} from "../lib/core/roles";
import { DEFAULT_TOKEN_NAME, expiryOf, isExpired, shouldTouch, tokenName, tokenView } from "../lib/core/tokens";
import type { AuthUser, User } from "../lib/core/types";
import { iso } from "../lib/core/views";
import { ErrorsMixin } from "../lib/adapters/moleculer/errors";
import { DbMixin, type DbMixinHost } from "../mixins/db.mixin";
import type { Transaction } from "sequelize";
import { AuditTable, writeAudited } from "../lib/adapters/sql/audit-table";
import { auditAction } from "../lib/adapters/moleculer/audit-params";
import { actorOf, auditRecord, refusedOutcome, type AuditAction } from "../lib/core/audit";

export interface UsersDeps {
	config: Config;
	clock: Clock;
}

type Ctx<P = Record<string, unknown>> = Context<P, { user?: AuthUser; clientAddress?: string; $statusCode?: number; $location?: string }>;

interface UsersThis extends DbMixinHost {
	tables: UserTables;
	audit: AuditTable;
	caller(ctx: Ctx<unknown>): AuthUser;
	ensureAdmin(): Promise<void>;
	/** A change and its audit record in one transaction (or neither); a refused one recorded with its outcome, then thrown again. */
	audited<T>(
		ctx: Ctx<unknown>,
		action: AuditAction,
		target: string | null,
		change: Record<string, unknown> | null,
		write: (t: Transaction) => Promise<T>,
	): Promise<T>;
	/** Run a handler's checks; what they refuse is recorded (nothing changed) and thrown again. */
	checked<T>(ctx: Ctx<unknown>, action: AuditAction, target: string | null, fn: () => Promise<T> | T): Promise<T>;
}

export const BUILTIN_ADMIN = "admin";

/** The built-in admin's "default" token, of this hash. */
function defaultToken(userId: string, tokenHash: string, now: number): TokenRow {
	return { id: randomUUID(), userId, name: DEFAULT_TOKEN_NAME, tokenHash, role: null, expiresAt: null, createdAt: now, lastUsedAt: null };
}

/** A refused request in the audit log (a client error: a fault of ours is logged, not audited); never throws. */
async function recordRefused(svc: UsersThis, ctx: Ctx<unknown>, action: AuditAction, target: string | null, err: unknown, now: number): Promise<void> {
	const code = (err as { code?: unknown }).code;
	if (typeof code !== "number" || code < 400 || code >= 500) return;
	const rec = auditRecord(randomUUID(), now, actorOf(ctx.meta.user, ctx.meta.clientAddress), action, target, null, refusedOutcome(err));
	try {
		await svc.guard(() => svc.audit.insert(rec));
	} catch (e) {
		svc.logger.warn(`Cannot record a refused ${action} in the audit log: ${(e as Error).message}`);
	}
}

export function hashToken(token: string): string {
	return createHash("sha256").update(token, "utf8").digest("hex");
}

export function newToken(): string {
	return randomBytes(32).toString("base64url");
}

/** The two hashes are equal, compared in constant time (both are SHA-256 in hex). */
function sameHash(a: string, b: string): boolean {
	const x = Buffer.from(a, "hex");
	const y = Buffer.from(b, "hex");
	return x.length === 32 && y.length === 32 && timingSafeEqual(x, y);
}

const view = (r: UserRow): User => {
	const role = storedRole(r);
	return { id: r.id, name: r.name, role, admin: role === "admin", viewAll: r.viewAll === true, createdAt: iso(Number(r.createdAt)) as string };
};

const NAME = { type: "string", min: 1, max: 64, pattern: /^[A-Za-z0-9_.@-]+$/ };
const ROLE = { type: "enum", values: [...ROLES], optional: true };

export default function createUsersService(deps: UsersDeps): ServiceSchema<ServiceSettingSchema, UsersThis> {
	const { config, clock } = deps;
	const newTokenRow = (userId: string, name: string, role: Role | null, expiresAt: number | null): { row: TokenRow; secret: string } => {
		const secret = newToken();
		return { secret, row: { id: randomUUID(), userId, name, tokenHash: hashToken(secret), role, expiresAt, createdAt: clock.now(), lastUsedAt: null } };
	};
	return {
		name: "users",
		mixins: [
			DbMixin<UsersThis>({
				config,
				clock,
				owner: "users",
				model: userModel,
				// Few writes (users and tokens are managed by hand, last-used once a minute): no lock needed.
				serializeSqlite: false,
				async afterConnected(this: UsersThis) {
					const tokens = defineTokenModel(this.adapter.db);
					await syncModel(tokens);
					this.tables = new UserTables(this.adapter.db, this.adapter.model, tokens);
					this.audit = await AuditTable.open(this.adapter.db, "user_audit");
					const moved = await this.tables.moveLegacyTokens();
					if (moved > 0) this.logger.info(`Moved the tokens of ${moved} user(s) to the tokens table (named "${DEFAULT_TOKEN_NAME}")`);
					await this.ensureAdmin();
				},
			}),
			ErrorsMixin(),
		],
		actions: {
			/**
			 * Resolve a bearer token to its caller: null for an unknown (or revoked) token, 401 for an
			 * expired one. One indexed read; last-used written at most once a minute.
			 */
			authenticate: {
				visibility: "public",
				params: { token: { type: "string", min: 1, max: 512 } },
				async handler(this: UsersThis, ctx: Ctx<{ token: string }>): Promise<AuthUser | null> {
					const hash = hashToken(ctx.params.token);
					const found = await this.guard(() => this.tables.lookup(hash));
					if (!found || !sameHash(found.token.tokenHash, hash)) return null;
					const now = clock.now();
					if (isExpired(found.token.expiresAt, now)) throw unauthorized("The bearer token has expired");
					if (shouldTouch(found.token.lastUsedAt, now)) {
						try {
							await this.guard(() => this.tables.touch(found.token.id, now));
						} catch (err) {
							this.logger.warn(`Could not write the last use of token ${found.token.id}: ${(err as Error).message}`);
						}
					}
					return callerOf(found.user, found.token);
				},
			},

			createUser: {
				params: {
					name: NAME,
					admin: { type: "boolean", optional: true },
					role: ROLE,
					viewAll: { type: "boolean", optional: true },
					$$strict: true,
				},
				async handler(this: UsersThis, ctx: Ctx<{ name: string; admin?: boolean; role?: Role; viewAll?: boolean }>) {
					const role = await this.checked(ctx, "user.create", null, () => {
						requireRole(ctx.meta.user, "admin", "Managing users");
						return newUserRole(ctx.params);
					});
					const id = randomUUID();
					const user = { id, name: ctx.params.name, admin: role === "admin", role, viewAll: !!ctx.params.viewAll, createdAt: clock.now() };
					const { row, secret } = newTokenRow(id, DEFAULT_TOKEN_NAME, null, null);
					await this.audited(ctx, "user.create", id, { name: user.name, role, viewAll: user.viewAll }, async (t) => {
						try {
							await this.tables.createUser(user, row, t);
						} catch (err) {
							if (isUniqueViolation(err)) throw conflict(`A user named ${user.name} exists`, "name");
							throw err;
						}
					});
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/users/${id}`;
					return { ...view({ ...user, tokenHash: "" }), token: secret, tokenId: row.id };
				},
			},

			listUsers: {
				params: {},
				async handler(this: UsersThis, ctx: Ctx) {
					requireRole(ctx.meta.user, "admin", "Managing users");
					return (await this.guard(() => this.tables.listUsers())).map(view);
				},
			},

			/** Change a user's role or viewAll (admins; not one's own role, not the built-in admin's). */
			updateUser: {
				params: { id: { type: "string", min: 1, max: 64 }, role: ROLE, viewAll: { type: "boolean", optional: true }, $$strict: true },
				async handler(this: UsersThis, ctx: Ctx<{ id: string; role?: Role; viewAll?: boolean }>) {
					const { id, role: newRole, viewAll } = ctx.params;
					const { row, role, current } = await this.checked(ctx, "user.update", id, async () => {
						const me = this.caller(ctx);
						requireRole(me, "admin", "Managing users");
						if (newRole === undefined && viewAll === undefined) throw invalidField("body", "nothing to update: give role or viewAll");
						const found = await this.guard(() => this.tables.user(id));
						if (!found) throw notFound("User", id);
						const was = storedRole(found);
						const next = changedRole(was, { role: newRole });
						if (next !== was && id === me.id) throw conflict("You cannot change your own role", "role");
						if (next !== was && found.name === BUILTIN_ADMIN) throw conflict("The built-in admin stays admin", "role");
						return { row: found, role: next, current: was };
					});
					const next = { ...row, role, admin: role === "admin", viewAll: viewAll ?? row.viewAll === true };
					await this.audited(ctx, "user.update", id, { role: { from: current, to: role }, viewAll: next.viewAll }, (t) =>
						this.tables.setRole(id, role, next.viewAll, t),
					);
					return view(next);
				},
			},

			removeUser: {
				params: { id: { type: "string", min: 1, max: 64 } },
				async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
					const row = await this.checked(ctx, "user.delete", ctx.params.id, async () => {
						const me = this.caller(ctx);
						requireRole(me, "admin", "Managing users");
						if (ctx.params.id === me.id) throw conflict("You cannot delete yourself", "id");
						const found = await this.guard(() => this.tables.user(ctx.params.id));
						if (!found) throw notFound("User", ctx.params.id);
						if (found.name === BUILTIN_ADMIN) throw conflict("The built-in admin cannot be deleted", "id");
						return found;
					});
					await this.audited(ctx, "user.delete", row.id, { name: row.name }, (t) => this.tables.removeUser(row.id, t));
					return view(row);
				},
			},

			/** A failed authentication or a rate-limited request, from the gateway (nothing changed: no transaction). */
			recordAuthEvent: {
				visibility: "public",
				params: {
					action: { type: "enum", values: ["auth.failed", "auth.rate_limited"] },
					address: { type: "string", max: 64 },
					reason: { type: "string", max: 200 },
				},
				async handler(this: UsersThis, ctx: Ctx<{ action: "auth.failed" | "auth.rate_limited"; address: string; reason: string }>) {
					const { action, address, reason } = ctx.params;
					await this.guard(() => this.audit.insert(auditRecord(randomUUID(), clock.now(), actorOf(null, address), action, null, null, reason)));
					return true;
				},
			},

			/** User, token and role changes, refused ones, failed authentications (api.audit merges them with the jobs service's). */
			audit: auditAction(),

			/** A new token of the caller's: the secret is answered this once. */
			createToken: {
				params: { name: { type: "any" }, role: ROLE, expiresAt: { type: "any", optional: true }, $$strict: true },
				async handler(this: UsersThis, ctx: Ctx<{ name: unknown; role?: Role; expiresAt?: unknown }>) {
					const me = this.caller(ctx);
					const { name, expiresAt, role } = await this.checked(ctx, "token.create", null, () => ({
						name: tokenName(ctx.params.name),
						expiresAt: expiryOf(ctx.params.expiresAt, clock.now()),
						role: newTokenRole(me, ctx.params.role),
					}));
					const { row, secret } = newTokenRow(me.id, name, role, expiresAt);
					await this.audited(ctx, "token.create", row.id, { name, role, expiresAt: iso(expiresAt), user: me.id }, async (t) => {
						try {
							await this.tables.insertToken(row, t);
						} catch (err) {
							if (isUniqueViolation(err)) throw conflict(`You have a token named ${name}`, "name");
							throw err;
						}
					});
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/tokens/${row.id}`;
					return { ...tokenView(row, clock.now(), me.tokenId), token: secret };
				},
			},

			/** The caller's tokens (an admin: `user`'s), without their secrets. */
			listTokens: {
				params: { user: { type: "string", min: 1, max: 64, optional: true } },
				async handler(this: UsersThis, ctx: Ctx<{ user?: string }>) {
					const me = this.caller(ctx);
					const userId = requireTokenListing(me, ctx.params.user);
					if (userId !== me.id && !(await this.guard(() => this.tables.user(userId)))) throw notFound("User", userId);
					const now = clock.now();
					return (await this.guard(() => this.tables.tokensOf(userId))).map((t) => tokenView(t, now, me.tokenId));
				},
			},

			/** Revoke a token: its row goes, and the next request with it is a 401 on every node. */
			revokeToken: {
				params: { id: { type: "string", min: 1, max: 64 } },
				async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
					const me = this.caller(ctx);
					const token = await this.checked(ctx, "token.revoke", ctx.params.id, async () => {
						const found = await this.guard(() => this.tables.token(ctx.params.id));
						if (!found) throw notFound("Token", ctx.params.id);
						requireTokenRevocation(me, found);
						return found;
					});
					await this.audited(ctx, "token.revoke", token.id, { name: token.name, user: token.userId }, async (t) => {
						if (!(await this.tables.removeToken(token.id, t))) throw notFound("Token", token.id);
					});
					return tokenView(token, clock.now(), me.tokenId);
				},
			},
		},

		methods: {
			async audited<T>(
				this: UsersThis,
				ctx: Ctx<unknown>,
				action: AuditAction,
				target: string | null,
				change: Record<string, unknown> | null,
				write: (t: Transaction) => Promise<T>,
			) {
				const rec = auditRecord(randomUUID(), clock.now(), actorOf(ctx.meta.user, ctx.meta.clientAddress), action, target, change);
				let out: T | undefined;
				try {
					await this.guard(() =>
						writeAudited(this.adapter.db, this.audit, rec, async (t) => {
							out = await write(t);
						}),
					);
				} catch (err) {
					await recordRefused(this, ctx, action, target, err, clock.now());
					throw err;
				}
				const prune = this.audit.pruneDue(clock.now(), config.auditRetentionDays);
				if (prune) this.guard(prune).catch((e: Error) => this.logger.warn(`Cannot prune the audit log: ${e.message}`));
				return out as T;
			},

			async checked<T>(this: UsersThis, ctx: Ctx<unknown>, action: AuditAction, target: string | null, fn: () => Promise<T> | T) {
				try {
					return await fn();
				} catch (err) {
					await recordRefused(this, ctx, action, target, err, clock.now());
					throw err;
				}
			},

			caller(ctx: Ctx<unknown>): AuthUser {
				const user = ctx.meta.user;
				if (!user) throw unauthorized();
				return user;
			},

			/**
			 * The built-in admin: CRONJOB_ADMIN_TOKEN sets its "default" token (re-hashed at every start,
			 * so a rotated variable takes effect); without it, the first start generates a token, prints it
			 * once and writes it to <data>/admin-token (0600).
			 */
			async ensureAdmin(this: UsersThis) {
				const tables = this.tables;
				let admin = await tables.userNamed(BUILTIN_ADMIN);
				if (config.adminToken) {
					const tokenHash = hashToken(config.adminToken);
					if (!admin) {
						const id = randomUUID();
						const user = { id, name: BUILTIN_ADMIN, admin: true, role: "admin", viewAll: false, createdAt: clock.now() };
						const token = defaultToken(id, tokenHash, clock.now());
						try {
							await tables.createUser(user, token);
							return;
						} catch (err) {
							if (!isUniqueViolation(err)) throw err; // another node created it at the same time
						}
						admin = await tables.userNamed(BUILTIN_ADMIN);
						if (!admin) return;
					}
					if (storedRole(admin) !== "admin") await tables.setRole(admin.id, "admin", admin.viewAll === true);
					const current = await tables.tokenNamed(admin.id, DEFAULT_TOKEN_NAME);
					if (current && current.tokenHash === tokenHash) return;
					try {
						if (current) await tables.setTokenHash(current.id, tokenHash);
						else await tables.insertToken(defaultToken(admin.id, tokenHash, clock.now()));
					} catch (err) {
						if (!isUniqueViolation(err)) throw err; // another node set it at the same time
					}
					return;
				}
				if (admin || (await tables.countAdmins()) > 0) return;
				const id = randomUUID();
				const { row, secret } = newTokenRow(id, DEFAULT_TOKEN_NAME, null, null);
				try {
					await tables.createUser({ id, name: BUILTIN_ADMIN, admin: true, role: "admin", viewAll: false, createdAt: clock.now() }, row);
				} catch (err) {
					if (isUniqueViolation(err)) return;
					throw err;
				}
				fs.mkdirSync(config.dataDir, { recursive: true, mode: DATA_DIR_MODE });
				const file = path.join(config.dataDir, ADMIN_TOKEN_FILE);
				writePrivateFile(file, secret + "\n");
				// Printed once, on stdout, never through the logger.
				process.stdout.write(`\nGenerated the admin token (also written to ${file}, mode 0600):\n  ${secret}\n\n`);
			},
		},
	};
}
