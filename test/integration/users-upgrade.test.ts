/**
 * The upgrade of a users table made before roles and named tokens (one token per user in
 * `users.tokenHash`, an `admin` flag), in place on the SQLite default: the admin flag reads as the
 * admin role and its absence as member; each user's token keeps working as its token "default"; a
 * revoked default token stays revoked after a restart; CRONJOB_ADMIN_TOKEN still sets the built-in
 * admin's token.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { DataTypes, QueryTypes, Sequelize } from "sequelize";
import { syncModel } from "../../lib/adapters/sql/db";
import { defineTokenModel, userModel, UserTables } from "../../lib/adapters/sql/user-tables";
import { callerOf } from "../../lib/core/roles";
import { freshSequelizeDatabase } from "../support/mariadb";
import { ADMIN_TOKEN, startNode, tempDir } from "../support/node";

const { DATABASE_URL } = process.env;

const sha = (t: string) => createHash("sha256").update(t, "utf8").digest("hex");
const ALICE = "alice-token-of-the-old-version-0123456789";
const BOSS = "boss-token-of-the-old-version-0123456789";
const OLD_ADMIN = "the-admin-token-before-rotation-0123456789";

/** The users table as the version before roles made it, on this connection. */
async function oldUsers(seq: Sequelize): Promise<void> {
	const users = seq.define(
		"user",
		{
			id: { type: DataTypes.STRING(36), primaryKey: true },
			name: { type: DataTypes.STRING(64), allowNull: false, unique: "users_name_unique" },
			admin: { type: DataTypes.BOOLEAN, allowNull: false },
			tokenHash: { type: DataTypes.STRING(64), allowNull: false, unique: "users_token_unique" },
			createdAt: { type: DataTypes.BIGINT, allowNull: false },
		},
		{ tableName: "users", timestamps: false },
	);
	await users.sync();
	await users.bulkCreate([
		{ id: "u-admin", name: "admin", admin: true, tokenHash: sha(OLD_ADMIN), createdAt: 1000 },
		{ id: "u-alice", name: "alice", admin: false, tokenHash: sha(ALICE), createdAt: 2000 },
		{ id: "u-boss", name: "boss", admin: true, tokenHash: sha(BOSS), createdAt: 3000 },
	]);
}

async function oldInstallation(dir: string): Promise<void> {
	const seq = new Sequelize({ dialect: "sqlite", storage: path.join(dir, "users.sqlite"), logging: false });
	await oldUsers(seq);
	await seq.close();
}

async function inspect(dir: string) {
	const seq = new Sequelize({ dialect: "sqlite", storage: path.join(dir, "users.sqlite"), logging: false });
	try {
		const columns = await seq.getQueryInterface().describeTable("users");
		const users = await seq.query<{ id: string; tokenHash: string }>("SELECT id, tokenHash FROM users ORDER BY id", { type: QueryTypes.SELECT });
		const tokens = await seq.query<{ userId: string; name: string; tokenHash: string }>("SELECT userId, name, tokenHash FROM tokens ORDER BY userId, name", {
			type: QueryTypes.SELECT,
		});
		return { columns, users, tokens };
	} finally {
		await seq.close();
	}
}

