/**
 * A private ZooKeeper server for fault tests: its own free port and data folder, started and stopped
 * by the test (never the shared one). Debian's `zookeeper` package (scripts/services.sh installs it).
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { freePort } from "./proc";
import { waitFor } from "./wait";

const CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar";

export interface PrivateZooKeeper {
	port: number;
	connectionString: string;
	/** Start (again, on the same data). Resolves when it answers `ruok`. */
	start(): Promise<void>;
	/** Stop (SIGKILL: an outage, not a clean shutdown). Resolves when the process is gone. */
	stop(): Promise<void>;
	/** Stop and remove its data. */
	destroy(): Promise<void>;
}

function ruok(port: number): Promise<boolean> {
	return new Promise((resolve) => {
		const sock = net.connect(port, "127.0.0.1");
		let answer = "";
		// Short: a server still starting may accept the connection and never answer (nor close it).
		sock.setTimeout(250, () => sock.destroy());
		sock.on("connect", () => sock.write("ruok"));
		sock.on("data", (d) => (answer += d.toString()));
		sock.on("close", () => resolve(answer === "imok"));
		sock.on("error", () => resolve(false));
	});
}

export async function startPrivateZooKeeper(): Promise<PrivateZooKeeper> {
	if (!fs.existsSync("/usr/share/java/zookeeper.jar")) throw new Error("ZooKeeper is not installed: run scripts/services.sh start (as root it installs it)");
	const port = await freePort();
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cronjob-zk-"));
	fs.mkdirSync(path.join(dir, "data"));
	const cfg = path.join(dir, "zoo.cfg");
	fs.writeFileSync(
		cfg,
		[
			"tickTime=500",
			"initLimit=10",
			"syncLimit=5",
			`dataDir=${path.join(dir, "data")}`,
			`clientPort=${port}`,
			"clientPortAddress=127.0.0.1",
			"minSessionTimeout=1000",
			"maxSessionTimeout=60000",
			"maxClientCnxns=0",
			"4lw.commands.whitelist=*",
			"admin.enableServer=false",
		].join("\n") + "\n",
	);
	let child: ChildProcess | null = null;
	const zk: PrivateZooKeeper = {
		port,
		connectionString: `127.0.0.1:${port}`,
		async start() {
			const log = fs.openSync(path.join(dir, "zookeeper.log"), "a");
			child = spawn("java", ["-Xmx256m", "-cp", CLASSPATH, "org.apache.zookeeper.server.ZooKeeperServerMain", cfg], { stdio: ["ignore", log, log] });
			fs.closeSync(log);
			await waitFor(() => ruok(port), 30_000, `private ZooKeeper on ${port}`, 25);
		},
		async stop() {
			const c = child;
			child = null;
			if (!c || c.exitCode !== null || c.signalCode !== null) return;
			const gone = new Promise<void>((r) => c.once("exit", () => r()));
			c.kill("SIGKILL");
			await gone;
		},
		async destroy() {
			await zk.stop();
			fs.rmSync(dir, { recursive: true, force: true });
		},
	};
	await zk.start();
	return zk;
}
