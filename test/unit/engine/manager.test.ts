/**
 * The manager engine over a fake clock, the in-memory coordination and a fake jobs service: no
 * broker, no real time. Each case is a named row: the cluster it starts from and what it does.
 */
import { type MemoryCoordination, MemoryCoordinationHub } from "../../../lib/adapters/memory/coordination";
import type { AssignmentMove, WorkerRegistration } from "../../../lib/core/coordination";
import { JOB_IDS_MAX_AGE_MS, ManagerEngine, RETRY_MS, TIDY_DELAY_MS } from "../../../lib/engine/manager/manager-engine";
import type { JobsClient, ManagerMetrics, ManagerTuning, WorkerOfJob } from "../../../lib/engine/manager/ports";
import { FakeClock } from "../../support/fake-clock";

const BOUND_MS = 1000;

const jobIds = (n: number, prefix = "j") => Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, "0")}`);

/** The jobs service: answers from `ids`, records every call, fails or holds calls on demand. */
class FakeJobs implements JobsClient {
	readonly schedulableCalls: { after?: string; limit: number }[] = [];
	readonly setWorkersCalls: WorkerOfJob[][] = [];
	/** The next calls that fail (Infinity: all of them). */
	failSchedulable = 0;
	failSetWorkers = 0;
	private held: { release: () => void } | null = null;
	private holdNext = false;

	constructor(public ids: string[]) {}

	/** Hold the next schedulable call (it answers the ids of the time of the call) until release(). */
	hold(): { release: () => void } {
		this.holdNext = true;
		return {
			release: () => {
				this.holdNext = false;
				this.held?.release();
				this.held = null;
			},
		};
	}

	async schedulable(page: { after?: string; limit: number }): Promise<string[]> {
		this.schedulableCalls.push({ ...page });
		const answer = [...this.ids]
			.sort()
			.filter((id) => page.after === undefined || id > page.after)
			.slice(0, page.limit);
		if (this.holdNext) {
			this.holdNext = false;
			await new Promise<void>((resolve) => (this.held = { release: resolve }));
		}
		if (this.failSchedulable > 0) {
			this.failSchedulable--;
			throw new Error("jobs is unavailable");
		}
		return answer;
	}

	setWorkers(moves: WorkerOfJob[]): Promise<number> {
		this.setWorkersCalls.push(moves.map((m) => ({ ...m })));
		if (this.failSetWorkers > 0) {
			this.failSetWorkers--;
			return Promise.reject(new Error("database is unavailable"));
		}
		return Promise.resolve(moves.length);
	}
}

class RecordingMetrics implements ManagerMetrics {
	readonly calls: string[] = [];
	leaderChanged() {
		this.calls.push("leaderChanged");
	}
	reassigned(count: number) {
		this.calls.push(`reassigned ${count}`);
	}
	leading(isLeader: boolean) {
		this.calls.push(`leading ${isLeader}`);
	}
}

interface WorkerSpec {
	id: string;
	clockOffsetMs?: number | null;
	clockErrorMs?: number | null;
}

function registration(w: WorkerSpec): WorkerRegistration {
	return {
		id: w.id,
		host: "test",
		pid: 1,
		startedAt: "2030-01-01T00:00:00.000Z",
		capacity: 10,
		clockOffsetMs: w.clockOffsetMs ?? 0,
		clockErrorMs: w.clockErrorMs ?? 0,
	};
}

interface Rig {
	clock: FakeClock;
	hub: MemoryCoordinationHub;
	session: MemoryCoordination;
	engine: ManagerEngine;
	jobs: FakeJobs;
	metrics: RecordingMetrics;
	logs: { level: string; text: string }[];
	/** Every applyMoves call of the manager's session, in order. */
	applied: AssignmentMove[][];
	workers: Map<string, MemoryCoordination>;
	addWorker(w: WorkerSpec): Promise<void>;
	killWorker(id: string): Promise<void>;
	setOffset(id: string, clockOffsetMs: number | null): Promise<void>;
	/** The assignment as recorded in the coordination (dead workers' records included). */
	assignment(): Promise<Record<string, string[]>>;
	logged(level: string, fragment: string): boolean;
}

const sessions: MemoryCoordination[] = [];

async function rig(opts: { jobs: string[]; workers: WorkerSpec[]; tuning?: Partial<ManagerTuning>; start?: boolean }): Promise<Rig> {
	const clock = new FakeClock();
	const hub = new MemoryCoordinationHub();
	const workers = new Map<string, MemoryCoordination>();
	const addWorker = async (w: WorkerSpec) => {
		const s = hub.session();
		sessions.push(s);
		await s.connect();
		await s.registerWorker(registration(w));
		workers.set(w.id, s);
	};
	for (const w of opts.workers) await addWorker(w);
	const session = hub.session();
	sessions.push(session);
	await session.connect();
	const applied: AssignmentMove[][] = [];
	const applyMoves = session.applyMoves.bind(session);
	session.applyMoves = async (moves) => {
		applied.push(moves.map((m) => ({ ...m })));
		return applyMoves(moves);
	};
	const logs: { level: string; text: string }[] = [];
	const log =
		(level: string) =>
		(...args: unknown[]) =>
			logs.push({ level, text: args.map(String).join(" ") });
	const jobs = new FakeJobs(opts.jobs);
	const metrics = new RecordingMetrics();
	const engine = new ManagerEngine({
		selfId: "manager-1",
		clock,
		coordination: session,
		jobs,
		logger: { info: log("info"), warn: log("warn"), error: log("error") },
		metrics,
		clockSkewBoundMs: BOUND_MS,
		tuning: opts.tuning,
	});
	const r: Rig = {
		clock,
		hub,
		session,
		engine,
		jobs,
		metrics,
		logs,
		applied,
		workers,
		addWorker,
		killWorker: async (id) => {
			await workers.get(id)!.close();
			workers.delete(id);
		},
		setOffset: async (id, clockOffsetMs) => workers.get(id)!.updateWorker(registration({ id, clockOffsetMs })),
		assignment: async () => Object.fromEntries(await session.allAssignments()),
		logged: (level, fragment) => logs.some((l) => l.level === level && l.text.includes(fragment)),
	};
	if (opts.start !== false) {
		await engine.start();
		await clock.settle();
	}
	return r;
}

afterEach(async () => {
	for (const s of sessions.splice(0)) await s.close();
});

/** Every job on exactly one of `workers`, balanced by count (max - min <= 1). */
function expectBalanced(assignment: Record<string, string[]>, jobs: string[], workers: string[]) {
	const all = Object.values(assignment).flat();
	expect(all.sort()).toEqual([...jobs].sort());
	expect(Object.keys(assignment).every((w) => workers.includes(w))).toBe(true);
	const loads = workers.map((w) => assignment[w]?.length ?? 0);
	expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(1);
}

describe("ManagerEngine: a new leader assigns every job to the live workers", () => {
	test.each([
		{ name: "no job, one worker", jobs: 0, workers: ["w1"], eligible: ["w1"], pageSize: undefined, calls: 1 },
		{ name: "ten jobs over three workers", jobs: 10, workers: ["w1", "w2", "w3"], eligible: ["w1", "w2", "w3"], pageSize: undefined, calls: 1 },
		{ name: "read in pages (25 jobs, pages of 10)", jobs: 25, workers: ["w1", "w2"], eligible: ["w1", "w2"], pageSize: 10, calls: 3 },
		{ name: "an exact number of pages ends with an empty page", jobs: 20, workers: ["w1"], eligible: ["w1"], pageSize: 10, calls: 3 },
		{ name: "a worker with a skewed clock gets none", jobs: 9, workers: ["w1", "w2", "w3!"], eligible: ["w1", "w2"], pageSize: undefined, calls: 1 },
	])("$name", async ({ jobs, workers, eligible, pageSize, calls }) => {
		const ids = jobIds(jobs);
		const r = await rig({
			jobs: ids,
			workers: workers.map((w) => ({ id: w.replace("!", ""), clockOffsetMs: w.endsWith("!") ? 5000 : 0 })),
			tuning: pageSize ? { pageSize } : undefined,
		});
		expect(r.engine.isLeader).toBe(true);
		expect(r.logged("info", "manager-1 leads the managers")).toBe(true);
		expectBalanced(await r.assignment(), ids, eligible);
		expect(r.jobs.schedulableCalls).toHaveLength(calls);
		if (pageSize)
			expect(r.jobs.schedulableCalls.map((c) => c.after)).toEqual([undefined, ...Array.from({ length: calls - 1 }, (_, i) => ids[(i + 1) * pageSize - 1])]);
		// The display column: every job's worker, once.
		expect(
			r.jobs.setWorkersCalls
				.flat()
				.map((m) => m.jobId)
				.sort(),
		).toEqual(ids);
		expect(r.metrics.calls).toEqual(["leaderChanged", "leading true"]);
		expect(r.engine.stats).toMatchObject({ leaderChanges: 1, reassignments: 0 });
		expect(r.engine.stats.reconciles).toBeGreaterThanOrEqual(1);
		expect(r.engine.status()).toMatchObject({ node: "manager-1", leader: true, coordination: "connected" });
		const view = await r.engine.workers();
		expect(view.map((w) => [w.id, w.jobs > 0 || jobs === 0, w.clockOk])).toEqual(workers.map((w) => [w.replace("!", ""), !w.endsWith("!"), !w.endsWith("!")]));
	});
});

describe("ManagerEngine: a worker is excluded only when its offset minus its error bound exceeds the bound", () => {
	test.each<[string, number, number, boolean]>([
		["offset 1500 ms ± 600 ms: maybe within 1000 ms, eligible", 1500, 600, true],
		["offset 1500 ms ± 400 ms: surely off, excluded", 1500, 400, false],
		["offset -1500 ms ± 400 ms: surely off the other way, excluded", -1500, 400, false],
		["offset 900 ms ± 0 ms: within, eligible", 900, 0, true],
	])("%s", async (_name, clockOffsetMs, clockErrorMs, eligible) => {
		const ids = jobIds(6);
		const r = await rig({ jobs: ids, workers: [{ id: "w1" }, { id: "w2", clockOffsetMs, clockErrorMs }] });
		expect((await r.engine.workers()).find((w) => w.id === "w2")).toMatchObject({ clockOffsetMs, clockErrorMs, clockOk: eligible });
		expectBalanced(await r.assignment(), ids, eligible ? ["w1", "w2"] : ["w1"]);
	});
});

interface Case {
	name: string;
	jobs: number;
	workers: WorkerSpec[];
	tuning?: Partial<ManagerTuning>;
	run(r: Rig): Promise<void>;
}

const cases: Case[] = [
	{
		name: "a worker dies: its jobs move to the survivors first, its records are tidied only after the tidy delay",
		jobs: 9,
		workers: [{ id: "w1" }, { id: "w2" }, { id: "w3" }],
		async run(r) {
			const before = await r.assignment();
			const victim = before.w3;
			expect(victim).toHaveLength(3);
			r.applied.length = 0;
			await r.killWorker("w3");
			await r.clock.settle();
			// The survivors run everything; the dead worker's records are still there.
			const after = await r.assignment();
			expect(after.w3).toEqual(victim);
			expectBalanced({ w1: after.w1, w2: after.w2 }, jobIds(9), ["w1", "w2"]);
			// The survivors' writes are plain assignments: nothing removed from the dead worker yet.
			expect(r.applied).toHaveLength(1);
			expect(r.applied[0].every((m) => m.from === null && m.to !== null)).toBe(true);
			expect(r.engine.stats.reassignments).toBe(3);
			expect(r.metrics.calls).toContain("reassigned 3");
			await r.clock.advance(TIDY_DELAY_MS - 1);
			expect((await r.assignment()).w3).toEqual(victim);
			await r.clock.advance(1);
			expect((await r.assignment()).w3).toBeUndefined();
			// The tidying was its own write, inside a later reconcile, never beside a plan.
			expect(r.applied).toHaveLength(2);
			expect(r.applied[1]).toEqual(victim.map((jobId) => ({ jobId, from: "w3", to: null })));
			expect(r.clock.pending).toBe(0);
		},
	},
	{
		name: "a dead worker back before the tidy delay: its records are left to the plan",
		jobs: 9,
		workers: [{ id: "w1" }, { id: "w2" }, { id: "w3" }],
		async run(r) {
			await r.killWorker("w3");
			await r.clock.settle();
			await r.addWorker({ id: "w3" });
			await r.clock.settle();
			await r.clock.advance(TIDY_DELAY_MS);
			expectBalanced(await r.assignment(), jobIds(9), ["w1", "w2", "w3"]);
		},
	},
	{
		name: "several workers die one after the other: one tidy timer, every dead record removed",
		jobs: 12,
		workers: [{ id: "w1" }, { id: "w2" }, { id: "w3" }, { id: "w4" }],
		async run(r) {
			await r.killWorker("w4");
			await r.clock.settle();
			await r.clock.advance(500);
			await r.killWorker("w3");
			await r.clock.settle();
			expect(r.clock.pending).toBe(1);
			await r.clock.advance(TIDY_DELAY_MS - 500);
			const a = await r.assignment();
			expect(Object.keys(a).sort()).toEqual(["w1", "w2"]);
			expectBalanced(a, jobIds(12), ["w1", "w2"]);
		},
	},
	{
		name: "a reconcile that fails is tried again after 1 s of fake time",
		jobs: 4,
		workers: [{ id: "w1" }],
		async run(r) {
			// The rig started the engine with a failing jobs service (see the start hook below).
			expect(await r.assignment()).toEqual({});
			expect(r.logged("error", "Reconcile failed; retrying in 1 s: jobs is unavailable")).toBe(true);
			expect(r.clock.pending).toBe(1);
			await r.clock.advance(RETRY_MS - 1);
			expect(await r.assignment()).toEqual({});
			await r.clock.advance(1);
			expect(await r.assignment()).toEqual({ w1: jobIds(4) });
			expect(r.jobs.schedulableCalls).toHaveLength(2);
		},
	},
	{
		name: "a coordination write that fails is tried again after 1 s",
		jobs: 4,
		workers: [{ id: "w1" }],
		async run(r) {
			expect(r.logged("error", "Reconcile failed; retrying in 1 s: coordination down")).toBe(true);
			await r.clock.advance(RETRY_MS);
			expect(await r.assignment()).toEqual({ w1: jobIds(4) });
			// The job ids read before the failure are still fresh: not read again.
			expect(r.jobs.schedulableCalls).toHaveLength(1);
		},
	},
	{
		name: "leadership lost mid-reconcile: the old term's plan is not applied, and no reconcile follows",
		jobs: 6,
		workers: [{ id: "w1" }, { id: "w2" }],
		async run(r) {
			const gate = r.jobs.hold();
			r.jobs.ids = [...r.jobs.ids, "j100"];
			r.engine.jobsChanged();
			await r.clock.settle();
			r.hub.disconnect(r.session);
			await r.clock.settle();
			expect(r.engine.isLeader).toBe(false);
			expect(r.logged("warn", "manager-1 lost the leadership")).toBe(true);
			r.applied.length = 0;
			gate.release();
			await r.clock.advance(10_000);
			expect(r.applied).toEqual([]);
			expect(r.jobs.schedulableCalls).toHaveLength(2);
			expect(r.metrics.calls.at(-1)).toBe("leading false");
		},
	},
	{
		name: "leadership lost and regained mid-reconcile (a session expiry): only the new term's plan is applied",
		jobs: 6,
		workers: [{ id: "w1" }, { id: "w2" }],
		async run(r) {
			const gate = r.jobs.hold();
			r.jobs.ids = [...r.jobs.ids, "old"];
			r.engine.jobsChanged();
			await r.clock.settle();
			// The held read answers the view of the old term ("old" schedulable); then the job goes.
			r.jobs.ids = r.jobs.ids.filter((id) => id !== "old").concat("new");
			r.hub.expire(r.session);
			await r.clock.settle();
			expect(r.engine.isLeader).toBe(true);
			expect(r.engine.stats.leaderChanges).toBe(2);
			r.applied.length = 0;
			gate.release();
			await r.clock.settle();
			expect(r.applied.flat().some((m) => m.jobId === "old")).toBe(false);
			expect(r.applied.flat().some((m) => m.jobId === "new")).toBe(true);
			expectBalanced(await r.assignment(), [...jobIds(6), "new"], ["w1", "w2"]);
		},
	},
	{
		name: "a worker whose clock goes off is excluded, and included again when it comes back",
		jobs: 8,
		workers: [{ id: "w1" }, { id: "w2" }],
		async run(r) {
			expectBalanced(await r.assignment(), jobIds(8), ["w1", "w2"]);
			await r.setOffset("w2", -5000);
			await r.clock.settle();
			expect(await r.assignment()).toEqual({ w1: jobIds(8) });
			expect(r.logged("error", `Worker clock(s) off the database's by more than ${BOUND_MS} ms get no jobs: w2 (-5000 ms)`)).toBe(true);
			expect((await r.engine.health()).workerClocks).toEqual({ ok: false, skewed: ["w2"], boundMs: BOUND_MS });
			expect((await r.engine.workers()).map((w) => [w.id, w.jobs, w.clockOk])).toEqual([
				["w1", 8, true],
				["w2", 0, false],
			]);
			// A heartbeat that keeps the same skew does not reconcile again.
			const reconciles = r.engine.stats.reconciles;
			await r.setOffset("w2", -4000);
			await r.clock.settle();
			expect(r.engine.stats.reconciles).toBe(reconciles);
			await r.setOffset("w2", 200);
			await r.clock.settle();
			expectBalanced(await r.assignment(), jobIds(8), ["w1", "w2"]);
			expect(r.logged("info", "Every worker clock is within the bound again")).toBe(true);
			expect((await r.engine.health()).workerClocks).toEqual({ ok: true, skewed: [], boundMs: BOUND_MS });
		},
	},
	{
		name: "jobs.changed makes the next reconcile read the ids again; otherwise they are cached until the max age",
		jobs: 4,
		workers: [{ id: "w1" }],
		async run(r) {
			expect(r.jobs.schedulableCalls).toHaveLength(1);
			// A worker joins: the reconcile plans from the cached ids.
			r.jobs.ids = [...r.jobs.ids, "j900"];
			await r.addWorker({ id: "w2" });
			await r.clock.settle();
			expect(r.jobs.schedulableCalls).toHaveLength(1);
			expectBalanced(await r.assignment(), jobIds(4), ["w1", "w2"]);
			// jobs.changed: read again, the new job is assigned.
			r.engine.jobsChanged();
			await r.clock.settle();
			expect(r.jobs.schedulableCalls).toHaveLength(2);
			expectBalanced(await r.assignment(), [...jobIds(4), "j900"], ["w1", "w2"]);
			// No event (a lost one): the cache serves until it is JOB_IDS_MAX_AGE_MS old.
			r.jobs.ids = [...r.jobs.ids, "j901"];
			await r.clock.advance(JOB_IDS_MAX_AGE_MS - 1);
			await r.addWorker({ id: "w3" });
			await r.clock.settle();
			expect(r.jobs.schedulableCalls).toHaveLength(2);
			await r.clock.advance(1);
			await r.addWorker({ id: "w4" });
			await r.clock.settle();
			expect(r.jobs.schedulableCalls).toHaveLength(3);
			expectBalanced(await r.assignment(), [...jobIds(4), "j900", "j901"], ["w1", "w2", "w3", "w4"]);
		},
	},
	{
		name: "a failed read of the ids is read again on the retry, not served from the cache",
		jobs: 4,
		workers: [{ id: "w1" }],
		async run(r) {
			r.jobs.ids = [...r.jobs.ids, "j900"];
			r.jobs.failSchedulable = 1;
			r.engine.jobsChanged();
			await r.clock.settle();
			expect(r.jobs.schedulableCalls).toHaveLength(2);
			await r.clock.advance(RETRY_MS);
			expect(r.jobs.schedulableCalls).toHaveLength(3);
			expect(await r.assignment()).toEqual({ w1: [...jobIds(4), "j900"] });
		},
	},
	{
		name: "reconcile requests coalesce: one runs at a time, one more after it",
		jobs: 4,
		workers: [{ id: "w1" }],
		async run(r) {
			const reconciles = r.engine.stats.reconciles;
			const gate = r.jobs.hold();
			r.engine.jobsChanged();
			await r.clock.settle();
			expect(r.jobs.schedulableCalls).toHaveLength(2);
			// Changes during the held read: one more reconcile after it, which reads the ids again.
			for (let i = 0; i < 5; i++) r.engine.jobsChanged();
			await r.clock.settle();
			expect(r.jobs.schedulableCalls).toHaveLength(2);
			gate.release();
			await r.clock.settle();
			expect(r.jobs.schedulableCalls).toHaveLength(3);
			expect(r.engine.stats.reconciles).toBe(reconciles + 2);
		},
	},
	{
		name: "the display column: written in pages behind the reconcile, each failure retried after 1 s until it succeeds",
		jobs: 5,
		workers: [{ id: "w1" }, { id: "w2" }],
		tuning: { pageSize: 2 },
		async run(r) {
			// The rig started with two failing writes: the first page was tried once so far.
			expect(await r.assignment()).toEqual({ w1: ["j000", "j001", "j002"], w2: ["j003", "j004"] });
			expect(r.jobs.setWorkersCalls).toHaveLength(1);
			expect(r.logged("warn", "Cannot record the jobs' workers now; retrying in 1 s: database is unavailable")).toBe(true);
			await r.clock.advance(RETRY_MS);
			expect(r.jobs.setWorkersCalls).toHaveLength(2);
			await r.clock.advance(RETRY_MS);
			expect(r.jobs.setWorkersCalls.map((c) => c.map((m) => `${m.jobId}>${m.to}`))).toEqual([
				["j000>w1", "j001>w1"],
				["j000>w1", "j001>w1"],
				["j000>w1", "j001>w1"],
				["j002>w1", "j003>w2"],
				["j004>w2"],
			]);
			expect(r.clock.pending).toBe(0);
		},
	},
	{
		name: "the display column: a write that keeps failing is dropped when the term changes",
		jobs: 3,
		workers: [{ id: "w1" }],
		async run(r) {
			expect(r.jobs.setWorkersCalls).toHaveLength(1);
			await r.clock.advance(RETRY_MS * 3);
			expect(r.jobs.setWorkersCalls).toHaveLength(4);
			r.hub.disconnect(r.session);
			await r.clock.settle();
			expect(r.engine.isLeader).toBe(false);
			// The write under way when the term changed is the last one: the next leader writes its own.
			await r.clock.advance(RETRY_MS * 10);
			expect(r.jobs.setWorkersCalls.length).toBeLessThanOrEqual(5);
			const calls = r.jobs.setWorkersCalls.length;
			await r.clock.advance(RETRY_MS * 10);
			expect(r.jobs.setWorkersCalls).toHaveLength(calls);
			expect(r.clock.pending).toBe(0);
		},
	},
	{
		name: "stop: resigns, drops the pending tidying and its timer",
		jobs: 6,
		workers: [{ id: "w1" }, { id: "w2" }],
		async run(r) {
			await r.killWorker("w2");
			await r.clock.settle();
			expect(r.clock.pending).toBe(1);
			await r.engine.stop();
			await r.clock.settle();
			expect(r.engine.isLeader).toBe(false);
			expect(r.clock.pending).toBe(0);
			expect(await r.engine.reconcile()).toBe(false);
			expect(await r.engine.leaderInfo()).toEqual({ leader: null, self: "manager-1", isLeader: false });
		},
	},
];

