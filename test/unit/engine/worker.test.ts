/**
 * The worker engine on a fake clock, the in-memory coordination, a fake jobs service (its run
 * ledger) and a fake process runner: no broker, no process, no real time. Each case is named after
 * the path a fire takes; the anchor T0 is the top of an hour (2030-01-01T00:00:00Z), and times are
 * offsets from it.
 */
import { MemoryCoordinationHub } from "../../../lib/adapters/memory/coordination";
import { RunSetupError, unavailable } from "../../../lib/core/errors";
import { DEFAULT_BACKLOG_BOUNDS, type BacklogBounds } from "../../../lib/core/policies";
import type { MisfirePolicy } from "../../../lib/core/types";
import type { WorkerJob } from "../../../lib/core/views";
import { WorkerEngine } from "../../../lib/engine/worker/engine";
import { TRANSITIONS, type FireOutcome, type StageName } from "../../../lib/engine/worker/fire";
import { GIVE_BACK_RETRY_MS } from "../../../lib/engine/worker/fire-loop";
import { NO_METRICS, type FinishRequest } from "../../../lib/engine/worker/ports";
import { PrefireLead } from "../../../lib/engine/worker/prefire-lead";
import { FINISH_BATCH_BYTES, resultBytes, RunRecorder } from "../../../lib/engine/worker/recorder";
import { decideMissedFires, type MissedCause } from "../../../lib/engine/worker/recovery";
import { FakeClock } from "../../support/fake-clock";
import { FakeJobs, FakeRunner, MemoryOutbox, recordingLogger, workerJob, type LogLine } from "../../support/worker-fakes";

const T0 = Date.UTC(2030, 0, 1, 0, 0, 0);
const s = (n: number) => T0 + n * 1000;
/** The engine starts half a second past T0 (a fire due at exactly its start would be the crontab's). */
const START = T0 + 500;
const NODE = "w1";
/** A schedule with no fire near T0 (1 July): jobs that only run when a case says so. */
const NEVER = "0 0 0 1 7 *";

interface Transition {
	jobId: string;
	at: number;
	attempt: number;
	from: StageName;
	to: StageName;
	outcome?: FireOutcome;
}

async function harness(opts: { prefireMs?: number; maxConcurrentRuns?: number; maxInFlight?: number; backlog?: BacklogBounds; start?: number } = {}) {
	const clock = new FakeClock({ start: opts.start ?? START });
	const hub = new MemoryCoordinationHub();
	const coordination = hub.session();
	await coordination.connect();
	const other = hub.session(); // the manager, another worker
	await other.connect();
	const jobs = new FakeJobs(clock);
	const runner = new FakeRunner(clock);
	const outbox = new MemoryOutbox();
	const logs: LogLine[] = [];
	const transitions: Transition[] = [];
	const engine = new WorkerEngine(
		{
			nodeId: NODE,
			prefireMs: opts.prefireMs ?? 1000,
			maxConcurrentRuns: opts.maxConcurrentRuns ?? 8,
			maxInFlight: opts.maxInFlight,
			backlog: opts.backlog,
			clockSkewBoundMs: 1000,
			heartbeatMs: 60_000,
			stopGraceMs: 10_000,
			registration: { host: "test", pid: 1, capacity: 100 },
		},
		{
			clock,
			coordination,
			jobs,
			runner,
			outbox,
			logger: recordingLogger(logs),
			observe: (fire, from) =>
				transitions.push({
					jobId: fire.jobId,
					at: fire.scheduledAt,
					attempt: fire.attempt,
					from: from.stage,
					to: fire.state.stage,
					...(fire.state.stage === "ended" ? { outcome: fire.state.outcome } : {}),
				}),
		},
	);
	const h = {
		clock,
		hub,
		coordination,
		other,
		jobs,
		runner,
		outbox,
		logs,
		transitions,
		engine,
		/** Put jobs in the ledger and assign them here. */
		async assign(...list: WorkerJob[]) {
			for (const j of list) jobs.put(j);
			await other.applyMoves(list.map((j) => ({ jobId: j.id, from: null, to: NODE })));
			await clock.advance(0);
		},
		async move(jobId: string, to = "w2") {
			await other.applyMoves([{ jobId, from: NODE, to }]);
			await clock.advance(0);
		},
		async start() {
			await engine.start();
			await clock.advance(0);
		},
		/** POST /jobs/{id}/run: the start is recorded on the clock's next turn. */
		async runNow(jobId: string) {
			const run = engine.runNow(jobId);
			await clock.advance(0);
			return run;
		},
		/** The stages one fire went through, in order. */
		path(jobId: string, at: number, attempt = 1): StageName[] {
			const mine = transitions.filter((t) => t.jobId === jobId && t.at === at && t.attempt === attempt);
			return mine.length === 0 ? [] : [mine[0].from, ...mine.map((t) => t.to)];
		},
		outcomes(jobId: string): FireOutcome[] {
			return transitions.filter((t) => t.jobId === jobId && t.outcome).map((t) => t.outcome!);
		},
		ledger(jobId: string) {
			return jobs.rowsOf(jobId).map((r) => ({ at: (r.scheduledAt - T0) / 1000, attempt: r.attempt, trigger: r.trigger, status: r.status }));
		},
		started(jobId: string) {
			return runner.started.filter((p) => p.jobId === jobId);
		},
	};
	return h;
}

type Harness = Awaited<ReturnType<typeof harness>>;

afterEach(() => jest.restoreAllMocks());

describe("fire stages", () => {
	test("every transition the dispatcher makes is in the table, and the table ends in ended", () => {
		for (const [from, to] of Object.entries(TRANSITIONS)) {
			if (from === "ended") expect(to).toEqual([]);
			else expect(to).toContain("ended");
		}
	});
});

