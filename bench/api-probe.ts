/**
 * The REST API under load: `POST /jobs` (a throwaway job) and `GET /jobs/{id}` (one job), each at a
 * steady pace (open loop: request k leaves at start + k / rate whatever the answers before it; at most
 * MAX_IN_FLIGHT of a kind wait at once, the others are counted as not sent), for the given seconds.
 * Per kind: latency p50/p99/max over every request sent (one that timed out counts at its timeout,
 * so a p99 at the timeout means 1 % or more timed out), answers by status, 5xx, timeouts, network
 * errors.
 *
 * It runs in a process of its own (apiProbe() forks this file): its pace and its clock do not share
 * the event loop of the node it measures.
 */
import { fork } from "node:child_process";
import { pct, within } from "./common";

export interface ApiProbeOptions {
	/** http://127.0.0.1:<port> */
	base: string;
	token: string;
	/** The job GET /jobs/{id} reads. */
	getId: string;
	/** The body of each POST /jobs. */
	postBody: Record<string, unknown>;
	/** Epoch ms of the first requests. */
	startAt: number;
	seconds: number;
	/** Requests per second of each kind. */
	rate: number;
	timeoutMs: number;
}

export interface ApiKindResult {
	planned: number;
	sent: number;
	notSentInFlightCap: number;
	byStatus: Record<string, number>;
	status5xx: number;
	timeouts: number;
	networkErrors: number;
	latencyMs: { p50: number | null; p99: number | null; max: number | null };
}

export interface ApiProbeResult {
	ratePerSecondEach: number;
	seconds: number;
	timeoutMs: number;
	post: ApiKindResult;
	get: ApiKindResult;
}

const MAX_IN_FLIGHT = 200;

async function run(o: ApiProbeOptions): Promise<ApiProbeResult> {
	const kind = (method: "POST" | "GET") => {
		const lat: number[] = [];
		const res: ApiKindResult = {
			planned: Math.round(o.seconds * o.rate),
			sent: 0,
			notSentInFlightCap: 0,
			byStatus: {},
			status5xx: 0,
			timeouts: 0,
			networkErrors: 0,
			latencyMs: { p50: null, p99: null, max: null },
		};
		let inFlight = 0;
		const pending = new Set<Promise<void>>();
		const one = async (k: number) => {
			const t0 = performance.now();
			try {
				const r = await fetch(method === "POST" ? `${o.base}/jobs` : `${o.base}/jobs/${o.getId}`, {
					method,
					headers: { authorization: `Bearer ${o.token}`, ...(method === "POST" ? { "content-type": "application/json" } : {}) },
					body: method === "POST" ? JSON.stringify({ ...o.postBody, name: `probe-${k}` }) : undefined,
					signal: AbortSignal.timeout(o.timeoutMs),
				});
				await r.arrayBuffer();
				lat.push(performance.now() - t0);
				res.byStatus[r.status] = (res.byStatus[r.status] ?? 0) + 1;
				if (r.status >= 500) res.status5xx++;
			} catch (err) {
				const name = (err as Error).name;
				if (name === "TimeoutError" || name === "AbortError") {
					res.timeouts++;
					lat.push(o.timeoutMs);
				} else res.networkErrors++;
			}
		};
		const send = (k: number) => {
			if (inFlight >= MAX_IN_FLIGHT) {
				res.notSentInFlightCap++;
				return;
			}
			inFlight++;
			res.sent++;
			const p = one(k).finally(() => {
				inFlight--;
				pending.delete(p);
			});
			pending.add(p);
		};
		const finish = async () => {
			await Promise.all([...pending]);
			lat.sort((a, b) => a - b);
			const r1 = (x: number | null) => (x === null ? null : Math.round(x * 10) / 10);
			res.latencyMs = { p50: r1(pct(lat, 50)), p99: r1(pct(lat, 99)), max: r1(lat.length ? lat[lat.length - 1] : null) };
			return res;
		};
		return { send, finish, planned: res.planned };
	};
	const post = kind("POST");
	const get = kind("GET");
	const interval = 1000 / o.rate;
	let next = 0;
	await new Promise((r) => setTimeout(r, Math.max(0, o.startAt - Date.now())));
	while (next < post.planned) {
		// Every request due by now leaves now (the two kinds interleaved).
		while (next < post.planned && o.startAt + next * interval <= Date.now()) {
			post.send(next);
			get.send(next);
			next++;
		}
		await new Promise((r) => setTimeout(r, Math.max(1, o.startAt + next * interval - Date.now())));
	}
	return { ratePerSecondEach: o.rate, seconds: o.seconds, timeoutMs: o.timeoutMs, post: await post.finish(), get: await get.finish() };
}

/**
 * Fork the probe, run it, answer its result; null (and the child killed) when it has not answered by
 * the end of its window plus its timeout plus 10 s, or when it died.
 */
export async function apiProbe(o: ApiProbeOptions): Promise<ApiProbeResult | null> {
	const child = fork(__filename, [], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
	const answer = new Promise<ApiProbeResult | null>((resolve) => {
		child.on("message", (m) => resolve(m as ApiProbeResult));
		child.on("exit", () => resolve(null));
		child.on("error", () => resolve(null));
	});
	child.send(o);
	const r = await within(answer, Math.max(0, o.startAt - Date.now()) + o.seconds * 1000 + o.timeoutMs + 10_000);
	if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
	return r.done ? r.value : null;
}

if (require.main === module) {
	process.once("message", (o) => {
		run(o as ApiProbeOptions).then(
			(r) => process.send?.(r, () => process.exit(0)),
			(err) => {
				process.stderr.write(`api probe: ${String((err as Error)?.stack ?? err)}\n`);
				process.exit(1);
			},
		);
	});
}
