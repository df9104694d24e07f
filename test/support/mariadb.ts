/**
 * A private MariaDB server for tests that must stop and restart the database: its own data folder
 * (mariadb-install-db), its own port on 127.0.0.1 and its own socket, both in a temp folder. The
 * product connects as an ordinary user (`cronjob`, created here with a password), never with
 * --skip-grant-tables. kill() stops the server like a crash (SIGKILL), start() brings it back on the
 * same port with the same data.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import mysql from "mysql2/promise";
import { Sequelize } from "sequelize";
import { binary, freePort } from "./proc";

const INSTALL = "apt-get install mariadb-server";
import { waitFor } from "./wait";

export interface PrivateMariaDb {
	port: number;
	dir: string;
	/** mysql:// URL for the cronjob user on this server. */
	url(database: string): string;
	/** Run SQL as root over the socket (setup and inspection). */
	sql(statements: string): Promise<string>;
	pid(): number | null;
	/** Start again on the same port and data (after kill()). */
	start(): Promise<void>;
	/** Crash it: SIGKILL, and wait until the process is gone. */
	kill(signal?: NodeJS.Signals): Promise<void>;
	/** Stop for good and delete the data folder. */
	stop(): Promise<void>;
}

const USER = "cronjob";
const PASSWORD = "cronjob";

export async function startPrivateMariaDb(databases: string[]): Promise<PrivateMariaDb> {
	const mariadbd = binary("mariadbd", INSTALL);
	const installDb = binary("mariadb-install-db", INSTALL);
	const client = binary("mariadb", INSTALL);
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cronjob-mdb-"));
	const dataDir = path.join(dir, "data");
	const socket = path.join(dir, "mysqld.sock");
	const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
	const userArgs = isRoot ? ["--user=root"] : [];
	// A throwaway server bound to 127.0.0.1: root without a password over the socket is enough for setup.
	execFileSync(installDb, ["--no-defaults", `--datadir=${dataDir}`, ...userArgs, "--auth-root-authentication-method=normal", "--skip-test-db"], {
		stdio: "pipe",
		timeout: 60_000,
	});
	const port = await freePort();
	let child: ChildProcess | null = null;
	let exited: Promise<void> = Promise.resolve();

	const sql = (statements: string) =>
		new Promise<string>((resolve, reject) => {
			execFile(
				client,
				["--no-defaults", "-uroot", `--socket=${socket}`, "--batch", "--skip-column-names", "-e", statements],
				{ timeout: 10_000 },
				(err, stdout, stderr) => (err ? reject(new Error(`${err.message} ${stderr}`)) : resolve(stdout)),
			);
		});

	const start = async () => {
		const proc = spawn(
			mariadbd,
			[
				"--no-defaults",
				`--datadir=${dataDir}`,
				...userArgs,
				"--bind-address=127.0.0.1",
				`--port=${port}`,
				`--socket=${socket}`,
				`--pid-file=${path.join(dir, "mariadbd.pid")}`,
				`--log-error=${path.join(dir, "error.log")}`,
				"--innodb-buffer-pool-size=32M",
				"--skip-name-resolve",
			],
			{ stdio: "ignore" },
		);
		child = proc;
		exited = new Promise((resolve) => proc.once("exit", () => resolve()));
		await waitFor(
			async () => {
				if (proc.exitCode !== null || proc.signalCode !== null)
					throw new Error(`mariadbd exited: ${fs.readFileSync(path.join(dir, "error.log"), "utf8").slice(-2000)}`);
				return (await sql("SELECT 1").catch(() => "")).trim() === "1";
			},
			30_000,
			`private MariaDB on port ${port}`,
			50,
		).catch((err) => {
			proc.kill("SIGKILL");
			throw err;
		});
	};

	const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
		const proc = child;
		if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
		proc.kill(signal);
		await exited;
	};

	await start();
	const grants = databases
		.map((db) => `CREATE DATABASE IF NOT EXISTS \`${db}\`; GRANT ALL PRIVILEGES ON \`${db}\`.* TO '${USER}'@'127.0.0.1', '${USER}'@'localhost';`)
		.join("\n");
	await sql(
		`CREATE USER IF NOT EXISTS '${USER}'@'127.0.0.1' IDENTIFIED BY '${PASSWORD}'; CREATE USER IF NOT EXISTS '${USER}'@'localhost' IDENTIFIED BY '${PASSWORD}';\n${grants}\nFLUSH PRIVILEGES;`,
	);

	return {
		port,
		dir,
		url: (database) => `mysql://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`,
		sql,
		pid: () => {
			const c = child;
			return c && c.exitCode === null && c.signalCode === null ? (c.pid ?? null) : null;
		},
		start,
		kill,
		stop: async () => {
			await kill("SIGKILL");
			fs.rmSync(dir, { recursive: true, force: true });
		},
	};
}

/** mysql2 connection options for the server of a DATABASE_URL (mysql://user:pass@host:port/db), on `database`. */
export function connectionOptions(
	databaseUrl: string,
	database?: string,
): { host: string; port: number; user: string; password: string; database?: string; connectTimeout: number } {
	const u = new URL(databaseUrl);
	return {
		host: u.hostname,
		port: u.port ? Number(u.port) : 3306,
		user: decodeURIComponent(u.username),
		password: decodeURIComponent(u.password),
		database,
		connectTimeout: 5000,
	};
}

/**
 * A fresh database `<prefix>_<random>` on the server of `databaseUrl`, as a Sequelize connection;
 * drop() closes it and drops the database.
 */
export async function freshSequelizeDatabase(databaseUrl: string, prefix: string): Promise<{ seq: Sequelize; drop: () => Promise<void> }> {
	const name = `${prefix}_${randomBytes(4).toString("hex")}`;
	const admin = await mysql.createConnection(connectionOptions(databaseUrl));
	await admin.query(`CREATE DATABASE \`${name}\``);
	const url = new URL(databaseUrl);
	url.pathname = `/${name}`;
	const seq = new Sequelize(url.toString(), { dialect: "mysql", logging: false });
	return {
		seq,
		async drop() {
			await seq.close();
			await admin.query(`DROP DATABASE \`${name}\``);
			await admin.end();
		},
	};
}