describe("prefire", () => {
	test("prefired then released: claimed, recorded and spawned a lead ahead, the code starts at the instant", async () => {
		const h = await harness();
		await h.start();
		await h.assign(workerJob("a", { schedule: "0 * * * * *" }, T0)); // every minute, first at T0+60 s
		await h.clock.advanceTo(s(59)); // the fire at 60 s is handed over 1 s ahead
		expect(h.ledger("a")).toEqual([{ at: 60, attempt: 1, trigger: "schedule", status: "running" }]);
		expect(h.started("a")).toEqual([]);
		await h.clock.advanceTo(s(61));
		expect(h.started("a")).toEqual([expect.objectContaining({ scheduledAt: s(60), startedAt: s(60), spawnedAt: s(59) })]);
		expect(h.path("a", s(60))).toEqual(["due", "claiming", "recording", "held", "finishing", "ended"]);
		expect(h.outcomes("a")).toEqual(["finished"]);
		expect(h.ledger("a")).toEqual([{ at: 60, attempt: 1, trigger: "schedule", status: "succeeded" }]);
	});

	test.each<[string, Partial<WorkerJob>, "rebuilt" | "cancelled"]>([
		["held and the job edited: rebuilt from the new definition, same claim and run", { executable: "v2" }, "rebuilt"],
		["held and the job deleted: cancelled, recorded skipped, its code never ran", { deleted: true, status: "finished" }, "cancelled"],
		["held and the job suspended: cancelled, recorded skipped", { suspended: true }, "cancelled"],
		["held and the job rescheduled off that instant: cancelled", { schedule: "30 * * * * *" }, "cancelled"],
	])("%s", async (_name, change, expected) => {
		const h = await harness();
		await h.start();
		await h.assign(workerJob("a", { schedule: "0 * * * * *", executable: "v1" }, T0));
		await h.clock.advanceTo(s(59) + 200);
		expect(h.path("a", s(60))).toEqual(["due", "claiming", "recording", "held"]);
		await h.clock.advance(0);
		h.jobs.edit("a", change);
		await h.engine.jobChanged("a");
		await h.clock.advanceTo(s(61));
		if (expected === "rebuilt") {
			expect(h.path("a", s(60))).toEqual(["due", "claiming", "recording", "held", "held", "finishing", "ended"]);
			expect(h.started("a")).toEqual([expect.objectContaining({ scheduledAt: s(60), startedAt: s(60), executable: "v2" })]);
			expect(h.ledger("a")).toEqual([{ at: 60, attempt: 1, trigger: "schedule", status: "succeeded" }]);
		} else {
			expect(h.outcomes("a")).toEqual(["cancelled"]);
			expect(h.started("a")).toEqual([]);
			expect(h.ledger("a")).toEqual([{ at: 60, attempt: 1, trigger: "schedule", status: "skipped" }]);
		}
	});

	test("held and the job moved to another worker: the held fire still runs here, the next ones do not", async () => {
		const h = await harness();
		await h.start();
		await h.assign(workerJob("a", { schedule: "0 * * * * *" }, T0));
		await h.clock.advanceTo(s(59) + 200);
		await h.move("a");
		await h.clock.advanceTo(s(130));
		expect(h.started("a").map((p) => p.scheduledAt)).toEqual([s(60)]);
		expect(h.outcomes("a")).toEqual(["finished"]);
		expect(h.engine.status().jobs).toBe(0);
	});

	test("the lead follows reality: when claim + record + spawn take longer than it, it grows and later fires start on time", async () => {
		const h = await harness();
		await h.start();
		// Spawning takes 1.5 s, the lead is 1 s; a fire every 3 s (a job's next fire is handed over no
		// earlier than its previous instant: the lead of a per-second job stops at 1 s).
		await h.assign(workerJob("slow", { schedule: "*/3 * * * * *", env: { SPAWN_MS: "1500" } }, T0));
		await h.clock.advanceTo(s(20) + 500);
		const late = (p: { scheduledAt: number; startedAt: number }) => p.startedAt - p.scheduledAt;
		const started = h.started("slow");
		// The first fire (at 3 s), handed over 1 s ahead, was ready and started 0.5 s late: the lead
		// becomes 1 s + 1.5 x 0.5 s.
		expect(late(started[0])).toBe(500);
		expect(h.engine.status().prefireLeadMs).toBe(1750);
		// The fire at 6 s was in the crontab with the old lead already (set when the one at 3 s was
		// handed over); fires handed over with the grown lead start at their instant.
		expect(started.slice(1).map((p) => [p.scheduledAt, late(p)])).toEqual([[s(6), 500], ...[9, 12, 15, 18].map((t) => [s(t), 0])]);
	});

	test("a lead longer than the job's period parks one fire per job, handed over at the previous instant", async () => {
		const h = await harness({ prefireMs: 2500, maxConcurrentRuns: 8 });
		await h.start();
		await h.assign(...["q1", "q2", "q3"].map((id) => workerJob(id, { env: { DURATION_MS: "50" } }, T0)));
		await h.clock.advanceTo(s(10));
		const spawned = h.started("q1").filter((p) => p.scheduledAt >= s(3));
		expect(spawned.length).toBeGreaterThan(5);
		// Each fire spawned (held) at its predecessor's instant, not 2.5 s ahead: one parked process per job.
		expect(spawned.map((p) => p.scheduledAt - p.spawnedAt)).toEqual(spawned.map(() => 1000));
		expect(h.runner.peak).toBeLessThanOrEqual(6);
		expect(h.runner.started.every((p) => p.startedAt === p.scheduledAt)).toBe(true);
	});

	test("a fire ready in time but released late (a busy machine) does not grow the lead", async () => {
		const h = await harness();
		await h.start();
		await h.assign(workerJob("jitter", { env: { RELEASE_LATE_MS: "80" } }, T0)); // held in time, released 80 ms late
		await h.clock.advanceTo(s(10) + 500);
		const started = h.started("jitter");
		expect(started.length).toBeGreaterThan(5);
		expect(started.every((p) => p.startedAt - p.scheduledAt === 80)).toBe(true);
		// The lateness was the release's: a longer lead would hold more processes for longer and start none sooner.
		expect(h.engine.status().prefireLeadMs).toBe(1000);
	});

	test("prefired fires take at most half the process slots: the rest are taken at their instant and start on time", async () => {
		const h = await harness({ maxConcurrentRuns: 4 });
		await h.start();
		const ids = ["p1", "p2", "p3", "p4"];
		await h.assign(...ids.map((id) => workerJob(id, { schedule: "0 * * * * *", env: { DURATION_MS: "50" } }, T0)));
		await h.clock.advanceTo(s(59) + 500);
		const held = ids.filter((id) => h.path(id, s(60)).includes("held"));
		expect(held.length).toBe(2);
		expect(ids.filter((id) => h.path(id, s(60)).includes("waiting")).length).toBe(2);
		await h.clock.advanceTo(s(61));
		expect(h.runner.started.map((p) => p.startedAt - p.scheduledAt)).toEqual([0, 0, 0, 0]);
	});

	test("the half-slots bound counts parked processes only: a job whose runs outlast the second still has its next fire prefired", async () => {
		// 2 jobs, runs of 1.5 s, 8 slots: at each hand-over (a lead ahead: the previous instant) 4
		// processes run (2 released then, 2 a second before), none is parked.
		const h = await harness({ maxConcurrentRuns: 8 });
		await h.start();
		await h.assign(...["r1", "r2"].map((id) => workerJob(id, { env: { DURATION_MS: "1500" } }, T0)));
		await h.clock.advanceTo(s(12));
		for (const id of ["r1", "r2"]) {
			for (let at = s(3); at <= s(10); at += 1000) expect(h.path(id, at)).toContain("held");
		}
		expect(h.runner.started.every((p) => p.startedAt === p.scheduledAt)).toBe(true);
	});

	test("a worker without a free process slot does not prefire: the fire waits for its instant", async () => {
		const h = await harness({ maxConcurrentRuns: 1 });
		await h.start();
		await h.assign(workerJob("busy", { schedule: NEVER, env: { DURATION_MS: "100000" } }, T0), workerJob("a", { schedule: "0 * * * * *" }, T0));
		void h.runNow("busy");
		await h.clock.advanceTo(s(59) + 200);
		expect(h.path("a", s(60))).toEqual(["due", "waiting"]);
	});
});

