/** The assignment a plan leads to, for the tests that check plans (lib/core/assignment.ts). */
import type { AssignmentMove } from "../../lib/core/coordination";

/** Apply moves to an assignment map (a copy), e.g. to check a plan. Empty workers are dropped. */
export function applyMovesToMap(current: Map<string, string[]>, moves: AssignmentMove[]): Map<string, string[]> {
	const sets = new Map<string, Set<string>>();
	for (const [w, jobs] of current) sets.set(w, new Set(jobs));
	for (const m of moves) {
		if (m.from !== null) sets.get(m.from)?.delete(m.jobId);
		if (m.to !== null) {
			let s = sets.get(m.to);
			if (!s) sets.set(m.to, (s = new Set()));
			s.add(m.jobId);
		}
	}
	const out = new Map<string, string[]>();
	for (const w of [...sets.keys()].sort()) {
		const jobs = [...sets.get(w)!].sort();
		if (jobs.length > 0) out.set(w, jobs);
	}
	return out;
}
