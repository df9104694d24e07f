/**
 * ZooKeeper session expiry inside the services (Curator's recipe: drop leadership and claims,
 * re-register, reconcile), on the REAL ZooKeeper (ZOOKEEPER env; scripts/services.sh start). One node
 * with every service on SQLite, per-second jobs; the worker's and the manager's sessions are expired
 * for real (a second client with the same session id and password closes the session). Then: the
 * worker is registered again, the manager leads again, the jobs keep firing, no fire runs twice.
 */
import { removeZkTree } from "../support/zk-tree";
import { randomBytes } from "node:crypto";
import * as zookeeper from "node-zookeeper-client";
import type { Coordination, StateChange } from "../../lib/core/coordination";
import { MemoryCoordinationHub, type MemoryCoordination } from "../../lib/adapters/memory/coordination";
import type { ZookeeperCoordination } from "../../lib/adapters/zookeeper/coordination";
import { startNode, type TestNode } from "../support/node";
import { waitFor } from "../support/wait";
import type { WorkerEngine } from "../../lib/engine/worker/engine";

const ZK = process.env.ZOOKEEPER;
const root = `/cronjob-expiry-${randomBytes(5).toString("hex")}`;

if (!ZK) {
	console.warn('zk-expiry.test.ts SKIPPED: ZOOKEEPER is not set (run scripts/services.sh start; eval "$(scripts/services.sh env)")');
}
const maybe = ZK ? describe : describe.skip;

const removeRoot = (root: string) => removeZkTree(ZK!, root);

/** Connect a second client with the same session id and password, and close it at once. */
function closeTwin(sessionId: Buffer, sessionPassword: Buffer): Promise<void> {
	return new Promise((resolve, reject) => {
		const twin = zookeeper.createClient(ZK!, { sessionTimeout: 2000, sessionId, sessionPassword } as Partial<zookeeper.Option>);
		const timer = setTimeout(() => {
			twin.close();
			reject(new Error("twin did not connect"));
		}, 10_000);
		twin.once("connected", () => {
			clearTimeout(timer);
			twin.once("disconnected", () => resolve());
			twin.close();
		});
		twin.once("expired", () => {
			clearTimeout(timer);
			twin.close();
			resolve();
		});
		twin.connect();
	});
}

/** Expire a session for real; the original may win the race back, so repeat until it reports expiry. */
async function expire(c: ZookeeperCoordination): Promise<void> {
	let expired = false;
	const off = c.onStateChange((s) => {
		if (s.state === "expired") expired = true;
	});
	try {
		for (let attempt = 0; attempt < 10 && !expired; attempt++) {
			const creds = c.sessionCredentials();
			if (creds) await closeTwin(creds.sessionId, creds.password);
			await waitFor(() => expired, 1500, "expiry").catch(() => undefined);
		}
	} finally {
		off();
	}
	if (!expired) throw new Error("could not force a session expiry");
}

function coordinationOf(node: TestNode, service: string): ZookeeperCoordination {
	const svc = node.broker.getLocalService(service) as unknown as { coordination: Coordination };
	expect(svc.coordination.kind).toBe("zookeeper");
	return svc.coordination as ZookeeperCoordination;
}

interface RunView {
	id: string;
	scheduledAt: string;
	attempt: number;
	status: string;
	trigger: string;
}

