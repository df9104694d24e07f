/**
 * The worker's crontab: which job fires next. A binary min-heap of (time, job) with lazy deletion,
 * so 100,000 jobs cost O(log n) per fire and one timer serves them all. Pure: no timers, no clock.
 * An entry is handed over at `due` = its fire time `at` minus its lead (prefire, lib/policies.ts).
 */
export interface CrontabEntry {
	jobId: string;
	at: number;
	/** When the entry is due to be handed over: `at` minus its lead. */
	due: number;
}

interface HeapItem extends CrontabEntry {
	version: number;
}

export class Crontab {
	private heap: HeapItem[] = [];
	/** jobId -> the version of its live entry and its time. */
	private live = new Map<string, { version: number; at: number; due: number }>();
	private seq = 0;

	get size(): number {
		return this.live.size;
	}

	nextAt(jobId: string): number | null {
		return this.live.get(jobId)?.at ?? null;
	}

	/** Set (or replace) the next fire time of a job, to be handed over `leadMs` ahead of it (not before `notBefore`). */
	set(jobId: string, at: number, leadMs = 0, notBefore = -Infinity): void {
		const version = ++this.seq;
		const due = Math.max(at - Math.max(0, leadMs), notBefore);
		this.live.set(jobId, { version, at, due });
		this.push({ jobId, at, due, version });
	}

	delete(jobId: string): boolean {
		return this.live.delete(jobId);
	}

	clear(): void {
		this.heap = [];
		this.live.clear();
	}

	/** The earliest live entry, or null. */
	peek(): CrontabEntry | null {
		this.dropStale();
		const top = this.heap[0];
		return top ? { jobId: top.jobId, at: top.at, due: top.due } : null;
	}

	/** Remove and return every live entry due at or before `now`, earliest due first. */
	popDue(now: number): CrontabEntry[] {
		const out: CrontabEntry[] = [];
		for (;;) {
			this.dropStale();
			const top = this.heap[0];
			if (!top || top.due > now) return out;
			this.pop();
			this.live.delete(top.jobId);
			out.push({ jobId: top.jobId, at: top.at, due: top.due });
		}
	}

	/** Live entries sorted by time (for display). */
	entries(): CrontabEntry[] {
		return [...this.live.entries()].map(([jobId, v]) => ({ jobId, at: v.at, due: v.due })).sort((a, b) => a.at - b.at || (a.jobId < b.jobId ? -1 : 1));
	}

	private dropStale(): void {
		while (this.heap.length > 0) {
			const top = this.heap[0];
			const cur = this.live.get(top.jobId);
			if (cur && cur.version === top.version) return;
			this.pop();
		}
		// Rebuild when stale items dominate, so replaced entries do not pile up.
	}

	private less(a: HeapItem, b: HeapItem): boolean {
		return a.due < b.due || (a.due === b.due && a.version < b.version);
	}

	private push(item: HeapItem): void {
		const h = this.heap;
		h.push(item);
		let i = h.length - 1;
		while (i > 0) {
			const p = (i - 1) >> 1;
			if (!this.less(h[i], h[p])) break;
			[h[i], h[p]] = [h[p], h[i]];
			i = p;
		}
		if (h.length > 64 && h.length > 4 * this.live.size) this.compact();
	}

	private pop(): HeapItem | undefined {
		const h = this.heap;
		const top = h[0];
		const last = h.pop();
		if (h.length > 0 && last) {
			h[0] = last;
			let i = 0;
			for (;;) {
				const l = 2 * i + 1;
				const r = l + 1;
				let m = i;
				if (l < h.length && this.less(h[l], h[m])) m = l;
				if (r < h.length && this.less(h[r], h[m])) m = r;
				if (m === i) break;
				[h[i], h[m]] = [h[m], h[i]];
				i = m;
			}
		}
		return top;
	}

	private compact(): void {
		const items = this.heap.filter((it) => this.live.get(it.jobId)?.version === it.version);
		items.sort((a, b) => (this.less(a, b) ? -1 : 1));
		this.heap = items; // a sorted array is a valid heap
	}
}

/** Render entries in crontab(5) syntax, one line per job, for operators. */
export function formatCrontab(jobs: { id: string; schedule: string; timezone: string; nextAt: number | null; command: string }[]): string {
	const lines = ["# distributed-cronjob crontab (schedule, then the job; times are per job time zone)"];
	for (const j of jobs) {
		const next = j.nextAt === null ? "-" : new Date(j.nextAt).toISOString();
		lines.push(`# job ${j.id} tz=${j.timezone} next=${next}`);
		lines.push(`${j.schedule} ${j.command.replace(/\n/g, " ")}`);
	}
	return lines.join("\n") + "\n";
}
