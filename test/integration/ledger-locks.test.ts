/**
 * The run ledger on MySQL/MariaDB under lock conflicts (lib/adapters/sql/run-ledger.ts):
 * a. a deadlock the server breaks by rolling the ledger's transaction back is tried again: the
 *    results are written, nothing is lost and the caller sees no error;
 * b. workers ending runs of shared jobs in every order, beside the manager's display writes of the
 *    same jobs, never deadlock (the statements take their locks in one order).
 *
 * Skipped only when DATABASE_URL is unset (CI sets it). A fresh `cronjob_test_<random>` database,
 * dropped afterwards.
 */
import mysql from "mysql2/promise";
import type { Run, RunResult, RunStart } from "../../lib/core/types";
import { connectionOptions } from "../support/mariadb";
import { startNode, type TestNode } from "../support/node";
import { waitFor } from "../support/wait";

const DATABASE_URL = process.env.DATABASE_URL?.trim() || null;
const describeDb = DATABASE_URL ? describe : describe.skip;

const ADMIN = { user: { id: "admin", name: "admin", admin: true } };

describeDb("run ledger lock conflicts (MySQL/MariaDB)", () => {
	let admin: mysql.Connection;
	let raw: mysql.Connection;
	let node: TestNode;
	let dbName: string;

	beforeAll(async () => {
		const u = new URL(DATABASE_URL as string);
		const conn = connectionOptions(u.toString());
		admin = await mysql.createConnection(conn);
		dbName = `cronjob_test_locks_${process.pid}_${Date.now().toString(36)}`;
		await admin.query(`CREATE DATABASE \`${dbName}\``);
		u.pathname = `/${dbName}`;
		node = await startNode({ SERVICES: "jobs", DATABASE_URL: u.toString() });
		raw = await mysql.createConnection({ ...conn, database: dbName });
	});

	afterAll(async () => {
		await raw?.end().catch(() => undefined);
		await node?.stop().catch(() => undefined);
		await admin?.query(`DROP DATABASE IF EXISTS \`${dbName}\``).catch(() => undefined);
		await admin?.end().catch(() => undefined);
	});

	async function jobs(n: number): Promise<string[]> {
		const ids: string[] = [];
		for (let i = 0; i < n; i++) {
			const job = await node.broker.call<{ id: string }, Record<string, unknown>>(
				"jobs.createJob",
				{ type: "command", schedule: "0 0 1 1 *", executable: "true", suspended: true },
				{ meta: ADMIN },
			);
			ids.push(job.id);
		}
		return ids.sort();
	}

	async function start(jobIds: string[], scheduledAt: number): Promise<Run[]> {
		const runs = await node.broker.call<(Run | null)[], { runs: RunStart[] }>("jobs.startRuns", {
			runs: jobIds.map((jobId) => ({ jobId, scheduledAt, attempt: 1, trigger: "schedule", node: "w1" })),
		});
		return runs.map((r) => r!);
	}

	const result = (run: Run, finishedAt: number): RunResult & { willRetry: boolean } => ({
		runId: run.id,
		jobId: run.jobId,
		scheduledAt: Date.parse(run.scheduledAt),
		recurring: true,
		status: "succeeded",
		exitCode: 0,
		signal: null,
		output: "ok\n",
		startedAt: finishedAt - 10,
		finishedAt,
		error: null,
		willRetry: false,
	});

	async function deadlocks(): Promise<number> {
		const [rows] = await admin.query<mysql.RowDataPacket[]>("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'");
		return Number(rows[0]?.Value ?? 0);
	}

	test("a deadlock that rolls the ledger's transaction back is tried again: the results are written", async () => {
		const [a, b, ...heavy] = await jobs(22);
		const runs = await start([a, b], Date.UTC(2030, 0, 1));
		const before = await deadlocks();

		// Another client locks job B and many other rows (so that the server picks the ledger's
		// lighter transaction as the deadlock's victim).
		await raw.query("BEGIN");
		// One row at a time, by primary key: record locks on exactly these rows (an IN list over most
		// of a small table is a scan, which would lock job A too).
		for (const id of [b, ...heavy]) await raw.query("UPDATE jobs SET updatedAt = updatedAt + 1 WHERE id = ?", [id]);
		// The ledger ends both runs: it locks the runs, then job A, then waits for job B.
		const finishing = node.broker.call<boolean[], { results: RunResult[] }>("jobs.finishRuns", { results: runs.map((r) => result(r, Date.now())) });
		await waitFor(
			async () => {
				try {
					// From a connection outside the other client's transaction (which must not take A).
					await admin.query(`SELECT id FROM \`${dbName}\`.jobs WHERE id = ? FOR UPDATE NOWAIT`, [a]);
					return false;
				} catch {
					return true; // A is locked: the ledger holds it and waits for B
				}
			},
			10_000,
			"the ledger holding job A",
		);
		// Now the other client wants A: a cycle, which the server breaks by rolling back the ledger's side.
		await raw.query("UPDATE jobs SET updatedAt = updatedAt + 1 WHERE id = ?", [a]);
		await raw.query("COMMIT");

		expect(await finishing).toEqual([true, true]);
		expect(await deadlocks()).toBeGreaterThan(before);
		const [rows] = await raw.query<mysql.RowDataPacket[]>("SELECT status FROM runs WHERE id IN (?)", [runs.map((r) => r.id)]);
		expect(rows.map((r) => r.status)).toEqual(["succeeded", "succeeded"]);
	});

	test("run ends in every order beside the display writes of the same jobs: no deadlock, every write made", async () => {
		const ids = await jobs(60);
		const before = await deadlocks();
		const failures: unknown[] = [];
		for (let round = 0; round < 5; round++) {
			const runs = await start(ids, Date.UTC(2030, 1, 1) + round * 1000);
			// Three "workers" end overlapping halves of the runs, each in its own shuffled order, while
			// the "manager" writes every job's worker column.
			const shuffled = () => [...runs].sort(() => Math.random() - 0.5).slice(0, 40);
			const calls = [
				...[0, 1, 2].map(() =>
					node.broker.call<boolean[], { results: RunResult[] }>("jobs.finishRuns", { results: shuffled().map((r) => result(r, Date.now())) }),
				),
				node.broker.call("jobs.setWorkers", { moves: [...ids].reverse().map((jobId, i) => ({ jobId, to: `w${(i + round) % 3}` })) }),
				node.broker.call("jobs.setWorkers", { moves: ids.map((jobId, i) => ({ jobId, to: `w${(i + round + 1) % 3}` })) }),
			];
			for (const r of await Promise.allSettled(calls)) if (r.status === "rejected") failures.push(r.reason);
			const [rows] = await raw.query<mysql.RowDataPacket[]>("SELECT COUNT(*) AS n FROM runs WHERE status = 'running' AND scheduledAt = ?", [
				Date.UTC(2030, 1, 1) + round * 1000,
			]);
			// Runs no worker ended stay running; the others are written.
			expect(Number(rows[0].n)).toBeLessThan(runs.length);
		}
		expect(failures).toEqual([]);
		expect(await deadlocks()).toBe(before);
	});
});