describe("PrefireLead", () => {
	test("judged by when the held process was ready: ready in time and released late is on time; ready late grows it by the readiness's lateness", () => {
		const lead = new PrefireLead(1000, 4000);
		lead.observe(0, 1000, 1300, 950); // ready 50 ms ahead, released 300 ms late
		expect(lead.current()).toBe(1000);
		lead.observe(0, 1000, 1500, 1200); // ready 200 ms late: 1 s + 1.5 x 200 ms, not x 500 ms
		expect(lead.current()).toBe(1300);
	});

	test("grows to cover a late fire with a margin, at most to its bound; shrinks back after a long run on time, never below the base", () => {
		const lead = new PrefireLead(1000, 4000);
		lead.observe(0, 1000, 1000); // on time
		expect(lead.current()).toBe(1000);
		lead.observe(0, 1000, 1020); // 20 ms late: the release itself, not the lead
		expect(lead.current()).toBe(1000);
		lead.observe(0, 1000, 1600); // handed over 1 s ahead and 600 ms late: 1 s + 1.5 x 600 ms
		expect(lead.current()).toBe(1900);
		lead.observe(0, 1000, 1200); // late, but needs less than the lead already is
		expect(lead.current()).toBe(1900);
		for (let i = 0; i < 50; i++) lead.observe(100, 1000, 1100); // a burst late alike asks for one lead, not the sum
		expect(lead.current()).toBe(1900);
		lead.observe(0, 1000, 9000);
		expect(lead.current()).toBe(4000);
		for (let i = 0; i < 99; i++) lead.observe(0, 1000, 1000);
		expect(lead.current()).toBe(4000);
		lead.observe(0, 1000, 1000); // the 100th on time in a row: a quarter of what it grew goes
		expect(lead.current()).toBe(3250);
		for (let i = 0; i < 100 * 100; i++) lead.observe(0, 1000, 1000);
		expect(lead.current()).toBe(1000);
	});

	test("prefire off (lead 0) stays off", () => {
		const lead = new PrefireLead(0, 0);
		lead.observe(0, 1000, 5000);
		expect(lead.current()).toBe(0);
	});
});

describe("claims", () => {
	test("claim lost to another worker: nothing runs or is recorded here", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.other.claim("a", s(1), "w2");
		await h.start();
		await h.assign(workerJob("a", {}, T0));
		await h.clock.advanceTo(s(2) + 500);
		expect(h.outcomes("a")).toEqual(["claim-lost", "finished"]);
		expect(h.ledger("a")).toEqual([{ at: 2, attempt: 1, trigger: "schedule", status: "succeeded" }]);
	});

	test("claim failed on a dropped connection: given back to the crontab, runs on reconnect", async () => {
		const h = await harness({ start: T0 + 10 });
		await h.start();
		await h.assign(workerJob("y", { schedule: "0 0 1 1 *" }, T0 + 1)); // yearly: T0 is a fire time, before the job existed
		h.hub.disconnect(h.coordination);
		expect(await h.engine.dispatcher.fire(h.jobs.jobs.get("y")!, T0, "schedule", 1)).toBeNull();
		expect(h.outcomes("y")).toEqual(["given-back"]);
		await h.clock.advance(5000);
		expect(h.ledger("y")).toEqual([]);
		h.hub.reconnect(h.coordination);
		await h.clock.advance(1000);
		expect(h.ledger("y")).toEqual([{ at: 0, attempt: 1, trigger: "schedule", status: "succeeded" }]);
	});

	test("a claim held under our own name by our previous session (its answer lost): given back until it goes, then runs once", async () => {
		const h = await harness({ prefireMs: 0 });
		// The previous session's claim node, still on the server until that session expires there.
		const stale = await h.other.claim("a", s(1), NODE);
		await h.start();
		await h.assign(workerJob("a", {}, T0));
		await h.clock.advanceTo(s(1) + 1200);
		const outcomesAt = (at: number) => h.transitions.filter((t) => t.jobId === "a" && t.at === at && t.outcome).map((t) => t.outcome);
		expect(outcomesAt(s(1))).toEqual(["given-back", "given-back", "given-back"]);
		await stale!.release(); // the old session expired
		await h.clock.advance(600);
		expect(h.ledger("a").filter((r) => r.at === 1)).toEqual([{ at: 1, attempt: 1, trigger: "schedule", status: "succeeded" }]);
		expect(h.started("a").find((p) => p.scheduledAt === s(1))).toBeDefined();
	});

	test("a fire given back does not hold the job's later fires back: they start on time while it waits", async () => {
		const h = await harness();
		const stale = await h.other.claim("a", s(5), NODE); // a stale claim of ours on the fire of 5 s
		await h.start();
		await h.assign(workerJob("a", { env: { DURATION_MS: "50" } }, T0));
		await h.clock.advanceTo(s(8) + 300);
		await stale!.release();
		await h.clock.advanceTo(s(10));
		const late = new Map(h.started("a").map((p) => [(p.scheduledAt - T0) / 1000, p.startedAt - p.scheduledAt]));
		for (const at of [4, 6, 7, 8, 9]) expect(late.get(at)).toBe(0);
		expect(late.get(5)).toBeGreaterThan(3000); // ran once the stale claim went
		expect(h.ledger("a").filter((r) => r.at >= 4 && r.at <= 9)).toHaveLength(6);
	});

	test("a claim whose holder goes between our claim and our look (a stale claim of ours expiring): given back, runs once", async () => {
		const h = await harness({ prefireMs: 0 });
		const stale = await h.other.claim("a", s(1), NODE);
		// The holder is gone by the time the dispatcher asks who holds it.
		jest.spyOn(h.coordination, "claimOwner").mockImplementationOnce(async () => {
			await stale!.release();
			return null;
		});
		await h.start();
		await h.assign(workerJob("a", {}, T0));
		await h.clock.advanceTo(s(1) + 800);
		expect(h.outcomes("a").slice(0, 2)).toEqual(["given-back", "finished"]);
		expect(h.ledger("a").filter((r) => r.at === 1)).toEqual([{ at: 1, attempt: 1, trigger: "schedule", status: "succeeded" }]);
	});

	test("a claim that fails with a connection loss before the session notices the drop: given back, tried again, runs once", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		const claim = h.coordination.claim.bind(h.coordination);
		let failures = 1;
		h.coordination.claim = async (jobId, at, owner) => {
			if (failures-- > 0) throw unavailable("coordination", "connection loss"); // the session still says "connected"
			return claim(jobId, at, owner);
		};
		await h.assign(workerJob("a", {}, T0));
		await h.clock.advanceTo(s(1) + 500);
		expect(h.outcomes("a")).toEqual(["given-back", "finished"]);
		expect(h.ledger("a")).toEqual([{ at: 1, attempt: 1, trigger: "schedule", status: "succeeded" }]);
		expect(h.started("a")[0].startedAt - s(1)).toBe(GIVE_BACK_RETRY_MS);
	});
});

