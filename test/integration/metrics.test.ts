/**
 * Our Prometheus metrics on a real node: METRICS_PORT on a free port, a per-second job, then
 * GET /metrics and check each cronjob_* series.
 */
import { freePort } from "../support/proc";
import { startNode, type TestNode } from "../support/node";
import { waitFor } from "../support/wait";

interface Sample {
	name: string;
	labels: Record<string, string>;
	value: number;
}

/** Parse the Prometheus text format (`name{a="1",b="2"} value`). */
function parse(text: string): Sample[] {
	const out: Sample[] = [];
	for (const line of text.split("\n")) {
		const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
		if (!m) continue;
		const labels: Record<string, string> = {};
		for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
		out.push({ name: m[1], labels, value: Number(m[3]) });
	}
	return out;
}

/** The value of the one series of `name` whose labels include `labels` (undefined when none). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
	const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
	if (hits.length > 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${hits.length} series`);
	return hits[0]?.value;
}

let node: TestNode;
let metricsUrl: string;

beforeAll(async () => {
	const port = await freePort();
	metricsUrl = `http://127.0.0.1:${port}/metrics`;
	node = await startNode({ METRICS_PORT: String(port) });
});

afterAll(async () => {
	await node?.stop();
});

async function scrape(): Promise<Sample[]> {
	const res = await fetch(metricsUrl);
	expect(res.status).toBe(200);
	return parse(await res.text());
}

test("cronjob_* metrics: runs by status, fire lag, worker jobs, leadership", async () => {
	const created = await node.request("POST", "/jobs", { body: { type: "command", schedule: "* * * * * *", executable: "true" } });
	expect(created.status).toBe(201);
	await waitFor(
		async () => (await node.request("GET", `/jobs/${created.body.id}/runs`)).body.filter((r: { status: string }) => r.status === "succeeded").length >= 2,
		15_000,
		"two succeeded runs",
	);

	const m = await scrape();
	const self = { nodeID: node.config.nodeId };
	expect(value(m, "cronjob_runs_total", { ...self, status: "succeeded" })).toBeGreaterThanOrEqual(1);
	// Moleculer's reporter writes no _count for a histogram without quantiles: the +Inf bucket is the count.
	expect(value(m, "cronjob_fire_lag_seconds_bucket", { le: "+Inf" })).toBeGreaterThanOrEqual(1);
	expect(m.filter((s) => s.name === "cronjob_fire_lag_seconds_bucket").length).toBe(12); // 11 bounds + Inf
	// Plausible lags: the runs started within 10 s of their instants.
	expect(value(m, "cronjob_fire_lag_seconds_bucket", { le: "10" })).toBe(value(m, "cronjob_fire_lag_seconds_bucket", { le: "+Inf" }));
	expect(value(m, "cronjob_worker_jobs", self)).toBe(1);
	expect(value(m, "cronjob_manager_leader", self)).toBe(1);
	expect(value(m, "cronjob_leader_changes_total", self)).toBeGreaterThanOrEqual(1);
	expect(value(m, "cronjob_reassignments_total", self)).toBe(0);

	// A failing job shows up under status="failed"; the worker jobs gauge follows the crontab.
	const failing = await node.request("POST", "/jobs", { body: { type: "command", schedule: "* * * * * *", executable: "exit 3" } });
	expect(failing.status).toBe(201);
	await waitFor(async () => (value(await scrape(), "cronjob_runs_total", { status: "failed" }) ?? 0) >= 1, 15_000, "a failed run counted");
	expect(value(await scrape(), "cronjob_worker_jobs")).toBe(2);
	expect((await node.request("DELETE", `/jobs/${created.body.id}`)).status).toBe(200);
	expect((await node.request("DELETE", `/jobs/${failing.body.id}`)).status).toBe(200);
	await waitFor(async () => value(await scrape(), "cronjob_worker_jobs") === 0, 10_000, "worker jobs gauge back to 0");
});
