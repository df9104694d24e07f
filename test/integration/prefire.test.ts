/**
 * Prefire on a real node (embedded default): a recurring `allow` job's fire is claimed, recorded and
 * its process spawned CRONJOB_PREFIRE_MS ahead, held until the instant. A change of the job while a
 * fire is held prepares it again from the new definition; a deletion cancels it (recorded skipped,
 * its code never runs). A lead of 3 s on jobs firing every 3 s (a fire is handed over no earlier
 * than the one before it) makes the held window wide enough to act in.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { startNode, type TestNode } from "../support/node";
import { waitFor } from "../support/wait";

const LEAD = 3000;
let node: TestNode;

interface RunView {
	id: string;
	scheduledAt: string;
	startedAt: string | null;
	status: string;
	output: string;
	error: string | null;
	trigger: string;
}

beforeAll(async () => {
	node = await startNode({ CRONJOB_PREFIRE_MS: String(LEAD) });
	fs.chmodSync(node.dataDir, 0o777);
});

afterAll(async () => {
	await node?.stop();
});

const runsOf = async (id: string) => (await node.request("GET", `/jobs/${id}/runs?limit=1000`)).body as RunView[];
const at = (r: RunView) => Date.parse(r.scheduledAt);

async function create(executable: string, schedule = "* * * * * *"): Promise<string> {
	const res = await node.request("POST", "/jobs", { body: { type: "command", schedule, executable } });
	expect(res.status).toBe(201);
	return res.body.id as string;
}

test("a fire is recorded and its process prepared ahead of its instant, and its code starts at the instant", async () => {
	const id = await create("date +%s%3N");
	// A run for an instant still ahead, not started yet: the held fire.
	const held = await waitFor(
		async () => (await runsOf(id)).find((r) => r.status === "running" && r.startedAt === null && at(r) > Date.now() + 100),
		10_000,
		"a held fire",
	);
	const done = await waitFor(async () => (await runsOf(id)).find((r) => r.id === held.id && r.status !== "running"), 10_000, "the held fire ran");
	expect(done.status).toBe("succeeded");
	expect(done.trigger).toBe("schedule");
	const startedAt = Date.parse(done.startedAt as string);
	expect(startedAt).toBeGreaterThanOrEqual(at(done));
	// The job's own code ran at or after its instant, never before.
	expect(Number(done.output.trim())).toBeGreaterThanOrEqual(at(done));
	await node.request("DELETE", `/jobs/${id}`);
});

test("a change while a fire is held prepares it again from the new definition", async () => {
	const id = await create("echo v1", "*/3 * * * * *");
	const held = await waitFor(
		async () => (await runsOf(id)).find((r) => r.status === "running" && r.startedAt === null && at(r) > Date.now() + 1500),
		15_000,
		"a held fire with 1.5 s or more to go",
	);
	const patched = await node.request("PATCH", `/jobs/${id}`, { body: { executable: "echo v2" } });
	expect(patched.status).toBe(200);
	const done = await waitFor(async () => (await runsOf(id)).find((r) => r.id === held.id && r.status !== "running"), 10_000, "the held fire ran");
	// Same run (same claim and record), the new executable.
	expect(done).toMatchObject({ status: "succeeded", output: "v2\n" });
	const runs = await runsOf(id);
	expect(new Set(runs.map((r) => r.scheduledAt)).size).toBe(runs.length); // each fire once
	await node.request("DELETE", `/jobs/${id}`);
});

test("deleting a job cancels its held fire: recorded skipped, its code never runs", async () => {
	const file = path.join(node.dataDir, "deleted-job-ran");
	// Every 3 s with a 3 s lead: each fire is handed over (and held) at the instant before it, so it
	// waits about 3 s, time enough to delete the job meanwhile.
	const id = await create(`echo "$CRONJOB_SCHEDULED_AT" >> ${file}`, "*/3 * * * * *");
	const held = await waitFor(
		async () => (await runsOf(id)).find((r) => r.status === "running" && r.startedAt === null && at(r) > Date.now() + 1500),
		15_000,
		"a held fire with 1.5 s or more to go",
	);
	const deleted = await node.request("DELETE", `/jobs/${id}`);
	expect(deleted.status).toBe(200);
	await waitFor(async () => (await runsOf(id)).every((r) => r.status !== "running"), 10_000, "no run left running");
	await waitFor(async () => Date.now() > at(held) + 500, LEAD + 2000, "its instant to pass");
	const runs = await runsOf(id);
	const cancelled = runs.find((r) => r.id === held.id);
	expect(cancelled).toMatchObject({ status: "skipped", startedAt: null });
	expect(cancelled?.error).toMatch(/cancelled before its instant/);
	const ran = fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n").filter(Boolean) : [];
	expect(ran).not.toContain(held.scheduledAt);
	expect(ran.sort()).toEqual(
		runs
			.filter((r) => r.status === "succeeded")
			.map((r) => r.scheduledAt)
			.sort(),
	);
	expect((await node.request("GET", `/jobs/${id}`)).body.status).toBe("finished");
});