maybe("ZooKeeper session expiry in the services", () => {
	let node: TestNode;

	beforeAll(async () => {
		node = await startNode({ ZOOKEEPER: ZK!, ZOOKEEPER_ROOT: root, ZOOKEEPER_SESSION_TIMEOUT_MS: "2000" });
	});

	afterAll(async () => {
		await node?.stop();
		if (ZK) await removeRoot(root);
	});

	async function runs(id: string): Promise<RunView[]> {
		const res = await node.request("GET", `/jobs/${id}/runs?limit=1000`);
		expect(res.status).toBe(200);
		return res.body as RunView[];
	}

	test("worker and manager sessions expire: re-registered, leader again, jobs keep firing, no fire twice", async () => {
		const ids: string[] = [];
		for (let i = 0; i < 3; i++) {
			const res = await node.request("POST", "/jobs", { body: { type: "command", schedule: "* * * * * *", executable: `echo ${i}` } });
			expect(res.status).toBe(201);
			ids.push(res.body.id);
		}
		for (const id of ids) await waitFor(async () => (await runs(id)).filter((r) => r.status === "succeeded").length >= 2, 15_000, `job ${id} runs`);

		const worker = coordinationOf(node, "worker");
		const manager = coordinationOf(node, "manager");
		const states: Record<string, StateChange[]> = { worker: [], manager: [] };
		worker.onStateChange((s) => states.worker.push(s));
		manager.onStateChange((s) => states.manager.push(s));
		const before = { worker: worker.sessionId(), manager: manager.sessionId() };
		const leaderChanges0 = (await node.broker.call<{ stats: { leaderChanges: number } }, Record<string, never>>("manager.status", {})).stats.leaderChanges;

		const expiredAt = Date.now();
		await Promise.all([expire(worker), expire(manager)]);

		// Both services got a new session, announced as such.
		await waitFor(() => worker.state() === "connected" && manager.state() === "connected", 15_000, "new sessions");
		await waitFor(
			() => states.worker.some((s) => s.state === "connected" && s.newSession) && states.manager.some((s) => s.state === "connected" && s.newSession),
			5000,
			"newSession events",
		);
		expect(worker.sessionId()).not.toBe(before.worker);
		expect(manager.sessionId()).not.toBe(before.manager);

		// The worker is registered again (seen through the manager's session, i.e. in ZooKeeper).
		await waitFor(async () => (await manager.listWorkers()).some((w) => w.id === node.config.nodeId), 10_000, "worker registered again");
		const workers = (await node.request("GET", "/workers")).body as { id: string; jobs: number; clockOffsetMs: number | null }[];
		expect(workers).toEqual([expect.objectContaining({ id: node.config.nodeId, jobs: 3 })]);
		expect(workers[0].clockOffsetMs).not.toBeNull();

		// The manager leads again (and counted the new term).
		await waitFor(
			async () => (await node.broker.call<{ isLeader: boolean; leader: string }, Record<string, never>>("manager.leader", {})).isLeader,
			10_000,
			"manager leads again",
		);
		expect((await node.broker.call<{ leader: string }, Record<string, never>>("manager.leader", {})).leader).toBe(node.config.nodeId);
		expect((await node.broker.call<{ stats: { leaderChanges: number } }, Record<string, never>>("manager.status", {})).stats.leaderChanges).toBeGreaterThan(
			leaderChanges0,
		);

		// The jobs keep firing after the expiry: fires scheduled well after it run and succeed.
		const resumedAt = Date.now();
		for (const id of ids) {
			await waitFor(
				async () => (await runs(id)).filter((r) => r.status === "succeeded" && Date.parse(r.scheduledAt) > resumedAt).length >= 2,
				15_000,
				`job ${id} fires after the expiry`,
			);
		}
		const status = await node.broker.call<{ jobs: number; assigned: number; coordination: string }, Record<string, never>>("worker.status", {});
		expect(status).toMatchObject({ jobs: 3, assigned: 3, coordination: "connected" });

		// No (job, scheduledAt) ran twice, and no per-second fire around the expiry was lost unrecorded.
		for (const id of ids) {
			const all = await runs(id);
			const first = all.filter((r) => r.attempt === 1);
			const at = first.map((r) => r.scheduledAt);
			expect(new Set(at).size).toBe(at.length);
			const seconds = new Set(at.map((s) => Math.floor(Date.parse(s) / 1000)));
			const lo = Math.floor(expiredAt / 1000) - 1;
			const hi = Math.floor(resumedAt / 1000) + 1;
			const lost: number[] = [];
			for (let s = lo; s <= hi; s++) if (!seconds.has(s)) lost.push(s);
			expect({ job: id, lost: lost.map((s) => new Date(s * 1000).toISOString()) }).toEqual({ job: id, lost: [] });
		}
	});
});

/**
 * The session's warnings ("suspended", "expired", "lost") reach the logger of the service that owns
 * the session, through the real wiring (createNode): the coordination is built with the service's
 * logger. The broker's Console logger prints warnings with console.warn, which is captured here.
 */
