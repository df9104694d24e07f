/**
 * Backend faults on a real cluster of processes (API+jobs node, two managers, workers), each fault on
 * a fresh cluster, every backend a private server of the bench's own (ZooKeeper, MariaDB, NATS on free
 * ports with their own data: test/support/chaos.ts, the same harness as
 * test/integration/chaos.test.ts). N per-second `run_all` jobs append
 * "$CRONJOB_JOB_ID $CRONJOB_SCHEDULED_AT <start ms>" to a file; per fault the bench reports the
 * recovery time (until every job fired again after the backend's return; for a killed worker, of its
 * jobs and of the others apart), the fire times of the window missing or run twice, the run rows not
 * ending in one final row, the runs left `running`, the cut-off runs run again.
 *
 *   npx tsc -p . && node dist/bench/chaos.js [--jobs 12] [--workers 3] [--only nats,mariadb]
 *
 * Faults (keys for --only): zookeeper (stopped past the 2 s session timeout), mariadb (SIGKILL,
 * back after 2 s), nats (stopped for 3 s), zookeeperAndMariadb (both down, then both back),
 * workerKilledZookeeperDown (a worker SIGKILLed while ZooKeeper is down), leaderKilledNatsDown (the
 * leading manager SIGKILLed while NATS is down). Prints JSON; CHAOS_DEBUG=1 names each missing or
 * doubled fire on stderr, CHAOS_KEEP_LOGS=1 keeps every cluster's logs.
 */
import * as os from "node:os";
import { arg } from "./common";
import { ChaosCluster, faults, runFault, SESSION_TIMEOUT_MS, startChaosServers, type FaultKey, type FaultReport } from "../test/support/chaos";

async function main(): Promise<unknown> {
	const jobs = Number(arg("jobs", "12"));
	const workerCount = Number(arg("workers", "3"));
	const workers = Array.from({ length: workerCount }, (_, i) => `worker-${i + 1}`);
	const servers = await startChaosServers(6);
	const reports: (Omit<FaultReport, "missing" | "doubled" | "badRows"> & { missing: number; doubled: number; badRows: number })[] = [];
	try {
		const all = faults(servers);
		const only = arg("only", "");
		const keys = (only ? only.split(",") : Object.keys(all)) as FaultKey[];
		for (const [i, key] of keys.entries()) {
			const fault = all[key];
			if (!fault) throw new Error(`unknown fault ${key} (known: ${Object.keys(all).join(", ")})`);
			const c = await ChaosCluster.start(servers, servers.databases[i], { jobs, managers: ["manager-1", "manager-2"], workers });
			let failed = true;
			try {
				const r = await runFault(c, fault);
				if (process.env.CHAOS_DEBUG) for (const m of [...r.missing, ...r.doubled, ...r.badRows]) process.stderr.write(`${key}: ${m}\n`);
				reports.push({ ...r, missing: r.missing.length, doubled: r.doubled.length, badRows: r.badRows.length });
				process.stderr.write(`chaos: ${key}: recovered in ${r.recoveryMs} ms, ${r.missing.length} missing, ${r.doubled.length} doubled\n`);
				failed = false;
			} finally {
				await c.destroy(failed);
			}
		}
	} finally {
		await servers.destroy();
	}
	return {
		bench: "chaos",
		machine: { cpus: os.cpus().length, node: process.version },
		config: { jobs, workers: workerCount, managers: 2, sessionTimeoutMs: SESSION_TIMEOUT_MS, misfire: "run_all" },
		faults: reports,
	};
}

main().then(
	(result) => {
		process.stdout.write(JSON.stringify(result, null, 2) + "\n");
		process.exit(0);
	},
	(err) => {
		process.stderr.write(String((err as Error)?.stack ?? err) + "\n");
		process.exit(1);
	},
);
