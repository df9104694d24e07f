/**
 * Database connection options for the sequelize adapter: SQLite files in the data folder on the
 * embedded default, MySQL/MariaDB from DATABASE_URL in a cluster. Each service that owns tables gets
 * its own connection (and, on SQLite, its own file).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import SqlAdapter from "moleculer-db-adapter-sequelize";
import { Sequelize, type Model, type ModelStatic, type Options } from "sequelize";
import type { Config } from "../../config";
import { ConfigError } from "../../core/errors";
import { DATA_DIR_MODE, SQLITE_COMPANION_SUFFIXES, sqliteFileName } from "../../core/data-layout";
import { ensureDirMode, ensurePrivateFile, restrictIfPresent } from "../local/data-dir";

interface SqliteConnection {
	configure(option: "busyTimeout", value: number): void;
	cronjobTuned?: boolean;
}

export function createSequelize(config: Config, owner: string, logger?: (msg: string) => void): Sequelize {
	const common: Options = { logging: false, benchmark: false };
	if (config.databaseUrl) {
		const url = config.databaseUrl;
		if (!/^(mysql|mariadb):\/\//.test(url)) throw new ConfigError("DATABASE_URL", "DATABASE_URL must be mysql://user:pass@host:port/db");
		return new Sequelize(url.replace(/^mariadb:/, "mysql:"), {
			...common,
			dialect: "mysql",
			timezone: "+00:00",
			pool: { max: 10, min: 0, acquire: 5000, idle: 10000 },
			dialectOptions: { connectTimeout: 3000, supportBigNumbers: true, bigNumberStrings: false },
			retry: { max: 0 },
		});
	}
	if (!fs.existsSync(config.dataDir)) ensureDirMode(config.dataDir, DATA_DIR_MODE);
	const storage = path.join(config.dataDir, sqliteFileName(owner));
	// The file holds every job's command and env: 0600 before SQLite opens it (SQLite would create it
	// 0644), and SQLite gives the -wal, -shm and -journal files it makes later the main file's mode.
	// Those of an older version are made private here too.
	ensurePrivateFile(storage);
	for (const suffix of SQLITE_COMPANION_SUFFIXES) restrictIfPresent(storage + suffix);
	const seq = new Sequelize({ ...common, dialect: "sqlite", storage });
	// Sequelize opens a separate SQLite connection for each transaction, without a busy timeout, so
	// a transaction that meets another writer fails at once with SQLITE_BUSY. Give every connection
	// one (sqlite3's Database#configure).
	const manager = (seq as unknown as { connectionManager: { getConnection(o?: unknown): Promise<SqliteConnection> } }).connectionManager;
	const getConnection = manager.getConnection.bind(manager);
	manager.getConnection = async (opts?: unknown) => {
		const conn = await getConnection(opts);
		if (!conn.cronjobTuned) {
			conn.configure("busyTimeout", 10_000);
			conn.cronjobTuned = true;
		}
		return conn;
	};
	logger?.(`SQLite database ${storage}`);
	return seq;
}

/**
 * SQLite: WAL lets readers run beside the writer and, with synchronous=NORMAL, commits without an
 * fsync each (still durable across a process crash). Sequelize keeps one SQLite connection, so
 * running the pragmas once after connecting applies them to every query. No-op on MySQL.
 */