maybe("ZooKeeper session warnings in the service's log", () => {
	const logRoot = `/cronjob-expiry-log-${randomBytes(5).toString("hex")}`;
	const lines: string[] = [];
	let node: TestNode;
	let warn: jest.SpyInstance;

	beforeAll(async () => {
		warn = jest.spyOn(console, "warn").mockImplementation((...args: unknown[]) => {
			lines.push(
				args
					.map((a) => String(a))
					.join(" ")
					// eslint-disable-next-line no-control-regex -- strips the ANSI colour codes (ESC [ ... m) of the Console logger.
					.replace(/\u001b\[[0-9;]*m/g, ""),
			);
		});
		node = await startNode({ ZOOKEEPER: ZK!, ZOOKEEPER_ROOT: logRoot, ZOOKEEPER_SESSION_TIMEOUT_MS: "2000", SERVICES: "jobs,manager,worker" });
	});

	afterAll(async () => {
		await node?.stop();
		warn?.mockRestore();
		if (ZK) await removeRoot(logRoot);
	});

	test("an expiry is logged by the worker's and the manager's logger", async () => {
		await Promise.all([expire(coordinationOf(node, "worker")), expire(coordinationOf(node, "manager"))]);
		const logged = (service: string) => lines.some((l) => new RegExp(`\\b${service}: .*ZooKeeper session expired`).test(l));
		await waitFor(() => logged("WORKER") && logged("MANAGER"), 5000, "the expiry in the services' logs").catch(() => undefined);
		expect({ worker: logged("WORKER"), manager: logged("MANAGER") }).toEqual({ worker: true, manager: true });
	});
});

/**
 * The same worker logic on the in-process coordination, where a connection loss can be held for
 * several fires: while suspended no claim can be taken, so the worker must not fire (a fire would be
 * lost unrecorded); on reconnect the fires that fell due follow the misfire policy (run_once: the
 * latest runs, the others are recorded as missed). Fires claimed before the loss (prefired up to
 * CRONJOB_PREFIRE_MS ahead) are in flight, like a run started before it: they run at their instant.
 */
describe("connection loss over several fires (in-process coordination)", () => {
	let node: TestNode;
	const hub = new MemoryCoordinationHub();

	beforeAll(async () => {
		node = await startNode({}, { hub });
	});

	afterAll(async () => {
		await node?.stop();
	});

	test("a fire whose claim fails because the connection just dropped is given back and runs on reconnect", async () => {
		// The race: the crontab's timer hands a fire over just as the connection drops, so its claim
		// fails. Driven directly: fire() while disconnected, for a past instant of a yearly job.
		const res = await node.request("POST", "/jobs", { body: { type: "command", schedule: "0 0 1 1 *", executable: "echo given-back" } });
		expect(res.status).toBe(201);
		const id = res.body.id as string;
		const svc = node.broker.getLocalService("worker") as unknown as { coordination: MemoryCoordination; engine: WorkerEngine };
		const jobs = svc.engine.state.jobs;
		await waitFor(() => jobs.has(id), 10_000, "the job on the worker");
		const at = Date.UTC(new Date().getUTCFullYear(), 0, 1);
		hub.disconnect(svc.coordination);
		expect(await svc.engine.dispatcher.fire(jobs.get(id)!, at, "schedule", 1)).toBeNull();
		hub.reconnect(svc.coordination);
		const run = await waitFor(
			async () => ((await node.request("GET", `/jobs/${id}/runs`)).body as RunView[]).find((r) => Date.parse(r.scheduledAt) === at && r.status === "succeeded"),
			10_000,
			"the given-back fire ran",
		);
		expect(run.attempt).toBe(1);
		await node.request("DELETE", `/jobs/${id}`);
	});

	test("no fire is lost or doubled; the misfire policy decides on reconnect", async () => {
		const res = await node.request("POST", "/jobs", { body: { type: "command", schedule: "* * * * * *", executable: "true" } });
		expect(res.status).toBe(201);
		const id = res.body.id as string;
		const runs = async () => (await node.request("GET", `/jobs/${id}/runs?limit=1000`)).body as RunView[];
		await waitFor(async () => (await runs()).filter((r) => r.status === "succeeded").length >= 2, 15_000, "runs before the outage");

		const worker = (node.broker.getLocalService("worker") as unknown as { coordination: MemoryCoordination }).coordination;
		hub.disconnect(worker);
		const downAt = Date.now();
		// Hold the outage over three or more fire instants past the prefired ones (the scenario, not a
		// correctness wait).
		await waitFor(() => Date.now() - downAt >= node.config.prefireMs + 3500, 15_000, "outage of 3.5 s past the prefire lead");
		hub.reconnect(worker);
		const upAt = Date.now();

		await waitFor(
			async () => (await runs()).some((r) => Date.parse(r.scheduledAt) > upAt + 1000 && r.status === "succeeded"),
			10_000,
			"fires after the reconnect",
		);
		const all = await runs();
		const first = all.filter((r) => r.attempt === 1);
		expect(new Set(first.map((r) => r.scheduledAt)).size).toBe(first.length);
		// Every second of the outage has a record: the latest ran (catchup), the others were missed.
		// Fires claimed before it (prefired) ran at their instant.
		const claimedBefore = downAt + node.config.prefireMs + 100;
		const inOutage = first.filter((r) => Date.parse(r.scheduledAt) > claimedBefore && Date.parse(r.scheduledAt) <= upAt);
		const seconds = first.map((r) => Math.floor(Date.parse(r.scheduledAt) / 1000));
		for (let sec = Math.floor(downAt / 1000) - 1; sec <= Math.floor(upAt / 1000) + 1; sec++)
			expect({ sec, recorded: seconds.includes(sec) }).toEqual({ sec, recorded: true });
		expect(inOutage.length).toBeGreaterThanOrEqual(3);
		const ran = inOutage.filter((r) => r.status !== "missed");
		expect(ran.length).toBe(1);
		expect(ran[0].trigger).toBe("catchup");
		expect(ran[0].scheduledAt).toBe(
			inOutage
				.map((r) => r.scheduledAt)
				.sort()
				.pop(),
		);
		// No run claimed during the outage started during it.
		for (const r of all) {
			const started = (r as unknown as { startedAt: string | null }).startedAt;
			if (started && Date.parse(r.scheduledAt) > claimedBefore) expect(Date.parse(started) < downAt + 50 || Date.parse(started) >= upAt).toBe(true);
		}
	});
});
