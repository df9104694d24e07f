/** Small pieces every benchmark uses: command-line flags, percentiles, the raw spawn rate. */
import { spawn } from "node:child_process";

export function arg(name: string, def: string): string {
	const i = process.argv.indexOf(`--${name}`);
	return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}

/** The p-th percentile of an ascending array, or null when it is empty. */
export function pct(sorted: number[], p: number): number | null {
	if (sorted.length === 0) return null;
	return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** child_process.spawn("/bin/sh", ["-c", "true"]) per second, `concurrency` at a time, for `seconds`. */
export async function spawnRate(seconds: number, concurrency: number): Promise<number> {
	let done = 0;
	const until = Date.now() + seconds * 1000;
	const one = () =>
		new Promise<void>((resolve) => {
			const c = spawn("/bin/sh", ["-c", "true"], { stdio: "ignore" });
			c.on("exit", () => resolve());
			c.on("error", () => resolve());
		});
	await Promise.all(
		Array.from({ length: concurrency }, async () => {
			while (Date.now() < until) {
				await one();
				done++;
			}
		}),
	);
	return Math.round(done / seconds);
}
