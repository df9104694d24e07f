/**
 * The NATS transporter across an outage of its server (lib/adapters/moleculer/nats-transporter.ts),
 * on a private nats-server (test/support/nats.ts) that the test stops and starts: two brokers, one
 * calling the other. While the server is away a call fails at once with a retryable error (never
 * waits for the request timeout), a call in flight when it went fails then too, and once it is back
 * the calls go through again within a second.
 * Skipped only when TRANSPORTER is unset (CI sets it; nats-server is installed with it).
 */
import { ServiceBroker } from "moleculer";
import { FollowingNatsTransporter, RECONNECT_JITTER_MS, RECONNECT_WAIT_MS } from "../../lib/adapters/moleculer/nats-transporter";
import { startPrivateNats, type PrivateNats } from "../support/nats";
import { waitFor } from "../support/wait";

const maybe = process.env.TRANSPORTER ? describe : describe.skip;

/** Longer than any wait of the test: a call that waits for it has hung. */
const REQUEST_TIMEOUT_MS = 20_000;

maybe("NATS transporter across a server outage", () => {
	let nats: PrivateNats;
	let server: ServiceBroker;
	let client: ServiceBroker;

	beforeAll(async () => {
		nats = await startPrivateNats();
		const broker = (nodeID: string) =>
			new ServiceBroker({
				nodeID,
				namespace: `nats-${process.pid}`,
				transporter: new FollowingNatsTransporter(nats.url),
				logger: false,
				requestTimeout: REQUEST_TIMEOUT_MS,
				retryPolicy: { enabled: false },
				heartbeatInterval: 2,
				heartbeatTimeout: 6,
			});
		server = broker("server");
		server.createService({
			name: "echo",
			actions: {
				ping: (ctx: { params: { ms?: number } }) => new Promise((r) => setTimeout(() => r("pong"), ctx.params.ms ?? 0)),
			},
		});
		client = broker("client");
		await Promise.all([server.start(), client.start()]);
		await client.waitForServices(["echo"], 10_000);
	}, 60_000);

	afterAll(async () => {
		await Promise.all([client?.stop(), server?.stop()].map((p) => p?.catch(() => undefined)));
		await nats?.destroy();
	});

	test("calls fail at once while the server is away (a call in flight too), and go through within a second of its return", async () => {
		expect(await client.call("echo.ping", {})).toBe("pong");
		const inFlight = client.call("echo.ping", { ms: 1000 }).catch((err: unknown) => err);
		await new Promise((r) => setTimeout(r, 100)); // the request is at the server
		const downAt = Date.now();
		await nats.stop();
		const cut = (await inFlight) as { retryable?: boolean };
		expect(cut).toBeInstanceOf(Error);
		expect(cut.retryable).toBe(true);
		expect(Date.now() - downAt).toBeLessThan(1000);
		// A call while the server is away: refused, not left waiting.
		await waitFor(
			async () => {
				const t0 = Date.now();
				const err = (await client.call("echo.ping", {}).catch((e: unknown) => e)) as { retryable?: boolean };
				return err instanceof Error && err.retryable === true && Date.now() - t0 < 500;
			},
			5000,
			"a call refused at once",
			50,
		);
		await nats.start();
		const upAt = Date.now();
		await waitFor(
			() =>
				client
					.call("echo.ping", {}, { timeout: 500 })
					.then((r) => r === "pong")
					.catch(() => false),
			10_000,
			"a call through after the return",
			20,
		);
		const backMs = Date.now() - upAt;
		console.log(`nats: calls through again ${backMs} ms after the server's return`);
		expect(backMs).toBeLessThan(RECONNECT_WAIT_MS + RECONNECT_JITTER_MS + 1000);
	}, 60_000);
});