describe("database faults", () => {
	test.each<[MisfirePolicy, { at: number; trigger: string; status: string }[]]>([
		[
			"run_once",
			[
				{ at: 1, trigger: "catchup", status: "missed" },
				{ at: 2, trigger: "catchup", status: "missed" },
				{ at: 3, trigger: "catchup", status: "succeeded" },
			],
		],
		[
			"run_all",
			[
				{ at: 1, trigger: "catchup", status: "succeeded" },
				{ at: 2, trigger: "catchup", status: "succeeded" },
				{ at: 3, trigger: "catchup", status: "succeeded" },
			],
		],
		[
			"skip",
			[
				{ at: 1, trigger: "catchup", status: "missed" },
				{ at: 2, trigger: "catchup", status: "missed" },
				{ at: 3, trigger: "catchup", status: "missed" },
			],
		],
	])("database down at the start record, misfire %s: the fires are kept unstarted, then follow the policy", async (misfire, expected) => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		await h.assign(workerJob("a", { misfire }, T0));
		h.jobs.down = true;
		await h.clock.advanceTo(s(3) + 500);
		expect(h.outcomes("a")).toEqual(["unstarted", "unstarted", "unstarted"]);
		expect(h.engine.status().pendingFires).toBe(3);
		h.jobs.down = false;
		h.engine.loop.disarm(); // only the kept fires from here on
		await h.clock.advance(1500);
		expect(h.ledger("a").map(({ attempt: _a, ...r }) => r)).toEqual(expected);
		expect(h.engine.status().pendingFires).toBe(0);
		if (misfire !== "run_all")
			expect(h.jobs.rowsOf("a")[0].error).toBe(`could not start while the jobs service or its database was unreachable (misfire ${misfire})`);
	});

	test("database back: results kept meanwhile are written and the kept fires run within half a second, not a second or two later", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		await h.assign(workerJob("a", { misfire: "run_all", env: { DURATION_MS: "100" } }, T0));
		await h.clock.advanceTo(s(1) + 50); // the fire of 1 s is running
		h.jobs.down = true; // its result goes to the outbox; 2 and 3 s are kept unstarted
		await h.clock.advanceTo(s(3) + 600);
		expect(h.engine.status().pendingResults).toBe(1);
		expect(h.engine.status().pendingFires).toBe(2);
		h.jobs.down = false;
		h.engine.loop.disarm(); // only the kept fires from here on
		const back = h.clock.now();
		await h.clock.advance(500);
		expect(h.engine.status().pendingResults).toBe(0);
		const late = h.started("a").filter((p) => p.scheduledAt > s(1));
		expect(late.map((p) => (p.scheduledAt - T0) / 1000)).toEqual([2, 3]);
		for (const p of late) expect(p.startedAt - back).toBeLessThanOrEqual(500);
	});

	test("large outputs: no result write is larger than a NATS message takes, at the instant or from the outbox", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		// 24 jobs whose runs each end with 64 KiB of output (FakeRunner prints the executable), in the same turn.
		const big = (i: number) => `${i}`.padEnd(64 * 1024, "x");
		await h.assign(...Array.from({ length: 24 }, (_, i) => workerJob(`big${i}`, { executable: big(i), env: { DURATION_MS: "100" } }, T0)));
		await h.clock.advanceTo(s(1) + 50);
		h.jobs.failing.add("finishRuns"); // the ends of the fire of 1 s go to the outbox
		await h.clock.advanceTo(s(1) + 400);
		expect(h.engine.status().pendingResults).toBe(24);
		h.jobs.failing.delete("finishRuns");
		await h.clock.advanceTo(s(3) + 500);
		const writes = h.jobs.calls.filter((c) => c.method === "finishRuns").map((c) => c.args as FinishRequest[]);
		const bytes = (batch: FinishRequest[]) => batch.reduce((n, r) => n + resultBytes(r), 0);
		expect(writes.length).toBeGreaterThan(3);
		for (const w of writes) expect(bytes(w)).toBeLessThanOrEqual(FINISH_BATCH_BYTES);
		expect(h.engine.status().pendingResults).toBe(0);
		for (let i = 0; i < 24; i++) {
			const rows = h.jobs.rowsOf(`big${i}`);
			// The fires of 1, 2 and 3 s, each written once with its whole output (compared as a flag: the strings are 64 KiB).
			expect(rows.map((r) => [r.status, r.output === `${big(i)}\n`])).toEqual([1, 2, 3].map(() => ["succeeded", true]));
		}
	});

	test("database down at the finish record: the result waits in the outbox (persisted) and is written later", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		await h.assign(workerJob("a", { schedule: NEVER }, T0));
		h.jobs.failing.add("finishRuns");
		await h.runNow("a");
		await h.clock.advance(500);
		expect(h.ledger("a")).toEqual([{ at: 0.5, attempt: 1, trigger: "manual", status: "running" }]);
		expect(h.engine.status().pendingResults).toBe(1);
		expect(h.outbox.saved).toEqual([expect.objectContaining({ jobId: "a", status: "succeeded" })]);
		await h.clock.advance(5000); // still down: kept, tried again
		expect(h.engine.status().pendingResults).toBe(1);
		h.jobs.failing.delete("finishRuns");
		await h.clock.advance(1000);
		expect(h.ledger("a")).toEqual([{ at: 0.5, attempt: 1, trigger: "manual", status: "succeeded" }]);
		expect(h.engine.status().pendingResults).toBe(0);
		expect(h.outbox.saved).toEqual([]);
	});

	test("database back: the results kept meanwhile are written within 250 ms (the fires kept meanwhile wait for them)", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		await h.assign(workerJob("a", { schedule: NEVER }, T0));
		h.jobs.failing.add("finishRuns");
		await h.runNow("a");
		await h.clock.advance(3000);
		expect(h.engine.status().pendingResults).toBe(1);
		// Back just after a try that failed: the next one is the one that counts.
		const tries = () => h.jobs.calls.filter((c) => c.method === "finishRuns").length;
		const before = tries();
		while (tries() === before) await h.clock.advance(10);
		h.jobs.failing.delete("finishRuns");
		await h.clock.advance(250);
		expect(h.engine.status().pendingResults).toBe(0);
		expect(h.ledger("a")).toEqual([{ at: 0.5, attempt: 1, trigger: "manual", status: "succeeded" }]);
	});

	test("two outbox writes at once (the retry timer's and a stop's) run one after the other: a failure of one loses nothing", async () => {
		const clock = new FakeClock({ start: START });
		const jobs = new FakeJobs(clock);
		const outbox = new MemoryOutbox();
		const starts = Array.from({ length: 1100 }, (_, i) => ({ jobId: "a", scheduledAt: s(i), attempt: 1, trigger: "schedule" as const, node: NODE }));
		const runs = await jobs.startRuns(starts);
		outbox.saved = runs.map((run) => ({
			runId: run!.id,
			jobId: "a",
			scheduledAt: Date.parse(run!.scheduledAt),
			recurring: true,
			status: "succeeded" as const,
			exitCode: 0,
			signal: null,
			output: "",
			startedAt: START,
			finishedAt: START,
			error: null,
			willRetry: false,
		}));
		const recorder = new RunRecorder({ clock, jobs, outbox, logger: recordingLogger([]), metrics: NO_METRICS, nodeId: NODE });
		expect(recorder.loadOutbox()).toBe(1100);
		// The database drops again on the third write (the second batch of one of the two).
		const finish = jobs.finishRuns.bind(jobs);
		let call = 0;
		jobs.finishRuns = async (results) => {
			if (++call === 3) throw unavailable("database", "connect ECONNREFUSED");
			return finish(results);
		};
		await Promise.all([recorder.flushOutbox(), recorder.flushOutbox()]);
		recorder.stop();
		await recorder.flushOutbox(); // the retry
		expect(recorder.pendingResults).toBe(0);
		expect(jobs.rowsOf("a").filter((r) => r.status !== "succeeded")).toEqual([]);
	});

	test("results kept in the outbox before a restart are written first", async () => {
		const h = await harness({ prefireMs: 0 });
		h.jobs.put(workerJob("a", { schedule: NEVER }, T0));
		const [run] = await h.jobs.startRuns([{ jobId: "a", scheduledAt: T0 - 5000, attempt: 1, trigger: "schedule", node: NODE }]);
		h.outbox.saved = [
			{
				runId: run!.id,
				jobId: "a",
				scheduledAt: T0 - 5000,
				recurring: true,
				status: "succeeded",
				exitCode: 0,
				signal: null,
				output: "",
				startedAt: T0 - 5000,
				finishedAt: T0 - 4000,
				error: null,
				willRetry: false,
			},
		];
		await h.start();
		await h.assign(h.jobs.jobs.get("a")!);
		// Written before the assignment's recovery looked at running rows: not taken for a cut-off run.
		expect(h.ledger("a")).toEqual([{ at: -5, attempt: 1, trigger: "schedule", status: "succeeded" }]);
	});

	test("a manual run whose start cannot be recorded rejects (the API answers 503)", async () => {
		const h = await harness();
		await h.start();
		await h.assign(workerJob("a", { schedule: NEVER }, T0));
		h.jobs.failing.add("startRuns");
		const run = h.engine.runNow("a");
		const settled = run.catch((e: Error) => e);
		await h.clock.advance(0);
		expect(await settled).toMatchObject({ backend: "database", retryable: true });
		expect(h.engine.status().pendingFires).toBe(0);
	});
});

