/**
 * Backend faults on a real cluster of processes (API+jobs node, two managers, three workers) on
 * MariaDB and NATS, with ZooKeeper a private server of the bench's own (free port, own data) so that
 * it can be stopped. N per-second `run_all` jobs append "$CRONJOB_JOB_ID $CRONJOB_SCHEDULED_AT" to a
 * file; per fault the bench reports how long fires took to resume after the backend's return and the
 * fire times of the window missing from the file or in it twice, and the runs left `running`.
 *
 *   npx tsc -p . && eval "$(scripts/services.sh env)" && node dist/bench/chaos.js [--jobs 12] [--down-ms 4000]
 *
 * Faults: ZooKeeper stopped (SIGKILL) past the 2 s session timeout, then restarted. Prints JSON;
 * CHAOS_DEBUG=1 also names each missing fire on stderr.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { arg } from "./common";
import { BenchCluster, runBench, sleep, waitFor } from "./cluster";
import { startPrivateZooKeeper } from "../test/support/zookeeper";

let cluster: BenchCluster | null = null;

async function main() {
	const n = Number(arg("jobs", "12"));
	const downMs = Number(arg("down-ms", "4000"));
	const zk = await startPrivateZooKeeper();
	process.env.ZOOKEEPER = zk.connectionString;
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cronjob-chaos-bench-"));
	fs.chmodSync(dir, 0o777);
	const file = path.join(dir, "audit.log");
	const c = (cluster = new BenchCluster({ ZOOKEEPER_SESSION_TIMEOUT_MS: "2000" }));
	try {
		await c.setup();
		await c.startCluster({ managers: ["manager-1", "manager-2"], workers: ["worker-1", "worker-2", "worker-3"] });
		const ids: string[] = [];
		for (let i = 0; i < n; i++) {
			const r = await c.api("POST", "/jobs", {
				type: "command",
				schedule: "* * * * * *",
				misfire: "run_all",
				executable: `echo "$CRONJOB_JOB_ID $CRONJOB_SCHEDULED_AT" >> ${file}`,
			});
			if (r.status !== 201) throw new Error(`POST /jobs: ${r.status} ${JSON.stringify(r.body)}`);
			ids.push(r.body.id);
		}
		const audited = () => {
			const out = new Map<string, number[]>();
			if (!fs.existsSync(file)) return out;
			for (const line of fs.readFileSync(file, "utf8").split("\n")) {
				const [id, at] = line.split(" ");
				if (id && at) out.set(id, [...(out.get(id) ?? []), Date.parse(at)]);
			}
			return out;
		};
		await waitFor(() => ids.every((id) => (audited().get(id)?.length ?? 0) >= 3), 60_000, "every job firing");
		const downAt = Date.now();
		await zk.stop();
		await sleep(downMs);
		await zk.start();
		const upAt = Date.now();
		const resumedAt = await waitFor(
			() => (ids.every((id) => (audited().get(id) ?? []).some((t) => t > upAt)) ? Date.now() : null),
			60_000,
			"fires after the return",
			20,
		);
		const until = upAt + 2000;
		await waitFor(() => ids.every((id) => (audited().get(id) ?? []).some((t) => t >= until + 2000)), 60_000, "fires past the window");
		const seen = audited();
		let missing = 0;
		let doubled = 0;
		for (const id of ids)
			for (let t = Math.ceil((downAt - 2000) / 1000) * 1000; t <= until; t += 1000) {
				const k = (seen.get(id) ?? []).filter((x) => x === t).length;
				if (k === 0) {
					missing++;
					if (process.env.CHAOS_DEBUG) process.stderr.write(`missing ${id} ${new Date(t).toISOString()}\n`);
				}
				if (k > 1) doubled++;
			}
		let running = 0;
		for (const id of ids) {
			const runs = (await c.api("GET", `/jobs/${id}/runs?limit=1000`)).body as { scheduledAt: string; status: string }[];
			running += runs.filter((r) => r.status === "running" && Date.parse(r.scheduledAt) < until).length;
		}
		return {
			bench: "chaos",
			machine: { cpus: os.cpus().length, node: process.version },
			config: { jobs: n, workers: 3, managers: 2, sessionTimeoutMs: 2000, misfire: "run_all" },
			faults: [
				{
					fault: "zookeeper stopped past the session timeout",
					downMs: upAt - downAt,
					fireTimesChecked: ids.length * Math.floor((until - downAt + 2000) / 1000),
					missing,
					doubled,
					leftRunning: running,
					resumedAfterReturnMs: resumedAt - upAt,
				},
			],
		};
	} finally {
		await zk.destroy();
		fs.rmSync(dir, { recursive: true, force: true });
	}
}

runBench(() => cluster, main);
