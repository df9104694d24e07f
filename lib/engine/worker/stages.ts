/**
 * The last N scheduled fires, split into stages: timer (instant -> the fire begins), claim
 * (coordination lock), record (run row written), spawn (-> the process started). Diagnostics for
 * worker.status; every time comes from the engine's clock.
 */
export interface StageTimes {
	entered: number;
	claimed: number;
	recorded: number;
}

export type StageSummary = Record<"timer" | "claim" | "record" | "spawn" | "total", { p50: number; p99: number; max: number }>;

const NAMES = ["timer", "claim", "record", "spawn", "total"] as const;

export class FireStages {
	private rows: number[][] = [];

	constructor(private readonly keep: number) {}

	add(scheduledAt: number, t: StageTimes, startedAt: number): void {
		this.rows.push([t.entered - scheduledAt, t.claimed - t.entered, t.recorded - t.claimed, startedAt - t.recorded, startedAt - scheduledAt]);
		if (this.rows.length > this.keep) this.rows.splice(0, this.rows.length - this.keep);
	}

	summary(): StageSummary | null {
		if (this.rows.length === 0) return null;
		const out = {} as StageSummary;
		NAMES.forEach((name, k) => {
			const v = this.rows.map((r) => r[k]).sort((a, b) => a - b);
			out[name] = { p50: v[Math.floor(v.length / 2)], p99: v[Math.min(v.length - 1, Math.floor(v.length * 0.99))], max: v[v.length - 1] };
		});
		return out;
	}
}