describe("recovery of cut-off runs", () => {
	test.each<[MisfirePolicy, { at: number; attempt: number; trigger: string; status: string }[]]>([
		[
			"run_once",
			[
				{ at: -1, attempt: 1, trigger: "schedule", status: "failed" },
				{ at: -1, attempt: 2, trigger: "retry", status: "succeeded" },
			],
		],
		[
			"run_all",
			[
				{ at: -1, attempt: 1, trigger: "schedule", status: "failed" },
				{ at: -1, attempt: 2, trigger: "retry", status: "succeeded" },
			],
		],
		["skip", [{ at: -1, attempt: 1, trigger: "schedule", status: "failed" }]],
	])("run cut off by a crash, misfire %s: failed interrupted, then attempt + 1 unless skip", async (misfire, expected) => {
		const h = await harness({ prefireMs: 0 });
		h.jobs.put(workerJob("a", { schedule: NEVER, misfire }, T0 - 10_000));
		await h.jobs.startRuns([{ jobId: "a", scheduledAt: s(-1), attempt: 1, trigger: "schedule", node: "w9" }]);
		await h.start();
		await h.assign(h.jobs.jobs.get("a")!);
		await h.clock.advance(1000);
		expect(h.ledger("a")).toEqual(expected);
		expect(h.jobs.rowsOf("a")[0].error).toBe("interrupted: worker w9 died during the run");
	});

	test("a run whose claim is still held (running on a live worker) is left alone", async () => {
		const h = await harness({ prefireMs: 0 });
		h.jobs.put(workerJob("a", { schedule: NEVER }, T0 - 10_000));
		await h.jobs.startRuns([{ jobId: "a", scheduledAt: s(-1), attempt: 1, trigger: "schedule", node: "w2" }]);
		await h.other.claim("a", s(-1), "w2");
		await h.start();
		await h.assign(h.jobs.jobs.get("a")!);
		await h.clock.advance(1000);
		expect(h.ledger("a")).toEqual([{ at: -1, attempt: 1, trigger: "schedule", status: "running" }]);
	});
});

describe("overlap", () => {
	test.each<[string, "allow" | "forbid" | "replace", string[]]>([
		["allow: both runs go on in parallel", "allow", ["1:succeeded", "2:succeeded"]],
		["forbid: the second fire is recorded skipped", "forbid", ["1:succeeded", "2:skipped"]],
		["replace: the first run is stopped, the second runs", "replace", ["1:failed", "2:succeeded"]],
	])("%s", async (_name, concurrency, expected) => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		// Runs of 1.5 s every second; the job is suspended after its second fire.
		await h.assign(workerJob("a", { concurrency, env: { DURATION_MS: "1500" } }, T0));
		await h.clock.advanceTo(s(2) + 100);
		h.jobs.edit("a", { suspended: true });
		await h.engine.jobChanged("a");
		await h.clock.advance(5000);
		expect(h.jobs.rowsOf("a").map((r) => `${(r.scheduledAt - T0) / 1000}:${r.status}`)).toEqual(expected);
		if (concurrency === "allow") expect(h.runner.peak).toBe(2);
	});
});

describe("retries and one-shot jobs", () => {
	test("retries with backoff: 1 s, then 2 s after each failed attempt, up to `retries`", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		await h.assign(workerJob("a", { schedule: NEVER, retries: 2, env: { EXIT: "1", DURATION_MS: "100" } }, T0));
		await h.runNow("a");
		await h.clock.advance(10_000);
		const starts = h.started("a").map((p) => ({ attempt: p.attempt, after: p.startedAt - START }));
		expect(starts).toEqual([
			{ attempt: 1, after: 0 },
			{ attempt: 2, after: 100 + 1000 },
			{ attempt: 3, after: 100 + 1000 + 100 + 2000 },
		]);
		expect(h.ledger("a")).toEqual([
			{ at: 0.5, attempt: 1, trigger: "manual", status: "failed" },
			{ at: 0.5, attempt: 2, trigger: "retry", status: "failed" },
			{ at: 0.5, attempt: 3, trigger: "retry", status: "failed" },
		]);
	});

	test("a one-shot job fires once and leaves the crontab", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		await h.assign(workerJob("once", { recurring: false }, T0));
		await h.clock.advance(5000);
		expect(h.ledger("once")).toEqual([{ at: 1, attempt: 1, trigger: "schedule", status: "succeeded" }]);
		expect(h.engine.status().jobs).toBe(0);
	});

	test("a run whose process cannot be prepared fails with the reason", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		await h.assign(workerJob("a", { schedule: NEVER }, T0));
		h.runner.prepareError = new RunSetupError("job a has no stored executable");
		await h.runNow("a");
		await h.clock.advance(100);
		expect(h.jobs.rowsOf("a")).toEqual([expect.objectContaining({ status: "failed", error: "job a has no stored executable" })]);
	});
});