export async function tuneDatabase(seq: Sequelize): Promise<void> {
	if (seq.getDialect() !== "sqlite") return;
	for (const sql of ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=5000"]) await seq.query(sql);
}

/**
 * SQLite: fold the write-ahead log into the database file, so a stopped node leaves one
 * self-contained file (to copy or back up). Called when the owning service stops. No-op on MySQL.
 */
export async function checkpoint(seq: Sequelize): Promise<void> {
	if (seq.getDialect() !== "sqlite") return;
	await seq.query("PRAGMA wal_checkpoint(TRUNCATE)").catch(() => undefined);
}

/** MySQL/MariaDB: the database server's clock in epoch ms (one query). */
export async function serverTime(seq: Sequelize): Promise<number> {
	const [rows] = await seq.query("SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) AS t");
	return Number((rows as { t: number | string }[])[0].t);
}

/** True for errors that mean "the database is unreachable right now" (answer 503, retry later). */
export function isConnectionError(err: unknown): boolean {
	const e = err as { name?: string; original?: { code?: string }; parent?: { code?: string }; code?: string };
	const name = e?.name ?? "";
	if (/Sequelize(Connection|ConnectionRefused|HostNotFound|HostNotReachable|ConnectionTimedOut|ConnectionAcquireTimeout|AccessDenied)Error/.test(name))
		return true;
	const code = e?.original?.code ?? e?.parent?.code ?? e?.code ?? "";
	return ["ECONNREFUSED", "ECONNRESET", "PROTOCOL_CONNECTION_LOST", "ETIMEDOUT", "EPIPE", "ER_SERVER_SHUTDOWN", "SQLITE_BUSY"].includes(code);
}

/**
 * True for a transaction the server refused for a lock conflict: a deadlock it broke by rolling our
 * transaction back (ER_LOCK_DEADLOCK, 1213), or a lock wait that timed out (ER_LOCK_WAIT_TIMEOUT,
 * 1205; Sequelize rolls the managed transaction back on it). Either way nothing of it was written
 * and running it again is safe.
 */
export function isLockConflict(err: unknown): boolean {
	const e = err as { original?: { code?: string; errno?: number }; parent?: { code?: string; errno?: number }; code?: string; errno?: number };
	const cause = e?.original ?? e?.parent ?? e;
	return cause?.code === "ER_LOCK_DEADLOCK" || cause?.code === "ER_LOCK_WAIT_TIMEOUT" || cause?.errno === 1213 || cause?.errno === 1205;
}

/** Tries of a statement or transaction the server refused for a lock conflict. */
export const LOCK_CONFLICT_TRIES = 5;

/** The pause before try n + 1 (ms): 20, 40, 80, 160, with jitter so that the parties do not meet again. */
export function lockConflictBackoffMs(n: number, random: () => number): number {
	const base = 20 * 2 ** (n - 1);
	return Math.round(base / 2 + (base / 2) * random());
}

export function isUniqueViolation(err: unknown): boolean {
	return (err as { name?: string })?.name === "SequelizeUniqueConstraintError";
}

/**
 * The moleculer-db sequelize adapter WITHOUT its own model.sync(): when that sync fails (e.g. two
 * nodes starting at once both add the same index: ER_DUP_KEYNAME) the adapter closes the Sequelize
 * instance, and every reconnect after that fails ("getConnection was called after the connection
 * manager was closed"), so the service never starts. The services call syncModel() in
 * afterConnected instead. (The adapter reads `noSync` from its fourth constructor argument; its
 * typings only know the first.)
 */
export function createAdapter(seq: Sequelize): SqlAdapter {
	const Adapter = SqlAdapter as unknown as new (...opts: unknown[]) => SqlAdapter;
	return new Adapter(seq, undefined, undefined, { noSync: true });
}

/** Another process created the same table, index or column between our check and our DDL. */
function isSchemaRace(err: unknown): boolean {
	const e = err as { original?: { code?: string; message?: string }; parent?: { code?: string }; message?: string };
	const code = e?.original?.code ?? e?.parent?.code ?? "";
	if (["ER_DUP_KEYNAME", "ER_TABLE_EXISTS_ERROR", "ER_DUP_FIELDNAME"].includes(code)) return true;
	return /already exists|duplicate column/i.test(e?.original?.message ?? e?.message ?? "");
}

/**
 * The upgrade path of a table made by an older version: sync() creates a missing table but never
 * alters one, so a column declared since (a new job field) is added here. Only nullable columns are
 * added this way (the old rows take NULL, which every new field's reader answers as "not set"); a
 * NOT NULL column would need a default for the old rows, which is a migration to write by hand.
 */
async function addMissingColumns(model: ModelStatic<Model>): Promise<void> {
	const qi = model.sequelize!.getQueryInterface();
	const present = await qi.describeTable(model.getTableName());
	for (const [name, attr] of Object.entries(model.getAttributes())) {
		const column = attr.field ?? name;
		if (column in present) continue;
		if (attr.allowNull === false) throw new Error(`table ${model.tableName} lacks the NOT NULL column ${column}: migrate it by hand`);
		await qi.addColumn(model.getTableName(), column, { type: attr.type, allowNull: true });
	}
}

/**
 * model.sync() (CREATE TABLE IF NOT EXISTS, then the missing indexes) that is safe when several
 * processes start on an empty database at once: losing a DDL race is not an error, the sync runs
 * again and finds what the other process made.
 */
export async function syncModel(model: ModelStatic<Model>, attempts = 5): Promise<void> {
	for (let i = 1; ; i++) {
		try {
			await model.sync();
			await addMissingColumns(model);
			return;
		} catch (err) {
			if (i >= attempts || !isSchemaRace(err)) throw err;
		}
	}
}

/**
 * moleculer-db's generic CRUD actions, switched off: the services publish their own actions with
 * ownership checks and validation, and the tables are not reachable any other way.
 */
export const NO_GENERIC_DB_ACTIONS = {
	find: false,
	count: false,
	list: false,
	insert: false,
	update: false,
	remove: false,
	get: false,
	create: false,
} as const;
