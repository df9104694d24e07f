/**
 * The custom REPL commands (app/repl.ts) on a started node: each command's action with a capturing
 * `out`, checked against what the API shows.
 */
import { replCommands, type ReplCommand } from "../../app/repl";
import { startNode, type TestNode } from "../support/node";
import { waitFor } from "../support/wait";

let node: TestNode;
let printed: string[];
let commands: Map<string, ReplCommand>;
let jobId: string;

beforeAll(async () => {
	node = await startNode();
	printed = [];
	commands = new Map(replCommands((text) => printed.push(text)).map((c) => [c.command.split(" ")[0], c]));
	const res = await node.request("POST", "/jobs", {
		body: { type: "command", schedule: "*/7 3 * * mon-fri", timezone: "Europe/Paris", executable: "echo from-repl", name: "repl-job" },
	});
	expect(res.status).toBe(201);
	jobId = res.body.id;
	// The manager assigns it to our worker.
	await waitFor(async () => (await node.request("GET", `/jobs/${jobId}`)).body.worker === node.config.nodeId, 10_000, "job assigned");
	// The database records the assignment before the worker loads the job into its crontab.
	await waitFor(async () => String(await node.broker.call("worker.crontab")).includes(`# job ${jobId} `), 10_000, "job in the worker's crontab");
});

afterAll(async () => {
	await node?.stop();
});

async function run(name: string, args: Record<string, unknown> = {}): Promise<string> {
	printed.length = 0;
	await commands.get(name)!.action(node.broker, args);
	return printed.join("\n");
}

test("every documented command exists", () => {
	expect([...commands.keys()].sort()).toEqual(["cron-crontab", "cron-jobs", "cron-leader", "cron-run", "cron-workers"]);
});

test("cron-jobs lists the job with its status, schedule, time zone and worker", async () => {
	const out = await run("cron-jobs");
	const line = out.split("\n").find((l) => l.startsWith(jobId));
	expect(line).toBeDefined();
	const cols = line!.split("\t");
	expect(cols.slice(0, 5)).toEqual([jobId, "scheduled", JSON.stringify("*/7 3 * * mon-fri"), "Europe/Paris", node.config.nodeId]);
	expect(Number.isNaN(Date.parse(cols[5]))).toBe(false); // next run
	expect(await run("cron-jobs", { status: "finished" })).toBe("(no jobs)");
});

test("cron-workers shows the worker with its job count and clock", async () => {
	const out = await run("cron-workers");
	const lines = out.split("\n");
	expect(lines).toHaveLength(1);
	const cols = lines[0].split("\t");
	expect(cols[0]).toBe(node.config.nodeId);
	expect(cols[1]).toBe("jobs=1");
	expect(cols[2]).toMatch(/^clockOffsetMs=-?\d+$/);
	expect(cols[3]).toBe("clock ok");
});

test("cron-leader names this node", async () => {
	expect(await run("cron-leader")).toBe(`leader: ${node.config.nodeId}`);
});

test("cron-crontab <worker> shows the job's line in crontab(5) syntax", async () => {
	const out = await run("cron-crontab", { worker: node.config.nodeId });
	const lines = out.split("\n");
	expect(lines[0]).toMatch(/^# /);
	const i = lines.findIndex((l) => l.startsWith(`# job ${jobId} tz=Europe/Paris next=`));
	expect(i).toBeGreaterThan(0);
	expect(lines[i + 1]).toBe("*/7 3 * * mon-fri echo from-repl");
	// Five schedule fields then the command, as crontab(5) has them.
	expect(lines[i + 1].split(" ").slice(0, 5)).toEqual(["*/7", "3", "*", "*", "mon-fri"]);
});

test("cron-run <jobId> runs the job now; the run appears and succeeds", async () => {
	const out = await run("cron-run", { jobId });
	const run0 = JSON.parse(out);
	expect(run0).toMatchObject({ id: expect.any(String), jobId, trigger: "manual", attempt: 1 });
	const runs = await waitFor(
		async () => {
			const res = await node.request("GET", `/jobs/${jobId}/runs`);
			const r = (res.body as any[]).find((x) => x.id === run0.id);
			return r && r.status === "succeeded" ? r : null;
		},
		10_000,
		"the manual run succeeded",
	);
	expect(runs.output).toContain("from-repl");
});

test("cron-run of an unknown job rejects with 404", async () => {
	await expect(run("cron-run", { jobId: "no-such-job" })).rejects.toMatchObject({ code: 404 });
});