describe("missed fires: every cause through every misfire policy", () => {
	// Four fire times missed, at -4 .. -1 s (or the outage's), as (at, attempt) pairs.
	const times = [s(-4), s(-3), s(-2), s(-1)];
	test.each<[MissedCause, MisfirePolicy, string[], string[]]>([
		["unowned", "run_all", ["-4:catchup:1", "-3:catchup:1", "-2:catchup:1", "-1:catchup:1"], []],
		["unowned", "run_once", ["-1:catchup:1"], ["-4", "-3", "-2"]],
		["unowned", "skip", [], ["-4", "-3", "-2", "-1"]],
		["coordination-down", "run_all", ["-4:catchup:1", "-3:catchup:1", "-2:catchup:1", "-1:catchup:1"], []],
		["coordination-down", "run_once", ["-1:catchup:1"], ["-4", "-3", "-2"]],
		["coordination-down", "skip", [], ["-4", "-3", "-2", "-1"]],
		["database-down", "run_all", ["-4:catchup:1", "-3:catchup:1", "-2:catchup:1", "-1:catchup:1"], []],
		["database-down", "run_once", ["-1:catchup:1"], ["-4", "-3", "-2"]],
		["database-down", "skip", [], ["-4", "-3", "-2", "-1"]],
		["interrupted", "run_all", ["-4:retry:2", "-3:retry:2", "-2:retry:2", "-1:retry:2"], []],
		["interrupted", "run_once", ["-4:retry:2", "-3:retry:2", "-2:retry:2", "-1:retry:2"], []],
		["interrupted", "skip", [], []],
	])("%s, misfire %s", (cause, misfire, run, missed) => {
		const d = decideMissedFires(
			{ misfire, recurring: true },
			cause,
			times.map((at) => ({ at, attempt: 1 })),
		);
		expect(d.run.map((f) => `${(f.at - T0) / 1000}:${f.trigger}:${f.attempt}`)).toEqual(run);
		expect(d.missed.map((m) => String((m.at - T0) / 1000))).toEqual(missed);
		for (const m of d.missed) expect(m.reason).toMatch(new RegExp(`\\(misfire ${misfire}\\)$`));
	});

	test.each<[MissedCause, string]>([
		["unowned", "missed while no worker owned the job"],
		["coordination-down", "missed while the coordination service was unreachable"],
		["database-down", "could not start while the jobs service or its database was unreachable"],
	])("the reason names the cause: %s", (cause, reason) => {
		const d = decideMissedFires({ misfire: "skip", recurring: true }, cause, [
			{ at: T0, attempt: 1 },
			{ at: s(1), attempt: 1 },
		]);
		expect(d.missed).toEqual([
			{ at: T0, reason: `${reason} (misfire skip)` },
			{ at: s(1), reason: `${reason} (misfire skip)` },
		]);
	});

	test("a single fire that fell due during a coordination outage is only late: it runs as scheduled", () => {
		expect(decideMissedFires({ misfire: "skip", recurring: true }, "coordination-down", [{ at: T0, attempt: 1 }]).run).toEqual([
			{ at: T0, trigger: "schedule", attempt: 1 },
		]);
		expect(decideMissedFires({ misfire: "run_once", recurring: true }, "coordination-down", [{ at: T0, attempt: 1 }]).run).toEqual([
			{ at: T0, trigger: "schedule", attempt: 1 },
		]);
	});

	test("a one-shot job catches up its single fire; retries kept while the database was down run as they were", () => {
		expect(
			decideMissedFires(
				{ misfire: "run_all", recurring: false },
				"unowned",
				times.map((at) => ({ at, attempt: 1 })),
			).run,
		).toEqual([{ at: s(-4), trigger: "catchup", attempt: 1 }]);
		expect(decideMissedFires({ misfire: "skip", recurring: true }, "database-down", [{ at: T0, attempt: 3 }]).run).toEqual([
			{ at: T0, trigger: "retry", attempt: 3 },
		]);
	});

	test.each<[MisfirePolicy, string[]]>([
		["run_all", ["-3:succeeded", "-2:succeeded", "-1:succeeded", "0:succeeded"]],
		["run_once", ["-3:missed", "-2:missed", "-1:missed", "0:succeeded"]],
		["skip", ["-3:missed", "-2:missed", "-1:missed", "0:missed"]],
	])("engine: fires missed while nobody owned the job, misfire %s", async (misfire, expected) => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		h.engine.loop.disarm();
		await h.assign(workerJob("a", { misfire }, s(-4)));
		h.engine.loop.disarm(); // the caught-up fires only, not the next ones
		await h.clock.advance(500);
		expect(h.jobs.rowsOf("a").map((r) => `${(r.scheduledAt - T0) / 1000}:${r.status}`)).toEqual(expected);
	});

	test.each<[MisfirePolicy, number, number]>([
		["run_all", 4, 0],
		["run_once", 1, 3],
		["skip", 0, 4],
	])("engine: fires that fell due while the coordination session was lost, misfire %s", async (misfire, ran, missed) => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		await h.assign(workerJob("a", { misfire }, T0));
		await h.clock.advanceTo(s(1) + 500);
		h.hub.disconnect(h.coordination);
		await h.clock.advanceTo(s(5) + 500); // 2, 3, 4 and 5 s fall due
		h.hub.reconnect(h.coordination);
		await h.clock.advance(400);
		const outage = h.jobs.rowsOf("a").filter((r) => r.scheduledAt >= s(2) && r.scheduledAt <= s(5));
		expect(outage.filter((r) => r.status === "succeeded").length).toBe(ran);
		expect(outage.filter((r) => r.status === "missed").length).toBe(missed);
		expect(outage.length).toBe(4);
	});
});

describe("job changes", () => {
	test("many jobs changed at once (created, resumed) are reloaded with one read, not one read each", async () => {
		const h = await harness();
		await h.start();
		const ids = Array.from({ length: 40 }, (_, i) => `c${i}`);
		await h.assign(...ids.map((id) => workerJob(id, { schedule: NEVER }, T0)));
		const before = h.jobs.calls.filter((c) => c.method === "byIds").length;
		for (const id of ids) h.jobs.edit(id, { schedule: "30 * * * * *" });
		await Promise.all(ids.map((id) => h.engine.jobChanged(id)));
		const reads = h.jobs.calls.filter((c) => c.method === "byIds").slice(before);
		expect(reads.length).toBe(1);
		expect((reads[0].args as string[]).sort()).toEqual([...ids].sort());
		expect(h.engine.status().jobs).toBe(40);
		expect(h.engine.loop.crontab.nextAt("c0")).toBe(s(30));
	});
});

