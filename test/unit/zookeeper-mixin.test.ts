/**
 * ZookeeperMixin on the in-process coordination: the session is built with the service's logger,
 * connected when the service starts and closed when it stops; the typed methods reach it; a failing
 * listener or leadership handler is reported through that logger.
 */
import { ServiceBroker, type Service } from "moleculer";
import { MemoryCoordinationHub, type MemoryCoordination } from "../../lib/adapters/memory/coordination";
import type { CoordinationLogger } from "../../lib/adapters/coordination-support";
import type { Coordination, WorkerRegistration } from "../../lib/core/coordination";
import { ZookeeperMixin, type ZookeeperMixinMethods } from "../../mixins/zookeeper.mixin";
import { waitFor } from "../support/wait";

type Host = Service & ZookeeperMixinMethods;

const registration = (id: string): WorkerRegistration => ({
	id,
	host: "localhost",
	pid: process.pid,
	startedAt: new Date(0).toISOString(),
	capacity: 1,
	clockOffsetMs: null,
	clockErrorMs: null,
});

describe("ZookeeperMixin", () => {
	const hub = new MemoryCoordinationHub();
	const built: { logger: CoordinationLogger; coordination: Coordination }[] = [];
	let broker: ServiceBroker;
	let svc: Host;

	beforeEach(async () => {
		built.length = 0;
		broker = new ServiceBroker({ nodeID: "mixin-test", logger: false });
		const factory = (logger: CoordinationLogger) => {
			const coordination = hub.session(logger);
			built.push({ logger, coordination });
			return coordination;
		};
		svc = broker.createService({ name: "host", mixins: [ZookeeperMixin(factory)] }) as unknown as Host;
		await broker.start();
	});

	afterEach(async () => {
		await broker.stop();
	});

	test("one session per service, built with the service's logger, connected on start and closed on stop", async () => {
		expect(built).toHaveLength(1);
		expect(built[0].logger).toBe(svc.logger);
		expect(svc.coordination).toBe(built[0].coordination);
		expect(svc.coordination.state()).toBe("connected");
		await broker.stop();
		expect(svc.coordination.state()).toBe("closed");
	});

	test("the typed methods reach the session", async () => {
		await svc.registerWorker(registration("w1"));
		await svc.updateRegistration({ ...registration("w1"), clockOffsetMs: 5 });
		expect(await svc.coordination.listWorkers()).toEqual([{ ...registration("w1"), clockOffsetMs: 5 }]);
		await expect(svc.updateRegistration(registration("w2"))).rejects.toMatchObject({ code: 404 });

		const seen: string[][] = [];
		const off = svc.watchAssignment("w1", (ids) => seen.push(ids));
		await waitFor(() => seen.length > 0, 2000, "the first delivery");
		await svc.coordination.applyMoves([{ jobId: "j1", from: null, to: "w1" }]);
		await waitFor(() => seen.at(-1)?.join() === "j1", 2000, "the assignment");
		off();

		const claim = await svc.claimFire("j1", 1000, "w1");
		expect(claim).not.toBeNull();
		expect(await svc.claimFire("j1", 1000, "w1")).toBeNull();
		await claim!.release();

		const events: string[] = [];
		const candidacy = await svc.lead("w1", { elected: () => void events.push("elected"), revoked: () => void events.push("revoked") });
		await waitFor(() => events.includes("elected"), 2000, "elected");
		await candidacy.resign();
		expect(events).toEqual(["elected", "revoked"]);
	});

	test("a failing listener or leadership handler is reported through the service's logger", async () => {
		const error = jest.spyOn(svc.logger, "error");
		svc.coordination.onStateChange(() => {
			throw new Error("state listener broke");
		});
		svc.watchAssignment("w1", () => {
			throw new Error("assignment listener broke");
		});
		const candidacy = await svc.lead("w1", {
			elected: () => {
				throw new Error("elected broke");
			},
			revoked: () => undefined,
		});
		hub.disconnect(svc.coordination as MemoryCoordination);
		hub.reconnect(svc.coordination as MemoryCoordination);
		const reports = () => error.mock.calls.map((c) => `${String(c[0])} ${(c[1] as Error).message}`);
		await waitFor(() => new Set(reports()).size >= 3, 2000, "the reports");
		expect(reports()).toEqual(
			expect.arrayContaining([
				"coordination assignment listener failed assignment listener broke",
				"leadership handler (elected) failed elected broke",
				"coordination state listener failed state listener broke",
			]),
		);
		await candidacy.resign();
	});
});
