/**
 * Clock skew between a worker and the database server. Two nodes in ONE process, joined by
 * Moleculer's in-memory "Fake" transporter and sharing a MemoryCoordinationHub:
 * - A: api, jobs (SQLite: the database clock is A's clock), manager, worker, system clock;
 * - B: worker only, with a clock 5 s ahead.
 * B publishes clockOffsetMs ~ 5000, gets no jobs, logs an error; /health reports the skew but keeps
 * answering 200 (HAProxy must not take the API out for a worker's clock).
 */
import { type Clock } from "../../lib/core/clock";
import { systemClock } from "../../lib/adapters/system/clock";
import { MemoryCoordinationHub } from "../../lib/adapters/memory/coordination";
import { startNode, tempDir, type TestNode } from "../support/node";
import { waitFor } from "../support/wait";

const SKEW_MS = 5000;
const namespace = `clock-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const hub = new MemoryCoordinationHub();
let a: TestNode;
let b: TestNode;
let errorLines: string[];
let errorSpy: jest.SpyInstance;

function aheadClock(ms: number): Clock {
	const sys = systemClock();
	return { ...sys, now: () => Date.now() + ms };
}

beforeAll(async () => {
	errorLines = [];
	const original = console.error.bind(console);
	errorSpy = jest.spyOn(console, "error").mockImplementation((...args: unknown[]) => {
		errorLines.push(args.map(String).join(" "));
		original(...args);
	});
	const common = { TRANSPORTER: "Fake", NAMESPACE: namespace, CRONJOB_SECRET_KEY: "11".repeat(32) };
	a = await startNode({ ...common, NODE_ID: `${namespace}-a`, SERVICES: "api,jobs,manager,worker" }, { hub });
	b = await startNode({ ...common, NODE_ID: `${namespace}-b`, SERVICES: "worker", CRONJOB_DATA_DIR: tempDir() }, { hub, clock: aheadClock(SKEW_MS) });
});

afterAll(async () => {
	await b?.stop();
	await a?.stop();
	errorSpy?.mockRestore();
});

test("a worker 5 s ahead is reported, gets no jobs, logs the skew; /health stays 200", async () => {
	// B is registered with its measured offset.
	const workers = await waitFor(
		async () => {
			const res = await a.request("GET", "/workers");
			return res.status === 200 && res.body.length === 2 ? (res.body as any[]) : null;
		},
		15_000,
		"both workers in /workers",
	);
	const wa = workers.find((w) => w.id === a.config.nodeId);
	const wb = workers.find((w) => w.id === b.config.nodeId);
	expect(Math.abs(wa.clockOffsetMs)).toBeLessThan(500);
	expect(wa.clockOk).toBe(true);
	expect(Math.abs(wb.clockOffsetMs - SKEW_MS)).toBeLessThan(500);
	expect(wb.clockOk).toBe(false);

	// Several jobs: every one lands on A.
	const ids: string[] = [];
	for (let i = 0; i < 6; i++) {
		const res = await a.request("POST", "/jobs", { body: { type: "command", schedule: "0 0 1 1 *", executable: `echo ${i}` } });
		expect(res.status).toBe(201);
		ids.push(res.body.id);
	}
	await waitFor(
		async () => {
			const jobs = await Promise.all(ids.map(async (id) => (await a.request("GET", `/jobs/${id}`)).body));
			return jobs.every((j) => j.worker === a.config.nodeId);
		},
		10_000,
		"every job assigned to A",
	);
	const after = (await a.request("GET", "/workers")).body as any[];
	expect(after.find((w) => w.id === a.config.nodeId).jobs).toBe(ids.length);
	expect(after.find((w) => w.id === b.config.nodeId).jobs).toBe(0);
	const bStatus = await b.broker.call<{ jobs: number; assigned: number; registration: { clockOffsetMs: number } }, Record<string, never>>(
		"worker.status",
		{},
		{ nodeID: b.config.nodeId },
	);
	expect(bStatus.jobs).toBe(0);
	expect(bStatus.assigned).toBe(0);
	expect(Math.abs(bStatus.registration.clockOffsetMs - SKEW_MS)).toBeLessThan(500);

	// /health: the skew in the body, status "degraded", but 200.
	const health = await a.request("GET", "/health", { token: null });
	expect(health.status).toBe(200);
	expect(health.body.status).toBe("degraded");
	expect(health.body.warnings).toEqual(["workerClocks"]);
	expect(health.body.backends.workerClocks).toMatchObject({ ok: false, skewed: [b.config.nodeId], boundMs: 1000 });
	expect(health.body.backends.database.ok).toBe(true);
	expect(health.body.backends.coordination.ok).toBe(true);
	expect(health.body.backends.objectStore.ok).toBe(true);
	// B's own view of its clock.
	const bHealth = await b.broker.call<{ workerClock: { ok: boolean; offsetMs: number } }, Record<string, never>>(
		"worker.health",
		{},
		{ nodeID: b.config.nodeId },
	);
	expect(bHealth.workerClock.ok).toBe(false);

	// The logs: B says its clock is off; the leading manager names B as excluded.
	expect(errorLines.some((l) => /This worker's clock is \d+ ms off the database's \(bound 1000 ms\)/.test(l))).toBe(true);
	expect(errorLines.some((l) => l.includes("get no jobs") && l.includes(b.config.nodeId))).toBe(true);
});