describe("overload: a fire that cannot start when due is a missed fire, by the misfire policy", () => {
	/** Fire times of a job in the ledger as "seconds:status". */
	const rows = (h: Harness, id: string) => h.jobs.rowsOf(id).map((r) => `${(r.scheduledAt - T0) / 1000}:${r.status}`);
	/** One process at a time; "hog" (every 10 s) keeps it `hogMs`. */
	async function busy(hogMs: number, job: WorkerJob, backlog: Partial<BacklogBounds> = {}) {
		const h = await harness({ prefireMs: 0, maxConcurrentRuns: 1, maxInFlight: 1, backlog: { ...DEFAULT_BACKLOG_BOUNDS, ...backlog } });
		await h.start();
		await h.assign(workerJob("hog", { schedule: "*/10 * * * * *", env: { DURATION_MS: String(hogMs) } }, T0), job);
		return h;
	}

	// The hog runs from 10 s to 12.5 s; x's fire at 11 s can start 1.5 s late, at 12.5 s.
	test.each<[string, Partial<WorkerJob>, string[], RegExp | null]>([
		["run_once: the fire waits and runs late", { misfire: "run_once" }, ["11:succeeded"], null],
		["run_all: the fire waits and runs late", { misfire: "run_all" }, ["11:succeeded"], null],
		[
			"skip: later than the misfire threshold (1 s), recorded missed",
			{ misfire: "skip" },
			["11:missed"],
			/not started within 1000 ms of its time \(misfire skip\)/,
		],
		[
			"startingDeadline 1 s: past it while waiting, recorded missed",
			{ misfire: "run_all", startingDeadline: 1 },
			["11:missed"],
			/not started within its startingDeadline of 1 s/,
		],
		["startingDeadline 2 s: started within it", { misfire: "run_once", startingDeadline: 2 }, ["11:succeeded"], null],
	])("%s", async (_name, over, expected, reason) => {
		const h = await busy(2500, workerJob("x", { schedule: "11 * * * * *", ...over }, T0));
		await h.clock.advanceTo(s(14));
		expect(rows(h, "x").slice(0, 1)).toEqual(expected);
		expect(rows(h, "hog").slice(0, 1)).toEqual(["10:succeeded"]);
		const x = h.jobs.rowsOf("x")[0];
		if (reason) expect(x.error).toMatch(reason);
		else expect(h.started("x")[0].startedAt).toBe(s(12) + 500);
		if (reason) expect(h.path("x", s(11))).toEqual(["due", "queued", "ended"]);
		else expect(h.path("x", s(11))).toEqual(["due", "queued", "claiming", "recording", "running", "finishing", "ended"]);
	});

	// The hog runs from 10 s to 15.5 s; y fires every second from 11 to 15 s, five fires while it waits.
	test.each<[MisfirePolicy, Partial<BacklogBounds>, string[], RegExp]>([
		["run_all", {}, ["11:succeeded", "12:succeeded", "13:succeeded", "14:succeeded", "15:succeeded"], /./],
		[
			"run_all",
			{ perJob: 3 },
			["11:succeeded", "12:succeeded", "13:succeeded", "14:missed", "15:missed"],
			/3 fires of the job already waited \(misfire run_all, bound 3\)/,
		],
		["run_all", { total: 2 }, ["11:succeeded", "12:succeeded", "13:missed", "14:missed", "15:missed"], /with 2 fires waiting \(bound 2, misfire run_all\)/],
		[
			"run_once",
			{},
			["11:missed", "12:missed", "13:missed", "14:missed", "15:succeeded"],
			/superseded by a newer fire while the worker was at capacity \(misfire run_once\)/,
		],
		["skip", {}, ["11:missed", "12:missed", "13:missed", "14:missed", "15:succeeded"], /superseded by a newer fire|misfire skip/],
	])("misfire %s %j: five fires while the worker is full", async (misfire, bounds, expected, reason) => {
		const h = await busy(5500, workerJob("y", { schedule: "11-15 * * * * *", misfire, env: { DURATION_MS: "50" } }, T0), bounds);
		await h.clock.advanceTo(s(17));
		expect(rows(h, "y").filter((r) => Number(r.split(":")[0]) < 20)).toEqual(expected);
		for (const r of h.jobs.rowsOf("y").filter((r) => r.status === "missed")) expect(r.error).toMatch(reason);
		// In order, one at a time, after the hog.
		const starts = h.started("y").map((p) => p.scheduledAt);
		expect(starts).toEqual([...starts].sort((a, b) => a - b));
		expect(h.runner.peak).toBe(1);
	});

	test("offered load far beyond capacity: throughput plateaus, every fire time ends as one row, the backlog stays bounded", async () => {
		// 50 per-second jobs of 500 ms each on 4 process slots: 8 runs a second can be done, 50 are asked.
		const h = await harness({ prefireMs: 1000, maxConcurrentRuns: 4 });
		await h.start();
		const ids = Array.from({ length: 50 }, (_, i) => `j${String(i).padStart(2, "0")}`);
		await h.assign(...ids.map((id) => workerJob(id, { env: { DURATION_MS: "500" } }, T0)));
		let peakBacklog = 0;
		let peakInFlight = 0;
		for (let t = 1; t <= 20; t++) {
			await h.clock.advanceTo(s(t) + 100);
			peakBacklog = Math.max(peakBacklog, h.engine.status().backlog);
			peakInFlight = Math.max(peakInFlight, h.engine.status().inFlight);
		}
		h.engine.loop.disarm(); // no new fires: let the last ones end
		await h.clock.advance(5000);
		const window = h.jobs.runs.filter((r) => r.scheduledAt >= s(1) && r.scheduledAt <= s(20));
		// Exactly one row per (job, fire time), none left running.
		const keys = window.map((r) => `${r.jobId}@${r.scheduledAt}`);
		expect(new Set(keys).size).toBe(keys.length);
		expect(keys.length).toBe(50 * 20);
		expect(window.filter((r) => r.status === "running")).toEqual([]);
		const ran = window.filter((r) => r.status === "succeeded").length;
		// 4 slots x 2 runs a second x 20 s = 160 at best; the plateau is near it, not a collapse.
		expect(ran).toBeGreaterThanOrEqual(140);
		expect(ran + window.filter((r) => r.status === "missed").length).toBe(1000);
		expect(h.runner.peak).toBeLessThanOrEqual(4);
		// At most one waiting fire per run_once job, and few fires taken on beyond the slots.
		expect(peakBacklog).toBeLessThanOrEqual(50);
		expect(peakInFlight).toBeLessThanOrEqual(4 + 8);
		// Every job got its turn (the newer fire takes the older one's place in the queue).
		for (const id of ids) expect(h.jobs.rowsOf(id).some((r) => r.status === "succeeded")).toBe(true);
	});

	test("a fire waiting for room whose job is suspended meanwhile: recorded missed, not dropped silently", async () => {
		const h = await busy(2500, workerJob("x", { schedule: "11 * * * * *" }, T0));
		await h.clock.advanceTo(s(11) + 500);
		expect(h.engine.status().backlog).toBe(1);
		h.jobs.edit("x", { suspended: true });
		await h.engine.jobChanged("x");
		await h.clock.advanceTo(s(14));
		expect(rows(h, "x")).toEqual(["11:missed"]);
		expect(h.jobs.rowsOf("x")[0].error).toMatch(/suspended, deleted, rescheduled or moved to another worker while this fire waited/);
		expect(h.started("x")).toEqual([]);
	});

	test("no prefire while the worker is loaded: after a fire had to wait, fires take their room at their instant for 10 s", async () => {
		const h = await harness({ prefireMs: 1000, maxConcurrentRuns: 2, maxInFlight: 2 });
		await h.start();
		// Two hogs (once, at 10 s, 2.5 s long) take both places; p's fires wait until 12.5 s.
		const hog = { schedule: "10 * * * * *", env: { DURATION_MS: "2500" } };
		await h.assign(workerJob("hog1", hog, T0), workerJob("hog2", hog, T0), workerJob("p", { env: { DURATION_MS: "100" } }, T0));
		await h.clock.advanceTo(s(30));
		expect(h.path("p", s(5))).toContain("held"); // calm: prefired
		expect(h.path("p", s(12))).toContain("queued"); // the last fire that had to wait
		expect(h.path("p", s(15))).not.toContain("held"); // loaded: at its instant
		expect(h.path("p", s(21))).not.toContain("held");
		expect(h.path("p", s(23))).toContain("held"); // 10 s without a wait: prefired again
		expect(rows(h, "p").filter((r) => r.endsWith(":running") && Number(r.split(":")[0]) < 29)).toEqual([]);
	});

	test("manual runs and retries are taken on at once, beyond the capacity", async () => {
		const h = await busy(5000, workerJob("m", { schedule: NEVER }, T0));
		await h.clock.advanceTo(s(10) + 500); // the hog holds the only place
		const run = await h.runNow("m");
		expect(run).toEqual(expect.objectContaining({ jobId: "m", status: "running" }));
		await h.clock.advanceTo(s(16));
		expect(rows(h, "m")).toEqual([expect.stringMatching(/:succeeded$/)]);
	});

	test("stop with fires waiting: each is recorded missed, none is left unaccounted", async () => {
		const h = await busy(5000, workerJob("w", { schedule: "11-13 * * * * *", misfire: "run_all" }, T0));
		await h.clock.advanceTo(s(13) + 500);
		expect(h.engine.status().backlog).toBe(3);
		const stopped = h.engine.stop();
		await h.clock.advance(6000);
		await stopped;
		expect(rows(h, "w")).toEqual(["11:missed", "12:missed", "13:missed"]);
		for (const r of h.jobs.rowsOf("w")) expect(r.error).toBe("the worker stopped before it could start");
	});

	test("catch-up after a coordination outage: fires past the startingDeadline are recorded missed, the others run", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		await h.assign(workerJob("d", { misfire: "run_all", startingDeadline: 2 }, T0));
		await h.clock.advanceTo(s(1) + 500);
		h.hub.disconnect(h.coordination);
		await h.clock.advanceTo(s(6) + 500); // 2 .. 6 s fall due
		h.hub.reconnect(h.coordination);
		await h.clock.advance(400);
		const outage = h.jobs.rowsOf("d").filter((r) => r.scheduledAt >= s(2) && r.scheduledAt <= s(6));
		expect(outage.map((r) => `${(r.scheduledAt - T0) / 1000}:${r.status}`)).toEqual(["2:missed", "3:missed", "4:missed", "5:succeeded", "6:succeeded"]);
		expect(outage[0].error).toMatch(/startingDeadline of 2 s/);
	});
});