/** Per case, what is broken before the engine starts. */
const startHooks: Record<string, (r: Rig) => void> = {
	"a reconcile that fails is tried again after 1 s of fake time": (r) => {
		r.jobs.failSchedulable = 1;
	},
	"a coordination write that fails is tried again after 1 s": (r) => {
		const applyMoves = r.session.applyMoves.bind(r.session);
		let failed = false;
		r.session.applyMoves = async (moves) => {
			if (!failed) {
				failed = true;
				throw new Error("coordination down");
			}
			return applyMoves(moves);
		};
	},
	"the display column: written in pages behind the reconcile, each failure retried after 1 s until it succeeds": (r) => {
		r.jobs.failSetWorkers = 2;
	},
	"the display column: a write that keeps failing is dropped when the term changes": (r) => {
		r.jobs.failSetWorkers = Infinity;
	},
};

describe("ManagerEngine", () => {
	test.each(cases)("$name", async (c) => {
		const r = await rig({ jobs: jobIds(c.jobs), workers: c.workers, tuning: c.tuning, start: false });
		startHooks[c.name]?.(r);
		await r.engine.start();
		await r.clock.settle();
		await c.run(r);
	});

	test("reads time and sets timers only through the injected clock (no Date.now, no global setTimeout)", async () => {
		const setTimeoutSpy = jest.spyOn(global, "setTimeout");
		const setIntervalSpy = jest.spyOn(global, "setInterval");
		const dateNowSpy = jest.spyOn(Date, "now");
		try {
			const r = await rig({ jobs: jobIds(6), workers: [{ id: "w1" }, { id: "w2" }, { id: "w3" }], start: false });
			r.jobs.failSchedulable = 1;
			r.jobs.failSetWorkers = 1;
			await r.engine.start();
			await r.clock.settle();
			// The reconcile retry, the display write retry, the failover and its deferred tidying.
			await r.clock.advance(RETRY_MS);
			await r.clock.advance(RETRY_MS);
			await r.killWorker("w3");
			await r.clock.settle();
			await r.clock.advance(TIDY_DELAY_MS);
			r.engine.jobsChanged();
			await r.clock.advance(JOB_IDS_MAX_AGE_MS);
			await r.engine.reconcile();
			expect(Object.keys(await r.assignment())).toEqual(["w1", "w2"]);
			expect(r.jobs.setWorkersCalls.length).toBeGreaterThanOrEqual(2);
			await r.engine.stop();
			expect(setTimeoutSpy).not.toHaveBeenCalled();
			expect(setIntervalSpy).not.toHaveBeenCalled();
			expect(dateNowSpy).not.toHaveBeenCalled();
		} finally {
			setTimeoutSpy.mockRestore();
			setIntervalSpy.mockRestore();
			dateNowSpy.mockRestore();
		}
	});
});