test("a users table from before roles and named tokens is upgraded in place", async () => {
	const dir = tempDir();
	try {
		await oldInstallation(dir);
		let node = await startNode({ CRONJOB_DATA_DIR: dir });
		try {
			const get = (p: string, token: string) => node.request("GET", p, { token });
			// The old tokens work; the flag is the role.
			expect((await get("/jobs", ALICE)).status).toBe(200);
			const refused = await node.request("POST", "/users", { token: ALICE, body: { name: "eve" } });
			expect(refused.status).toBe(403);
			expect(refused.body.data).toMatchObject({ requiredRole: "admin", role: "member" });
			const users = (await get("/users", BOSS)).body as any[];
			expect(users.map((u) => [u.name, u.role, u.admin, u.viewAll])).toEqual([
				["admin", "admin", true, false],
				["alice", "member", false, false],
				["boss", "admin", true, false],
			]);
			const aliceTokens = (await get("/tokens", ALICE)).body as any[];
			expect(aliceTokens).toEqual([
				expect.objectContaining({ name: "default", role: null, user: "u-alice", createdAt: "1970-01-01T00:00:02.000Z", current: true }),
			]);
			// CRONJOB_ADMIN_TOKEN rotated the built-in admin's token: the old one is refused.
			expect((await get("/users", ADMIN_TOKEN)).status).toBe(200);
			expect((await get("/users", OLD_ADMIN)).status).toBe(401);
			// Alice revokes her old token.
			expect((await node.request("DELETE", `/tokens/${aliceTokens[0].id}`, { token: ALICE })).status).toBe(200);
			expect((await get("/jobs", ALICE)).status).toBe(401);
		} finally {
			await node.stop();
		}

		const after = await inspect(dir);
		expect(after.columns.role).toEqual(expect.objectContaining({ allowNull: true }));
		expect(after.columns.viewAll).toEqual(expect.objectContaining({ allowNull: true }));
		// The column is a credential no more.
		expect(after.users.map((u) => u.tokenHash)).toEqual(["moved:u-admin", "moved:u-alice", "moved:u-boss"]);
		expect(after.tokens.map((t) => [t.userId, t.name, t.tokenHash])).toEqual([
			["u-admin", "default", sha(ADMIN_TOKEN)],
			["u-boss", "default", sha(BOSS)],
		]);

		// A restart moves nothing again: the revoked token stays revoked.
		node = await startNode({ CRONJOB_DATA_DIR: dir });
		try {
			expect((await node.request("GET", "/jobs", { token: ALICE })).status).toBe(401);
			expect((await node.request("GET", "/users", { token: BOSS })).status).toBe(200);
			expect((await node.request("GET", "/users", { token: ADMIN_TOKEN })).status).toBe(200);
		} finally {
			await node.stop();
		}
		expect((await inspect(dir)).tokens).toHaveLength(2);
	} finally {
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

/** The same upgrade through the users service's tables on MariaDB: the columns, the move, the lookup's SQL. */
(DATABASE_URL ? test : test.skip)("MariaDB: the users table is upgraded in place and the tokens are found by their hash", async () => {
	const { seq, drop } = await freshSequelizeDatabase(DATABASE_URL as string, "cronjob_test_users");
	try {
		await oldUsers(seq);
		const def = userModel();
		const users = seq.define(def.name, def.define, def.options);
		const tokens = defineTokenModel(seq);
		await syncModel(users);
		await syncModel(tokens);
		const tables = new UserTables(seq, users, tokens);
		expect(await tables.moveLegacyTokens()).toBe(3);
		expect(await tables.moveLegacyTokens()).toBe(0);
		const columns = await seq.getQueryInterface().describeTable("users");
		expect(columns.role).toEqual(expect.objectContaining({ allowNull: true }));
		const found = await tables.lookup(sha(ALICE));
		expect(found).toMatchObject({ token: { tokenHash: sha(ALICE), role: null, expiresAt: null, lastUsedAt: null }, user: { id: "u-alice", name: "alice" } });
		expect(callerOf(found!.user, found!.token)).toMatchObject({ id: "u-alice", role: "member", userRole: "member", viewAll: false, admin: false });
		expect(callerOf((await tables.lookup(sha(BOSS)))!.user, { id: "t", role: null })).toMatchObject({ role: "admin", viewAll: true });
		expect(await tables.lookup(sha("nobody's"))).toBeNull();
		await tables.touch(found!.token.id, 5_000_000);
		await tables.touch(found!.token.id, 5_030_000);
		expect((await tables.lookup(sha(ALICE)))!.token.lastUsedAt).toBe(5_000_000);
		expect(await tables.countAdmins()).toBe(2);
	} finally {
		await drop();
	}
});