describe("clock offset, measured as NTP does", () => {
	/**
	 * The database answers after `rtt` ms of the fake clock, reading its clock `readAt` of the way
	 * through (0: as the request arrives, 1: just before the answer), `skewMs` behind ours.
	 */
	function slowDatabase(h: Harness, exchanges: { rtt: number; readAt: number }[], skewMs = 0) {
		let k = 0;
		h.jobs.dbTimeAnswer = async () => {
			const { rtt, readAt } = exchanges[Math.min(k++, exchanges.length - 1)];
			const sent = h.clock.now();
			await new Promise<void>((r) => h.clock.setTimeout(r, rtt));
			return sent + rtt * readAt - skewMs;
		};
	}

	async function registered(h: Harness) {
		const started = h.engine.start();
		await h.clock.advance(20_000); // the samples, before the first heartbeat
		await started;
		return h.engine.registration.info;
	}

	test.each<[string, { rtt: number; readAt: number }[], number, { offset: number; error: number; skewed: boolean }]>([
		[
			"a healthy worker on a loaded machine (round trips of 2.4-3 s) is not excluded",
			[3000, 2500, 2600, 2400, 2800].map((rtt) => ({ rtt, readAt: 0 })),
			0,
			{ offset: 1200, error: 1200, skewed: false },
		],
		[
			"the sample with the smallest round trip is the one taken",
			[
				{ rtt: 900, readAt: 0 },
				{ rtt: 20, readAt: 0.5 },
				{ rtt: 700, readAt: 1 },
			],
			0,
			{ offset: 0, error: 10, skewed: false },
		],
		[
			"a worker 5 s off is excluded, whatever the round trips",
			[200, 40, 300].map((rtt) => ({ rtt, readAt: 0.5 })),
			5000,
			{ offset: 5000, error: 20, skewed: true },
		],
		["an offset past the bound by less than its error bound is not excluded", [{ rtt: 1000, readAt: 0.5 }], 1400, { offset: 1400, error: 500, skewed: false }],
	])("%s", async (_name, exchanges, skewMs, expected) => {
		const h = await harness();
		slowDatabase(h, exchanges, skewMs);
		const info = await registered(h);
		expect({ offset: info.clockOffsetMs, error: info.clockErrorMs, skewed: h.engine.registration.skewed() }).toEqual(expected);
		expect(h.engine.health().workerClock).toMatchObject({ ok: !expected.skewed, offsetMs: expected.offset, errorMs: expected.error });
		expect((await h.coordination.listWorkers())[0]).toMatchObject({ clockOffsetMs: expected.offset, clockErrorMs: expected.error });
	});

	test("the database unreachable: no offset (the manager takes it for fine), and the heartbeat keeps the last one", async () => {
		const h = await harness();
		h.jobs.failing.add("dbTime");
		await h.start();
		expect(h.engine.registration.info).toMatchObject({ clockOffsetMs: null, clockErrorMs: null });
		h.jobs.failing.delete("dbTime");
		await h.clock.advance(60_000); // a heartbeat
		expect(h.engine.registration.info).toMatchObject({ clockOffsetMs: 0, clockErrorMs: 0 });
		h.jobs.failing.add("dbTime");
		await h.clock.advance(60_000);
		expect(h.engine.registration.info).toMatchObject({ clockOffsetMs: 0, clockErrorMs: 0 });
	});
});

describe("the engine's clock", () => {
	test("no Date.now() and no global timer: every time read and timer goes through the injected clock", async () => {
		const h = await harness();
		await h.start();
		const now = jest.spyOn(Date, "now");
		const timeout = jest.spyOn(global, "setTimeout");
		const interval = jest.spyOn(global, "setInterval");
		// Prefire, a retry, an outbox round trip, a missed fire, a coordination outage.
		await h.assign(workerJob("a", { schedule: "0 * * * * *", retries: 1, env: { EXIT: "1" } }, s(-120)), workerJob("b", { misfire: "run_all" }, T0));
		h.jobs.failing.add("finishRuns");
		await h.clock.advanceTo(s(61) + 500);
		h.jobs.failing.delete("finishRuns");
		h.hub.disconnect(h.coordination);
		await h.clock.advance(3000);
		h.hub.reconnect(h.coordination);
		await h.clock.advance(3000);
		const stopped = h.engine.stop();
		await h.clock.advance(20_000);
		await stopped;
		expect(h.jobs.rowsOf("a").some((r) => r.attempt === 2)).toBe(true);
		expect(now).not.toHaveBeenCalled();
		expect(timeout).not.toHaveBeenCalled();
		expect(interval).not.toHaveBeenCalled();
	});

	test("stop waits for running processes (within the grace), then writes their results", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		await h.assign(workerJob("a", { schedule: NEVER, env: { DURATION_MS: "3000" } }, T0));
		await h.runNow("a");
		await h.clock.advance(100);
		const stopped = h.engine.stop();
		await h.clock.advance(3000);
		await stopped;
		expect(h.ledger("a")).toEqual([{ at: 0.5, attempt: 1, trigger: "manual", status: "succeeded" }]);
		expect(h.runner.closed).toBe(true);
	});

	test("stop with the database down keeps the results in the outbox store for the next start", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		await h.assign(workerJob("a", { schedule: NEVER, env: { DURATION_MS: "3000" } }, T0));
		await h.runNow("a");
		h.jobs.down = true;
		const stopped = h.engine.stop();
		await h.clock.advance(3500);
		await stopped;
		expect(h.ledger("a")).toEqual([{ at: 0.5, attempt: 1, trigger: "manual", status: "running" }]);
		expect(h.outbox.saved).toEqual([expect.objectContaining({ jobId: "a", status: "succeeded" })]);
	});

	test("stop gives up waiting after the grace: a process still running keeps its row running for recovery", async () => {
		const h = await harness({ prefireMs: 0 });
		await h.start();
		await h.assign(workerJob("a", { schedule: NEVER, env: { DURATION_MS: "60000" } }, T0));
		await h.runNow("a");
		const stopped = h.engine.stop();
		await h.clock.advance(10_000);
		await stopped;
		expect(h.ledger("a")).toEqual([{ at: 0.5, attempt: 1, trigger: "manual", status: "running" }]);
	});
});

// Keeps the type import used when a case is commented out while debugging.
export type { Harness };
