/**
 * Backend faults on a cluster of processes (API+jobs, two managers, two workers), with per-second
 * `run_all` jobs that audit themselves into a file (test/support/chaos.ts). Each case asserts, once
 * the backend is back: every fire time of the window ran exactly once (the audit, and one final run
 * row per fire time), no run is left `running`, every node not killed by the fault is alive, /health
 * answers 200; it prints the time until every job fired again after the backend's return and asserts
 * it within RECOVERY_MS (a job that had to move off a killed worker: within the session timeout more).
 *
 * Every backend is a private server of the test's own (free port, own data), never a shared one;
 * each case runs on a fresh cluster on them. Skipped only when DATABASE_URL and TRANSPORTER are unset
 * (the shared servers are not there, nor, then, the private ones' packages; CI sets them).
 */
import {
	ChaosCluster,
	faults,
	runFault,
	SESSION_TIMEOUT_MS,
	startChaosServers,
	type ChaosServers,
	type Fault,
	type FaultKey,
	type FaultReport,
} from "../support/chaos";

const { DATABASE_URL, TRANSPORTER } = process.env;
const maybe = DATABASE_URL && TRANSPORTER ? describe : describe.skip;

const JOBS = 6;
/** Every job fires again within this after the backend's return. */
const RECOVERY_MS = 2000;

maybe("backend faults on a cluster of processes", () => {
	let servers: ChaosServers;
	let all: Record<FaultKey, Fault>;
	let used = 0;

	beforeAll(async () => {
		servers = await startChaosServers(6);
		all = faults(servers);
	}, 120_000);

	afterAll(async () => {
		await servers?.destroy();
	});

	async function onFreshCluster(key: FaultKey): Promise<FaultReport> {
		const fault = all[key];
		const c = await ChaosCluster.start(servers, servers.databases[used++], {
			jobs: JOBS,
			managers: ["manager-1", "manager-2"],
			workers: ["worker-1", "worker-2"],
		});
		let ok = false;
		try {
			const r = await runFault(c, fault);
			const moved = r.movedRecoveryMs === null ? "" : ` (the killed worker's jobs ${r.movedRecoveryMs} ms, the others ${r.stayedRecoveryMs} ms)`;
			console.log(
				`chaos: ${r.fault}: down ${r.downMs} ms; every job fired again ${r.recoveryMs} ms after the return${moved}, the first ${r.firstFireMs} ms; ` +
					`${r.fireTimesChecked} fire times checked, missing ${r.missing.length}, doubled ${r.doubled.length}, badly recorded ${r.badRows.length}, ` +
					`cut off and run again ${r.interrupted}, left running ${r.leftRunning}\n${JSON.stringify(r)}`,
			);
			ok = r.missing.length + r.doubled.length + r.badRows.length + r.leftRunning + r.dead.length === 0 && r.healthStatus === 200;
			return r;
		} finally {
			await c.destroy(!ok);
		}
	}

	function expectClean(r: FaultReport): void {
		expect({ missing: r.missing, doubled: r.doubled, badRows: r.badRows }).toEqual({ missing: [], doubled: [], badRows: [] });
		expect(r.leftRunning).toBe(0);
		expect(r.dead).toEqual([]);
		expect(r.healthStatus).toBe(200);
	}

	test("ZooKeeper stopped past the session timeout, then restarted", async () => {
		const r = await onFreshCluster("zookeeper");
		expectClean(r);
		expect(r.recoveryMs).toBeLessThanOrEqual(RECOVERY_MS);
	}, 120_000);

	test("MariaDB killed (SIGKILL) and restarted after 2 s", async () => {
		const r = await onFreshCluster("mariadb");
		expectClean(r);
		expect(r.recoveryMs).toBeLessThanOrEqual(RECOVERY_MS);
	}, 120_000);

	test("NATS stopped for 3 s and restarted", async () => {
		const r = await onFreshCluster("nats");
		expectClean(r);
		expect(r.recoveryMs).toBeLessThanOrEqual(RECOVERY_MS);
	}, 120_000);

	test("ZooKeeper and MariaDB down together, then both back", async () => {
		const r = await onFreshCluster("zookeeperAndMariadb");
		expectClean(r);
		expect(r.recoveryMs).toBeLessThanOrEqual(RECOVERY_MS);
	}, 120_000);

	test("a worker SIGKILLed while ZooKeeper is down: its jobs move, cut-off runs run again", async () => {
		const r = await onFreshCluster("workerKilledZookeeperDown");
		expectClean(r);
		// The survivor's own jobs resume as after any ZooKeeper outage; the dead worker's move once
		// its session expires on the restarted server (the session timeout after the return).
		expect(r.stayedRecoveryMs).toBeLessThanOrEqual(RECOVERY_MS);
		expect(r.movedRecoveryMs).toBeLessThanOrEqual(SESSION_TIMEOUT_MS + RECOVERY_MS);
	}, 120_000);

	test("the leading manager SIGKILLed while NATS is down: the other one leads, fires resume", async () => {
		const r = await onFreshCluster("leaderKilledNatsDown");
		expectClean(r);
		expect(r.notes?.newLeader).toBeTruthy();
		expect(r.notes?.newLeader).not.toBe(r.notes?.killedLeader);
		expect(r.recoveryMs).toBeLessThanOrEqual(RECOVERY_MS);
	}, 120_000);
});
