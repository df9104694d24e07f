/**
 * The run ledger's ends (lib/adapters/sql/run-ledger.ts finishRuns) on SQLite and, when DATABASE_URL
 * is set (CI sets it), on MySQL/MariaDB in a fresh `cronjob_test_<random>` database: a batch larger
 * than one statement's chunk, by count and by output size, writes every run once with its own values,
 * a run already final or repeated in the batch is not written again, each job's lastRun is its latest
 * end, and a one-shot job finishes.
 */
import mysql from "mysql2/promise";
import type { Run, RunResult, RunStart } from "../../lib/core/types";
import { connectionOptions } from "../support/mariadb";
import { startNode, type TestNode } from "../support/node";

const DATABASE_URL = process.env.DATABASE_URL?.trim() || null;
const ADMIN = { user: { id: "admin", name: "admin", admin: true } };

type Backend = { name: string; open: () => Promise<{ node: TestNode; close: () => Promise<void> }> };

const backends: Backend[] = [
	{
		name: "SQLite",
		async open() {
			const node = await startNode({ SERVICES: "jobs" });
			return { node, close: () => node.stop() };
		},
	},
];
if (DATABASE_URL) {
	backends.push({
		name: "MySQL/MariaDB",
		async open() {
			const u = new URL(DATABASE_URL);
			const admin = await mysql.createConnection(connectionOptions(u.toString()));
			const dbName = `cronjob_test_ledger_${process.pid}_${Date.now().toString(36)}`;
			await admin.query(`CREATE DATABASE \`${dbName}\``);
			u.pathname = `/${dbName}`;
			const node = await startNode({ SERVICES: "jobs", DATABASE_URL: u.toString() });
			return {
				node,
				async close() {
					await node.stop().catch(() => undefined);
					await admin.query(`DROP DATABASE IF EXISTS \`${dbName}\``).catch(() => undefined);
					await admin.end();
				},
			};
		},
	});
}

describe.each(backends)("run ledger ends on $name", (backend) => {
	let node: TestNode;
	let close: () => Promise<void>;

	beforeAll(async () => {
		({ node, close } = await backend.open());
	});
	afterAll(() => close?.());

	async function createJobs(n: number, schedule: string): Promise<string[]> {
		const ids: string[] = [];
		for (let i = 0; i < n; i++) {
			const job = await node.broker.call<{ id: string }, Record<string, unknown>>(
				"jobs.createJob",
				{ type: "command", schedule, executable: "true", suspended: true },
				{ meta: ADMIN },
			);
			ids.push(job.id);
		}
		return ids;
	}

	const start = async (starts: RunStart[]): Promise<Run[]> =>
		(await node.broker.call<(Run | null)[], { runs: RunStart[] }>("jobs.startRuns", { runs: starts })).map((r) => r!);
	const finish = (results: RunResult[]) => node.broker.call<boolean[], { results: RunResult[] }>("jobs.finishRuns", { results });
	const view = (id: string) =>
		node.broker.call<{ status: string; lastRun: { id: string; status: string } | null }, { id: string }>("jobs.getJob", { id }, { meta: ADMIN });
	const runsOf = (id: string) =>
		node.broker.call<
			{ id: string; status: string; exitCode: number | null; signal: string | null; output: string; error: string | null }[],
			Record<string, unknown>
		>("jobs.jobRuns", { id, limit: 100 }, { meta: ADMIN });

	const end = (run: Run, i: number, extra: Partial<RunResult> = {}): RunResult => ({
		runId: run.id,
		jobId: run.jobId,
		scheduledAt: Date.parse(run.scheduledAt),
		recurring: true,
		status: i % 3 === 0 ? "failed" : "succeeded",
		exitCode: i % 3 === 0 ? 3 : 0,
		signal: i % 7 === 0 ? "SIGTERM" : null,
		output: `run ${i}\n`,
		startedAt: 1_000_000 + i,
		finishedAt: 2_000_000 + i,
		error: i % 3 === 0 ? `failed ${i}` : null,
		...extra,
	});

	test("a batch of 450 ends over 300 jobs (several statements) writes each run once, with its own values", async () => {
		const jobs = await createJobs(300, "0 0 1 1 *");
		// Two runs for the first 150 jobs, one for the others: 450 runs.
		const starts: RunStart[] = [...jobs, ...jobs.slice(0, 150)].map((jobId, i) => ({
			jobId,
			scheduledAt: Date.UTC(2031, 0, 1) + (i >= 300 ? 1000 : 0),
			attempt: 1,
			trigger: "schedule",
			node: "w1",
		}));
		const runs = await start(starts);
		// One run already ended before the batch: not written again.
		const early = runs[10];
		expect(await finish([end(early, 10, { output: "first end\n" })])).toEqual([true]);
		const batch = runs.map((r, i) => end(r, i));
		batch.push(end(runs[20], 20, { output: "a repeat in the same batch\n" }));
		const written = await finish(batch);
		expect(written.filter(Boolean).length).toBe(runs.length - 1);
		expect(written[10]).toBe(false);
		expect(written.at(-1)).toBe(false);

		for (const i of [0, 7, 10, 20, 299, 300, 449]) {
			const jobId = runs[i].jobId;
			const rows = await runsOf(jobId);
			const row = rows.find((r) => r.id === runs[i].id)!;
			const want = i === 10 ? { output: "first end\n" } : { output: `run ${i}\n` };
			expect(row).toMatchObject({
				status: i % 3 === 0 ? "failed" : "succeeded",
				exitCode: i % 3 === 0 ? 3 : 0,
				signal: i % 7 === 0 ? "SIGTERM" : null,
				...want,
			});
		}
		// A job with two runs in the batch: lastRun is the later end.
		const twice = await view(runs[300].jobId);
		expect(twice.lastRun).toMatchObject({ id: runs[300].id, status: "failed" });
	});

	test("outputs larger than one statement's share, a one-shot job finishing and a pending retry", async () => {
		const jobs = await createJobs(24, "0 0 1 1 *");
		const runs = await start(jobs.map((jobId) => ({ jobId, scheduledAt: Date.UTC(2032, 0, 1), attempt: 1, trigger: "schedule", node: "w1" })));
		const big = (i: number) => `${String(i).padStart(4, "0")}${"x".repeat(64 * 1024 - 4)}`;
		const written = await finish(
			runs.map((r, i) =>
				end(r, i, {
					status: "succeeded",
					exitCode: 0,
					output: big(i),
					recurring: i !== 0,
					...(i === 1 ? { status: "failed", exitCode: 1, willRetry: true } : {}),
				}),
			),
		);
		expect(written).toEqual(runs.map(() => true));
		for (const i of [0, 11, 23]) expect((await runsOf(runs[i].jobId))[0].output).toBe(big(i));
		// The one-shot job (recurring false) finished; the job whose run will be retried keeps its status.
		expect((await view(runs[0].jobId)).status).toBe("finished");
		expect((await view(runs[1].jobId)).status).toBe("scheduled");
	});
});
