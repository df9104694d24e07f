/**
 * Pure worker assignment: which live worker runs which job.
 *
 * planAssignment() returns the moves that turn the current assignment into one where
 * - every job in `jobIds` is on exactly one eligible worker (live and not excluded);
 * - jobs no longer in `jobIds` are removed (move to null), from every worker, live or dead;
 * - the load is balanced by count: max - min <= 1 among eligible workers;
 * - as few jobs as possible move: jobs stay where they are unless their worker is dead/excluded or
 *   holds more than its share; the workers that already hold the most keep the larger shares;
 * - the result is deterministic (workers ordered by id, jobs by id).
 *
 * With no eligible worker nothing is assigned: jobs on dead workers stay recorded there (they come
 * back unchanged if the worker returns), jobs on live-but-excluded workers are unassigned.
 * Runs in O(J log J): 100,000 jobs over 3 workers take a few tens of milliseconds.
 */
import type { AssignmentMove } from "./coordination";

export interface PlanOptions {
	/** Live workers that must not run jobs (e.g. their clock is off). */
	excluded?: string[];
}

function cmp(a: string, b: string): number {
	return a < b ? -1 : a > b ? 1 : 0;
}

export function planAssignment(current: Map<string, string[]>, jobIds: string[], liveWorkers: string[], opts: PlanOptions = {}): AssignmentMove[] {
	const excluded = new Set(opts.excluded ?? []);
	const live = new Set(liveWorkers);
	const eligible = [...live].filter((w) => !excluded.has(w)).sort(cmp);
	const eligibleSet = new Set(eligible);
	const wanted = new Set(jobIds);

	const removals: AssignmentMove[] = [];
	/** The job's holder we keep it on (first eligible holder, else first holder). */
	const holder = new Map<string, string>();
	const holderEligible = new Map<string, boolean>();

	for (const worker of [...current.keys()].sort(cmp)) {
		const jobs = current.get(worker) ?? [];
		const isEligible = eligibleSet.has(worker);
		for (const job of jobs) {
			if (!wanted.has(job)) {
				removals.push({ jobId: job, from: worker, to: null });
				continue;
			}
			const prev = holder.get(job);
			if (prev === undefined) {
				holder.set(job, worker);
				holderEligible.set(job, isEligible);
			} else if (prev === worker) {
				// Listed twice on the same worker: nothing to do.
			} else if (!holderEligible.get(job) && isEligible) {
				// Duplicate: prefer the eligible holder, drop the other record.
				removals.push({ jobId: job, from: prev, to: null });
				holder.set(job, worker);
				holderEligible.set(job, true);
			} else {
				removals.push({ jobId: job, from: worker, to: null });
			}
		}
	}

	// Current load of every eligible worker, and the jobs to place.
	const kept = new Map<string, string[]>(eligible.map((w) => [w, []]));
	const orphans: string[] = [];
	for (const job of wanted) {
		const h = holder.get(job);
		if (h !== undefined && holderEligible.get(job)) kept.get(h)!.push(job);
		else orphans.push(job);
	}
	orphans.sort(cmp);

	if (eligible.length === 0) {
		// Nowhere to place jobs: unassign only those on live-but-excluded workers.
		const moves = removals;
		for (const job of orphans) {
			const h = holder.get(job);
			if (h !== undefined && live.has(h)) moves.push({ jobId: job, from: h, to: null });
		}
		return moves;
	}

	// Targets: floor(N/W) each, +1 for the (N mod W) workers currently holding the most (then by id).
	const total = wanted.size;
	const base = Math.floor(total / eligible.length);
	const extra = total % eligible.length;
	const byLoadDesc = [...eligible].sort((a, b) => kept.get(b)!.length - kept.get(a)!.length || cmp(a, b));
	const target = new Map<string, number>();
	byLoadDesc.forEach((w, i) => target.set(w, base + (i < extra ? 1 : 0)));

	// Workers above target shed their highest job ids; they go to the pool after the orphans.
	const pool: { jobId: string; from: string | null }[] = orphans.map((jobId) => ({ jobId, from: holder.get(jobId) ?? null }));
	for (const w of eligible) {
		const jobs = kept.get(w)!;
		const t = target.get(w)!;
		if (jobs.length > t) {
			jobs.sort(cmp);
			for (const jobId of jobs.slice(t)) pool.push({ jobId, from: w });
			jobs.length = t;
		}
	}

	// Fill the least loaded first (then by id) up to target.
	const moves = removals;
	let next = 0;
	const byLoadAsc = [...eligible].sort((a, b) => kept.get(a)!.length - kept.get(b)!.length || cmp(a, b));
	for (const w of byLoadAsc) {
		let need = target.get(w)! - kept.get(w)!.length;
		while (need > 0 && next < pool.length) {
			const { jobId, from } = pool[next++];
			moves.push({ jobId, from, to: w });
			need--;
		}
	}
	return moves;
}

/**
 * Orders a plan's writes for the workers' sake: what a live worker must start running goes first,
 * the tidying of dead workers' records after. A move off a dead worker becomes a plain assignment
 * to its new worker in `first` and a removal of the dead record in `cleanup` (half the writes on
 * the path of a failover; nobody reads a dead worker's records, and a job left recorded on two
 * workers by a crash between the two steps is resolved by the next plan, which keeps the live one).
 * Moves between live workers stay whole (remove and create together) in `first`.
 */
export function splitForFailover(moves: AssignmentMove[], liveWorkers: string[]): { first: AssignmentMove[]; cleanup: AssignmentMove[] } {
	const live = new Set(liveWorkers);
	const first: AssignmentMove[] = [];
	const cleanup: AssignmentMove[] = [];
	for (const m of moves) {
		if (m.from === null || live.has(m.from)) {
			first.push(m);
			continue;
		}
		if (m.to !== null) first.push({ jobId: m.jobId, from: null, to: m.to });
		cleanup.push({ jobId: m.jobId, from: m.from, to: null });
	}
	return { first, cleanup };
}

/**
 * Each moved job's worker after the plan, for the jobs' display column: the worker it moves to, else
 * the holder it keeps (a duplicate record dropped elsewhere must not blank it), else null.
 */
export function workersAfter(current: Map<string, string[]>, moves: AssignmentMove[]): { jobId: string; to: string | null }[] {
	const touched = new Set(moves.map((m) => m.jobId));
	const holder = new Map<string, string>();
	for (const m of moves) if (m.to !== null) holder.set(m.jobId, m.to);
	const removed = new Set(moves.filter((m) => m.from !== null).map((m) => `${m.from}\u0000${m.jobId}`));
	for (const [worker, jobs] of current) {
		for (const j of jobs) if (touched.has(j) && !holder.has(j) && !removed.has(`${worker}\u0000${j}`)) holder.set(j, worker);
	}
	return [...touched].map((jobId) => ({ jobId, to: holder.get(jobId) ?? null }));
}
